package cache

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestMetaExpiresAndListingsAnswerAbsence(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	m := NewMeta(5*time.Second, 100, c.now)
	m.Put("a/b", Stat{Kind: File, Size: 3})
	m.MarkListed("a")
	if st, ok := m.Get("a/b"); !ok || st.Size != 3 {
		t.Fatalf("Get = %+v, %v", st, ok)
	}
	if !m.Listed("a") {
		t.Fatal("listing not remembered")
	}
	c.t = c.t.Add(5 * time.Second)
	if _, ok := m.Get("a/b"); ok {
		t.Error("entry outlived its TTL")
	}
	if m.Listed("a") {
		t.Error("listing outlived its TTL")
	}
	m.Put("x", Stat{Kind: File})
	m.MarkListed("")
	m.Invalidate("x", "")
	if _, ok := m.Get("x"); ok || m.Listed("") {
		t.Error("Invalidate kept the entry or the parent's listing")
	}
}

func TestMetaStaysBounded(t *testing.T) {
	m := NewMeta(time.Hour, 100, nil)
	m.MarkListed("d")
	for i := 0; i < 1000; i++ {
		m.Put(string(rune('a'+i%26))+string(rune(i)), Stat{Kind: File})
	}
	m.mu.Lock()
	n := len(m.items)
	m.mu.Unlock()
	if n > 100 {
		t.Errorf("%d entries held, bound is 100", n)
	}
	if m.Listed("d") {
		t.Error("a listing whose entries may have been dropped still counts as complete")
	}
}

func TestMetaZeroTTLCachesNothing(t *testing.T) {
	m := NewMeta(0, 100, nil)
	m.Put("a", Stat{Kind: File})
	m.MarkListed("")
	if _, ok := m.Get("a"); ok || m.Listed("") {
		t.Error("a zero TTL cached something")
	}
}

// fetchOrWait is how a reader uses Acquire: fetch when it claims, else
// wait; it returns a copy of the bytes and releases its references.
func fetchOrWait(b *Blocks, k BlockKey, fetch func() ([]byte, error)) ([]byte, error) {
	buf, f, claimed := b.Acquire(k)
	if buf == nil {
		if claimed {
			d, err := fetch()
			var nb *Buf
			if err == nil {
				nb = b.NewBuf(int64(len(d)))
				copy(nb.Bytes(), d)
			}
			b.Finish(k, f, nb, err)
		}
		defer f.Drop() // claimer or waiter, each holds a reference
		<-f.Done()
		var err error
		if buf, err = f.Take(); err != nil {
			return nil, err
		}
	}
	defer buf.Release()
	return append([]byte(nil), buf.Bytes()...), nil
}

func TestBlocksCoalesceConcurrentFetches(t *testing.T) {
	b, err := NewBlocks(1<<20, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var fetches atomic.Int32
	release := make(chan struct{})
	k := BlockKey{Bucket: "b", Key: "k", ETag: `"e1"`, Index: 7}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := fetchOrWait(b, k, func() ([]byte, error) {
				fetches.Add(1)
				<-release
				return []byte("block"), nil
			})
			if err != nil || string(v) != "block" {
				t.Errorf("fetchOrWait = %q, %v", v, err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := fetches.Load(); n != 1 {
		t.Errorf("8 concurrent readers ran %d fetches, want 1", n)
	}
	if v, ok := b.Get(k); !ok {
		t.Error("fetched block not cached")
	} else {
		v.Release()
	}
	k2 := k
	k2.ETag = `"e2"`
	if _, ok := b.Get(k2); ok {
		t.Error("a block of another ETag was served")
	}
	if st := b.Stats(); st.Fetches != 1 {
		t.Errorf("Stats().Fetches = %d, want 1", st.Fetches)
	}
}

func TestBlocksFailedFetchIsNotCached(t *testing.T) {
	b, err := NewBlocks(1<<20, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k := BlockKey{Bucket: "b", Key: "k", Index: 1}
	if _, err := fetchOrWait(b, k, func() ([]byte, error) { return nil, errors.New("boom") }); err == nil {
		t.Fatal("error lost")
	}
	v, err := fetchOrWait(b, k, func() ([]byte, error) { return []byte("ok"), nil })
	if err != nil || string(v) != "ok" {
		t.Fatalf("retry after a failure: %q, %v", v, err)
	}
}

func TestBlocksBoundHolds(t *testing.T) {
	const block, max = 64 << 10, 1 << 20
	b, err := NewBlocks(max, block)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := int64(0); i < 200; i++ {
		data := bytes.Repeat([]byte{byte(i)}, block)
		if _, err := fetchOrWait(b, BlockKey{Bucket: "b", Key: "k", Index: i}, func() ([]byte, error) { return data, nil }); err != nil {
			t.Fatal(err)
		}
	}
	b.Wait()
	held := int64(0)
	for i := int64(0); i < 200; i++ {
		if v, ok := b.Get(BlockKey{Bucket: "b", Key: "k", Index: i}); ok {
			if !bytes.Equal(v.Bytes(), bytes.Repeat([]byte{byte(i)}, block)) {
				t.Errorf("block %d holds another block's bytes", i)
			}
			held += int64(len(v.Bytes()))
			v.Release()
		}
	}
	if held > max {
		t.Errorf("cache holds %d bytes, bound is %d", held, max)
	}
	if held == 0 {
		t.Error("cache holds nothing")
	}
	// Only cached blocks hold arena slots once every reader is done.
	if slots := b.Stats().ArenaSlots; int64(slots)*block != held {
		t.Errorf("%d arena slots in use for %d cached bytes: a reference leaked", slots, held)
	}
}

func TestBufRecycledSlotIsNotRetained(t *testing.T) {
	a, err := newArena(1, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	old := a.get(16)
	if old == nil || !old.Retain() {
		t.Fatal("a fresh slot cannot be retained")
	}
	old.Release()
	old.Release() // the slot is free again
	if a.get(16) == nil {
		t.Fatal("the only slot was not handed out again")
	}
	if old.Retain() {
		t.Error("a Buf retained its slot after the slot went to another block")
	}
	if n, _ := a.inUse(); n != 1 {
		t.Errorf("%d slots in use, want 1 (the new owner's)", n)
	}
	if a.get(16) != nil {
		t.Error("a slot was handed out twice")
	}
}

func TestBlocksConcurrentReadersSeeTheirOwnBytes(t *testing.T) {
	// A tiny cache under many readers: slots are evicted and reused all the
	// time, and every reader must still see exactly its block's bytes.
	const block = 1 << 10
	b, err := NewBlocks(8*block, block)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	for r := 0; r < 8; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for n := 0; n < 400; n++ {
				i := int64((n*7 + r*13) % 64)
				want := bytes.Repeat([]byte{byte(i)}, block)
				got, err := fetchOrWait(b, BlockKey{Bucket: "b", Key: "k", Index: i}, func() ([]byte, error) { return want, nil })
				if err != nil {
					// IsRecycled included: a waiter holds a
					// reference, so its bytes cannot be reused
					// however the cache evicts meanwhile.
					t.Errorf("block %d: %v", i, err)
					return
				}
				if !bytes.Equal(got, want) {
					t.Errorf("block %d: read another block's bytes", i)
					return
				}
			}
		}(r)
	}
	wg.Wait()
}

// A block ended with Land reaches the flight's waiters but not the cache;
// it is shared until its last holder drops it, and its memory is free
// again once the holders and the readers have released it.
func TestBlocksLandServesWaitersWithoutCaching(t *testing.T) {
	b, err := NewBlocks(1<<20, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k := BlockKey{Bucket: "b", Key: "k", ETag: "e", Index: 3}
	_, f, claimed := b.Acquire(k)
	if !claimed {
		t.Fatal("first Acquire did not claim")
	}
	_, f2, claimed2 := b.Acquire(k)
	if claimed2 || f2 != f {
		t.Fatal("a second reader did not wait on the same flight")
	}
	buf := b.NewBuf(100)
	copy(buf.Bytes(), "landed")
	b.Land(k, f, buf, nil)
	<-f2.Done()
	got, err := f2.Take()
	if err != nil || !bytes.HasPrefix(got.Bytes(), []byte("landed")) {
		t.Fatalf("waiter: %v", err)
	}
	f2.Drop()
	b.Wait()
	if c, ok := b.Get(k); ok {
		c.Release()
		t.Error("a landed block is in the cache")
	}
	// Until its last holder drops it, a landed flight is shared.
	_, f3, claimed := b.Acquire(k)
	if claimed || f3 != f {
		t.Fatal("a landed flight still held was not found by another reader")
	}
	f3.Drop()
	if st := b.Stats(); st.Uncached != 1 || st.ArenaSlots != 1 || st.ArenaPeak != 1 {
		t.Errorf("stats %+v, want 1 uncached block in 1 slot", st)
	}
	got.Release()
	f.Drop()
	if st := b.Stats(); st.ArenaSlots != 0 {
		t.Errorf("%d slots in use after every holder released the landed block, want 0", st.ArenaSlots)
	}
	// The next fetch of the block claims again.
	if _, _, claimed := b.Acquire(k); !claimed {
		t.Error("a landed block was found without a new fetch")
	}
}

func TestMetaVersionsOutliveTheTTL(t *testing.T) {
	now := time.Unix(1000, 0)
	m := NewMeta(time.Second, 10, func() time.Time { return now })
	lm := time.Unix(500, 123e6)
	m.PutVersion("k", `"e"`, lm, Stat{Kind: File, Mode: 0o100600})
	now = now.Add(time.Hour)
	if st, ok := m.Version("k", `"e"`, time.Unix(500, 999e6)); !ok || st.Mode != 0o100600 {
		t.Errorf("Version of the same ETag and second: %+v, %v", st, ok)
	}
	if _, ok := m.Version("k", `"e"`, time.Unix(501, 0)); ok {
		t.Error("Version answered for another LastModified")
	}
	if _, ok := m.Version("k", `"f"`, lm); ok {
		t.Error("Version answered for another ETag")
	}
}

// An answer to a request sent before this mount changed a path (Put) or
// before a later request's answer came in describes the path as it was:
// Observed keeps the newer entry.
func TestMetaObservedNeverReplacesNewer(t *testing.T) {
	now := time.Unix(1000, 0)
	m := NewMeta(time.Minute, 10, func() time.Time { return now })
	sent := now
	now = now.Add(time.Second)
	m.Put("k", Stat{Kind: File, ETag: "new"}) // this mount's commit
	m.Observed("k", Stat{Kind: File, ETag: "old", Seen: sent})
	if st, _ := m.Get("k"); st.ETag != "new" {
		t.Errorf("a HEAD sent before the commit replaced it: %q", st.ETag)
	}
	// The entry kept lives as long as the answer would have: a listing
	// marks its directory complete for the TTL from now.
	now = now.Add(time.Minute - time.Millisecond)
	m.Observed("k", Stat{Kind: File, ETag: "old", Seen: sent})
	now = now.Add(2 * time.Millisecond)
	if st, ok := m.Get("k"); !ok || st.ETag != "new" {
		t.Errorf("the entry kept expired before the answer would have: %+v %v", st, ok)
	}
	now = now.Add(time.Second)
	m.Observed("k", Stat{Kind: File, ETag: "newer", Seen: now})
	if st, _ := m.Get("k"); st.ETag != "newer" {
		t.Errorf("a HEAD sent after the commit was not taken in: %q", st.ETag)
	}
	m.Observed("k", Stat{Kind: Absent, Seen: sent})
	if st, _ := m.Get("k"); st.Kind != File || st.ETag != "newer" {
		t.Errorf("an older 404 replaced a newer answer: %+v", st)
	}
	// An answer older than an expired entry does not replace it either
	// (a slow HEAD that crossed the commit lands after the TTL): the
	// entry, newer, lives on as the answer would have; a newer answer
	// replaces it.
	now = now.Add(2 * time.Minute)
	m.Observed("k", Stat{Kind: File, ETag: "late", Seen: sent})
	if st, ok := m.Get("k"); !ok || st.ETag != "newer" {
		t.Errorf("after expiry, an answer older than the entry: %+v %v, want the entry", st, ok)
	}
	m.Observed("k", Stat{Kind: File, ETag: "fresh", Seen: now})
	if st, ok := m.Get("k"); !ok || st.ETag != "fresh" {
		t.Errorf("after expiry, a new answer: %+v %v", st, ok)
	}
}
