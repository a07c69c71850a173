package fs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/s3mount/s3mount/s3backend/s3fake"
)

// object returns the object's bytes, failing the test when it is missing.
func object(t *testing.T, c *s3fake.Client, key string) []byte {
	t.Helper()
	b, ok := c.Object(key)
	if !ok {
		t.Fatalf("object %q is missing", key)
	}
	return b
}

func wantObject(t *testing.T, c *s3fake.Client, key string, want []byte) {
	t.Helper()
	if got := object(t, c, key); !bytes.Equal(got, want) {
		t.Errorf("object %q: %d bytes, want %d (first difference at %d)", key, len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestWriteInPlaceReusesUnchangedParts(t *testing.T) {
	c := s3fake.New("bkt")
	orig := randBytes(23<<20, 1) // parts of 5 MiB: 4 full and a tail
	c.PutDirect("big", orig)
	mnt := mountFake(t, c, nil)
	f, err := os.OpenFile(filepath.Join(mnt, "big"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := []byte("patched in the middle of part 3")
	if _, err := f.WriteAt(patch, 11<<20); err != nil {
		t.Fatal(err)
	}
	// Reading back: the patch, and base bytes around it.
	got := make([]byte, 100)
	if _, err := f.ReadAt(got, 11<<20-10); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte(nil), orig[11<<20-10:11<<20]...), patch...)
	want = append(want, orig[11<<20+len(patch):11<<20-10+100]...)
	if !bytes.Equal(got, want) {
		t.Errorf("read back around the patch differs at %d", firstDiff(got, want))
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	exp := append([]byte(nil), orig...)
	copy(exp[11<<20:], patch)
	wantObject(t, c, "big", exp)
	if n := c.Calls("UploadPartCopy"); n != 4 {
		t.Errorf("UploadPartCopy ×%d, want 4 (every part but the patched one)", n)
	}
	if n := c.Calls("UploadPart"); n != 1 {
		t.Errorf("UploadPart ×%d, want 1 (the patched part)", n)
	}
}

func TestWriteAppendTruncateSparse(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("log", []byte("line 1\n"))
	mnt := mountFake(t, c, nil)
	p := filepath.Join(mnt, "log")

	// >> (O_APPEND) to an existing object, twice.
	for _, line := range []string{"line 2\n", "line 3\n"} {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(line); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	wantObject(t, c, "log", []byte("line 1\nline 2\nline 3\n"))

	// truncate -s on a closed file, down then up (zeros).
	if err := os.Truncate(p, 4); err != nil {
		t.Fatal(err)
	}
	wantObject(t, c, "log", []byte("line"))
	if err := os.Truncate(p, 10); err != nil {
		t.Fatal(err)
	}
	wantObject(t, c, "log", []byte("line\x00\x00\x00\x00\x00\x00"))
	if st, err := os.Stat(p); err != nil || st.Size() != 10 {
		t.Errorf("stat after truncate up: %v, %v", st, err)
	}

	// A sparse file: a write far past the end of a new file.
	f, err := os.Create(filepath.Join(mnt, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("end"), 3<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("start"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	exp := make([]byte, 3<<20+3)
	copy(exp, "start")
	copy(exp[3<<20:], "end")
	wantObject(t, c, "sparse", exp)

	// ftruncate of an open writer, down into what was written.
	f, err = os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("LINE"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(2); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	wantObject(t, c, "log", []byte("LI"))
}

func TestWriteTwoHandlesAndReadBack(t *testing.T) {
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, nil)
	p := filepath.Join(mnt, "db")
	a, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("second writable open: %v", err)
	}
	if _, err := a.WriteAt([]byte("AAAA"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteAt([]byte("BB"), 2); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := a.ReadAt(got, 0); err != nil || string(got) != "AABB" {
		t.Errorf("read back through the first handle: %q, %v; want AABB", got, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	wantObject(t, c, "db", []byte("AABB")) // a flush of either descriptor commits
	if _, err := a.WriteAt([]byte("C"), 4); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	wantObject(t, c, "db", []byte("AABBC")) // fsync: in S3 before it returns
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWriteStreamThenRewriteStart(t *testing.T) {
	// Sequential writes past a part (parts already sent), then a write at
	// offset 0, as git fixes a pack's header: the upload completes and the
	// fix is staged on top of it.
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, nil)
	data := randBytes(12<<20, 2)
	f, err := os.Create(filepath.Join(mnt, "pack"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("PACK"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	copy(data, "PACK")
	wantObject(t, c, "pack", data)
}

func TestWriteConflictKeepsData(t *testing.T) {
	for _, tc := range []struct {
		name  string
		exist bool
	}{{"overwrite", true}, {"create", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := s3fake.New("bkt")
			if tc.exist {
				c.PutDirect("doc", []byte("version 1"))
			}
			cacheDir := t.TempDir()
			mnt := mountFake(t, c, func(cfg *Config) { cfg.CacheDir = cacheDir })
			f, err := os.OpenFile(filepath.Join(mnt, "doc"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("my edit"); err != nil {
				t.Fatal(err)
			}
			c.PutDirect("doc", []byte("someone else's")) // another client wins the race
			if err := f.Close(); !errors.Is(err, syscall.ESTALE) {
				t.Errorf("close after a lost race: %v, want ESTALE", err)
			}
			wantObject(t, c, "doc", []byte("someone else's"))
			var kept []string
			waitFor(t, func() bool {
				kept, _ = filepath.Glob(filepath.Join(cacheDir, "recovery", "*bkt%2Fdoc"))
				return len(kept) > 0
			}, "the recovery file") // RELEASE follows close(2) asynchronously
			if len(kept) != 1 {
				t.Fatalf("recovery files: %v, want one", kept)
			}
			if b, err := os.ReadFile(kept[0]); err != nil || string(b) != "my edit" {
				t.Errorf("recovered bytes: %q, %v", b, err)
			}
			var info recoveryInfo
			b, err := os.ReadFile(kept[0] + ".json")
			if err != nil || json.Unmarshal(b, &info) != nil || info.Key != "doc" || info.Bucket != "bkt" {
				t.Errorf("recovery sidecar: %s, %v", b, err)
			}
		})
	}
}

func TestWriteUnlinkedWhileOpenStaysReadable(t *testing.T) {
	c := s3fake.New("bkt")
	data := randBytes(300<<10, 3)
	c.PutDirect("tmp", data)
	mnt := mountFake(t, c, nil)
	p := filepath.Join(mnt, "tmp")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat after unlink: %v, want ENOENT", err)
	}
	got := make([]byte, len(data))
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read through the open handle after unlink: %v", err)
	}
	f.Close()
	waitFor(t, func() bool { _, ok := c.Object("tmp"); return !ok }, "the object deleted after the last close")
}

func TestWriteStagingLimitIsENOSPC(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("f", randBytes(1<<20, 4))
	mnt := mountFake(t, c, func(cfg *Config) { cfg.StagingLimit = 256 << 10 })
	f, err := os.OpenFile(filepath.Join(mnt, "f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, 512<<10), 100); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("a write past --staging-limit: %v, want ENOSPC", err)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("timed out waiting for %s", what)
}

func TestWriteOrphanUploadsAreAborted(t *testing.T) {
	c := s3fake.New("bkt")
	id, err := c.CreateMultipart(t.Context(), "half", nil)
	if err != nil {
		t.Fatal(err)
	}
	// A record left by a mount whose process is gone.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	os.MkdirAll(filepath.Join(cacheDir, "uploads"), 0o700)
	rec := fmt.Sprintf(`{"bucket":"bkt","key":"half","upload_id":%q}`, id)
	if err := os.WriteFile(filepath.Join(cacheDir, "uploads", fmt.Sprintf("%d-1.json", dead.Process.Pid)), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	mountFake(t, c, func(cfg *Config) { cfg.CacheDir = cacheDir })
	waitFor(t, func() bool { return c.Uploads() == 0 }, "the orphan upload to be aborted")
	if ents, _ := os.ReadDir(filepath.Join(cacheDir, "uploads")); len(ents) != 0 {
		t.Errorf("upload records left: %d", len(ents))
	}
}

func TestWriteRenameWhileOpenForWriting(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("old-existing", []byte("0123456789"))
	mnt := mountFake(t, c, nil)
	// A new file, not yet in S3, and a stream past one part (an upload in
	// progress under the old name).
	for _, size := range []int{100, 7 << 20} {
		name := fmt.Sprintf("new-%d", size)
		data := randBytes(size, int64(size))
		f, err := os.Create(filepath.Join(mnt, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data[:size/2]); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(mnt, name), filepath.Join(mnt, name+".moved")); err != nil {
			t.Fatalf("rename while open for writing: %v", err)
		}
		if _, err := f.Write(data[size/2:]); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		wantObject(t, c, name+".moved", data)
		if _, ok := c.Object(name); ok {
			t.Errorf("%s: the old name exists in S3", name)
		}
	}
	// An existing object edited in place, renamed before close.
	f, err := os.OpenFile(filepath.Join(mnt, "old-existing"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("AB"), 2); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "old-existing"), filepath.Join(mnt, "renamed")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	wantObject(t, c, "renamed", []byte("01AB456789"))
	if _, ok := c.Object("old-existing"); ok {
		t.Error("the old name exists in S3")
	}
}

func TestWriteRenameOverAnExistingFileOpenForWriting(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("src", []byte("renamed content"))
	c.PutDirect("dst", []byte("old dst"))
	mnt := mountFake(t, c, nil)
	w, err := os.OpenFile(filepath.Join(mnt, "dst"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("OLD"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "src"), filepath.Join(mnt, "dst")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the release follows close(2)
	if got, ok := c.Object("dst"); !ok || string(got) != "renamed content" {
		t.Errorf("dst = %q (exists %v), want the renamed file's content: the replaced file's close must neither upload nor delete", got, ok)
	}
}

func TestWriteRecreateAfterUnlinkWhileOpen(t *testing.T) {
	// sqlite's journal: written, closed, unlinked (its RELEASE may not
	// have arrived: the file still counts as open), created again at
	// once. The new file must commit (no If-None-Match failure against
	// the old object) and the old object's delayed delete must not remove
	// the new one.
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, nil)
	p := filepath.Join(mnt, "db-journal")
	for i := range 20 {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte(fmt.Sprintf("journal %d", i)), 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			f.Close() // an open descriptor would keep the mount busy
			t.Fatalf("round %d: fsync: %v", i, err)
		}
		if i%2 == 0 {
			// Unlink while still open, then close.
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatalf("round %d: close: %v", i, err)
			}
		} else {
			if err := f.Close(); err != nil {
				t.Fatalf("round %d: close: %v", i, err)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("last"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close of the recreated file: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // releases and delayed deletes
	wantObject(t, c, "db-journal", []byte("last"))
}
