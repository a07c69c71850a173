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
// the reader: it starts at minWindow and doubles each time the reader has
// used half of it, up to DownloadThreads × maxRequest. The window is split
// into runs of window/DownloadThreads bytes (at least a block, at most
// maxRequest), at most DownloadThreads of them in flight for the handle and
// 4 × DownloadThreads across the mount. A read that jumps elsewhere resets
// the streak and the window. Blocks fetched ahead are held by the handle
// until read or passed, so a cache that declines them (ristretto admission)
// costs no second GET.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

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

// newRunBuffer allocates the n bytes of a run's blocks as one buffer (the
// blocks are slices of it) and asks for transparent huge pages on it
// (madvise(2) MADV_HUGEPAGE): filling fresh memory 4 KiB page by page
// costs more than the network on virtual machines (measured here: 0.35
// GB/s into fresh 4 KiB pages, 0.6-1.2 GB/s with huge pages, 1.6 GB/s
// into reused memory). Without THP support the advice is ignored.
func newRunBuffer(n int64) []byte {
	buf := make([]byte, n)
	if n >= 2<<20 {
		_ = unix.Madvise(buf, unix.MADV_HUGEPAGE)
	}
	return buf
}

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
	next   int64                   // guarded by mu; offset after the furthest read
	streak int64                   // guarded by mu; contiguous bytes read ending at next
	window int64                   // guarded by mu; readahead bytes, 0 when not sequential
	ahead  int64                   // guarded by mu; readahead requested up to here
	held   map[int64]*cache.Flight // guarded by mu; blocks fetched ahead, not yet passed
	slots  chan struct{}           // this handle's readahead GETs in flight
}

func newReader(fsys *FS, key, etag string, size int64) *reader {
	return &reader{fsys: fsys, key: key, etag: etag, size: size, held: map[int64]*cache.Flight{},
		slots: make(chan struct{}, fsys.cfg.DownloadThreads)}
}

func (r *reader) blockKey(i int64) cache.BlockKey {
	return cache.BlockKey{Bucket: r.fsys.client.Bucket(), Key: r.key, ETag: r.etag, Index: i}
}

// read fills dest from off. It returns fewer bytes only at end of file.
func (r *reader) read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= r.size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), r.size)
	bs := r.fsys.cfg.BlockSize
	first, last := off/bs, (end-1)/bs

	r.mu.Lock()
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
		clear(r.held)
	}
	flights := make([]*cache.Flight, 0, last-first+1)
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
		flights = append(flights, f)
	}
	for j := range runs {
		go r.fetchRun(runStart[j], runs[j], false)
	}
	if r.streak >= seqThreshold {
		r.readaheadLocked(end)
	}
	for j := range r.held {
		if j < first {
			delete(r.held, j)
		}
	}
	r.mu.Unlock()

	n := 0
	for j, f := range flights {
		i := first + int64(j)
		data, err := r.wait(ctx, f)
		if err != nil && !errors.Is(err, s3backend.ErrChanged) && ctx.Err() == nil {
			// A failed readahead is retried once by the reader itself.
			r.fsys.log.Debug("read: retrying block", "key", r.key, "block", i, "err", err)
			r.mu.Lock()
			delete(r.held, i)
			f, claimed := r.acquireLocked(i)
			r.mu.Unlock()
			if claimed {
				go r.fetchRun(i, []*cache.Flight{f}, false)
			}
			data, err = r.wait(ctx, f)
		}
		if err != nil {
			return nil, errno(err)
		}
		blockOff := i * bs
		from := max(off, blockOff) - blockOff
		to := min(end, blockOff+int64(len(data))) - blockOff
		if to < from {
			return nil, syscall.EIO
		}
		if first == last {
			// Within one block: reply with the block's own bytes (blocks
			// are never modified), sparing a copy of every byte read.
			return fuse.ReadResultData(data[from:to]), 0
		}
		n += copy(dest[n:], data[from:to])
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (r *reader) wait(ctx context.Context, f *cache.Flight) ([]byte, error) {
	select {
	case <-f.Done():
		return f.Result()
	case <-ctx.Done():
		return nil, context.Canceled
	}
}

// acquireLocked returns block i's flight: held, cached, in flight elsewhere,
// or newly claimed (claimed true: the caller must start its fetch).
func (r *reader) acquireLocked(i int64) (*cache.Flight, bool) {
	if f := r.held[i]; f != nil {
		return f, false
	}
	data, f, claimed := r.fsys.blocks.Acquire(r.blockKey(i))
	if data != nil {
		f = cache.Ready(data)
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
	switch {
	case r.window == 0:
		r.window = minWindow
	case r.ahead-end >= r.window/2:
		return // still half a window ahead
	default:
		r.window = min(2*r.window, maxWindow)
	}
	target := min(end+r.window, r.size)
	chunk := max(bs, min(r.window/threads, maxRequest)/bs*bs)
	for r.ahead < target {
		a := r.ahead / bs
		nb := min(chunk, target-r.ahead+bs-1) / bs
		nb = max(nb, 1)
		var run []*cache.Flight
		runStart := a
		for i := a; i < a+nb; i++ {
			f, claimed := r.acquireLocked(i)
			r.held[i] = f
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
	run := newRunBuffer(n)
	for j, f := range flights {
		i := a + int64(j)
		if err != nil {
			r.fsys.blocks.Finish(r.blockKey(i), f, nil, err)
			continue
		}
		want := min(bs, r.size-i*bs)
		from := int64(j) * bs
		buf := run[from : from+want : from+want]
		if _, rerr := io.ReadFull(body, buf); rerr != nil {
			err = rerr
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				err = fmt.Errorf("%s: object ends before byte %d: %w", r.key, i*bs+want, s3backend.ErrChanged)
			}
			r.fsys.blocks.Finish(r.blockKey(i), f, nil, err)
			continue
		}
		r.fsys.blocks.Finish(r.blockKey(i), f, buf, nil)
	}
}
