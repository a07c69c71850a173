package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend"
)

// Config is what the filesystem needs. Sizes are bytes.
type Config struct {
	Client s3backend.Client
	Blocks *cache.Blocks
	Meta   *cache.Meta
	// Prefix restricts the tree to keys under it: "" or a prefix ending in "/".
	Prefix string

	BlockSize         int64 // unit of ranged GETs and of the block cache
	DownloadThreads   int   // GETs in flight ahead of one sequential reader
	PartSize          int64 // multipart part size, ≥ 5 MiB
	UploadConcurrency int   // parts of one file in flight

	UID, GID          uint32
	FileMode, DirMode uint32 // permission bits only
	ReadOnly          bool

	Logger *slog.Logger
}

// FS is the state shared by every node of one mount.
type FS struct {
	cfg    Config
	client s3backend.Client
	blocks *cache.Blocks
	meta   *cache.Meta
	log    *slog.Logger
	hidden hiddenKeys
	// downloads bounds GETs in flight across all files.
	downloads chan struct{}
	// bufs recycles part buffers of PartSize bytes.
	bufs sync.Pool
	// mounted is when the mount started: the mtime of directories without
	// a marker.
	mounted time.Time
}

// New makes the filesystem and its root directory.
func New(cfg Config) (*FS, *Dir) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := &FS{cfg: cfg, client: cfg.Client, blocks: cfg.Blocks, meta: cfg.Meta, log: cfg.Logger,
		hidden: hiddenKeys{log: cfg.Logger}, downloads: make(chan struct{}, 4*cfg.DownloadThreads),
		mounted: time.Now()}
	f.bufs.New = func() any { b := make([]byte, 0, cfg.PartSize); return &b }
	root := &Dir{fsys: f, path: strings.TrimSuffix(cfg.Prefix, "/")}
	return f, root
}

// MountConfig holds the kernel-facing settings of a mount.
type MountConfig struct {
	// FsName is shown as the "Filesystem" column of df and mount.
	FsName string
	// AllowOther is FUSE allow_other (fuse(8)).
	AllowOther bool
	// TTL is the kernel entry, attr and negative-entry timeout.
	TTL time.Duration
	// Debug logs every FUSE request.
	Debug bool
}

// Mount mounts root at mountpoint and returns once the kernel has finished
// FUSE_INIT, so that the mount answers. The caller serves until
// server.Wait returns.
func Mount(mountpoint string, root *Dir, mc MountConfig) (*fuse.Server, error) {
	st, err := os.Stat(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("mountpoint %s: %w", mountpoint, errors.Unwrap(err))
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("mountpoint %s is not a directory", mountpoint)
	}
	ttl := mc.TTL
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName:        mc.FsName,
			Name:          "s3mount",
			AllowOther:    mc.AllowOther,
			MaxWrite:      1 << 20,
			MaxReadAhead:  1 << 20,
			MaxBackground: 64,
			DisableXAttrs: true,
			Debug:         mc.Debug,
			Options:       []string{"default_permissions"},
		},
		EntryTimeout:    &ttl,
		AttrTimeout:     &ttl,
		NegativeTimeout: &ttl,
		UID:             root.fsys.cfg.UID,
		GID:             root.fsys.cfg.GID,
	}
	if root.fsys.cfg.ReadOnly {
		opts.MountOptions.Options = append(opts.MountOptions.Options, "ro")
	}
	server, err := gofs.Mount(mountpoint, root, opts)
	if err != nil {
		return nil, fmt.Errorf("mounting at %s: %w", mountpoint, err)
	}
	return server, nil
}

// errno turns an error from s3backend into the errno of a FUSE reply.
func errno(err error) syscall.Errno { return s3backend.ToErrno(err) }

// stat tells what path is, from the metadata cache or from S3: HEAD path
// and LIST path+"/" (max-keys 1) at once; a directory wins over a file of
// the same name. parent is the directory path holding it.
func (f *FS) stat(ctx context.Context, path, parent string) (cache.Stat, error) {
	if st, ok := f.meta.Get(path); ok {
		if st.Kind == cache.Absent {
			return st, s3backend.ErrNotFound
		}
		return st, nil
	}
	if f.meta.Listed(parent) {
		return cache.Stat{}, s3backend.ErrNotFound
	}
	type headResult struct {
		info s3backend.ObjectInfo
		err  error
	}
	hc := make(chan headResult, 1)
	go func() {
		info, err := f.client.Head(ctx, path)
		hc <- headResult{info, err}
	}()
	page, lerr := f.client.List(ctx, path+"/", "", "", 1)
	h := <-hc
	if lerr == nil && (len(page.Objects) > 0 || len(page.Prefixes) > 0) {
		st := cache.Stat{Kind: cache.Dir}
		if len(page.Objects) > 0 && page.Objects[0].Key == path+"/" {
			st.MTime = page.Objects[0].LastModified
		}
		f.meta.Put(path, st)
		return st, nil
	}
	if h.err == nil {
		st := cache.Stat{Kind: cache.File, Size: h.info.Size, ETag: h.info.ETag, MTime: h.info.LastModified}
		if lerr != nil {
			// The file is certain; whether it is also a directory is
			// not. Answer with the file, but do not cache the guess.
			return st, nil
		}
		f.meta.Put(path, st)
		return st, nil
	}
	if lerr != nil {
		return cache.Stat{}, lerr
	}
	if !errors.Is(h.err, s3backend.ErrNotFound) {
		return cache.Stat{}, h.err
	}
	f.meta.Put(path, cache.Stat{Kind: cache.Absent})
	return cache.Stat{}, s3backend.ErrNotFound
}

// dirAttr fills the attributes every directory shares.
func (f *FS) dirAttr(out *fuse.Attr, mtime time.Time) {
	if mtime.IsZero() {
		mtime = f.mounted
	}
	out.Mode = syscall.S_IFDIR | f.cfg.DirMode
	// nlink 1 tells find(1) the link count says nothing about subdirectories.
	out.Nlink = 1
	out.Uid, out.Gid = f.cfg.UID, f.cfg.GID
	out.Size = 4096
	out.Blksize = 4096
	out.SetTimes(nil, &mtime, &mtime)
}
