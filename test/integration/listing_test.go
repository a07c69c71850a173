//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestManyKeysOneDir: 2,500 objects put through S3 in one directory are all
// listed, by ls and by ReadDir, with their sizes.
func TestManyKeysOneDir(t *testing.T) {
	e := newEnv(t)
	const n = 2500
	objs := make(map[string][]byte, n)
	sizes := make(map[string]int64, n)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("f-%05d.dat", i)
		body := bytes.Repeat([]byte{byte(i)}, (i*37)%3001)
		objs["many/"+name] = body
		sizes[name] = int64(len(body))
	}
	start := time.Now()
	if err := e.c.PutMany(e.ctx, e.bucket, objs, 16); err != nil {
		t.Fatal(err)
	}
	t.Logf("put %d objects in %v", n, time.Since(start).Round(time.Millisecond))
	mnt := e.mount()
	dir := filepath.Join(mnt, "many")

	start = time.Now()
	out := sh(t, 5*time.Minute, "ls", "-1", dir)
	t.Logf("ls of %d entries: %v", n, time.Since(start).Round(time.Millisecond))
	if got := len(lines(out)); got != n {
		t.Errorf("ls -1 shows %d entries, want %d", got, n)
	}

	start = time.Now()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n {
		t.Errorf("ReadDir: %d entries, want %d", len(ents), n)
	}
	bad := 0
	seen := map[string]bool{}
	for _, ent := range ents {
		name := ent.Name()
		want, ok := sizes[name]
		if !ok || seen[name] {
			t.Errorf("unexpected or duplicate entry %q", name)
			continue
		}
		seen[name] = true
		fi, err := ent.Info()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !fi.Mode().IsRegular() || fi.Size() != want {
			if bad++; bad <= 10 {
				t.Errorf("%s: mode %v size %d, want regular file of %d", name, fi.Mode(), fi.Size(), want)
			}
		}
	}
	if bad > 10 {
		t.Errorf("... %d entries wrong in all", bad)
	}
	t.Logf("ReadDir+stat of %d entries: %v", n, time.Since(start).Round(time.Millisecond))
	// Spot-check content.
	for _, i := range []int{0, 1, 1234, n - 1} {
		name := fmt.Sprintf("f-%05d.dat", i)
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(b, objs["many/"+name]) {
			t.Errorf("%s: %d bytes, %v; want %d bytes", name, len(b), err, len(objs["many/"+name]))
		}
	}
}

// TestDeepKeyNoMarkers: a/b/c/d/file with no directory markers is readable
// by path on a fresh mount, without listing the parents first.
func TestDeepKeyNoMarkers(t *testing.T) {
	e := newEnv(t)
	body := []byte("deep content\n")
	e.put("a/b/c/d/file", body)
	mnt := e.mount()
	out := sh(t, time.Minute, "cat", filepath.Join(mnt, "a/b/c/d/file"))
	if out != string(body) {
		t.Errorf("cat a/b/c/d/file = %q, want %q", out, body)
	}
	for _, d := range []string{"a", "a/b", "a/b/c", "a/b/c/d"} {
		fi, err := os.Stat(filepath.Join(mnt, d))
		if err != nil || !fi.IsDir() {
			t.Errorf("stat %s: %v, %v; want a directory", d, fi, err)
		}
	}
	if got := dirNames(t, filepath.Join(mnt, "a/b/c/d")); !slices.Equal(got, []string{"file"}) {
		t.Errorf("ls a/b/c/d = %q", got)
	}
	if got := dirNames(t, mnt); !slices.Equal(got, []string{"a"}) {
		t.Errorf("ls of the root = %q, want [a]", got)
	}
}

// TestSpecialKeyNames: keys with spaces, '+', '%' and both Unicode forms of
// "é" are distinct, visible names with the right content.
func TestSpecialKeyNames(t *testing.T) {
	e := newEnv(t)
	nfc := "caf\u00e9.txt"  // é as one code point
	nfd := "cafe\u0301.txt" // e + combining acute accent
	keys := []string{
		"with space.txt",
		"plus+sign.txt",
		"per%cent.txt",
		"100%",
		"%2F",
		nfc,
		nfd,
		"dir with space+%/in side+%.txt",
	}
	for _, k := range keys {
		e.put(k, []byte("content of "+k))
	}
	mnt := e.mount()

	got := dirNames(t, mnt)
	want := []string{"%2F", "100%", nfc, nfd, "dir with space+%", "per%cent.txt", "plus+sign.txt", "with space.txt"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("root names = %q\nwant %q", got, want)
	}
	if !slices.Contains(got, nfc) || !slices.Contains(got, nfd) {
		t.Errorf("NFC %q and NFD %q must both be listed; got %q", nfc, nfd, got)
	}
	for _, k := range keys {
		b, err := os.ReadFile(filepath.Join(mnt, k))
		if err != nil {
			t.Errorf("read %q: %v", k, err)
			continue
		}
		if string(b) != "content of "+k {
			t.Errorf("read %q = %q", k, b)
		}
	}
	// ls shows them too (names with a space in one line each).
	out := sh(t, time.Minute, "ls", "-1A", mnt)
	if l := lines(out); len(l) != len(want) {
		t.Errorf("ls -1A shows %d names: %q", len(l), out)
	}
	if !strings.Contains(out, nfc) || !strings.Contains(out, nfd) {
		t.Errorf("ls output lacks a form of é: %q", out)
	}
}
