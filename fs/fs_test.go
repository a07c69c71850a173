package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend"
	"github.com/s3mount/s3mount/s3backend/s3fake"
)

// These tests mount the filesystem for real (FUSE, /dev/fuse) over the
// in-memory fake client, which counts requests and injects failures.

const testBlock = 64 << 10

func mountFake(t *testing.T, c *s3fake.Client, mutate func(*Config)) string {
	t.Helper()
	blocks, err := cache.NewBlocks(64<<20, testBlock)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Client: c, Blocks: blocks, Meta: cache.NewMeta(time.Second, 1<<16, nil),
		BlockSize: testBlock, DownloadThreads: 4, PartSize: 5 << 20, UploadConcurrency: 2,
		UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), FileMode: 0o644, DirMode: 0o755,
		CacheDir: t.TempDir()}
	if mutate != nil {
		mutate(&cfg)
	}
	_, root := New(cfg)
	return mountRoot(t, root, cfg.Meta.TTL(), blocks)
}

// mountRoot mounts root on a temp dir for the test and unmounts it after.
func mountRoot(t *testing.T, root Root, ttl time.Duration, blocks *cache.Blocks) string {
	t.Helper()
	mnt := t.TempDir()
	server, err := Mount(mnt, root, MountConfig{FsName: "test", TTL: ttl})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		blocks.Close()
	})
	return mnt
}

func randBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func TestSemanticsReadIsByteExact(t *testing.T) {
	c := s3fake.New("bkt")
	sizes := []int{0, 1, testBlock - 1, testBlock, testBlock + 1, 3*testBlock + 7, 40*testBlock + 976}
	for i, n := range sizes {
		c.PutDirect(fmt.Sprintf("f%d", i), randBytes(n, int64(i)))
	}
	mnt := mountFake(t, c, nil)
	for i, n := range sizes {
		got, err := os.ReadFile(filepath.Join(mnt, fmt.Sprintf("f%d", i)))
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if !bytes.Equal(got, randBytes(n, int64(i))) {
			t.Errorf("size %d: read %d bytes that differ from the object", n, len(got))
		}
	}
}

func TestSemanticsReadFetchesOnlyNeededBlocks(t *testing.T) {
	c := s3fake.New("bkt")
	data := randBytes(64*testBlock, 1)
	c.PutDirect("big", data)
	mnt := mountFake(t, c, nil)
	f, err := os.Open(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 100)
	if _, err := f.ReadAt(buf, 40*testBlock+10); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, data[40*testBlock+10:40*testBlock+110]) {
		t.Fatal("random read returned wrong bytes")
	}
	// The kernel may read ahead a little on its own; far from the 64 blocks.
	if n := c.Calls("GetObject"); n == 0 || n > 4 {
		t.Errorf("a 100-byte read made %d GETs, want 1..4", n)
	}
}

func TestSemanticsConcurrentReadersShareGets(t *testing.T) {
	c := s3fake.New("bkt")
	data := randBytes(32*testBlock, 2)
	c.PutDirect("shared", data)
	c.SetDelay(5 * time.Millisecond)
	mnt := mountFake(t, c, nil)
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := os.ReadFile(filepath.Join(mnt, "shared"))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("reader: %v, equal=%v", err, bytes.Equal(got, data))
			}
		}()
	}
	wg.Wait()
	if n := c.BytesOut(); n != int64(len(data)) {
		t.Errorf("4 readers of a %d-byte file fetched %d bytes, want each block fetched once", len(data), n)
	}
}

func TestSemanticsChangedObjectIsNeverServedStale(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("v", []byte("version one"))
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Meta = cache.NewMeta(50*time.Millisecond, 100, nil) })
	p := filepath.Join(mnt, "v")
	if got, err := os.ReadFile(p); err != nil || string(got) != "version one" {
		t.Fatalf("first read: %q, %v", got, err)
	}
	c.PutDirect("v", []byte("version two!"))
	time.Sleep(100 * time.Millisecond)
	if got, err := os.ReadFile(p); err != nil || string(got) != "version two!" {
		t.Fatalf("read after change: %q, %v", got, err)
	}
}

func TestSemanticsListingPagesAndFillsStatCache(t *testing.T) {
	c := s3fake.New("bkt")
	for i := 0; i < 2500; i++ {
		c.PutDirect(fmt.Sprintf("many/k%05d", i), randBytes(i%7, int64(i)))
	}
	// A TTL longer than the test: 2,500 HEADs and stats under -race on a
	// busy machine can take longer than mountFake's 1 s.
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Meta = cache.NewMeta(time.Minute, 1<<16, nil) })
	ents, err := os.ReadDir(filepath.Join(mnt, "many"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2500 {
		t.Fatalf("readdir: %d entries, want 2500", len(ents))
	}
	heads := c.Calls("HeadObject")
	for i, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() != int64(i%7) {
			t.Fatalf("%s: size %d, want %d", e.Name(), info.Size(), i%7)
		}
	}
	if n := c.Calls("HeadObject") - heads; n > 0 {
		t.Errorf("stat after readdir made %d HEADs, want 0", n)
	}
}

func TestSemanticsDeepKeyResolvesWithoutListingParents(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("a/b/c/d/file", []byte("deep"))
	mnt := mountFake(t, c, nil)
	got, err := os.ReadFile(filepath.Join(mnt, "a/b/c/d/file"))
	if err != nil || string(got) != "deep" {
		t.Fatalf("read: %q, %v", got, err)
	}
	if n := c.Calls("ListObjectsV2+delimiter"); n != 0 {
		t.Errorf("resolving a deep path listed %d directories, want 0", n)
	}
}

func TestSemanticsInvalidNamesAreHidden(t *testing.T) {
	c := s3fake.New("bkt")
	for _, k := range []string{"odd//empty", "odd/./dot", "odd/../dotdot", "odd/" + strings.Repeat("a", 300), "odd/ok.txt", "odd/sub/x"} {
		c.PutDirect(k, []byte("x"))
	}
	mnt := mountFake(t, c, nil)
	ents, err := os.ReadDir(filepath.Join(mnt, "odd"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "ok.txt,sub" {
		t.Errorf("listing shows %q, want ok.txt,sub", names)
	}
}

func TestSemanticsFileAndDirOfOneNameIsADir(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("both", []byte("file"))
	c.PutDirect("both/inner", []byte("inner"))
	mnt := mountFake(t, c, nil)
	st, err := os.Stat(filepath.Join(mnt, "both"))
	if err != nil || !st.IsDir() {
		t.Fatalf("lookup: %v, dir=%v", err, err == nil && st.IsDir())
	}
	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "both" || !ents[0].IsDir() {
		t.Errorf("readdir: %v, want one directory named both", ents)
	}
}

func TestSemanticsServerErrorIsEIONotENOENT(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("present", []byte("x"))
	mnt := mountFake(t, c, nil)
	c.SetFail(func(op, key string) error { return s3backend.ErrUnavailable })
	_, err := os.Stat(filepath.Join(mnt, "present"))
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("stat during 503s: %v, want EIO", err)
	}
	_, err = os.ReadDir(mnt)
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("readdir during 503s: %v, want EIO", err)
	}
	c.SetFail(func(op, key string) error { return s3backend.ErrDenied })
	_, err = os.Stat(filepath.Join(mnt, "other"))
	if !errors.Is(err, syscall.EACCES) {
		t.Errorf("stat on 403: %v, want EACCES", err)
	}
}

func TestSemanticsWriteStreamsMultipart(t *testing.T) {
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, nil)
	data := randBytes(20<<20+976, 3)
	f, err := os.Create(filepath.Join(mnt, "stream"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data[:12<<20]); err != nil {
		t.Fatal(err)
	}
	// Parts go out while the program is still writing.
	deadline := time.Now().Add(5 * time.Second)
	for c.Calls("UploadPart") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := c.Calls("UploadPart"); n < 2 {
		t.Errorf("after writing 12 MiB, %d parts were sent, want 2", n)
	}
	if _, err := f.Write(data[12<<20:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	got, ok := c.Object("stream")
	if !ok || !bytes.Equal(got, data) {
		t.Fatalf("object after close: present=%v, equal=%v", ok, bytes.Equal(got, data))
	}
	if n := c.Calls("CreateMultipartUpload"); n != 1 {
		t.Errorf("CreateMultipartUpload ×%d, want 1", n)
	}
	if n := c.Calls("UploadPart"); n != 5 {
		t.Errorf("UploadPart ×%d, want 5 (4 × 5 MiB + the rest)", n)
	}
}

func TestSemanticsSmallFileIsOnePut(t *testing.T) {
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, nil)
	if err := os.WriteFile(filepath.Join(mnt, "small"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Object("small"); string(got) != "hello" {
		t.Fatalf("object = %q", got)
	}
	if n := c.Calls("CreateMultipartUpload"); n != 0 {
		t.Errorf("a 5-byte file started %d multipart uploads", n)
	}
}

func TestSemanticsFailedUploadFailsClose(t *testing.T) {
	for _, op := range []string{"PutObject", "UploadPart", "CompleteMultipartUpload"} {
		t.Run(op, func(t *testing.T) {
			c := s3fake.New("bkt")
			mnt := mountFake(t, c, nil)
			c.SetFail(func(o, key string) error {
				if o == op {
					return s3backend.ErrUnavailable
				}
				return nil
			})
			size := 11 << 20
			if op == "PutObject" {
				size = 1000
			}
			f, err := os.Create(filepath.Join(mnt, "lost"))
			if err != nil {
				t.Fatal(err)
			}
			_, werr := f.Write(randBytes(size, 4))
			cerr := f.Close()
			if werr == nil && cerr == nil {
				t.Fatal("write and close succeeded although the upload failed")
			}
			if cerr != nil && !errors.Is(cerr, syscall.EIO) {
				t.Errorf("close: %v, want EIO", cerr)
			}
			if _, ok := c.Object("lost"); ok {
				t.Error("an object exists although its upload failed")
			}
			if n := c.Uploads(); n != 0 {
				t.Errorf("%d multipart uploads left open, want 0 (aborted)", n)
			}
		})
	}
}

func TestSemanticsShellRedirectAfterDupClose(t *testing.T) {
	// `cmd > file`: the shell's copy of the descriptor closes (FLUSH)
	// before cmd writes.
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, nil)
	f, err := os.Create(filepath.Join(mnt, "redir"))
	if err != nil {
		t.Fatal(err)
	}
	fd2, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Close(fd2); err != nil {
		t.Fatalf("close of the dup: %v", err)
	}
	if _, err := f.Write([]byte("after the first flush")); err != nil {
		t.Fatalf("write after flush: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Object("redir"); string(got) != "after the first flush" {
		t.Fatalf("object = %q", got)
	}
}

func TestSemanticsDirectoryOps(t *testing.T) {
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, nil)
	if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Object("d/"); !ok {
		t.Fatal("mkdir wrote no d/ marker")
	}
	if err := os.WriteFile(filepath.Join(mnt, "d/f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "d")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("rmdir of a non-empty dir: %v, want ENOTEMPTY", err)
	}
	if err := os.Remove(filepath.Join(mnt, "d/f")); err != nil {
		t.Fatal(err)
	}
	// The writer's RELEASE is asynchronous: if it has not arrived yet,
	// the file is still open for s3mount, and its object goes at that
	// last close (unlink of an open file); rmdir waits for it.
	if err := os.Remove(filepath.Join(mnt, "d")); err != nil {
		t.Fatalf("rmdir of an empty dir: %v", err)
	}
	if keys := c.Keys(); len(keys) != 0 {
		t.Errorf("keys left: %q", keys)
	}
	if _, err := os.ReadFile(filepath.Join(mnt, "missing")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("read of a missing file: %v, want ENOENT", err)
	}
}

func TestSemanticsRenameFile(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("a+b%c", []byte("payload"))
	c.PutDirect("dst", []byte("older and longer"))
	mnt := mountFake(t, c, nil)
	if err := os.Rename(filepath.Join(mnt, "a+b%c"), filepath.Join(mnt, "dst")); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Object("dst"); string(got) != "payload" {
		t.Errorf("dst = %q", got)
	}
	if _, ok := c.Object("a+b%c"); ok {
		t.Error("source still exists")
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "dst")); err != nil || string(got) != "payload" {
		t.Errorf("read through mount: %q, %v", got, err)
	}
}

func TestSemanticsReadOnly(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("f", []byte("x"))
	mnt := mountFake(t, c, func(cfg *Config) { cfg.ReadOnly = true })
	if err := os.WriteFile(filepath.Join(mnt, "new"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("create on read-only: %v, want EROFS", err)
	}
	if err := os.Remove(filepath.Join(mnt, "f")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("unlink on read-only: %v, want EROFS", err)
	}
	if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); !errors.Is(err, syscall.EROFS) {
		t.Errorf("mkdir on read-only: %v, want EROFS", err)
	}
}

func TestSemanticsPrefixRestriction(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("home/alice/in.txt", []byte("in"))
	c.PutDirect("home/bob/out.txt", []byte("out"))
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Prefix = "home/alice/" })
	ents, err := os.ReadDir(mnt)
	if err != nil || len(ents) != 1 || ents[0].Name() != "in.txt" {
		t.Fatalf("root listing: %v, %v", ents, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new.txt"), []byte("n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Object("home/alice/new.txt"); !ok {
		t.Errorf("write landed elsewhere: %q", c.Keys())
	}
}

func TestSemanticsReadaheadBoundaries(t *testing.T) {
	c := s3fake.New("bkt")
	size := 37*testBlock + 5
	data := randBytes(size, 9)
	c.PutDirect("ra", data)
	mnt := mountFake(t, c, nil)
	// Read sizes that cross block and window boundaries in every phase.
	for _, step := range []int{1, testBlock - 1, testBlock + 1, 3*testBlock + 7, 1 << 20} {
		f, err := os.Open(filepath.Join(mnt, "ra"))
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 0, size)
		buf := make([]byte, step)
		for {
			n, err := f.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil || n == 0 {
				break
			}
		}
		f.Close()
		if !bytes.Equal(got, data) {
			t.Errorf("reading in steps of %d bytes: got %d bytes, differing from the object", step, len(got))
		}
	}
}

func TestSemanticsSequentialReadFetchesEachByteOnce(t *testing.T) {
	c := s3fake.New("bkt")
	size := 300 * testBlock // 18.75 MiB: readahead grows through several windows
	data := randBytes(size, 10)
	c.PutDirect("seq", data)
	mnt := mountFake(t, c, nil)
	got, err := os.ReadFile(filepath.Join(mnt, "seq"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read: %v, equal=%v", err, bytes.Equal(got, data))
	}
	if n := c.BytesOut(); n != int64(size) {
		t.Errorf("a sequential read fetched %d bytes of a %d-byte object, want each once", n, size)
	}
	// Readahead merges blocks into larger GETs.
	if n := c.Calls("GetObject"); n >= 300 {
		t.Errorf("%d GETs for 300 blocks: readahead did not merge blocks into runs", n)
	}
}

func TestSemanticsRandomReadsFetchLittle(t *testing.T) {
	c := s3fake.New("bkt")
	size := 400 * testBlock
	data := randBytes(size, 11)
	c.PutDirect("rnd", data)
	mnt := mountFake(t, c, nil)
	f, err := os.Open(filepath.Join(mnt, "rnd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewSource(12))
	const readSize = 16 * testBlock // 1 MiB
	buf := make([]byte, readSize)
	read := 0
	for i := 0; i < 20; i++ {
		off := rng.Int63n(int64(size - readSize))
		n, err := f.ReadAt(buf, off)
		if err != nil || !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
			t.Fatalf("ReadAt(%d): %d, %v", off, n, err)
		}
		read += n
	}
	if ratio := float64(c.BytesOut()) / float64(read); ratio > 2 {
		t.Errorf("random 1 MiB reads fetched %.2f bytes per byte read, want ≤ 2", ratio)
	}
}

func TestSemanticsCacheBoundUnderLargerWorkload(t *testing.T) {
	c := s3fake.New("bkt")
	size := 200 * testBlock
	data := randBytes(size, 13)
	c.PutDirect("big", data)
	const bound = 16 * testBlock
	blocks, err := cache.NewBlocks(bound, testBlock)
	if err != nil {
		t.Fatal(err)
	}
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Blocks = blocks })
	for pass := 0; pass < 2; pass++ {
		got, err := os.ReadFile(filepath.Join(mnt, "big"))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("pass %d: %v, equal=%v", pass, err, bytes.Equal(got, data))
		}
	}
	blocks.Wait()
	info, err := c.Head(t.Context(), "big")
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for i := int64(0); i < 200; i++ {
		if b, ok := blocks.Get(cache.BlockKey{Bucket: "bkt", Key: "big", ETag: info.ETag, Index: i}); ok {
			if !bytes.Equal(b.Bytes(), data[i*testBlock:(i+1)*testBlock]) {
				t.Errorf("cached block %d holds other bytes", i)
			}
			held += len(b.Bytes())
			b.Release()
		}
	}
	if held > bound || held == 0 {
		t.Errorf("cache holds %d bytes after reading %d, want 0 < held ≤ %d", held, 2*size, bound)
	}
	// Once the readers are gone, only cached blocks hold memory.
	deadline := time.Now().Add(2 * time.Second)
	for blocks.Stats().ArenaSlots*testBlock != held && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if slots := blocks.Stats().ArenaSlots; slots*testBlock != held {
		t.Errorf("%d block buffers in use for %d cached bytes: a reference leaked", slots, held)
	}
}

func TestSemanticsSetattrTimesSurviveTheTTL(t *testing.T) {
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Meta = cache.NewMeta(50*time.Millisecond, 100, nil) })
	p := filepath.Join(mnt, "touched")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	when := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(p, when, when); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond) // past the TTL: attributes are refetched
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !st.ModTime().Equal(when) || st.Mode().Perm() != 0o600 {
		t.Errorf("after the TTL: mtime %v mode %v, want %v and 0600", st.ModTime(), st.Mode().Perm(), when)
	}
}

func TestPartSizesHoldFiveTiB(t *testing.T) {
	for _, base := range []int64{5 << 20, 8 << 20, 64 << 20} {
		var total int64
		for n := int32(1); n <= maxParts; n++ {
			p := partSizeOf(base, n)
			if p < base || p > maxPartSize {
				t.Fatalf("base %d: part %d has size %d", base, n, p)
			}
			total += p
		}
		if total < maxObjectSize {
			t.Errorf("base %d: 10,000 parts hold %d bytes, less than 5 TiB", base, total)
		}
	}
	if partSizeOf(5<<20, 500) != 5<<20 || partSizeOf(5<<20, 501) != 10<<20 {
		t.Error("the part size does not double after 500 parts")
	}
}

func TestSemanticsWritePartsGrow(t *testing.T) {
	c := s3fake.New("bkt")
	// Double the part size after every part instead of every 500.
	mnt := mountFake(t, c, func(cfg *Config) { cfg.PartGrowth = 1 })
	data := randBytes(36<<20, 21) // 5 + 10 + 20 MiB parts, then 1 MiB
	f, err := os.Create(filepath.Join(mnt, "grow"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Object("grow"); !bytes.Equal(got, data) {
		t.Fatal("object differs")
	}
	if n := c.Calls("UploadPart"); n != 4 {
		t.Errorf("UploadPart ×%d, want 4 (5, 10, 20 and 1 MiB)", n)
	}
}

func TestSemanticsStatNeverWaitsForAnUpload(t *testing.T) {
	c := s3fake.New("bkt")
	release := make(chan struct{})
	c.SetFail(func(op, key string) error {
		if op == "UploadPart" || op == "CompleteMultipartUpload" {
			<-release
		}
		return nil
	})
	mnt := mountFake(t, c, nil)
	p := filepath.Join(mnt, "slow")
	done := make(chan error, 1)
	go func() { done <- os.WriteFile(p, randBytes(16<<20, 30), 0o644) }()
	defer func() { close(release); <-done }()
	// Wait until the parts are stuck and the writer waits for a slot.
	for deadline := time.Now().Add(5 * time.Second); c.Calls("UploadPart") < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	statted := make(chan error, 1)
	go func() { _, err := os.Stat(p); statted <- err }()
	select {
	case err := <-statted:
		if err != nil {
			t.Errorf("stat of a file being uploaded: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("stat blocked behind a stalled upload")
	}
}

func TestSemanticsUnlinkDuringCommitWins(t *testing.T) {
	c := s3fake.New("bkt")
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	c.SetFail(func(op, key string) error {
		if op == "CompleteMultipartUpload" {
			once.Do(func() { close(entered) })
			<-release
		}
		return nil
	})
	mnt := mountFake(t, c, nil)
	p := filepath.Join(mnt, "doomed")
	done := make(chan error, 1)
	go func() { done <- os.WriteFile(p, randBytes(11<<20, 31), 0o644) }()
	<-entered // close(2) is completing the upload
	if err := os.Remove(p); err != nil {
		t.Fatalf("unlink during the commit: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("write: %v", err)
	}
	if _, ok := c.Object("doomed"); ok {
		t.Error("a file unlinked during its upload is in S3 after close")
	}
}

func TestSemanticsNameTooLong(t *testing.T) {
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, nil)
	long := filepath.Join(mnt, strings.Repeat("n", 256))
	if err := os.WriteFile(long, []byte("x"), 0o644); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("create of a 256-byte name: %v, want ENAMETOOLONG", err)
	}
	if err := os.Mkdir(long, 0o755); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("mkdir of a 256-byte name: %v, want ENAMETOOLONG", err)
	}
	if _, err := os.Stat(long); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("stat of a 256-byte name: %v, want ENAMETOOLONG", err)
	}
	ok := filepath.Join(mnt, strings.Repeat("n", 255))
	if err := os.WriteFile(ok, []byte("x"), 0o644); err != nil {
		t.Errorf("create of a 255-byte name: %v", err)
	}
}

func TestSemanticsChangedOrDeletedWhileOpenGivesESTALE(t *testing.T) {
	for name, change := range map[string]func(c *s3fake.Client){
		"changed": func(c *s3fake.Client) { c.PutDirect("moving", randBytes(50*testBlock, 15)) },
		"deleted": func(c *s3fake.Client) {
			if err := c.Delete(context.Background(), "moving"); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := s3fake.New("bkt")
			c.PutDirect("moving", randBytes(50*testBlock, 14))
			mnt := mountFake(t, c, nil)
			f, err := os.Open(filepath.Join(mnt, "moving"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, testBlock)
			if _, err := f.ReadAt(buf, 0); err != nil {
				t.Fatal(err)
			}
			change(c)
			if _, err := f.ReadAt(buf, 40*testBlock); !errors.Is(err, syscall.ESTALE) {
				t.Errorf("read of a %s object: %v, want ESTALE", name, err)
			}
			if _, err := f.Stat(); err != nil {
				t.Errorf("fstat of a %s object: %v, want its last attributes", name, err)
			}
		})
	}
}

func TestSemanticsTwoVersionsNeverMix(t *testing.T) {
	c := s3fake.New("bkt")
	size := 40 * testBlock
	v1, v2 := randBytes(size, 33), randBytes(size, 34)
	c.PutDirect("ver", v1)
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Meta = cache.NewMeta(50*time.Millisecond, 100, nil) })
	p := filepath.Join(mnt, "ver")
	old, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	buf := make([]byte, testBlock)
	if _, err := old.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, v1[:testBlock]) {
		t.Fatalf("first read: %v", err)
	}
	c.PutDirect("ver", v2)
	time.Sleep(150 * time.Millisecond)
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("a new reader after the change: %v, equal to v2: %v", err, bytes.Equal(got, v2))
	}
	for off := int64(testBlock); off < int64(size); off += testBlock {
		n, err := old.ReadAt(buf, off)
		if err != nil {
			if !errors.Is(err, syscall.ESTALE) {
				t.Fatalf("old reader at %d: %v, want v1 bytes or ESTALE", off, err)
			}
			return
		}
		if !bytes.Equal(buf[:n], v1[off:off+int64(n)]) {
			t.Fatalf("old reader at %d got bytes of the new version", off)
		}
	}
}

func TestSemanticsReaderDuringWriteThenFreshOpen(t *testing.T) {
	// A reader during the write sees nothing yet, and the kernel takes that
	// short read as the file's size; the commit must drop it, or a fresh
	// open reads an empty file until the attr timeout (5 s here) passes.
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Meta = cache.NewMeta(5*time.Second, 100, nil) })
	p := filepath.Join(mnt, "five")
	w, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = r.Read(make([]byte, 8192)) // before the commit: nothing to read yet
	r.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The invalidation after the commit is asynchronous: allow it a moment.
	var got []byte
	for deadline := time.Now().Add(time.Second); ; {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8192)
		n, _ := f.Read(buf) // no stat first: the kernel's cached size decides
		f.Close()
		if got = buf[:n]; string(got) == "one" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if string(got) != "one" {
		t.Errorf("fresh open after close reads %q, want \"one\"", got)
	}
}

// rmdir, and rename over a directory, wait for the object of a file
// unlinked while still open (deleted at its last close, which the kernel
// reports after close(2) has returned) instead of failing with ENOTEMPTY.
func TestRmdirWaitsForFilesUnlinkedWhileOpen(t *testing.T) {
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, nil)
	// unlinkOpen writes name, unlinks it while open, and closes it 200 ms
	// later, as a late RELEASE would.
	unlinkOpen := func(name string) {
		t.Helper()
		f, err := os.Create(filepath.Join(mnt, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("x"); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(mnt, name)); err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Object(name); !ok {
			t.Fatalf("%s: the object of a file still open went at unlink", name)
		}
		time.AfterFunc(200*time.Millisecond, func() { f.Close() })
	}
	for _, d := range []string{"d", "e", "e2"} {
		if err := os.Mkdir(filepath.Join(mnt, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	unlinkOpen("d/f")
	if got := names(t, filepath.Join(mnt, "d")); len(got) != 0 {
		t.Errorf("readdir after unlinking the open file d/f = %q, want nothing (unlink(2): the name is gone at once)", got)
	}
	if _, err := os.Stat(filepath.Join(mnt, "d/f")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat of d/f after its unlink and a readdir: %v, want ENOENT", err)
	}
	if err := syscall.Rmdir(filepath.Join(mnt, "d")); err != nil {
		t.Fatalf("rmdir of a directory whose only file was unlinked while open: %v", err)
	}
	if keys := c.Keys(); slices.Contains(keys, "d/f") || slices.Contains(keys, "d/") {
		t.Errorf("keys after rmdir: %q", keys)
	}
	unlinkOpen("e2/g")
	// syscall.Rename: os.Rename refuses an existing directory itself.
	if err := syscall.Rename(filepath.Join(mnt, "e"), filepath.Join(mnt, "e2")); err != nil {
		t.Fatalf("rename over a directory whose only file was unlinked while open: %v", err)
	}
}

// The name of a file unlinked while open stays gone after the metadata
// TTL, although its object stays in S3 until the last close; a file or a
// symlink made at that name then keeps its object when the old file's last
// handle closes.
func TestNameOfAFileUnlinkedWhileOpenStaysGone(t *testing.T) {
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, nil) // --metadata-ttl 1s
	holdUnlinked := func(name string) *os.File {
		t.Helper()
		p := filepath.Join(mnt, name)
		if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		// Closed before the unmount (cleanups run last first), also when
		// the test fails early.
		t.Cleanup(func() { f.Close() })
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		return f
	}
	h := holdUnlinked("h")
	h3 := holdUnlinked("h3")
	time.Sleep(1500 * time.Millisecond) // past the TTL: stat asks S3, where h still is
	if _, err := os.Stat(filepath.Join(mnt, "h")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat of h after its unlink and the TTL: %v, want ENOENT", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "h"), []byte("new"), 0o644); err != nil {
		t.Fatalf("writing a new h: %v", err)
	}
	if err := os.Symlink("target", filepath.Join(mnt, "h3")); err != nil {
		t.Errorf("symlink at the name of a file unlinked while open: %v", err)
	}
	h.Close()
	h3.Close()
	time.Sleep(300 * time.Millisecond) // a wrong delete at the last close would be done by now
	if got, ok := c.Object("h"); !ok || string(got) != "new" {
		t.Errorf("h in S3 after the old file's last close = %q, %v; want \"new\"", got, ok)
	}
	if got, ok := c.Object("h3"); !ok || string(got) != "target" {
		t.Errorf("h3 in S3 after the old file's last close = %q, %v; want the symlink's \"target\"", got, ok)
	}
}

// A HEAD sent before this mount commits a new version of a file, and
// answered after, describes the version before. Taken in by the file's
// node, the next writer started from that version and its commit failed
// with ESTALE (If-Match on the old ETag), and new readers read it.
func TestSemanticsHeadCrossingACommitIsNotTakenIn(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("f", []byte("version one"))
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Meta = cache.NewMeta(50*time.Millisecond, 100, nil) })
	p := filepath.Join(mnt, "f")
	// fstat(2) of an open descriptor: a GETATTR, no LOOKUP (which
	// would hold the kernel's dentry while the HEAD is held back).
	rd, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	answered, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	c.SetHeadDone(func(key string) {
		if key == "f" && first.CompareAndSwap(false, true) {
			close(answered)
			<-release
		}
	})
	time.Sleep(100 * time.Millisecond) // past the TTL: the next stat asks S3
	statted := make(chan error, 1)
	go func() {
		_, err := rd.Stat()
		statted <- err
	}()
	select {
	case <-answered:
	case <-time.After(5 * time.Second):
		t.Fatal("stat sent no HEAD")
	}
	// The HEAD has read version one. Now this mount writes version two.
	if err := os.WriteFile(p, []byte("version two, longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the writer's release is asynchronous
	close(release)
	if err := <-statted; err != nil {
		t.Fatal(err)
	}
	c.SetHeadDone(nil)
	// Read, then change it again in place.
	if got, err := os.ReadFile(p); err != nil || string(got) != "version two, longer" {
		t.Errorf("read after the crossing HEAD: %q, %v; want version two", got, err)
	}
	fd, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fd.WriteAt([]byte("V"), 0); err != nil {
		t.Error(err)
	}
	if err := fd.Close(); err != nil {
		t.Errorf("close of an in-place write after the crossing HEAD: %v", err)
	}
	if got, _ := c.Object("f"); string(got) != "Version two, longer" {
		t.Errorf("in S3: %q", got)
	}
}

// A file changed in S3 (elsewhere) while a descriptor holds it open: once
// stat shows the new size, the old descriptor's reads must not serve the
// kernel's page of the old end padded with zeros up to the new size. The
// old version (it is pinned), ESTALE or the new bytes are all right.
func TestSemanticsChangedElsewhereNeverReadsZeros(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("f", []byte("abc"))
	mnt := mountFake(t, c, func(cfg *Config) { cfg.Meta = cache.NewMeta(50*time.Millisecond, 100, nil) })
	p := filepath.Join(mnt, "f")
	fd, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	buf := make([]byte, 100)
	if n, err := fd.ReadAt(buf, 0); string(buf[:n]) != "abc" {
		t.Fatalf("first read: %q %v", buf[:n], err)
	}
	c.PutDirect("f", []byte("abcdefgh"))
	time.Sleep(100 * time.Millisecond) // past the TTL
	st, err := os.Stat(p)
	if err != nil || st.Size() != 8 {
		t.Fatalf("stat after the change: %v %v, want size 8", st, err)
	}
	// At once, as tail -f reads after its fstat.
	n, err := fd.ReadAt(buf, 0)
	if got := string(buf[:n]); got != "abc" && got != "abcdefgh" && !errors.Is(err, syscall.ESTALE) {
		t.Errorf("old descriptor read %q (%v): want the old version, the new one or ESTALE", got, err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "abcdefgh" {
		t.Errorf("new open: %q %v", b, err)
	}
}
