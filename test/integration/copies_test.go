//go:build integration

package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

	// Reads at a few offsets first (their pages stay in the kernel's page
	// cache, so the full reads after them skip those blocks), then
	// several readers at once: the copy is still completed.
	multi := harness.RandomBytes(8<<20 + 7)
	e.put("c/multi.bin", multi)
	mp := filepath.Join(mnt, "c", "multi.bin")
	if f, err := os.Open(mp); err != nil {
		t.Fatal(err)
	} else {
		for _, off := range []int64{1 << 20, 6 << 20} { // whole blocks, one before readahead starts
			if _, err := f.ReadAt(make([]byte, 1<<20), off); err != nil {
				t.Error(err)
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile(mp); err != nil || !bytes.Equal(b, multi) {
		t.Fatalf("full read after reads at offsets: %d bytes, %v", len(b), err)
	}
	time.Sleep(500 * time.Millisecond) // missing blocks are fetched after the release
	r2 := reads()
	if b := readUncached(t, mp); !bytes.Equal(b, multi) {
		t.Fatalf("reopen: %d bytes", len(b))
	}
	if r := reads(); r != r2 {
		t.Errorf("after reads at offsets then a full read, reading the file again sent %v READs: the copy was not completed", r-r2)
	}
	// Several readers at once of a file not read before.
	multi = harness.RandomBytes(8<<20 + 9)
	e.put("c/multi2.bin", multi)
	mp = filepath.Join(mnt, "c", "multi2.bin")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b, err := os.ReadFile(mp); err != nil || !bytes.Equal(b, multi) {
				errs <- fmt.Errorf("concurrent read: %d bytes, %v", len(b), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // missing blocks are fetched after the last release
	r2 = reads()
	if b := readUncached(t, mp); !bytes.Equal(b, multi) {
		t.Fatalf("reopen after concurrent readers: %d bytes", len(b))
	}
	if r := reads(); r != r2 {
		t.Errorf("after 4 concurrent readers, reading the file again sent %v READs: the copy was not completed", r-r2)
	}

	// O_DIRECT with unaligned offsets works (no passthrough handle is
	// open, so it is not made one: ext4 would refuse the alignment).
	fd, err := unix.Open(mp, unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	ub := make([]byte, 1000)
	n, err := unix.Pread(fd, ub, 12345)
	unix.Close(fd)
	if err != nil || n != 1000 || !bytes.Equal(ub, multi[12345:13345]) {
		t.Errorf("O_DIRECT pread of 1000 bytes at 12345: %d, %v", n, err)
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
	if fi == nil || fi.Size() != int64(len(data)) {
		t.Errorf("stat beside a passthrough handle: %v, want the size of its copy %d (tail would seek past it)", fi, len(data))
	}
	b, err = os.ReadFile(p)
	if err != nil || !bytes.Equal(b, data) {
		t.Errorf("an open beside a passthrough handle read %d bytes (%v), want the %d of its copy", len(b), err, len(data))
	}
	got := make([]byte, 4)
	if _, err := r.ReadAt(got, 0); err != nil || !bytes.Equal(got, data[:4]) {
		t.Errorf("the passthrough handle read %x (%v)", got, err)
	}
	r.Close()
	// RELEASE is asynchronous, and the attributes pinned meanwhile must
	// expire (--metadata-ttl 1s).
	time.Sleep(1300 * time.Millisecond)
	if b := readUncached(t, p); !bytes.Equal(b, next) {
		t.Errorf("after the passthrough handles closed, a new open read %d bytes, not the new version's %d", len(b), len(next))
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != int64(len(next)) {
		t.Errorf("stat after the passthrough handles closed: %v %v, want %d", fi, err, len(next))
	}
}

// On a read-write mount with --copy-cache-size, files opened again are
// passthrough opens of their local copy as on a read-only one; a writer
// that opens a file while such handles are open (the kernel allows only
// passthrough opens then) writes into the copy, which every open handle
// reads, and close, fsync and O_APPEND behave as on any file: what they
// report written is in S3. Page-cache writers and readers beside each
// other, and opens right after a writer's close, get no EIO.
func TestLocalCopiesOnAReadWriteMount(t *testing.T) {
	e := newEnv(t)
	addr := metricsAddr(t)
	mnt := e.mount("--metrics-addr", addr, "--copy-cache-size", "64M", "--cache-dir", t.TempDir(), "--metadata-ttl", "1s")
	reads := func() float64 { return scrape(t, addr)[`s3mount_fuse_ops_total{errno="OK",op="READ"}`] }
	data := harness.RandomBytes(3<<20 + 5)
	e.put("rw/obj.bin", data)
	p := filepath.Join(mnt, "rw", "obj.bin")
	if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("first read: %d bytes, %v", len(b), err)
	}
	time.Sleep(300 * time.Millisecond) // RELEASE is asynchronous

	// A reader of the copy: a passthrough open (no READ reaches us).
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	unix.Fadvise(int(r.Fd()), 0, 0, unix.FADV_DONTNEED)
	r0 := reads()
	got := make([]byte, len(data))
	if _, err := r.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read of the copy: %v", err)
	}
	if n := reads() - r0; n != 0 {
		t.Fatalf("reading a file with a complete copy sent %v READs: not a passthrough open, the rest proves nothing", n)
	}

	// A writer beside it: O_TRUNC, new bytes, close.
	next := harness.RandomBytes(1<<20 + 3)
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatalf("open for writing beside a passthrough reader: %v", err)
	}
	if _, err := w.Write(next); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != int64(len(next)) {
		t.Errorf("stat while writing: %v %v, want size %d", fi, err, len(next))
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if b := e.get("rw/obj.bin"); !bytes.Equal(b, next) {
		t.Fatalf("after close S3 holds %d bytes, not the %d written", len(b), len(next))
	}
	got = make([]byte, len(next))
	if n, err := r.ReadAt(got, 0); n != len(next) || !bytes.Equal(got, next) {
		t.Errorf("the open reader read %d bytes (%v), not what was written", n, err)
	}

	// O_APPEND (a shell's >>), then a write in the middle and fsync with
	// the descriptor still open.
	a, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("tail\n")); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	next = append(next, "tail\n"...)
	if b := e.get("rw/obj.bin"); !bytes.Equal(b, next) {
		t.Fatalf("after >> S3 holds %d bytes, want %d ending in tail", len(b), len(next))
	}
	rw, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rw.WriteAt([]byte("MIDDLE"), 1000); err != nil {
		t.Fatal(err)
	}
	if err := rw.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	copy(next[1000:], "MIDDLE")
	if b := e.get("rw/obj.bin"); !bytes.Equal(b, next) {
		t.Errorf("after fsync S3 does not hold the bytes written in the middle")
	}
	rw.Close()
	r.Close()
	time.Sleep(300 * time.Millisecond)

	// No passthrough handle open now: a page-cache writer, a reader
	// beside it, and an open right after each close.
	for i := range 20 {
		body := []byte(fmt.Sprintf("round %d\n", i))
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatalf("round %d: write: %v", i, err)
		}
		if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, body) {
			t.Fatalf("round %d: read right after the write's close: %q, %v", i, b, err)
		}
		w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		rd, err := os.Open(p)
		if err != nil {
			w.Close()
			t.Fatalf("round %d: a reader beside a writer: %v", i, err)
		}
		w.Write([]byte("more\n"))
		w.Close()
		io.ReadAll(rd)
		rd.Close()
	}
	want := "round 19\nmore\n"
	if b := e.get("rw/obj.bin"); string(b) != want {
		t.Errorf("at the end S3 holds %q, want %q", b, want)
	}
}

// What a passthrough writer must get right beyond plain writes: stores
// through a shared mmap to a page already dirty (after an fsync uploaded
// it), O_DIRECT writes at any alignment, --staging-limit, and two inodes of
// one version (a file renamed, then copied back) never sharing a copy.
func TestLocalCopiesPassthroughWriterEdges(t *testing.T) {
	e := newEnv(t)
	addr := metricsAddr(t)
	mnt := e.mount("--metrics-addr", addr, "--copy-cache-size", "64M", "--cache-dir", t.TempDir(),
		"--metadata-ttl", "1s", "--staging-limit", "4M")
	reads := func() float64 { return scrape(t, addr)[`s3mount_fuse_ops_total{errno="OK",op="READ"}`] }
	// held opens a passthrough reader of key (its copy made first) and
	// checks that it is one.
	held := func(key string, data []byte) *os.File {
		t.Helper()
		e.put(key, data)
		r := openFromCopy(t, filepath.Join(mnt, key), data)
		unix.Fadvise(int(r.Fd()), 0, 0, unix.FADV_DONTNEED)
		r0 := reads()
		if _, err := r.ReadAt(make([]byte, len(data)), 0); err != nil {
			t.Fatal(err)
		}
		if n := reads() - r0; n != 0 {
			t.Fatalf("%s: %v READs reached the daemon: not a passthrough reader", key, n)
		}
		return r
	}
	data := harness.RandomBytes(2<<20 + 11)

	// mmap: a store to a page left dirty after an fsync.
	r := held("e/mmap.bin", data)
	p := filepath.Join(mnt, "e", "mmap.bin")
	fd, err := unix.Open(p, unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	m[0] = 'A'
	if err := unix.Fsync(fd); err != nil {
		t.Fatal(err)
	}
	m[0] = 'B'
	unix.Msync(m, unix.MS_SYNC)
	unix.Munmap(m)
	if err := unix.Close(fd); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if b := e.get("e/mmap.bin"); len(b) == 0 || b[0] != 'B' {
		t.Errorf("after mmap stores A, fsync, B, msync, close: S3 starts with %q, want B", b[:1])
	}

	// O_DIRECT at an offset and size no block device would take.
	r = held("e/direct.bin", data)
	p = filepath.Join(mnt, "e", "direct.bin")
	fd, err = unix.Open(p, unix.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := unix.Pwrite(fd, []byte("unaligned"), 1001); err != nil || n != 9 {
		t.Errorf("O_DIRECT pwrite of 9 bytes at 1001 beside a passthrough reader: %d, %v", n, err)
	}
	if err := unix.Close(fd); err != nil {
		t.Errorf("close: %v", err)
	}
	r.Close()
	want := append([]byte(nil), data...)
	copy(want[1001:], "unaligned")
	if b := e.get("e/direct.bin"); !bytes.Equal(b, want) {
		t.Errorf("after the O_DIRECT write S3 does not hold it")
	}

	// An O_DIRECT reader beside a passthrough one: its reads come to the
	// daemon, at any alignment.
	r = held("e/dread.bin", data)
	fd, err = unix.Open(filepath.Join(mnt, "e", "dread.bin"), unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	ub := make([]byte, 1000)
	if n, err := unix.Pread(fd, ub, 12345); err != nil || n != 1000 || !bytes.Equal(ub, data[12345:13345]) {
		t.Errorf("O_DIRECT pread of 1000 bytes at 12345 beside a passthrough reader: %d, %v", n, err)
	}
	unix.Close(fd)
	r.Close()

	// --staging-limit 4M: growing the copy past it fails with ENOSPC.
	r = held("e/limit.bin", data)
	w, err := os.OpenFile(filepath.Join(mnt, "e", "limit.bin"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, werr := w.Write(make([]byte, 8<<20))
	w.Close()
	r.Close()
	if !errors.Is(werr, unix.ENOSPC) {
		t.Errorf("8 MiB appended past --staging-limit 4M beside a passthrough reader: %v, want ENOSPC", werr)
	}

	// Renamed while held, then copied back (same bytes, same ETag): the
	// new file must not read, nor upload, what is written to the old one.
	r = held("e/le", data)
	le, lf := filepath.Join(mnt, "e", "le"), filepath.Join(mnt, "e", "lf")
	if err := os.Rename(le, lf); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(lf); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("read after rename: %v", err)
	}
	if err := os.WriteFile(le, data, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond) // --metadata-ttl 1s
	if b, err := os.ReadFile(le); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("read of the copy back: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	r2, err := os.Open(le)
	if err != nil {
		t.Fatal(err)
	}
	wf, err := os.OpenFile(lf, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wf.WriteAt([]byte("WRITTEN-TO-LF"), 0); err != nil {
		t.Fatal(err)
	}
	if err := wf.Close(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 13)
	if _, err := r2.ReadAt(got, 0); err != nil || !bytes.Equal(got, data[:13]) {
		t.Errorf("le read %q (%v) after a write to lf", got, err)
	}
	r2.Close()
	r.Close()
	if b := e.get("e/le"); !bytes.Equal(b, data) {
		t.Errorf("le in S3 changed by a write to lf")
	}
	if b := e.get("e/lf"); !bytes.HasPrefix(b, []byte("WRITTEN-TO-LF")) {
		t.Errorf("lf in S3 lacks its write")
	}
}

// A passthrough writer's bytes not yet uploaded survive a crash of the
// mount, as a staged writer's do: its copy's file is a staging file with a
// sidecar, moved to recovery/ by the next mount. And a write that the
// cache directory's file system cuts short is a short write: what the
// program was told it wrote is what is uploaded.
func TestLocalCopiesPassthroughWriterCrashAndFullDisk(t *testing.T) {
	e := newEnv(t)
	cacheDir := t.TempDir()
	if err := unix.Mount("tmpfs", cacheDir, "tmpfs", 0, "size=12m"); err != nil {
		t.Fatalf("a 12 MiB tmpfs for --cache-dir: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(cacheDir, unix.MNT_DETACH) })
	mnt := e.mount("--copy-cache-size", "8M", "--cache-dir", cacheDir, "--metadata-ttl", "1s")
	data := harness.RandomBytes(3_000_000)
	hold := func(mnt, key string) *os.File {
		t.Helper()
		return openFromCopy(t, filepath.Join(mnt, key), data)
	}

	// Full disk: 1 MiB appends until ENOSPC (the copy itself takes 3 MB
	// of the 12).
	e.put("full.bin", data)
	r := hold(mnt, "full.bin")
	w, err := os.OpenFile(filepath.Join(mnt, "full.bin"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	accepted := int64(len(data))
	var werr error
	for range 20 {
		var n int
		n, werr = w.Write(make([]byte, 1<<20))
		accepted += int64(n)
		if werr != nil {
			break
		}
	}
	w.Close()
	r.Close()
	if !errors.Is(werr, unix.ENOSPC) {
		t.Fatalf("appending 20 MiB into a 12 MiB cache dir: %v, want ENOSPC", werr)
	}
	if b := e.get("full.bin"); int64(len(b)) != accepted {
		t.Errorf("S3 holds %d bytes; the program was told %d were written", len(b), accepted)
	}

	// Crash: kill the daemon with a passthrough writer's bytes not
	// uploaded.
	e.put("crash.bin", data)
	r = hold(mnt, "crash.bin")
	w, err = os.OpenFile(filepath.Join(mnt, "crash.bin"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("UNCOMMITTED"), 1000); err != nil {
		t.Fatal(err)
	}
	pids := daemonsOf(t, mnt)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range pids {
		for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	}
	w.Close()
	r.Close()
	unix.Unmount(mnt, unix.MNT_DETACH)
	e.mount("--copy-cache-size", "8M", "--cache-dir", cacheDir)
	recovered, _ := filepath.Glob(filepath.Join(cacheDir, "recovery", "*crashed*"))
	found := false
	for _, p := range recovered {
		if b, err := os.ReadFile(p); err == nil && len(b) == len(data) && string(b[1000:1011]) == "UNCOMMITTED" {
			found = true
		}
	}
	if !found {
		t.Errorf("after a crash no file under recovery/ holds the passthrough writer's bytes (files: %v)", recovered)
	}
}

// openFromCopy reads p whole (which makes its local copy), checks it holds
// data, waits for the copy to be complete and opens p again: with copies
// on, a passthrough reader of the copy.
func openFromCopy(t *testing.T, p string, data []byte) *os.File {
	t.Helper()
	if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("%s: first read: %d bytes, %v", p, len(b), err)
	}
	time.Sleep(300 * time.Millisecond)
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
