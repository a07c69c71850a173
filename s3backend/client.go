// Package s3backend is s3mount's only door to S3: a narrow Client interface
// sized to what the filesystem needs, one adapter over aws-sdk-go-v2's
// *s3.Client, and the single mapping from S3 failures to errno (ToErrno).
//
// Retries are the SDK's standard retryer (exponential backoff with jitter);
// an error returned here has exhausted them. Keys are sent exactly as given:
// no cleaning, no percent-decoding, and CopySource is percent-encoded so that
// "+" and "%" survive (S3 API Reference, CopyObject, x-amz-copy-source).
package s3backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"
)

// ObjectInfo describes one object. Size is in bytes; ETag is as S3 returns
// it, quotes included.
type ObjectInfo struct {
	Key          string
	Size         int64
	ETag         string
	LastModified time.Time
	// Meta is the object's user metadata (x-amz-meta-NAME headers), names
	// in lower case without the prefix. Only Head fills it: ListObjectsV2
	// does not return metadata.
	Meta map[string]string
}

// ListPage is one page of ListObjectsV2. With a delimiter, Prefixes holds
// the common prefixes (each ending in the delimiter). NextToken is empty on
// the last page.
type ListPage struct {
	Objects   []ObjectInfo
	Prefixes  []string
	NextToken string
}

// Part is one uploaded part of a multipart upload.
type Part struct {
	Number int32 // 1..10000
	ETag   string
}

// PutOptions are the conditions of a write (S3 API Reference, PutObject
// and CompleteMultipartUpload, If-Match / If-None-Match).
type PutOptions struct {
	// IfNoneMatch "*" commits only when no object exists under the key.
	IfNoneMatch string
	// IfMatch commits only when the current object has this ETag.
	IfMatch string
	// Meta is the user metadata to store (x-amz-meta-NAME: value). Put
	// sends it; CompleteMultipart ignores it (it goes to CreateMultipart).
	Meta map[string]string
}

// CopyOptions shape a CopyObject.
type CopyOptions struct {
	// SrcETag copies only if the source still has this ETag
	// (x-amz-copy-source-if-match); otherwise ErrPrecondition.
	SrcETag string
	// Meta, when not nil, replaces the metadata (x-amz-metadata-directive:
	// REPLACE); nil keeps the source's (COPY).
	Meta map[string]string
	// Size is the source's size in bytes. Above 5 GiB, the most one
	// CopyObject may copy, Copy does a multipart copy instead
	// (UploadPartCopy of 1 GiB parts; S3 API Reference, CopyObject).
	Size int64
}

// MaxCopySize is the largest object one CopyObject copies: 5 GiB (S3 API
// Reference, CopyObject).
const MaxCopySize = 5 << 30

// Client is everything s3mount asks of one bucket. Every method takes the
// FUSE request's context (cancellation → context.Canceled → EINTR) and
// returns an *Error wrapping one of the Err* kinds on failure.
type Client interface {
	// Bucket names the bucket this client serves.
	Bucket() string
	// Head returns the object's metadata (HeadObject). ErrNotFound when absent.
	Head(ctx context.Context, key string) (ObjectInfo, error)
	// List returns one page of ListObjectsV2 under prefix, at most maxKeys
	// entries (1..1000), continuing from token ("" for the first page).
	List(ctx context.Context, prefix, delimiter, token string, maxKeys int32) (ListPage, error)
	// OpenRange starts a GetObject of the n bytes from off (Range header)
	// and returns the body, which holds fewer bytes only at the end of the
	// object (none when off is at or past it). When etag is not empty and
	// the object's ETag differs, it returns ErrChanged. The caller closes
	// the body; a failure while reading it is an *Error too.
	OpenRange(ctx context.Context, key, etag string, off, n int64) (io.ReadCloser, error)
	// Put writes a whole object in one PutObject and returns its ETag.
	Put(ctx context.Context, key string, body []byte, opt PutOptions) (string, error)
	// CreateMultipart starts a multipart upload of an object with user
	// metadata meta (may be nil) and returns its upload ID.
	CreateMultipart(ctx context.Context, key string, meta map[string]string) (string, error)
	// UploadPart sends part number num (1..10000) and returns its ETag.
	UploadPart(ctx context.Context, key, uploadID string, num int32, body []byte) (string, error)
	// UploadPartCopy makes part number num of the upload from the n bytes
	// at off of object src, copied inside S3 only if src still has ETag
	// srcETag (UploadPartCopy with x-amz-copy-source-range and
	// x-amz-copy-source-if-match; ErrPrecondition otherwise). It returns
	// the part's ETag.
	UploadPartCopy(ctx context.Context, key, uploadID string, num int32, src, srcETag string, off, n int64) (string, error)
	// CompleteMultipart joins the parts, in order, and returns the ETag.
	CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part, opt PutOptions) (string, error)
	// AbortMultipart discards an upload and its parts.
	AbortMultipart(ctx context.Context, key, uploadID string) error
	// Copy copies src to dst within the bucket (CopyObject; a multipart
	// copy above MaxCopySize, see CopyOptions.Size) and returns the new
	// object's ETag.
	Copy(ctx context.Context, src, dst string, opt CopyOptions) (string, error)
	// Delete removes the object (DeleteObject). Deleting a missing key succeeds.
	Delete(ctx context.Context, key string) error
}

// Probe checks that the bucket answers and the credentials may list the
// mount's prefix: one ListObjectsV2 of prefix with max-keys 1 (never
// HeadBucket or an unprefixed list, which a user limited to a prefix may
// not have). Its error reads as one line for a person: the bucket is
// missing, access is denied, or the endpoint cannot be reached.
func Probe(ctx context.Context, c Client, prefix, endpoint string) error {
	_, err := c.List(ctx, prefix, "/", "", 1)
	if err == nil {
		return nil
	}
	f := describe(err, endpoint)
	switch {
	case f.common != nil:
		return f.common
	case f.code == "NoSuchBucket":
		return fmt.Errorf("bucket %q does not exist at %s (NoSuchBucket)", c.Bucket(), f.where)
	case errors.Is(err, ErrDenied), f.code == "InvalidAccessKeyId":
		return fmt.Errorf("access denied listing s3://%s/%s (%s): check the credentials and the bucket policy", c.Bucket(), prefix, f.code)
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("bucket %q not found at %s (%s)", c.Bucket(), f.where, f.code)
	}
	return fmt.Errorf("checking s3://%s/%s: %w", c.Bucket(), prefix, err)
}

// failure is what a probe's error says, read once for the messages of
// Probe and ProbeBuckets.
type failure struct {
	code   string // S3 error code, or "HTTP nnn"
	where  string // the endpoint, for messages
	common error  // the one-line message when the cause is not the probe's own
}

// describe reads a probe's error: its code, and a message for the causes
// every probe shares (role, credentials, an unreachable endpoint).
func describe(err error, endpoint string) failure {
	f := failure{where: endpoint}
	if f.where == "" {
		f.where = "the AWS endpoint"
	}
	var e *Error
	if errors.As(err, &e) {
		f.code = e.Code
		if f.code == "" && e.Status != 0 {
			f.code = fmt.Sprintf("HTTP %d", e.Status)
		}
	}
	switch {
	case errors.Is(err, ErrAssumeRole):
		f.common = AssumeRoleError(err)
	case errors.Is(err, ErrNoCredentials):
		f.common = errors.New("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or --access-key-id with --secret-access-key-file")
	case errors.Is(err, ErrUnavailable) && e != nil && e.Status == 0:
		f.common = fmt.Errorf("cannot reach the S3 endpoint %s: %v", f.where, rootCause(e.Err))
	}
	return f
}

// AssumeRoleError says in one line why STS AssumeRole failed: the STS
// error code and message, or why the endpoint could not be reached.
func AssumeRoleError(err error) error {
	why := rootCause(err).Error()
	var ae smithy.APIError
	if errors.As(err, &ae) {
		why = ae.ErrorCode()
		if m := ae.ErrorMessage(); m != "" {
			why += ": " + m
		}
	}
	return fmt.Errorf("STS AssumeRole failed (%s): check the role ARN, the external ID and the role's trust policy", why)
}

// copyPartSize is the part size of MultipartCopy: 1 GiB, so that S3's
// 5 TiB object limit fits in 5,120 parts.
const copyPartSize = 1 << 30

// MultipartCopy copies src (opt.Size bytes) to dst with a multipart upload
// whose parts are UploadPartCopy ranges of src, four at a time; for objects
// above MaxCopySize (S3 API Reference, CopyObject: "to copy an object
// greater than 5 GB, you must use the multipart upload Upload Part - Copy
// API"). The metadata is opt.Meta when set; otherwise src's, read with Head.
// On failure the upload is aborted and the error returned.
func MultipartCopy(ctx context.Context, c Client, src, dst string, opt CopyOptions) (string, error) {
	meta := opt.Meta
	if meta == nil {
		info, err := c.Head(ctx, src)
		if err != nil {
			return "", err
		}
		meta = info.Meta
		if opt.SrcETag == "" {
			opt.SrcETag = info.ETag
		}
	}
	id, err := c.CreateMultipart(ctx, dst, meta)
	if err != nil {
		return "", err
	}
	n := int((opt.Size + copyPartSize - 1) / copyPartSize)
	parts := make([]Part, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i := range n {
		off := int64(i) * copyPartSize
		size := min(copyPartSize, opt.Size-off)
		g.Go(func() error {
			etag, err := c.UploadPartCopy(gctx, dst, id, int32(i+1), src, opt.SrcETag, off, size)
			parts[i] = Part{Number: int32(i + 1), ETag: etag}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		_ = c.AbortMultipart(context.WithoutCancel(ctx), dst, id)
		return "", err
	}
	etag, err := c.CompleteMultipart(ctx, dst, id, parts, PutOptions{})
	if err != nil {
		_ = c.AbortMultipart(context.WithoutCancel(ctx), dst, id)
		return "", err
	}
	return etag, nil
}
