package fs

// The write path.
//
// A file opened for writing gets one content (shared by all its writable
// handles) that is in one of three states:
//
//   - clean: the object as it is in S3; nothing written yet.
//   - streaming: the file was created, opened with O_TRUNC, truncated to 0
//     or empty, and every write so far came at its end. Bytes gather in a
//     buffer of PartSize bytes (doubling every 500 parts, see partGrowth);
//     a full buffer becomes a part: the first starts a multipart upload
//     (CreateMultipartUpload) and each part goes out with UploadPart while
//     the program keeps writing, at most UploadConcurrency at a time (a
//     write waits for a free slot), so memory stays under
//     (UploadConcurrency+1)×PartSize per file and nothing touches the disk.
//   - staged: anything else (a write elsewhere than the end, a write to an
//     existing object, truncation to another size, reading back what was
//     written): the content moves to a staging file (stage.go). Moving a
//     stream that has sent parts first completes its upload, so the staged
//     content starts from that object.
//
// Commit, at flush (every close(2) of a descriptor), fsync and the last
// release: a stream that never filled a part is one PutObject; otherwise
// its last part goes out and CompleteMultipartUpload joins them. A staged
// content up to PartSize is one PutObject; a larger one is a multipart
// upload where each part that is wholly unchanged base bytes is an
// UploadPartCopy of the base object (pinned by x-amz-copy-source-if-match)
// and the others are read from the staging file (and the base, for bytes
// not written) and uploaded.
//
// Conditions: a file that did not exist is committed with If-None-Match: *,
// any other with If-Match: the ETag seen at open (or at its last commit),
// so that an object changed by another client meanwhile is not clobbered:
// the commit then fails with ESTALE and the bytes are kept (below).
//
// Failures. A failed commit returns EIO (ESTALE for a lost race), logs the
// key and the cause, and aborts the multipart upload. A staged content stays
// dirty, so the next flush or fsync tries again; if the last release fails
// too, the staging file moves to <cache-dir>/recovery with a JSON sidecar
// naming the bucket and key (README, "Recovering unsaved files"). A stream
// that fails has lost the parts it sent: its later writes, flushes and
// fsyncs answer EIO; bytes still in its buffer are kept the same way.
// Past S3's 5 TiB object limit a write answers EFBIG.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sync/errgroup"

	"github.com/s3mount/s3mount/s3backend"
)

// S3's multipart limits (Amazon S3 User Guide, "Amazon S3 multipart upload
// limits").
const (
	maxParts      = 10000
	maxPartSize   = 5 << 30
	minPartSize   = 5 << 20
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

// content is the state of a file open for writing, shared by its writable
// handles. Lock order: content.mu, then File.mu.
type content struct {
	fsys *FS
	file *File

	mu      sync.Mutex
	handles int // guarded by mu; writable handles open
	// cachedHandles: those of them that write through the kernel page
	// cache (not handle.bypass).
	cachedHandles int   // guarded by mu
	closed        bool  // guarded by mu; the last handle was released
	size          int64 // guarded by mu; bytes
	dirty         bool  // guarded by mu; changed since the last commit
	// created: no object existed when the content began and none has been
	// committed: commit with If-None-Match: *. Otherwise condETag is the
	// If-Match ETag ("" after a rename over another name: unconditional).
	created  bool   // guarded by mu
	condETag string // guarded by mu
	// base is the object the content started from; below baseLimit, bytes
	// not written are the base's.
	baseKey, baseETag string // guarded by mu
	baseLimit         int64  // guarded by mu
	stream            *stream
	stage             *stageFile // guarded by mu; nil unless staged
	valid             extents    // guarded by mu; staged bytes below baseLimit
	baseReader        *reader    // guarded by mu; reads base bytes through the block cache

	// shownSize mirrors size for stat(2), which must not wait for mu.
	shownSize atomic.Int64
	// shownMTime is the mtime stat(2) shows while the content is open
	// (File.fillAttr): the file's when the content began, or one set
	// with utimes since. Guarded by File.mu.
	shownMTime time.Time

	// ptFile is the stage's file when the content is a passthrough one
	// (passthrough.go, ptContentLocked): a shared mmap of the file writes
	// it directly. Set once; ptSeen is its size and mtime as last taken
	// in (ptRefreshLocked).
	ptFile *os.File
	ptSeen ptStat // guarded by mu

	// bypassed: a handle wrote around the kernel page cache since the
	// last commit (handle.bypass), whose pages the commit then drops.
	bypassed atomic.Bool
}

// stream is the state of a streaming upload.
type stream struct {
	buf       []byte // bytes not yet in a part
	uploadKey string // the key the multipart upload was created for
	uploadID  string // "" until the first part
	journal   string // the upload's record (journalUpload)
	nextPart  int32
	partsMu   sync.Mutex
	parts     []s3backend.Part // guarded by partsMu
	inflight  sync.WaitGroup
	slots     chan struct{}
	errMu     sync.Mutex
	err       error // guarded by errMu; the first failure, sticky
}

func (s *stream) failure() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

func (s *stream) fail(err error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// newContentLocked starts the content of f as the object is now. f.mu is
// held.
func newContentLocked(f *File, created bool) *content {
	c := &content{fsys: f.fsys, file: f, size: f.size, created: created, condETag: f.etag,
		baseKey: f.key, baseETag: f.etag, baseLimit: f.size, dirty: created, shownMTime: f.mtimeLocked()}
	if created {
		c.size, c.baseLimit, c.condETag, c.baseETag = 0, 0, "", ""
	}
	if c.size == 0 {
		c.stream = c.newStream()
	}
	c.shownSize.Store(c.size)
	return c
}

func (c *content) newStream() *stream {
	return &stream{nextPart: 1, slots: make(chan struct{}, c.fsys.cfg.UploadConcurrency)}
}

func (c *content) key() string {
	c.file.mu.Lock()
	defer c.file.mu.Unlock()
	return c.file.key
}

func (c *content) unlinked() bool {
	c.file.mu.Lock()
	defer c.file.mu.Unlock()
	return c.file.unlinked
}

func (c *content) setSizeLocked(n int64) {
	c.size = n
	c.shownSize.Store(n)
}

// partSize is the size of part n of an upload.
func (c *content) partSize(n int32) int64 {
	return partSizeGrowing(c.fsys.cfg.PartSize, n, c.fsys.cfg.PartGrowth)
}

// truncate sets the size: ftruncate(2), truncate(2), O_TRUNC.
func (c *content) truncate(ctx context.Context, n int64) syscall.Errno {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ptRefreshLocked()
	if n > maxObjectSize {
		return syscall.EFBIG
	}
	if s := c.stream; s != nil && s.failure() != nil {
		return syscall.EIO
	}
	switch {
	case n == c.size:
		return 0
	case n == 0 && c.stage == nil:
		// From empty: a stream again, whatever was there.
		if c.stream != nil && c.stream.uploadID != "" {
			c.abortStreamLocked()
			c.putBuf(c.stream.buf)
			c.stream = nil
		}
		if c.stream == nil {
			c.stream = c.newStream()
		}
		c.stream.buf = c.stream.buf[:0]
		c.baseLimit = 0
		c.dirty = true
		c.setSizeLocked(0)
		return 0
	}
	if en := c.stageLocked(ctx); en != 0 {
		return en
	}
	c.stage.markDirty(c.fsys, c.file.key)
	if err := c.stage.f.Truncate(n); err != nil {
		return c.localErrno("truncate", err)
	}
	c.baseLimit = min(c.baseLimit, n)
	c.valid.clip(c.baseLimit)
	c.dirty = true
	c.setSizeLocked(n)
	c.stage.recharge(c.fsys)
	return 0
}

// write writes data at off.
func (c *content) write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeLocked(ctx, data, off)
}

// append is the write of an O_APPEND handle: at the content's end. off is
// where the kernel meant to write; when it differs (its i_size was
// behind), that is logged at debug level.
func (c *content) append(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if off != c.size {
		c.fsys.log.Debug("O_APPEND write moved to the end of the file", "key", c.file.key, "offset", off, "size", c.size)
	}
	return c.writeLocked(ctx, data, c.size)
}

func (c *content) writeLocked(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if off+int64(len(data)) > maxObjectSize {
		c.fsys.log.Warn("write refused: past S3's 5 TiB object limit", "key", c.file.key, "offset", off)
		return 0, syscall.EFBIG
	}
	if s := c.stream; s != nil {
		if s.failure() != nil {
			return 0, syscall.EIO
		}
		if off == c.size {
			return c.appendLocked(data)
		}
	}
	if en := c.stageLocked(ctx); en != 0 {
		return 0, en
	}
	if !c.fsys.room(int64(len(data))) {
		c.fsys.log.Warn("write refused: the staging area is full (--staging-limit)", "key", c.file.key,
			"limit", c.fsys.cfg.StagingLimit)
		return 0, syscall.ENOSPC
	}
	c.stage.markDirty(c.fsys, c.file.key)
	n, err := c.stage.f.WriteAt(data, off)
	c.stage.recharge(c.fsys)
	if n > 0 {
		c.dirty = true
		end := off + int64(n)
		c.valid.add(off, min(end, c.baseLimit))
		if end > c.size {
			c.setSizeLocked(end)
		}
	}
	if err != nil {
		en := c.localErrno("write", err)
		// The file may have grown past what the program is told was
		// written (tmpfs at ENOSPC has kept part of a write it
		// failed): cut it back, or those bytes would be uploaded.
		told := max(c.size, off+int64(n))
		if fi, serr := c.stage.f.Stat(); serr == nil && fi.Size() > told {
			_ = c.stage.f.Truncate(told)
			c.stage.recharge(c.fsys)
			c.ptSeen = ptStat{} // taken in again at the next look
		}
		if n > 0 {
			// A short write: go-fuse would drop the count with an
			// errno, and the program would take bytes that are in
			// the file (and will be uploaded) as not written. The
			// next write gets the errno.
			return uint32(n), 0
		}
		return 0, en
	}
	return uint32(n), 0
}

// localErrno logs a failure of the staging file and maps it (ENOSPC, EIO).
func (c *content) localErrno(op string, err error) syscall.Errno {
	c.fsys.log.Error("staging file "+op+" failed", "key", c.file.key, "dir", c.fsys.cfg.CacheDir, "err", err)
	var en syscall.Errno
	if errors.As(err, &en) && (en == syscall.ENOSPC || en == syscall.EDQUOT) {
		return syscall.ENOSPC
	}
	return syscall.EIO
}

// appendLocked adds data at the end of a stream.
func (c *content) appendLocked(data []byte) (uint32, syscall.Errno) {
	s := c.stream
	c.dirty = true
	n := 0
	for n < len(data) {
		c.growLocked(len(data) - n)
		k := copy(s.buf[len(s.buf):cap(s.buf)], data[n:])
		s.buf = s.buf[:len(s.buf)+k]
		n += k
		c.setSizeLocked(c.size + int64(k))
		if int64(len(s.buf)) == c.partSize(s.nextPart) {
			if en := c.sendPartLocked(); en != 0 {
				return uint32(n), en
			}
		}
	}
	return uint32(n), 0
}

// growLocked makes room for more bytes in the stream's buffer: a small file
// keeps a small buffer; from the second part on, buffers are whole parts.
func (c *content) growLocked(more int) {
	s := c.stream
	if len(s.buf) < cap(s.buf) {
		return
	}
	part := int(c.partSize(s.nextPart))
	if s.buf == nil && s.nextPart > 1 && part == int(c.fsys.cfg.PartSize) {
		s.buf = c.getBuf()
		return
	}
	n := min(max(2*cap(s.buf), len(s.buf)+more, 64<<10), part)
	if n >= min(part, 1<<20) && part == int(c.fsys.cfg.PartSize) {
		// Past 1 MiB the file is likely large: move to a part buffer
		// (reused memory) rather than growing on the heap to the part size.
		nb := c.getBuf()[:len(s.buf)]
		copy(nb, s.buf)
		s.buf = nb
		return
	}
	nb := make([]byte, len(s.buf), n)
	copy(nb, s.buf)
	s.buf = nb
}

func (c *content) getBuf() []byte { return c.fsys.bufs.get() }

func (c *content) putBuf(b []byte) { c.fsys.bufs.put(b) }

// sendPartLocked turns the stream's full buffer into a part uploading in
// the background. It waits for a free slot, which bounds memory.
func (c *content) sendPartLocked() syscall.Errno {
	s := c.stream
	if s.nextPart > maxParts {
		return syscall.EFBIG // unreachable below maxObjectSize; see partGrowth
	}
	if s.uploadID == "" {
		key := c.key()
		c.file.mu.Lock()
		meta := c.file.uploadMetaLocked()
		c.file.mu.Unlock()
		id, err := c.fsys.client.CreateMultipart(context.Background(), key, meta)
		if err != nil {
			s.fail(err)
			c.fsys.log.Error("upload failed: the file is not in S3", "key", key, "err", err)
			return syscall.EIO
		}
		s.uploadKey, s.uploadID = key, id
		s.journal = c.fsys.journalUpload(key, id)
	}
	body, num, id, key := s.buf, s.nextPart, s.uploadID, s.uploadKey
	s.buf = nil
	s.nextPart++
	s.partsMu.Lock()
	s.parts = append(s.parts, s3backend.Part{Number: num})
	s.partsMu.Unlock()
	partsQueued.Add(1)
	s.slots <- struct{}{}
	partsQueued.Add(-1)
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		etag, err := c.fsys.client.UploadPart(context.Background(), key, id, num, body)
		<-s.slots
		c.putBuf(body)
		if err != nil {
			s.fail(err)
			return
		}
		s.partsMu.Lock()
		s.parts[num-1].ETag = etag
		s.partsMu.Unlock()
	}()
	return 0
}

// conditionsLocked returns the preconditions of the next commit.
func (c *content) conditionsLocked() s3backend.PutOptions {
	switch {
	case c.created:
		return s3backend.PutOptions{IfNoneMatch: "*"}
	case c.condETag != "":
		return s3backend.PutOptions{IfMatch: c.condETag}
	}
	return s3backend.PutOptions{}
}

// commitErrno maps a failed commit: a lost race (the object changed or
// appeared, 412, or vanished under If-Match, 404) is ESTALE, anything else
// EIO; never ENOENT.
func commitErrno(err error, opt s3backend.PutOptions) syscall.Errno {
	if errors.Is(err, s3backend.ErrPrecondition) || opt.IfMatch != "" && errors.Is(err, s3backend.ErrNotFound) {
		return syscall.ESTALE
	}
	return syscall.EIO
}

// commit makes the content the object in S3: flush, fsync, release.
func (c *content) commit(ctx context.Context) syscall.Errno {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.commitLocked(ctx)
}

func (c *content) commitLocked(ctx context.Context) syscall.Errno {
	c.ptRefreshLocked()
	if s := c.stream; s != nil && s.failure() != nil {
		c.abortStreamLocked()
		return syscall.EIO
	}
	if !c.dirty {
		return 0
	}
	if c.unlinked() {
		c.abortStreamLocked()
		c.dirty = false
		return 0
	}
	if c.stage != nil {
		return c.commitStagedLocked(ctx)
	}
	return c.commitStreamLocked(ctx)
}

// uploadMeta returns the metadata of an upload of the file.
func (c *content) uploadMeta() map[string]string {
	c.file.mu.Lock()
	defer c.file.mu.Unlock()
	return c.file.uploadMetaLocked()
}

// commitStreamLocked commits a stream: one PutObject, or the last part and
// CompleteMultipartUpload.
func (c *content) commitStreamLocked(ctx context.Context) syscall.Errno {
	s, key, opt := c.stream, c.key(), c.conditionsLocked()
	if s.uploadID == "" {
		opt.Meta = c.uploadMeta()
		etag, err := c.fsys.client.Put(ctx, key, s.buf, opt)
		if err != nil {
			c.fsys.log.Error("upload failed: the file is not in S3", "key", key, "size", c.size, "err", err)
			return commitErrno(err, opt)
		}
		c.afterCommitLocked(ctx, key, etag)
		return 0
	}
	if len(s.buf) > 0 {
		if en := c.sendPartLocked(); en != 0 {
			c.abortStreamLocked()
			return en
		}
	}
	s.inflight.Wait()
	if err := s.failure(); err != nil {
		c.fsys.log.Error("upload failed: the file is not in S3", "key", key, "size", c.size, "err", err)
		c.abortStreamLocked()
		return syscall.EIO
	}
	s.partsMu.Lock()
	parts := s.parts
	s.partsMu.Unlock()
	target := key
	if s.uploadKey != key {
		// Renamed while streaming: the upload lands where it began, then
		// moves (CopyObject + DeleteObject).
		target, opt = s.uploadKey, s3backend.PutOptions{}
	}
	etag, err := c.fsys.client.CompleteMultipart(ctx, target, s.uploadID, parts, opt)
	if err == nil {
		unjournal(s.journal)
	}
	if err == nil && target != key {
		if etag, err = c.fsys.client.Copy(ctx, target, key, s3backend.CopyOptions{Size: c.size}); err == nil {
			err = c.fsys.client.Delete(ctx, target)
		}
	}
	if err != nil {
		c.fsys.log.Error("upload failed: the file is not in S3", "key", key, "size", c.size, "err", err)
		s.fail(err)
		c.abortStreamLocked()
		return commitErrno(err, opt)
	}
	s.uploadID, s.parts = "", nil
	c.afterCommitLocked(ctx, key, etag)
	// A completed upload cannot take more parts: what follows is staged
	// on top of the object just written.
	c.putBuf(s.buf)
	c.stream = nil
	return 0
}

// afterCommitLocked records a committed upload as the new base. An unlink
// that arrived while the upload was completing found nothing in S3 to
// delete: the object just written is deleted now, so that a removed file
// never reappears.
func (c *content) afterCommitLocked(ctx context.Context, key, etag string) {
	c.dirty, c.created, c.condETag = false, false, etag
	if c.stage != nil {
		c.valid.add(c.baseLimit, c.size) // the staged bytes are the object's now
		c.stage.markClean()
	}
	c.baseKey, c.baseETag, c.baseLimit = key, etag, c.size
	if c.ptFile != nil {
		// The kernel may write anywhere in the file: all of it stays
		// the content.
		c.baseLimit, c.valid = 0, nil
	}
	if c.baseReader != nil {
		c.baseReader.close()
		c.baseReader = nil
	}
	// Pages to drop now: bytes went around the page cache, and no handle
	// writing through it is open, whose writes the drop would race (else
	// the drop waits for the last release, contentClosed).
	drop := (c.bypassed.Load() || c.ptFile != nil) && c.cachedHandles == 0
	if drop {
		c.bypassed.Store(false)
	}
	if !c.file.committed(c.size, etag, time.Now(), drop) {
		return
	}
	if err := c.fsys.client.Delete(ctx, key); err != nil {
		c.fsys.log.Error("file unlinked during its upload could not be deleted", "key", key, "err", err)
	}
}

// abortStreamLocked discards the stream's multipart upload, if any, after
// its parts end.
func (c *content) abortStreamLocked() {
	s := c.stream
	if s == nil || s.uploadID == "" {
		return
	}
	s.inflight.Wait()
	if err := c.fsys.client.AbortMultipart(context.Background(), s.uploadKey, s.uploadID); err != nil {
		c.fsys.log.Warn("abort of multipart upload failed; S3 keeps its parts until a lifecycle rule removes them",
			"key", s.uploadKey, "upload_id", s.uploadID, "err", err)
	} else {
		unjournal(s.journal)
	}
	s.uploadID, s.parts = "", nil
	s.fail(errors.New("upload aborted"))
}

// stageLocked moves the content to a staging file, if it is not there yet.
func (c *content) stageLocked(ctx context.Context) syscall.Errno {
	if c.stage != nil {
		return 0
	}
	if s := c.stream; s != nil && s.uploadID != "" {
		// The parts sent are in S3 only: complete the upload, and stage
		// on top of the object.
		if en := c.commitStreamLocked(ctx); en != 0 {
			return en
		}
	}
	st, err := c.fsys.newStageFile(c.key())
	if err != nil {
		return c.localErrno("create", err)
	}
	if s := c.stream; s != nil {
		if !c.fsys.room(int64(len(s.buf))) {
			st.remove(c.fsys)
			return syscall.ENOSPC
		}
		if c.dirty {
			st.markDirty(c.fsys, c.file.key)
		}
		if _, err := st.f.WriteAt(s.buf, 0); err != nil {
			st.remove(c.fsys)
			return c.localErrno("write", err)
		}
		c.putBuf(s.buf)
		c.stream = nil
	}
	if err := st.f.Truncate(c.size); err != nil {
		st.remove(c.fsys)
		return c.localErrno("truncate", err)
	}
	c.stage = st
	st.recharge(c.fsys)
	return 0
}

// readLocked fills dest with the content at off; fewer bytes only at its
// end.
func (c *content) readLocked(ctx context.Context, dest []byte, off int64) (int, error) {
	if off >= c.size {
		return 0, nil
	}
	end := min(off+int64(len(dest)), c.size)
	dest = dest[:end-off]
	var done int
	// Below baseLimit: valid extents from the file, the rest from the base.
	if off < c.baseLimit {
		err := c.valid.walk(off, min(end, c.baseLimit), func(a, b int64, in bool) error {
			part := dest[a-off : b-off]
			if in {
				_, err := c.stage.f.ReadAt(part, a)
				return err
			}
			return c.readBase(ctx, part, a)
		})
		if err != nil {
			return 0, err
		}
		done = int(min(end, c.baseLimit) - off)
	}
	if end > c.baseLimit {
		from := max(off, c.baseLimit)
		if _, err := c.stage.f.ReadAt(dest[from-off:], from); err != nil && err != io.EOF {
			return 0, err
		}
		done = len(dest)
	}
	return done, nil
}

// readBase fills p with the base object's bytes at off, through the block
// cache.
func (c *content) readBase(ctx context.Context, p []byte, off int64) error {
	if c.baseReader == nil {
		c.baseReader = newReader(c.fsys, c.baseKey, c.baseETag, c.baseLimit)
	}
	for len(p) > 0 {
		res, en := c.baseReader.read(ctx, p, off)
		if en != 0 {
			return fmt.Errorf("reading %s at %d: %w", c.baseKey, off, en)
		}
		b, _ := res.Bytes(p)
		n := copy(p, b)
		res.Done()
		if n == 0 {
			return fmt.Errorf("reading %s at %d: %w", c.baseKey, off, io.ErrUnexpectedEOF)
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// read is a read(2) through a handle while the content is open: reading
// back a stream stages it.
func (c *content) read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if off >= c.size {
		return fuse.ReadResultData(nil), 0
	}
	if c.stage == nil && c.stream == nil {
		// Clean: the base object as it is.
		end := min(off+int64(len(dest)), c.size)
		if err := c.readBase(ctx, dest[:end-off], off); err != nil {
			c.fsys.log.Error("read of a file open for writing failed", "key", c.file.key, "offset", off, "err", err)
			return nil, readErrno(err)
		}
		return fuse.ReadResultData(dest[:end-off]), 0
	}
	if c.stage == nil {
		if s := c.stream; s != nil && s.uploadID == "" {
			// A stream still in memory: serve it from the buffer.
			end := min(off+int64(len(dest)), int64(len(s.buf)))
			return fuse.ReadResultData(append(dest[:0], s.buf[off:end]...)), 0
		}
		if en := c.stageLocked(ctx); en != 0 {
			return nil, en
		}
	}
	n, err := c.readLocked(ctx, dest, off)
	if err != nil {
		c.fsys.log.Error("read of a file being written failed", "key", c.file.key, "offset", off, "err", err)
		return nil, readErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// readErrno maps a failure reading base bytes: the object changed (ESTALE),
// or an S3 or local failure.
func readErrno(err error) syscall.Errno {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return errno(err)
}

// commitStagedLocked uploads a staged content.
func (c *content) commitStagedLocked(ctx context.Context) syscall.Errno {
	key, opt := c.key(), c.conditionsLocked()
	meta := c.uploadMeta()
	var etag string
	var err error
	if c.size <= c.fsys.cfg.PartSize {
		buf := make([]byte, c.size)
		if _, err = c.readLocked(ctx, buf, 0); err == nil {
			opt.Meta = meta
			etag, err = c.fsys.client.Put(ctx, key, buf, opt)
		}
	} else {
		etag, err = c.uploadStagedLocked(ctx, key, meta, opt)
	}
	if err != nil {
		c.fsys.log.Error("upload failed: the file is not in S3 (the staged bytes are kept)", "key", key,
			"size", c.size, "err", err)
		return commitErrno(err, opt)
	}
	c.afterCommitLocked(ctx, key, etag)
	return 0
}

// uploadStagedLocked sends a staged content as a multipart upload: parts
// that are wholly unchanged base bytes are copied inside S3
// (UploadPartCopy), the others read and uploaded, UploadConcurrency at a
// time.
func (c *content) uploadStagedLocked(ctx context.Context, key string, meta map[string]string, opt s3backend.PutOptions) (string, error) {
	id, err := c.fsys.client.CreateMultipart(ctx, key, meta)
	if err != nil {
		return "", err
	}
	journal := c.fsys.journalUpload(key, id)
	defer unjournal(journal) // completed, or aborted below
	type span struct{ off, n int64 }
	var spans []span
	for num, off := int32(1), int64(0); off < c.size; num++ {
		n := min(c.partSize(num), c.size-off)
		spans = append(spans, span{off, n})
		off += n
	}
	parts := make([]s3backend.Part, len(spans))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.fsys.cfg.UploadConcurrency)
	var readMu sync.Mutex // readLocked's base reader is not for concurrent use
	for i, sp := range spans {
		num := int32(i + 1)
		copyable := sp.off+sp.n <= c.baseLimit && !c.valid.overlaps(sp.off, sp.off+sp.n) &&
			(sp.n >= minPartSize || sp.off+sp.n == c.size)
		g.Go(func() error {
			var etag string
			var err error
			if copyable {
				etag, err = c.fsys.client.UploadPartCopy(gctx, key, id, num, c.baseKey, c.baseETag, sp.off, sp.n)
			} else {
				buf := make([]byte, sp.n)
				readMu.Lock()
				_, err = c.readLocked(gctx, buf, sp.off)
				readMu.Unlock()
				if err == nil {
					etag, err = c.fsys.client.UploadPart(gctx, key, id, num, buf)
				}
			}
			parts[i] = s3backend.Part{Number: num, ETag: etag}
			return err
		})
	}
	if err = g.Wait(); err == nil {
		var etag string
		if etag, err = c.fsys.client.CompleteMultipart(ctx, key, id, parts, opt); err == nil {
			return etag, nil
		}
	}
	if aerr := c.fsys.client.AbortMultipart(context.WithoutCancel(ctx), key, id); aerr != nil {
		c.fsys.log.Warn("abort of multipart upload failed; S3 keeps its parts until a lifecycle rule removes them",
			"key", key, "upload_id", id, "err", aerr)
	}
	return "", err
}

// renamed follows a rename of the file: the base object moved to key with
// etag ("" when no object was copied, e.g. a file not yet uploaded).
func (c *content) renamed(key, etag string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.created = false
	c.condETag = etag
	if etag != "" {
		c.baseKey, c.baseETag = key, etag
		if c.baseReader != nil {
			c.baseReader.close()
			c.baseReader = nil
		}
	}
}

// release drops one writable handle (bypass: it wrote around the page
// cache, handle.bypass); the last one commits and frees the content. A
// final commit that fails keeps the staged bytes under
// <cache-dir>/recovery.
func (c *content) release(ctx context.Context, bypass bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !bypass {
		c.cachedHandles--
	}
	c.handles--
	if c.handles > 0 {
		return
	}
	c.closed = true
	en := c.commitLocked(ctx)
	if en != 0 {
		c.keepLocked(ctx, en)
	}
	if s := c.stream; s != nil && s.buf != nil {
		c.putBuf(s.buf)
		s.buf = nil
	}
	if c.stage != nil {
		c.stage.remove(c.fsys)
		c.stage = nil
	}
	if c.baseReader != nil {
		c.baseReader.close()
		c.baseReader = nil
	}
	if c.fsys.cfg.Copies.Enabled() {
		// Detached once go-fuse is done with the release
		// (passthrough.go, afterRelease).
		whenReleased(ctx, func() { c.file.contentClosed(c) })
	} else {
		c.file.contentClosed(c)
	}
}

// keepLocked saves what can be saved of a content whose last commit failed.
func (c *content) keepLocked(ctx context.Context, en syscall.Errno) {
	key := c.key()
	info := recoveryInfo{Bucket: c.fsys.client.Bucket(), Key: key, Size: c.size, Failed: time.Now(),
		Error: en.Error(), BaseETag: c.baseETag}
	if c.stage == nil {
		s := c.stream
		if s == nil || s.nextPart > 1 || s.buf == nil && c.size > 0 {
			// Parts were sent: S3 had them, the buffer holds only the tail.
			c.fsys.log.Error("close: the upload failed and its bytes were streamed, not kept: the file is lost",
				"key", key, "size", c.size)
			return
		}
		st, err := c.fsys.newStageFile(key)
		if err != nil {
			c.fsys.log.Error("close: the upload failed and its bytes could not be kept", "key", key, "err", err)
			return
		}
		if _, err := st.f.WriteAt(s.buf, 0); err != nil {
			st.remove(c.fsys)
			c.fsys.log.Error("close: the upload failed and its bytes could not be kept", "key", key, "err", err)
			return
		}
		c.stage, c.baseLimit = st, 0
	}
	// Fill what the program did not write from the base, where S3 answers.
	_ = c.valid.walk(0, c.baseLimit, func(a, b int64, in bool) error {
		if in {
			return nil
		}
		buf := make([]byte, min(b-a, 64<<20))
		for p := a; p < b; p += int64(len(buf)) {
			n := min(int64(len(buf)), b-p)
			if err := c.readBase(ctx, buf[:n], p); err != nil {
				info.Missing = append(info.Missing, [2]int64{p, b})
				return nil
			}
			if _, err := c.stage.f.WriteAt(buf[:n], p); err != nil {
				info.Missing = append(info.Missing, [2]int64{p, b})
				return nil
			}
		}
		return nil
	})
	path, err := c.stage.keep(c.fsys, info)
	if err != nil {
		c.fsys.log.Error("close: the upload failed and moving its bytes to the recovery directory failed",
			"key", key, "path", path, "err", err)
		return
	}
	c.stage = nil
	c.fsys.log.Error("close: the upload failed; the file's bytes are kept for recovery", "key", key,
		"path", path, "size", c.size, "missing_ranges", len(info.Missing))
}

// handle is an open file: a reader, a writer (the file's content), or both
// (O_RDWR).
type handle struct {
	mu sync.Mutex // guards r and retired (a read-only handle follows local commits)
	r  *reader
	// retired are readers of older versions this handle read before it
	// followed a local commit; closed at release.
	retired []*reader
	c       *content
	file    *File
	// appends: opened with O_APPEND. Each write lands at the content's
	// end, whatever offset the kernel computed from its cached i_size
	// (which a short read of an older version, or a change made
	// elsewhere, can leave behind the file's real size): open(2) says
	// O_APPEND writes go at the end of the file.
	appends bool
	// pt: a passthrough handle, counted in file.ptOpen (passthrough.go).
	pt bool
	// bypass: its writes do not go through the kernel page cache
	// (FOPEN_DIRECT_IO: write-only and passthrough handles).
	bypass bool
}

var (
	_ gofs.FileReader   = (*handle)(nil)
	_ gofs.FileWriter   = (*handle)(nil)
	_ gofs.FileFlusher  = (*handle)(nil)
	_ gofs.FileFsyncer  = (*handle)(nil)
	_ gofs.FileReleaser = (*handle)(nil)
)

// Read implements read(2): while the file is open for writing, every
// handle reads the content as written (as with a local file, every
// descriptor sees the writes); else a handle reads the object it opened.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h.c != nil {
		return h.c.read(ctx, dest, off)
	}
	if c := h.file.openContent(); c != nil {
		return c.read(ctx, dest, off)
	}
	h.mu.Lock()
	r := h.file.followLocal(h.r)
	if r != h.r {
		h.retired = append(h.retired, h.r)
		h.r = r
	}
	h.mu.Unlock()
	if r == nil {
		return nil, syscall.EBADF
	}
	return r.read(ctx, dest, off)
}

// Write implements write(2); see the write path above.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if h.c == nil {
		return 0, syscall.EBADF
	}
	if h.bypass {
		h.c.bypassed.Store(true)
	}
	if h.appends {
		return h.c.append(uninterruptible(ctx), data, off)
	}
	return h.c.write(uninterruptible(ctx), data, off)
}

// Flush implements the FLUSH of every close(2): it commits.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	if h.c == nil {
		return 0
	}
	return h.c.commit(context.WithoutCancel(ctx))
}

// Fsync implements fsync(2): the data is in S3 when it returns 0.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if h.c == nil {
		return 0
	}
	return h.c.commit(context.WithoutCancel(ctx))
}

// Release implements the last close of the handle.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	if h.c != nil {
		ctx := context.WithoutCancel(ctx)
		h.c.release(ctx, h.bypass)
		// A chmod/chown/utimes that no upload carried (one made after
		// a multipart upload began) is stored now.
		h.file.flushMeta(ctx)
	}
	h.mu.Lock()
	r, retired := h.r, h.retired
	h.mu.Unlock()
	if h.pt {
		h.file.ptClosed()
	}
	for _, old := range retired {
		old.close()
	}
	if r != nil {
		r.close()
		if h.c == nil {
			if h.file.fsys.cfg.Copies.Enabled() {
				// Counted out once go-fuse is done with the release
				// (passthrough.go, afterRelease).
				whenReleased(ctx, func() { h.file.readerClosed(r.etag) })
			} else {
				h.file.readerClosed(r.etag)
			}
		}
	}
	return 0
}

// cleanStaging moves staging files left by mounts that died (their pid is
// gone) to the recovery directory, and logs each.
func (fs *FS) cleanStaging() {
	dir := fs.cfg.CacheDir + "/staging"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		var pid, seq int
		if _, err := fmt.Sscanf(e.Name(), "%d-%d", &pid, &seq); err != nil || fmt.Sprintf("%d-%d", pid, seq) != e.Name() {
			continue
		}
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		path := dir + "/" + e.Name()
		if _, err := os.Stat(path + ".json"); err != nil {
			os.Remove(path) // clean: its bytes were committed
			continue
		}
		rdir := fs.cfg.CacheDir + "/recovery"
		_ = os.MkdirAll(rdir, 0o700)
		dst := rdir + "/" + time.Now().UTC().Format("20060102T150405Z") + "-crashed-" + e.Name()
		if err := os.Rename(path, dst); err == nil {
			_ = os.Rename(path+".json", dst+".json")
			fs.log.Warn("a staging file left by a mount that stopped is kept for recovery", "path", dst,
				"sidecar", dst+".json")
		}
	}
}
