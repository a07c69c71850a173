package fs

// Local copies and FUSE passthrough.
//
// A read-only handle that reads an object from its first byte (or reads in
// sequence from within its first copyPrefix bytes: the blocks before are
// fetched for the copy, fillCopy) fills a local copy of that version
// (cache.Copies, under --cache-dir, bounded by --copy-cache-size) with
// every block it reads. Once the copy is complete, a later open of the
// same version is a passthrough open: the handle names the copy's file
// (gofs.FilePassthroughFder; go-fuse registers it with
// FUSE_DEV_IOC_BACKING_OPEN) and the kernel reads that file itself, from
// its page cache, with no request to the daemon
// (Documentation/filesystems/fuse/fuse-passthrough.rst; Linux 6.9+, and the
// daemon needs CAP_SYS_ADMIN). The FUSE page cache of a file holds 4 KiB
// folios on the kernels measured, a local ext4 file large ones: a re-read
// from a copy runs at the speed of a local file, and a copy outlives the
// page cache.
//
// The kernel's rules (fs/fuse/iomode.c, fuse_file_io_open): while an inode
// has passthrough opens, every other open of it must be a passthrough open
// of the same backing file (any other fails with EIO), and while it has
// page-cache opens, a passthrough open fails. File decides each open:
//
//   - passthrough opens are open: passthrough again, on the same copy, even
//     if the object has changed since (the new version is read once they
//     are all closed). A writable open then writes into the copy's file,
//     which stops being a copy and becomes the writer's content
//     (ptContentLocked), uploaded whole at flush, fsync and last close;
//   - no handle open (read-only or writable), and a complete copy of the
//     current version: a read-only open is a passthrough one;
//   - otherwise a page-cache open (cacheFlagsLocked, writerFlags).
//
// Since the two kinds never overlap on one inode, go-fuse's count of its
// backing ID (fs/bridge.go: one per node, dropped at every release) is
// exact.

import (
	"context"
	"io"
	"os"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/s3mount/s3mount/cache"
)

// afterRelease holds, per FUSE RELEASE request in progress (its cancel
// channel, unique among requests in flight), what runs once go-fuse has
// finished the release: the count of a page-cache handle (a reader, or a
// writer's content) goes down only after go-fuse has dropped its
// backing-ID reference for the release (fs/bridge.go, Release:
// releaseBackingIDRef after the handle's own Release). Counted down
// earlier, a passthrough open landing in between would be granted, and
// that late drop could then unregister its backing ID while it is open;
// the next passthrough open would register a second backing file for the
// inode, which the kernel refuses (EBUSY: EIO).
var afterRelease sync.Map // <-chan struct{} → *releaseHooks

type releaseHooks struct {
	mu  sync.Mutex
	fns []func()
}

// releaseHookFS runs afterRelease's hooks; Mount wraps go-fuse's raw
// filesystem with it.
type releaseHookFS struct {
	fuse.RawFileSystem
}

// Release implements fuse.RawFileSystem.
func (r releaseHookFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	hooks := &releaseHooks{}
	afterRelease.Store(cancel, hooks)
	r.RawFileSystem.Release(cancel, in)
	afterRelease.Delete(cancel)
	hooks.mu.Lock()
	fns := hooks.fns
	hooks.fns = nil
	hooks.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// whenReleased runs fn after go-fuse has finished the RELEASE request of
// ctx (afterRelease), or now when ctx is not a RELEASE's (a truncate(2)
// that opened the file itself, a test).
func whenReleased(ctx context.Context, fn func()) {
	if fc, ok := ctx.(*fuse.Context); ok && fc.Cancel != nil {
		if v, ok := afterRelease.Load(fc.Cancel); ok {
			hooks := v.(*releaseHooks)
			hooks.mu.Lock()
			hooks.fns = append(hooks.fns, fn)
			hooks.mu.Unlock()
			return
		}
	}
	fn()
}

// ptHandle is a handle whose reads (and writes) the kernel serves from a
// local copy: a read-only one of a complete copy, or a writable one that
// opened while passthrough handles were open (its content's stage is the
// copy's file, ptContentLocked).
type ptHandle struct {
	*handle
	fd int // the File's dup of the copy's file (File.ptFd)
}

var (
	_ gofs.FilePassthroughFder = (*ptHandle)(nil)
	_ gofs.FileReleaser        = (*ptHandle)(nil)
)

// PassthroughFd implements gofs.FilePassthroughFder: go-fuse calls it at
// open when the node has no backing ID yet, and registers the file.
func (h *ptHandle) PassthroughFd() (int, bool) { return h.fd, h.fd >= 0 }

// Release implements FUSE RELEASE (the embedded handle's Release counts
// it out of File.ptOpen).
func (h *ptHandle) Release(ctx context.Context) syscall.Errno {
	return h.handle.Release(ctx)
}

// passthroughLocked returns a passthrough handle for h, a new read-only
// handle of version etag opened with flags (already counted in f.readers),
// or nil when the kernel must serve it from the FUSE page cache (see the
// rules above).
//
// An O_DIRECT open is not made a passthrough one unless it must be: the
// copy's file system would require its offsets and sizes to be aligned
// (ext4: 512 bytes), which FUSE's direct I/O does not.
func (f *File) passthroughLocked(h *handle, etag string, flags uint32) *ptHandle {
	if f.ptOpen > 0 {
		f.ptOpen++
		h.pt = true
		return &ptHandle{handle: h, fd: f.ptFd}
	}
	copies := f.fsys.cfg.Copies
	if !copies.Enabled() || etag == "" || f.content != nil || f.readers[etag] > 1 || len(f.readers) > 1 ||
		flags&syscall.O_DIRECT != 0 {
		return nil
	}
	// The File keeps its own descriptor while passthrough opens are open:
	// the copy may be evicted meanwhile, and go-fuse may ask for it again.
	// One inode at a time holds a copy (Copies.Dup): two inodes of one
	// version (a file renamed, then copied back) must not share a file
	// that a writer of either may turn into its content.
	cp, fd, ok := copies.Dup(cache.CopyKey{Bucket: f.fsys.client.Bucket(), Key: f.key, ETag: etag})
	if !ok {
		return nil
	}
	f.ptOpen, f.ptFd, f.ptCopy = 1, fd, cp
	h.pt = true
	return &ptHandle{handle: h, fd: fd}
}

// ptContentLocked starts the content of a writable open that arrives
// while passthrough handles are open: the kernel takes no other kind of
// open then, so the writer is a passthrough one too, of the copy's file,
// which every open handle reads. The copy stops being a copy of its
// version (Copy.Forget) and becomes the content's stage, uploaded whole
// (PutObject, or a multipart upload past --part-size) at flush, fsync
// and the last close when it changed. The writer's handle also has
// FOPEN_DIRECT_IO, which the kernel obeys before passthrough for read(2)
// and write(2) (fs/fuse/file.c, fuse_file_write_iter): its writes come
// here (content.write, into the stage) as every writer's do, counted
// against --staging-limit and at any alignment (O_DIRECT), and only a
// shared mmap of it writes the file directly (ptRefreshLocked). f.mu is
// held.
func (f *File) ptContentLocked(created bool) (*content, error) {
	fd, err := unix.FcntlInt(uintptr(f.ptFd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	// The file moves to staging/ (a sidecar names it once it holds
	// bytes not in S3, so that a crash leaves it to recover); an evicted
	// copy's file has no name left to move.
	path, err := f.fsys.stagePath()
	if err == nil {
		err = f.ptCopy.MoveTo(path)
	}
	if err != nil {
		f.ptCopy.Forget()
		path = ""
	}
	c := newContentLocked(f, created)
	c.stream = nil
	c.stage = ptStageFile(fd, path)
	c.ptFile = c.stage.f
	c.baseLimit = 0
	c.ptSeen = ptStamp(c.ptFile)
	c.setSizeLocked(c.ptSeen.size)
	c.stage.chargeFrom(c.fsys)
	return c, nil
}

// ptStat is what a passthrough content last saw of its file.
type ptStat struct {
	size  int64
	mtime unix.Timespec
}

// ptStamp returns the size and mtime of a passthrough content's file
// (zero when fstat fails).
func ptStamp(f *os.File) ptStat {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return ptStat{}
	}
	return ptStat{size: st.Size, mtime: st.Mtim}
}

// ptRefreshLocked takes in what was written to a passthrough content's
// file other than through write(2) since it last looked (a shared mmap
// writes the copy's file directly: fs/fuse/passthrough.c): its size, and
// dirty when its size or mtime changed. The file's dirty pages are
// written back first: that write-protects them, so that the next store
// through a mapping faults and moves the mtime (file_update_time in the
// page_mkwrite of ext4, xfs, ...); a page left dirty would take later
// stores without a trace. On a file system with coarse timestamps (ext2,
// or ext4 before Linux 6.13's multigrain timestamps) a store in the same
// tick as this look can still go unseen. c.mu is held.
func (c *content) ptRefreshLocked() {
	if c.ptFile == nil {
		return
	}
	_ = unix.SyncFileRange(int(c.ptFile.Fd()), 0, 0,
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	now := ptStamp(c.ptFile)
	if now != c.ptSeen {
		c.ptSeen = now
		c.dirty = true
		c.setSizeLocked(now.size)
		c.stage.markDirty(c.fsys, c.file.key)
	}
}

// ptClosed counts a passthrough handle out.
func (f *File) ptClosed() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ptOpen--; f.ptOpen == 0 && f.ptFd >= 0 {
		unix.Close(f.ptFd)
		f.ptFd = -1
		f.ptCopy.Return()
		f.ptCopy = nil
	}
}

func (r *reader) copyKey() cache.CopyKey {
	return cache.CopyKey{Bucket: r.fsys.client.Bucket(), Key: r.key, ETag: r.etag}
}

// startCopy returns the copy a read-only handle reading from the start
// fills (a new one, or the one another handle began), or nil.
func (r *reader) startCopy() *cache.Copy {
	if r.file == nil || r.etag == "" || !r.fsys.cfg.Copies.Enabled() {
		return nil
	}
	return r.fsys.cfg.Copies.Start(r.copyKey(), r.size, r.fsys.cfg.BlockSize)
}

// joinCopy returns the copy of this version another handle is filling, so
// that this one's blocks go into it too (the kernel spreads one file's reads
// over its open handles), or nil.
func (r *reader) joinCopy() *cache.Copy {
	if r.file == nil || r.etag == "" || !r.fsys.cfg.Copies.Enabled() {
		return nil
	}
	return r.fsys.cfg.Copies.Filling(r.copyKey())
}

// copyPrefix is how far into a file a sequential read may begin (bytes)
// and still fill a copy: the blocks before it are fetched for the copy.
const copyPrefix = 8 << 20

// fillCopy puts the blocks cp lacks below block upto (all of them: -1)
// into it: from the block cache when there, else with a ranged GET per run
// of missing blocks, of the version the reader reads. Blocks the kernel
// served from its page cache never reach the daemon: the start of a file
// that head(1) read, or what an earlier partial read left. Failures leave
// the copy incomplete (it is then never served).
func (r *reader) fillCopy(cp *cache.Copy, upto int64) {
	bs := r.fsys.cfg.BlockSize
	missing := cp.Missing(upto)
	var runs [][2]int64 // [first, end) block runs not in the block cache
	for _, i := range missing {
		if buf, ok := r.fsys.blocks.Get(r.blockKey(i)); ok {
			r.putCopy(cp, i, buf.Bytes())
			buf.Release()
			continue
		}
		if n := len(runs); n > 0 && runs[n-1][1] == i {
			runs[n-1][1]++
		} else {
			runs = append(runs, [2]int64{i, i + 1})
		}
	}
	buf := make([]byte, bs)
	for _, run := range runs {
		off, n := run[0]*bs, min(run[1]*bs, r.size)-run[0]*bs
		if err := r.fetchInto(cp, run[0], off, n, buf); err != nil {
			r.fsys.log.Debug("local copy: fetching its missing blocks failed", "key", r.key, "err", err)
			return
		}
	}
}

// fetchInto GETs n bytes at off (block a on) and puts them into cp.
func (r *reader) fetchInto(cp *cache.Copy, a, off, n int64, buf []byte) error {
	bs := r.fsys.cfg.BlockSize
	ctx, cancel := context.WithTimeout(context.Background(), getTimeout(n))
	defer cancel()
	r.fsys.downloads <- struct{}{}
	defer func() { <-r.fsys.downloads }()
	body, err := r.fsys.client.OpenRange(ctx, r.key, r.etag, off, n)
	if err != nil {
		return err
	}
	defer body.Close()
	for i := a; i*bs < off+n; i++ {
		want := min(bs, r.size-i*bs)
		if _, err := io.ReadFull(body, buf[:want]); err != nil {
			return err
		}
		r.putCopy(cp, i, buf[:want])
	}
	return nil
}

// putCopy writes block i into cp, logging a write that failed (the copy
// is then dropped: ENOSPC under --cache-dir, say).
func (r *reader) putCopy(cp *cache.Copy, i int64, b []byte) {
	if err := cp.Put(i, b); err != nil {
		r.fsys.log.Warn("local copy dropped: writing it failed", "key", r.key, "dir", r.fsys.cfg.CacheDir, "err", err)
	}
}

// CheckPassthrough registers a file of the copies' directory as a FUSE
// backing file and unregisters it: whether this kernel and process can
// use passthrough (FUSE_DEV_IOC_BACKING_OPEN needs CAP_SYS_ADMIN and
// Linux 6.9+). It returns the failure (EPERM, ENOTTY, ...).
func CheckPassthrough(server *fuse.Server, copies *cache.Copies) error {
	f, err := os.CreateTemp(copies.Dir(), ".probe-*")
	if err != nil {
		return err
	}
	os.Remove(f.Name())
	defer f.Close()
	id, errno := server.RegisterBackingFd(&fuse.BackingMap{Fd: int32(f.Fd())})
	if errno != 0 {
		return errno
	}
	if errno := server.UnregisterBackingFd(id); errno != 0 {
		return errno
	}
	return nil
}
