package fs

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend"
)

// File is a regular file: one object, or one being written.
type File struct {
	gofs.Inode
	fsys *FS

	mu       sync.Mutex
	key      string         // guarded by mu; changes on rename
	size     int64          // guarded by mu; bytes, as last seen in S3
	etag     string         // guarded by mu; "" until the object exists
	mtime    time.Time      // guarded by mu
	fetched  time.Time      // guarded by mu; when size/etag were last learned
	openETag string         // guarded by mu; ETag the kernel page cache holds
	readers  map[string]int // guarded by mu; open read handles per ETag
	writer   *writer        // guarded by mu; the open writable handle, if any
	unlinked bool           // guarded by mu
	attr     fileAttrs      // guarded by mu; see attr.go
}

var _ gofs.InodeEmbedder = (*File)(nil)

func newFile(fsys *FS, key string, st cache.Stat) *File {
	f := &File{fsys: fsys, key: key, size: st.Size, etag: st.ETag, mtime: st.MTime, fetched: time.Now(),
		readers: map[string]int{}}
	f.attr.fromStat(st)
	return f
}

// update takes in what a lookup or listing learned, unless a writer is
// the fresher source.
func (f *File) update(st cache.Stat) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.writer != nil {
		return
	}
	f.size, f.etag, f.mtime, f.fetched = st.Size, st.ETag, st.MTime, time.Now()
	f.attr.fromStat(st)
}

// pending reports whether the file exists only in this mount so far (a
// create whose upload has not been committed).
func (f *File) pending() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writer != nil && f.etag == "" && !f.unlinked
}

// writing reports whether a writable handle is open.
func (f *File) writing() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writer != nil
}

// markUnlinked records an unlink. It reports true when the file was never
// uploaded, so that there is nothing to delete in S3.
func (f *File) markUnlinked() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unlinked = true
	return f.writer != nil && f.etag == ""
}

// renamed records a completed rename.
func (f *File) renamed(key, etag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.key = key
	if etag != "" {
		f.etag = etag
	}
}

// committed records an upload that completed. It reports whether the file
// was unlinked meanwhile (the caller then deletes the object). The kernel's
// cached attributes and pages of the file are dropped, since other handles
// may have cached the size or bytes of what was there before.
func (f *File) committed(size int64, etag string, mtime time.Time) (unlinked bool) {
	f.mu.Lock()
	f.size, f.etag, f.mtime, f.fetched = size, etag, mtime, time.Now()
	f.attr.committed()
	key, unlinked := f.key, f.unlinked
	f.mu.Unlock()
	if !unlinked {
		f.fsys.meta.Put(key, cache.Stat{Kind: cache.File, Size: size, ETag: etag, MTime: mtime})
	}
	// Asynchronously: a notification waits for page locks that a read in
	// flight on this inode may hold.
	go f.NotifyContent(0, 0)
	return unlinked
}

var _ gofs.NodeGetattrer = (*File)(nil)

// Getattr implements FUSE GETATTR: from the node while its facts are
// younger than the metadata TTL, else from the cache or a HEAD. ENOENT when
// the object is gone; other failures keep the last known attributes.
func (f *File) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	f.mu.Lock()
	stale := f.writer == nil && !f.unlinked && time.Since(f.fetched) >= f.fsys.meta.TTL()
	key := f.key
	f.mu.Unlock()
	if stale {
		st, err := f.fsys.stat(ctx, key, parentOf(key))
		switch {
		case err == nil && st.Kind == cache.File:
			f.update(st)
		case errors.Is(err, s3backend.ErrNotFound) && fh != nil:
			// fstat(2) of a file deleted elsewhere while open: like a
			// local file, it keeps its last attributes.
		case errors.Is(err, s3backend.ErrNotFound):
			return syscall.ENOENT
		case err != nil:
			f.fsys.log.Warn("getattr: keeping last known attributes", "key", key, "err", err)
		}
	}
	f.fillAttr(&out.Attr)
	return 0
}

func (f *File) truncate(ctx context.Context, fh gofs.FileHandle, size int64) syscall.Errno {
	w, _ := fh.(*handle)
	f.mu.Lock()
	cur, key := f.size, f.key
	var wr *writer
	if w != nil && w.w != nil {
		wr = w.w
	} else if f.writer != nil {
		wr = f.writer
	}
	f.mu.Unlock()
	if wr != nil {
		return wr.truncate(size)
	}
	if size == cur {
		return 0
	}
	if size != 0 {
		return syscall.ENOTSUP
	}
	f.mu.Lock()
	meta := f.uploadMetaLocked()
	f.mu.Unlock()
	etag, err := f.fsys.client.Put(ctx, key, nil, s3backend.PutOptions{Meta: meta})
	if err != nil {
		return errno(err)
	}
	f.committed(0, etag, time.Now())
	return 0
}

var _ gofs.NodeOpener = (*File)(nil)

// Open implements open(2) of an existing file. Read-only opens read the
// object as it is now (its ETag is pinned: a change in S3 gives ESTALE).
// Writable opens give a handle that can rewrite the file from empty
// (O_TRUNC, or a file of size 0); see write.go for what it refuses.
func (f *File) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		f.mu.Lock()
		h := &handle{r: f.newReaderLocked(), file: f}
		fl := f.cacheFlagsLocked(h.r.etag)
		f.readers[h.r.etag]++
		f.mu.Unlock()
		return h, fl, 0
	}
	if f.fsys.cfg.ReadOnly {
		return nil, 0, syscall.EROFS
	}
	h, en := f.openWriter(flags, false)
	if en != 0 {
		return nil, 0, en
	}
	return h, 0, 0
}

// cacheFlagsLocked chooses how the kernel page cache serves a handle
// reading version etag. Same version as the cache holds: FOPEN_KEEP_CACHE,
// so a re-read of an unchanged file is served by the kernel. Another
// version while handles of the cached one are still open: FOPEN_DIRECT_IO
// with KEEP_CACHE, so the new handle bypasses the cache and the old ones
// keep their version's pages (a reader never sees two versions mixed).
// Otherwise 0: the kernel drops the old pages and caches this version.
func (f *File) cacheFlagsLocked(etag string) uint32 {
	switch {
	case etag != "" && f.openETag == etag:
		return fuse.FOPEN_KEEP_CACHE
	case f.openETag != "" && f.readers[f.openETag] > 0:
		return fuse.FOPEN_DIRECT_IO | fuse.FOPEN_KEEP_CACHE
	}
	f.openETag = etag
	return 0
}

// readerClosed counts a read handle of version etag out.
func (f *File) readerClosed(etag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readers[etag]--; f.readers[etag] <= 0 {
		delete(f.readers, etag)
	}
}

// openWriter attaches a writable handle. created is true for O_CREAT of a
// new name, whose empty object must reach S3 even if nothing is written.
func (f *File) openWriter(flags uint32, created bool) (*handle, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.writer != nil {
		return nil, syscall.EBUSY
	}
	w := newWriter(f, f.size, created)
	f.writer = w
	f.openETag = ""
	h := &handle{w: w}
	if flags&syscall.O_ACCMODE == syscall.O_RDWR {
		h.r = f.newReaderLocked()
	}
	return h, 0
}

// writerClosed detaches w once its handle is released.
func (f *File) writerClosed(w *writer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.writer == w {
		f.writer = nil
	}
}

func (f *File) newReaderLocked() *reader {
	return newReader(f.fsys, f.key, f.etag, f.size)
}
