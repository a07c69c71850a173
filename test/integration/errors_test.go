//go:build integration

package integration

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// TestErrors: the errno a program sees for common mistakes, and the S3
// effect of mkdir and unlink.
func TestErrors(t *testing.T) {
	e := newEnv(t)
	e.put("full/f.txt", []byte("keeps full/ non-empty"))
	e.put("victim.txt", []byte("to be removed"))
	e.put("ro/existing.txt", []byte("read-only content"))
	mnt := e.mount()

	t.Run("missing-ENOENT", func(t *testing.T) {
		_, err := os.ReadFile(filepath.Join(mnt, "missing.txt"))
		if !errors.Is(err, syscall.ENOENT) {
			t.Errorf("read missing.txt: %v, want ENOENT", err)
		}
		_, err = os.ReadFile(filepath.Join(mnt, "full", "missing.txt"))
		if !errors.Is(err, syscall.ENOENT) {
			t.Errorf("read full/missing.txt: %v, want ENOENT", err)
		}
		_, err = os.Stat(filepath.Join(mnt, "nodir", "x"))
		if !errors.Is(err, syscall.ENOENT) {
			t.Errorf("stat nodir/x: %v, want ENOENT", err)
		}
	})

	t.Run("rmdir-ENOTEMPTY", func(t *testing.T) {
		err := syscall.Rmdir(filepath.Join(mnt, "full"))
		if !errors.Is(err, syscall.ENOTEMPTY) {
			t.Errorf("rmdir full (object put via S3): %v, want ENOTEMPTY", err)
		}
		if b := e.get("full/f.txt"); string(b) != "keeps full/ non-empty" {
			t.Errorf("full/f.txt after the failed rmdir = %q", b)
		}
		d := filepath.Join(mnt, "made")
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Rmdir(d); !errors.Is(err, syscall.ENOTEMPTY) {
			t.Errorf("rmdir made (made through the mount): %v, want ENOTEMPTY", err)
		}
	})

	t.Run("mkdir-marker", func(t *testing.T) {
		if err := os.Mkdir(filepath.Join(mnt, "newdir"), 0o755); err != nil {
			t.Fatal(err)
		}
		if got := e.keys("newdir"); !slices.Equal(got, []string{"newdir/"}) {
			t.Errorf("keys under newdir after mkdir = %q, want [newdir/]", got)
		}
		if size, err := e.c.HeadObject(e.ctx, e.bucket, "newdir/"); err != nil || size != 0 {
			t.Errorf("HeadObject newdir/ = %d, %v; want an empty marker", size, err)
		}
		if fi, err := os.Stat(filepath.Join(mnt, "newdir")); err != nil || !fi.IsDir() {
			t.Errorf("stat newdir: %v, %v", fi, err)
		}
	})

	t.Run("unlink", func(t *testing.T) {
		if err := os.Remove(filepath.Join(mnt, "victim.txt")); err != nil {
			t.Fatal(err)
		}
		if got := e.keys("victim.txt"); len(got) != 0 {
			t.Errorf("keys after unlink = %q, want none", got)
		}
		if _, err := os.Stat(filepath.Join(mnt, "victim.txt")); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("stat after unlink: %v, want ENOENT", err)
		}
	})

	t.Run("read-only-EROFS", func(t *testing.T) {
		ro := e.mount("--read-only")
		if b, err := os.ReadFile(filepath.Join(ro, "ro/existing.txt")); err != nil || string(b) != "read-only content" {
			t.Errorf("reading on a read-only mount = %q, %v", b, err)
		}
		err := os.WriteFile(filepath.Join(ro, "new.txt"), []byte("no"), 0o644)
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("create on a read-only mount: %v, want EROFS", err)
		}
		f, err := os.OpenFile(filepath.Join(ro, "ro/existing.txt"), os.O_WRONLY|os.O_TRUNC, 0)
		if err == nil {
			f.Close()
		}
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("open existing for write on a read-only mount: %v, want EROFS", err)
		}
		if err := os.Mkdir(filepath.Join(ro, "d"), 0o755); !errors.Is(err, syscall.EROFS) {
			t.Errorf("mkdir on a read-only mount: %v, want EROFS", err)
		}
		if err := os.Remove(filepath.Join(ro, "ro/existing.txt")); !errors.Is(err, syscall.EROFS) {
			t.Errorf("unlink on a read-only mount: %v, want EROFS", err)
		}
		if b := e.get("ro/existing.txt"); string(b) != "read-only content" {
			t.Errorf("ro/existing.txt in S3 changed: %q", b)
		}
		if got := e.keys("new.txt"); len(got) != 0 {
			t.Errorf("new.txt appeared in S3 through a read-only mount")
		}
	})
}
