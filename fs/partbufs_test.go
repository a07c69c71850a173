package fs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/s3mount/s3mount/s3backend/s3fake"
)

func inMapping(p *partBufs, b []byte) bool {
	base := uintptr(unsafe.Pointer(unsafe.SliceData(p.mem)))
	at := uintptr(unsafe.Pointer(unsafe.SliceData(b[:1])))
	return at >= base && at < base+uintptr(len(p.mem))
}

// Part buffers are reused slots of one mapping, lowest first; past keep in
// use they come from the heap, and put ignores buffers that are not slots.
func TestPartBufsReuseSlots(t *testing.T) {
	const size = 1 << 20
	p := newPartBufs(size, 3)
	if p.mem == nil {
		t.Fatal("no mapping for 3 slots of 1 MiB")
	}
	var got [][]byte
	for i := range 4 {
		b := p.get()
		if len(b) != 0 || cap(b) != size {
			t.Fatalf("get %d: len %d cap %d, want 0 and %d", i, len(b), cap(b), size)
		}
		got = append(got, b)
	}
	for i, b := range got[:3] {
		if !inMapping(p, b) {
			t.Fatalf("buffer %d is not a slot", i)
		}
		if want := unsafe.SliceData(p.mem[i*size:]); unsafe.SliceData(b[:1]) != want {
			t.Fatalf("buffer %d is not slot %d (lowest first)", i, i)
		}
	}
	if inMapping(p, got[3]) {
		t.Fatal("a fourth buffer came from the 3-slot mapping")
	}
	got[1] = append(got[1], "written"...)
	p.put(got[3])               // heap: ignored
	p.put(make([]byte, 0, 100)) // another size: ignored
	p.put(got[1])
	if n := len(p.free); n != 1 {
		t.Fatalf("%d free slots after putting back one slot and two others, want 1", n)
	}
	if b := p.get(); unsafe.SliceData(b[:1]) != unsafe.SliceData(got[1][:1]) || len(b) != 0 {
		t.Fatal("the slot put back was not handed out again, empty")
	}
	if b := p.get(); inMapping(p, b) {
		t.Fatal("a slot in use was handed out twice")
	}
}

// Too much memory for the mapping: heap buffers only.
func TestPartBufsHeapPastTheBound(t *testing.T) {
	p := newPartBufs(maxMappedParts, 2)
	if p.mem != nil {
		t.Fatal("mapped past maxMappedParts")
	}
	b := p.get()
	if cap(b) != maxMappedParts {
		t.Fatalf("cap %d", cap(b))
	}
	p.put(b)
	if sharedPartBufs(1<<20, 3) != sharedPartBufs(1<<20, 3) {
		t.Fatal("mounts with the same settings do not share their slots")
	}
}

// Every slot comes back: after a streamed file is truncated to 0 while
// its multipart upload runs (the upload is aborted) and after a close.
func TestPartBufsComeBack(t *testing.T) {
	const part = 5<<20 + 4096 // a size no other test uses: its own slots
	c := s3fake.New("bkt")
	mnt := mountFake(t, c, func(cfg *Config) { cfg.PartSize = part })
	p := sharedPartBufs(part, 2*(2+1))
	if p.mem == nil {
		t.Fatal("no mapping for the part slots: the test needs them (36 MiB, MAP_NORESERVE)")
	}
	keep := len(p.free)
	chunk := bytes.Repeat([]byte("s3mount "), part/8+1)
	for i := range keep + 2 {
		f, err := os.Create(filepath.Join(mnt, "t"))
		if err != nil {
			t.Fatal(err)
		}
		// Over one part: the upload starts, and the next buffer is a slot.
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(0); err != nil {
			t.Fatalf("round %d: truncate: %v", i, err)
		}
		if _, err := f.Seek(0, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("end")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("round %d: close: %v", i, err)
		}
	}
	if got, ok := c.Object("t"); !ok || string(got) != "end" {
		t.Fatalf("t in S3: %d bytes (%v), want \"end\"", len(got), ok)
	}
	waitFor(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.free) == keep
	}, "every part slot to come back")
}
