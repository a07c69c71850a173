//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/s3mount/s3mount/test/harness"
)

// TestInvalidKeysHidden: keys that cannot be file names (empty, ".", ".."
// or over 255-byte segments) are not listed; valid neighbours are. Runs on
// gofakes3, since versitygw's posix backend cannot store such keys.
func TestInvalidKeysHidden(t *testing.T) {
	e := newEnvOn(t, harness.StartFakeS3(t))
	long := strings.Repeat("a", 300)
	for _, k := range []string{"odd//empty", "odd/./dot", "odd/../dotdot", "odd/" + long, "odd/ok.txt"} {
		e.put(k, []byte("body of "+k))
	}
	mnt := e.mount()

	if got := dirNames(t, mnt); !slices.Equal(got, []string{"odd"}) {
		t.Errorf("root = %q, want [odd]", got)
	}
	out := sh(t, time.Minute, "ls", "-1A", filepath.Join(mnt, "odd"))
	if got := lines(out); !slices.Equal(got, []string{"ok.txt"}) {
		t.Errorf("ls -A odd = %q, want [ok.txt]", got)
	}
	if got := dirNames(t, filepath.Join(mnt, "odd")); !slices.Equal(got, []string{"ok.txt"}) {
		t.Errorf("ReadDir(odd) = %q, want [ok.txt]", got)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "odd/ok.txt")); err != nil || string(b) != "body of odd/ok.txt" {
		t.Errorf("odd/ok.txt = %q, %v", b, err)
	}
}

// TestFileAndDirSameName: when both "both" and "both/inner" exist, the
// mount shows "both" as a directory, whether it is first looked up or first
// listed.
func TestFileAndDirSameName(t *testing.T) {
	e := newEnvOn(t, harness.StartFakeS3(t))
	e.put("both", []byte("the file"))
	e.put("both/inner", []byte("inner content"))

	t.Run("lookup", func(t *testing.T) {
		mnt := e.mount()
		fi, err := os.Stat(filepath.Join(mnt, "both"))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() {
			t.Errorf("stat both: mode %v, want a directory", fi.Mode())
		}
		if b, err := os.ReadFile(filepath.Join(mnt, "both/inner")); err != nil || string(b) != "inner content" {
			t.Errorf("both/inner = %q, %v", b, err)
		}
	})

	t.Run("readdir", func(t *testing.T) {
		mnt := e.mount()
		ents, err := os.ReadDir(mnt)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, ent := range ents {
			names = append(names, ent.Name())
		}
		if !slices.Equal(names, []string{"both"}) {
			t.Fatalf("root = %q, want exactly one \"both\"", names)
		}
		if !ents[0].IsDir() {
			t.Errorf("readdir type of both: %v, want a directory", ents[0].Type())
		}
		fi, err := ents[0].Info()
		if err != nil || !fi.IsDir() {
			t.Errorf("stat of both after readdir: %v, %v; want a directory", fi, err)
		}
		if got := dirNames(t, filepath.Join(mnt, "both")); !slices.Equal(got, []string{"inner"}) {
			t.Errorf("ls both = %q, want [inner]", got)
		}
	})
}
