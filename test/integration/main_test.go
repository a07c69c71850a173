//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/s3mount/s3mount/test/harness"
)

var (
	server *harness.Server // shared versitygw, one per test process
	bin    string          // s3mount built once per test process
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if _, err := exec.LookPath("fusermount3"); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: fusermount3 not found (install fuse3, e.g. `make deps`):", err)
		return 1
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: /dev/fuse is missing:", err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "s3mount-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	bin, err = harness.BuildS3mount(tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: building s3mount:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "integration: s3mount binary %s (built in %v)\n", bin, time.Since(start).Round(time.Millisecond))
	server, err = harness.LaunchServer(harness.ServerOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: starting versitygw:", err)
		return 1
	}
	defer server.Close()
	fmt.Fprintf(os.Stderr, "integration: versitygw at %s (pid %d, data %s)\n", server.URL, server.PID(), server.DataDir)
	return m.Run()
}

// env is one test's bucket on an S3 server, with a client for it.
type env struct {
	t      *testing.T
	ctx    context.Context
	ep     harness.Endpoint
	c      *harness.Client
	bucket string
}

// newEnv makes a fresh bucket for t on the shared versitygw.
func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvOn(t, server.Endpoint)
}

// newEnvOn makes a fresh bucket for t on ep.
func newEnvOn(t *testing.T, ep harness.Endpoint) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	t.Cleanup(cancel)
	c, err := harness.NewClient(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, ep: ep, c: c, bucket: harness.BucketName(t.Name())}
	if err := c.CreateBucket(ctx, e.bucket); err != nil {
		t.Fatal(err)
	}
	return e
}

// mount mounts the whole bucket at a fresh temp dir and returns it.
func (e *env) mount(extra ...string) string {
	e.t.Helper()
	return harness.Mount(e.t, bin, e.ep, e.bucket, "", extra...)
}

// mountSource mounts source (e.g. BUCKET:/p) at a fresh temp dir.
func (e *env) mountSource(source string, extra ...string) string {
	e.t.Helper()
	return harness.Mount(e.t, bin, e.ep, source, "", extra...)
}

func (e *env) put(key string, body []byte) {
	e.t.Helper()
	if err := e.c.PutObject(e.ctx, e.bucket, key, body); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) get(key string) []byte {
	e.t.Helper()
	b, err := e.c.GetObject(e.ctx, e.bucket, key)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) keys(prefix string) []string {
	e.t.Helper()
	k, err := e.c.ListAllKeys(e.ctx, e.bucket, prefix)
	if err != nil {
		e.t.Fatal(err)
	}
	return k
}

// sh runs a command with a timeout and returns its stdout; a non-zero exit
// fails the test with its stderr.
func sh(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, errOut, err := shErr(timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstderr: %s\nstdout: %s", name, strings.Join(args, " "), err, clip(errOut, 4000), clip(out, 4000))
	}
	return out
}

// shErr runs a command with a timeout and returns stdout, stderr, error.
func shErr(timeout time.Duration, name string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	return stdout.String(), stderr.String(), err
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("... (%d bytes more)", len(s)-n)
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir(%s): %v", dir, err)
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	slices.Sort(names)
	return names
}
