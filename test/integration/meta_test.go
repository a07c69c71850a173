//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/s3mount/s3mount/test/harness"
)

// These tests run real programs (cp -p, tar, rsync, ln, mv) on a real mount
// and check that modes, mtimes and symlinks survive a remount: they live in
// S3 as s3fs's x-amz-meta-mode/-uid/-gid/-mtime.

// metaTree makes a local tree of files with varied modes and old mtimes,
// a subdirectory and symlinks, and returns its root.
func metaTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := []struct {
		rel   string
		mode  os.FileMode
		mtime time.Time
	}{
		{"plain.txt", 0o644, time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)},
		{"secret", 0o600, time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"run.sh", 0o755, time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"sub/group", 0o640, time.Date(2020, 6, 7, 8, 9, 10, 0, time.UTC)},
		{"sub/deeper/empty", 0o444, time.Date(2015, 5, 5, 5, 5, 5, 0, time.UTC)},
	}
	for i, f := range files {
		p := filepath.Join(root, f.rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		body := bytes.Repeat([]byte(fmt.Sprintf("file %d ", i)), i*100)
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, f.mtime, f.mtime); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"link-to-plain": "plain.txt", "sub/up": "../run.sh", "dangling": "no/such/file"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// treeFacts lists, for every regular file and symlink under root, its
// relative path, permission bits and mtime in seconds (stat -c '%a %Y'),
// or the symlink's target.
func treeFacts(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, rel+" -> "+target)
		case d.Type().IsRegular():
			info, err := os.Lstat(p)
			if err != nil {
				return err
			}
			out = append(out, fmt.Sprintf("%s %o %d %d", rel, info.Mode().Perm(), info.ModTime().Unix(), info.Size()))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	slices.Sort(out)
	return out
}

// remount unmounts mnt and mounts the bucket again, returning the new
// mountpoint: nothing the first mount kept in memory survives.
func (e *env) remount(mnt string, extra ...string) string {
	e.t.Helper()
	if err := harness.Unmount(mnt); err != nil {
		e.t.Fatalf("unmount %s: %v", mnt, err)
	}
	return e.mount(extra...)
}

func compareFacts(t *testing.T, what string, want, got []string) {
	t.Helper()
	if !slices.Equal(want, got) {
		t.Errorf("%s:\nwant %q\n got %q", what, want, got)
	}
}

func TestCpPreservesModesAndMTimesAcrossRemount(t *testing.T) {
	src := metaTree(t)
	want := treeFacts(t, src)
	e := newEnv(t)
	mnt := e.mount()
	sh(t, 2*time.Minute, "cp", "-rp", src, filepath.Join(mnt, "copy"))
	compareFacts(t, "after cp -p, same mount", want, treeFacts(t, filepath.Join(mnt, "copy")))
	fresh := e.remount(mnt)
	compareFacts(t, "after cp -p and a remount", want, treeFacts(t, filepath.Join(fresh, "copy")))
	// stat -c as the issue states it, for one file.
	if got := strings.TrimSpace(sh(t, time.Minute, "stat", "-c", "%a %Y", filepath.Join(fresh, "copy", "run.sh"))); got != "755 946684799" {
		t.Errorf("stat -c '%%a %%Y' run.sh = %q, want \"755 946684799\"", got)
	}
	// cp -a (what mv falls back to) of the tree, inside the mount.
	sh(t, 2*time.Minute, "cp", "-a", filepath.Join(fresh, "copy"), filepath.Join(fresh, "copy2"))
	compareFacts(t, "cp -a inside the mount", want, treeFacts(t, filepath.Join(fresh, "copy2")))
}

func TestTarExtractKeepsModesAndMTimesAcrossRemount(t *testing.T) {
	src := metaTree(t)
	want := treeFacts(t, src)
	e := newEnv(t)
	mnt := e.mount()
	dest := filepath.Join(mnt, "untar")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, 2*time.Minute, "bash", "-c", `set -o pipefail; tar -C "$1" -cf - . | tar -C "$2" -xpf -`, "tar", src, dest)
	compareFacts(t, "after tar x, same mount", want, treeFacts(t, dest))
	fresh := e.remount(mnt)
	compareFacts(t, "after tar x and a remount", want, treeFacts(t, filepath.Join(fresh, "untar")))
	// And back out: tar c from the mount, x locally.
	back := t.TempDir()
	sh(t, 2*time.Minute, "bash", "-c", `set -o pipefail; tar -C "$1" -cf - . | tar -C "$2" -xpf -`, "tar", filepath.Join(fresh, "untar"), back)
	compareFacts(t, "tar c from the mount, x locally", want, treeFacts(t, back))
}

func TestRsyncSecondRunTransfersNothing(t *testing.T) {
	goroot := strings.TrimSpace(sh(t, time.Minute, "go", "env", "GOROOT"))
	src := t.TempDir()
	// A real tree (GOROOT/src/fmt and strings) plus the symlinks and
	// modes of metaTree.
	sh(t, time.Minute, "cp", "-a", filepath.Join(goroot, "src", "fmt"), filepath.Join(goroot, "src", "strings"), src)
	sh(t, time.Minute, "cp", "-a", metaTree(t), filepath.Join(src, "meta"))
	want := treeFacts(t, src)
	e := newEnv(t)
	mnt := e.mount()
	dest := filepath.Join(mnt, "r")
	sh(t, 5*time.Minute, "rsync", "-a", src+"/", dest+"/")
	compareFacts(t, "after rsync -a", want, treeFacts(t, dest))
	fresh := e.remount(mnt)
	dest = filepath.Join(fresh, "r")
	compareFacts(t, "after rsync -a and a remount", want, treeFacts(t, dest))
	out := sh(t, 5*time.Minute, "rsync", "-a", "--itemize-changes", "--stats", src+"/", dest+"/")
	if !strings.Contains(out, "Number of regular files transferred: 0") {
		t.Errorf("second rsync -a transferred files:\n%s", clip(out, 4000))
	}
	// Directory times live in memory only (SEMANTICS.md): a remount
	// shows them anew, so rsync touches directories (".d..t..."), never
	// files or links.
	for _, l := range lines(out) {
		if len(l) > 12 && l[11] == ' ' && strings.ContainsAny(l[:1], "<>ch.") && l[1] != 'd' {
			t.Errorf("second rsync -a changed a file or link: %q", l)
		}
	}
}

func TestSymlinksLnReadlinkTar(t *testing.T) {
	e := newEnv(t)
	mnt := e.mount()
	sh(t, time.Minute, "ln", "-s", "../some where/target", filepath.Join(mnt, "l"))
	if got := strings.TrimSpace(sh(t, time.Minute, "readlink", filepath.Join(mnt, "l"))); got != "../some where/target" {
		t.Errorf("readlink = %q", got)
	}
	if got := e.get("l"); string(got) != "../some where/target" {
		t.Errorf("the symlink's object holds %q, want its target", got)
	}
	if _, _, err := shErr(time.Minute, "ln", "-s", "x", filepath.Join(mnt, "l")); err == nil {
		t.Error("ln -s over an existing name succeeded")
	}
	// A link to a file in the mount reads through.
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("through the link"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, time.Minute, "ln", "-s", "f", filepath.Join(mnt, "lf"))
	if got, err := os.ReadFile(filepath.Join(mnt, "lf")); err != nil || string(got) != "through the link" {
		t.Errorf("read through a symlink: %q, %v", got, err)
	}
	fresh := e.remount(mnt)
	if got := strings.TrimSpace(sh(t, time.Minute, "readlink", filepath.Join(fresh, "l"))); got != "../some where/target" {
		t.Errorf("readlink after a remount = %q", got)
	}
	if got := sh(t, time.Minute, "find", fresh, "-type", "l"); len(lines(got)) != 2 {
		t.Errorf("find -type l after a remount:\n%s", got)
	}
	if got, err := os.ReadFile(filepath.Join(fresh, "lf")); err != nil || string(got) != "through the link" {
		t.Errorf("read through a symlink after a remount: %q, %v", got, err)
	}
}

func TestMvDirectoryOf1200Files(t *testing.T) {
	e := newEnv(t)
	objs := map[string][]byte{"d/sub/deep/x": []byte("deep")}
	for i := 0; i < 1200; i++ {
		objs[fmt.Sprintf("d/f%04d", i)] = []byte(fmt.Sprintf("content of %d", i))
	}
	if err := e.c.PutMany(e.ctx, e.bucket, objs, 32); err != nil {
		t.Fatal(err)
	}
	mnt := e.mount()
	if n := len(dirNames(t, filepath.Join(mnt, "d"))); n != 1201 {
		t.Fatalf("ls d: %d entries, want 1201", n)
	}
	start := time.Now()
	sh(t, 5*time.Minute, "mv", filepath.Join(mnt, "d"), filepath.Join(mnt, "moved"))
	t.Logf("mv of a directory of %d objects: %v", len(objs), time.Since(start).Round(time.Millisecond))
	if left := e.keys("d/"); len(left) != 0 {
		t.Errorf("%d keys left under d/ (first %q)", len(left), first(left, 5))
	}
	keys := e.keys("moved/")
	if len(keys) != len(objs) {
		t.Errorf("%d keys under moved/, want %d", len(keys), len(objs))
	}
	for k, v := range objs {
		nk := "moved/" + strings.TrimPrefix(k, "d/")
		if got := e.get(nk); !bytes.Equal(got, v) {
			t.Fatalf("%s = %q, want %q", nk, got, v)
		}
	}
	if n := len(dirNames(t, filepath.Join(mnt, "moved"))); n != 1201 {
		t.Errorf("ls moved: %d entries, want 1201", n)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "moved/sub/deep/x")); err != nil || string(got) != "deep" {
		t.Errorf("moved/sub/deep/x: %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "d")); !os.IsNotExist(err) {
		t.Errorf("stat d after mv: %v", err)
	}
}

func TestMvOverAnExistingFile(t *testing.T) {
	e := newEnv(t)
	e.put("small", []byte("new"))
	e.put("big", bytes.Repeat([]byte("old content "), 10000))
	mnt := e.mount()
	if got := sh(t, time.Minute, "md5sum", filepath.Join(mnt, "big")); got == "" {
		t.Fatal("md5sum printed nothing")
	}
	sh(t, time.Minute, "mv", filepath.Join(mnt, "small"), filepath.Join(mnt, "big"))
	if got, err := os.ReadFile(filepath.Join(mnt, "big")); err != nil || string(got) != "new" {
		t.Errorf("big after mv: %q, %v", clip(string(got), 40), err)
	}
	if got := strings.TrimSpace(sh(t, time.Minute, "stat", "-c", "%s", filepath.Join(mnt, "big"))); got != "3" {
		t.Errorf("size after mv = %s, want 3", got)
	}
	if got := e.get("big"); string(got) != "new" {
		t.Errorf("object big = %q", clip(string(got), 40))
	}
	if keys := e.keys(""); !slices.Equal(keys, []string{"big"}) {
		t.Errorf("keys after mv: %q", keys)
	}
}

func TestMvDirectoryBeyondTheLimitCopies(t *testing.T) {
	e := newEnv(t)
	objs := map[string][]byte{}
	for i := 0; i < 20; i++ {
		objs[fmt.Sprintf("d/f%02d", i)] = []byte(fmt.Sprint(i))
	}
	if err := e.c.PutMany(e.ctx, e.bucket, objs, 16); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "s3mount.log")
	mnt := e.mount("--max-rename-objects", "5", "--log-file", logFile)
	sh(t, 2*time.Minute, "mv", filepath.Join(mnt, "d"), filepath.Join(mnt, "e"))
	if left := e.keys("d/"); len(left) != 0 {
		t.Errorf("keys left under d/: %q", left)
	}
	var files []string
	for _, k := range e.keys("e/") {
		if !strings.HasSuffix(k, "/") {
			files = append(files, k)
		}
	}
	if len(files) != 20 {
		t.Errorf("%d files under e/, want 20: %q", len(files), files)
	}
	for k, v := range objs {
		if got := e.get("e/" + strings.TrimPrefix(k, "d/")); !bytes.Equal(got, v) {
			t.Errorf("%s moved with content %q, want %q", k, got, v)
		}
	}
	if log, _ := os.ReadFile(logFile); !strings.Contains(string(log), "max-rename-objects") {
		t.Errorf("the log does not say the rename was refused for the limit:\n%s", clip(string(log), 3000))
	}
}
