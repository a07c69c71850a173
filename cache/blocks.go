// Package cache holds s3mount's caches: the one shared block cache of
// object bytes (ristretto, bounded in bytes) and the metadata cache of
// stat results, negative lookups and complete directory listings (TTL,
// injected clock). It imports nothing of ours.
package cache

import (
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"
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
// block; the caller still gets the bytes it fetched). Concurrent fetches of
// the same block are coalesced into one (singleflight).
type Blocks struct {
	c       *ristretto.Cache[string, []byte]
	flights singleflight.Group

	hits, misses, fetches atomic.Int64
}

// BlockStats are counters since the cache was made.
type BlockStats struct {
	Hits, Misses int64 // Get and GetOrFetch lookups
	Fetches      int64 // fetch functions actually run
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
	return &Blocks{c: c}, nil
}

// Get returns a cached block.
func (b *Blocks) Get(k BlockKey) ([]byte, bool) {
	v, ok := b.c.Get(k.String())
	if ok {
		b.hits.Add(1)
	} else {
		b.misses.Add(1)
	}
	return v, ok
}

// GetOrFetch returns the block from the cache or, on a miss, from fetch,
// which runs once for all concurrent callers asking for the same block.
// The block returned must not be modified.
func (b *Blocks) GetOrFetch(k BlockKey, fetch func() ([]byte, error)) ([]byte, error) {
	s := k.String()
	if v, ok := b.c.Get(s); ok {
		b.hits.Add(1)
		return v, nil
	}
	b.misses.Add(1)
	v, err, _ := b.flights.Do(s, func() (any, error) {
		if v, ok := b.c.Get(s); ok {
			return v, nil
		}
		b.fetches.Add(1)
		data, err := fetch()
		if err != nil {
			return nil, err
		}
		// Apply the Set before the flight ends, so that a caller arriving
		// just after it finds the block instead of fetching it again.
		if b.c.Set(s, data, int64(len(data))) {
			b.c.Wait()
		}
		return data, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// Stats returns the counters.
func (b *Blocks) Stats() BlockStats {
	return BlockStats{Hits: b.hits.Load(), Misses: b.misses.Load(), Fetches: b.fetches.Load()}
}

// Wait blocks until buffered Sets are applied (for tests).
func (b *Blocks) Wait() { b.c.Wait() }

// Close stops the cache's goroutines.
func (b *Blocks) Close() { b.c.Close() }
