package cache

import (
	"container/list"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// CopyKey names one version of one object.
type CopyKey struct {
	Bucket, Key, ETag string
}

// Copies keeps whole local copies of objects, in files under one directory,
// bounded in bytes. A copy is filled block by block while a reader reads the
// object through the block cache; once every block is in, it is complete,
// and the kernel can serve later opens of that version from the file (FUSE
// passthrough, fs/passthrough.go) at the speed of a local file in the page
// cache. The least recently used copies are deleted for room; a deleted
// copy's file lives on while someone (the kernel) holds it open.
//
// The directory is private to one mount: OpenCopies makes <dir>/copies-*, holds
// an flock(2) on it, and removes directories of mounts that have exited
// (their lock is free). Nothing survives a remount: a copy is only as
// trustworthy as the ETag it was read under.
type Copies struct {
	dir      string
	limit    int64
	minSize  int64
	lockFile *os.File
	enabled  atomic.Bool

	mu    sync.Mutex
	used  int64             // guarded by mu; bytes of all copies (their sizes)
	byKey map[CopyKey]*Copy // guarded by mu
	lru   *list.List        // guarded by mu; of *Copy, most recently used first
	seq   int64             // guarded by mu; file names
}

// Copy is one object version's local file, complete or being filled.
type Copy struct {
	c    *Copies
	key  CopyKey
	size int64
	bs   int64
	f    *os.File
	elem *list.Element // guarded by c.mu; nil once dropped
	held bool          // guarded by c.mu; a descriptor from Dup is out

	mu       sync.Mutex
	have     []bool // guarded by mu; block i is in the file, or being written
	missing  int    // guarded by mu; blocks not written yet
	complete atomic.Bool
	failed   atomic.Bool
}

// OpenCopies makes a copies directory under parent (created 0700 if
// missing), holding at most limit bytes of copies of objects of at least
// minSize bytes. It starts disabled (Enable). Errors are those of creating,
// locking or listing the directories.
func OpenCopies(parent string, limit, minSize int64) (*Copies, error) {
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, err
	}
	removeStaleCopies(parent)
	dir, err := os.MkdirTemp(parent, "copies-")
	if err != nil {
		return nil, err
	}
	lf, err := os.Open(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lf.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return &Copies{dir: dir, limit: limit, minSize: minSize, lockFile: lf,
		byKey: map[CopyKey]*Copy{}, lru: list.New()}, nil
}

// removeStaleCopies deletes copies-* directories under parent that no
// running mount holds locked.
func removeStaleCopies(parent string) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "copies-") {
			continue
		}
		p := filepath.Join(parent, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(p)
		}
		f.Close()
	}
}

// Dir is the directory holding the copies.
func (c *Copies) Dir() string { return c.dir }

// Enable turns copies on: until then Start and Complete find nothing.
func (c *Copies) Enable() { c.enabled.Store(true) }

// Enabled reports whether copies are on.
func (c *Copies) Enabled() bool { return c != nil && c.enabled.Load() }

// Used is the bytes of all copies, complete or being filled.
func (c *Copies) Used() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// Start returns the copy of k (size bytes, in blocks of bs bytes) to fill,
// making one if there is none; nil when copies are off, the object is
// outside [minSize, limit/2], or the file cannot be made. Older copies are
// deleted for room (least recently used first).
func (c *Copies) Start(k CopyKey, size, bs int64) *Copy {
	if !c.Enabled() || size < c.minSize || size > c.limit/2 || bs <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cp, ok := c.byKey[k]; ok {
		c.lru.MoveToFront(cp.elem)
		return cp
	}
	for c.used+size > c.limit && c.lru.Len() > 0 {
		c.dropLocked(c.lru.Back().Value.(*Copy))
	}
	c.seq++
	f, err := os.OpenFile(filepath.Join(c.dir, fmt.Sprintf("%d", c.seq)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil
	}
	// The file's size is the object's from the start: the kernel reads
	// only complete copies, and ftruncate costs no disk blocks.
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil
	}
	n := int((size + bs - 1) / bs)
	cp := &Copy{c: c, key: k, size: size, bs: bs, f: f, have: make([]bool, n), missing: n}
	cp.elem = c.lru.PushFront(cp)
	c.byKey[k] = cp
	c.used += size
	return cp
}

// Filling returns the copy of k being filled, or nil.
func (c *Copies) Filling(k CopyKey) *Copy {
	if !c.Enabled() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cp, ok := c.byKey[k]
	if !ok || cp.complete.Load() || cp.failed.Load() {
		return nil
	}
	return cp
}

// Dup returns a new descriptor (close-on-exec) of the complete copy of k,
// for the caller to own, and false when there is none or another holder
// has it: one holder at a time (one inode: a writer may turn the file it
// reads into its own, fs/passthrough.go), until it calls Return. It is
// taken under the lock that eviction takes to close the copy, so it never
// names a descriptor number that eviction freed and another copy reused.
func (c *Copies) Dup(k CopyKey) (*Copy, int, bool) {
	if !c.Enabled() {
		return nil, -1, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := c.completeLocked(k)
	if cp == nil || cp.held {
		return nil, -1, false
	}
	fd, err := unix.FcntlInt(cp.f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, -1, false
	}
	cp.held = true
	return cp, fd, true
}

// Return ends the holding that Dup began (the holder has closed its
// descriptor): the copy may be handed out again.
func (cp *Copy) Return() {
	cp.c.mu.Lock()
	defer cp.c.mu.Unlock()
	cp.held = false
}

// Forget drops cp, complete or not: its file is deleted (descriptors of it
// stay usable until closed) and later opens of its version find no copy.
// A writer that takes over the file of a copy it holds calls it, so that
// the bytes it changes are never served as that version.
func (cp *Copy) Forget() { cp.c.dropCopy(cp) }

// MoveTo takes cp's file out of the copies: it is renamed to path (on the
// same file system), no longer counted, and later opens of its version
// find no copy; descriptors of it stay usable. It fails when cp was
// dropped meanwhile (its file is deleted already).
func (cp *Copy) MoveTo(path string) error {
	c := cp.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if cp.elem == nil {
		return errors.New("the copy was dropped")
	}
	if err := os.Rename(cp.f.Name(), path); err != nil {
		return err
	}
	c.unlistLocked(cp)
	return nil
}

// Complete returns the complete copy of k, or nil.
func (c *Copies) Complete(k CopyKey) *Copy {
	if !c.Enabled() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.completeLocked(k)
}

// completeLocked returns the complete copy of k, marked most recently
// used, or nil.
func (c *Copies) completeLocked(k CopyKey) *Copy {
	cp, ok := c.byKey[k]
	if !ok || !cp.complete.Load() {
		return nil
	}
	c.lru.MoveToFront(cp.elem)
	return cp
}

func (c *Copies) dropLocked(cp *Copy) {
	name := cp.f.Name()
	if c.unlistLocked(cp) {
		os.Remove(name)
	}
}

// unlistLocked takes cp out of the index and the byte count and closes its
// file, leaving the file itself where it is. It reports false when cp was
// dropped already.
func (c *Copies) unlistLocked(cp *Copy) bool {
	if cp.elem == nil {
		return false
	}
	c.lru.Remove(cp.elem)
	cp.elem = nil
	if c.byKey[cp.key] == cp {
		delete(c.byKey, cp.key)
	}
	c.used -= cp.size
	cp.f.Close()
	return true
}

// Close deletes every copy and the directory.
func (c *Copies) Close() error {
	c.enabled.Store(false)
	c.mu.Lock()
	for c.lru.Len() > 0 {
		c.dropLocked(c.lru.Back().Value.(*Copy))
	}
	c.mu.Unlock()
	err := os.RemoveAll(c.dir)
	c.lockFile.Close()
	return err
}

// File is the copy's file, open read-write. It stays open until the copy
// is dropped; a caller needing it longer dups it (the kernel's passthrough
// registration holds its own reference).
func (cp *Copy) File() *os.File { return cp.f }

// IsComplete reports whether every block is in the file.
func (cp *Copy) IsComplete() bool { return cp.complete.Load() }

// Missing returns the blocks below upto (all: upto < 0) not in the file
// and not being written, in order.
func (cp *Copy) Missing(upto int64) []int64 {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	n := int64(len(cp.have))
	if upto >= 0 {
		n = min(n, upto)
	}
	var out []int64
	for i := int64(0); i < n; i++ {
		if !cp.have[i] {
			out = append(out, i)
		}
	}
	return out
}

// Put writes block i (its bytes b: the whole block, shorter only at the
// end of the object) unless the file has it already or another Put is
// writing it. A failed write (e.g. ENOSPC) drops the copy, and the first
// such failure is returned (for the caller's log); the read that fed it is
// not affected.
func (cp *Copy) Put(i int64, b []byte) error {
	if cp.failed.Load() || cp.complete.Load() {
		return nil
	}
	cp.mu.Lock()
	if i < 0 || i >= int64(len(cp.have)) || cp.have[i] || int64(len(b)) != min(cp.bs, cp.size-i*cp.bs) {
		cp.mu.Unlock()
		return nil
	}
	cp.have[i] = true // claimed: no other Put writes it
	cp.mu.Unlock()
	if _, err := cp.f.WriteAt(b, i*cp.bs); err != nil {
		if cp.failed.Swap(true) || errors.Is(err, os.ErrClosed) {
			return nil // dropped already (evicted for room): nothing to report
		}
		go cp.c.dropCopy(cp)
		return err
	}
	cp.mu.Lock()
	if cp.missing--; cp.missing == 0 {
		cp.complete.Store(true)
	}
	cp.mu.Unlock()
	return nil
}

func (c *Copies) dropCopy(cp *Copy) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(cp)
}
