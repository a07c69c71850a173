package s3fake

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/s3mount/s3mount/s3backend"
)

// Buckets is an in-memory s3backend.Buckets: a set of fake Clients by
// bucket name, with request counters.
type Buckets struct {
	mu      sync.Mutex
	buckets map[string]*Client            // guarded by mu
	created map[string]time.Time          // guarded by mu
	calls   map[string]int                // guarded by mu; op → requests
	fail    func(op, bucket string) error // guarded by mu
}

var _ s3backend.Buckets = (*Buckets)(nil)

// NewBuckets returns a fake holding the named, empty buckets.
func NewBuckets(names ...string) *Buckets {
	b := &Buckets{buckets: map[string]*Client{}, created: map[string]time.Time{}, calls: map[string]int{}}
	for _, n := range names {
		b.buckets[n] = New(n)
		b.created[n] = time.Now()
	}
	return b
}

// SetFail installs f, asked before each request; a non-nil error is
// returned instead of doing it.
func (b *Buckets) SetFail(f func(op, bucket string) error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fail = f
}

// Bucket returns the fake Client of a bucket, nil when there is none.
func (b *Buckets) Bucket(name string) *Client {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buckets[name]
}

// Calls returns how many requests of op were made.
func (b *Buckets) Calls(op string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[op]
}

func (b *Buckets) begin(op, bucket string) error {
	b.mu.Lock()
	b.calls[op]++
	f := b.fail
	b.mu.Unlock()
	if f != nil {
		return f(op, bucket)
	}
	return nil
}

func apiErr(op, bucket string, status int, code string, kind error) error {
	return &s3backend.Error{Op: op, Bucket: bucket, Status: status, Code: code, Kind: kind, Err: errors.New(code)}
}

// ListBuckets implements s3backend.Buckets.
func (b *Buckets) ListBuckets(ctx context.Context) ([]s3backend.BucketInfo, error) {
	if err := b.begin("ListBuckets", ""); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]s3backend.BucketInfo, 0, len(b.buckets))
	for n := range b.buckets {
		out = append(out, s3backend.BucketInfo{Name: n, Created: b.created[n]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CreateBucket implements s3backend.Buckets.
func (b *Buckets) CreateBucket(ctx context.Context, name string) error {
	if err := b.begin("CreateBucket", name); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.buckets[name]; ok {
		return apiErr("CreateBucket", name, 409, "BucketAlreadyOwnedByYou", s3backend.ErrConflict)
	}
	b.buckets[name] = New(name)
	b.created[name] = time.Now()
	return nil
}

// DeleteBucket implements s3backend.Buckets.
func (b *Buckets) DeleteBucket(ctx context.Context, name string) error {
	if err := b.begin("DeleteBucket", name); err != nil {
		return err
	}
	b.mu.Lock()
	c, ok := b.buckets[name]
	b.mu.Unlock()
	if !ok {
		return apiErr("DeleteBucket", name, 404, "NoSuchBucket", s3backend.ErrNotFound)
	}
	if len(c.Keys()) > 0 {
		return apiErr("DeleteBucket", name, 409, "BucketNotEmpty", s3backend.ErrNotEmpty)
	}
	b.mu.Lock()
	delete(b.buckets, name)
	delete(b.created, name)
	b.mu.Unlock()
	return nil
}

// Client implements s3backend.Buckets (counted as GetBucketLocation).
func (b *Buckets) Client(ctx context.Context, bucket string) (s3backend.Client, error) {
	if err := b.begin("GetBucketLocation", bucket); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.buckets[bucket]
	if !ok {
		return nil, apiErr("GetBucketLocation", bucket, 404, "NoSuchBucket", s3backend.ErrNotFound)
	}
	return c, nil
}
