package cache

import (
	"bytes"
	"testing"
)

// Stats counts what the metrics report: hits, misses, evictions and the
// bytes held, which stay within the bound and match what Get finds.
func TestBlocksStatsEvictionsAndBytes(t *testing.T) {
	const block, max = 64 << 10, 1 << 20
	b, err := NewBlocks(max, block)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const n = 200
	for i := int64(0); i < n; i++ {
		data := bytes.Repeat([]byte{byte(i)}, block)
		if _, err := fetchOrWait(b, BlockKey{Bucket: "b", Key: "k", Index: i}, func() ([]byte, error) { return data, nil }); err != nil {
			t.Fatal(err)
		}
	}
	b.Wait()
	held, kept := int64(0), int64(-1)
	for i := int64(0); i < n; i++ {
		if v, ok := b.Get(BlockKey{Bucket: "b", Key: "k", Index: i}); ok {
			held += int64(len(v.Bytes()))
			kept = i
			v.Release()
		}
	}
	st := b.Stats()
	if st.Bytes != held || st.Bytes > max || st.Bytes == 0 {
		t.Errorf("Stats().Bytes = %d; Get finds %d bytes; bound %d", st.Bytes, held, max)
	}
	if st.Evictions == 0 {
		t.Errorf("Stats().Evictions = 0 after %d blocks into room for %d", n, max/block)
	}
	if st.Misses < n || st.Fetches < n {
		t.Errorf("Stats() = %+v: want at least %d misses and fetches", st, n)
	}
	// A block the cache holds (its admission policy may have declined
	// any given one, the last included) is a hit when read again.
	before := st.Hits
	if _, err := fetchOrWait(b, BlockKey{Bucket: "b", Key: "k", Index: kept}, func() ([]byte, error) {
		return bytes.Repeat([]byte{1}, block), nil
	}); err != nil {
		t.Fatal(err)
	}
	if b.Stats().Hits <= before {
		t.Errorf("re-reading block %d, which the cache holds, was not a hit: %+v", kept, b.Stats())
	}
}
