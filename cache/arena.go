package cache

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Buf holds the bytes of one block: a slot of the block arena, or Go heap
// memory when every slot is taken. It is reference counted: the cache holds
// one reference per cached block, a Flight one until its claimer drops it,
// and every reader one while it uses the bytes. Bytes are valid only while
// the holder's reference is; a slot whose last reference is released is
// reused for another block.
//
// Why an arena: filling fresh memory page by page cost more than the
// network on the machines measured (0.35 GB/s into fresh 4 KiB pages, 1.6
// GB/s into reused memory); the arena is mapped once with transparent huge
// pages asked for (madvise(2) MADV_HUGEPAGE) and its slots are reused, so a
// steady read faults no pages, and the bytes the cache holds are exactly
// the arena's.
type Buf struct {
	data []byte
	a    *arena // nil: heap memory, left to the garbage collector
	slot int32
	gen  uint64 // the slot's generation when this Buf was handed out
}

// Bytes returns the block's bytes.
func (b *Buf) Bytes() []byte { return b.data }

// Retain takes one more reference. It fails when the slot has meanwhile
// been released to zero and possibly handed to another block (the caller
// then treats the block as not cached).
func (b *Buf) Retain() bool {
	if b.a == nil {
		return true
	}
	st := &b.a.state[b.slot]
	for {
		r := st.refs.Load()
		if r <= 0 {
			return false
		}
		if st.refs.CompareAndSwap(r, r+1) {
			if st.gen.Load() == b.gen {
				return true
			}
			// The slot belongs to another block now: undo.
			b.a.release(b.slot)
			return false
		}
	}
}

// Release drops one reference.
func (b *Buf) Release() {
	if b.a != nil {
		b.a.release(b.slot)
	}
}

// arena is a fixed set of block-sized slots in one anonymous mapping.
type arena struct {
	mem   []byte
	bs    int64
	state []slotState

	mu   sync.Mutex
	free []int32 // guarded by mu
	peak int     // guarded by mu; most slots handed out at once
}

type slotState struct {
	refs atomic.Int32
	gen  atomic.Uint64
}

// newArena maps n slots of bs bytes. Pages are touched only when used.
func newArena(n int, bs int64) (*arena, error) {
	mem, err := unix.Mmap(-1, 0, int(int64(n)*bs), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	_ = unix.Madvise(mem, unix.MADV_HUGEPAGE) // ignored without THP
	a := &arena{mem: mem, bs: bs, state: make([]slotState, n), free: make([]int32, n)}
	for i := range a.free {
		a.free[i] = int32(n - 1 - i) // hand out low slots first
	}
	return a, nil
}

// get hands out a free slot for n ≤ bs bytes with one reference, or nil.
func (a *arena) get(n int64) *Buf {
	a.mu.Lock()
	if len(a.free) == 0 {
		a.mu.Unlock()
		return nil
	}
	slot := a.free[len(a.free)-1]
	a.free = a.free[:len(a.free)-1]
	a.peak = max(a.peak, len(a.state)-len(a.free))
	a.mu.Unlock()
	st := &a.state[slot]
	gen := st.gen.Add(1) // before refs: a stale Retain that sees refs 1 sees this gen
	st.refs.Store(1)
	off := int64(slot) * a.bs
	return &Buf{data: a.mem[off : off+n : off+n], a: a, slot: slot, gen: gen}
}

func (a *arena) release(slot int32) {
	if r := a.state[slot].refs.Add(-1); r == 0 {
		a.mu.Lock()
		a.free = append(a.free, slot)
		a.mu.Unlock()
	} else if r < 0 {
		// A bug: more releases than references. Retire the slot (never
		// handed out again) rather than risk serving its bytes twice, and
		// say so; the mount keeps serving.
		a.state[slot].refs.Store(1 << 30)
		slog.Error("block cache: a buffer was released more often than retained; its slot is retired", "slot", slot)
	}
}

// inUse returns how many slots are handed out, now and at most so far.
func (a *arena) inUse() (now, peak int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.state) - len(a.free), a.peak
}

func (a *arena) close() { _ = unix.Munmap(a.mem) }
