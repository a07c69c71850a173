// Package s3fake is an in-memory s3backend.Client for tests: objects in a
// map, ETags from content, request counters per operation, and injectable
// failures. It follows S3's answers where s3mount depends on them
// (ListObjectsV2 ordering and delimiter, ranged reads, 404 kinds).
package s3fake

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/s3mount/s3mount/s3backend"
)

type object struct {
	data  []byte
	etag  string
	mtime time.Time
	meta  map[string]string
}

type upload struct {
	key   string
	meta  map[string]string
	parts map[int32][]byte
}

// Client is the fake. The zero value is not usable: call New.
type Client struct {
	bucket string

	mu       sync.Mutex
	objects  map[string]object          // guarded by mu
	uploads  map[string]*upload         // guarded by mu
	calls    map[string]int             // guarded by mu; op → requests
	nextID   int                        // guarded by mu
	fail     func(op, key string) error // guarded by mu
	headDone func(key string)           // guarded by mu
	delay    time.Duration              // guarded by mu
	bytesOut int64                      // guarded by mu
}

// SetFail installs f, asked before each request (without the fake's lock
// held); a non-nil error is returned instead of doing the request. nil
// removes it.
func (c *Client) SetFail(f func(op, key string) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail = f
}

// SetHeadDone installs f, called (without the fake's lock held) after each
// HeadObject has read the object and before it answers: blocking in f
// makes the answer arrive late, describing the object as it was. nil
// removes it.
func (c *Client) SetHeadDone(f func(key string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.headDone = f
}

// SetDelay makes each ranged read sleep d first.
func (c *Client) SetDelay(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.delay = d
}

var _ s3backend.Client = (*Client)(nil)

// New makes an empty bucket.
func New(bucket string) *Client {
	return &Client{bucket: bucket, objects: map[string]object{}, uploads: map[string]*upload{}, calls: map[string]int{}}
}

func etagOf(b []byte) string {
	s := md5.Sum(b)
	return `"` + hex.EncodeToString(s[:]) + `"`
}

// PutDirect stores an object as another client would.
func (c *Client) PutDirect(key string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.objects[key] = object{data: append([]byte(nil), data...), etag: etagOf(data), mtime: time.Now()}
}

// SetMeta replaces an object's user metadata, as another client would.
func (c *Client) SetMeta(key string, meta map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o, ok := c.objects[key]; ok {
		o.meta = meta
		c.objects[key] = o
	}
}

// Meta returns an object's user metadata.
func (c *Client) Meta(key string) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.objects[key].meta
}

// Object returns an object's bytes.
func (c *Client) Object(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.objects[key]
	return o.data, ok
}

// Keys returns every key, sorted.
func (c *Client) Keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.objects))
	for k := range c.objects {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Calls returns how many requests of op were made ("GetObject", ...;
// "ListObjectsV2+delimiter" counts the listings of one directory level).
func (c *Client) Calls(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[op]
}

// Uploads returns the number of multipart uploads not completed or aborted.
func (c *Client) Uploads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.uploads)
}

func (c *Client) begin(op, key string) error {
	c.mu.Lock()
	c.calls[op]++
	fail := c.fail
	c.mu.Unlock()
	if fail != nil {
		if err := fail(op, key); err != nil {
			return &s3backend.Error{Op: op, Bucket: c.bucket, Key: key, Kind: kindOf(err), Err: err}
		}
	}
	return nil
}

func kindOf(err error) error {
	for _, k := range []error{s3backend.ErrNotFound, s3backend.ErrDenied, s3backend.ErrUnavailable,
		s3backend.ErrThrottled, s3backend.ErrPrecondition} {
		if err == k {
			return k
		}
	}
	return nil
}

func (c *Client) notFound(op, key string) error {
	return &s3backend.Error{Op: op, Bucket: c.bucket, Key: key, Status: 404, Code: "NoSuchKey", Kind: s3backend.ErrNotFound}
}

// Bucket implements s3backend.Client.
func (c *Client) Bucket() string { return c.bucket }

// Head implements s3backend.Client.
func (c *Client) Head(ctx context.Context, key string) (s3backend.ObjectInfo, error) {
	if err := c.begin("HeadObject", key); err != nil {
		return s3backend.ObjectInfo{}, err
	}
	c.mu.Lock()
	o, ok := c.objects[key]
	done := c.headDone
	c.mu.Unlock()
	if done != nil {
		done(key)
	}
	if !ok {
		return s3backend.ObjectInfo{}, c.notFound("HeadObject", key)
	}
	return s3backend.ObjectInfo{Key: key, Size: int64(len(o.data)), ETag: o.etag, LastModified: o.mtime,
		Meta: o.meta}, nil
}

// List implements s3backend.Client. The token is the last key returned.
func (c *Client) List(ctx context.Context, prefix, delimiter, token string, maxKeys int32) (s3backend.ListPage, error) {
	if delimiter != "" {
		c.mu.Lock()
		c.calls["ListObjectsV2+delimiter"]++
		c.mu.Unlock()
	}
	if err := c.begin("ListObjectsV2", prefix); err != nil {
		return s3backend.ListPage{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0)
	for k := range c.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var page s3backend.ListPage
	seen := map[string]bool{}
	n := int32(0)
	last := ""
	for _, k := range keys {
		if token != "" && (k <= token || delimiter != "" && strings.HasSuffix(token, delimiter) && strings.HasPrefix(k, token)) {
			continue // before the token, or inside the common prefix it ended on
		}
		if n == maxKeys {
			page.NextToken = last
			break
		}
		if delimiter != "" {
			if i := strings.Index(k[len(prefix):], delimiter); i >= 0 {
				p := k[:len(prefix)+i+len(delimiter)]
				if !seen[p] {
					seen[p] = true
					page.Prefixes = append(page.Prefixes, p)
					n++
				}
				last = p
				continue
			}
		}
		last = k
		o := c.objects[k]
		page.Objects = append(page.Objects, s3backend.ObjectInfo{Key: k, Size: int64(len(o.data)), ETag: o.etag, LastModified: o.mtime})
		n++
	}
	return page, nil
}

// OpenRange implements s3backend.Client.
func (c *Client) OpenRange(ctx context.Context, key, etag string, off, n int64) (io.ReadCloser, error) {
	if err := c.begin("GetObject", key); err != nil {
		return nil, err
	}
	c.mu.Lock()
	delay := c.delay
	c.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.objects[key]
	if !ok {
		return nil, c.notFound("GetObject", key)
	}
	if etag != "" && o.etag != etag {
		return nil, &s3backend.Error{Op: "GetObject", Bucket: c.bucket, Key: key, Kind: s3backend.ErrChanged}
	}
	if off >= int64(len(o.data)) {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	end := min(off+n, int64(len(o.data)))
	c.bytesOut += end - off
	return io.NopCloser(bytes.NewReader(o.data[off:end])), nil
}

// BytesOut returns the bytes sent by ranged reads.
func (c *Client) BytesOut() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytesOut
}

// Put implements s3backend.Client.
func (c *Client) Put(ctx context.Context, key string, body []byte, opt s3backend.PutOptions) (string, error) {
	if err := c.begin("PutObject", key); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkLocked("PutObject", key, opt); err != nil {
		return "", err
	}
	c.objects[key] = object{data: append([]byte(nil), body...), etag: etagOf(body), mtime: time.Now(), meta: opt.Meta}
	return etagOf(body), nil
}

// checkLocked applies If-Match / If-None-Match as S3 does (412
// PreconditionFailed).
func (c *Client) checkLocked(op, key string, opt s3backend.PutOptions) error {
	o, exists := c.objects[key]
	if opt.IfNoneMatch == "*" && exists || opt.IfMatch != "" && (!exists || o.etag != opt.IfMatch) {
		return &s3backend.Error{Op: op, Bucket: c.bucket, Key: key, Status: 412, Code: "PreconditionFailed",
			Kind: s3backend.ErrPrecondition}
	}
	return nil
}

// CreateMultipart implements s3backend.Client.
func (c *Client) CreateMultipart(ctx context.Context, key string, meta map[string]string) (string, error) {
	if err := c.begin("CreateMultipartUpload", key); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextID++
	id := fmt.Sprintf("upload-%d", c.nextID)
	c.uploads[id] = &upload{key: key, meta: meta, parts: map[int32][]byte{}}
	return id, nil
}

// UploadPart implements s3backend.Client.
func (c *Client) UploadPart(ctx context.Context, key, uploadID string, num int32, body []byte) (string, error) {
	if err := c.begin("UploadPart", key); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.uploads[uploadID]
	if !ok {
		return "", &s3backend.Error{Op: "UploadPart", Key: key, Code: "NoSuchUpload", Kind: s3backend.ErrNotFound}
	}
	u.parts[num] = append([]byte(nil), body...)
	return etagOf(body), nil
}

// UploadPartCopy implements s3backend.Client.
func (c *Client) UploadPartCopy(ctx context.Context, key, uploadID string, num int32, src, srcETag string, off, n int64) (string, error) {
	if err := c.begin("UploadPartCopy", key); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.uploads[uploadID]
	if !ok {
		return "", &s3backend.Error{Op: "UploadPartCopy", Key: key, Code: "NoSuchUpload", Kind: s3backend.ErrNotFound}
	}
	o, ok := c.objects[src]
	if !ok {
		return "", c.notFound("UploadPartCopy", src)
	}
	if srcETag != "" && o.etag != srcETag {
		return "", &s3backend.Error{Op: "UploadPartCopy", Key: src, Status: 412, Code: "PreconditionFailed",
			Kind: s3backend.ErrPrecondition}
	}
	if off < 0 || n <= 0 || off+n > int64(len(o.data)) {
		return "", &s3backend.Error{Op: "UploadPartCopy", Key: src, Status: 400, Code: "InvalidRange",
			Kind: s3backend.ErrInvalid}
	}
	b := append([]byte(nil), o.data[off:off+n]...)
	u.parts[num] = b
	return etagOf(b), nil
}

// CompleteMultipart implements s3backend.Client. Parts but the last must
// be at least 5 MiB, as on S3.
func (c *Client) CompleteMultipart(ctx context.Context, key, uploadID string, parts []s3backend.Part, opt s3backend.PutOptions) (string, error) {
	if err := c.begin("CompleteMultipartUpload", key); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.uploads[uploadID]
	if !ok {
		return "", &s3backend.Error{Op: "CompleteMultipartUpload", Key: key, Code: "NoSuchUpload", Kind: s3backend.ErrNotFound}
	}
	if err := c.checkLocked("CompleteMultipartUpload", key, opt); err != nil {
		return "", err
	}
	var data []byte
	for i, p := range parts {
		b, ok := u.parts[p.Number]
		if !ok || p.ETag != etagOf(b) || p.Number != int32(i+1) {
			return "", &s3backend.Error{Op: "CompleteMultipartUpload", Key: key, Code: "InvalidPart", Kind: s3backend.ErrInvalid}
		}
		if i < len(parts)-1 && len(b) < 5<<20 {
			return "", &s3backend.Error{Op: "CompleteMultipartUpload", Key: key, Code: "EntityTooSmall", Kind: s3backend.ErrInvalid}
		}
		data = append(data, b...)
	}
	delete(c.uploads, uploadID)
	// A multipart ETag: the MD5 of the data, then "-" and the part count.
	etag := strings.TrimSuffix(etagOf(data), `"`) + fmt.Sprintf(`-%d"`, len(parts))
	c.objects[key] = object{data: data, etag: etag, mtime: time.Now(), meta: u.meta}
	return etag, nil
}

// AbortMultipart implements s3backend.Client.
func (c *Client) AbortMultipart(ctx context.Context, key, uploadID string) error {
	if err := c.begin("AbortMultipartUpload", key); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.uploads, uploadID)
	return nil
}

// Copy implements s3backend.Client.
func (c *Client) Copy(ctx context.Context, src, dst string, opt s3backend.CopyOptions) (string, error) {
	if opt.Size > s3backend.MaxCopySize {
		return s3backend.MultipartCopy(ctx, c, src, dst, opt)
	}
	if err := c.begin("CopyObject", dst); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.objects[src]
	if !ok {
		return "", c.notFound("CopyObject", src)
	}
	if opt.SrcETag != "" && o.etag != opt.SrcETag {
		return "", &s3backend.Error{Op: "CopyObject", Key: src, Status: 412, Code: "PreconditionFailed",
			Kind: s3backend.ErrPrecondition}
	}
	meta := o.meta
	if opt.Meta != nil {
		meta = opt.Meta
	}
	c.objects[dst] = object{data: o.data, etag: o.etag, mtime: time.Now(), meta: meta}
	return o.etag, nil
}

// Delete implements s3backend.Client.
func (c *Client) Delete(ctx context.Context, key string) error {
	if err := c.begin("DeleteObject", key); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.objects, key)
	return nil
}
