package fs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend"
	"github.com/s3mount/s3mount/s3backend/s3fake"
)

func TestMetadataDecode(t *testing.T) {
	lm := time.Date(2020, 5, 6, 7, 8, 9, 500e6, time.UTC)
	for _, tc := range []struct {
		meta      map[string]string
		mode      uint32
		uid, gid  uint32
		hasUID    bool
		mtime     time.Time
		hasMTime  bool
		isSymlink bool
	}{
		{meta: nil, mtime: lm.Truncate(time.Second)},
		{meta: map[string]string{"mode": "33188", "uid": "1000", "gid": "100", "mtime": "1600000000"},
			mode: 0o100644, uid: 1000, gid: 100, hasUID: true, mtime: time.Unix(1600000000, 0), hasMTime: true},
		{meta: map[string]string{"mode": "41471"}, mode: 0o120777, mtime: lm.Truncate(time.Second), isSymlink: true},
		{meta: map[string]string{"mtime": "1600000000.25"}, mtime: time.Unix(1600000000, 250e6), hasMTime: true},
		{meta: map[string]string{"mtime": "1600000000.123456789123"}, mtime: time.Unix(1600000000, 123456789), hasMTime: true},
		{meta: map[string]string{"mode": "rwx", "uid": "-1", "mtime": "soon"}, mtime: lm.Truncate(time.Second)},
		{meta: map[string]string{"mtime": "12."}, mtime: lm.Truncate(time.Second)},
	} {
		st := statFromHead(s3backend.ObjectInfo{Size: 3, ETag: `"e"`, LastModified: lm, Meta: tc.meta})
		if !st.MetaKnown || st.Mode != tc.mode || st.UID != tc.uid || st.GID != tc.gid || st.HasUID != tc.hasUID ||
			!st.MTime.Equal(tc.mtime) || st.HasMTime != tc.hasMTime || isSymlink(st) != tc.isSymlink {
			t.Errorf("statFromHead(%v) = %+v", tc.meta, st)
		}
	}
	m := encodeMeta(map[string]string{"color": "blue"}, sIFREG, 0o640, 7, 8, time.Unix(1234567890, 999))
	want := map[string]string{"color": "blue", "mode": "33184", "uid": "7", "gid": "8", "mtime": "1234567890"}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Errorf("encodeMeta = %v, want %v", m, want)
	}
}

// s3fsObject stores an object with s3fs's metadata, as s3fs would.
func s3fsObject(c *s3fake.Client, key string, body []byte, mode, uid, gid uint32, mtime int64) {
	c.PutDirect(key, body)
	c.SetMeta(key, map[string]string{"mode": strconv.Itoa(int(mode)), "uid": strconv.Itoa(int(uid)),
		"gid": strconv.Itoa(int(gid)), "mtime": strconv.FormatInt(mtime, 10)})
}

func statT(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func TestSemanticsS3fsMetadataSameFromLookupAndListing(t *testing.T) {
	c := s3fake.New("bkt")
	s3fsObject(c, "d/exe", []byte("#!/bin/sh\n"), syscall.S_IFREG|0o750, 1234, 5678, 1000000000)
	c.PutDirect("d/plain", []byte("no metadata"))
	// Lookup first (HEAD).
	mnt := mountFake(t, c, nil)
	byLookup := statT(t, filepath.Join(mnt, "d/exe"))
	plainLookup := statT(t, filepath.Join(mnt, "d/plain"))
	// Listing first, in a fresh mount (readdirplus, then stat).
	mnt2 := mountFake(t, c, nil)
	if _, err := os.ReadDir(filepath.Join(mnt2, "d")); err != nil {
		t.Fatal(err)
	}
	heads := c.Calls("HeadObject")
	byListing := statT(t, filepath.Join(mnt2, "d/exe"))
	plainListing := statT(t, filepath.Join(mnt2, "d/plain"))
	if n := c.Calls("HeadObject") - heads; n != 0 {
		t.Errorf("stat after readdir made %d HEADs, want 0", n)
	}
	for _, st := range []*syscall.Stat_t{byLookup, byListing} {
		if st.Mode != syscall.S_IFREG|0o750 || st.Uid != 1234 || st.Gid != 5678 || st.Mtim.Sec != 1000000000 {
			t.Errorf("s3fs object: mode %o uid %d gid %d mtime %d; want 100750 1234 5678 1000000000",
				st.Mode, st.Uid, st.Gid, st.Mtim.Sec)
		}
	}
	if plainLookup.Mode != syscall.S_IFREG|0o644 || plainLookup.Uid != uint32(os.Getuid()) ||
		plainLookup.Mtim != plainListing.Mtim || plainLookup.Mode != plainListing.Mode {
		t.Errorf("object without metadata: lookup mode %o mtime %v, listing mode %o mtime %v; want the defaults, equal",
			plainLookup.Mode, plainLookup.Mtim, plainListing.Mode, plainListing.Mtim)
	}
	// Within the TTL a second listing needs no HEAD.
	heads = c.Calls("HeadObject")
	if _, err := os.ReadDir(filepath.Join(mnt2, "d")); err != nil {
		t.Fatal(err)
	}
	if n := c.Calls("HeadObject") - heads; n != 0 {
		t.Errorf("a second readdir within the TTL made %d HEADs, want 0", n)
	}
}

func TestSemanticsChmodUtimesRewriteMetadataInPlace(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("f", []byte("content"))
	mnt := mountFake(t, c, nil)
	p := filepath.Join(mnt, "f")
	before := statT(t, p)
	heads := c.Calls("HeadObject")
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if n := c.Calls("CopyObject"); n != 1 {
		t.Fatalf("chmod made %d CopyObject, want 1", n)
	}
	m := c.Meta("f")
	if m["mode"] != strconv.Itoa(syscall.S_IFREG|0o600) || m["mtime"] != strconv.FormatInt(before.Mtim.Sec, 10) {
		t.Errorf("after chmod, metadata %v; want mode %d and the old mtime %d", m, syscall.S_IFREG|0o600, before.Mtim.Sec)
	}
	when := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(p, when, when); err != nil {
		t.Fatal(err)
	}
	if n := c.Calls("CopyObject"); n != 2 {
		t.Fatalf("chmod + utimes made %d CopyObject, want 2", n)
	}
	if n := c.Calls("HeadObject") - heads; n != 0 {
		t.Errorf("chmod + utimes made %d HEADs, want 0", n)
	}
	if got, _ := c.Object("f"); string(got) != "content" {
		t.Errorf("content after metadata rewrites: %q", got)
	}
	if m := c.Meta("f"); m["mtime"] != strconv.FormatInt(when.Unix(), 10) || m["mode"] != strconv.Itoa(syscall.S_IFREG|0o600) {
		t.Errorf("after utimes, metadata %v", m)
	}
	// A fresh mount (as after a remount) shows them.
	fresh := statT(t, filepath.Join(mountFake(t, c, nil), "f"))
	if fresh.Mode != syscall.S_IFREG|0o600 || fresh.Mtim.Sec != when.Unix() {
		t.Errorf("fresh mount: mode %o mtime %d, want 100600 %d", fresh.Mode, fresh.Mtim.Sec, when.Unix())
	}
}

func TestSemanticsChmodOfAChangedObjectIsESTALE(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("f", []byte("one"))
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Meta = cache.NewMeta(time.Hour, 100, nil) })
	p := filepath.Join(mnt, "f")
	statT(t, p)
	c.PutDirect("f", []byte("two, by another client"))
	if err := os.Chmod(p, 0o600); !errors.Is(err, syscall.ESTALE) {
		t.Errorf("chmod of an object changed elsewhere: %v, want ESTALE", err)
	}
	if got, _ := c.Object("f"); string(got) != "two, by another client" {
		t.Errorf("the other client's content was replaced: %q", got)
	}
}

func TestSemanticsUploadCarriesMetadata(t *testing.T) {
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, nil)
	p := filepath.Join(mnt, "new")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := c.Meta("new")
	mt, _ := strconv.ParseInt(m["mtime"], 10, 64)
	if m["mode"] != strconv.Itoa(syscall.S_IFREG|0o600) || m["uid"] != strconv.Itoa(os.Getuid()) ||
		time.Since(time.Unix(mt, 0)) > time.Minute {
		t.Errorf("new file's metadata %v, want mode %d, uid %d, mtime now", m, syscall.S_IFREG|0o600, os.Getuid())
	}
	// cp -p: chmod and utimes while the file is open for writing reach S3
	// with the upload, not as CopyObjects.
	f, err := os.Create(filepath.Join(mnt, "cp-p"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := f.Chmod(0o751); err != nil {
		t.Fatal(err)
	}
	when := time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)
	if err := os.Chtimes(f.Name(), when, when); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if n := c.Calls("CopyObject"); n != 0 {
		t.Errorf("setattr on an open writer made %d CopyObject, want 0", n)
	}
	if m := c.Meta("cp-p"); m["mode"] != strconv.Itoa(syscall.S_IFREG|0o751) || m["mtime"] != strconv.FormatInt(when.Unix(), 10) {
		t.Errorf("metadata after cp -p's pattern: %v", m)
	}
	st := statT(t, f.Name())
	if st.Mtim.Sec != when.Unix() || st.Mode != syscall.S_IFREG|0o751 {
		t.Errorf("stat after close: mode %o mtime %d", st.Mode, st.Mtim.Sec)
	}
}

func TestSemanticsSymlinks(t *testing.T) {
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, nil)
	l := filepath.Join(mnt, "link")
	if err := os.Symlink("some/target file", l); err != nil {
		t.Fatal(err)
	}
	if got, ok := c.Object("link"); !ok || string(got) != "some/target file" {
		t.Errorf("symlink object body %q, %v", got, ok)
	}
	if m := c.Meta("link"); m["mode"] != strconv.Itoa(syscall.S_IFLNK|0o777) {
		t.Errorf("symlink metadata %v, want mode %d", m, syscall.S_IFLNK|0o777)
	}
	if got, err := os.Readlink(l); err != nil || got != "some/target file" {
		t.Errorf("readlink: %q, %v", got, err)
	}
	if err := os.Symlink("other", l); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("symlink over an existing name: %v, want EEXIST", err)
	}
	// An s3fs-made symlink, seen through a listing and a lookup.
	c.PutDirect("dir/s3fs-link", []byte("../link"))
	c.SetMeta("dir/s3fs-link", map[string]string{"mode": "41471"})
	for _, viaListing := range []bool{true, false} {
		m := mountFake(t, c, nil)
		if viaListing {
			ents, err := os.ReadDir(filepath.Join(m, "dir"))
			if err != nil || len(ents) != 1 || ents[0].Type() != os.ModeSymlink {
				t.Fatalf("readdir: %v, %v", ents, err)
			}
		}
		p := filepath.Join(m, "dir/s3fs-link")
		if st := statT(t, p); st.Mode != syscall.S_IFLNK|0o777 || st.Size != 7 {
			t.Errorf("lstat: mode %o size %d", st.Mode, st.Size)
		}
		if got, err := os.Readlink(p); err != nil || got != "../link" {
			t.Errorf("readlink: %q, %v", got, err)
		}
		// Through the link: dir/../link → link → "some/target file" (absent).
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat through a dangling chain: %v", err)
		}
	}
	// Renaming a symlink keeps it one.
	if err := os.Rename(l, filepath.Join(mnt, "link2")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.Readlink(filepath.Join(mnt, "link2")); err != nil || got != "some/target file" {
		t.Errorf("readlink after rename: %q, %v", got, err)
	}
	if err := os.Remove(filepath.Join(mnt, "link2")); err != nil {
		t.Errorf("rm of a symlink: %v", err)
	}
	if _, ok := c.Object("link2"); ok {
		t.Error("the removed symlink's object is still there")
	}
}

func TestSemanticsRenameOverALargerFileShowsTheNewSize(t *testing.T) {
	c := s3fake.New("bkt")
	s3fsObject(c, "src", []byte("payload"), syscall.S_IFREG|0o640, 1, 2, 1111111111)
	big := bytes.Repeat([]byte("old "), 5000)
	c.PutDirect("dst", big)
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Meta = cache.NewMeta(time.Hour, 100, nil) })
	dst := filepath.Join(mnt, "dst")
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read dst: %d bytes, %v", len(got), err)
	}
	// Keep dst open: its inode stays known to the kernel.
	old, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := os.Rename(filepath.Join(mnt, "src"), dst); err != nil {
		t.Fatal(err)
	}
	st := statT(t, dst)
	if st.Size != 7 || st.Mode != syscall.S_IFREG|0o640 || st.Mtim.Sec != 1111111111 {
		t.Errorf("after rename: size %d mode %o mtime %d, want 7 100640 1111111111", st.Size, st.Mode, st.Mtim.Sec)
	}
	if got, err := os.ReadFile(dst); err != nil || string(got) != "payload" {
		t.Errorf("read after rename: %q, %v", clipB(got), err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "src")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat src after rename: %v", err)
	}
	if got, _ := c.Object("dst"); string(got) != "payload" {
		t.Errorf("dst object %q", clipB(got))
	}
	if m := c.Meta("dst"); m["mtime"] != "1111111111" {
		t.Errorf("dst metadata %v, want the source's", m)
	}
}

func clipB(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

func TestSemanticsRenameKeepsMTimeOfObjectsWithoutMetadata(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("a", []byte("x"))
	mnt := mountFake(t, c, nil)
	before := statT(t, filepath.Join(mnt, "a"))
	time.Sleep(1100 * time.Millisecond) // the copy's LastModified is a later second
	if err := os.Rename(filepath.Join(mnt, "a"), filepath.Join(mnt, "b")); err != nil {
		t.Fatal(err)
	}
	fresh := statT(t, filepath.Join(mountFake(t, c, nil), "b"))
	if fresh.Mtim.Sec != before.Mtim.Sec {
		t.Errorf("mtime after rename %d, want %d", fresh.Mtim.Sec, before.Mtim.Sec)
	}
}

func TestSemanticsRenameDirectoryPastAPage(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("d/", nil)
	const n = 1200
	for i := 0; i < n; i++ {
		c.PutDirect(fmt.Sprintf("d/f%04d", i), []byte(fmt.Sprintf("file %d", i)))
	}
	c.PutDirect("d/sub/deeper/x", []byte("deep"))
	c.PutDirect("other", []byte("untouched"))
	mnt := mountFake(t, c, nil)
	// The kernel knows the subtree before the rename.
	if got, err := os.ReadFile(filepath.Join(mnt, "d/sub/deeper/x")); err != nil || string(got) != "deep" {
		t.Fatalf("read before: %q, %v", got, err)
	}
	if _, err := os.ReadDir(filepath.Join(mnt, "d")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "e")); err != nil {
		t.Fatal(err)
	}
	var under []string
	for _, k := range c.Keys() {
		if strings.HasPrefix(k, "d/") {
			t.Errorf("key %s left under the old name", k)
		}
		if strings.HasPrefix(k, "e/") {
			under = append(under, k)
		}
	}
	if len(under) != n+2 {
		t.Errorf("%d keys under e/, want %d (files, marker, deep key)", len(under), n+2)
	}
	for _, i := range []int{0, 999, 1000, n - 1} {
		p := filepath.Join(mnt, fmt.Sprintf("e/f%04d", i))
		if got, err := os.ReadFile(p); err != nil || string(got) != fmt.Sprintf("file %d", i) {
			t.Errorf("%s: %q, %v", p, got, err)
		}
	}
	// Nodes the kernel knew under the old name now read the new keys.
	if got, err := os.ReadFile(filepath.Join(mnt, "e/sub/deeper/x")); err != nil || string(got) != "deep" {
		t.Errorf("deep file after rename: %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "e/sub/deeper/new"), []byte("n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Object("e/sub/deeper/new"); !ok {
		t.Errorf("a file created in the renamed tree is not under e/: keys %v", c.Keys()[len(c.Keys())-4:])
	}
	if ents, err := os.ReadDir(filepath.Join(mnt, "e")); err != nil || len(ents) != n+1 {
		t.Errorf("readdir e: %d entries, %v; want %d", len(ents), err, n+1)
	}
	if _, err := os.Stat(filepath.Join(mnt, "d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat d after rename: %v", err)
	}
}

func TestSemanticsRenameDirectoryBeyondTheLimitIsEXDEV(t *testing.T) {
	c := s3fake.New("bkt")
	for i := 0; i < 11; i++ {
		c.PutDirect(fmt.Sprintf("d/f%d", i), []byte("x"))
	}
	mnt := mountFake(t, c, func(cfg *Config) { cfg.MaxRenameObjects = 10 })
	if err := os.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "e")); !errors.Is(err, syscall.EXDEV) {
		t.Errorf("rename of 11 objects with a limit of 10: %v, want EXDEV", err)
	}
	if n := c.Calls("CopyObject"); n != 0 {
		t.Errorf("%d CopyObject, want 0", n)
	}
	c.Delete(nil, "d/f10") //nolint:staticcheck // the fake ignores the context
	mnt = mountFake(t, c, func(cfg *Config) { cfg.MaxRenameObjects = 10 })
	if err := os.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "e")); err != nil {
		t.Errorf("rename of 10 objects with a limit of 10: %v", err)
	}
}

func TestSemanticsRenameDirectoryFailureKeepsTheSource(t *testing.T) {
	c := s3fake.New("bkt")
	for i := 0; i < 40; i++ {
		c.PutDirect(fmt.Sprintf("d/f%02d", i), []byte("x"))
	}
	c.SetFail(func(op, key string) error {
		if op == "CopyObject" && key == "e/f17" {
			return s3backend.ErrUnavailable
		}
		return nil
	})
	mnt := mountFake(t, c, nil)
	if err := os.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "e")); !errors.Is(err, syscall.EIO) {
		t.Errorf("rename with a failing copy: %v, want EIO", err)
	}
	var src, dst int
	for _, k := range c.Keys() {
		switch {
		case strings.HasPrefix(k, "d/"):
			src++
		case strings.HasPrefix(k, "e/"):
			dst++
		}
	}
	if src != 40 || dst != 0 {
		t.Errorf("after a failed directory rename: %d keys under d/ (want 40), %d under e/ (want 0)", src, dst)
	}
}

func TestSemanticsRenameDirectoryOntoNonEmptyIsENOTEMPTY(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("d/a", []byte("x"))
	c.PutDirect("e/b", []byte("y"))
	c.PutDirect("f/", nil)
	c.PutDirect("g", []byte("file"))
	mnt := mountFake(t, c, nil)
	// syscall.Rename: os.Rename refuses an existing directory itself.
	if err := syscall.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "e")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("rename onto a non-empty directory: %v, want ENOTEMPTY", err)
	}
	if err := syscall.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "g")); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("rename of a directory onto a file: %v, want ENOTDIR", err)
	}
	if err := syscall.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "f")); err != nil {
		t.Errorf("rename onto an empty directory: %v", err)
	}
	if got, _ := c.Object("f/a"); string(got) != "x" {
		t.Errorf("f/a = %q", got)
	}
}

func TestSemanticsRenameOfAFileOpenForWriting(t *testing.T) {
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, nil)
	// Not in S3 yet: only the key changes.
	f, err := os.Create(filepath.Join(mnt, "tmp.swp"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("new content")); err != nil {
		t.Fatal(err)
	}
	before := c.Calls("CopyObject") + c.Calls("PutObject") + c.Calls("DeleteObject")
	if err := os.Rename(f.Name(), filepath.Join(mnt, "final")); err != nil {
		t.Fatalf("rename of a file being written: %v", err)
	}
	if n := c.Calls("CopyObject") + c.Calls("PutObject") + c.Calls("DeleteObject") - before; n != 0 {
		t.Errorf("renaming a file not yet uploaded made %d S3 writes, want 0", n)
	}
	if st, err := os.Stat(filepath.Join(mnt, "final")); err != nil || st.Size() != 11 {
		t.Errorf("stat final while open: %v, %v", st, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, ok := c.Object("final"); !ok || string(got) != "new content" {
		t.Errorf("final = %q, %v", got, ok)
	}
	if _, ok := c.Object("tmp.swp"); ok {
		t.Error("the old name reached S3")
	}
	// In S3 already, open again for writing: copy, delete, and the
	// upload lands under the new name.
	// The first handle's release follows close(2) asynchronously; until
	// then a second writer is EBUSY.
	for i := 0; i < 100; i++ {
		f, err = os.OpenFile(filepath.Join(mnt, "final"), os.O_WRONLY|os.O_TRUNC, 0)
		if !errors.Is(err, syscall.EBUSY) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("v2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.Name(), filepath.Join(mnt, "moved")); err != nil {
		t.Fatalf("rename of an existing file open for writing: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Object("moved"); string(got) != "v2" {
		t.Errorf("moved = %q, want v2", got)
	}
	if _, ok := c.Object("final"); ok {
		t.Error("the old key still exists")
	}
}

func TestSemanticsRmOfAnImplicitDirectory(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("imp/a", []byte("x"))
	mnt := mountFake(t, c, nil)
	if _, err := os.ReadDir(filepath.Join(mnt, "imp")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Unlink(filepath.Join(mnt, "imp/a")); err != nil {
		t.Fatal(err)
	}
	// What rm -r does next (os.RemoveAll would take ENOENT for success).
	if err := syscall.Rmdir(filepath.Join(mnt, "imp")); err != nil {
		t.Errorf("rmdir of a directory without a marker, emptied: %v", err)
	}
	if keys := c.Keys(); len(keys) != 0 {
		t.Errorf("keys left: %q", keys)
	}
}

func TestSemanticsSetattrDuringAMultipartUploadReachesS3(t *testing.T) {
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, nil)
	f, err := os.Create(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(randBytes(6<<20, 3)); err != nil { // past one part: CreateMultipartUpload is sent
		t.Fatal(err)
	}
	if err := f.Chmod(0o700); err != nil {
		t.Fatal(err)
	}
	when := time.Date(2005, 5, 5, 5, 5, 5, 0, time.UTC)
	if err := os.Chtimes(f.Name(), when, when); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The handle's release, which stores them, follows close(2).
	want := map[string]string{"mode": strconv.Itoa(syscall.S_IFREG | 0o700), "mtime": strconv.FormatInt(when.Unix(), 10)}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := c.Meta("big")
		if m["mode"] == want["mode"] && m["mtime"] == want["mtime"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metadata after close: %v, want %v", m, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, _ := c.Object("big"); !bytes.Equal(got, randBytes(6<<20, 3)) {
		t.Error("content changed by the metadata rewrite")
	}
}

func TestSemanticsListingReusesMetadataOfTheSameVersion(t *testing.T) {
	c := s3fake.New("bkt")
	for i := 0; i < 5; i++ {
		s3fsObject(c, fmt.Sprintf("d/f%d", i), []byte("x"), syscall.S_IFREG|0o640, 1, 1, 1234567890)
	}
	var fileHeads atomic.Int32 // HEADs of the files (lookups of d HEAD "d" too)
	c.SetFail(func(op, key string) error {
		if op == "HeadObject" && strings.HasPrefix(key, "d/f") {
			fileHeads.Add(1)
		}
		return nil
	})
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Meta = cache.NewMeta(50*time.Millisecond, 1000, nil) })
	dir := filepath.Join(mnt, "d")
	if _, err := os.ReadDir(dir); err != nil {
		t.Fatal(err)
	}
	if n := int(fileHeads.Load()); n != 5 {
		t.Errorf("first readdir: %d HEADs, want 5", n)
	}
	time.Sleep(100 * time.Millisecond) // past the TTL
	if _, err := os.ReadDir(dir); err != nil {
		t.Fatal(err)
	}
	if n := int(fileHeads.Load()); n != 5 {
		t.Errorf("readdir past the TTL of unchanged objects: %d HEADs in all, want still 5", n)
	}
	// Another client rewrites one object (a new LastModified).
	time.Sleep(1100 * time.Millisecond)
	s3fsObject(c, "d/f3", []byte("x"), syscall.S_IFREG|0o600, 1, 1, 1234567890)
	time.Sleep(100 * time.Millisecond)
	if _, err := os.ReadDir(dir); err != nil {
		t.Fatal(err)
	}
	if n := int(fileHeads.Load()); n != 6 {
		t.Errorf("readdir after one object changed: %d HEADs in all, want 6", n)
	}
	if st := statT(t, filepath.Join(dir, "f3")); st.Mode != syscall.S_IFREG|0o600 {
		t.Errorf("changed object shows mode %o, want 100600", st.Mode)
	}
}

func TestSemanticsRenameOverAFileBeingWritten(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("src", []byte("renamed content"))
	mnt := mountFake(t, c, nil)
	w, err := os.Create(filepath.Join(mnt, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("written through a descriptor of the replaced file")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "src"), filepath.Join(mnt, "dst")); err != nil {
		t.Fatal(err)
	}
	// As on a local filesystem, the descriptor refers to the replaced
	// (now unlinked) file: closing it must not overwrite the new dst.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the release follows close(2)
	if got, _ := c.Object("dst"); string(got) != "renamed content" {
		t.Errorf("dst = %q, want the renamed file's content", got)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "dst")); err != nil || string(got) != "renamed content" {
		t.Errorf("read dst: %q, %v", got, err)
	}
}

func TestSemanticsChmodWithinTheSecondOfAListingIsNotForgotten(t *testing.T) {
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Meta = cache.NewMeta(50*time.Millisecond, 1000, nil) })
	p := filepath.Join(mnt, "d", "f")
	if err := os.Mkdir(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := os.ReadDir(filepath.Dir(p)); err != nil { // HEAD: version (ETag, second) with 0644
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil { // same content, same ETag, maybe the same second
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := os.ReadDir(filepath.Dir(p)); err != nil {
		t.Fatal(err)
	}
	if st := statT(t, p); st.Mode != syscall.S_IFREG|0o600 {
		t.Errorf("after chmod and a listing: mode %o, want 100600", st.Mode)
	}
}

func TestSemanticsListingOfFilesThisMountWroteNeedsNoHEAD(t *testing.T) {
	c := s3fake.New("bkt")
	var fileHeads atomic.Int32
	c.SetFail(func(op, key string) error {
		if op == "HeadObject" && strings.HasPrefix(key, "d/f") {
			fileHeads.Add(1)
		}
		return nil
	})
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Meta = cache.NewMeta(50*time.Millisecond, 1000, nil) })
	dir := filepath.Join(mnt, "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "f0"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the releases, and past the TTL
	fileHeads.Store(0)                 // the creates' lookups HEAD the new names
	for i := 0; i < 2; i++ {
		if _, err := os.ReadDir(dir); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := fileHeads.Load(); n != 0 {
		t.Errorf("listing files this mount wrote made %d HEADs, want 0", n)
	}
	if st := statT(t, filepath.Join(dir, "f0")); st.Mode != syscall.S_IFREG|0o600 {
		t.Errorf("f0 mode %o, want 100600", st.Mode)
	}
	// Another client rewrites f1's metadata (a new LastModified).
	time.Sleep(1100 * time.Millisecond)
	s3fsObject(c, "d/f1", []byte("x"), syscall.S_IFREG|0o604, 1, 1, 1234567890)
	time.Sleep(100 * time.Millisecond)
	if _, err := os.ReadDir(dir); err != nil {
		t.Fatal(err)
	}
	if n := fileHeads.Load(); n < 1 {
		t.Errorf("after another client's change: %d HEADs, want the listing's HEAD of f1", n)
	}
	if st := statT(t, filepath.Join(dir, "f1")); st.Mode != syscall.S_IFREG|0o604 || st.Mtim.Sec != 1234567890 {
		t.Errorf("f1 after another client's change: mode %o mtime %d", st.Mode, st.Mtim.Sec)
	}
}

// rsync and tar chmod and utimes a file by path after close(2) but before
// the kernel's RELEASE, so the writer's commit has already gone out and
// the release stores them with one CopyObject. A stat while that
// CopyObject is in flight, past the TTL (so the node refetches), must
// show the new attributes, not the committed object's: the kernel keeps
// what it is told for the attr timeout. (CI saw rsync -a leave a file
// showing its temp file's mode 600 and upload mtime.)
func TestSemanticsAttrsSetBeforeReleaseShowWhileStored(t *testing.T) {
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Meta = cache.NewMeta(50*time.Millisecond, 100, nil) })
	p := filepath.Join(mnt, "f")
	fd, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fd.Write([]byte("content")); err != nil {
		t.Fatal(err)
	}
	when := time.Date(2003, 4, 5, 6, 7, 8, 0, time.UTC)
	if err := os.Chtimes(p, when, when); err != nil {
		t.Fatal(err)
	}
	copying, release := make(chan struct{}, 1), make(chan struct{})
	c.SetFail(func(op, key string) error {
		if op == "CopyObject" {
			select {
			case copying <- struct{}{}:
			default:
			}
			<-release
		}
		return nil
	})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	// The fsync's commit carries mode 600 and the first mtime; the
	// chmod and utimes after it, with the handle still open, are what
	// the release must store (a CopyObject onto the object).
	if err := fd.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	later := when.Add(time.Hour)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	if err := fd.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-copying:
	case <-time.After(10 * time.Second):
		t.Fatal("no CopyObject after the last close stored the attributes set while open")
	}
	for i := 0; i < 4; i++ {
		time.Sleep(60 * time.Millisecond) // past the TTL: the node refetches
		st := statT(t, p)
		if st.Mode&0o7777 != 0o640 || st.Mtim.Sec != later.Unix() {
			t.Errorf("stat %d while the attributes are being stored: mode %o mtime %d, want 640 %d",
				i, st.Mode&0o7777, st.Mtim.Sec, later.Unix())
		}
	}
	close(release)
	released = true
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := c.Meta("f")
		if m["mode"] == strconv.Itoa(syscall.S_IFREG|0o640) && m["mtime"] == strconv.FormatInt(later.Unix(), 10) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metadata in S3 %v, want mode 0640 and mtime %d", m, later.Unix())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(60 * time.Millisecond) // past the attr timeout
	st := statT(t, p)
	if st.Mode&0o7777 != 0o640 || st.Mtim.Sec != later.Unix() {
		t.Errorf("stat after the attributes were stored: mode %o mtime %d", st.Mode&0o7777, st.Mtim.Sec)
	}
}
