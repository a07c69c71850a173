package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"
)

// Client is the harness's S3 client: path style, static credentials,
// checksums only when required. It uses the SDK's own HTTP client (a custom
// one is refused when AWS_CA_BUNDLE is set).
type Client struct {
	S3 *s3.Client
}

// Object is a key and its size.
type Object struct {
	Key  string
	Size int64
}

// NewClient builds a client for ep.
func NewClient(ctx context.Context, ep Endpoint) (*Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion(ep.RegionOrDefault()),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ep.AccessKey, ep.SecretKey, "")),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
	)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	c := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(ep.URL)
		o.UsePathStyle = true
	})
	return &Client{S3: c}, nil
}

// CreateBucket creates a bucket; one that this account already owns is fine.
func (c *Client) CreateBucket(ctx context.Context, bucket string) error {
	_, err := c.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	if errors.As(err, &owned) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	return nil
}

// PutObject stores body at bucket/key.
func (c *Client) PutObject(ctx context.Context, bucket, key string, body []byte) error {
	_, err := c.S3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
	})
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	return nil
}

// PutFile stores a local file at bucket/key with one PutObject.
func (c *Client) PutFile(ctx context.Context, bucket, key, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	_, err = c.S3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(bucket),
		Key:           aws.String(key),
		Body:          f,
		ContentLength: aws.Int64(fi.Size()),
	})
	if err != nil {
		return fmt.Errorf("put %s/%s from %s: %w", bucket, key, path, err)
	}
	return nil
}

// PutMany stores every key of objs with at most concurrency requests at once.
func (c *Client) PutMany(ctx context.Context, bucket string, objs map[string][]byte, concurrency int) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(max(concurrency, 1))
	for k, v := range objs {
		g.Go(func() error { return c.PutObject(ctx, bucket, k, v) })
	}
	return g.Wait()
}

// GetObject returns the whole body of bucket/key.
func (c *Client) GetObject(ctx context.Context, bucket, key string) ([]byte, error) {
	out, err := c.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: reading body: %w", bucket, key, err)
	}
	return b, nil
}

// GetObjectTo streams bucket/key into w and returns the byte count.
func (c *Client) GetObjectTo(ctx context.Context, bucket, key string, w io.Writer) (int64, error) {
	out, err := c.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return 0, fmt.Errorf("get %s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	n, err := io.Copy(w, out.Body)
	if err != nil {
		return n, fmt.Errorf("get %s/%s: reading body: %w", bucket, key, err)
	}
	return n, nil
}

// HeadObject returns the size of bucket/key.
func (c *Client) HeadObject(ctx context.Context, bucket, key string) (int64, error) {
	out, err := c.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return 0, fmt.Errorf("head %s/%s: %w", bucket, key, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// HeadETag returns the size and ETag (quotes removed) of bucket/key. A
// multipart upload's ETag ends in "-<part count>".
func (c *Client) HeadETag(ctx context.Context, bucket, key string) (int64, string, error) {
	out, err := c.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return 0, "", fmt.Errorf("head %s/%s: %w", bucket, key, err)
	}
	return aws.ToInt64(out.ContentLength), strings.Trim(aws.ToString(out.ETag), `"`), nil
}

// IsNotFound reports whether err is S3's "no such key/bucket" (or a 404).
func IsNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	var nsb *types.NoSuchBucket
	if errors.As(err, &nsk) || errors.As(err, &nf) || errors.As(err, &nsb) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchBucket":
			return true
		}
	}
	return false
}

// ListAll lists every object under prefix (no delimiter), in key order.
func (c *Client) ListAll(ctx context.Context, bucket, prefix string) ([]Object, error) {
	var objs []Object
	p := s3.NewListObjectsV2Paginator(c.S3, &s3.ListObjectsV2Input{
		Bucket: aws.String(bucket),
		Prefix: aws.String(prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %s/%s: %w", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			objs = append(objs, Object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size)})
		}
	}
	return objs, nil
}

// ListAllKeys lists every key under prefix (no delimiter), in key order.
func (c *Client) ListAllKeys(ctx context.Context, bucket, prefix string) ([]string, error) {
	objs, err := c.ListAll(ctx, bucket, prefix)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(objs))
	for i, o := range objs {
		keys[i] = o.Key
	}
	return keys, nil
}

// UploadTree uploads every regular file under localDir to bucket as
// prefix + relative path (slash separated), at most concurrency at once.
// Symlinks and other special files are skipped. It returns the number of
// objects written.
func (c *Client) UploadTree(ctx context.Context, bucket, prefix, localDir string, concurrency int) (int, error) {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	type job struct{ key, path string }
	var jobs []job
	err := filepath.WalkDir(localDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(localDir, path)
		if err != nil {
			return err
		}
		jobs = append(jobs, job{key: prefix + filepath.ToSlash(rel), path: path})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("walking %s: %w", localDir, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(concurrency, 1))
	for _, j := range jobs {
		g.Go(func() error { return c.PutFile(gctx, bucket, j.key, j.path) })
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return len(jobs), nil
}
