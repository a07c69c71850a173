package cache

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCopiesFillCompleteAndEvict(t *testing.T) {
	parent := t.TempDir()
	c, err := OpenCopies(parent, 10<<10, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k := CopyKey{Bucket: "b", Key: "k", ETag: "e1"}
	if c.Start(k, 4<<10, 1<<10) != nil {
		t.Fatal("Start before Enable made a copy")
	}
	c.Enable()
	if c.Start(k, 512, 1<<10) != nil || c.Start(k, 6<<10, 1<<10) != nil {
		t.Fatal("a copy of an object under minSize or over half the limit")
	}
	cp := c.Start(k, 2<<10+100, 1<<10)
	if cp == nil {
		t.Fatal("no copy")
	}
	data := bytes.Repeat([]byte("x"), 2<<10+100)
	cp.Put(0, data[:1<<10])
	cp.Put(2, data[2<<10:])
	if c.Complete(k) != nil {
		t.Fatal("complete with block 1 missing")
	}
	cp.Put(1, data[1<<10:2<<10])
	if c.Complete(k) != cp {
		t.Fatal("not complete after every block")
	}
	b, _ := os.ReadFile(cp.File().Name())
	if !bytes.Equal(b, data) {
		t.Fatalf("the file holds %d bytes, not the blocks put", len(b))
	}
	// Room: three more copies of 3 KiB in a 10 KiB limit evict the
	// least recently used.
	for i, e := range []string{"a", "b", "c"} {
		if c.Start(CopyKey{Bucket: "b", Key: e, ETag: "x"}, 3<<10, 1<<10) == nil {
			t.Fatalf("copy %d not made", i)
		}
	}
	if u := c.Used(); u > 10<<10 {
		t.Errorf("%d bytes of copies over the 10 KiB limit", u)
	}
	if c.Complete(k) != nil {
		t.Error("the least recently used copy was not evicted")
	}
	if _, err := os.Stat(cp.File().Name()); !os.IsNotExist(err) {
		t.Errorf("an evicted copy's file is still there: %v", err)
	}
}

// A copies directory left by a mount that exited (its lock is free) is
// removed by the next; one still locked is kept.
func TestCopiesRemoveStaleDirectories(t *testing.T) {
	parent := t.TempDir()
	live, err := OpenCopies(parent, 1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	stale := filepath.Join(parent, "copies-stale")
	if err := os.Mkdir(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	next, err := OpenCopies(parent, 1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale directory kept: %v", err)
	}
	if _, err := os.Stat(live.Dir()); err != nil {
		t.Errorf("a live mount's directory was removed: %v", err)
	}
}

// A copy whose write fails is dropped, and only the first failure is
// returned (the caller logs it once).
func TestCopyWriteFailureDropsIt(t *testing.T) {
	c, err := OpenCopies(t.TempDir(), 1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Enable()
	k := CopyKey{Bucket: "b", Key: "k", ETag: "e"}
	cp := c.Start(k, 2048, 1024)
	ro, err := os.Open(cp.File().Name()) // writes to it fail (EBADF), as a full disk's would
	if err != nil {
		t.Fatal(err)
	}
	cp.f.Close()
	cp.f = ro
	if err := cp.Put(0, make([]byte, 1024)); err == nil {
		t.Fatal("a failed write returned no error")
	}
	if err := cp.Put(1, make([]byte, 1024)); err != nil {
		t.Errorf("the second failure was returned too: %v", err)
	}
	for deadline := time.Now().Add(2 * time.Second); c.Used() != 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if c.Used() != 0 || c.Filling(k) != nil {
		t.Errorf("the failed copy is still counted (%d bytes) or found", c.Used())
	}
}

// Dup hands out a descriptor of a complete copy, to one holder at a time,
// that outlives its eviction;
// after the eviction there is none to hand out. A write to an evicted copy
// reports nothing (it is not a disk failure).
func TestCopiesDupAndEviction(t *testing.T) {
	c, err := OpenCopies(t.TempDir(), 4<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Enable()
	k := CopyKey{Bucket: "b", Key: "a", ETag: "e"}
	cp := c.Start(k, 2<<10, 1<<10)
	data := bytes.Repeat([]byte("a"), 2<<10)
	cp.Put(0, data[:1<<10])
	if _, _, ok := c.Dup(k); ok {
		t.Fatal("Dup of an incomplete copy")
	}
	cp.Put(1, data[1<<10:])
	held, fd, ok := c.Dup(k)
	if !ok || held != cp {
		t.Fatal("no Dup of a complete copy")
	}
	if _, _, ok := c.Dup(k); ok {
		t.Fatal("a second Dup of a held copy")
	}
	held.Return()
	again, fd2, ok := c.Dup(k)
	if !ok {
		t.Fatal("no Dup of a copy returned")
	}
	unix.Close(fd2)
	again.Return()
	defer unix.Close(fd)
	filling := c.Start(CopyKey{Bucket: "b", Key: "b", ETag: "e"}, 2<<10, 1<<10)
	c.Start(CopyKey{Bucket: "b", Key: "c", ETag: "e"}, 2<<10, 1<<10) // evicts a, the least recently used
	if _, _, ok := c.Dup(k); ok {
		t.Error("Dup of an evicted copy")
	}
	got := make([]byte, len(data))
	if n, err := unix.Pread(fd, got, 0); err != nil || n != len(data) || !bytes.Equal(got, data) {
		t.Errorf("the descriptor of the evicted copy read %d bytes, %v", n, err)
	}
	c.Start(CopyKey{Bucket: "b", Key: "d", ETag: "e"}, 2<<10, 1<<10) // evicts b, still filling
	if err := filling.Put(0, data[:1<<10]); err != nil {
		t.Errorf("a write to an evicted copy reported %v", err)
	}
}
