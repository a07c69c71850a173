//go:build integration

package integration

import (
	"bytes"
	"errors"
	"testing"

	"github.com/s3mount/s3mount/s3backend"
)

// backend is s3mount's own S3 client for e's bucket.
func (e *env) backend() s3backend.Client {
	e.t.Helper()
	c, err := s3backend.New(e.ctx, s3backend.Config{Bucket: e.bucket, Region: e.ep.RegionOrDefault(),
		EndpointURL: e.ep.URL, ForcePathStyle: true, AccessKeyID: e.ep.AccessKey, SecretAccessKey: e.ep.SecretKey})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// TestBackendWriteFeatures pins what the write path relies on, against the
// real test server: conditional writes (If-None-Match / If-Match on
// PutObject and CompleteMultipartUpload), user metadata on PutObject,
// CreateMultipartUpload and CopyObject REPLACE, and UploadPartCopy of a
// range with x-amz-copy-source-if-match.
func TestBackendWriteFeatures(t *testing.T) {
	e := newEnv(t)
	c := e.backend()
	ctx := e.ctx
	meta := map[string]string{"mode": "33188", "mtime": "1700000000", "uid": "1000", "gid": "1000"}
	etag, err := c.Put(ctx, "a", []byte("one"), s3backend.PutOptions{IfNoneMatch: "*", Meta: meta})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Head(ctx, "a")
	if err != nil || info.Meta["mode"] != "33188" || info.Meta["mtime"] != "1700000000" {
		t.Fatalf("Head after Put with metadata: %+v, %v", info, err)
	}
	if _, err := c.Put(ctx, "a", []byte("two"), s3backend.PutOptions{IfNoneMatch: "*"}); !errors.Is(err, s3backend.ErrPrecondition) {
		t.Errorf("Put If-None-Match * over an existing object: %v, want ErrPrecondition", err)
	}
	if _, err := c.Put(ctx, "a", []byte("two"), s3backend.PutOptions{IfMatch: `"0123"`}); !errors.Is(err, s3backend.ErrPrecondition) {
		t.Errorf("Put If-Match with a wrong ETag: %v, want ErrPrecondition", err)
	}
	if _, err := c.Put(ctx, "a", []byte("two"), s3backend.PutOptions{IfMatch: etag}); err != nil {
		t.Errorf("Put If-Match with the right ETag: %v", err)
	}

	// A 12 MiB object, then a multipart upload reusing its middle 5 MiB.
	big := bytes.Repeat([]byte("0123456789abcdef"), 12<<20/16)
	bigETag, err := c.Put(ctx, "big", big, s3backend.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.CreateMultipart(ctx, "mp", meta)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := c.UploadPartCopy(ctx, "mp", id, 1, "big", bigETag, 1<<20, 5<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadPartCopy(ctx, "mp", id, 2, "big", `"ffff"`, 0, 5<<20); !errors.Is(err, s3backend.ErrPrecondition) {
		t.Errorf("UploadPartCopy with a wrong source ETag: %v, want ErrPrecondition", err)
	}
	p2, err := c.UploadPart(ctx, "mp", id, 2, []byte("tail"))
	if err != nil {
		t.Fatal(err)
	}
	parts := []s3backend.Part{{Number: 1, ETag: p1}, {Number: 2, ETag: p2}}
	// If-Match of a missing object: 412 or, as on AWS and here, 404.
	if _, err := c.CompleteMultipart(ctx, "mp", id, parts, s3backend.PutOptions{IfMatch: `"nope"`}); !errors.Is(err, s3backend.ErrPrecondition) && !errors.Is(err, s3backend.ErrNotFound) {
		t.Errorf("Complete If-Match of a missing object: %v, want ErrPrecondition or ErrNotFound", err)
	}
	if _, err := c.CompleteMultipart(ctx, "mp", id, parts, s3backend.PutOptions{IfNoneMatch: "*"}); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte(nil), big[1<<20:6<<20]...), "tail"...)
	if got := e.get("mp"); !bytes.Equal(got, want) {
		t.Errorf("multipart object from UploadPartCopy + UploadPart: %d bytes, want %d", len(got), len(want))
	}
	if info, err := c.Head(ctx, "mp"); err != nil || info.Meta["uid"] != "1000" {
		t.Errorf("Head of the multipart object: %+v, %v; want its metadata", info, err)
	}
	// CopyObject onto itself with new metadata (chmod of a closed file).
	if _, err := c.Copy(ctx, "a", "a", s3backend.CopyOptions{Meta: map[string]string{"mode": "33261"}}); err != nil {
		t.Fatal(err)
	}
	if info, err := c.Head(ctx, "a"); err != nil || info.Meta["mode"] != "33261" || info.Meta["mtime"] != "" {
		t.Errorf("Head after CopyObject REPLACE: %+v, %v", info, err)
	}
	if got := e.get("a"); string(got) != "two" {
		t.Errorf("content after CopyObject onto itself: %q", got)
	}
}

// TestBackendMixedPartSizes: parts of growing sizes (5 MiB, then 10 MiB,
// as the write path sends past 500 parts) complete into one object.
func TestBackendMixedPartSizes(t *testing.T) {
	e := newEnv(t)
	c := e.backend()
	id, err := c.CreateMultipart(e.ctx, "mixed", nil)
	if err != nil {
		t.Fatal(err)
	}
	var parts []s3backend.Part
	var want []byte
	for i, n := range []int{5 << 20, 5 << 20, 10 << 20, 10 << 20, 1} {
		b := bytes.Repeat([]byte{byte('a' + i)}, n)
		etag, err := c.UploadPart(e.ctx, "mixed", id, int32(i+1), b)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, s3backend.Part{Number: int32(i + 1), ETag: etag})
		want = append(want, b...)
	}
	if _, err := c.CompleteMultipart(e.ctx, "mixed", id, parts, s3backend.PutOptions{IfNoneMatch: "*"}); err != nil {
		t.Fatal(err)
	}
	if got := e.get("mixed"); !bytes.Equal(got, want) {
		t.Errorf("object of mixed part sizes: %d bytes, want %d", len(got), len(want))
	}
}
