package cache

import (
	"strings"
	"sync"
	"time"
)

// Kind tells what a name is.
type Kind uint8

const (
	// Absent is a negative entry: the name is known not to exist.
	Absent Kind = iota
	// File is an object.
	File
	// Dir is a directory: a "dir/" marker or a prefix of deeper keys.
	Dir
)

// Stat is what the metadata cache remembers of one name. Size is in bytes.
type Stat struct {
	Kind Kind
	Size int64
	ETag string
	// MTime is the modification time: the object's x-amz-meta-mtime when
	// it has one, else its LastModified, in whole seconds either way (an
	// HTTP Last-Modified header has no fractions, a listing has
	// milliseconds: truncating makes both paths agree).
	MTime time.Time

	// MetaKnown: the fields below were read with HeadObject. A
	// ListObjectsV2 entry carries no user metadata, so it leaves them
	// unknown (and zero) until a HEAD fills them.
	MetaKnown bool
	// Mode is x-amz-meta-mode: st_mode with its S_IFMT type bits, as s3fs
	// writes it (decimal). 0: the object has none (the mount's default).
	Mode uint32
	// UID and GID are x-amz-meta-uid and -gid, when HasUID / HasGID.
	UID, GID       uint32
	HasUID, HasGID bool
	// HasMTime: MTime came from x-amz-meta-mtime.
	HasMTime bool
	// UserMeta is every x-amz-meta-* header of the object (names in lower
	// case without the prefix), so that a CopyObject with REPLACE keeps
	// the ones s3mount does not interpret. nil unless MetaKnown.
	UserMeta map[string]string
	// Own: the fields above come from the file node of this mount that
	// wrote them (not from a HEAD), so giving them back to it changes
	// nothing.
	Own bool
	// Seen is when the request that learned this was sent (Observed),
	// or when this mount recorded its own change (Put). A request sent
	// before a change here may answer with what was there before: its
	// answer must not replace what the change left.
	Seen time.Time
}

type metaItem struct {
	st      Stat
	expires time.Time
}

// Meta caches stat results, negative lookups and which directories were
// listed completely, each for TTL. Paths are keys relative to the bucket
// without a trailing "/" ("" is the bucket root). Safe for concurrent use.
type Meta struct {
	ttl time.Duration
	now func() time.Time
	max int

	mu     sync.Mutex
	items  map[string]metaItem  // guarded by mu
	listed map[string]time.Time // dir path → expiry of its complete listing; guarded by mu
	// versions: per path, what a HEAD learned of one version of the
	// object, kept past the TTL (see PutVersion). Guarded by mu.
	versions map[string]versionItem
}

type versionItem struct {
	etag    string
	lastMod time.Time // whole seconds
	st      Stat
}

// NewMeta makes a cache whose entries live ttl and which holds about
// maxEntries entries (expired ones are dropped first when full). now is the
// clock (time.Now when nil).
func NewMeta(ttl time.Duration, maxEntries int, now func() time.Time) *Meta {
	if now == nil {
		now = time.Now
	}
	return &Meta{ttl: ttl, now: now, max: maxEntries, items: map[string]metaItem{}, listed: map[string]time.Time{},
		versions: map[string]versionItem{}}
}

// TTL returns the time entries live.
func (m *Meta) TTL() time.Duration { return m.ttl }

// Put remembers what path is now (Absent for a negative entry): what this
// mount just did to it or knows for certain. st.Seen becomes now.
func (m *Meta) Put(path string, st Stat) {
	if m.ttl <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked()
	now := m.now()
	st.Seen = now
	m.items[path] = metaItem{st: st, expires: now.Add(m.ttl)}
}

// Observed remembers what a request sent at st.Seen (HeadObject,
// ListObjectsV2) answered for path, unless the entry held was recorded
// after that: a change this mount made (Put) or a later request's answer
// while the request was under way is newer, and stays.
func (m *Meta) Observed(path string, st Stat) {
	if m.ttl <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if it, ok := m.items[path]; ok && it.st.Seen.After(st.Seen) {
		// Newer, even if expired (kept until pruned, see Get): at
		// least as fresh as the answer, it lives as long as the
		// answer would have (a listing's MarkListed counts on each of
		// its names having an entry while the listing is trusted).
		it.expires = now.Add(m.ttl)
		m.items[path] = it
		return
	}
	m.pruneLocked()
	m.items[path] = metaItem{st: st, expires: now.Add(m.ttl)}
}

// PutVersion remembers st, what a HeadObject of path answered for the
// version with ETag etag and LastModified lastMod, beyond the TTL: a
// listing naming the same ETag and LastModified (to the second) is the
// same version, with the same user metadata, so Version answers it without
// a HEAD. S3 gives every PutObject, CopyObject (a metadata rewrite too) and
// CompleteMultipartUpload a new LastModified; only two changes made by
// another client within one second of each other could go unseen, until
// this mount writes the object or the entry is evicted. A zero TTL
// disables it, like the rest of the cache.
func (m *Meta) PutVersion(path, etag string, lastMod time.Time, st Stat) {
	if m.ttl <= 0 || etag == "" || lastMod.IsZero() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.max > 0 && len(m.versions) >= m.max {
		for k := range m.versions {
			if len(m.versions) < m.max*3/4 {
				break
			}
			delete(m.versions, k)
		}
	}
	m.versions[path] = versionItem{etag: etag, lastMod: lastMod.Truncate(time.Second), st: st}
}

// ForgetVersion drops what PutVersion kept of path: this mount is
// rewriting the object, possibly within the second of the version kept
// and with the same ETag (a metadata rewrite keeps the content).
func (m *Meta) ForgetVersion(path string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.versions, path)
}

// Version returns what PutVersion kept of path for this ETag and
// LastModified.
func (m *Meta) Version(path, etag string, lastMod time.Time) (Stat, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.versions[path]
	if !ok || v.etag != etag || !v.lastMod.Equal(lastMod.Truncate(time.Second)) {
		return Stat{}, false
	}
	return v.st, true
}

// Get returns what is known of path while it is fresh.
func (m *Meta) Get(path string) (Stat, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.items[path]
	if !ok || !m.now().Before(it.expires) {
		// An expired entry stays until pruned (pruneLocked): its Seen
		// still tells Observed which answers are older.
		return Stat{}, false
	}
	return it.st, true
}

// Remaining returns how long path's entry stays fresh (0 when there is
// none), so that the kernel caches it no longer than this cache does.
func (m *Meta) Remaining(path string) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.items[path]
	if !ok {
		return 0
	}
	return max(0, it.expires.Sub(m.now()))
}

// Invalidate forgets path, and the complete listing of its parent dir.
func (m *Meta) Invalidate(path, parent string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.items, path)
	delete(m.listed, parent)
}

// InvalidatePrefix forgets dir, every path under it ("dir/..."), their
// complete listings, and the complete listing of dir's parent parent.
// Directory renames use it; it costs a pass over the cache.
func (m *Meta) InvalidatePrefix(dir, parent string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	under := dir + "/"
	for k := range m.items {
		if k == dir || strings.HasPrefix(k, under) || dir == "" {
			delete(m.items, k)
		}
	}
	for k := range m.listed {
		if k == dir || strings.HasPrefix(k, under) || dir == "" {
			delete(m.listed, k)
		}
	}
	delete(m.listed, parent)
}

// MarkListed records that dir's children were all Put just now, so that a
// name missing from them can be answered as absent without a request.
func (m *Meta) MarkListed(dir string) {
	if m.ttl <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.listed[dir] = m.now().Add(m.ttl)
}

// Listed reports whether dir was listed completely within the TTL.
func (m *Meta) Listed(dir string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp, ok := m.listed[dir]
	if ok && !m.now().Before(exp) {
		delete(m.listed, dir)
		return false
	}
	return ok
}

// pruneLocked keeps the map under max entries: expired entries go first,
// then arbitrary ones.
func (m *Meta) pruneLocked() {
	if m.max <= 0 || len(m.items) < m.max {
		return
	}
	now := m.now()
	for k, it := range m.items {
		if !now.Before(it.expires) {
			delete(m.items, k)
		}
	}
	for k := range m.items {
		if len(m.items) < m.max*3/4 {
			break
		}
		delete(m.items, k)
	}
	for k, exp := range m.listed {
		if !now.Before(exp) {
			delete(m.listed, k)
		}
	}
	// A listing whose entries may have been dropped is no longer complete.
	if len(m.items) < m.max*3/4 {
		clear(m.listed)
	}
}
