package fs

// File and directory attributes: what stat(2) shows, and chmod, chown and
// utimes.

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mount/s3mount/cache"
)

// fileAttrs are a file's attributes beyond size and content: set by
// chmod/chown/utimes (kept in memory only, see SEMANTICS.md). nil: the
// mount's defaults. Guarded by the File's mu.
type fileAttrs struct {
	mode     *uint32
	uid, gid *uint32
	mtimeSet *time.Time // cleared when new content is committed
}

// fromStat takes in the attributes a lookup or listing learned.
func (a *fileAttrs) fromStat(st cache.Stat) {}

// committed records that new content was committed.
func (a *fileAttrs) committed() { a.mtimeSet = nil }

// uploadMetaLocked returns the user metadata an upload of the file's
// content carries (nil: none). f.mu is held.
func (f *File) uploadMetaLocked() map[string]string { return nil }

// fillAttr fills out from what the node knows; a writer's size wins.
func (f *File) fillAttr(out *fuse.Attr) {
	f.mu.Lock()
	size, mtime, c := f.size, f.mtime, f.content
	mode, uid, gid := f.fsys.cfg.FileMode, f.fsys.cfg.UID, f.fsys.cfg.GID
	if f.attr.mode != nil {
		mode = *f.attr.mode
	}
	if f.attr.uid != nil {
		uid = *f.attr.uid
	}
	if f.attr.gid != nil {
		gid = *f.attr.gid
	}
	if f.attr.mtimeSet != nil {
		mtime = *f.attr.mtimeSet
	}
	f.mu.Unlock()
	if c != nil {
		size = c.shownSize.Load()
	}
	if mtime.IsZero() {
		mtime = f.fsys.mounted
	}
	out.Mode = syscall.S_IFREG | mode
	out.Nlink = 1
	out.Uid, out.Gid = uid, gid
	out.Size = uint64(size)
	out.Blksize = 4096
	out.Blocks = (uint64(size) + 511) / 512
	out.SetTimes(nil, &mtime, &mtime)
}

var _ gofs.NodeSetattrer = (*File)(nil)

// Setattr implements truncate(2), chmod(2), chown(2) and utimes(2).
// Size: to the current size (no-op) or to 0 (an empty object, or an open
// writer restarting empty); other sizes answer ENOTSUP until in-place
// writes land. Mode, owner and times are kept in memory only.
func (f *File) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	if f.fsys.cfg.ReadOnly {
		return syscall.EROFS
	}
	if size, ok := in.GetSize(); ok {
		if en := f.truncate(ctx, fh, int64(size)); en != 0 {
			return en
		}
	}
	f.mu.Lock()
	if m, ok := in.GetMode(); ok {
		m &= 0o7777
		f.attr.mode = &m
	}
	if u, ok := in.GetUID(); ok {
		f.attr.uid = &u
	}
	if g, ok := in.GetGID(); ok {
		f.attr.gid = &g
	}
	if t, ok := in.GetMTime(); ok {
		f.attr.mtimeSet = &t
	}
	f.mu.Unlock()
	f.fillAttr(&out.Attr)
	return 0
}

var _ gofs.NodeGetattrer = (*Dir)(nil)

// Getattr implements the FUSE GETATTR of a directory.
func (d *Dir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var mtime time.Time
	if st, ok := d.fsys.meta.Get(d.path); ok && st.Kind == cache.Dir {
		mtime = st.MTime
	}
	d.fsys.dirAttr(&out.Attr, mtime)
	d.overrideAttr(&out.Attr)
	return 0
}

func (d *Dir) overrideAttr(out *fuse.Attr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.attrs != nil {
		out.Mode = syscall.S_IFDIR | d.attrs.Mode&0o7777
		out.Uid, out.Gid = d.attrs.Uid, d.attrs.Gid
		out.Mtime, out.Mtimensec = d.attrs.Mtime, d.attrs.Mtimensec
	}
}

var _ gofs.NodeSetattrer = (*Dir)(nil)

// Setattr implements chmod(2), chown(2) and utimes(2) of a directory: S3
// has nowhere to keep them, so they live in memory for as long as the
// kernel keeps the inode (SEMANTICS.md). EROFS on a read-only mount.
func (d *Dir) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	if d.fsys.cfg.ReadOnly {
		return syscall.EROFS
	}
	if _, ok := in.GetSize(); ok {
		return syscall.EISDIR
	}
	var cur fuse.AttrOut
	d.Getattr(ctx, fh, &cur)
	a := cur.Attr
	if m, ok := in.GetMode(); ok {
		a.Mode = syscall.S_IFDIR | m&0o7777
	}
	if u, ok := in.GetUID(); ok {
		a.Uid = u
	}
	if g, ok := in.GetGID(); ok {
		a.Gid = g
	}
	if t, ok := in.GetMTime(); ok {
		a.SetTimes(nil, &t, nil)
	}
	d.mu.Lock()
	d.attrs = &a
	d.mu.Unlock()
	out.Attr = a
	return 0
}
