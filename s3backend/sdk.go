package s3backend

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Config is what New needs to reach one bucket.
type Config struct {
	Bucket string
	// Region of the bucket; empty: the SDK's chain, then us-east-1.
	Region string
	// EndpointURL overrides the endpoint; empty: the SDK's resolution.
	EndpointURL    string
	ForcePathStyle bool
	// AccessKeyID and SecretAccessKey select static credentials; both
	// empty: the standard AWS credential chain (env, profile, IMDS, web
	// identity). With a Role, they (or the chain) are the caller of
	// AssumeRole.
	AccessKeyID     string
	SecretAccessKey string
	// Role, when Role.ARN is set, is assumed with STS AssumeRole and its
	// credentials sign every S3 request.
	Role Role
	// MaxConns bounds idle connections kept to the endpoint. Default 64.
	MaxConns int
	// MaxAttempts is the SDK retryer's attempt count per request. Default 5.
	MaxAttempts int
	Logger      *slog.Logger
}

// S3 is the Client over aws-sdk-go-v2.
type S3 struct {
	api    *s3.Client
	bucket string
	log    *slog.Logger
}

var _ Client = (*S3)(nil)

// New builds the client of cfg.Bucket in cfg.Region (a Session of one
// bucket). It makes no request; see Probe.
func New(ctx context.Context, cfg Config) (*S3, error) {
	s, err := NewSession(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return s.ForBucket(cfg.Bucket, ""), nil
}

// Deadlines of requests whose caller set none, retries included, so that
// a server that stops answering fails the operation with EIO instead of
// hanging the program (and, for writes, leaves it unkillable in the kernel).
var (
	// requestTimeout bounds requests without a body to speak of.
	requestTimeout = 60 * time.Second
	// completeTimeout bounds CompleteMultipartUpload and CopyObject, which
	// servers may answer only once the whole object is assembled.
	completeTimeout = 15 * time.Minute
)

// transferTimeout bounds a request carrying n bytes: 60 s, plus one second
// per MiB (at least 1 MiB/s).
func transferTimeout(n int64) time.Duration {
	return requestTimeout + time.Duration(n>>20)*time.Second
}

// bounded gives ctx the deadline d unless it already has one.
func bounded(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// unsignedPayload sends bodies as UNSIGNED-PAYLOAD instead of hashing them.
var unsignedPayload = s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)

func (c *S3) fail(op, key string, err error) error {
	e := classify(op, c.bucket, key, err)
	logFailure(c.log, e)
	return e
}

// Bucket implements Client.
func (c *S3) Bucket() string { return c.bucket }

// Head implements Client (HeadObject).
func (c *S3) Head(ctx context.Context, key string) (ObjectInfo, error) {
	ctx, cancel := bounded(ctx, requestTimeout)
	defer cancel()
	out, err := c.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &c.bucket, Key: &key})
	if err != nil {
		return ObjectInfo{}, c.fail("HeadObject", key, err)
	}
	var meta map[string]string
	if len(out.Metadata) > 0 {
		meta = make(map[string]string, len(out.Metadata))
		for k, v := range out.Metadata {
			meta[strings.ToLower(k)] = v
		}
	}
	return ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag),
		LastModified: aws.ToTime(out.LastModified), Meta: meta}, nil
}

// List implements Client (ListObjectsV2).
func (c *S3) List(ctx context.Context, prefix, delimiter, token string, maxKeys int32) (ListPage, error) {
	ctx, cancel := bounded(ctx, requestTimeout)
	defer cancel()
	in := &s3.ListObjectsV2Input{Bucket: &c.bucket, Prefix: &prefix, MaxKeys: &maxKeys}
	if delimiter != "" {
		in.Delimiter = &delimiter
	}
	if token != "" {
		in.ContinuationToken = &token
	}
	out, err := c.api.ListObjectsV2(ctx, in)
	if err != nil {
		return ListPage{}, c.fail("ListObjectsV2", prefix, err)
	}
	page := ListPage{Objects: make([]ObjectInfo, 0, len(out.Contents))}
	for _, o := range out.Contents {
		page.Objects = append(page.Objects, ObjectInfo{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size),
			ETag: aws.ToString(o.ETag), LastModified: aws.ToTime(o.LastModified)})
	}
	for _, p := range out.CommonPrefixes {
		page.Prefixes = append(page.Prefixes, aws.ToString(p.Prefix))
	}
	if aws.ToBool(out.IsTruncated) {
		page.NextToken = aws.ToString(out.NextContinuationToken)
		if page.NextToken == "" {
			return ListPage{}, c.fail("ListObjectsV2", prefix, errors.New("truncated listing without a continuation token"))
		}
	}
	return page, nil
}

// OpenRange implements Client (GetObject with Range: bytes=off-(off+n-1)).
func (c *S3) OpenRange(ctx context.Context, key, etag string, off, n int64) (io.ReadCloser, error) {
	if n <= 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	rng := fmt.Sprintf("bytes=%d-%d", off, off+n-1)
	out, err := c.api.GetObject(ctx, &s3.GetObjectInput{Bucket: &c.bucket, Key: &key, Range: &rng})
	if err != nil {
		e := classify("GetObject", c.bucket, key, err)
		if e.Code == "InvalidRange" || e.Status == http.StatusRequestedRangeNotSatisfiable {
			return io.NopCloser(strings.NewReader("")), nil // off at or past the end
		}
		logFailure(c.log, e)
		return nil, e
	}
	if etag != "" && out.ETag != nil && *out.ETag != etag {
		out.Body.Close()
		e := &Error{Op: "GetObject", Bucket: c.bucket, Key: key, Kind: ErrChanged,
			Err: fmt.Errorf("ETag is %s, expected %s", *out.ETag, etag)}
		logFailure(c.log, e)
		return nil, e
	}
	return &body{ReadCloser: out.Body, c: c, key: key}, nil
}

// body classifies and logs a failure while a GetObject body is read.
type body struct {
	io.ReadCloser
	c   *S3
	key string
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = b.c.fail("GetObject", b.key, err)
	}
	return n, err
}

func conditions(opt PutOptions) (ifMatch, ifNoneMatch *string) {
	if opt.IfMatch != "" {
		ifMatch = aws.String(opt.IfMatch)
	}
	if opt.IfNoneMatch != "" {
		ifNoneMatch = aws.String(opt.IfNoneMatch)
	}
	return
}

// Put implements Client (PutObject).
func (c *S3) Put(ctx context.Context, key string, body []byte, opt PutOptions) (string, error) {
	ctx, cancel := bounded(ctx, transferTimeout(int64(len(body))))
	defer cancel()
	ifMatch, ifNoneMatch := conditions(opt)
	out, err := c.api.PutObject(ctx, &s3.PutObjectInput{Bucket: &c.bucket, Key: &key,
		Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
		IfMatch: ifMatch, IfNoneMatch: ifNoneMatch, Metadata: opt.Meta}, unsignedPayload, sliceBody(body))
	if err != nil {
		if etag, ok := c.wroteAnyway(ctx, "PutObject", key, opt, err, func() string { return putETag(body) }); ok {
			return etag, nil
		}
		return "", c.fail("PutObject", key, err)
	}
	return aws.ToString(out.ETag), nil
}

// wroteAnyway reports whether a conditional write (op: PutObject or
// CompleteMultipartUpload) that failed with err did in fact write key, and
// returns the object's ETag if so.
//
// The SDK retries a request whose response was lost (a 5xx or a reset after
// the server had stored the object); the retry's If-None-Match: * or
// If-Match then fails with 412 against the object its first attempt wrote.
// After a 412 the object's ETag (HeadObject) is compared with the one this
// write makes, want() (S3's ETag of an object stored without SSE-KMS or
// SSE-C: see putETag, multipartETag); another client's object, or one
// whose ETag is not an MD5, does not match and the 412 stands.
func (c *S3) wroteAnyway(ctx context.Context, op, key string, opt PutOptions, err error, want func() string) (string, bool) {
	if opt.IfMatch == "" && opt.IfNoneMatch == "" || classify(op, c.bucket, key, err).Kind != ErrPrecondition {
		return "", false
	}
	info, herr := c.Head(ctx, key)
	if herr != nil || info.ETag == "" || info.ETag != want() {
		return "", false
	}
	c.log.Info(op+" answered 412 to a retry, but the object is this write's (the first attempt's response was lost)",
		"bucket", c.bucket, "key", key, "etag", info.ETag)
	return info.ETag, true
}

// putETag is the ETag S3 gives an object PutObject stores from body without
// SSE-KMS or SSE-C: the hex MD5 of its bytes, quoted.
func putETag(body []byte) string {
	sum := md5.Sum(body)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// multipartETag is the ETag S3 gives an object completed from parts whose
// ETags are MD5s: the hex MD5 of their binary MD5s, "-" and the part count,
// quoted. "" when a part's ETag is not an MD5.
func multipartETag(parts []Part) string {
	h := md5.New()
	for _, p := range parts {
		b, err := hex.DecodeString(strings.Trim(p.ETag, `"`))
		if err != nil || len(b) != md5.Size {
			return ""
		}
		h.Write(b)
	}
	return fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(h.Sum(nil)), len(parts))
}

// CreateMultipart implements Client (CreateMultipartUpload).
func (c *S3) CreateMultipart(ctx context.Context, key string, meta map[string]string) (string, error) {
	ctx, cancel := bounded(ctx, requestTimeout)
	defer cancel()
	out, err := c.api.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &c.bucket, Key: &key,
		Metadata: meta})
	if err != nil {
		return "", c.fail("CreateMultipartUpload", key, err)
	}
	return aws.ToString(out.UploadId), nil
}

// UploadPart implements Client (UploadPart).
func (c *S3) UploadPart(ctx context.Context, key, uploadID string, num int32, body []byte) (string, error) {
	ctx, cancel := bounded(ctx, transferTimeout(int64(len(body))))
	defer cancel()
	out, err := c.api.UploadPart(ctx, &s3.UploadPartInput{Bucket: &c.bucket, Key: &key, UploadId: &uploadID,
		PartNumber: &num, Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body)))},
		unsignedPayload, sliceBody(body))
	if err != nil {
		return "", c.fail("UploadPart", key, err)
	}
	return aws.ToString(out.ETag), nil
}

// UploadPartCopy implements Client (UploadPartCopy).
func (c *S3) UploadPartCopy(ctx context.Context, key, uploadID string, num int32, src, srcETag string, off, n int64) (string, error) {
	ctx, cancel := bounded(ctx, completeTimeout)
	defer cancel()
	source := CopySource(c.bucket, src)
	rng := fmt.Sprintf("bytes=%d-%d", off, off+n-1)
	in := &s3.UploadPartCopyInput{Bucket: &c.bucket, Key: &key, UploadId: &uploadID, PartNumber: &num,
		CopySource: &source, CopySourceRange: &rng}
	if srcETag != "" {
		in.CopySourceIfMatch = &srcETag
	}
	out, err := c.api.UploadPartCopy(ctx, in)
	if err != nil {
		return "", c.fail("UploadPartCopy", key, err)
	}
	if out.CopyPartResult == nil {
		return "", c.fail("UploadPartCopy", key, errors.New("no CopyPartResult in the answer"))
	}
	return aws.ToString(out.CopyPartResult.ETag), nil
}

// CompleteMultipart implements Client (CompleteMultipartUpload).
func (c *S3) CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part, opt PutOptions) (string, error) {
	ctx, cancel := bounded(ctx, completeTimeout)
	defer cancel()
	cp := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		cp[i] = types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag)}
	}
	ifMatch, ifNoneMatch := conditions(opt)
	out, err := c.api.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &c.bucket, Key: &key,
		UploadId: &uploadID, MultipartUpload: &types.CompletedMultipartUpload{Parts: cp},
		IfMatch: ifMatch, IfNoneMatch: ifNoneMatch})
	if err != nil {
		if etag, ok := c.wroteAnyway(ctx, "CompleteMultipartUpload", key, opt, err, func() string { return multipartETag(parts) }); ok {
			return etag, nil
		}
		return "", c.fail("CompleteMultipartUpload", key, err)
	}
	return aws.ToString(out.ETag), nil
}

// AbortMultipart implements Client (AbortMultipartUpload).
func (c *S3) AbortMultipart(ctx context.Context, key, uploadID string) error {
	ctx, cancel := bounded(ctx, requestTimeout)
	defer cancel()
	_, err := c.api.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &c.bucket, Key: &key, UploadId: &uploadID})
	if err != nil {
		return c.fail("AbortMultipartUpload", key, err)
	}
	return nil
}

// Copy implements Client (CopyObject, or a multipart copy above
// MaxCopySize).
func (c *S3) Copy(ctx context.Context, src, dst string, opt CopyOptions) (string, error) {
	if opt.Size > MaxCopySize {
		return MultipartCopy(ctx, c, src, dst, opt)
	}
	ctx, cancel := bounded(ctx, completeTimeout)
	defer cancel()
	source := CopySource(c.bucket, src)
	in := &s3.CopyObjectInput{Bucket: &c.bucket, Key: &dst, CopySource: &source}
	if opt.SrcETag != "" {
		in.CopySourceIfMatch = &opt.SrcETag
	}
	if opt.Meta != nil {
		in.Metadata = opt.Meta
		in.MetadataDirective = types.MetadataDirectiveReplace
	}
	out, err := c.api.CopyObject(ctx, in)
	if err != nil {
		return "", c.fail("CopyObject", dst, err)
	}
	if out.CopyObjectResult == nil {
		return "", nil
	}
	return aws.ToString(out.CopyObjectResult.ETag), nil
}

// Delete implements Client (DeleteObject).
func (c *S3) Delete(ctx context.Context, key string) error {
	ctx, cancel := bounded(ctx, requestTimeout)
	defer cancel()
	_, err := c.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &c.bucket, Key: &key})
	if err != nil {
		e := classify("DeleteObject", c.bucket, key, err)
		if e.Kind == ErrNotFound && e.Code != "NoSuchBucket" {
			return nil // S3 itself answers 204 for a missing key
		}
		logFailure(c.log, e)
		return e
	}
	return nil
}

// CopySource builds the x-amz-copy-source value "bucket/key" with the key
// percent-encoded byte by byte: everything but unreserved characters and
// "/" is escaped, so "+" arrives as "+" and not as a space, and "%" as
// "%" (S3 API Reference, CopyObject: "The value must be URL-encoded").
func CopySource(bucket, key string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(bucket) + 1 + len(key)*3)
	b.WriteString(bucket)
	b.WriteByte('/')
	for i := 0; i < len(key); i++ {
		ch := key[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' ||
			ch == '-' || ch == '_' || ch == '.' || ch == '~' || ch == '/' {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[ch>>4])
		b.WriteByte(hex[ch&15])
	}
	return b.String()
}
