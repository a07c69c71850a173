package fs

import (
	"bytes"
	"os"
	"path/filepath"
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
	coldReads, coldGets := fsys.ReadStats().Reads, c.Calls("GetObject")
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
	if n := fsys.ReadStats().Reads - coldReads; n != 0 {
		t.Errorf("warm re-reads sent %d FUSE READs to the daemon, want 0 (page cache not kept)", n)
	}
	if n := c.Calls("GetObject") - coldGets; n != 0 {
		t.Errorf("warm re-reads sent %d GETs, want 0", n)
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
