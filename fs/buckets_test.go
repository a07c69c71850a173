package fs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend/s3fake"
)

func mountBuckets(t *testing.T, b *s3fake.Buckets) string {
	t.Helper()
	blocks, err := cache.NewBlocks(64<<20, testBlock)
	if err != nil {
		t.Fatal(err)
	}
	root := NewBuckets(BucketsConfig{Buckets: b,
		Bucket: Config{Blocks: blocks, BlockSize: testBlock, DownloadThreads: 4, PartSize: 5 << 20,
			UploadConcurrency: 2, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), FileMode: 0o644, DirMode: 0o755},
		NewMeta: func() *cache.Meta { return cache.NewMeta(time.Second, 1<<16, nil) },
		TTL:     time.Second})
	return mountRoot(t, root, time.Second, blocks)
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir(%s): %v", dir, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestSemanticsAllBucketsRoot: the root lists the buckets; each is a
// directory with its own client and metadata cache (the same key in two
// buckets is two files); GetBucketLocation once per bucket.
func TestSemanticsAllBucketsRoot(t *testing.T) {
	b := s3fake.NewBuckets("alpha", "beta")
	b.Bucket("alpha").PutDirect("same.txt", []byte("from alpha"))
	b.Bucket("beta").PutDirect("same.txt", []byte("from beta, longer"))
	b.Bucket("beta").PutDirect("dir/deep.txt", []byte("deep"))
	mnt := mountBuckets(t, b)

	if got := names(t, mnt); !slices.Equal(got, []string{"alpha", "beta"}) {
		t.Fatalf("root = %q, want [alpha beta]", got)
	}
	for bucket, want := range map[string]string{"alpha": "from alpha", "beta": "from beta, longer"} {
		for i := 0; i < 2; i++ {
			got, err := os.ReadFile(filepath.Join(mnt, bucket, "same.txt"))
			if err != nil || string(got) != want {
				t.Errorf("%s/same.txt = %q, %v; want %q", bucket, got, err, want)
			}
		}
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "beta/dir/deep.txt")); err != nil || string(got) != "deep" {
		t.Errorf("beta/dir/deep.txt = %q, %v", got, err)
	}
	if n := b.Calls("GetBucketLocation"); n != 2 {
		t.Errorf("GetBucketLocation calls = %d, want 2 (once per bucket)", n)
	}
	if _, err := os.Stat(filepath.Join(mnt, "gamma")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat of a bucket that does not exist: %v, want ENOENT", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "file-at-root"), []byte("x"), 0o644); !errors.Is(err, syscall.EPERM) {
		t.Errorf("creating a file at the root: %v, want EPERM", err)
	}
	// CopyObject cannot cross buckets: mv(1) gets EXDEV and copies.
	if err := os.Rename(filepath.Join(mnt, "alpha/same.txt"), filepath.Join(mnt, "beta/moved.txt")); !errors.Is(err, syscall.EXDEV) {
		t.Errorf("rename across buckets: %v, want EXDEV", err)
	}
	if _, ok := b.Bucket("beta").Object("moved.txt"); ok {
		t.Errorf("the cross-bucket rename wrote beta/moved.txt")
	}
	if err := os.Rename(filepath.Join(mnt, "alpha"), filepath.Join(mnt, "renamed")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("renaming a bucket: %v, want EPERM", err)
	}
}

// TestSemanticsAllBucketsMkdirRmdir: mkdir at the root is CreateBucket,
// rmdir DeleteBucket, ENOTEMPTY for a bucket with objects.
func TestSemanticsAllBucketsMkdirRmdir(t *testing.T) {
	b := s3fake.NewBuckets("alpha")
	b.Bucket("alpha").PutDirect("keep.txt", []byte("x"))
	mnt := mountBuckets(t, b)

	if err := os.Mkdir(filepath.Join(mnt, "gamma"), 0o755); err != nil {
		t.Fatal(err)
	}
	if b.Bucket("gamma") == nil {
		t.Fatalf("mkdir gamma made no bucket")
	}
	if got := names(t, mnt); !slices.Equal(got, []string{"alpha", "gamma"}) {
		t.Errorf("root after mkdir = %q", got)
	}
	if err := os.Mkdir(filepath.Join(mnt, "alpha"), 0o755); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("mkdir of an existing bucket: %v, want EEXIST", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "gamma/new.txt"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, ok := b.Bucket("gamma").Object("new.txt"); !ok || string(got) != "new" {
		t.Errorf("gamma/new.txt in S3 = %q, %v", got, ok)
	}
	if err := syscall.Rmdir(filepath.Join(mnt, "gamma")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("rmdir of a bucket with an object: %v, want ENOTEMPTY", err)
	}
	if err := os.Remove(filepath.Join(mnt, "gamma/new.txt")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Rmdir(filepath.Join(mnt, "gamma")); err != nil {
		t.Fatalf("rmdir of the emptied bucket: %v", err)
	}
	if b.Bucket("gamma") != nil {
		t.Errorf("bucket gamma still exists after rmdir")
	}
	if got := names(t, mnt); !slices.Equal(got, []string{"alpha"}) {
		t.Errorf("root after rmdir = %q", got)
	}
	if err := syscall.Rmdir(filepath.Join(mnt, "alpha")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("rmdir alpha (has keep.txt): %v, want ENOTEMPTY", err)
	}
}
