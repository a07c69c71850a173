package fs

// Symbolic links, stored as s3fs stores them: an object whose body is the
// target and whose x-amz-meta-mode has S_IFLNK (S_IFLNK|0777 = 41471).

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend"
)

// maxSymlinkTarget is the longest target read back: PATH_MAX (limits.h).
const maxSymlinkTarget = 4096

// Symlink is a symbolic link: one object.
type Symlink struct {
	gofs.Inode
	fsys *FS

	mu     sync.Mutex
	key    string    // guarded by mu; changes on rename
	etag   string    // guarded by mu
	size   int64     // guarded by mu; bytes of the target
	attr   fileAttrs // guarded by mu; uid, gid, mtime
	mtime  time.Time // guarded by mu
	target []byte    // guarded by mu; nil until read; the target of etag
}

var _ gofs.InodeEmbedder = (*Symlink)(nil)

func newSymlink(fsys *FS, key string, st cache.Stat) *Symlink {
	l := &Symlink{fsys: fsys, key: key}
	l.update(st)
	return l
}

// update takes in what a HEAD learned; a new ETag drops the cached target.
func (l *Symlink) update(st cache.Stat) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st.ETag != l.etag {
		l.target = nil
	}
	l.etag, l.size, l.mtime = st.ETag, st.Size, st.MTime
	l.attr.fromStat(st)
}

// renamed records a completed rename.
func (l *Symlink) renamed(key, etag string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.key = key
	if etag != "" {
		l.etag = etag
	}
}

func (l *Symlink) fillAttr(out *fuse.Attr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	uid, gid, mtime := l.fsys.cfg.UID, l.fsys.cfg.GID, l.mtime
	if l.attr.uid != nil {
		uid = *l.attr.uid
	}
	if l.attr.gid != nil {
		gid = *l.attr.gid
	}
	if mtime.IsZero() {
		mtime = l.fsys.mounted
	}
	out.Mode = syscall.S_IFLNK | 0o777
	out.Nlink = 1
	out.Uid, out.Gid = uid, gid
	out.Size = uint64(l.size)
	out.Blksize = 4096
	out.Blocks = (uint64(l.size) + 511) / 512
	out.SetTimes(nil, &mtime, &mtime)
}

var _ gofs.NodeGetattrer = (*Symlink)(nil)

// Getattr implements FUSE GETATTR of a symlink, from what the node knows
// (lookups refresh it).
func (l *Symlink) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	l.fillAttr(&out.Attr)
	return 0
}

var _ gofs.NodeReadlinker = (*Symlink)(nil)

// Readlink implements readlink(2): the object's body (one GetObject of
// the version the node knows, kept in the node afterwards; ESTALE when
// the object changed since the lookup).
func (l *Symlink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	ctx = uninterruptible(ctx)
	l.mu.Lock()
	key, etag, size, target := l.key, l.etag, l.size, l.target
	l.mu.Unlock()
	if target != nil {
		return target, 0
	}
	if size > maxSymlinkTarget {
		l.fsys.log.Warn("symlink object larger than PATH_MAX", "key", key, "size", size)
		return nil, syscall.EIO
	}
	body, err := l.fsys.client.OpenRange(ctx, key, etag, 0, max(size, 1))
	if err != nil {
		return nil, errno(err)
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, maxSymlinkTarget+1))
	if err != nil {
		return nil, errno(err)
	}
	l.mu.Lock()
	if l.etag == etag {
		l.target = b
	}
	l.mu.Unlock()
	return b, 0
}

var _ gofs.NodeSetattrer = (*Symlink)(nil)

// Setattr implements lchown(2) and lutimes(2) of a symlink: CopyObject onto
// itself with new metadata, like a file's (attr.go). A symlink's mode is
// always 0777: chmod changes nothing.
func (l *Symlink) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	if l.fsys.cfg.ReadOnly {
		return syscall.EROFS
	}
	u, hasUID := in.GetUID()
	g, hasGID := in.GetGID()
	t, hasMTime := in.GetMTime()
	if hasUID || hasGID || hasMTime {
		l.mu.Lock()
		uid, gid, mtime := l.fsys.cfg.UID, l.fsys.cfg.GID, l.mtime
		if l.attr.uid != nil {
			uid = *l.attr.uid
		}
		if l.attr.gid != nil {
			gid = *l.attr.gid
		}
		if hasUID {
			uid = u
		}
		if hasGID {
			gid = g
		}
		if hasMTime {
			mtime = t
		}
		key, etag, size, user := l.key, l.etag, l.size, l.attr.user
		l.mu.Unlock()
		meta := encodeMeta(user, sIFLNK, 0o777, uid, gid, mtime.Truncate(time.Second))
		newETag, err := l.fsys.rewriteMeta(ctx, key, etag, size, meta)
		if err != nil {
			return errno(err)
		}
		st := statOfMeta(size, newETag, meta)
		l.update(st)
		l.fsys.meta.Put(key, st)
	}
	l.fillAttr(&out.Attr)
	return 0
}

var _ gofs.NodeSymlinker = (*Dir)(nil)

// Symlink implements symlink(2): PutObject of name with the target as its
// body and S_IFLNK|0777 in x-amz-meta-mode, only if no object has the name
// (If-None-Match: *). EEXIST when the name exists.
func (d *Dir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if d.fsys.cfg.ReadOnly {
		return nil, syscall.EROFS
	}
	if en := nameErrno(name, syscall.EINVAL); en != 0 {
		return nil, en
	}
	if len(target) > maxSymlinkTarget {
		return nil, syscall.ENAMETOOLONG
	}
	dir := d.keyPath()
	path := join(dir, name)
	if ch := d.GetChild(name); ch != nil {
		if f, ok := ch.Operations().(*File); ok && f.pending() {
			return nil, syscall.EEXIST
		}
	}
	if _, err := d.fsys.stat(ctx, path, dir); err == nil {
		return nil, syscall.EEXIST
	} else if !errors.Is(err, s3backend.ErrNotFound) {
		return nil, errno(err)
	}
	meta := encodeMeta(nil, sIFLNK, 0o777, d.fsys.cfg.UID, d.fsys.cfg.GID, time.Now())
	opt := s3backend.PutOptions{IfNoneMatch: "*", Meta: meta}
	if d.fsys.claimKey(path) {
		// The object of a file unlinked while open is still there (and
		// no longer deleted at its last close): replace it.
		opt.IfNoneMatch = ""
	}
	etag, err := d.fsys.client.Put(ctx, path, []byte(target), opt)
	if errors.Is(err, s3backend.ErrPrecondition) {
		d.fsys.meta.Invalidate(path, dir)
		return nil, syscall.EEXIST
	}
	if err != nil {
		return nil, errno(err)
	}
	st := statOfMeta(int64(len(target)), etag, meta)
	d.fsys.meta.Put(path, st)
	l := newSymlink(d.fsys, path, st)
	l.target = []byte(target)
	l.fillAttr(&out.Attr)
	return d.NewInode(ctx, l, gofs.StableAttr{Mode: syscall.S_IFLNK}), 0
}
