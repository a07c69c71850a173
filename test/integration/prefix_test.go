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

// TestPrefixMount: BUCKET:/some/path (and s3://BUCKET/some/path) shows only
// what is under some/path/, and writes land there.
func TestPrefixMount(t *testing.T) {
	for _, form := range []string{"colon", "s3url"} {
		t.Run(form, func(t *testing.T) {
			e := newEnv(t)
			inside := map[string]string{
				"some/path/in.txt":       "inside",
				"some/path/sub/deep.txt": "deep inside",
			}
			outside := map[string]string{
				"outside.txt":           "outside",
				"some/other.txt":        "sibling",
				"some/pathological.txt": "same string prefix, other dir",
				"some/path.txt":         "next to the dir",
			}
			for k, v := range inside {
				e.put(k, []byte(v))
			}
			for k, v := range outside {
				e.put(k, []byte(v))
			}
			source := e.bucket + ":/some/path"
			if form == "s3url" {
				source = "s3://" + e.bucket + "/some/path"
			}
			mnt := e.mountSource(source)

			if got, want := dirNames(t, mnt), []string{"in.txt", "sub"}; !slices.Equal(got, want) {
				t.Errorf("root of %s = %q, want %q", source, got, want)
			}
			if b, err := os.ReadFile(filepath.Join(mnt, "in.txt")); err != nil || string(b) != "inside" {
				t.Errorf("in.txt = %q, %v", b, err)
			}
			if b, err := os.ReadFile(filepath.Join(mnt, "sub/deep.txt")); err != nil || string(b) != "deep inside" {
				t.Errorf("sub/deep.txt = %q, %v", b, err)
			}
			for _, name := range []string{"outside.txt", "other.txt", "pathological.txt", "some", "path.txt"} {
				if _, err := os.Stat(filepath.Join(mnt, name)); !errors.Is(err, syscall.ENOENT) {
					t.Errorf("stat %s through the prefix mount: %v, want ENOENT", name, err)
				}
			}

			if err := os.WriteFile(filepath.Join(mnt, "new.txt"), []byte("written"), 0o644); err != nil {
				t.Fatal(err)
			}
			if b := e.get("some/path/new.txt"); string(b) != "written" {
				t.Errorf("some/path/new.txt in S3 = %q", b)
			}
			var want []string
			for k := range inside {
				want = append(want, k)
			}
			for k := range outside {
				want = append(want, k)
			}
			want = append(want, "some/path/new.txt")
			slices.Sort(want)
			if got := e.keys(""); !slices.Equal(got, want) {
				t.Errorf("bucket keys after the write = %q\nwant %q", got, want)
			}
		})
	}
}
