package fs

// The write path.
//
// A writable handle rewrites its file from empty: it accepts writes at the
// current end of what it has written (sequential writes of a new file, of a
// file opened with O_TRUNC, or of an empty file). Bytes gather in a buffer
// of PartSize bytes (doubling every 500 parts, see partGrowth); a full
// buffer becomes a part: the first one starts a
// multipart upload (CreateMultipartUpload) and each part goes out with
// UploadPart while the program keeps writing, at most UploadConcurrency
// parts at a time (a write waits for a free slot), so memory stays under
// (UploadConcurrency+1)×PartSize per handle.
//
// Commit, at flush (every close(2) of a descriptor), fsync and release:
// a file that never filled a part is one PutObject of the buffer; otherwise
// the last part goes out and CompleteMultipartUpload joins them. A failure
// at any step aborts the multipart upload, is logged with the key, and
// makes this and every later write, flush and fsync of the handle return
// EIO. A handle that commits and is then written again (a descriptor
// closed by a forked child, as `cmd > file` does) starts over from its
// buffer when the object was one PutObject; after a multipart commit it
// answers ENOTSUP.
//
// Refused until in-place writes land (ENOTSUP, logged): writes anywhere but
// the end of what the handle wrote, writes to a non-empty file opened
// without O_TRUNC, truncation to a size other than 0 or the current one.
// Past S3's 5 TiB object limit a write answers EFBIG.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mount/s3mount/s3backend"
)

// S3's multipart limits (Amazon S3 User Guide, "Amazon S3 multipart upload
// limits").
const (
	maxParts      = 10000
	maxPartSize   = 5 << 30
	maxObjectSize = 5 << 40
	// partGrowth: the part size doubles every partGrowth parts (up to
	// maxPartSize), so that with any part size of at least 5 MiB the
	// 10,000 parts hold S3's 5 TiB object limit: 500 parts each of 5 MiB
	// × 2^0..2^9 make 2.5 TiB, and the 5,000 parts after them are 5 GiB.
	partGrowth = 500
)

// partSizeOf returns the size of part n (1-based) for a base part size,
// doubling every partGrowth parts.
func partSizeOf(base int64, n int32) int64 {
	return partSizeGrowing(base, n, partGrowth)
}

func partSizeGrowing(base int64, n, growth int32) int64 {
	size := base
	for i := int32(1); i <= (n-1)/growth && size < maxPartSize; i++ {
		size *= 2
	}
	return min(size, maxPartSize)
}

// writer is the write side of one handle.
type writer struct {
	fsys *FS
	file *File

	mu sync.Mutex
	// replacing: the handle has taken the file over (created, truncated,
	// or written); until then the file's content is the object as it is.
	replacing bool   // guarded by mu
	dirty     bool   // guarded by mu; written since the last commit
	size      int64  // guarded by mu; bytes written since the content was emptied
	origSize  int64  // guarded by mu; the object's size when not replacing
	buf       []byte // guarded by mu; bytes not yet in a part
	uploadID  string // guarded by mu; "" until the first part
	parts     []s3backend.Part
	nextPart  int32 // guarded by mu
	multipart bool  // guarded by mu; the last commit was a multipart one
	inflight  sync.WaitGroup
	slots     chan struct{}
	errMu     sync.Mutex
	err       error // guarded by errMu; the first failure, sticky
	// shownSize and shown mirror size and replacing for stat(2).
	shownSize atomic.Int64
	shown     atomic.Bool
}

func newWriter(f *File, size int64, created bool) *writer {
	w := &writer{fsys: f.fsys, file: f, origSize: size, replacing: created, dirty: created,
		slots: make(chan struct{}, f.fsys.cfg.UploadConcurrency), nextPart: 1}
	if size == 0 {
		w.replacing = true
	}
	w.publishLocked()
	return w
}

// visibleSize is the size stat(2) shows while the handle is open: what it
// has written, once it has taken the file over.
// It takes no lock, so stat never waits for an upload in progress.
func (w *writer) visibleSize() (int64, bool) {
	return w.shownSize.Load(), w.shown.Load()
}

// publishLocked makes the size and state visible to visibleSize.
func (w *writer) publishLocked() {
	w.shownSize.Store(w.size)
	w.shown.Store(w.replacing)
}

func (w *writer) failure() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

func (w *writer) fail(err error) {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

func (w *writer) key() string {
	w.file.mu.Lock()
	defer w.file.mu.Unlock()
	return w.file.key
}

// truncate handles ftruncate/truncate while the handle is open.
func (w *writer) truncate(size int64) syscall.Errno {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case !w.replacing && size == w.origSize:
		return 0
	case w.replacing && size == w.size:
		return 0
	case size == 0 && w.uploadID == "" && !w.multipart:
		w.replacing, w.dirty, w.size, w.buf = true, true, 0, w.buf[:0]
		w.publishLocked()
		return 0
	}
	w.fsys.log.Info("truncate refused: only to 0 before any part is sent, or to the current size",
		"key", w.file.key, "size", size)
	return syscall.ENOTSUP
}

// write appends data at off, which must be the end of what was written.
func (w *writer) write(data []byte, off int64) (uint32, syscall.Errno) {
	if err := w.failure(); err != nil {
		return 0, syscall.EIO
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.replacing || off != w.size || w.multipart {
		w.fsys.log.Info("write refused: only sequential writes of a new or truncated file are supported",
			"key", w.file.key, "offset", off, "written", w.size, "replacing", w.replacing)
		return 0, syscall.ENOTSUP
	}
	if off+int64(len(data)) > maxObjectSize {
		w.fsys.log.Warn("write refused: past S3's 5 TiB object limit", "key", w.file.key, "offset", off)
		return 0, syscall.EFBIG
	}
	w.dirty = true
	n := 0
	for n < len(data) {
		w.growLocked(len(data) - n)
		c := copy(w.buf[len(w.buf):cap(w.buf)], data[n:])
		w.buf = w.buf[:len(w.buf)+c]
		n += c
		w.size += int64(c)
		w.publishLocked()
		if int64(len(w.buf)) == w.partSize(w.nextPart) {
			if en := w.sendPartLocked(); en != 0 {
				return uint32(n), en
			}
		}
	}
	return uint32(n), 0
}

// growLocked makes room for more bytes in the buffer: a small file keeps a
// small buffer; from the second part on, buffers are whole parts.
func (w *writer) growLocked(more int) {
	if len(w.buf) < cap(w.buf) {
		return
	}
	part := int(w.partSize(w.nextPart))
	if w.buf == nil && w.nextPart > 1 && part == int(w.fsys.cfg.PartSize) {
		w.buf = w.getBuf()
		return
	}
	c := min(max(2*cap(w.buf), len(w.buf)+more, 64<<10), part)
	if c == part && len(w.buf) == 0 && part == int(w.fsys.cfg.PartSize) {
		w.buf = w.getBuf()
		return
	}
	nb := make([]byte, len(w.buf), c)
	copy(nb, w.buf)
	w.buf = nb
}

// partSize is the size of part n of this upload.
func (w *writer) partSize(n int32) int64 {
	return partSizeGrowing(w.fsys.cfg.PartSize, n, w.fsys.cfg.PartGrowth)
}

func (w *writer) getBuf() []byte {
	b := w.fsys.bufs.Get().(*[]byte)
	return (*b)[:0]
}

func (w *writer) putBuf(b []byte) {
	if int64(cap(b)) == w.fsys.cfg.PartSize {
		w.fsys.bufs.Put(&b)
	}
}

// sendPartLocked turns the full buffer into a part uploading in the
// background. It waits for a free slot, which bounds memory.
func (w *writer) sendPartLocked() syscall.Errno {
	if w.nextPart > maxParts {
		return syscall.EFBIG // unreachable below maxObjectSize; see partGrowth
	}
	if w.uploadID == "" {
		w.file.mu.Lock()
		meta := w.file.uploadMetaLocked()
		w.file.mu.Unlock()
		id, err := w.fsys.client.CreateMultipart(context.Background(), w.file.key, meta)
		if err != nil {
			w.fail(err)
			return syscall.EIO
		}
		w.uploadID = id
	}
	body, num, id, key := w.buf, w.nextPart, w.uploadID, w.file.key
	w.buf = nil
	w.nextPart++
	w.parts = append(w.parts, s3backend.Part{Number: num})
	w.slots <- struct{}{}
	w.inflight.Add(1)
	go func() {
		defer w.inflight.Done()
		etag, err := w.fsys.client.UploadPart(context.Background(), key, id, num, body)
		<-w.slots
		w.putBuf(body)
		if err != nil {
			w.fail(err)
			return
		}
		w.mu.Lock()
		w.parts[num-1].ETag = etag
		w.mu.Unlock()
	}()
	return 0
}

// commit makes what was written the object in S3. It returns 0, or EIO
// (ENOENT-free: a lost upload is never reported as success).
func (w *writer) commit(ctx context.Context) syscall.Errno {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.dirty {
		if w.failure() != nil {
			return syscall.EIO
		}
		return 0
	}
	w.file.mu.Lock()
	unlinked := w.file.unlinked
	w.file.mu.Unlock()
	if unlinked {
		w.abortLocked()
		w.dirty = false
		return 0
	}
	key := w.key()
	if w.uploadID == "" {
		if err := w.failure(); err != nil {
			return syscall.EIO
		}
		w.file.mu.Lock()
		meta := w.file.uploadMetaLocked()
		w.file.mu.Unlock()
		etag, err := w.fsys.client.Put(ctx, key, w.buf, s3backend.PutOptions{Meta: meta})
		if err != nil {
			w.fsys.log.Error("upload failed: the file is not in S3", "key", key, "size", w.size, "err", err)
			w.fail(err)
			return syscall.EIO
		}
		w.dirty = false
		w.afterCommitLocked(ctx, key, etag)
		return 0
	}
	if len(w.buf) > 0 {
		if en := w.sendPartLocked(); en != 0 {
			w.abortLocked()
			return en
		}
	}
	// Parts fill in their ETags under w.mu: let them.
	w.mu.Unlock()
	w.inflight.Wait()
	w.mu.Lock()
	if err := w.failure(); err != nil {
		w.fsys.log.Error("upload failed: the file is not in S3", "key", key, "size", w.size, "err", err)
		w.abortLocked()
		return syscall.EIO
	}
	etag, err := w.fsys.client.CompleteMultipart(ctx, key, w.uploadID, w.parts, s3backend.PutOptions{})
	if err != nil {
		w.fsys.log.Error("upload failed: the file is not in S3", "key", key, "size", w.size, "err", err)
		w.fail(err)
		w.abortLocked()
		return syscall.EIO
	}
	w.uploadID, w.parts, w.dirty, w.multipart = "", nil, false, true
	w.afterCommitLocked(ctx, key, etag)
	return 0
}

// afterCommitLocked records a committed upload. An unlink that arrived
// while the upload was completing found nothing in S3 to delete: the object
// just written is deleted now, so that a removed file never reappears.
func (w *writer) afterCommitLocked(ctx context.Context, key, etag string) {
	if !w.file.committed(w.size, etag, time.Now()) {
		return
	}
	if err := w.fsys.client.Delete(ctx, key); err != nil {
		w.fsys.log.Error("file unlinked during its upload could not be deleted", "key", key, "err", err)
	}
}

// abortLocked discards the multipart upload, if any, after its parts end.
func (w *writer) abortLocked() {
	if w.uploadID == "" {
		return
	}
	w.mu.Unlock()
	w.inflight.Wait()
	w.mu.Lock()
	if w.uploadID == "" {
		return
	}
	if err := w.fsys.client.AbortMultipart(context.Background(), w.key(), w.uploadID); err != nil {
		w.fsys.log.Warn("abort of multipart upload failed; S3 keeps its parts until a lifecycle rule removes them",
			"key", w.file.key, "upload_id", w.uploadID, "err", err)
	}
	w.uploadID, w.parts = "", nil
	if w.failure() == nil {
		w.fail(errors.New("upload aborted"))
	}
}

// release commits what is left and frees the buffers.
func (w *writer) release(ctx context.Context) {
	if en := w.commit(ctx); en != 0 {
		w.fsys.log.Error("close: the last upload of the file failed", "key", w.key(), "errno", en)
	}
	w.mu.Lock()
	if w.buf != nil {
		w.putBuf(w.buf)
		w.buf = nil
	}
	w.mu.Unlock()
	w.file.writerClosed(w)
	w.file.flushMeta(ctx)
}

// handle is an open file: a reader, a writer, or both (O_RDWR).
type handle struct {
	r    *reader
	w    *writer
	file *File // set for read-only handles, counted in File.readers
}

var (
	_ gofs.FileReader   = (*handle)(nil)
	_ gofs.FileWriter   = (*handle)(nil)
	_ gofs.FileFlusher  = (*handle)(nil)
	_ gofs.FileFsyncer  = (*handle)(nil)
	_ gofs.FileReleaser = (*handle)(nil)
)

// Read implements read(2). A handle that has rewritten its file cannot read
// it back before the commit (ENOTSUP).
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h.w != nil {
		if _, replacing := h.w.visibleSize(); replacing {
			return nil, syscall.ENOTSUP
		}
	}
	if h.r == nil {
		return nil, syscall.EBADF
	}
	return h.r.read(ctx, dest, off)
}

// Write implements write(2); see the write path above.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if h.w == nil {
		return 0, syscall.EBADF
	}
	return h.w.write(data, off)
}

// Flush implements the FLUSH of every close(2): it commits.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	if h.w == nil {
		return 0
	}
	return h.w.commit(context.WithoutCancel(ctx))
}

// Fsync implements fsync(2): the data is in S3 when it returns 0.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if h.w == nil {
		return 0
	}
	return h.w.commit(context.WithoutCancel(ctx))
}

// Release implements the last close of the handle.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	if h.w != nil {
		h.w.release(context.WithoutCancel(ctx))
	}
	if h.r != nil {
		h.r.close()
	}
	if h.file != nil {
		h.file.readerClosed(h.r.etag)
	}
	return 0
}
