package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

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
	// PartGrowth: the part size doubles every PartGrowth parts; 0 means
	// 500 (see partGrowth). Tests set it low to exercise growth.
	PartGrowth int32

	// CacheDir holds staging files (staging/) and the files of uploads
	// that failed (recovery/). Empty: $TMPDIR/s3mount-UID.
	CacheDir string
	// StagingLimit bounds the bytes of all staging files together; a
	// write past it answers ENOSPC. 0: no limit.
	StagingLimit int64
	// MaxRenameObjects is the most objects a directory rename moves;
	// beyond it rename answers EXDEV (rename.go). 0 means
	// DefaultMaxRenameObjects; negative: every directory rename answers
	// EXDEV.
	MaxRenameObjects int
	// Copies holds whole local copies of objects read from start to end,
	// which the kernel serves later opens from (passthrough.go); nil: none.
	// Shared by every bucket of an all-buckets mount.
	Copies *cache.Copies

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
	// heads bounds the HEADs listings send for metadata (Dir.fillMeta).
	heads chan struct{}
	// bufs recycles part buffers of PartSize bytes.
	bufs *partBufs
	// staged counts the bytes of all staging files (disk blocks).
	staged atomic.Int64
	// pendingDeletes maps a key to the *File unlinked while open whose
	// object is deleted at its last close (File.closedLocked, claimKey).
	pendingDeletes sync.Map
	// maxWindow caps one handle's readahead, in bytes: a quarter of the
	// block cache, so that readahead never evicts what it fetched.
	maxWindow int64
	// mounted is when the mount started: the mtime of directories without
	// a marker.
	mounted time.Time
	readCounters
}

// New makes the filesystem and its root directory.
func New(cfg Config) (*FS, *Dir) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PartGrowth <= 0 {
		cfg.PartGrowth = partGrowth
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(os.TempDir(), fmt.Sprintf("s3mount-%d", os.Getuid()))
	}
	f := &FS{cfg: cfg, client: cfg.Client, blocks: cfg.Blocks, meta: cfg.Meta, log: cfg.Logger,
		hidden: hiddenKeys{log: cfg.Logger}, downloads: make(chan struct{}, 4*cfg.DownloadThreads),
		heads:   make(chan struct{}, headConcurrency),
		mounted: time.Now(), maxWindow: max(cfg.BlockSize, cfg.Blocks.MaxBytes()/4)}
	f.bufs = sharedPartBufs(cfg.PartSize, 2*(cfg.UploadConcurrency+1))
	root := &Dir{fsys: f, path: strings.TrimSuffix(cfg.Prefix, "/")}
	f.cleanStaging()
	if !cfg.ReadOnly {
		go f.abortOrphanUploads()
	}
	if f.cfg.MaxRenameObjects == 0 {
		f.cfg.MaxRenameObjects = DefaultMaxRenameObjects
	}
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
	// Options are generic mount options for the kernel, passed to
	// fusermount3 as -o (nosuid, noatime, ...; mount(8)).
	Options []string
	// Ops, when set, watches every FUSE operation (fs/trace.go): open
	// handle counts, per-op metrics and the --debug trace.
	Ops *Ops
}

// Root is what Mount serves: the root *Dir of one bucket (New) or the
// all-buckets root *Buckets (NewBuckets).
type Root interface {
	gofs.InodeEmbedder
	// rootConfig is the Config whose UID, GID, ReadOnly and Logger the
	// mount uses.
	rootConfig() *Config
}

func (d *Dir) rootConfig() *Config { return &d.fsys.cfg }

// Mount mounts root at mountpoint and returns once the kernel has finished
// FUSE_INIT, so that the mount answers. The caller serves until
// server.Wait returns.
func Mount(mountpoint string, root Root, mc MountConfig) (*fuse.Server, error) {
	rc := root.rootConfig()
	st, err := os.Stat(mountpoint)
	if err != nil {
		if errors.Is(err, syscall.ENOTCONN) {
			return nil, DeadMountError(mountpoint, err)
		}
		return nil, fmt.Errorf("mountpoint %s: %w", mountpoint, errors.Unwrap(err))
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("mountpoint %s is not a directory", mountpoint)
	}
	if err := CheckNotMounted(mountpoint); err != nil {
		return nil, err
	}
	ttl := mc.TTL
	var noNegative time.Duration
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
			// go-fuse's own notes (e.g. that a 1 MiB request cannot be
			// spliced) are debug-level for us.
			Logger:  slog.NewLogLogger(rootLogger(rc).Handler(), slog.LevelDebug),
			Options: append([]string{"default_permissions"}, mc.Options...),
		},
		EntryTimeout: &ttl,
		AttrTimeout:  &ttl,
		// No kernel negative entries: absent names are answered from
		// the stat cache (no request) and stay absent no longer than it.
		NegativeTimeout: &noNegative,
		UID:             rc.UID,
		GID:             rc.GID,
	}
	if rc.ReadOnly {
		opts.MountOptions.Options = append(opts.MountOptions.Options, "ro")
	}
	// gofs.Mount, with the raw filesystem wrapped by mc.Ops.
	var raw fuse.RawFileSystem = releaseHookFS{gofs.NewNodeFS(root, opts)}
	if mc.Ops != nil {
		raw = mc.Ops.wrap(raw, rootLogger(rc))
	}
	server, err := fuse.NewServer(raw, mountpoint, &opts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("mounting at %s: %w", mountpoint, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, fmt.Errorf("mounting at %s: %w", mountpoint, err)
	}
	if err := raiseReadahead(mountpoint, readaheadKB); err != nil {
		rc.Logger.Debug("kernel readahead left at its default", "err", err)
	}
	return server, nil
}

// readaheadKB is the kernel readahead asked for each mount: 1 MiB, the
// largest FUSE request (max_pages 256). The kernel offers FUSE only 128 KiB
// at FUSE_INIT (VM_READAHEAD_PAGES), so it is raised afterwards through
// the mount's backing device, which needs root.
const readaheadKB = 1024

// raiseReadahead sets /sys/class/bdi/MAJOR:MINOR/read_ahead_kb of the
// mount (Documentation/ABI/testing/sysfs-class-bdi).
func raiseReadahead(mountpoint string, kb int) error {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(p, []byte(fmt.Sprintf("%d\n", kb)), 0)
}

// errno turns an error from s3backend into the errno of a FUSE reply.
func errno(err error) syscall.Errno { return s3backend.ToErrno(err) }

// stat tells what path is, from the metadata cache or from S3: HEAD path
// and LIST path+"/" (max-keys 1) at once; a directory wins over a file of
// the same name. parent is the directory path holding it. A file unlinked
// while open is not found (unlink(2): the name is gone at once), although
// its object stays in S3 until its last close.
func (f *FS) stat(ctx context.Context, path, parent string) (cache.Stat, error) {
	st, err := f.statKey(ctx, path, parent)
	if err == nil && st.Kind == cache.File {
		if _, ok := f.pendingDeletes.Load(path); ok {
			return cache.Stat{}, s3backend.ErrNotFound
		}
	}
	return st, err
}

// statKey is stat without the files unlinked while open. What its
// requests learn carries their start time (Stat.Seen; Meta.Observed).
func (f *FS) statKey(ctx context.Context, path, parent string) (cache.Stat, error) {
	seen := time.Now()
	if st, ok := f.meta.Get(path); ok {
		if st.Kind == cache.Absent {
			return st, s3backend.ErrNotFound
		}
		if st.Kind == cache.File && !st.MetaKnown {
			// A listing's entry: its metadata (mode, mtime, symlink)
			// needs a HEAD.
			info, err := f.client.Head(ctx, path)
			switch {
			case err == nil:
				st = f.learned(path, info)
				st.Seen = seen
				f.meta.Observed(path, st)
				return st, nil
			case errors.Is(err, s3backend.ErrNotFound):
				f.meta.Invalidate(path, parent) // gone, or a directory now: ask afresh
			default:
				return st, nil // the listing's facts, with the mount's defaults
			}
		} else {
			return st, nil
		}
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
		st := cache.Stat{Kind: cache.Dir, Seen: seen}
		if len(page.Objects) > 0 && page.Objects[0].Key == path+"/" {
			st.MTime = page.Objects[0].LastModified.Truncate(time.Second)
		}
		f.meta.Observed(path, st)
		return st, nil
	}
	if h.err == nil {
		st := f.learned(path, h.info)
		st.Seen = seen
		if lerr != nil {
			// The file is certain; whether it is also a directory is
			// not. Answer with the file, but do not cache the guess.
			return st, nil
		}
		f.meta.Observed(path, st)
		return st, nil
	}
	if lerr != nil {
		return cache.Stat{}, lerr
	}
	if !errors.Is(h.err, s3backend.ErrNotFound) {
		return cache.Stat{}, h.err
	}
	f.meta.Observed(path, cache.Stat{Kind: cache.Absent, Seen: seen})
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

// CheckNotMounted returns an error when something is already mounted at
// mountpoint (per /proc/self/mountinfo, proc(5)), so that a second mount is
// not stacked on the first.
func CheckNotMounted(mountpoint string) error {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil // no way to tell: let the mount itself decide
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 || unescapeMountinfo(fields[4]) != abs {
			continue
		}
		fstype := "?"
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				fstype = fields[i+1]
			}
		}
		var sfs unix.Statfs_t
		if err := unix.Statfs(abs, &sfs); errors.Is(err, syscall.ENOTCONN) {
			return DeadMountError(mountpoint, err)
		}
		return fmt.Errorf("mountpoint %s is already mounted (%s): unmount it first (s3mount unmount %s)", mountpoint, fstype, mountpoint)
	}
	return nil
}

// unescapeMountinfo undoes the octal escapes (\040 for space) of
// /proc/self/mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// rootLogger is the mount's logger.
func rootLogger(rc *Config) *slog.Logger {
	if rc.Logger != nil {
		return rc.Logger
	}
	return slog.Default()
}

// uninterruptible detaches a metadata operation from FUSE interrupts. The
// kernel interrupts a request whenever the calling thread gets any signal;
// Go programs get SIGURG all the time (goroutine preemption), and an
// interrupted stat or rmdir would fail with EINTR, which most callers do not
// retry. These operations are short and every S3 request has a deadline
// (s3backend), so they run to the end instead. Reads still honour
// interrupts: a read can wait long on the network, and read(2) callers
// handle EINTR.
func uninterruptible(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// Unmount unmounts the FUSE mount at mountpoint with fusermount3 -u (-z when
// lazy: detached now, finished once no process uses it). Errors read as one
// line: not mounted, busy (with how to find the users), or fusermount3's own.
func Unmount(mountpoint string, lazy bool) error {
	if CheckNotMounted(mountpoint) == nil {
		return fmt.Errorf("%s is not mounted", mountpoint)
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	out, err := exec.Command("fusermount3", append(args, mountpoint)...).CombinedOutput()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(string(out))
	if strings.Contains(msg, "busy") {
		return fmt.Errorf("%s is busy: a process has a file or its working directory there (fuser -vm %s lists them); close them, or unmount with --lazy", mountpoint, mountpoint)
	}
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("fusermount3 %s %s: %s", strings.Join(args, " "), mountpoint, msg)
}

// DeadMountError explains a mountpoint whose stat fails with ENOTCONN: the
// FUSE connection exists but its s3mount process is gone (killed, crashed).
// Other errors pass unchanged.
func DeadMountError(mountpoint string, err error) error {
	if !errors.Is(err, syscall.ENOTCONN) {
		return err
	}
	return fmt.Errorf("the mount at %s is dead (transport endpoint is not connected: its s3mount process is gone); run `s3mount unmount --lazy %s`, then mount again", mountpoint, mountpoint)
}
