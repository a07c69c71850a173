package fs

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend/s3fake"
)

// A handle released after reading to the end fills the blocks its copy
// lacks (the kernel served them from its page cache, or they were read
// before the copy began): from the block cache, else from S3.
func TestReleaseFillsTheCopysMissingBlocks(t *testing.T) {
	c := s3fake.New("bkt")
	data := randBytes(10*testBlock+77, 3)
	c.PutDirect("obj", data)
	info, err := c.Head(context.Background(), "obj")
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := cache.NewBlocks(64<<20, testBlock)
	if err != nil {
		t.Fatal(err)
	}
	copies, err := cache.OpenCopies(t.TempDir(), 64<<20, testBlock)
	if err != nil {
		t.Fatal(err)
	}
	defer copies.Close()
	copies.Enable()
	fsys, _ := New(Config{Client: c, Blocks: blocks, Meta: cache.NewMeta(time.Second, 1<<16, nil),
		BlockSize: testBlock, DownloadThreads: 4, PartSize: 5 << 20, UploadConcurrency: 2, Copies: copies})
	r := newReader(fsys, "obj", info.ETag, int64(len(data)))
	r.file = &File{fsys: fsys, key: "obj", readers: map[string]int{}, ptFd: -1}
	cp := r.startCopy()
	if cp == nil {
		t.Fatal("no copy")
	}
	// Blocks 0, 1 and 10 (the last) came through this handle; 4 is in the block
	// cache (another handle's random read); the rest only in S3.
	for _, i := range []int64{0, 1, 10} {
		end := min(int64(len(data)), (i+1)*testBlock)
		cp.Put(i, data[i*testBlock:end])
	}
	buf := blocks.NewBuf(testBlock)
	copy(buf.Bytes(), data[4*testBlock:5*testBlock])
	_, f, claimed := blocks.Acquire(r.blockKey(4))
	if !claimed {
		t.Fatal("block 4 already cached")
	}
	blocks.Finish(r.blockKey(4), f, buf, nil)
	f.Drop()
	blocks.Wait()
	r.copy.Store(cp)
	r.readToEnd = true
	gets := c.Calls("GetObject")
	r.close()
	for deadline := time.Now().Add(5 * time.Second); !cp.IsComplete() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !cp.IsComplete() {
		t.Fatalf("the copy is still missing blocks %v after the release", cp.Missing(-1))
	}
	got, _ := os.ReadFile(cp.File().Name())
	if !bytes.Equal(got, data) {
		t.Fatal("the copy's bytes differ from the object's")
	}
	// Blocks 2-3 and 5-9: two ranged GETs; block 4 from the cache.
	if n := c.Calls("GetObject") - gets; n != 2 {
		t.Errorf("%d GETs to fill the copy, want 2 (one per run of missing blocks)", n)
	}
}

// recordingRaw is a raw filesystem whose Release records that it ran,
// after running during (as a handle's Release runs inside go-fuse's).
type recordingRaw struct {
	fuse.RawFileSystem
	log    *[]string
	during func(cancel <-chan struct{})
}

func (r recordingRaw) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	r.during(cancel)
	*r.log = append(*r.log, "go-fuse release")
}

// A page-cache handle is counted out only after go-fuse has finished its
// release (its backing-ID reference is dropped there), so that no
// passthrough open is granted in between.
func TestReleaseHookRunsAfterGoFusesRelease(t *testing.T) {
	var log []string
	raw := releaseHookFS{recordingRaw{RawFileSystem: fuse.NewDefaultRawFileSystem(), log: &log,
		during: func(cancel <-chan struct{}) {
			whenReleased(&fuse.Context{Cancel: cancel}, func() { log = append(log, "counted out") })
			if len(log) != 0 {
				t.Fatalf("ran before the release: %v", log)
			}
		}}}
	raw.Release(make(chan struct{}), &fuse.ReleaseIn{})
	if want := []string{"go-fuse release", "counted out"}; len(log) != 2 || log[0] != want[0] || log[1] != want[1] {
		t.Fatalf("order %v, want %v", log, want)
	}
	// Outside a FUSE request, or in another request than a RELEASE (a
	// truncate(2) that opened the file itself): at once.
	for _, ctx := range []context.Context{context.Background(), &fuse.Context{Cancel: make(chan struct{})}} {
		ran := false
		whenReleased(ctx, func() { ran = true })
		if !ran {
			t.Fatalf("not run at once outside a RELEASE (%T)", ctx)
		}
	}
}
