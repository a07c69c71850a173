package fs

import (
	"context"
	"errors"
	"strings"
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

	mu      sync.Mutex
	key     string    // guarded by mu; changes on rename
	size    int64     // guarded by mu; bytes, as last seen in S3
	etag    string    // guarded by mu; "" until the object exists
	mtime   time.Time // guarded by mu
	fetched time.Time // guarded by mu; when size/etag were last learned
	// drops counts the drops of the kernel's pages of the file under
	// way (dropPagesLocked, dropPagesAsyncLocked); dropDone is closed
	// when it falls back to 0. Opens wait for them.
	drops    int           // guarded by mu
	dropDone chan struct{} // guarded by mu
	// changed is when this mount last made a version of the object (a
	// commit, a metadata rewrite, a rename): an answer to a request sent
	// before it may describe the version before, and is not taken in.
	changed  time.Time // guarded by mu
	openETag string    // guarded by mu; ETag the kernel page cache holds
	// localETag is the ETag of the last version this mount made (an
	// upload or a metadata rewrite): read-only handles follow it.
	localETag string         // guarded by mu
	readers   map[string]int // guarded by mu; open read-only handles per ETag
	content   *content       // guarded by mu; while writable handles are open (write.go)
	unlinked  bool           // guarded by mu
	// deleteOnClose: unlinked while open; the object is deleted when the
	// last handle closes, so open handles keep reading it (unlink(2)).
	deleteOnClose bool      // guarded by mu
	attr          fileAttrs // guarded by mu; see attr.go
	// deleting is closed when the delete of an object unlinked while
	// open, started at its last close, has ended.
	deleting chan struct{} // guarded by mu

	// ptOpen counts the open passthrough handles, ptFd is the File's
	// descriptor of the copy they read, -1 when none (passthrough.go).
	ptOpen int         // guarded by mu
	ptFd   int         // guarded by mu
	ptCopy *cache.Copy // guarded by mu; the copy ptFd is a descriptor of, held (Copies.Dup)
}

var _ gofs.InodeEmbedder = (*File)(nil)

func newFile(fsys *FS, key string, st cache.Stat) *File {
	f := &File{fsys: fsys, key: key, size: st.Size, etag: st.ETag, mtime: st.MTime, fetched: time.Now(),
		readers: map[string]int{}, ptFd: -1}
	f.attr.fromStat(st)
	return f
}

// update takes in what a lookup or listing learned, unless a writer is
// the fresher source.
func (f *File) update(st cache.Stat) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.content != nil {
		return
	}
	if f.ptOpen > 0 {
		// The kernel reads the version of the passthrough handles'
		// copy, and so does every open until they close
		// (passthrough.go): stat must not show another's size, or
		// tail(1) and mmap would read past that copy's end.
		return
	}
	if !st.Seen.IsZero() && st.Seen.Before(f.changed) {
		// Asked before this mount's last change of the object: it
		// may be the version before (a HEAD crossing a commit). Taken
		// in, the next writer would start from it and fail with
		// ESTALE, and readers would read it.
		return
	}
	elsewhere := f.etag != "" && st.ETag != "" && st.ETag != f.etag
	f.size, f.etag, f.mtime, f.fetched = st.Size, st.ETag, st.MTime, time.Now()
	f.attr.fromStat(st)
	if elsewhere {
		// Changed elsewhere: the kernel's pages are of the version
		// before. The kernel drops them itself when the reply shows
		// another size or mtime (FUSE_AUTO_INVAL_DATA), not when a
		// rewrite kept both (within the same second). No writable
		// handle is open here, so none races the drop.
		// Asynchronously (the caller answers a GETATTR or LOOKUP);
		// opens wait for it.
		f.dropPagesAsyncLocked()
	}
}

// pending reports whether the file exists only in this mount so far (a
// create whose upload has not been committed).
func (f *File) pending() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.content != nil && f.etag == "" && !f.unlinked
}

// writing reports whether a writable handle is open.
func (f *File) writing() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.content != nil
}

// markUnlinked records an unlink. It reports true when nothing is to be
// deleted in S3 now: the file was never uploaded, or handles are open (the
// object is then deleted when the last one closes).
func (f *File) markUnlinked() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unlinked = true
	if f.content != nil && f.etag == "" {
		return true
	}
	if f.content != nil || len(f.readers) > 0 {
		f.deleteOnClose = true
		f.fsys.pendingDeletes.Store(f.key, f)
		return true
	}
	return false
}

// claimKey cancels the pending delete of a file unlinked while open under
// key (its object is deleted at its last close), because key is being
// written again. It reports whether there was one.
func (fs *FS) claimKey(key string) bool {
	v, ok := fs.pendingDeletes.Load(key)
	if !ok {
		return false
	}
	f := v.(*File)
	f.mu.Lock()
	done := f.deleting
	if done == nil {
		f.deleteOnClose = false
		fs.pendingDeletes.CompareAndDelete(key, f)
	}
	f.mu.Unlock()
	if done != nil {
		<-done // the delete is under way: let it finish first
	}
	return true
}

// deleteWait bounds how long rmdir(2) and a rename over a directory wait
// for the objects of files unlinked while open to go (awaitDeletes).
const deleteWait = 2 * time.Second

// awaitDeletes waits until no file under prefix ("" for every key) that
// was unlinked while open still has its object: one is deleted at the
// file's last close, and close(2) returns before the kernel's RELEASE
// arrives, so `echo x > d/f; rm d/f; rmdir d` would otherwise see d/f in
// the listing and fail with ENOTEMPTY. It gives up after deleteWait (a
// process still holding such a file open keeps its object until it
// closes it) or when ctx ends.
func (fs *FS) awaitDeletes(ctx context.Context, prefix string) {
	deadline := time.Now().Add(deleteWait)
	for {
		pending := false
		fs.pendingDeletes.Range(func(k, _ any) bool {
			pending = strings.HasPrefix(k.(string), prefix)
			return !pending
		})
		if !pending || time.Now().After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// markReplaced records that a rename put another file at this one's key:
// like an unlinked file it is never uploaded again, but its key now holds
// the renamed object, which nothing here may delete.
func (f *File) markReplaced() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unlinked = true
	f.deleteOnClose = false
}

// renamed records a completed rename: the file is key now, and its object
// (if one was copied) has etag.
func (f *File) renamed(key, etag string) {
	f.mu.Lock()
	f.key = key
	if etag != "" {
		f.etag = etag
	}
	f.changed = time.Now()
	c := f.content
	f.mu.Unlock()
	if c != nil {
		c.renamed(key, etag)
	}
}

// openContent returns the content while the file is open for writing, for
// reads of read-only handles.
func (f *File) openContent() *content {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.content
}

// closedLocked runs after a handle closed: the last one deletes an object
// unlinked while open.
func (f *File) closedLocked() {
	if !f.deleteOnClose || f.content != nil || len(f.readers) > 0 {
		return
	}
	f.deleteOnClose = false
	key := f.key
	if v, ok := f.fsys.pendingDeletes.Load(key); !ok || v != f {
		return // the name was created again meanwhile (claimKey)
	}
	done := make(chan struct{})
	f.deleting = done
	go func() {
		defer close(done)
		defer f.fsys.pendingDeletes.CompareAndDelete(key, f)
		if err := f.fsys.client.Delete(context.Background(), key); err != nil {
			f.fsys.log.Error("a file unlinked while open could not be deleted at its last close", "key", key, "err", err)
		}
	}()
}

// committed records an upload that completed. It reports whether the file
// was unlinked meanwhile (the caller then deletes the object). With
// bypassed (bytes were written around the kernel page cache, by a
// FOPEN_DIRECT_IO or passthrough handle, and no handle writing through
// the page cache is open, whose writes a drop would race), the pages the
// kernel cached of the file are dropped, since they may hold what was
// there before. Otherwise they stay until the last writable handle is
// released (contentClosed).
func (f *File) committed(size int64, etag string, mtime time.Time, bypassed bool) (unlinked bool) {
	f.mu.Lock()
	f.size, f.etag, f.mtime, f.fetched = size, etag, mtime, time.Now()
	f.changed = f.fetched
	f.localETag = etag
	f.attr.committed()
	key, unlinked := f.key, f.unlinked
	if bypassed {
		// Asynchronously: the drop waits for page locks that a read in
		// flight on this inode may hold, and such a read may wait for
		// the content, which the caller holds. Opens wait for it.
		f.dropPagesAsyncLocked()
	}
	f.mu.Unlock()
	if !unlinked {
		f.fsys.meta.Put(key, cache.Stat{Kind: cache.File, Size: size, ETag: etag, MTime: mtime})
	}
	return unlinked
}

var _ gofs.NodeGetattrer = (*File)(nil)

// Getattr implements FUSE GETATTR: from the node while its facts are
// younger than the metadata TTL, else from the cache or a HEAD. ENOENT when
// the object is gone; other failures keep the last known attributes.
func (f *File) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	f.mu.Lock()
	stale := f.content == nil && !f.unlinked && time.Since(f.fetched) >= f.fsys.meta.TTL()
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
	if pt, ok := fh.(*ptHandle); ok {
		fh = pt.handle
	}
	if h, ok := fh.(*handle); ok && h.c != nil {
		return h.c.truncate(ctx, size)
	}
	// truncate(2), or ftruncate of a read-only descriptor (which the
	// kernel refuses first): open, truncate, commit, close. Unchanged
	// sizes cost nothing.
	h, en := f.openWriter(syscall.O_WRONLY, false)
	if en != 0 {
		return en
	}
	en = h.c.truncate(ctx, size)
	if en == 0 {
		en = h.c.commit(ctx)
	}
	h.Release(ctx)
	return en
}

var _ gofs.NodeOpener = (*File)(nil)

// Open implements open(2) of an existing file. Read-only opens read the
// object as it is now (its ETag is pinned: a change in S3 gives ESTALE).
// Writable opens share the file's content (write.go); O_TRUNC empties it.
func (f *File) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.waitDropLocked()
		h := &handle{r: f.newReaderLocked(), file: f}
		h.r.file = f
		f.readers[h.r.etag]++
		if pt := f.passthroughLocked(h, h.r.etag, flags); pt != nil {
			if flags&syscall.O_DIRECT != 0 {
				// Only while other passthrough handles are open
				// (passthroughLocked): its reads come here, at any
				// alignment, instead of going to the copy's file
				// system, which would refuse unaligned ones.
				return pt, fuse.FOPEN_DIRECT_IO, 0
			}
			return pt, 0, 0
		}
		return h, f.cacheFlagsLocked(h.r.etag), 0
	}
	if f.fsys.cfg.ReadOnly {
		return nil, 0, syscall.EROFS
	}
	h, en := f.openWriter(flags, false)
	if en != 0 {
		return nil, 0, en
	}
	if flags&syscall.O_TRUNC != 0 {
		if en := h.c.truncate(uninterruptible(ctx), 0); en != 0 {
			h.Release(ctx)
			return nil, 0, en
		}
	}
	if h.pt {
		// Passthrough handles are open (passthrough.go): this one
		// must be one too, on their file, with its reads and writes
		// sent here (FOPEN_DIRECT_IO; ptContentLocked).
		f.mu.Lock()
		fd := f.ptFd
		f.mu.Unlock()
		return &ptHandle{handle: h, fd: fd}, fuse.FOPEN_DIRECT_IO, 0
	}
	return h, writerFlags(flags), 0
}

// writerFlags are the FOPEN flags of a writable handle. FOPEN_KEEP_CACHE:
// the kernel's pages of the file are the content's bytes (openWriter
// dropped any others before the content began). A write-only one
// (O_WRONLY: cp, tar, dd of=, shell redirections) gets FOPEN_DIRECT_IO:
// the kernel hands each write(2) to the daemon straight from the
// program's buffer instead of first copying it into page-cache pages of
// the file (fuse_perform_write), pages that nothing reads back through a
// write-only descriptor. That is one copy less per byte and no page cache
// filled with what is being uploaded. Such a descriptor cannot be mmapped
// (mmap(2) needs read access), so losing mmap costs nothing. O_RDWR keeps
// the page cache: it may be mmapped, and reads of it are cached.
func writerFlags(flags uint32) uint32 {
	if flags&syscall.O_ACCMODE == syscall.O_WRONLY {
		return fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_DIRECT_IO
	}
	return fuse.FOPEN_KEEP_CACHE
}

// waitDropLocked returns once no drop of the file's pages is under way
// (dropPagesLocked). f.mu is held, and released while it waits.
func (f *File) waitDropLocked() {
	for f.drops > 0 {
		ch := f.dropDone
		f.mu.Unlock()
		<-ch
		f.mu.Lock()
	}
}

// beginDropLocked counts a drop in; endDropLocked counts it out. f.mu is
// held.
func (f *File) beginDropLocked() {
	if f.drops == 0 {
		f.dropDone = make(chan struct{})
	}
	f.drops++
}

func (f *File) endDropLocked() {
	if f.drops--; f.drops == 0 {
		close(f.dropDone)
	}
}

// dropPagesAsyncLocked starts a drop of the kernel's pages of the file
// that opens wait for (waitDropLocked) and returns at once. f.mu is held.
func (f *File) dropPagesAsyncLocked() {
	f.beginDropLocked()
	go func() {
		f.notifyDrop()
		f.mu.Lock()
		f.endDropLocked()
		f.mu.Unlock()
	}()
}

// notifyDrop asks the kernel to drop its pages of the file and returns
// when they are gone.
func (f *File) notifyDrop() {
	if st := f.NotifyContent(0, 0); st != 0 && st != syscall.ENOENT {
		f.fsys.log.Debug("dropping the kernel's pages of a file failed", "errno", st)
	}
}

// dropPagesLocked drops the kernel's pages of the file and returns once
// they are gone (FUSE_NOTIFY_INVAL_INODE; the kernel answers the
// notification after invalidate_inode_pages2_range). f.mu is held, and
// released during the drop; opens wait for it (waitDropLocked).
//
// Opens never leave the drop to the kernel (an open reply without
// FOPEN_KEEP_CACHE, see fuse_open): the kernel drops the pages after the
// reply, when a writer opened meanwhile may be writing, and a drop races
// a write on its way: the kernel copies a write(2) into the pages, unlocks
// the ones it filled and only then sends the WRITE (fuse_perform_write),
// so a read that comes in between caches the old bytes for good.
func (f *File) dropPagesLocked() {
	f.beginDropLocked()
	f.mu.Unlock()
	f.notifyDrop()
	f.mu.Lock()
	f.endDropLocked()
}

// cacheFlagsLocked chooses how the kernel page cache serves a handle
// reading version etag. While the file is open for writing, every handle
// reads the content and the pages hold its bytes: FOPEN_KEEP_CACHE. Same
// version as the cache holds: FOPEN_KEEP_CACHE, so a re-read of an
// unchanged file is served by the kernel. Another version while handles
// of the cached one are still open: FOPEN_DIRECT_IO with KEEP_CACHE, so
// the new handle bypasses the cache and the old ones keep their version's
// pages (a reader never sees two versions mixed). Otherwise the old pages
// are dropped (dropPagesLocked, which releases f.mu meanwhile) and the
// kernel caches this version: FOPEN_KEEP_CACHE.
func (f *File) cacheFlagsLocked(etag string) uint32 {
	switch {
	case f.content != nil:
		return fuse.FOPEN_KEEP_CACHE
	case etag != "" && f.openETag == etag:
		return fuse.FOPEN_KEEP_CACHE
	case f.openETag != "" && f.readers[f.openETag] > 0:
		return fuse.FOPEN_DIRECT_IO | fuse.FOPEN_KEEP_CACHE
	}
	f.openETag = etag
	f.dropPagesLocked()
	return fuse.FOPEN_KEEP_CACHE
}

// readerClosed counts a read handle of version etag out.
func (f *File) readerClosed(etag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readers[etag]--; f.readers[etag] <= 0 {
		delete(f.readers, etag)
	}
	f.closedLocked()
}

// openWriter attaches a writable handle to the file's content, starting
// one if none is open. created is true for O_CREAT of a new name, whose
// empty object must reach S3 even if nothing is written.
//
// While passthrough handles are open (a local copy, passthrough.go) the
// handle is a passthrough one too (h.pt, counted in f.ptOpen), and so is
// its content (ptContentLocked).
func (f *File) openWriter(flags uint32, created bool) (*handle, syscall.Errno) {
	for {
		f.mu.Lock()
		f.waitDropLocked()
		if f.content == nil && !created && f.ptOpen == 0 && (f.openETag == "" || f.openETag != f.etag) {
			// The kernel may hold pages of another version than the
			// content starts from: they go before any handle of the
			// content can write (dropPagesLocked). A created file's
			// node is new: the kernel has none.
			f.openETag = f.etag
			f.dropPagesLocked()
			f.mu.Unlock()
			continue
		}
		if f.content == nil {
			if f.ptOpen > 0 {
				c, err := f.ptContentLocked(created)
				if err != nil {
					f.mu.Unlock()
					f.fsys.log.Error("open for writing: the local copy open for reading could not be taken over", "key", f.key, "err", err)
					return nil, syscall.EIO
				}
				f.content = c
			} else {
				f.content = newContentLocked(f, created)
			}
			f.openETag = ""
		}
		c := f.content
		pt := c.ptFile != nil
		if pt {
			if f.ptFd < 0 {
				// A closed content whose passthrough handles
				// are all gone: wait for it to be detached.
				f.mu.Unlock()
				time.Sleep(100 * time.Microsecond)
				continue
			}
			// Counted before the content is joined: a content on
			// the copy's file lives only while passthrough handles
			// are open.
			f.ptOpen++
		}
		f.mu.Unlock()
		c.mu.Lock()
		if c.closed {
			// Its last handle was released meanwhile (RELEASE is
			// asynchronous; the content is detached once go-fuse has
			// finished the release): take a new content.
			c.mu.Unlock()
			if pt {
				f.ptClosed()
			}
			time.Sleep(100 * time.Microsecond)
			continue
		}
		bypass := pt || flags&syscall.O_ACCMODE == syscall.O_WRONLY
		c.handles++
		if !bypass {
			c.cachedHandles++
		}
		c.mu.Unlock()
		return &handle{c: c, file: f, appends: flags&syscall.O_APPEND != 0, pt: pt, bypass: bypass}, 0
	}
}

// contentClosed detaches c once its last handle is released. The
// kernel's pages of the file go (opens wait for it): no write can be on
// its way now, and they may hold what a read cached while a rewrite was
// under way (a read between ftruncate(2) and write(2) gets a short reply,
// which the kernel pads with zeros up to the size it knows,
// fuse_short_read), or bytes written around the page cache. The pages
// are then as empty as the version the file is now: later opens of it
// keep them.
func (f *File) contentClosed(c *content) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.content == c {
		f.content = nil
		f.dropPagesAsyncLocked()
		f.openETag = f.etag
	}
	f.closedLocked()
}

func (f *File) newReaderLocked() *reader {
	return newReader(f.fsys, f.key, f.etag, f.size)
}

// followLocal returns the reader a read-only handle reads with: r, or, when
// this mount has committed a newer version of the file since r was opened
// (a writer here closed or fsynced: >>, cp over it, an edit, chmod), a new
// reader of that version. A reader of a local file sees
// what was written through any descriptor (POSIX read(2)); and a read past
// the old version's end must not answer EOF, which the kernel would take
// as the file's size (fuse_short_read) and an O_APPEND writer then as its
// offset. Versions changed elsewhere stay pinned: those reads give ESTALE.
// The caller closes r once no read uses it (at release: reads of the
// handle may be in flight).
func (f *File) followLocal(r *reader) *reader {
	if r == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.localETag == "" || f.etag != f.localETag || r.etag == f.etag || f.unlinked {
		return r
	}
	nr := f.newReaderLocked()
	nr.file = f
	f.readers[nr.etag]++
	if f.readers[r.etag]--; f.readers[r.etag] <= 0 {
		delete(f.readers, r.etag)
	}
	return nr
}
