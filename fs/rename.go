package fs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sync/errgroup"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend"
)

// DefaultMaxRenameObjects is the default of Config.MaxRenameObjects
// (--max-rename-objects): a directory rename moves at most this many
// objects, one CopyObject and one DeleteObject each.
const DefaultMaxRenameObjects = 10000

// renameConcurrency is the number of CopyObject (then DeleteObject)
// requests one directory rename keeps in flight.
const renameConcurrency = 16

var _ gofs.NodeRenamer = (*Dir)(nil)

// Rename implements rename(2) and renameat2(2) with RENAME_NOREPLACE.
//
// A file (or symlink): CopyObject to the new key with
// x-amz-copy-source-if-match on the ETag known (a multipart copy with
// UploadPartCopy above 5 GiB), then DeleteObject of the old key. It may
// replace an existing file of any size. A file open for writing whose
// object does not exist yet only changes its key: its upload lands under
// the new name.
//
// A directory: every key under "old/" (paged ListObjectsV2, the marker and
// keys at any depth) is copied to "new/", renameConcurrency at a time,
// then the old keys are deleted. More than MaxRenameObjects keys: EXDEV,
// so that mv(1) falls back to copying and deleting. If a copy fails, the
// copies made are deleted again and the source is left whole (EIO); if a
// delete fails after every copy succeeded, both trees exist (EIO, the log
// names the keys left). Never atomic: other clients may see both names.
//
// Errors: EXDEV across buckets; EISDIR for a file onto a directory;
// ENOTDIR for a directory onto a file; ENOTEMPTY onto a non-empty
// directory; EEXIST with RENAME_NOREPLACE; EINVAL for RENAME_EXCHANGE.
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
	srcDir, dstDir := d.keyPath(), nd.keyPath()
	src, dst := join(srcDir, name), join(dstDir, newName)
	var node *gofs.Inode
	if ch := d.GetChild(name); ch != nil {
		node = ch
	}
	var pending *File
	if node != nil {
		if f, ok := node.Operations().(*File); ok && f.pending() {
			pending = f
		}
	}
	var st cache.Stat
	if pending == nil {
		var err error
		if st, err = d.fsys.stat(ctx, src, srcDir); err != nil {
			return errno(err)
		}
		if st.Kind == cache.Dir {
			return d.renameDir(ctx, node, src, srcDir, nd, dst, dstDir, flags&renameNoreplace != 0)
		}
	}
	dstSt, err := d.fsys.stat(ctx, dst, dstDir)
	switch {
	case err == nil && dstSt.Kind == cache.Dir:
		return syscall.EISDIR
	case err == nil && flags&renameNoreplace != 0:
		return syscall.EEXIST
	case err != nil && !errors.Is(err, s3backend.ErrNotFound):
		return errno(err)
	}
	if src == dst {
		return 0
	}
	if pending != nil {
		// Nothing in S3 yet: the upload will go to the new key.
		pending.renamed(dst, "")
		d.fsys.meta.Put(src, cache.Stat{Kind: cache.Absent})
		d.fsys.meta.Put(dst, cache.Stat{Kind: cache.File, MTime: time.Now()})
		d.replaced(nd, newName, node)
		return 0
	}
	if node != nil {
		if f, ok := node.Operations().(*File); ok {
			f.attr.rewrite.Lock()
			defer f.attr.rewrite.Unlock()
			// A rewrite that just finished may have changed the
			// object's ETag and metadata (it updated the cache).
			if st, err = d.fsys.stat(ctx, src, srcDir); err != nil {
				return errno(err)
			}
		}
	}
	d.fsys.claimKey(dst) // a pending delete of a file unlinked while open must not remove the copy
	newSt, err := d.copyFile(ctx, src, srcDir, dst, st)
	if err != nil {
		return errno(err)
	}
	if err := d.fsys.client.Delete(ctx, src); err != nil {
		d.fsys.log.Error("rename: copied, but the old key could not be deleted: both exist", "from", src, "to", dst, "err", err)
		d.fsys.meta.Invalidate(src, srcDir)
		d.fsys.meta.Put(dst, newSt)
		return errno(err)
	}
	d.fsys.meta.Put(src, cache.Stat{Kind: cache.Absent})
	d.fsys.meta.Put(dst, newSt)
	if node != nil {
		switch n := node.Operations().(type) {
		case *File:
			n.renamed(dst, newSt.ETag)
		case *Symlink:
			n.renamed(dst, newSt.ETag)
		}
	}
	d.replaced(nd, newName, node)
	return 0
}

// replaced handles the file that a rename onto nd/newName replaced (if the
// kernel knew it): like a local file it is unlinked, so that a writer
// still open on it does not upload over the renamed object, and the pages
// the kernel kept of it are dropped (asynchronously: the kernel holds the
// directories' locks during the rename).
func (d *Dir) replaced(nd *Dir, newName string, moved *gofs.Inode) {
	old := nd.GetChild(newName)
	if old == nil || old == moved {
		return
	}
	if f, ok := old.Operations().(*File); ok {
		f.markReplaced()
		go f.NotifyContent(0, 0)
	}
}

// copyFile copies the object src (as st describes it) to dst and returns
// what dst now is. Its metadata goes along (COPY); an object without
// x-amz-meta-mtime gets one holding its LastModified (REPLACE, the other
// user metadata kept), so that the mtime stat shows survives the rename.
// When the ETag known is stale (412), it looks src up again and retries
// once.
func (d *Dir) copyFile(ctx context.Context, src, srcDir, dst string, st cache.Stat) (cache.Stat, error) {
	for attempt := 0; ; attempt++ {
		opt := s3backend.CopyOptions{SrcETag: st.ETag, Size: st.Size}
		if st.MetaKnown && !st.HasMTime {
			opt.Meta = map[string]string{}
			for k, v := range st.UserMeta {
				opt.Meta[k] = v
			}
			opt.Meta[metaMTime] = fmt.Sprint(st.MTime.Unix())
		}
		etag, err := d.fsys.client.Copy(ctx, src, dst, opt)
		if errors.Is(err, s3backend.ErrPrecondition) && attempt == 0 {
			d.fsys.meta.Invalidate(src, srcDir)
			if st, err = d.fsys.stat(ctx, src, srcDir); err != nil {
				return cache.Stat{}, err
			}
			if st.Kind != cache.File {
				return cache.Stat{}, s3backend.ErrPrecondition
			}
			continue
		}
		if err != nil {
			return cache.Stat{}, err
		}
		if etag == "" {
			etag = st.ETag // a CopyObject answer without an ETag: a one-request copy keeps it
		}
		if opt.Meta != nil {
			return statOfMeta(st.Size, etag, opt.Meta), nil
		}
		st.ETag = etag
		return st, nil
	}
}

// renameDir moves the directory src (node, when the kernel knows it) to
// dst: see Rename.
func (d *Dir) renameDir(ctx context.Context, node *gofs.Inode, src, srcDir string, nd *Dir, dst, dstDir string, noreplace bool) syscall.Errno {
	limit := d.fsys.cfg.MaxRenameObjects
	if limit < 0 {
		return syscall.EXDEV
	}
	if dst == src {
		return 0
	}
	if strings.HasPrefix(dst+"/", src+"/") {
		return syscall.EINVAL // into itself
	}
	dstSt, err := d.fsys.stat(ctx, dst, dstDir)
	switch {
	case err == nil && dstSt.Kind != cache.Dir:
		return syscall.ENOTDIR
	case err == nil && noreplace:
		return syscall.EEXIST
	case err == nil:
		if en := d.fsys.checkEmpty(ctx, nd.GetChild(strings.TrimPrefix(dst, dirPrefix(dstDir))), dst); en != 0 {
			return en
		}
	case !errors.Is(err, s3backend.ErrNotFound):
		return errno(err)
	}
	// Every key under src/, at any depth.
	var objs []s3backend.ObjectInfo
	token := ""
	for {
		page, err := d.fsys.client.List(ctx, src+"/", "", token, 1000)
		if err != nil {
			return errno(err)
		}
		objs = append(objs, page.Objects...)
		if len(objs) > limit {
			d.fsys.log.Info("directory rename refused (EXDEV, mv copies instead): more objects than --max-rename-objects",
				"from", src, "to", dst, "max_rename_objects", limit)
			return syscall.EXDEV
		}
		if page.NextToken == "" {
			break
		}
		token = page.NextToken
	}
	newKey := func(k string) string { return dst + "/" + strings.TrimPrefix(k, src+"/") }
	// Directory markers first, one by one in key order: once keys exist
	// under a directory, some servers refuse to create its marker.
	isMarker := func(o s3backend.ObjectInfo) bool { return strings.HasSuffix(o.Key, "/") && o.Size == 0 }
	sort.SliceStable(objs, func(i, j int) bool { return isMarker(objs[i]) && !isMarker(objs[j]) })
	etags := make([]string, len(objs))
	copied := make([]bool, len(objs))
	copyOne := func(i int) error {
		o := objs[i]
		var etag string
		var err error
		if isMarker(o) {
			// The marker is written anew with its metadata: some servers
			// refuse to copy a directory object whose directory holds
			// data (versitygw: DirectoryObjectContainsData).
			var info s3backend.ObjectInfo
			if info, err = d.fsys.client.Head(ctx, o.Key); err == nil {
				etag, err = d.fsys.client.Put(ctx, newKey(o.Key), nil, s3backend.PutOptions{Meta: info.Meta})
			}
		} else {
			etag, err = d.fsys.client.Copy(ctx, o.Key, newKey(o.Key), s3backend.CopyOptions{SrcETag: o.ETag, Size: o.Size})
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", o.Key, err)
		}
		etags[i], copied[i] = etag, true
		return nil
	}
	var copyErr error
	first := 0
	for first < len(objs) && isMarker(objs[first]) && copyErr == nil {
		copyErr = copyOne(first) // in key order: parents before children
		first++
	}
	if copyErr == nil {
		// No cancellation on the first failure: a copy cancelled in
		// flight may still have been made, and the rollback below must
		// know every copy that exists. Later copies are skipped instead.
		var failed atomic.Bool
		var g errgroup.Group
		var errMu sync.Mutex
		g.SetLimit(renameConcurrency)
		for i := first; i < len(objs); i++ {
			g.Go(func() error {
				if failed.Load() {
					return nil
				}
				if err := copyOne(i); err != nil {
					failed.Store(true)
					errMu.Lock()
					if copyErr == nil {
						copyErr = err
					}
					errMu.Unlock()
				}
				return nil
			})
		}
		_ = g.Wait()
	}
	defer d.fsys.meta.InvalidatePrefix(src, srcDir)
	defer d.fsys.meta.InvalidatePrefix(dst, dstDir)
	if copyErr != nil {
		var made []string
		for i, o := range objs {
			if copied[i] {
				made = append(made, newKey(o.Key))
			}
		}
		left := d.deleteKeys(ctx, made)
		d.fsys.log.Error("directory rename failed: the source is untouched; the copies made were deleted again",
			"from", src, "to", dst, "objects", len(objs), "copied", len(made), "copies_left", left, "err", copyErr)
		return syscall.EIO
	}
	keys := make([]string, len(objs))
	for i, o := range objs {
		keys[i] = o.Key
	}
	if left := d.deleteKeys(ctx, keys); len(left) > 0 {
		d.fsys.log.Error("directory rename: every object was copied, but some old keys could not be deleted: they exist under both names",
			"from", src, "to", dst, "objects", len(objs), "not_deleted", len(left), "first", left[:min(len(left), 10)])
		return syscall.EIO
	}
	d.fsys.log.Info("directory renamed", "from", src, "to", dst, "objects", len(objs))
	if node != nil {
		moved := make(map[string]string, len(objs))
		for i, o := range objs {
			moved[o.Key] = etags[i]
		}
		rekey(node, src, dst, moved)
	}
	return 0
}

// checkEmpty answers 0 when the directory dst (node, if known) holds
// nothing but its marker, else ENOTEMPTY (rename(2) replaces only an
// empty directory).
func (f *FS) checkEmpty(ctx context.Context, node *gofs.Inode, dst string) syscall.Errno {
	if node != nil {
		for _, ch := range node.Children() {
			if fl, ok := ch.Operations().(*File); ok && fl.pending() {
				return syscall.ENOTEMPTY
			}
		}
	}
	f.awaitDeletes(ctx, dst+"/")
	page, err := f.client.List(ctx, dst+"/", "", "", 2)
	if err != nil {
		return errno(err)
	}
	for _, o := range page.Objects {
		if o.Key != dst+"/" {
			return syscall.ENOTEMPTY
		}
	}
	if len(page.Prefixes) > 0 {
		return syscall.ENOTEMPTY
	}
	return 0
}

// deleteKeys deletes keys, renameConcurrency at a time, and returns those
// whose DeleteObject failed.
func (d *Dir) deleteKeys(ctx context.Context, keys []string) []string {
	var (
		mu   sync.Mutex
		left []string
		g    errgroup.Group
	)
	g.SetLimit(renameConcurrency)
	for _, k := range keys {
		g.Go(func() error {
			if err := d.fsys.client.Delete(ctx, k); err != nil {
				d.fsys.log.Warn("delete failed", "key", k, "err", err)
				mu.Lock()
				left = append(left, k)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return left
}

// rekey gives the nodes of a renamed directory subtree their new key
// paths: node (directory src, now dst) and every descendant the kernel
// knows. moved maps old keys to their copies' ETags; a file absent from it
// (being written, not in S3 yet) keeps its ETag.
func rekey(node *gofs.Inode, src, dst string, moved map[string]string) {
	newPath := func(p string) string { return dst + strings.TrimPrefix(p, src) }
	switch n := node.Operations().(type) {
	case *Dir:
		n.setKeyPath(newPath(n.keyPath()))
		for _, ch := range node.Children() {
			rekey(ch, src, dst, moved)
		}
	case *File:
		n.mu.Lock()
		old := n.key
		n.mu.Unlock()
		n.renamed(newPath(old), moved[old])
	case *Symlink:
		n.mu.Lock()
		old := n.key
		n.mu.Unlock()
		n.renamed(newPath(old), moved[old])
	}
}
