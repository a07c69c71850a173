package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/s3mount/s3mount/test/harness"
)

// newS3 builds the bench's SDK client: the SDK's own HTTP client (a custom
// one is refused when AWS_CA_BUNDLE is set) with more idle connections and
// larger socket buffers, checksums only when required, path style.
func newS3(ctx context.Context, ep harness.Endpoint) (*s3.Client, error) {
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 256
		t.ReadBufferSize = 256 << 10
		t.WriteBufferSize = 256 << 10
		t.DisableCompression = true
	})
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion(ep.RegionOrDefault()),
		config.WithHTTPClient(hc),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ep.AccessKey, ep.SecretKey, "")),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
	)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(ep.URL)
		o.UsePathStyle = true
	}), nil
}

// unsigned skips SigV4's body hash (plain http on loopback: it only costs CPU).
var unsigned = s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)

// genReader is deterministic pseudo-random data for part i of an object.
func genPart(key string, part int, buf []byte) {
	var seed [32]byte
	copy(seed[:], fmt.Sprintf("%s/%d", key, part))
	_, _ = mrand.NewChaCha8(seed).Read(buf)
}

// putGenerated stores size pseudo-random bytes at key: one PutObject up to
// 64 MiB, else a multipart upload of 64 MiB parts, 4 at once.
func putGenerated(ctx context.Context, c *s3.Client, bucket, key string, size int64) error {
	const partSize = 64 << 20
	if size <= partSize {
		buf := make([]byte, size)
		genPart(key, 1, buf)
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key,
			Body: bytes.NewReader(buf), ContentLength: aws.Int64(size)}, unsigned)
		return err
	}
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return err
	}
	nparts := int((size + partSize - 1) / partSize)
	parts := make([]types.CompletedPart, nparts)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i := 0; i < nparts; i++ {
		g.Go(func() error {
			n := min(int64(partSize), size-int64(i)*partSize)
			buf := make([]byte, n)
			genPart(key, i+1, buf)
			out, err := c.UploadPart(gctx, &s3.UploadPartInput{Bucket: &bucket, Key: &key,
				UploadId: up.UploadId, PartNumber: aws.Int32(int32(i + 1)),
				Body: bytes.NewReader(buf), ContentLength: aws.Int64(n)}, unsigned)
			if err != nil {
				return fmt.Errorf("part %d: %w", i+1, err)
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		_, _ = c.AbortMultipartUpload(context.Background(), &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: up.UploadId})
		return err
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &bucket, Key: &key,
		UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	return err
}

// putMany stores n small objects prefix/000000.. with 32 requests at once.
func putMany(ctx context.Context, c *s3.Client, bucket, prefix string, n int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	body := bytes.Repeat([]byte("s3mount bench\n"), 8)
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("%s%06d.txt", prefix, i)
		g.Go(func() error {
			_, err := c.PutObject(gctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key,
				Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body)))}, unsigned)
			if err != nil {
				return fmt.Errorf("put %s: %w", key, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// uploadTree stores every regular file under dir as prefix+relative path
// (32 at once) and returns the file count and total bytes.
func uploadTree(ctx context.Context, c *s3.Client, bucket, prefix, dir string) (int, int64, error) {
	type job struct{ key, path string }
	var jobs []job
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		jobs = append(jobs, job{prefix + filepath.ToSlash(rel), path})
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	var total atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for _, j := range jobs {
		g.Go(func() error {
			b, err := os.ReadFile(j.path)
			if err != nil {
				return err
			}
			total.Add(int64(len(b)))
			_, err = c.PutObject(gctx, &s3.PutObjectInput{Bucket: &bucket, Key: &j.key,
				Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b)))}, unsigned)
			if err != nil {
				return fmt.Errorf("put %s: %w", j.key, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, err
	}
	return len(jobs), total.Load(), nil
}

// listAll lists every key under prefix; the bench uses it to warm the
// server's directory caches before a listing workload.
func listAll(ctx context.Context, c *s3.Client, bucket, prefix string) (int, error) {
	n := 0
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, err
		}
		n += len(page.Contents)
	}
	return n, nil
}

// discard is io.Discard without ReadFrom, so that io.CopyBuffer uses our
// large buffer instead of io.Discard's 8 KiB one.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// ceilingSingle GETs the first size bytes of the object in one stream (the
// whole object when whole is set) and returns MB/s.
func ceilingSingle(ctx context.Context, c *s3.Client, bucket, key string, size int64, whole bool) (float64, error) {
	start := time.Now()
	in := &s3.GetObjectInput{Bucket: &bucket, Key: &key}
	if !whole {
		in.Range = aws.String(fmt.Sprintf("bytes=0-%d", size-1))
	}
	out, err := c.GetObject(ctx, in)
	if err != nil {
		return 0, err
	}
	defer out.Body.Close()
	n, err := io.CopyBuffer(discard{}, out.Body, make([]byte, 1<<20))
	if err != nil {
		return 0, err
	}
	if n != size {
		return 0, fmt.Errorf("read %d bytes, want %d", n, size)
	}
	return mbps(size, time.Since(start)), nil
}

// ceilingRanges GETs the first size bytes of the object as rangeSize
// ranges, streams at once, and returns MB/s.
func ceilingRanges(ctx context.Context, c *s3.Client, bucket, key string, size, rangeSize int64, streams int) (float64, error) {
	var next atomic.Int64
	var total atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for w := 0; w < streams; w++ {
		g.Go(func() error {
			buf := make([]byte, 1<<20)
			for {
				off := next.Add(rangeSize) - rangeSize
				if off >= size {
					return nil
				}
				end := min(off+rangeSize, size) - 1
				out, err := c.GetObject(gctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key,
					Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, end))})
				if err != nil {
					return err
				}
				n, err := io.CopyBuffer(discard{}, out.Body, buf)
				out.Body.Close()
				if err != nil {
					return err
				}
				total.Add(n)
			}
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	if total.Load() != size {
		return 0, fmt.Errorf("read %d bytes, want %d", total.Load(), size)
	}
	return mbps(size, time.Since(start)), nil
}

// mbps is decimal megabytes per second.
func mbps(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / 1e6 / d.Seconds()
}

// parseSize reads 512M, 1G, 64K, 100 (bytes); suffixes are powers of 1024.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	s = strings.TrimSuffix(strings.TrimSuffix(s, "B"), "I")
	mult := int64(1)
	if s != "" {
		switch s[len(s)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			s = s[:len(s)-1]
		}
	}
	var v float64
	if _, err := fmt.Sscanf(s, "%g", &v); err != nil || v < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(v * float64(mult)), nil
}

// fmtSize prints a byte count with a binary suffix.
func fmtSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dG", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dK", n>>10)
	}
	return fmt.Sprintf("%d", n)
}
