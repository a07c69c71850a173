//go:build integration

package integration

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestGoSrcTree untars GOROOT/src (about 10k files) into the mount, checks it
// with diff -r and find, checks the objects in S3, then removes it.
func TestGoSrcTree(t *testing.T) {
	goroot := strings.TrimSpace(sh(t, time.Minute, "go", "env", "GOROOT"))
	src := filepath.Join(goroot, "src")
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("GOROOT/src: %v", err)
	}
	e := newEnv(t)
	mnt := e.mount()
	dest := filepath.Join(mnt, "gosrc")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	sh(t, 20*time.Minute, "bash", "-c", `set -o pipefail; tar -C "$1" -cf - src | tar -C "$2" -xf -`, "untar", goroot, dest)
	t.Logf("tar x of GOROOT/src into the mount: %v", time.Since(start).Round(time.Millisecond))

	wantCount := len(lines(sh(t, 5*time.Minute, "find", src)))
	start = time.Now()
	if got := len(lines(sh(t, 5*time.Minute, "find", filepath.Join(dest, "src")))); got != wantCount {
		t.Errorf("find | wc -l in the mount = %d, want %d", got, wantCount)
	}
	t.Logf("find in the mount: %v", time.Since(start).Round(time.Millisecond))

	// Every regular file became an object under gosrc/src/.
	var wantKeys []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(goroot, p)
			wantKeys = append(wantKeys, "gosrc/"+filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := e.keys("gosrc/")
	var fileKeys []string
	for _, k := range keys {
		if !strings.HasSuffix(k, "/") { // directory markers are allowed
			fileKeys = append(fileKeys, k)
		}
	}
	slices.Sort(wantKeys)
	if !slices.Equal(fileKeys, wantKeys) {
		missing, extra := diffSorted(wantKeys, fileKeys)
		t.Errorf("S3 has %d file keys under gosrc/, want %d; missing %d (first %q), extra %d (first %q)",
			len(fileKeys), len(wantKeys), len(missing), first(missing, 5), len(extra), first(extra, 5))
	}

	// A fresh mount reads everything back from S3.
	fresh := e.mount()
	start = time.Now()
	if got := len(lines(sh(t, 5*time.Minute, "find", filepath.Join(fresh, "gosrc", "src")))); got != wantCount {
		t.Errorf("find | wc -l in a fresh mount = %d, want %d", got, wantCount)
	}
	t.Logf("find in a fresh mount: %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	sh(t, 15*time.Minute, "diff", "-r", src, filepath.Join(fresh, "gosrc", "src"))
	t.Logf("diff -r through a fresh mount: %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	sh(t, 15*time.Minute, "rm", "-r", dest)
	t.Logf("rm -r: %v", time.Since(start).Round(time.Millisecond))
	if left := e.keys("gosrc/"); len(left) != 0 {
		t.Errorf("after rm -r, %d keys remain under gosrc/ (first %q)", len(left), first(left, 5))
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("stat gosrc after rm -r: %v, want not exist", err)
	}
}

// diffSorted returns the elements only in want and only in got.
func diffSorted(want, got []string) (missing, extra []string) {
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j >= len(got) || i < len(want) && want[i] < got[j]:
			missing = append(missing, want[i])
			i++
		case i >= len(want) || got[j] < want[i]:
			extra = append(extra, got[j])
			j++
		default:
			i++
			j++
		}
	}
	return missing, extra
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
