package main

// Issue 5's write rows: sequential write against a raw multipart-upload
// ceiling, many small files, and a source tarball extracted into the mount.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"
)

// uploadSetting is one raw multipart configuration: parts in flight and
// part size.
type uploadSetting struct {
	conc     int
	partSize int64
}

func (u uploadSetting) String() string { return fmt.Sprintf("%dx%s", u.conc, fmtSize(u.partSize)) }

// parseUploadSettings parses "4x8M,8x16M".
func parseUploadSettings(s string) ([]uploadSetting, error) {
	var out []uploadSetting
	for _, f := range splitList(s) {
		c, p, ok := strings.Cut(f, "x")
		n, err := strconv.Atoi(c)
		if !ok || err != nil || n < 1 {
			return nil, fmt.Errorf("bad setting %q (want CONCxSIZE, e.g. 8x16M)", f)
		}
		ps, err := parseSize(p)
		if err != nil || ps < 5<<20 {
			return nil, fmt.Errorf("bad part size in %q (at least 5M)", f)
		}
		out = append(out, uploadSetting{n, ps})
	}
	return out, nil
}

// ceilingMultipart uploads the first size bytes of the local file src as
// key with one multipart upload (u.conc parts of u.partSize in flight, each
// read from src by its worker; UNSIGNED-PAYLOAD, no checksums, as s3mount
// sends them), completes it, deletes the object, and returns MB/s from
// CreateMultipartUpload to the end of CompleteMultipartUpload.
func ceilingMultipart(ctx context.Context, c *s3.Client, bucket, key, src string, size int64, u uploadSetting) (float64, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	start := time.Now()
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return 0, err
	}
	nparts := int((size + u.partSize - 1) / u.partSize)
	parts := make([]types.CompletedPart, nparts)
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for w := 0; w < min(u.conc, nparts); w++ {
		g.Go(func() error {
			buf := make([]byte, u.partSize)
			for {
				i := int(next.Add(1) - 1)
				if i >= nparts {
					return nil
				}
				off := int64(i) * u.partSize
				n := min(u.partSize, size-off)
				if _, err := f.ReadAt(buf[:n], off); err != nil && err != io.EOF {
					return err
				}
				pn := int32(i + 1)
				out, err := c.UploadPart(gctx, &s3.UploadPartInput{Bucket: &bucket, Key: &key, UploadId: up.UploadId,
					PartNumber: &pn, Body: bytes.NewReader(buf[:n]), ContentLength: aws.Int64(n)}, unsigned)
				if err != nil {
					return fmt.Errorf("part %d: %w", pn, err)
				}
				parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: &pn}
			}
		})
	}
	if err := g.Wait(); err != nil {
		_, _ = c.AbortMultipartUpload(context.Background(), &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: up.UploadId})
		return 0, err
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &bucket, Key: &key,
		UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}); err != nil {
		return 0, err
	}
	v := mbps(size, time.Since(start))
	deleteKey(c, bucket, key)
	return v, nil
}

// deleteKey removes an object the bench wrote (best effort: it only keeps
// the server's disk small).
func deleteKey(c *s3.Client, bucket, key string) {
	_, _ = c.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: &bucket, Key: &key})
}

// objectSize is the size S3 reports for key.
func objectSize(ctx context.Context, c *s3.Client, bucket, key string) (int64, error) {
	out, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return 0, err
	}
	return aws.ToInt64(out.ContentLength), nil
}

// ddWrite copies src to dst with `dd bs=1M conv=fsync` (the data must be
// durable before dd exits) and returns MB/s over dd's wall time.
func ddWrite(ctx context.Context, src, dst string, want int64) (float64, error) {
	cmd := exec.CommandContext(ctx, "dd", "if="+src, "of="+dst, "bs=1M", "conv=fsync")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("dd of=%s: %v: %s", dst, err, lastLine(errb.String()))
	}
	m := ddBytes.FindStringSubmatch(errb.String())
	if m == nil {
		return 0, fmt.Errorf("dd of=%s: no byte count in %q", dst, errb.String())
	}
	if n, _ := strconv.ParseInt(m[1], 10, 64); n != want {
		return 0, fmt.Errorf("dd wrote %d bytes, want %d", n, want)
	}
	return mbps(want, d), nil
}

// smallFiles creates n files of size bytes each in dir, one after the
// other from this process (create, write, close), and returns seconds.
func smallFiles(ctx context.Context, dir string, n int, size int64) (float64, error) {
	body := bytes.Repeat([]byte("s3mount small file\n"), int(size)/19+1)[:size]
	start := time.Now()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return 0, err
	}
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d.txt", i)), body, 0o644); err != nil {
			return 0, err
		}
	}
	return time.Since(start).Seconds(), nil
}

// makeTarball writes a tar of tree (its last element as the top
// directory) to path and returns the number of regular files and bytes in it.
func makeTarball(tree, path string) (int, int64, error) {
	files, bytes := 0, int64(0)
	err := filepath.WalkDir(tree, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			files++
			bytes += fi.Size()
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	out, err := exec.Command("tar", "-cf", path, "-C", filepath.Dir(tree), filepath.Base(tree)).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("tar -cf %s: %v: %s", path, err, lastLine(string(out)))
	}
	return files, bytes, nil
}

// untar extracts tarball into dir (created) with `tar -xf` (modes and
// mtimes kept, owners not: --no-same-owner) and returns seconds.
func untar(ctx context.Context, tarball, dir string) (float64, error) {
	start := time.Now()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return 0, err
	}
	if _, _, err := run(ctx, "tar", "-xf", tarball, "-C", dir, "--no-same-owner"); err != nil {
		return 0, err
	}
	return time.Since(start).Seconds(), nil
}
