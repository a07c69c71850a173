package fs

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend"
)

// BucketsConfig is what an all-buckets mount needs.
type BucketsConfig struct {
	// Buckets lists, creates and deletes buckets, and makes each bucket's
	// Client in the bucket's region.
	Buckets s3backend.Buckets
	// Bucket is the Config every bucket's filesystem starts from; its
	// Client, Meta and Prefix are set per bucket. Blocks may be shared:
	// the block cache is keyed by bucket.
	Bucket Config
	// NewMeta makes one bucket's metadata cache. Its keys are paths within
	// the bucket, so buckets never share one.
	NewMeta func() *cache.Meta
	// TTL is how long a bucket listing is trusted by lookups.
	TTL time.Duration
}

// Buckets is the root of an all-buckets mount: one directory per bucket
// (ListBuckets), each the root of that bucket's own filesystem (New), with
// its own Client in the bucket's region and its own metadata cache. mkdir
// here is CreateBucket, rmdir DeleteBucket.
type Buckets struct {
	gofs.Inode
	cfg     BucketsConfig
	mounted time.Time

	mu sync.Mutex
	// listed is when names was filled; names is the last listing.
	listed time.Time                       // guarded by mu
	names  map[string]s3backend.BucketInfo // guarded by mu
	// filesystems made so far, by bucket name; a bucket's FS (and so its
	// metadata cache) lives as long as the mount or until rmdir.
	filesystems map[string]*FS // guarded by mu
}

// NewBuckets makes the root of an all-buckets mount.
func NewBuckets(cfg BucketsConfig) *Buckets {
	if cfg.Bucket.Logger == nil {
		cfg.Bucket.Logger = slog.Default()
	}
	return &Buckets{cfg: cfg, mounted: time.Now(), names: map[string]s3backend.BucketInfo{},
		filesystems: map[string]*FS{}}
}

var _ Root = (*Buckets)(nil)

func (b *Buckets) rootConfig() *Config { return &b.cfg.Bucket }

// list asks S3 for the buckets and remembers the answer.
func (b *Buckets) list(ctx context.Context) ([]s3backend.BucketInfo, error) {
	infos, err := b.cfg.Buckets.ListBuckets(ctx)
	if err != nil {
		return nil, err
	}
	names := make(map[string]s3backend.BucketInfo, len(infos))
	for _, bi := range infos {
		names[bi.Name] = bi
	}
	b.mu.Lock()
	b.names, b.listed = names, time.Now()
	b.mu.Unlock()
	return infos, nil
}

// known says whether name is a bucket, from a listing younger than TTL,
// else from a fresh one.
func (b *Buckets) known(ctx context.Context, name string) (s3backend.BucketInfo, error) {
	b.mu.Lock()
	bi, ok := b.names[name]
	fresh := time.Since(b.listed) < b.cfg.TTL
	b.mu.Unlock()
	if ok && fresh {
		return bi, nil
	}
	if _, err := b.list(ctx); err != nil {
		return bi, err
	}
	b.mu.Lock()
	bi, ok = b.names[name]
	b.mu.Unlock()
	if !ok {
		return bi, s3backend.ErrNotFound
	}
	return bi, nil
}

// fsFor returns the filesystem of bucket name, making it (and finding the
// bucket's region) on first use.
func (b *Buckets) fsFor(ctx context.Context, name string) (*FS, error) {
	b.mu.Lock()
	f, ok := b.filesystems[name]
	b.mu.Unlock()
	if ok {
		return f, nil
	}
	// No lock across the request: GetBucketLocation may take a while, and
	// two lookups racing here make the same client (Buckets caches it).
	client, err := b.cfg.Buckets.Client(ctx, name)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if f, ok := b.filesystems[name]; ok {
		return f, nil
	}
	cfg := b.cfg.Bucket
	cfg.Client, cfg.Meta, cfg.Prefix = client, b.cfg.NewMeta(), ""
	f, _ = New(cfg)
	b.filesystems[name] = f
	return f, nil
}

// child returns the inode of bucket name, reusing the kernel's.
func (b *Buckets) child(ctx context.Context, name string, created time.Time, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	f, err := b.fsFor(ctx, name)
	if err != nil {
		return nil, errno(err)
	}
	f.dirAttr(&out.Attr, created)
	if ch := b.GetChild(name); ch != nil {
		if d, ok := ch.Operations().(*Dir); ok && d.fsys == f {
			d.overrideAttr(&out.Attr)
			return ch, 0
		}
	}
	return b.NewInode(ctx, &Dir{fsys: f, path: ""}, gofs.StableAttr{Mode: syscall.S_IFDIR}), 0
}

var _ gofs.NodeGetattrer = (*Buckets)(nil)

// Getattr implements GETATTR of the root: a directory owned by the mount's
// uid and gid, dated from the mount.
func (b *Buckets) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	c := b.cfg.Bucket
	mtime := b.mounted
	out.Mode = syscall.S_IFDIR | c.DirMode
	out.Nlink = 1
	out.Uid, out.Gid = c.UID, c.GID
	out.Size = 4096
	out.Blksize = 4096
	out.SetTimes(nil, &mtime, &mtime)
	return 0
}

var _ gofs.NodeStatfser = (*Buckets)(nil)

// Statfs implements statfs(2) with the figures of a bucket's root (which
// depend on no field of the Dir).
func (b *Buckets) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return (&Dir{}).Statfs(ctx, out)
}

var _ gofs.NodeLookuper = (*Buckets)(nil)

// Lookup implements LOOKUP of a bucket: it must be in ListBuckets (the
// listing is trusted for TTL); its region is found once, on first use.
func (b *Buckets) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	bi, err := b.known(ctx, name)
	if err != nil {
		return nil, errno(err)
	}
	return b.child(ctx, name, bi.Created, out)
}

var _ gofs.NodeReaddirer = (*Buckets)(nil)

// Readdir implements READDIR of the root: ListBuckets, every page.
func (b *Buckets) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	ctx = uninterruptible(ctx)
	infos, err := b.list(ctx)
	if err != nil {
		return nil, errno(err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	list := make([]fuse.DirEntry, 0, len(infos)+2)
	list = append(list, fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR}, fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR})
	for _, bi := range infos {
		list = append(list, fuse.DirEntry{Name: bi.Name, Mode: syscall.S_IFDIR})
	}
	return gofs.NewListDirStream(list), 0
}

var _ gofs.NodeMkdirer = (*Buckets)(nil)

// Mkdir implements mkdir(2) at the root: CreateBucket in the connection's
// region. EEXIST when the bucket exists (BucketAlreadyOwnedByYou, or
// BucketAlreadyExists for someone else's), EINVAL for a name S3 refuses.
func (b *Buckets) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if b.cfg.Bucket.ReadOnly {
		return nil, syscall.EROFS
	}
	if _, err := b.known(ctx, name); err == nil {
		return nil, syscall.EEXIST
	}
	if err := b.cfg.Buckets.CreateBucket(ctx, name); err != nil {
		return nil, errno(err)
	}
	now := time.Now()
	b.mu.Lock()
	b.names[name] = s3backend.BucketInfo{Name: name, Created: now}
	b.mu.Unlock()
	ch, en := b.child(ctx, name, now, out)
	if en == 0 {
		// A new bucket is empty: lookups in it need no request.
		ch.Operations().(*Dir).fsys.meta.MarkListed("")
	}
	return ch, en
}

var _ gofs.NodeRmdirer = (*Buckets)(nil)

// Rmdir implements rmdir(2) at the root: DeleteBucket; ENOTEMPTY while the
// bucket holds any object (BucketNotEmpty) or a file is being written in
// it.
func (b *Buckets) Rmdir(ctx context.Context, name string) syscall.Errno {
	ctx = uninterruptible(ctx)
	if b.cfg.Bucket.ReadOnly {
		return syscall.EROFS
	}
	if ch := b.GetChild(name); ch != nil && pendingUnder(ch) {
		return syscall.ENOTEMPTY
	}
	b.mu.Lock()
	fsys := b.filesystems[name]
	b.mu.Unlock()
	if fsys != nil {
		fsys.awaitDeletes(ctx, "")
	}
	if err := b.cfg.Buckets.DeleteBucket(ctx, name); err != nil {
		return errno(err)
	}
	b.mu.Lock()
	delete(b.names, name)
	delete(b.filesystems, name)
	b.mu.Unlock()
	return 0
}

var _ gofs.NodeCreater = (*Buckets)(nil)

// Create implements open(2) with O_CREAT at the root: S3 keeps no object
// outside a bucket, so EPERM.
func (b *Buckets) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if b.cfg.Bucket.ReadOnly {
		return nil, nil, 0, syscall.EROFS
	}
	return nil, nil, 0, syscall.EPERM
}

var _ gofs.NodeRenamer = (*Buckets)(nil)

// Rename implements rename(2) of a bucket: S3 cannot rename buckets, and
// copying every object of one (what EXDEV would make mv(1) do) is not
// something to start by accident, so EPERM.
func (b *Buckets) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EPERM
}

// pendingUnder says whether a file under the inode is being written and
// not yet in S3 (it would be lost with its bucket). It walks the inodes the
// kernel knows, which include every file open for writing.
func pendingUnder(in *gofs.Inode) bool {
	for _, ch := range in.Children() {
		switch n := ch.Operations().(type) {
		case *File:
			if n.pending() {
				return true
			}
		case *Dir:
			if pendingUnder(ch) {
				return true
			}
		}
	}
	return false
}
