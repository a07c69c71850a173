package fs

// File and directory attributes: what stat(2) shows, and chmod, chown and
// utimes.
//
// Mode, owner and mtime live in the object's user metadata with the names
// s3fs uses, so that buckets written by s3fs (and by this mount) keep them
// (s3fs-fuse, src/s3fs.cpp and src/metaheader.cpp):
//
//	x-amz-meta-mode   st_mode in decimal, S_IFMT type bits included (33188 = S_IFREG|0644)
//	x-amz-meta-uid    decimal
//	x-amz-meta-gid    decimal
//	x-amz-meta-mtime  seconds since the epoch (a fraction is accepted on read)
//
// An object without them shows the mount's --file-mode, --uid, --gid and
// its LastModified. ListObjectsV2 returns no user metadata, so a listing
// alone cannot tell these; see Dir.Readdir for how listings learn them.

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend"
)

// The user metadata names of s3fs's conventions, as s3backend.ObjectInfo.Meta
// holds them (lower case, without the x-amz-meta- prefix).
const (
	metaMode  = "mode"
	metaUID   = "uid"
	metaGID   = "gid"
	metaMTime = "mtime"
)

// sIFMT and the type bits of st_mode (inode(7)).
const (
	sIFMT  = syscall.S_IFMT
	sIFREG = syscall.S_IFREG
	sIFDIR = syscall.S_IFDIR
	sIFLNK = syscall.S_IFLNK
)

// statFromHead turns a HeadObject answer into what the cache keeps: size,
// ETag, and the s3fs metadata (values that do not parse are ignored, as if
// absent). MTime is x-amz-meta-mtime when present, else LastModified,
// truncated to whole seconds like every listing-filled entry.
func statFromHead(info s3backend.ObjectInfo) cache.Stat {
	st := cache.Stat{Kind: cache.File, Size: info.Size, ETag: info.ETag,
		MTime: info.LastModified.Truncate(time.Second), MetaKnown: true, UserMeta: info.Meta}
	if v, ok := info.Meta[metaMode]; ok {
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
			st.Mode = uint32(n)
		}
	}
	if v, ok := info.Meta[metaUID]; ok {
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
			st.UID, st.HasUID = uint32(n), true
		}
	}
	if v, ok := info.Meta[metaGID]; ok {
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
			st.GID, st.HasGID = uint32(n), true
		}
	}
	if v, ok := info.Meta[metaMTime]; ok {
		if t, ok := parseMetaTime(v); ok {
			st.MTime, st.HasMTime = t, true
		}
	}
	return st
}

// learned turns a HEAD answer for path into a cache entry and remembers
// it for that version of the object (cache.Meta.PutVersion).
func (f *FS) learned(path string, info s3backend.ObjectInfo) cache.Stat {
	st := statFromHead(info)
	f.meta.PutVersion(path, info.ETag, info.LastModified, st)
	return st
}

// parseMetaTime reads x-amz-meta-mtime: whole seconds since the epoch as
// s3fs writes them, or seconds with a decimal fraction (up to nanoseconds;
// rclone and newer s3fs versions write one).
func parseMetaTime(v string) (time.Time, bool) {
	v = strings.TrimSpace(v)
	secs, frac, hasFrac := strings.Cut(v, ".")
	s, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	var ns int64
	if hasFrac {
		if frac == "" || strings.Trim(frac, "0123456789") != "" {
			return time.Time{}, false
		}
		ns, _ = strconv.ParseInt((frac + "000000000")[:9], 10, 64)
	}
	return time.Unix(s, ns), true
}

// isSymlink reports whether st is an object that s3fs conventions mark as
// a symbolic link (x-amz-meta-mode with S_IFLNK).
func isSymlink(st cache.Stat) bool {
	return st.Kind == cache.File && st.Mode&sIFMT == sIFLNK
}

// encodeMeta makes s3fs's metadata for an object of type typ (S_IFREG,
// S_IFLNK, S_IFDIR) with permission bits perm, owner uid:gid and mtime
// (written as whole seconds, as s3fs does). base, when not nil, gives the
// other user metadata to keep.
func encodeMeta(base map[string]string, typ, perm, uid, gid uint32, mtime time.Time) map[string]string {
	m := make(map[string]string, len(base)+4)
	for k, v := range base {
		m[k] = v
	}
	m[metaMode] = strconv.FormatUint(uint64(typ|perm&0o7777), 10)
	m[metaUID] = strconv.FormatUint(uint64(uid), 10)
	m[metaGID] = strconv.FormatUint(uint64(gid), 10)
	m[metaMTime] = strconv.FormatInt(mtime.Unix(), 10)
	return m
}

// statOfMeta is the cache entry of an object of size bytes and ETag etag
// whose user metadata s3mount has just written as meta.
func statOfMeta(size int64, etag string, meta map[string]string) cache.Stat {
	return statFromHead(s3backend.ObjectInfo{Size: size, ETag: etag, Meta: meta})
}

// fileAttrs are a file's attributes beyond size and content. nil fields:
// the mount's defaults. Guarded by the File's mu, except rewrite.
type fileAttrs struct {
	// rewrite serialises the S3 requests that rewrite the file's object
	// in place or move it: metadata rewrites (Setattr, flushMeta) and
	// renames, so that a rename never copies metadata a concurrent
	// rewrite is about to replace (rsync chmods its temp file, then
	// renames it, while the handle's release stores the chmod). Held
	// across S3 requests; taken before f.mu, never with writer.mu.
	rewrite sync.Mutex

	mode     *uint32 // permission bits
	uid, gid *uint32
	// mtimeSet is an explicit utimes(2) value not yet stored in S3 (set
	// while a writer is open; its commit stores it).
	mtimeSet *time.Time
	// stored is the x-amz-meta-mtime this mount last wrote, which the
	// node's mtime (the commit's clock) may not match to the second.
	stored *time.Time
	// sent is the mtime the upload in progress carries.
	sent *time.Time
	// user is the object's other user metadata, kept by metadata rewrites.
	user map[string]string
	// unsynced: a chmod/chown/utimes made while a writer was open has not
	// reached S3 yet (no upload has carried it since); flushMeta stores it.
	unsynced bool
	// own: this mount wrote the metadata of the version the node holds
	// (its upload or metadata rewrite), so the node knows it without a
	// HEAD; ownLM is that version's LastModified (whole seconds) as the
	// first listing after the write showed it, zero until then.
	own   bool
	ownLM time.Time
}

// fromStat takes in the attributes a HEAD learned. A listing's entry
// (MetaKnown false) carries none, and attributes not yet stored
// (unsynced) are newer: what the node knows stays.
func (a *fileAttrs) fromStat(st cache.Stat) {
	if !st.MetaKnown || a.unsynced || st.Own {
		return // a listing's entry, or the node holds these or newer values
	}
	a.mode, a.uid, a.gid, a.mtimeSet, a.stored = nil, nil, nil, nil, nil
	a.own, a.ownLM = false, time.Time{}
	if st.Mode != 0 {
		m := st.Mode & 0o7777
		a.mode = &m
	}
	if st.HasUID {
		u := st.UID
		a.uid = &u
	}
	if st.HasGID {
		g := st.GID
		a.gid = &g
	}
	a.user = nil
	for k, v := range st.UserMeta {
		switch k {
		case metaMode, metaUID, metaGID, metaMTime:
			continue
		}
		if a.user == nil {
			a.user = map[string]string{}
		}
		a.user[k] = v
	}
}

// committed records that new content was committed: the mtime its upload
// carried is what S3 now stores.
func (a *fileAttrs) committed() {
	a.own, a.ownLM = a.sent != nil, time.Time{}
	if a.sent != nil {
		a.stored, a.sent = a.sent, nil
	}
	if !a.unsynced {
		a.mtimeSet = nil // else newer than what the upload carried
	}
}

// ownerLocked returns the permission bits, uid and gid the file shows.
// f.mu is held.
func (f *File) ownerLocked() (perm, uid, gid uint32) {
	perm, uid, gid = f.fsys.cfg.FileMode, f.fsys.cfg.UID, f.fsys.cfg.GID
	if f.attr.mode != nil {
		perm = *f.attr.mode
	}
	if f.attr.uid != nil {
		uid = *f.attr.uid
	}
	if f.attr.gid != nil {
		gid = *f.attr.gid
	}
	return perm, uid, gid
}

// mtimeLocked returns the mtime the file shows. f.mu is held.
func (f *File) mtimeLocked() time.Time {
	switch {
	case f.attr.mtimeSet != nil:
		return *f.attr.mtimeSet
	case f.attr.stored != nil:
		return *f.attr.stored
	case f.mtime.IsZero():
		return f.fsys.mounted
	}
	return f.mtime
}

// uploadMetaLocked returns the user metadata an upload of the file's
// content carries: mode, uid and gid as the file shows them, and mtime the
// explicit utimes value if one is pending, else now. f.mu is held.
func (f *File) uploadMetaLocked() map[string]string {
	mtime := time.Now().Truncate(time.Second)
	if f.attr.mtimeSet != nil {
		mtime = *f.attr.mtimeSet
	}
	f.attr.sent = &mtime
	f.attr.unsynced = false
	f.fsys.meta.ForgetVersion(f.key)
	perm, uid, gid := f.ownerLocked()
	return encodeMeta(nil, sIFREG, perm, uid, gid, mtime)
}

// createdWithMode records the permission bits open(2) with O_CREAT asked
// for (the kernel has applied the umask), which the upload stores.
func (f *File) createdWithMode(mode uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := mode & 0o7777
	f.attr.mode = &m
}

// ownVersion answers for a listing that names the file's object with
// ETag etag and LastModified lastMod: when the node holds that version and
// this mount wrote its metadata (fileAttrs.own), the entry a HEAD would
// give, without the HEAD. The first listing after the write pins the
// version's LastModified; a later one with another LastModified (a
// metadata rewrite elsewhere keeps the ETag but not the LastModified)
// gets no answer. Another client's rewrite between this mount's write and
// its first listing goes unseen while the node lives.
func (f *File) ownVersion(etag string, lastMod time.Time) (cache.Stat, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.attr.own || f.attr.unsynced || f.content != nil || f.unlinked || f.etag == "" || f.etag != etag {
		return cache.Stat{}, false
	}
	lm := lastMod.Truncate(time.Second)
	if f.attr.ownLM.IsZero() {
		f.attr.ownLM = lm
	} else if !f.attr.ownLM.Equal(lm) {
		return cache.Stat{}, false
	}
	perm, uid, gid := f.ownerLocked()
	mtime := f.mtimeLocked()
	user := map[string]string{}
	for k, v := range f.attr.user {
		user[k] = v
	}
	meta := encodeMeta(user, sIFREG, perm, uid, gid, mtime)
	st := statOfMeta(f.size, etag, meta)
	st.MTime, st.Own = mtime, true
	return st, true
}

// fillAttr fills out from what the node knows; a writer's size wins.
// While the file is open for writing, its mtime is the one it had when
// the writing began (or one set with utimes meanwhile), though commits
// give S3 new ones: the kernel drops a file's pages when a GETATTR shows
// another mtime (FUSE_AUTO_INVAL_DATA), and a drop while a write is on
// its way to s3mount races it (see dropPagesLocked). The commit's mtime
// shows once the last writable handle is released.
func (f *File) fillAttr(out *fuse.Attr) {
	f.mu.Lock()
	size, c := f.size, f.content
	mode, uid, gid := f.ownerLocked()
	mtime := f.mtimeLocked()
	if c != nil {
		mtime = c.shownMTime
	}
	f.mu.Unlock()
	if c != nil {
		size = c.shownSize.Load()
		if c.ptFile != nil {
			// The kernel writes a passthrough content's file
			// itself: its size is the file's.
			if st := ptStamp(c.ptFile); st != (ptStat{}) {
				size = st.size
			}
		}
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
// Size: see truncate. Mode, owner and mtime: while a writable handle is
// open they are kept in the node and the commit's upload carries them
// (uploadMetaLocked); otherwise the object's metadata is rewritten in
// place, one CopyObject of the key onto itself with
// x-amz-metadata-directive REPLACE and x-amz-copy-source-if-match on the
// ETag the node knows (S3 API Reference, CopyObject): ESTALE when the
// object changed meanwhile. atime alone changes nothing (S3 keeps none).
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
	m, hasMode := in.GetMode()
	u, hasUID := in.GetUID()
	g, hasGID := in.GetGID()
	t, hasMTime := in.GetMTime()
	if !hasMode && !hasUID && !hasGID && !hasMTime {
		f.fillAttr(&out.Attr)
		return 0
	}
	m &= 0o7777
	t = t.Truncate(time.Second) // what x-amz-meta-mtime keeps
	f.attr.rewrite.Lock()
	defer f.attr.rewrite.Unlock()
	f.mu.Lock()
	if f.content != nil || f.unlinked {
		// The writer's commit carries them.
		if hasMode {
			f.attr.mode = &m
		}
		if hasUID {
			f.attr.uid = &u
		}
		if hasGID {
			f.attr.gid = &g
		}
		if hasMTime {
			f.attr.mtimeSet = &t
			if f.content != nil {
				f.content.shownMTime = t
			}
		}
		f.attr.unsynced = true
		f.mu.Unlock()
		f.fillAttr(&out.Attr)
		return 0
	}
	perm, uid, gid := f.ownerLocked()
	mtime := f.mtimeLocked().Truncate(time.Second)
	if hasMode {
		perm = m
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
	key, etag, size, user := f.key, f.etag, f.size, f.attr.user
	f.mu.Unlock()
	meta := encodeMeta(user, sIFREG, perm, uid, gid, mtime)
	newETag, err := f.fsys.rewriteMeta(ctx, key, etag, size, meta)
	if err != nil {
		f.fsys.log.Warn("metadata rewrite (CopyObject onto itself) failed", "key", key, "err", err)
		return errno(err)
	}
	st := statOfMeta(size, newETag, meta)
	f.mu.Lock()
	f.localETag = newETag // the same bytes: open readers follow
	f.etag, f.mtime, f.fetched = newETag, mtime, time.Now()
	f.changed = f.fetched
	f.attr.fromStat(st)
	f.attr.own = true
	f.mu.Unlock()
	f.fsys.meta.Put(key, st)
	f.fillAttr(&out.Attr)
	return 0
}

// flushMeta stores attributes set while a writer was open that no upload
// has carried (the commit had taken its metadata already: a multipart
// upload takes it at CreateMultipartUpload, and `tar x` or rsync may
// chmod or utimes by path after close(2) but before the handle's release):
// one CopyObject onto the object as Setattr does. The writer calls it once
// its handle is released (after writerClosed), without f.mu held.
func (f *File) flushMeta(ctx context.Context) syscall.Errno {
	f.attr.rewrite.Lock()
	defer f.attr.rewrite.Unlock()
	f.mu.Lock()
	if !f.attr.unsynced || f.content != nil || f.unlinked || f.etag == "" {
		f.mu.Unlock()
		return 0
	}
	perm, uid, gid := f.ownerLocked()
	mtime := f.mtimeLocked().Truncate(time.Second)
	key, etag, size, user := f.key, f.etag, f.size, f.attr.user
	f.mu.Unlock()
	meta := encodeMeta(user, sIFREG, perm, uid, gid, mtime)
	newETag, err := f.fsys.rewriteMeta(ctx, key, etag, size, meta)
	// Only now: while the CopyObject was in flight, a getattr past the
	// TTL would otherwise have taken the old metadata from a HEAD
	// (fromStat) and the kernel would have kept it for the attr timeout.
	// Setattr waits on attr.rewrite, so nothing set the values meanwhile.
	f.mu.Lock()
	f.attr.unsynced = false
	f.mu.Unlock()
	if err != nil {
		f.fsys.log.Error("attributes set while the file was open could not be stored (CopyObject onto itself)",
			"key", key, "err", err)
		return errno(err)
	}
	st := statOfMeta(size, newETag, meta)
	f.mu.Lock()
	if f.etag == etag {
		f.localETag = newETag
		f.etag, f.mtime, f.fetched = newETag, mtime, time.Now()
		f.changed = f.fetched
		f.attr.fromStat(st)
		f.attr.own = true
	}
	f.mu.Unlock()
	f.fsys.meta.Put(key, st)
	return 0
}

var _ gofs.NodeGetattrer = (*Dir)(nil)

// Getattr implements the FUSE GETATTR of a directory.
func (d *Dir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var mtime time.Time
	if st, ok := d.fsys.meta.Get(d.keyPath()); ok && st.Kind == cache.Dir {
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

// Setattr implements chmod(2), chown(2) and utimes(2) of a directory: they
// live in memory for as long as the kernel keeps the inode (SEMANTICS.md).
// EROFS on a read-only mount.
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

// rewriteMeta replaces the user metadata of the object key (size bytes,
// ETag etag) in place: CopyObject onto itself with REPLACE, only if it
// still has etag (412: ErrPrecondition). It returns the object's new ETag
// (etag again when the answer carries none: the content is unchanged).
func (fs *FS) rewriteMeta(ctx context.Context, key, etag string, size int64, meta map[string]string) (string, error) {
	fs.meta.ForgetVersion(key)
	newETag, err := fs.client.Copy(ctx, key, key, s3backend.CopyOptions{SrcETag: etag, Meta: meta, Size: size})
	if err != nil {
		return "", err
	}
	if newETag == "" {
		newETag = etag
	}
	return newETag, nil
}
