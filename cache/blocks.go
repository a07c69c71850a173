// Package cache holds s3mount's caches: the one shared block cache of
// object bytes (ristretto, bounded in bytes) and the metadata cache of
// stat results, negative lookups and complete directory listings (TTL,
// injected clock). It imports nothing of ours.
package cache

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"
)

// BlockKey names one fixed-size block of one version of one object. The
// ETag is part of the key, so a changed object never serves old blocks.
type BlockKey struct {
	Bucket string
	Key    string
	ETag   string
	Index  int64 // block number: byte offset / block size
}

func (k BlockKey) String() string {
	return k.Bucket + "\x00" + k.Key + "\x00" + k.ETag + "\x00" + strconv.FormatInt(k.Index, 10)
}

// Blocks is the shared block cache. Cost is the block's length in bytes, so
// the bytes it holds stay under MaxBytes (ristretto's admission may refuse a
// block; whoever fetched it still has it). Block bytes live in an arena of
// reused slots (see Buf). A block being fetched is a Flight, registered so
// that every reader wanting it waits for the one request instead of sending
// its own (request coalescing).
type Blocks struct {
	c        *ristretto.Cache[string, *Buf]
	maxBytes int64
	arena    *arena

	mu      sync.Mutex
	flights map[string]*Flight // guarded by mu

	hits, misses, fetches, landed atomic.Int64
	// evictions counts blocks the cache dropped for room; cached is the
	// bytes of blocks in the cache (added at Set, removed on every exit).
	evictions, cached atomic.Int64
}

// errRecycled: Take was called without a reference to the flight (after
// the caller's Drop), whose bytes may have been reused already.
var errRecycled = errors.New("block recycled before it was read")

// IsRecycled reports whether Take failed only because the caller held no
// reference to the flight any more (a bug in the caller).
func IsRecycled(err error) bool { return err == errRecycled }

// Flight is a block being fetched. Wait for Done, then Take the bytes.
//
// A flight is reference-counted: its claimer, and every reader that
// Acquire or Join handed it to, holds one reference and Drops it once it
// has taken the bytes (or given up). The flight's own reference to the
// bytes goes when the last is dropped, so a holder's Take never finds the
// bytes reused, however long it waited: the cache may have evicted or
// refused the block meanwhile, and other readers may have dropped theirs.
type Flight struct {
	done chan struct{}
	buf  *Buf // set by Finish before done closes; holds the flight's own reference
	err  error

	// blocks and key: where the flight is registered while it lingers.
	blocks *Blocks
	key    string

	mu        sync.Mutex
	finished  bool // guarded by mu
	refs      int  // guarded by mu; holders not yet dropped, 0 once dropped for good
	lingering bool // guarded by mu; landed by Land, still registered until dropped
}

// Done is closed once the block (or its error) is there.
func (f *Flight) Done() <-chan struct{} { return f.done }

// Take returns the block with a reference for the caller, who releases it.
// Only after Done, and before the caller's Drop. The error is the fetch's.
func (f *Flight) Take() (*Buf, error) {
	if f.err != nil {
		return nil, f.err
	}
	if f.buf == nil || !f.buf.Retain() {
		return nil, errRecycled
	}
	return f.buf, nil
}

// Join adds a reference for the caller, who must Drop it. It reports false
// when every reference was dropped already (the bytes may be reused): the
// caller must not use the flight.
func (f *Flight) Join() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refs == 0 {
		return false
	}
	f.refs++
	return true
}

// Drop gives up the caller's reference, at any time (before or after the
// flight lands, with or without a Take). The last one releases the
// flight's own reference to the bytes (a flight still in the air does so
// when it lands) and unregisters a lingering flight. Drops beyond the
// references taken do nothing.
func (f *Flight) Drop() {
	f.mu.Lock()
	if f.refs == 0 {
		f.mu.Unlock()
		return
	}
	if f.refs--; f.refs > 0 {
		f.mu.Unlock()
		return
	}
	finished, buf, lingering := f.finished, f.buf, f.lingering
	f.mu.Unlock()
	if lingering {
		f.blocks.unregister(f.key, f)
	}
	if finished && buf != nil {
		buf.Release()
	}
}

// land records the result; it releases the flight's reference at once when
// every holder dropped it while in the air.
func (f *Flight) land(buf *Buf, err error) {
	f.mu.Lock()
	f.buf, f.err, f.finished = buf, err, true
	dropped := f.refs == 0
	f.mu.Unlock()
	close(f.done)
	if dropped && buf != nil {
		buf.Release()
	}
}

// Ready returns a finished Flight owning buf's reference (Drop releases it),
// for a block that needs no fetch.
func Ready(buf *Buf) *Flight {
	f := &Flight{done: make(chan struct{}), buf: buf, finished: true, refs: 1}
	close(f.done)
	return f
}

// BlockStats are counters since the cache was made.
type BlockStats struct {
	Hits, Misses int64 // Acquire lookups answered from the cache, or not
	Fetches      int64 // flights claimed, i.e. blocks requested from S3
	Uncached     int64 // fetched blocks ended with Land, not cached
	ArenaSlots   int   // arena slots in use (cached, in flight or being read)
	Evictions    int64 // blocks dropped to make room (ristretto's cost policy)
	Bytes        int64 // bytes of the blocks the cache holds now
	// ArenaPeak is the most arena slots in use at once: the block memory
	// the process has touched (a slot's pages stay resident once used).
	ArenaPeak int
}

// NewBlocks makes a cache holding at most maxBytes bytes of blocks of at
// most blockSize bytes each. Its arena has room for the cache and 48 MiB
// more of blocks in flight or being read; past that, blocks come from the
// Go heap.
func NewBlocks(maxBytes, blockSize int64) (*Blocks, error) {
	if blockSize <= 0 || maxBytes < blockSize {
		return nil, fmt.Errorf("block cache: size %d bytes cannot hold a block of %d bytes", maxBytes, blockSize)
	}
	b := &Blocks{maxBytes: maxBytes, flights: map[string]*Flight{}}
	const headroom = 48 << 20
	a, err := newArena(int((maxBytes+headroom+blockSize-1)/blockSize), blockSize)
	if err != nil {
		return nil, fmt.Errorf("block cache: mapping %d bytes: %w", maxBytes+headroom, err)
	}
	b.arena = a
	c, err := ristretto.NewCache(&ristretto.Config[string, *Buf]{
		NumCounters:        10 * (maxBytes/blockSize + 1),
		MaxCost:            maxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
		// Every way out of the cache (eviction, refusal, replacement,
		// deletion) drops the cache's reference.
		OnExit: func(v *Buf) {
			if v != nil {
				b.cached.Add(-int64(len(v.data)))
				v.Release()
			}
		},
		OnEvict: func(*ristretto.Item[*Buf]) { b.evictions.Add(1) },
	})
	if err != nil {
		a.close()
		return nil, fmt.Errorf("block cache: %w", err)
	}
	b.c = c
	return b, nil
}

// MaxBytes is the cache's bound in bytes.
func (b *Blocks) MaxBytes() int64 { return b.maxBytes }

// NewBuf returns memory for a block of n bytes with one reference, from the
// arena when a slot is free.
func (b *Blocks) NewBuf(n int64) *Buf {
	if buf := b.arena.get(n); buf != nil {
		return buf
	}
	return &Buf{data: make([]byte, n)}
}

// Get returns a cached block with a reference for the caller.
func (b *Blocks) Get(k BlockKey) (*Buf, bool) {
	v, ok := b.c.Get(k.String())
	if ok && v.Retain() {
		return v, true
	}
	return nil, false
}

// Acquire finds block k. It returns exactly one of: the cached block, with
// a reference for the caller; the Flight of a fetch already under way or a
// block landed and still held (wait for it, Take, then Drop: the caller
// holds a reference); or, with claimed true, a new Flight that the caller
// must fetch and Finish, for every other reader of the block will wait on
// it, and Drop once done with it.
func (b *Blocks) Acquire(k BlockKey) (buf *Buf, f *Flight, claimed bool) {
	s := k.String()
	if v, ok := b.c.Get(s); ok && v.Retain() {
		b.hits.Add(1)
		return v, nil, false
	}
	b.misses.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if f := b.flights[s]; f != nil && f.Join() {
		return nil, f, false
	}
	// The block may have landed between the Get and the lock.
	if v, ok := b.c.Get(s); ok && v.Retain() {
		return v, nil, false
	}
	// (A registered flight whose every holder dropped it is on its way
	// out: this one takes its place.)
	f = &Flight{done: make(chan struct{}), blocks: b, key: s, refs: 1}
	b.flights[s] = f
	b.fetches.Add(1)
	return nil, f, true
}

// Finish ends a claimed Flight. On success buf, whose reference passes to
// the flight, is also cached (the Set is applied before the flight is
// unregistered, so a later Acquire finds it); the waiters are woken either
// way.
func (b *Blocks) Finish(k BlockKey, f *Flight, buf *Buf, err error) {
	s := k.String()
	if err == nil && buf.Retain() {
		b.cached.Add(int64(len(buf.data))) // before any OnExit can remove it
		if b.c.Set(s, buf, int64(len(buf.data))) {
			b.c.Wait()
		} else {
			b.cached.Add(-int64(len(buf.data)))
			buf.Release() // dropped by a full set buffer: no OnExit
		}
	}
	b.mu.Lock()
	if b.flights[s] == f {
		delete(b.flights, s)
	}
	b.mu.Unlock()
	f.land(buf, err)
}

// Land ends a claimed Flight like Finish, but leaves buf out of the cache:
// the flight stays registered (Acquire returns it, so another reader of the
// block shares it) until its last holder drops it, and the memory is reused
// as soon as the last reader has released it. For blocks read ahead of a
// sequential reader, which the kernel's page cache keeps once read: caching
// them as well would hold every byte twice, push out the blocks that random
// readers reuse, and make a streaming read touch --cache-size of memory.
func (b *Blocks) Land(k BlockKey, f *Flight, buf *Buf, err error) {
	if err == nil {
		b.landed.Add(1)
	}
	f.mu.Lock()
	linger := err == nil && buf != nil && f.refs > 0
	f.lingering = linger
	f.mu.Unlock()
	if !linger {
		b.unregister(k.String(), f)
	}
	f.land(buf, err)
}

// unregister removes flight f of key s, unless another took its place.
func (b *Blocks) unregister(s string, f *Flight) {
	b.mu.Lock()
	if b.flights[s] == f {
		delete(b.flights, s)
	}
	b.mu.Unlock()
}

// Stats returns the counters.
func (b *Blocks) Stats() BlockStats {
	slots, peak := b.arena.inUse()
	return BlockStats{Hits: b.hits.Load(), Misses: b.misses.Load(), Fetches: b.fetches.Load(),
		Uncached: b.landed.Load(), ArenaSlots: slots, ArenaPeak: peak, Evictions: b.evictions.Load(),
		Bytes: b.cached.Load()}
}

// Wait blocks until buffered Sets are applied (for tests).
func (b *Blocks) Wait() { b.c.Wait() }

// Close stops the cache's goroutines. The arena stays mapped: replies in
// flight may still point into it.
func (b *Blocks) Close() { b.c.Close() }
