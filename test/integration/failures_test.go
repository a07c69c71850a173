//go:build integration

package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/s3mount/s3mount/test/harness"
)

// TestMountFailures: a mount that cannot work exits non-zero with one line
// on stderr, and leaves nothing mounted.
func TestMountFailures(t *testing.T) {
	e := newEnv(t) // an existing bucket for the cases that need one

	check := func(t *testing.T, res harness.MountResult, mention string) {
		t.Helper()
		t.Logf("%s", res)
		if res.ExitCode == 0 {
			t.Errorf("exit status 0, want non-zero")
		}
		if res.ExitCode < 0 {
			t.Errorf("did not exit by itself: %v", res.Err)
		}
		if res.Mounted {
			t.Errorf("%s is mounted after a failed mount", res.Mountpoint)
		}
		l := lines(res.Stderr)
		switch {
		case len(l) == 0:
			t.Errorf("stderr is empty, want one line saying what went wrong")
		case len(l) > 1:
			t.Errorf("stderr has %d lines, want one:\n%s", len(l), res.Stderr)
		}
		if mention != "" && !strings.Contains(res.Stderr, mention) {
			t.Errorf("stderr does not mention %q: %q", mention, res.Stderr)
		}
	}

	t.Run("nonexistent-bucket", func(t *testing.T) {
		bucket := harness.BucketName("nosuch")
		res := harness.TryMount(t, bin, e.ep, bucket, t.TempDir())
		check(t, res, bucket)
	})

	t.Run("missing-mountpoint", func(t *testing.T) {
		mp := filepath.Join(t.TempDir(), "does-not-exist")
		res := harness.TryMount(t, bin, e.ep, e.bucket, mp)
		check(t, res, "")
	})

	t.Run("wrong-secret", func(t *testing.T) {
		ep := e.ep
		ep.SecretKey = "wrong" + ep.SecretKey[5:]
		res := harness.TryMount(t, bin, ep, e.bucket, t.TempDir())
		check(t, res, "")
	})

	t.Run("endpoint-unreachable", func(t *testing.T) {
		port, err := harness.FreePort() // free a moment ago: nothing listens
		if err != nil {
			t.Fatal(err)
		}
		ep := e.ep
		ep.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
		res := harness.TryMount(t, bin, ep, e.bucket, t.TempDir())
		check(t, res, "")
	})
}
