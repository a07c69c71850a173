package harness

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestHarnessServer checks the versitygw fixture and the client helpers
// without any mount: start, create a bucket, put/get/list, upload a tree.
func TestHarnessServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := StartServer(t)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("endpoint %q is not on 127.0.0.1", srv.URL)
	}
	c, err := NewClient(ctx, srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	bucket := BucketName(t.Name())
	if err := c.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateBucket(ctx, bucket); err != nil {
		t.Fatalf("second CreateBucket of an owned bucket: %v", err)
	}

	// Key shapes the integration tests rely on versitygw storing verbatim.
	keys := map[string][]byte{
		"plain.txt":                       []byte("plain"),
		"with space.txt":                  []byte("space"),
		"plus+sign.txt":                   []byte("plus"),
		"per%cent.txt":                    []byte("percent"),
		"caf\u00e9.txt":                   []byte("nfc"),
		"cafe\u0301.txt":                  []byte("nfd"),
		"a/b/c/d/file":                    []byte("deep"),
		"empty":                           {},
		"dir/":                            {},
		"big/" + strings.Repeat("x", 200): RandomBytes(1 << 20),
	}
	if err := c.PutMany(ctx, bucket, keys, 4); err != nil {
		t.Fatal(err)
	}
	for k, want := range keys {
		got, err := c.GetObject(ctx, bucket, k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("GetObject(%q) = %d bytes, want %d", k, len(got), len(want))
		}
		size, err := c.HeadObject(ctx, bucket, k)
		if err != nil || size != int64(len(want)) {
			t.Errorf("HeadObject(%q) = %d, %v; want %d", k, size, err, len(want))
		}
	}
	got, err := c.ListAllKeys(ctx, bucket, "")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for k := range keys {
		want = append(want, k)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("ListAllKeys = %q\nwant %q", got, want)
	}
	if _, err := c.GetObject(ctx, bucket, "missing"); !IsNotFound(err) {
		t.Errorf("GetObject(missing) error = %v, want not found", err)
	}

	// UploadTree: a small tree with nesting; more than one page of listing
	// is exercised by the 2,500-key integration test.
	dir := t.TempDir()
	files := map[string]string{"a.txt": "A", "sub/b.txt": "B", "sub/deeper/c.txt": "C"}
	for rel, body := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, err := c.UploadTree(ctx, bucket, "tree", dir, 3)
	if err != nil || n != len(files) {
		t.Fatalf("UploadTree = %d, %v; want %d", n, err, len(files))
	}
	treeKeys, err := c.ListAllKeys(ctx, bucket, "tree/")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"tree/a.txt", "tree/sub/b.txt", "tree/sub/deeper/c.txt"}; !slices.Equal(treeKeys, want) {
		t.Errorf("tree keys = %q, want %q", treeKeys, want)
	}
	b, err := c.GetObject(ctx, bucket, "tree/sub/deeper/c.txt")
	if err != nil || string(b) != "C" {
		t.Errorf("tree/sub/deeper/c.txt = %q, %v", b, err)
	}

	// Wrong credentials must be refused: the mount-failure tests rely on it.
	bad := srv.Endpoint
	bad.SecretKey = "wrong" + bad.SecretKey
	bc, err := NewClient(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bc.ListAllKeys(ctx, bucket, ""); err == nil {
		t.Errorf("listing with a wrong secret succeeded")
	}

	// Stopping is clean and the port closes.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := WaitHealthy(ctxWithTimeout(t, 300*time.Millisecond), srv.URL); err == nil {
		t.Errorf("server still answers after Close")
	}
}

// TestHarnessFakeS3 checks that gofakes3 keeps the odd key shapes that the
// invalid-name integration test needs, verbatim.
func TestHarnessFakeS3(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ep := StartFakeS3(t)
	c, err := NewClient(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	bucket := BucketName(t.Name())
	if err := c.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	keys := []string{"odd//empty", "odd/./dot", "odd/../dotdot", "odd/" + strings.Repeat("a", 300), "odd/ok.txt", "both", "both/inner"}
	for _, k := range keys {
		if err := c.PutObject(ctx, bucket, k, []byte("body of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.ListAllKeys(ctx, bucket, "")
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(keys)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("ListAllKeys = %q\nwant %q", got, want)
	}
	for _, k := range keys {
		b, err := c.GetObject(ctx, bucket, k)
		if err != nil || string(b) != "body of "+k {
			t.Errorf("GetObject(%q) = %q, %v", k, b, err)
		}
	}
}

func ctxWithTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestBucketName(t *testing.T) {
	for _, label := range []string{"TestFoo/Sub_Case", strings.Repeat("Long", 30), "///"} {
		b := BucketName(label)
		if len(b) > 63 || len(b) < 3 || b != strings.ToLower(b) {
			t.Errorf("BucketName(%q) = %q", label, b)
		}
		for _, r := range b {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				t.Errorf("BucketName(%q) = %q has %q", label, b, r)
			}
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/tmp/a\040b\134c`); got != `/tmp/a b\c` {
		t.Errorf("got %q", got)
	}
}
