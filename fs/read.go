package fs

// The read path.
//
// Blocks. A file is read in blocks of BlockSize bytes: block i holds bytes
// [i×BlockSize, (i+1)×BlockSize). Blocks live in the one shared
// cache.Blocks, keyed by bucket, key, ETag and i, so a changed object never
// serves old bytes; every GET must answer with the ETag pinned at open,
// else the read fails with ESTALE. A block wanted by several readers at
// once is fetched once (cache.Flight).
//
// Runs. Missing blocks that are next to each other are fetched with one
// ranged GET (a run) whose body is cut into blocks as it streams in, so the
// first block of a run is readable before the last has arrived.
//
// Readahead. Each handle tracks how many bytes it has read contiguously (its
// streak; reads a few MiB out of order, as the kernel's parallel readahead
// sends them, still count). Once the streak passes seqThreshold
// (more than a typical random read, so random 1 MiB reads fetch only the
// blocks they touch), the handle keeps a window of bytes requested ahead of
// the reader: it starts at minWindow and doubles each time it is topped
// up, up to DownloadThreads × maxRequest. The window is split
// into runs of window/DownloadThreads bytes (at least a block, at most
// maxRequest) and topped up as each run is used, so that DownloadThreads
// runs stay in flight for the handle (4 × DownloadThreads across the
// mount). A read that jumps elsewhere resets the streak and the window.
// Blocks fetched ahead are held by the handle until they are seqSlack
// behind the furthest read (the kernel's readahead reads arrive a little
// out of order), and they are not put in the block cache (cache.Blocks.Land):
// once read, the kernel page cache holds them (FOPEN_KEEP_CACHE), so caching
// them too would hold each byte twice, evict what random readers reuse, and
// make every streaming read touch --cache-size of fresh memory (first
// touches of anonymous memory ran at 0.15–0.6 GB/s on the VMs measured, the
// largest cost of a cold read on a fresh mount). While held, a landed block
// is shared with other handles reading the same block; while several
// handles read one version at once, blocks read ahead are cached instead, as
// a lagging reader's readahead may want what the leading one has passed.
//
// Memory. Block bytes live in the cache's arena (cache.Buf), reference
// counted: a read holds its blocks until it has copied them, or until
// go-fuse has sent a reply made of one block's own bytes. A sequential
// reader uses about its window plus seqSlack of it; blocks fetched for the
// reader's own reads (random access, the start of a file) are cached.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend"
)

const (
	// maxRequest is the largest ranged GET of readahead, in bytes: the size
	// at which one request's overhead stops mattering (FIELD-NOTES: 8 × 8 MiB
	// GETs reach the loopback ceiling).
	maxRequest = 8 << 20
	// minWindow is the first readahead window, in bytes.
	minWindow = 1 << 20
	// seqThreshold is how many contiguous bytes a handle reads before
	// readahead starts.
	seqThreshold = 2 << 20
	// seqSlack is how far out of order a read may arrive and still count
	// as sequential: a few kernel readahead requests (1 MiB each).
	seqSlack = 4 << 20
)

// getTimeout bounds one ranged GET of n bytes, body included: a server that
// stops answering fails the read with EIO instead of hanging it (the SDK
// retries first). 30 s, plus one second per MiB (≥ 1 MiB/s).
func getTimeout(n int64) time.Duration {
	return 30*time.Second + time.Duration(n>>20)*time.Second
}

// reader reads one version (ETag) of one object.
type reader struct {
	fsys *FS
	key  string
	etag string
	size int64

	mu     sync.Mutex
	next   int64                // guarded by mu; offset after the furthest read
	streak int64                // guarded by mu; contiguous bytes read ending at next
	window int64                // guarded by mu; readahead bytes, 0 when not sequential
	ahead  int64                // guarded by mu; readahead requested up to here
	held   map[int64]heldFlight // guarded by mu; blocks fetched ahead, not yet passed
	slots  chan struct{}        // this handle's readahead GETs in flight
	// file is set for read-only handles (File.Open): its other readers of
	// the same version share the kernel page cache and the blocks read ahead.
	file *File
	// copy, when not nil, is the local copy this handle fills with every
	// block it reads (passthrough.go): one it started (a read at offset 0,
	// or a sequential read from near the start) or one another handle of
	// the version is filling.
	copy      atomic.Pointer[cache.Copy]
	copyTried bool // guarded by mu
	readToEnd bool // guarded by mu; a read reached the end of the object
}

// heldFlight is a block the handle fetched or found ahead of the reader;
// the handle holds a reference to the flight and drops it when the block is
// passed.
type heldFlight struct {
	f *cache.Flight
}

func newReader(fsys *FS, key, etag string, size int64) *reader {
	return &reader{fsys: fsys, key: key, etag: etag, size: size, held: map[int64]heldFlight{},
		slots: make(chan struct{}, fsys.cfg.DownloadThreads)}
}

func (r *reader) blockKey(i int64) cache.BlockKey {
	return cache.BlockKey{Bucket: r.fsys.client.Bucket(), Key: r.key, ETag: r.etag, Index: i}
}

func (r *reader) dropHeldLocked(i int64) {
	if h, ok := r.held[i]; ok {
		h.f.Drop()
		delete(r.held, i)
	}
}

// close drops what the handle holds; called at release. A handle that read
// to the end of the object with its copy still missing blocks (served to it
// by the kernel's page cache, or read before the copy began) has them
// fetched now that all its reads are done.
func (r *reader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.held {
		r.dropHeldLocked(i)
	}
	if cp := r.copy.Load(); cp != nil && r.readToEnd && !cp.IsComplete() {
		go r.fillCopy(cp, -1)
	}
}

// want is one block a read needs: the read holds a reference to the
// flight and drops it once it has taken the bytes.
type want struct {
	f *cache.Flight
}

// read fills dest from off. It returns fewer bytes only at end of file.
func (r *reader) read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	r.fsys.readOps.Add(1)
	r.fsys.readBytes.Add(int64(len(dest)))
	if off >= r.size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), r.size)
	bs := r.fsys.cfg.BlockSize
	first, last := off/bs, (end-1)/bs

	r.mu.Lock()
	if !r.copyTried {
		// From the start: a copy of this version; else the copy
		// another handle is filling, if any.
		cp := r.joinCopy()
		if off == 0 {
			cp = r.startCopy()
		}
		if cp != nil {
			r.copyTried = true
			r.copy.Store(cp)
		}
	}
	// The kernel's readahead sends several reads at once and they may be
	// served out of order: a read up to seqSlack (or a window) behind the
	// furthest one, or seqSlack past it, continues the streak.
	if r.next > 0 && off >= r.next-max(seqSlack, r.window) && off <= r.next+seqSlack {
		if end > r.next {
			r.streak += end - r.next
			r.next = end
		}
	} else {
		r.streak, r.next, r.window, r.ahead = end-off, end, 0, 0
		for i := range r.held {
			r.dropHeldLocked(i)
		}
	}
	if !r.copyTried && r.streak >= seqThreshold && r.next-r.streak <= copyPrefix {
		// Read in sequence from near the start, the first pages served
		// by the kernel's page cache (head(1) before cat(1)): the copy
		// starts here and the blocks before this read are fetched for it.
		r.copyTried = true
		if cp := r.startCopy(); cp != nil {
			r.copy.Store(cp)
			go r.fillCopy(cp, first)
		}
	}
	if end == r.size {
		r.readToEnd = true
	}
	wants := make([]want, 0, last-first+1)
	var runs [][]*cache.Flight
	var runStart []int64
	for i := first; i <= last; i++ {
		f, claimed := r.acquireLocked(i)
		if claimed {
			if n := len(runs); n > 0 && runStart[n-1]+int64(len(runs[n-1])) == i {
				runs[n-1] = append(runs[n-1], f)
			} else {
				runs, runStart = append(runs, []*cache.Flight{f}), append(runStart, i)
			}
		}
		wants = append(wants, want{f: f})
	}
	for j := range runs {
		go r.fetchRun(runStart[j], runs[j], false)
	}
	if r.streak >= seqThreshold {
		r.readaheadLocked(end)
	}
	// Held blocks are passed once they end seqSlack behind the furthest
	// read: the kernel's readahead reads may still arrive out of order
	// until then, and a block read ahead is not in the cache (Land).
	for j := range r.held {
		if (j+1)*bs <= r.next-seqSlack {
			r.dropHeldLocked(j)
		}
	}
	r.mu.Unlock()

	bufs := make([]*cache.Buf, 0, len(wants))
	release := func() {
		for _, b := range bufs {
			b.Release()
		}
	}
	for j, w := range wants {
		i := first + int64(j)
		buf, err := r.take(ctx, w)
		if err != nil && !errors.Is(err, s3backend.ErrChanged) && ctx.Err() == nil {
			// A failed readahead (or another reader's failed fetch):
			// fetched again by this read.
			r.fsys.log.Debug("read: retrying block", "key", r.key, "block", i, "err", err)
			r.mu.Lock()
			r.dropHeldLocked(i)
			f, claimed := r.acquireLocked(i)
			r.mu.Unlock()
			if claimed {
				go r.fetchRun(i, []*cache.Flight{f}, false)
			}
			buf, err = r.take(ctx, want{f: f})
		}
		if err != nil {
			// The wants not reached still hold their flights' references.
			for _, rest := range wants[j+1:] {
				rest.f.Drop()
			}
			release()
			return nil, errno(err)
		}
		bufs = append(bufs, buf)
		if cp := r.copy.Load(); cp != nil && !cp.IsComplete() {
			r.putCopy(cp, i, buf.Bytes()) // a block this handle did not fetch itself
		}
	}
	if first == last {
		// Within one block: reply with the block's own bytes, held until
		// the reply is sent, sparing a copy of every byte read.
		data := bufs[0].Bytes()
		from, to := off-first*bs, min(end-first*bs, int64(len(data)))
		if to < from {
			release()
			return nil, syscall.EIO
		}
		return &bufResult{buf: bufs[0], data: data[from:to]}, 0
	}
	defer release()
	n := 0
	for j, buf := range bufs {
		data := buf.Bytes()
		blockOff := (first + int64(j)) * bs
		from := max(off, blockOff) - blockOff
		to := min(end, blockOff+int64(len(data))) - blockOff
		if to < from {
			return nil, syscall.EIO
		}
		n += copy(dest[n:], data[from:to])
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// take waits for w's block and returns it with a reference, dropping the
// flight's own reference when the read owns it.
func (r *reader) take(ctx context.Context, w want) (*cache.Buf, error) {
	select {
	case <-w.f.Done():
	case <-ctx.Done():
		w.f.Drop()
		return nil, context.Canceled
	}
	buf, err := w.f.Take()
	w.f.Drop()
	return buf, err
}

// bufResult is a read reply made of a block's own bytes; the block's
// reference is released once go-fuse has sent it.
type bufResult struct {
	buf  *cache.Buf
	data []byte
}

func (b *bufResult) Bytes(_ []byte) ([]byte, fuse.Status) { return b.data, fuse.OK }
func (b *bufResult) Size() int                            { return len(b.data) }
func (b *bufResult) Done()                                { b.buf.Release() }

// acquireLocked returns block i's flight with a reference for the caller,
// who drops it: held by this handle, cached (a ready flight), in flight
// elsewhere, or newly claimed (claimed: the caller must start its fetch).
func (r *reader) acquireLocked(i int64) (f *cache.Flight, claimed bool) {
	if h, ok := r.held[i]; ok && h.f.Join() {
		return h.f, false
	}
	buf, f, claimed := r.fsys.blocks.Acquire(r.blockKey(i))
	if buf != nil {
		return cache.Ready(buf), false
	}
	return f, claimed
}

// readaheadLocked keeps the window of requested bytes ahead of end.
func (r *reader) readaheadLocked(end int64) {
	bs := r.fsys.cfg.BlockSize
	threads := int64(r.fsys.cfg.DownloadThreads)
	maxWindow := max(minWindow, min(threads*maxRequest, r.fsys.maxWindow))
	alignedEnd := (end + bs - 1) / bs * bs
	if r.ahead < alignedEnd {
		r.ahead = alignedEnd
	}
	runSize := func() int64 { return max(bs, min(r.window/threads, maxRequest)/bs*bs) }
	if r.window == 0 {
		r.window = minWindow
	} else {
		if r.ahead >= r.size || r.ahead-end > r.window-runSize() {
			return // full to within a run: top up as each run is used
		}
		r.window = min(2*r.window, maxWindow) // still sequential: grow
	}
	chunk := runSize()
	target := min(end+r.window, r.size)
	for r.ahead < target {
		a := r.ahead / bs
		nb := min(chunk, target-r.ahead+bs-1) / bs
		nb = max(nb, 1)
		var run []*cache.Flight
		runStart := a
		for i := a; i < a+nb; i++ {
			if _, ok := r.held[i]; ok {
				continue
			}
			f, claimed := r.acquireLocked(i)
			r.held[i] = heldFlight{f: f}
			if claimed {
				if len(run) == 0 {
					runStart = i
				} else if runStart+int64(len(run)) != i {
					go r.fetchRun(runStart, run, true)
					run, runStart = nil, i
				}
				run = append(run, f)
			}
		}
		if len(run) > 0 {
			go r.fetchRun(runStart, run, true)
		}
		r.ahead += nb * bs
	}
}

// alone reports whether no other read-only handle of this version is open.
func (r *reader) alone() bool {
	if r.file == nil {
		return true
	}
	r.file.mu.Lock()
	defer r.file.mu.Unlock()
	return r.file.readers[r.etag] <= 1
}

// fetchRun fetches the consecutive blocks from block a with one ranged GET
// and finishes their flights as the body streams in. Readahead runs take
// one of the handle's slots; every run takes one of the mount's.
func (r *reader) fetchRun(a int64, flights []*cache.Flight, readahead bool) {
	if readahead {
		r.slots <- struct{}{}
		defer func() { <-r.slots }()
	}
	r.fsys.downloads <- struct{}{}
	defer func() { <-r.fsys.downloads }()
	bs := r.fsys.cfg.BlockSize
	off := a * bs
	n := min(int64(len(flights))*bs, r.size-off)
	ctx, cancel := context.WithTimeout(context.Background(), getTimeout(n))
	defer cancel()
	body, err := r.fsys.client.OpenRange(ctx, r.key, r.etag, off, n)
	if errors.Is(err, s3backend.ErrNotFound) && r.etag != "" {
		// Deleted since it was opened: the version this handle reads is gone.
		err = fmt.Errorf("%s was deleted while open: %w (%v)", r.key, s3backend.ErrChanged, err)
	}
	if body != nil {
		defer body.Close()
	}
	// Blocks read ahead are held by the handle until read, then kept by
	// the kernel page cache: they stay out of the block cache (Land),
	// unless other handles read the same version at the same time, whose
	// readahead may want them after this one has passed them.
	finish := r.fsys.blocks.Finish
	if readahead && r.alone() {
		finish = r.fsys.blocks.Land
	}
	cp := r.copy.Load()
	for j, f := range flights {
		i := a + int64(j)
		if err != nil {
			finish(r.blockKey(i), f, nil, err)
			continue
		}
		want := min(bs, r.size-i*bs)
		buf := r.fsys.blocks.NewBuf(want)
		if _, rerr := io.ReadFull(body, buf.Bytes()); rerr != nil {
			buf.Release()
			err = rerr
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				err = fmt.Errorf("%s: object ends before byte %d: %w", r.key, i*bs+want, s3backend.ErrChanged)
			}
			finish(r.blockKey(i), f, nil, err)
			continue
		}
		if cp != nil {
			r.putCopy(cp, i, buf.Bytes())
		}
		finish(r.blockKey(i), f, buf, nil)
	}
}

// ReadStats counts what the read path has served since the mount started.
type ReadStats struct {
	// Reads is the number of FUSE READ requests that reached the daemon;
	// reads the kernel answers from its page cache are not among them.
	Reads int64
	// Bytes is how many bytes those requests asked for.
	Bytes int64
}

// readCounters is embedded in FS.
type readCounters struct {
	readOps, readBytes atomic.Int64
}

// ReadStats returns the read path's counters.
func (f *FS) ReadStats() ReadStats {
	return ReadStats{Reads: f.readOps.Load(), Bytes: f.readBytes.Load()}
}
