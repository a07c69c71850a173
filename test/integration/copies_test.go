//go:build integration

package integration

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/s3mount/s3mount/test/harness"
)

// With --read-only --copy-cache-size, a file read from start to end leaves
// a local copy, and the kernel serves later opens of that version from it
// (FUSE passthrough): no READ reaches the daemon, even with the FUSE page
// cache dropped. Opens while a page-cache handle is open stay page-cache
// ones (the kernel would refuse a passthrough open); opens while a
// passthrough handle is open stay on its copy until it closes.
func TestLocalCopiesServeReopens(t *testing.T) {
	e := newEnv(t)
	addr := metricsAddr(t)
	cacheDir := t.TempDir()
	data := harness.RandomBytes(6<<20 + 12345)
	e.put("c/obj.bin", data)
	mnt := e.mount("--read-only", "--metrics-addr", addr, "--copy-cache-size", "64M", "--cache-dir", cacheDir, "--metadata-ttl", "1s")
	p := filepath.Join(mnt, "c", "obj.bin")
	reads := func() float64 { return scrape(t, addr)[`s3mount_fuse_ops_total{errno="OK",op="READ"}`] }

	// The first read fills the copy; a handle kept open from before it
	// completed is a page-cache one, so a second open meanwhile must be
	// one too (a passthrough open would fail with EIO).
	h1, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(h1)
	if err != nil || !bytes.Equal(b, data) {
		h1.Close()
		t.Fatalf("first read: %d bytes (%v), not the object's %d", len(b), err, len(data))
	}
	b2, err := os.ReadFile(p)
	h1.Close()
	if err != nil || !bytes.Equal(b2, data) {
		t.Fatalf("open beside a page-cache handle: %d bytes (%v)", len(b2), err)
	}
	r0 := reads()
	if r0 == 0 {
		t.Fatal("the first read sent no READ: the count below proves nothing")
	}
	if b := readUncached(t, p); !bytes.Equal(b, data) {
		t.Fatalf("reopen: %d bytes, not the object's %d", len(b), len(data))
	}
	if r := reads(); r != r0 {
		t.Errorf("reading the file again sent %v READs to the daemon: not served from the local copy", r-r0)
	}
	copies, _ := filepath.Glob(filepath.Join(cacheDir, "copies-*", "*"))
	found := false
	for _, c := range copies {
		if fi, err := os.Stat(c); err == nil && fi.Size() == int64(len(data)) {
			found = true
		}
	}
	if !found {
		t.Errorf("no copy of %d bytes under %s (files: %v)", len(data), cacheDir, copies)
	}

	// head(1) then cat(1): the whole read's first request to the daemon
	// starts past the pages head left in the page cache; the copy is
	// still made (its first blocks fetched for it).
	small := harness.RandomBytes(5<<20 + 1)
	e.put("c/headed.bin", small)
	hp := filepath.Join(mnt, "c", "headed.bin")
	hf, err := os.Open(hp)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadFull(hf, make([]byte, 100))
	hf.Close()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(hp); err != nil || !bytes.Equal(b, small) {
		t.Fatalf("cat after head: %d bytes (%v)", len(b), err)
	}
	time.Sleep(300 * time.Millisecond) // the first blocks are fetched in the background
	r1 := reads()
	if b := readUncached(t, hp); !bytes.Equal(b, small) {
		t.Fatalf("reopen after head + cat: %d bytes", len(b))
	}
	if r := reads(); r != r1 {
		t.Errorf("after head + cat, reading the file again sent %v READs: no local copy was made", r-r1)
	}

	// Changed elsewhere while a passthrough handle is open: opens stay on
	// its copy (the kernel allows one backing file per inode) until it
	// closes; then the new version is read.
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	next := harness.RandomBytes(3 << 20)
	e.put("c/obj.bin", next)
	time.Sleep(1500 * time.Millisecond) // --metadata-ttl 1s
	fi, _ := os.Stat(p)
	b, err = os.ReadFile(p)
	if err != nil || !bytes.Equal(b, data) {
		t.Errorf("an open beside a passthrough handle read %d bytes (%v), want the %d of its copy", len(b), err, len(data))
	}
	got := make([]byte, 4)
	if _, err := r.ReadAt(got, 0); err != nil || !bytes.Equal(got, data[:4]) {
		t.Errorf("the passthrough handle read %x (%v)", got, err)
	}
	r.Close()
	time.Sleep(200 * time.Millisecond) // RELEASE is asynchronous
	if b := readUncached(t, p); !bytes.Equal(b, next) {
		t.Errorf("after the passthrough handles closed, a new open read %d bytes, not the new version's %d (stat said %d)", len(b), len(next), fi.Size())
	}
}
