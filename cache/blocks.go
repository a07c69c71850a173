// Package cache holds s3mount's caches: the one shared block cache of
// object bytes (ristretto, bounded in bytes) and the metadata cache of
// stat results, negative lookups and complete directory listings (TTL,
// injected clock). It imports nothing of ours.
package cache

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"
)

// BlockKey names one fixed-size block of one version of one object. The
// ETag is part of the key, so a changed object never serves old blocks.
type BlockKey struct {
	Bucket string
	Key    string
	ETag   string
	Index  int64 // block number: byte offset / block size
}

func (k BlockKey) String() string {
	return k.Bucket + "\x00" + k.Key + "\x00" + k.ETag + "\x00" + strconv.FormatInt(k.Index, 10)
}

// Blocks is the shared block cache. Cost is the block's length in bytes, so
// the bytes it holds stay under MaxBytes (ristretto's admission may refuse a
// block; whoever fetched it still has it). A block being fetched is a
// Flight, registered so that every reader wanting it waits for the one
// request instead of sending its own (request coalescing).
type Blocks struct {
	c        *ristretto.Cache[string, []byte]
	maxBytes int64

	mu      sync.Mutex
	flights map[string]*Flight // guarded by mu

	hits, misses, fetches atomic.Int64
}

// Flight is a block being fetched. Wait for it with Done, then read Data.
type Flight struct {
	done chan struct{}
	data []byte
	err  error
}

// Done is closed once the block (or its error) is there.
func (f *Flight) Done() <-chan struct{} { return f.done }

// Result returns the block's bytes or the fetch's error; only after Done.
func (f *Flight) Result() ([]byte, error) { return f.data, f.err }

// Ready returns a finished Flight holding data, for a block that needs no
// fetch.
func Ready(data []byte) *Flight {
	f := &Flight{done: make(chan struct{}), data: data}
	close(f.done)
	return f
}

// BlockStats are counters since the cache was made.
type BlockStats struct {
	Hits, Misses int64 // Acquire lookups answered from the cache, or not
	Fetches      int64 // flights claimed, i.e. blocks requested from S3
}

// NewBlocks makes a cache holding at most maxBytes bytes of blocks of about
// blockSize bytes each.
func NewBlocks(maxBytes, blockSize int64) (*Blocks, error) {
	if blockSize <= 0 || maxBytes < blockSize {
		return nil, fmt.Errorf("block cache: size %d bytes cannot hold a block of %d bytes", maxBytes, blockSize)
	}
	c, err := ristretto.NewCache(&ristretto.Config[string, []byte]{
		NumCounters:        10 * (maxBytes/blockSize + 1),
		MaxCost:            maxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("block cache: %w", err)
	}
	return &Blocks{c: c, maxBytes: maxBytes, flights: map[string]*Flight{}}, nil
}

// MaxBytes is the cache's bound in bytes.
func (b *Blocks) MaxBytes() int64 { return b.maxBytes }

// Get returns a cached block.
func (b *Blocks) Get(k BlockKey) ([]byte, bool) {
	return b.c.Get(k.String())
}

// Acquire finds block k. It returns exactly one of: the cached bytes; the
// Flight of a fetch already under way (wait for it); or, with claimed true,
// a new Flight that the caller must fetch and Finish, for every other
// reader of the block will wait on it.
func (b *Blocks) Acquire(k BlockKey) (data []byte, f *Flight, claimed bool) {
	s := k.String()
	if v, ok := b.c.Get(s); ok {
		b.hits.Add(1)
		return v, nil, false
	}
	b.misses.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if f := b.flights[s]; f != nil {
		return nil, f, false
	}
	// The block may have landed between the Get and the lock.
	if v, ok := b.c.Get(s); ok {
		return v, nil, false
	}
	f = &Flight{done: make(chan struct{})}
	b.flights[s] = f
	b.fetches.Add(1)
	return nil, f, true
}

// Finish ends a claimed Flight: on success the block is cached (the Set is
// applied before the flight is unregistered, so a later Acquire finds it),
// and the waiters are woken either way.
func (b *Blocks) Finish(k BlockKey, f *Flight, data []byte, err error) {
	s := k.String()
	f.data, f.err = data, err
	if err == nil && b.c.Set(s, data, int64(len(data))) {
		b.c.Wait()
	}
	b.mu.Lock()
	if b.flights[s] == f {
		delete(b.flights, s)
	}
	b.mu.Unlock()
	close(f.done)
}

// Stats returns the counters.
func (b *Blocks) Stats() BlockStats {
	return BlockStats{Hits: b.hits.Load(), Misses: b.misses.Load(), Fetches: b.fetches.Load()}
}

// Wait blocks until buffered Sets are applied (for tests).
func (b *Blocks) Wait() { b.c.Wait() }

// Close stops the cache's goroutines.
func (b *Blocks) Close() { b.c.Close() }
