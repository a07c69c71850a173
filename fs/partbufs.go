package fs

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxMappedParts bounds the memory partBufs maps (bytes): part buffers past
// it come from the Go heap.
const maxMappedParts = 256 << 20

// partBufs hands out the part buffers of streaming uploads, each of one
// size (the mount's --part-size, bytes).
//
// Up to keep buffers are slots of one anonymous mapping with transparent
// huge pages asked for (madvise(2) MADV_HUGEPAGE), reused for the life of
// the mount: on the machines measured a fault on a fresh 4 KiB page cost
// about 18 µs, so filling fresh heap buffers page by page cost more CPU
// per written GiB than the copy itself (see test/bench/README.md "Machine
// notes"). Pages of a slot are touched only when first used and stay
// resident after, so a mount that has written a large file keeps up to
// keep × size bytes. Past keep buffers in use, or when keep × size exceeds
// maxMappedParts, buffers come from the Go heap and go to the garbage
// collector when put back.
//
// A buffer put back may still be read by an HTTP request that failed
// (net/http can read a request body after RoundTrip returns), so slots are
// never unmapped while the mount runs: such a read sees reused bytes of a
// request that is already lost, never unmapped memory.
type partBufs struct {
	size int
	mem  []byte // nil: heap only

	mu   sync.Mutex
	free []int // guarded by mu; free slots, lowest last
}

// newPartBufs prepares keep mapped slots of size bytes (nothing is touched
// yet). A failed mapping leaves heap buffers only.
func newPartBufs(size int64, keep int) *partBufs {
	p := &partBufs{size: int(size)}
	if keep <= 0 || size <= 0 || size*int64(keep) > maxMappedParts {
		return p
	}
	mem, err := unix.Mmap(-1, 0, keep*int(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return p
	}
	_ = unix.Madvise(mem, unix.MADV_HUGEPAGE) // ignored without THP
	p.mem = mem
	for i := keep - 1; i >= 0; i-- {
		p.free = append(p.free, i)
	}
	return p
}

// get returns an empty buffer with capacity size.
func (p *partBufs) get() []byte {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		slot := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		off := slot * p.size
		return p.mem[off : off : off+p.size]
	}
	p.mu.Unlock()
	return make([]byte, 0, p.size)
}

// put takes back a buffer from get (others are left to the garbage
// collector). The caller must not use b afterwards.
func (p *partBufs) put(b []byte) {
	if cap(b) != p.size || p.mem == nil {
		return
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(p.mem)))
	at := uintptr(unsafe.Pointer(unsafe.SliceData(b[:1])))
	if at < base || at >= base+uintptr(len(p.mem)) {
		return
	}
	slot := int(at-base) / p.size
	p.mu.Lock()
	p.free = append(p.free, slot)
	p.mu.Unlock()
}

var (
	partBufsMu  sync.Mutex
	partBufsFor = map[[2]int64]*partBufs{} // guarded by partBufsMu
)

// sharedPartBufs returns the process's partBufs for size and keep: mounts
// of one process with the same settings (tests mount many times) share
// their slots, since slots are never unmapped.
func sharedPartBufs(size int64, keep int) *partBufs {
	partBufsMu.Lock()
	defer partBufsMu.Unlock()
	k := [2]int64{size, int64(keep)}
	p := partBufsFor[k]
	if p == nil {
		p = newPartBufs(size, keep)
		partBufsFor[k] = p
	}
	return p
}
