package fs

// The read path.
//
// A file is read in blocks of BlockSize bytes; block i covers bytes
// [i×BlockSize, (i+1)×BlockSize) and is fetched with one ranged GET whose
// response must carry the ETag pinned at open (else ESTALE). Blocks live in
// the shared cache.Blocks keyed by bucket, key, ETag and i; concurrent
// readers of one block share one GET.
//
// Readahead: a read that starts where the previous one ended (within one
// block) counts as sequential; each sequential read makes sure the next
// 2×DownloadThreads blocks are being fetched, DownloadThreads at a time for
// this handle (and 4×DownloadThreads across the mount). Prefetched blocks
// are held by the handle as futures until read or passed, so a cache that
// declines a block (ristretto's admission) costs no second GET. A random
// read fetches only the blocks it touches.

import (
	"context"
	"fmt"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend"
)

// future is a block being fetched ahead of the reader.
type future struct {
	done chan struct{}
	data []byte
	err  error
}

// reader reads one version of one object.
type reader struct {
	fsys *FS
	key  string
	etag string
	size int64

	mu      sync.Mutex
	next    int64             // guarded by mu; offset after the last read
	pending map[int64]*future // guarded by mu; block index → prefetch
	slots   chan struct{}     // GETs in flight for this handle; made lazily under mu
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
	sequential := (off == 0 && r.next == 0) || (r.next > 0 && off >= r.next-bs && off <= r.next+bs)
	r.next = end
	if sequential {
		r.prefetchLocked(last + 1)
	}
	r.mu.Unlock()

	n := 0
	for i := first; i <= last; i++ {
		data, err := r.block(ctx, i)
		if err != nil {
			return nil, errno(err)
		}
		blockOff := i * bs
		from := max(off, blockOff) - blockOff
		to := min(end, blockOff+int64(len(data))) - blockOff
		if to < from {
			return nil, syscall.EIO
		}
		n += copy(dest[n:], data[from:to])
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// block returns block i from a prefetch, the cache, or a GET.
func (r *reader) block(ctx context.Context, i int64) ([]byte, error) {
	r.mu.Lock()
	fut := r.pending[i]
	for j := range r.pending {
		if j < i {
			delete(r.pending, j)
		}
	}
	r.mu.Unlock()
	if fut != nil {
		select {
		case <-fut.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if fut.err == nil {
			return fut.data, nil
		}
		// A failed prefetch is retried by the reader itself.
		r.mu.Lock()
		if r.pending[i] == fut {
			delete(r.pending, i)
		}
		r.mu.Unlock()
	}
	return r.fetch(i)
}

// fetch gets block i through the shared cache, coalescing with any other
// reader of the same block. The GET is not tied to one caller's context,
// since other callers may be waiting for it.
func (r *reader) fetch(i int64) ([]byte, error) {
	bs := r.fsys.cfg.BlockSize
	k := cache.BlockKey{Bucket: r.fsys.client.Bucket(), Key: r.key, ETag: r.etag, Index: i}
	return r.fsys.blocks.GetOrFetch(k, func() ([]byte, error) {
		off := i * bs
		want := min(bs, r.size-off)
		buf := make([]byte, want)
		r.fsys.downloads <- struct{}{}
		got, err := r.fsys.client.ReadRange(context.Background(), r.key, r.etag, off, buf)
		<-r.fsys.downloads
		if err != nil {
			return nil, err
		}
		if int64(got) != want {
			return nil, fmt.Errorf("%s: got %d of %d bytes at %d: %w", r.key, got, want, off, s3backend.ErrChanged)
		}
		return buf, nil
	})
}

// prefetchLocked starts fetches of the blocks from `from` on, up to the
// readahead window, that are neither pending nor cached.
func (r *reader) prefetchLocked(from int64) {
	bs := r.fsys.cfg.BlockSize
	threads := r.fsys.cfg.DownloadThreads
	if r.slots == nil {
		r.slots = make(chan struct{}, threads)
	}
	lastBlock := (r.size - 1) / bs
	for i := from; i < from+int64(2*threads) && i <= lastBlock; i++ {
		if _, ok := r.pending[i]; ok {
			continue
		}
		k := cache.BlockKey{Bucket: r.fsys.client.Bucket(), Key: r.key, ETag: r.etag, Index: i}
		if data, ok := r.fsys.blocks.Get(k); ok {
			r.pending[i] = &future{done: closedChan, data: data}
			continue
		}
		fut := &future{done: make(chan struct{})}
		r.pending[i] = fut
		go func(i int64) {
			r.slots <- struct{}{}
			fut.data, fut.err = r.fetch(i)
			<-r.slots
			close(fut.done)
		}(i)
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
