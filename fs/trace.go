package fs

import (
	"context"
	"encoding/binary"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Ops watches every FUSE request of one mount, below go-fuse's node layer
// (it wraps the fuse.RawFileSystem that Mount serves): it counts the open
// file and directory handles, reports each operation to Observe (metrics),
// and with Trace logs one debug line per operation with its node path,
// errno and duration. Give it to Mount in MountConfig.Ops; its zero value
// only counts handles.
type Ops struct {
	// Observe, when set, is called once per FUSE operation with its FUSE
	// opcode name (LOOKUP, READ, ...), its errno (0 for success) and how
	// long it took. It must be safe for concurrent use and fast.
	Observe func(op string, errno syscall.Errno, d time.Duration)
	// Trace logs every operation at debug level to Logger: op, node path
	// (relative to the mount, "?N" for a node whose name is unknown), errno
	// and duration in microseconds.
	Trace bool
	// Logger receives the trace; nil: the mount's logger.
	Logger *slog.Logger

	openFiles, openDirs atomic.Int64
	paths               pathTable
}

// OpenFiles is the number of open file handles (OPEN and CREATE not yet
// released).
func (o *Ops) OpenFiles() int64 { return o.openFiles.Load() }

// OpenDirs is the number of open directory handles (OPENDIR not yet
// released).
func (o *Ops) OpenDirs() int64 { return o.openDirs.Load() }

// ErrnoName is the symbolic name of an errno for logs and metric labels:
// "OK" for 0, "ENOENT", ..., or its number when it has no name.
func ErrnoName(e syscall.Errno) string {
	if e == 0 {
		return "OK"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return strconv.Itoa(int(e))
}

// pathTable remembers each node's parent and name, as learnt from the
// replies that create nodes, so that a trace can name the node of a
// request. Only kept while tracing.
type pathTable struct {
	mu    sync.Mutex
	nodes map[uint64]pathEntry // guarded by mu
}

type pathEntry struct {
	parent uint64
	name   string
}

func (p *pathTable) add(node, parent uint64, name string) {
	p.mu.Lock()
	if p.nodes == nil {
		p.nodes = map[uint64]pathEntry{}
	}
	p.nodes[node] = pathEntry{parent, name}
	p.mu.Unlock()
}

func (p *pathTable) forget(node uint64) {
	p.mu.Lock()
	delete(p.nodes, node)
	p.mu.Unlock()
}

func (p *pathTable) rename(oldParent uint64, oldName string, newParent uint64, newName string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, e := range p.nodes {
		if e.parent == oldParent && e.name == oldName {
			p.nodes[id] = pathEntry{newParent, newName}
			return
		}
	}
}

// path names node (and name under it, when not empty) relative to the
// mount: "/" for the root.
func (p *pathTable) path(node uint64, name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := ""
	for depth := 0; node != fuse.FUSE_ROOT_ID && depth < 512; depth++ {
		e, ok := p.nodes[node]
		if !ok {
			s = "?" + strconv.FormatUint(node, 10) + s
			break
		}
		s = "/" + e.name + s
		node = e.parent
	}
	if name != "" {
		s += "/" + name
	}
	if s == "" {
		return "/"
	}
	return s
}

// wrap returns raw with every operation watched by o.
func (o *Ops) wrap(raw fuse.RawFileSystem, log *slog.Logger) fuse.RawFileSystem {
	if o.Logger == nil {
		o.Logger = log
	}
	return &tracedFS{RawFileSystem: raw, o: o}
}

// tracedFS is the wrapper. Each method times the call, then hands op, node,
// errno and duration to done.
type tracedFS struct {
	fuse.RawFileSystem
	o *Ops
}

func (t *tracedFS) done(op string, start time.Time, node uint64, name string, st fuse.Status) {
	d := time.Since(start)
	errno := syscall.Errno(0)
	if !st.Ok() {
		errno = syscall.Errno(st)
	}
	if t.o.Observe != nil {
		t.o.Observe(op, errno, d)
	}
	if t.o.Trace {
		t.o.Logger.LogAttrs(context.Background(), slog.LevelDebug, "fuse",
			slog.String("op", op), slog.String("path", t.o.paths.path(node, name)),
			slog.String("errno", ErrnoName(errno)), slog.Int64("us", d.Microseconds()))
	}
}

// entry records a node made by a reply (LOOKUP, CREATE, MKDIR, ...).
func (t *tracedFS) entry(st fuse.Status, parent uint64, name string, out *fuse.EntryOut) {
	if t.o.Trace && st.Ok() && out.NodeId != 0 {
		t.o.paths.add(out.NodeId, parent, name)
	}
}

func (t *tracedFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Lookup(cancel, h, name, out)
	t.entry(st, h.NodeId, name, out)
	seen := st
	if st.Ok() && out.NodeId == 0 {
		// A negative entry (go-fuse answers ENOENT so when a
		// NegativeTimeout is set): the caller gets ENOENT.
		seen = fuse.ENOENT
	}
	t.done("LOOKUP", s, h.NodeId, name, seen)
	return st
}

func (t *tracedFS) Forget(nodeid, nlookup uint64) {
	s := time.Now()
	t.RawFileSystem.Forget(nodeid, nlookup)
	t.done("FORGET", s, nodeid, "", fuse.OK)
	if t.o.Trace {
		t.o.paths.forget(nodeid)
	}
}

func (t *tracedFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.GetAttr(cancel, in, out)
	t.done("GETATTR", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.SetAttr(cancel, in, out)
	t.done("SETATTR", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Mknod(cancel, in, name, out)
	t.entry(st, in.NodeId, name, out)
	t.done("MKNOD", s, in.NodeId, name, st)
	return st
}

func (t *tracedFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Mkdir(cancel, in, name, out)
	t.entry(st, in.NodeId, name, out)
	t.done("MKDIR", s, in.NodeId, name, st)
	return st
}

func (t *tracedFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Unlink(cancel, h, name)
	t.done("UNLINK", s, h.NodeId, name, st)
	return st
}

func (t *tracedFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Rmdir(cancel, h, name)
	t.done("RMDIR", s, h.NodeId, name, st)
	return st
}

func (t *tracedFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Rename(cancel, in, oldName, newName)
	if t.o.Trace && st.Ok() {
		t.o.paths.rename(in.NodeId, oldName, in.Newdir, newName)
	}
	t.done("RENAME", s, in.NodeId, oldName, st)
	return st
}

func (t *tracedFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Link(cancel, in, name, out)
	t.entry(st, in.NodeId, name, out)
	t.done("LINK", s, in.NodeId, name, st)
	return st
}

func (t *tracedFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Symlink(cancel, h, target, name, out)
	t.entry(st, h.NodeId, name, out)
	t.done("SYMLINK", s, h.NodeId, name, st)
	return st
}

func (t *tracedFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	s := time.Now()
	b, st := t.RawFileSystem.Readlink(cancel, h)
	t.done("READLINK", s, h.NodeId, "", st)
	return b, st
}

func (t *tracedFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Access(cancel, in)
	t.done("ACCESS", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	s := time.Now()
	n, st := t.RawFileSystem.GetXAttr(cancel, h, attr, dest)
	t.done("GETXATTR", s, h.NodeId, "", st)
	return n, st
}

func (t *tracedFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	s := time.Now()
	n, st := t.RawFileSystem.ListXAttr(cancel, h, dest)
	t.done("LISTXATTR", s, h.NodeId, "", st)
	return n, st
}

func (t *tracedFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.SetXAttr(cancel, in, attr, data)
	t.done("SETXATTR", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.RemoveXAttr(cancel, h, attr)
	t.done("REMOVEXATTR", s, h.NodeId, "", st)
	return st
}

func (t *tracedFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Create(cancel, in, name, out)
	if st.Ok() {
		t.o.openFiles.Add(1)
	}
	t.entry(st, in.NodeId, name, &out.EntryOut)
	t.done("CREATE", s, in.NodeId, name, st)
	return st
}

func (t *tracedFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Tmpfile(cancel, in, out)
	if st.Ok() {
		t.o.openFiles.Add(1)
	}
	t.done("TMPFILE", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Open(cancel, in, out)
	if st.Ok() {
		t.o.openFiles.Add(1)
	}
	t.done("OPEN", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	s := time.Now()
	r, st := t.RawFileSystem.Read(cancel, in, buf)
	t.done("READ", s, in.NodeId, "", st)
	return r, st
}

func (t *tracedFS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Lseek(cancel, in, out)
	t.done("LSEEK", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) GetLk(cancel <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.GetLk(cancel, in, out)
	t.done("GETLK", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) SetLk(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.SetLk(cancel, in)
	t.done("SETLK", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.SetLkw(cancel, in)
	t.done("SETLKW", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	s := time.Now()
	t.RawFileSystem.Release(cancel, in)
	t.o.openFiles.Add(-1)
	t.done("RELEASE", s, in.NodeId, "", fuse.OK)
}

func (t *tracedFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	s := time.Now()
	n, st := t.RawFileSystem.Write(cancel, in, data)
	t.done("WRITE", s, in.NodeId, "", st)
	return n, st
}

func (t *tracedFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	s := time.Now()
	n, st := t.RawFileSystem.Writev(cancel, in, data)
	t.done("WRITE", s, in.NodeId, "", st)
	return n, st
}

func (t *tracedFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	s := time.Now()
	n, st := t.RawFileSystem.CopyFileRange(cancel, in)
	t.done("COPY_FILE_RANGE", s, in.NodeId, "", st)
	return n, st
}

func (t *tracedFS) Ioctl(cancel <-chan struct{}, in *fuse.IoctlIn, inbuf []byte, out *fuse.IoctlOut, outbuf []byte) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Ioctl(cancel, in, inbuf, out, outbuf)
	t.done("IOCTL", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Flush(cancel, in)
	t.done("FLUSH", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Fsync(cancel, in)
	t.done("FSYNC", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Fallocate(cancel, in)
	t.done("FALLOCATE", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.OpenDir(cancel, in, out)
	if st.Ok() {
		t.o.openDirs.Add(1)
	}
	t.done("OPENDIR", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.ReadDir(cancel, in, out)
	t.done("READDIR", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.ReadDirPlus(cancel, in, out)
	if t.o.Trace && st.Ok() {
		// Each entry is a LOOKUP's answer too: later operations on it
		// name it by path.
		forEachDirPlus(out.Bytes(), func(node uint64, name string) {
			if node != 0 && name != "." && name != ".." {
				t.o.paths.add(node, in.NodeId, name)
			}
		})
	}
	t.done("READDIRPLUS", s, in.NodeId, "", st)
	return st
}

// forEachDirPlus calls fn with the node ID and name of each entry of a
// READDIRPLUS reply: a struct fuse_entry_out, then a struct fuse_dirent
// (ino, off, namelen, type, then the name), padded to 8 bytes (Linux
// include/uapi/linux/fuse.h, FUSE_DIRENTPLUS_SIZE).
func forEachDirPlus(b []byte, fn func(node uint64, name string)) {
	const entryOut = int(unsafe.Sizeof(fuse.EntryOut{}))
	const direntHeader = 24
	for len(b) >= entryOut+direntHeader {
		node := binary.NativeEndian.Uint64(b[0:8])
		d := b[entryOut:]
		n := int(binary.NativeEndian.Uint32(d[16:20]))
		if len(d) < direntHeader+n {
			return
		}
		fn(node, string(d[direntHeader:direntHeader+n]))
		size := (entryOut + direntHeader + n + 7) &^ 7
		if size > len(b) {
			return
		}
		b = b[size:]
	}
}

func (t *tracedFS) ReleaseDir(in *fuse.ReleaseIn) {
	s := time.Now()
	t.RawFileSystem.ReleaseDir(in)
	t.o.openDirs.Add(-1)
	t.done("RELEASEDIR", s, in.NodeId, "", fuse.OK)
}

func (t *tracedFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.FsyncDir(cancel, in)
	t.done("FSYNCDIR", s, in.NodeId, "", st)
	return st
}

func (t *tracedFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.StatFs(cancel, h, out)
	t.done("STATFS", s, h.NodeId, "", st)
	return st
}

func (t *tracedFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	s := time.Now()
	st := t.RawFileSystem.Statx(cancel, in, out)
	t.done("STATX", s, in.NodeId, "", st)
	return st
}
