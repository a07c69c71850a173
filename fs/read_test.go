package fs

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend/s3fake"
)

// mountFakeFS is mountFake that also returns the FS, for its counters.
func mountFakeFS(t *testing.T, c *s3fake.Client, mutate func(*Config)) (*FS, string) {
	t.Helper()
	blocks, err := cache.NewBlocks(64<<20, testBlock)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Client: c, Blocks: blocks, Meta: cache.NewMeta(time.Second, 1<<16, nil),
		BlockSize: testBlock, DownloadThreads: 4, PartSize: 5 << 20, UploadConcurrency: 2,
		UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), FileMode: 0o644, DirMode: 0o755}
	if mutate != nil {
		mutate(&cfg)
	}
	fsys, root := New(cfg)
	return fsys, mountRoot(t, root, cfg.Meta.TTL(), blocks)
}

// A re-read of an unchanged file, by a new open after the attribute and
// metadata TTLs have expired (so the kernel asks GETATTR again), is served by
// the kernel page cache: no READ reaches the daemon and no GET reaches S3.
// A change of the object drops those pages.
func TestSemanticsWarmReReadIsServedByThePageCache(t *testing.T) {
	c := s3fake.New("bkt")
	data := randBytes(48*testBlock+123, 7)
	c.PutDirect("warm", data)
	const ttl = 50 * time.Millisecond
	fsys, mnt := mountFakeFS(t, c, func(cfg *Config) { cfg.Meta = cache.NewMeta(ttl, 1<<16, nil) })
	p := filepath.Join(mnt, "warm")

	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("cold read: %v, equal=%v", err, bytes.Equal(got, data))
	}
	coldReads, coldBytes, coldGets := fsys.ReadStats().Reads, fsys.ReadStats().Bytes, c.Calls("GetObject")
	if coldReads == 0 || coldGets == 0 {
		t.Fatalf("cold read: %d READs, %d GETs; want both > 0", coldReads, coldGets)
	}
	for i := 0; i < 3; i++ {
		time.Sleep(2 * ttl)
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("warm read %d: %v, equal=%v", i, err, bytes.Equal(got, data))
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1000)
		if _, err := f.ReadAt(buf, 17*testBlock+5); err != nil || !bytes.Equal(buf, data[17*testBlock+5:][:1000]) {
			t.Fatalf("warm pread %d: %v", i, err)
		}
		f.Close()
	}
	// Rarely (about 1 run in 12 on a loaded 2-core machine) the kernel
	// asks again for a single 4 KiB page of a range it had read: a few
	// stray pages are tolerated, a page cache dropped at open is not.
	st := fsys.ReadStats()
	reads, nbytes := st.Reads-coldReads, st.Bytes-coldBytes
	if nbytes > int64(len(data))/16 {
		t.Errorf("warm re-reads sent %d FUSE READs (%d bytes) to the daemon, want none but a few stray pages (page cache not kept)", reads, nbytes)
	}
	if n := int64(c.Calls("GetObject") - coldGets); n > reads {
		t.Errorf("warm re-reads sent %d GETs for %d READs", n, reads)
	}

	// A new version: the kernel's pages of the old one must not be served.
	data2 := randBytes(len(data), 8)
	c.PutDirect("warm", data2)
	time.Sleep(2 * ttl)
	got, err = os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data2) {
		t.Fatalf("read after change: %v, equal new=%v, equal old=%v", err, bytes.Equal(got, data2), bytes.Equal(got, data))
	}
}

// A sequential read streams through a few windows of block memory: blocks
// read ahead are not cached (the kernel page cache keeps what was read), so
// the arena memory touched stays far below the file size and the cache
// size.
func TestSemanticsSequentialReadStreamsInBoundedMemory(t *testing.T) {
	c := s3fake.New("bkt")
	const nblocks = 640 // 40 MiB
	for _, name := range []string{"one", "two"} {
		c.PutDirect(name, randBytes(nblocks*testBlock, 14))
	}
	data := randBytes(nblocks*testBlock, 14)
	blocks, err := cache.NewBlocks(64<<20, testBlock)
	if err != nil {
		t.Fatal(err)
	}
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Blocks = blocks })
	read := func(name string, readers int) {
		var wg sync.WaitGroup
		for r := 0; r < readers; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := os.ReadFile(filepath.Join(mnt, name))
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("read %s: %v, equal=%v", name, err, bytes.Equal(got, data))
				}
			}()
		}
		wg.Wait()
	}

	read("one", 1)
	st := blocks.Stats()
	// The window is at most a quarter of the cache (16 MiB), plus the
	// blocks behind the reader kept for out-of-order reads (4 MiB).
	if peak := int64(st.ArenaPeak) * testBlock; peak > 24<<20 {
		t.Errorf("a sequential read of %d MiB touched %d MiB of block memory, want ≤ 24 MiB", len(data)>>20, peak>>20)
	}
	if st.Uncached == 0 {
		t.Error("no block read ahead was left out of the cache")
	}
	if n := c.BytesOut(); n != int64(len(data)) {
		t.Errorf("fetched %d bytes of a %d-byte object, want each once", n, len(data))
	}

	// Two readers at once share what is read ahead (through the cache, as
	// a lagging reader's readahead may want blocks the leader has passed).
	read("two", 2)
	if n := c.BytesOut() - int64(len(data)); n >= 2*int64(len(data)) {
		t.Errorf("two readers at once fetched %d bytes of a %d-byte object, want less than twice", n, len(data))
	}
}
