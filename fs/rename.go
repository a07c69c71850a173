package fs

import (
	"context"
	"errors"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend"
)

var _ gofs.NodeRenamer = (*Dir)(nil)

// Rename implements rename(2) of a file: CopyObject to the new key, then
// DeleteObject of the old. Directories answer EXDEV, so that mv(1) falls
// back to copying. A file open for writing keeps its handles: its next
// commit goes to the new name.
func (d *Dir) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	ctx = uninterruptible(ctx)
	if d.fsys.cfg.ReadOnly {
		return syscall.EROFS
	}
	const renameNoreplace, renameExchange = 1, 2 // renameat2(2)
	if flags&renameExchange != 0 {
		return syscall.EINVAL
	}
	nd, ok := newParent.(*Dir)
	if !ok || nd.fsys != d.fsys {
		// Another bucket (all-buckets mounts) or the root of buckets:
		// CopyObject stays within one bucket, so let mv(1) copy.
		return syscall.EXDEV
	}
	if en := nameErrno(newName, syscall.EINVAL); en != 0 {
		return en
	}
	src, dst := join(d.path, name), join(nd.path, newName)
	if ch := d.GetChild(name); ch != nil {
		if f, ok := ch.Operations().(*File); ok && f.pending() {
			// Open for writing and not in S3 yet: the upload will
			// land under the new name.
			if en := d.renameCheckDst(ctx, nd, dst, flags); en != 0 {
				return en
			}
			f.renamed(dst, "")
			d.fsys.meta.Put(src, cache.Stat{Kind: cache.Absent})
			d.fsys.meta.Put(dst, cache.Stat{Kind: cache.File, MTime: time.Now()})
			return 0
		}
	}
	st, err := d.fsys.stat(ctx, src, d.path)
	if err != nil {
		return errno(err)
	}
	if st.Kind == cache.Dir {
		return syscall.EXDEV
	}
	if en := d.renameCheckDst(ctx, nd, dst, flags); en != 0 {
		return en
	}
	if src == dst {
		return 0
	}
	etag, err := d.fsys.client.Copy(ctx, src, dst, s3backend.CopyOptions{})
	if err != nil {
		return errno(err)
	}
	if err := d.fsys.client.Delete(ctx, src); err != nil {
		return errno(err)
	}
	d.fsys.meta.Put(src, cache.Stat{Kind: cache.Absent})
	st.ETag = etag
	d.fsys.meta.Put(dst, st)
	if ch := d.GetChild(name); ch != nil {
		if f, ok := ch.Operations().(*File); ok {
			f.renamed(dst, etag)
		}
	}
	return 0
}

// renameCheckDst checks that dst may be replaced: not a directory, and
// absent under RENAME_NOREPLACE (rename(2)).
func (d *Dir) renameCheckDst(ctx context.Context, nd *Dir, dst string, flags uint32) syscall.Errno {
	const renameNoreplace = 1
	dstSt, err := d.fsys.stat(ctx, dst, nd.path)
	switch {
	case err == nil && dstSt.Kind == cache.Dir:
		return syscall.EISDIR
	case err == nil && flags&renameNoreplace != 0:
		return syscall.EEXIST
	case err != nil && !errors.Is(err, s3backend.ErrNotFound):
		return errno(err)
	}
	return 0
}
