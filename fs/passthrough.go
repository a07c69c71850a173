package fs

// Local copies and FUSE passthrough (read-only mounts).
//
// A read-only handle that reads an object from its first byte (or reads in
// sequence from within its first copyPrefix bytes: the blocks before are
// fetched for the copy, fillCopy) fills a local copy of that version (cache.Copies, under --cache-dir, bounded by
// --copy-cache-size) with every block it reads. Once the copy is complete,
// a later open of the same version is a passthrough open: the handle names
// the copy's file (gofs.FilePassthroughFder; go-fuse registers it with
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
// page-cache opens, a passthrough open fails. A writer cannot be a
// passthrough open (its bytes must reach s3mount), so copies are only made
// on --read-only mounts (mountopts). File decides each open:
//
//   - passthrough opens are open: passthrough again, on the same copy, even
//     if the object has changed since (the new version is read once they
//     are all closed);
//   - no read handle open, and a complete copy of the current version:
//     passthrough;
//   - otherwise a page-cache open (cacheFlagsLocked).
//
// Since the two kinds never overlap on one inode, go-fuse's count of its
// backing ID (fs/bridge.go: one per node, dropped at every release) is
// exact.

import (
	"context"
	"io"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/s3mount/s3mount/cache"
)

// ptHandle is a read-only handle whose reads the kernel serves from a
// complete local copy.
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

// Release implements FUSE RELEASE.
func (h *ptHandle) Release(ctx context.Context) syscall.Errno {
	h.file.ptClosed()
	return h.handle.Release(ctx)
}

// passthroughLocked returns a passthrough handle for h, a new read-only
// handle of version etag (already counted in f.readers), or nil when the
// kernel must serve it from the FUSE page cache (see the rules above).
func (f *File) passthroughLocked(h *handle, etag string) *ptHandle {
	if f.ptOpen > 0 {
		f.ptOpen++
		return &ptHandle{handle: h, fd: f.ptFd}
	}
	copies := f.fsys.cfg.Copies
	if !copies.Enabled() || etag == "" || f.content != nil || f.readers[etag] > 1 || len(f.readers) > 1 {
		return nil
	}
	cp := copies.Complete(cache.CopyKey{Bucket: f.fsys.client.Bucket(), Key: f.key, ETag: etag})
	if cp == nil {
		return nil
	}
	// The File keeps its own descriptor while passthrough opens are open:
	// the copy may be evicted meanwhile, and go-fuse may ask for it again.
	fd, err := unix.FcntlInt(cp.File().Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	f.ptOpen, f.ptFd = 1, fd
	return &ptHandle{handle: h, fd: fd}
}

// ptClosed counts a passthrough handle out.
func (f *File) ptClosed() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ptOpen--; f.ptOpen == 0 && f.ptFd >= 0 {
		unix.Close(f.ptFd)
		f.ptFd = -1
	}
}

// startCopy returns the copy a read-only handle reading from the start
// fills (a new one, or the one another handle began), or nil.
func (r *reader) startCopy() *cache.Copy {
	if r.file == nil || r.etag == "" {
		return nil
	}
	copies := r.fsys.cfg.Copies
	if !copies.Enabled() {
		return nil
	}
	return copies.Start(cache.CopyKey{Bucket: r.fsys.client.Bucket(), Key: r.key, ETag: r.etag}, r.size, r.fsys.cfg.BlockSize)
}

// copyPrefix is how far into a file a sequential read may begin (bytes)
// and still fill a copy: the blocks before it are fetched for the copy.
const copyPrefix = 8 << 20

// fillCopy puts blocks [0, upto) into cp: from the block cache when there,
// else with one ranged GET of the version the reader reads. Failures leave
// the copy incomplete (it is then never served).
func (r *reader) fillCopy(cp *cache.Copy, upto int64) {
	bs := r.fsys.cfg.BlockSize
	var missing []int64
	for i := int64(0); i < upto; i++ {
		if buf, ok := r.fsys.blocks.Get(r.blockKey(i)); ok {
			cp.Put(i, buf.Bytes())
			buf.Release()
			continue
		}
		missing = append(missing, i)
	}
	if len(missing) == 0 {
		return
	}
	a, b := missing[0], missing[len(missing)-1]+1
	off, n := a*bs, min(b*bs, r.size)-a*bs
	ctx, cancel := context.WithTimeout(context.Background(), getTimeout(n))
	defer cancel()
	r.fsys.downloads <- struct{}{}
	defer func() { <-r.fsys.downloads }()
	body, err := r.fsys.client.OpenRange(ctx, r.key, r.etag, off, n)
	if err != nil {
		r.fsys.log.Debug("local copy: fetching its first blocks failed", "key", r.key, "err", err)
		return
	}
	defer body.Close()
	buf := make([]byte, bs)
	for i := a; i < b; i++ {
		want := min(bs, r.size-i*bs)
		if _, err := io.ReadFull(body, buf[:want]); err != nil {
			return
		}
		cp.Put(i, buf[:want])
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
