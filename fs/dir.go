package fs

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend"
)

// Dir is a directory: the keys under path+"/" (or the whole bucket when
// path is ""). A rename changes path (rename.go), so read it with keyPath.
type Dir struct {
	gofs.Inode
	fsys *FS

	mu   sync.Mutex
	path string // guarded by mu; key path without trailing "/"; "" is the bucket root
	// Attributes set by chmod/chown/utimes, kept in memory only (see
	// SEMANTICS.md); nil: the mount's defaults.
	attrs *fuse.Attr // guarded by mu
}

var _ gofs.InodeEmbedder = (*Dir)(nil)

func (d *Dir) prefix() string { return dirPrefix(d.keyPath()) }

// keyPath is the directory's key path without trailing "/" ("" is the
// bucket root).
func (d *Dir) keyPath() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.path
}

// setKeyPath records a rename.
func (d *Dir) setKeyPath(p string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.path = p
}

var _ gofs.NodeStatfser = (*Dir)(nil)

// Statfs implements statfs(2): S3 has no capacity, so the figures say
// "plenty" (1 PiB free in 4 KiB blocks, 2^40 inodes) and names up to 255 bytes.
func (d *Dir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	const bsize = 4096
	out.Bsize = bsize
	out.Frsize = bsize
	out.Blocks = (1 << 50) / bsize
	out.Bfree = out.Blocks
	out.Bavail = out.Blocks
	out.Files = 1 << 40
	out.Ffree = 1 << 40
	out.NameLen = maxNameLen
	return 0
}

var _ gofs.NodeLookuper = (*Dir)(nil)

// Lookup implements FUSE LOOKUP: see the package doc for the requests sent.
func (d *Dir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if en := nameErrno(name, syscall.ENOENT); en != 0 {
		return nil, en
	}
	// A file being written is known here before S3 knows it.
	if ch := d.GetChild(name); ch != nil {
		if f, ok := ch.Operations().(*File); ok && f.pending() {
			f.fillAttr(&out.Attr)
			return ch, 0
		}
	}
	path := join(d.keyPath(), name)
	st, err := d.fsys.stat(ctx, path, d.keyPath())
	if err != nil {
		return nil, errno(err)
	}
	ch := d.child(ctx, name, st, out)
	// The kernel keeps the entry only as long as the stat cache would, so
	// that a change in S3 shows within --metadata-ttl, not twice that.
	if rem := d.fsys.meta.Remaining(path); rem > 0 {
		out.SetEntryTimeout(rem)
		out.SetAttrTimeout(rem)
	}
	return ch, 0
}

// child returns the inode for name, reusing the existing one when it is of
// the same kind, so that open handles and kernel state stay attached.
func (d *Dir) child(ctx context.Context, name string, st cache.Stat, out *fuse.EntryOut) *gofs.Inode {
	path := join(d.keyPath(), name)
	if ch := d.GetChild(name); ch != nil {
		switch n := ch.Operations().(type) {
		case *File:
			if st.Kind == cache.File && !isSymlink(st) {
				n.update(st)
				n.fillAttr(&out.Attr)
				return ch
			}
		case *Symlink:
			if isSymlink(st) {
				n.update(st)
				n.fillAttr(&out.Attr)
				return ch
			}
		case *Dir:
			if st.Kind == cache.Dir {
				d.fsys.dirAttr(&out.Attr, st.MTime)
				n.overrideAttr(&out.Attr)
				return ch
			}
		}
	}
	switch {
	case st.Kind == cache.Dir:
		d.fsys.dirAttr(&out.Attr, st.MTime)
		return d.NewInode(ctx, &Dir{fsys: d.fsys, path: path}, gofs.StableAttr{Mode: syscall.S_IFDIR})
	case isSymlink(st):
		l := newSymlink(d.fsys, path, st)
		l.fillAttr(&out.Attr)
		return d.NewInode(ctx, l, gofs.StableAttr{Mode: syscall.S_IFLNK})
	}
	f := newFile(d.fsys, path, st)
	f.fillAttr(&out.Attr)
	return d.NewInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG})
}

var _ gofs.NodeReaddirer = (*Dir)(nil)

// headConcurrency bounds the HEADs in flight for all listings of one
// mount (FS.heads).
const headConcurrency = 32

// Readdir implements FUSE READDIR(PLUS): ListObjectsV2 with delimiter "/",
// paged past 1,000 keys, and, while the pages come, a HeadObject of every
// listed file whose metadata the cache does not hold (metaFetch),
// headConcurrency at a time across the mount: a listing carries no user
// metadata, and mode, owner,
// mtime and whether an object is a symlink live there (attr.go). Every
// entry goes into the metadata cache, so the lookups of `ls -l` and
// readdirplus cost no request, and stat shows the same whichever of a
// lookup or a listing filled the cache.
func (d *Dir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	ctx = uninterruptible(ctx)
	dir := d.keyPath()
	prefix := dirPrefix(dir)
	kinds := map[string]cache.Stat{}
	mf := d.newMetaFetch(ctx)
	token := ""
	seen := time.Now() // what the listing and its HEADs learn is as of then
	for {
		page, err := d.fsys.client.List(ctx, prefix, "/", token, 1000)
		if err != nil {
			mf.finish(nil)
			return nil, errno(err)
		}
		for _, p := range page.Prefixes {
			name := strings.TrimSuffix(strings.TrimPrefix(p, prefix), "/")
			if !validName(name) {
				d.fsys.hidden.report(p, whyInvalid(name))
				continue
			}
			st := kinds[name]
			kinds[name] = cache.Stat{Kind: cache.Dir, MTime: st.MTime}
		}
		for _, o := range page.Objects {
			if o.Key == prefix {
				continue // the directory's own marker
			}
			name := strings.TrimPrefix(o.Key, prefix)
			if !validName(name) {
				d.fsys.hidden.report(o.Key, whyInvalid(name))
				continue
			}
			if st, ok := kinds[name]; ok && st.Kind == cache.Dir {
				continue // a directory of the same name wins
			}
			if _, ok := d.fsys.pendingDeletes.Load(o.Key); ok {
				continue // unlinked while open: the name is gone already
			}
			st := cache.Stat{Kind: cache.File, Size: o.Size, ETag: o.ETag, MTime: o.LastModified.Truncate(time.Second)}
			kinds[name] = st
			mf.add(name, join(dir, name), st, o.LastModified)
		}
		if page.NextToken == "" {
			break
		}
		token = page.NextToken
	}
	mf.finish(kinds)
	for name, st := range kinds {
		p := join(dir, name)
		if st.Kind == cache.Dir && st.MTime.IsZero() {
			// A listing names a directory without its marker's time:
			// keep the time a lookup learned.
			if old, ok := d.fsys.meta.Get(p); ok && old.Kind == cache.Dir {
				st.MTime = old.MTime
			}
		}
		st.Seen = seen
		d.fsys.meta.Observed(p, st)
	}
	d.fsys.meta.MarkListed(dir)
	// Files created here and not yet uploaded are entries too.
	for name, ch := range d.Children() {
		if f, ok := ch.Operations().(*File); ok && f.pending() {
			if _, ok := kinds[name]; !ok {
				kinds[name] = cache.Stat{Kind: cache.File}
			}
		}
	}
	names := make([]string, 0, len(kinds))
	for name := range kinds {
		names = append(names, name)
	}
	sort.Strings(names)
	list := make([]fuse.DirEntry, 0, len(names)+2)
	list = append(list, fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR}, fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR})
	for _, name := range names {
		mode := uint32(syscall.S_IFREG)
		switch st := kinds[name]; {
		case st.Kind == cache.Dir:
			mode = syscall.S_IFDIR
		case isSymlink(st):
			mode = syscall.S_IFLNK
		}
		list = append(list, fuse.DirEntry{Name: name, Mode: mode})
	}
	return gofs.NewListDirStream(list), 0
}

// metaFetch learns the metadata of a listing's files while the listing
// goes on: a file whose metadata the cache holds for the same ETag, whose
// version (ETag and LastModified) a HEAD already described
// (cache.Meta.PutVersion), or whose node holds the version this mount
// wrote (File.ownVersion) costs nothing; the others get a HeadObject, from
// at most headConcurrency workers per listing, each HEAD also holding one
// of the mount's FS.heads slots.
type metaFetch struct {
	d       *Dir
	ctx     context.Context
	jobs    chan metaJob
	started int // workers started; only the listing goroutine touches it
	wg      sync.WaitGroup

	mu    sync.Mutex
	known map[string]cache.Stat // guarded by mu; name → what is known
	gone  map[string]bool       // guarded by mu; deleted since listed (404)
}

type metaJob struct{ name, path string }

func (d *Dir) newMetaFetch(ctx context.Context) *metaFetch {
	return &metaFetch{d: d, ctx: ctx, jobs: make(chan metaJob, 1000), known: map[string]cache.Stat{}, gone: map[string]bool{}}
}

// add asks for the metadata of the listed file name (key path, listed
// as st with LastModified lastMod).
func (m *metaFetch) add(name, path string, st cache.Stat, lastMod time.Time) {
	meta := m.d.fsys.meta
	if old, ok := meta.Get(path); ok && old.Kind == cache.File && old.MetaKnown && old.ETag == st.ETag {
		m.record(name, old)
		return
	}
	if old, ok := meta.Version(path, st.ETag, lastMod); ok {
		m.record(name, old)
		return
	}
	if ch := m.d.GetChild(name); ch != nil {
		if f, ok := ch.Operations().(*File); ok {
			if own, ok := f.ownVersion(st.ETag, lastMod); ok {
				m.record(name, own)
				return
			}
		}
	}
	if m.started < headConcurrency {
		m.started++
		m.wg.Add(1)
		go m.worker()
	}
	m.jobs <- metaJob{name, path}
}

func (m *metaFetch) record(name string, st cache.Stat) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.known[name] = st
}

func (m *metaFetch) worker() {
	defer m.wg.Done()
	fsys := m.d.fsys
	for j := range m.jobs {
		fsys.heads <- struct{}{}
		info, err := fsys.client.Head(m.ctx, j.path)
		<-fsys.heads
		switch {
		case err == nil:
			m.record(j.name, fsys.learned(j.path, info))
		case errors.Is(err, s3backend.ErrNotFound):
			m.mu.Lock()
			m.gone[j.name] = true
			m.mu.Unlock()
		default:
			fsys.log.Debug("readdir: HEAD failed; the entry shows the mount's defaults until a lookup", "key", j.path, "err", err)
		}
	}
}

// finish waits for the HEADs and puts what they learned into the file
// entries of kinds (nil: just wait). A file gone since the listing is
// dropped; one whose HEAD failed keeps the listing's entry (MetaKnown
// false), whose metadata a lookup fetches.
func (m *metaFetch) finish(kinds map[string]cache.Stat) {
	close(m.jobs)
	m.wg.Wait()
	for name, st := range m.known {
		if k, ok := kinds[name]; ok && k.Kind == cache.File {
			kinds[name] = st
		}
	}
	for name := range m.gone {
		if k, ok := kinds[name]; ok && k.Kind == cache.File {
			delete(kinds, name)
		}
	}
}

var _ gofs.NodeMkdirer = (*Dir)(nil)

// Mkdir implements mkdir(2): PutObject of an empty "name/" marker carrying
// s3fs's metadata (mode with S_IFDIR, uid, gid, mtime; attr.go).
// EEXIST when the name exists, EROFS on a read-only mount.
func (d *Dir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if d.fsys.cfg.ReadOnly {
		return nil, syscall.EROFS
	}
	if en := nameErrno(name, syscall.EINVAL); en != 0 {
		return nil, en
	}
	path := join(d.keyPath(), name)
	if _, err := d.fsys.stat(ctx, path, d.keyPath()); err == nil {
		return nil, syscall.EEXIST
	} else if !errors.Is(err, s3backend.ErrNotFound) {
		return nil, errno(err)
	}
	now := time.Now().Truncate(time.Second)
	meta := encodeMeta(nil, sIFDIR, mode, d.fsys.cfg.UID, d.fsys.cfg.GID, now)
	if _, err := d.fsys.client.Put(ctx, path+"/", nil, s3backend.PutOptions{Meta: meta}); err != nil {
		return nil, errno(err)
	}
	st := cache.Stat{Kind: cache.Dir, MTime: now}
	d.fsys.meta.Put(path, st)
	// Nothing was under path/ (stat said so): its listing is known empty,
	// and lookups in it (tar, cp -r) need no request.
	d.fsys.meta.MarkListed(path)
	return d.child(ctx, name, st, out), 0
}

var _ gofs.NodeRmdirer = (*Dir)(nil)

// Rmdir implements rmdir(2): ENOTEMPTY when any key other than the marker
// lies under name/ (or a file is being written there), else DeleteObject of
// the marker. An implicit directory the kernel knows, now without keys,
// is removed without a request.
func (d *Dir) Rmdir(ctx context.Context, name string) syscall.Errno {
	ctx = uninterruptible(ctx)
	if d.fsys.cfg.ReadOnly {
		return syscall.EROFS
	}
	path := join(d.keyPath(), name)
	if ch := d.GetChild(name); ch != nil {
		if sub, ok := ch.Operations().(*Dir); ok {
			for _, gc := range sub.Children() {
				if f, ok := gc.Operations().(*File); ok && f.pending() {
					return syscall.ENOTEMPTY
				}
			}
		}
	}
	d.fsys.awaitDeletes(ctx, path+"/")
	page, err := d.fsys.client.List(ctx, path+"/", "", "", 2)
	if err != nil {
		return errno(err)
	}
	marker := false
	for _, o := range page.Objects {
		if o.Key != path+"/" {
			return syscall.ENOTEMPTY
		}
		marker = true
	}
	if len(page.Prefixes) > 0 {
		return syscall.ENOTEMPTY
	}
	if !marker {
		// An implicit directory (no marker) whose last key was just
		// deleted, as `rm -r` does: it is gone from S3 already, and the
		// kernel's entry goes now.
		if ch := d.GetChild(name); ch != nil {
			if _, ok := ch.Operations().(*Dir); ok {
				d.fsys.meta.Put(path, cache.Stat{Kind: cache.Absent})
				return 0
			}
		}
		return syscall.ENOENT
	}
	if err := d.fsys.client.Delete(ctx, path+"/"); err != nil {
		return errno(err)
	}
	d.fsys.meta.Put(path, cache.Stat{Kind: cache.Absent})
	return 0
}

var _ gofs.NodeUnlinker = (*Dir)(nil)

// Unlink implements unlink(2): DeleteObject. A file open for writing that
// is unlinked is not uploaded when it is closed; a file with open handles
// is deleted in S3 when the last one closes, so they keep reading it.
func (d *Dir) Unlink(ctx context.Context, name string) syscall.Errno {
	ctx = uninterruptible(ctx)
	if d.fsys.cfg.ReadOnly {
		return syscall.EROFS
	}
	path := join(d.keyPath(), name)
	if ch := d.GetChild(name); ch != nil {
		if f, ok := ch.Operations().(*File); ok {
			if f.markUnlinked() {
				d.fsys.meta.Put(path, cache.Stat{Kind: cache.Absent})
				return 0 // never uploaded: nothing in S3 to delete
			}
		}
	}
	st, err := d.fsys.stat(ctx, path, d.keyPath())
	if err != nil {
		return errno(err)
	}
	if st.Kind == cache.Dir {
		return syscall.EISDIR
	}
	if err := d.fsys.client.Delete(ctx, path); err != nil {
		return errno(err)
	}
	d.fsys.meta.Put(path, cache.Stat{Kind: cache.Absent})
	return 0
}

var _ gofs.NodeCreater = (*Dir)(nil)

// Create implements open(2) with O_CREAT of a new name: the file exists in
// this mount at once and in S3 from its first flush, fsync or close.
func (d *Dir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if d.fsys.cfg.ReadOnly {
		return nil, nil, 0, syscall.EROFS
	}
	if en := nameErrno(name, syscall.EINVAL); en != 0 {
		return nil, nil, 0, en
	}
	path := join(d.keyPath(), name)
	f := newFile(d.fsys, path, cache.Stat{Kind: cache.File, MTime: time.Now()})
	f.createdWithMode(mode)
	// A file of this name unlinked while open is deleted in S3 at its
	// last close; creating the name again cancels that delete, and this
	// file's commit replaces the object unconditionally (If-None-Match
	// would find the old one, as sqlite's journal does).
	claimed := d.fsys.claimKey(path)
	h, en := f.openWriter(flags, true)
	if en != 0 {
		return nil, nil, 0, en
	}
	if claimed {
		h.c.mu.Lock()
		h.c.created = false
		h.c.mu.Unlock()
	}
	f.fillAttr(&out.Attr)
	inode := d.NewInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG})
	d.fsys.meta.Put(path, cache.Stat{Kind: cache.File, MTime: time.Now()})
	return inode, h, writerFlags(flags), 0
}
