//go:build integration

package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/s3mount/s3mount/test/harness"
)

const mib = 1 << 20

// TestCopyRoundTrip copies random files of sizes around the 5 MiB part size
// into the mount with cp, copies them back (through the same mount and
// through a fresh one) and checks the object in S3.
func TestCopyRoundTrip(t *testing.T) {
	e := newEnv(t)
	mnt := e.mount("--part-size", "5M")
	sizes := []int64{0, 1, 5*mib - 1, 5 * mib, 5*mib + 1, 20*mib + 976, 64 * mib}
	local := t.TempDir()
	sums := map[int64]string{}
	for _, size := range sizes {
		t.Run(fmt.Sprintf("write-%d", size), func(t *testing.T) {
			name := fmt.Sprintf("file-%d.bin", size)
			src := filepath.Join(local, name)
			want, err := harness.WriteRandomFile(src, size)
			if err != nil {
				t.Fatal(err)
			}
			sums[size] = want
			start := time.Now()
			sh(t, 5*time.Minute, "cp", src, filepath.Join(mnt, name))
			t.Logf("cp in: %d bytes in %v", size, time.Since(start).Round(time.Millisecond))

			fi, err := os.Stat(filepath.Join(mnt, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != size {
				t.Errorf("stat size in mount = %d, want %d", fi.Size(), size)
			}

			back := filepath.Join(t.TempDir(), "back")
			sh(t, 5*time.Minute, "cp", filepath.Join(mnt, name), back)
			got, n, err := harness.FileSHA256(back)
			if err != nil {
				t.Fatal(err)
			}
			if got != want || n != size {
				t.Errorf("copied back through the same mount: %d bytes sha256 %s, want %d bytes %s", n, got, size, want)
			}

			// The object in S3, read with the SDK.
			h := sha256.New()
			n, err = e.c.GetObjectTo(e.ctx, e.bucket, name, h)
			if err != nil {
				t.Fatalf("object not in S3 after cp returned: %v", err)
			}
			if s := hex.EncodeToString(h.Sum(nil)); s != want || n != size {
				t.Errorf("S3 object: %d bytes sha256 %s, want %d bytes %s", n, s, size, want)
			}
			hs, etag, err := e.c.HeadETag(e.ctx, e.bucket, name)
			if err != nil || hs != size {
				t.Errorf("HeadObject size = %d, %v; want %d", hs, err, size)
			}
			t.Logf("ETag %s", etag)
			// With 5 MiB parts, files of 20 MiB and more must go up as
			// multipart uploads (ETag "<md5 of md5s>-<parts>").
			if size >= 20*mib {
				i := strings.LastIndexByte(etag, '-')
				parts, perr := strconv.Atoi(etag[i+1:])
				if i < 0 || perr != nil || parts < 2 {
					t.Errorf("ETag %q of a %d-byte object written with --part-size 5M is not a multipart ETag", etag, size)
				}
			}
		})
	}

	// A fresh mount has no cached data: what it reads comes from S3.
	fresh := e.mount("--part-size", "5M")
	for _, size := range sizes {
		want, ok := sums[size]
		if !ok {
			continue // its write subtest failed early
		}
		t.Run(fmt.Sprintf("read-fresh-%d", size), func(t *testing.T) {
			name := fmt.Sprintf("file-%d.bin", size)
			back := filepath.Join(t.TempDir(), "back")
			start := time.Now()
			sh(t, 5*time.Minute, "cp", filepath.Join(fresh, name), back)
			t.Logf("cp out of a fresh mount: %d bytes in %v", size, time.Since(start).Round(time.Millisecond))
			got, n, err := harness.FileSHA256(back)
			if err != nil {
				t.Fatal(err)
			}
			if got != want || n != size {
				t.Errorf("copied back through a fresh mount: %d bytes sha256 %s, want %d bytes %s", n, got, size, want)
			}
		})
	}
}
