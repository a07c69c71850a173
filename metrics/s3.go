package metrics

import (
	"context"
	"io"

	"github.com/s3mount/s3mount/s3backend"
)

// Client returns c with every request counted, timed and, for uploads,
// tracked (see Metrics). Errors and results pass unchanged.
func (m *Metrics) Client(c s3backend.Client) s3backend.Client {
	return &client{c: c, m: m}
}

// Buckets returns b with its requests counted, and the Clients it makes
// decorated as by Client.
func (m *Metrics) Buckets(b s3backend.Buckets) s3backend.Buckets {
	return &buckets{b: b, m: m}
}

type client struct {
	c s3backend.Client
	m *Metrics
}

var _ s3backend.Client = (*client)(nil)

func (c *client) Bucket() string { return c.c.Bucket() }

func (c *client) Head(ctx context.Context, key string) (s3backend.ObjectInfo, error) {
	end := c.m.begin("HeadObject", false)
	info, err := c.c.Head(ctx, key)
	end(err)
	return info, err
}

func (c *client) List(ctx context.Context, prefix, delimiter, token string, maxKeys int32) (s3backend.ListPage, error) {
	end := c.m.begin("ListObjectsV2", false)
	p, err := c.c.List(ctx, prefix, delimiter, token, maxKeys)
	end(err)
	return p, err
}

func (c *client) OpenRange(ctx context.Context, key, etag string, off, n int64) (io.ReadCloser, error) {
	end := c.m.begin("GetObject", false)
	r, err := c.c.OpenRange(ctx, key, etag, off, n)
	end(err)
	if err != nil {
		return nil, err
	}
	return &countedBody{ReadCloser: r, m: c.m}, nil
}

// countedBody counts the bytes read from a GetObject body.
type countedBody struct {
	io.ReadCloser
	m *Metrics
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.m.bytesIn.Add(float64(n))
	}
	return n, err
}

func (c *client) Put(ctx context.Context, key string, body []byte, opt s3backend.PutOptions) (string, error) {
	end := c.m.begin("PutObject", true)
	etag, err := c.c.Put(ctx, key, body, opt)
	end(err)
	if err == nil {
		c.m.bytesOut.Add(float64(len(body)))
	}
	return etag, err
}

func (c *client) CreateMultipart(ctx context.Context, key string, meta map[string]string) (string, error) {
	end := c.m.begin("CreateMultipartUpload", true)
	id, err := c.c.CreateMultipart(ctx, key, meta)
	end(err)
	if err == nil {
		c.m.mu.Lock()
		c.m.uploads[id] = Upload{Client: c.c, Key: key, UploadID: id}
		c.m.uploadsOpen.Set(float64(len(c.m.uploads)))
		c.m.mu.Unlock()
	}
	return id, err
}

func (c *client) UploadPart(ctx context.Context, key, uploadID string, num int32, body []byte) (string, error) {
	end := c.m.begin("UploadPart", true)
	etag, err := c.c.UploadPart(ctx, key, uploadID, num, body)
	end(err)
	if err == nil {
		c.m.bytesOut.Add(float64(len(body)))
	}
	return etag, err
}

func (c *client) UploadPartCopy(ctx context.Context, key, uploadID string, num int32, src, srcETag string, off, n int64) (string, error) {
	end := c.m.begin("UploadPartCopy", true)
	etag, err := c.c.UploadPartCopy(ctx, key, uploadID, num, src, srcETag, off, n)
	end(err)
	return etag, err
}

// closeUpload forgets an upload that was completed or aborted.
func (c *client) closeUpload(uploadID string) {
	c.m.mu.Lock()
	delete(c.m.uploads, uploadID)
	c.m.uploadsOpen.Set(float64(len(c.m.uploads)))
	c.m.mu.Unlock()
}

func (c *client) CompleteMultipart(ctx context.Context, key, uploadID string, parts []s3backend.Part, opt s3backend.PutOptions) (string, error) {
	end := c.m.begin("CompleteMultipartUpload", true)
	etag, err := c.c.CompleteMultipart(ctx, key, uploadID, parts, opt)
	end(err)
	if err == nil {
		c.closeUpload(uploadID)
	}
	return etag, err
}

func (c *client) AbortMultipart(ctx context.Context, key, uploadID string) error {
	end := c.m.begin("AbortMultipartUpload", true)
	err := c.c.AbortMultipart(ctx, key, uploadID)
	end(err)
	c.closeUpload(uploadID) // even when it failed: nobody will use it again
	return err
}

func (c *client) Copy(ctx context.Context, src, dst string, opt s3backend.CopyOptions) (string, error) {
	end := c.m.begin("CopyObject", true)
	etag, err := c.c.Copy(ctx, src, dst, opt)
	end(err)
	return etag, err
}

func (c *client) Delete(ctx context.Context, key string) error {
	end := c.m.begin("DeleteObject", true)
	err := c.c.Delete(ctx, key)
	end(err)
	return err
}

type buckets struct {
	b s3backend.Buckets
	m *Metrics
}

var _ s3backend.Buckets = (*buckets)(nil)

func (b *buckets) ListBuckets(ctx context.Context) ([]s3backend.BucketInfo, error) {
	end := b.m.begin("ListBuckets", false)
	out, err := b.b.ListBuckets(ctx)
	end(err)
	return out, err
}

func (b *buckets) CreateBucket(ctx context.Context, name string) error {
	end := b.m.begin("CreateBucket", true)
	err := b.b.CreateBucket(ctx, name)
	end(err)
	return err
}

func (b *buckets) DeleteBucket(ctx context.Context, name string) error {
	end := b.m.begin("DeleteBucket", true)
	err := b.b.DeleteBucket(ctx, name)
	end(err)
	return err
}

func (b *buckets) Client(ctx context.Context, bucket string) (s3backend.Client, error) {
	c, err := b.b.Client(ctx, bucket)
	if err != nil {
		return nil, err
	}
	return b.m.Client(c), nil
}
