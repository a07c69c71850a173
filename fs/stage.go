package fs

// Staging: the local copy of a file being changed anywhere but at its end.
//
// A staged file is a sparse local file under <cache-dir>/staging holding
// every byte the program wrote, plus the extents of it that are valid.
// Below baseLimit, bytes that are not valid are the base object's (the
// object the content started from, pinned by its ETag) and are fetched on
// demand; from baseLimit on, the local file is the content (holes read as
// zeros). So a one-byte change to a 10 GiB object costs one block of disk
// and, at commit, one UploadPart; the rest is UploadPartCopy.
//
// Staged bytes count against --staging-limit (the local file's allocated
// blocks, summed over the mount); a write past it answers ENOSPC.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/s3mount/s3mount/s3backend"
)

// extents is a sorted set of disjoint, non-adjacent byte ranges [a, b).
type extents []extent

type extent struct{ a, b int64 }

// add inserts [a, b).
func (e *extents) add(a, b int64) {
	if a >= b {
		return
	}
	s := *e
	// First extent that ends at or after a (may merge), last that starts at or before b.
	i := sort.Search(len(s), func(i int) bool { return s[i].b >= a })
	j := i
	for j < len(s) && s[j].a <= b {
		a, b = min(a, s[j].a), max(b, s[j].b)
		j++
	}
	out := append(s[:i:i], extent{a, b})
	*e = append(out, s[j:]...)
}

// clip drops everything at or past n.
func (e *extents) clip(n int64) {
	s := *e
	for len(s) > 0 && s[len(s)-1].a >= n {
		s = s[:len(s)-1]
	}
	if len(s) > 0 && s[len(s)-1].b > n {
		s[len(s)-1].b = n
	}
	*e = s
}

// overlaps reports whether any byte of [a, b) is in the set.
func (e extents) overlaps(a, b int64) bool {
	i := sort.Search(len(e), func(i int) bool { return e[i].b > a })
	return i < len(e) && e[i].a < b
}

// walk calls fn for the pieces of [a, b) in order, saying whether each is
// in the set.
func (e extents) walk(a, b int64, fn func(a, b int64, in bool) error) error {
	i := sort.Search(len(e), func(i int) bool { return e[i].b > a })
	for a < b {
		if i >= len(e) || e[i].a >= b {
			return fn(a, b, false)
		}
		if e[i].a > a {
			if err := fn(a, e[i].a, false); err != nil {
				return err
			}
			a = e[i].a
		}
		end := min(e[i].b, b)
		if err := fn(a, end, true); err != nil {
			return err
		}
		a = end
		i++
	}
	return nil
}

// stageFile is the local file of one staged content.
type stageFile struct {
	f       *os.File
	path    string
	charged int64 // bytes counted in FS.staged
	dirty   bool  // a sidecar exists: the file holds bytes not in S3
	// base: the bytes the file held when it was taken over from the
	// local copies (passthrough.go, ptStageFile), not charged: only
	// growth past them is.
	base int64
}

// ptStageFile makes a stage of a copy's file, given a descriptor of it
// that the stage then owns, and its path under staging/ ("" when the copy
// was evicted before it could be moved there: no sidecar then, and a
// crash loses what was not committed).
func ptStageFile(fd int, path string) *stageFile {
	return &stageFile{f: os.NewFile(uintptr(fd), path), path: path}
}

// stageSeq numbers staging files within the process.
var stageSeq atomic.Int64

// newStageFile creates an empty staging file (mode 0600). While it holds
// bytes not yet in S3 it has a sidecar (markDirty) naming the object, so
// that a file left by a crash can be recovered; without one it is a clean
// leftover.
func (fs *FS) newStageFile(key string) (*stageFile, error) {
	path, err := fs.stagePath()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("staging file: %w", err)
	}
	return &stageFile{f: f, path: path}, nil
}

// stagePath returns a new staging file's path (<cache-dir>/staging/PID-N,
// the names cleanStaging recovers), making the directory.
func (fs *FS) stagePath() (string, error) {
	dir := filepath.Join(fs.cfg.CacheDir, "staging")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("staging directory: %w", err)
	}
	return filepath.Join(dir, fmt.Sprintf("%d-%d", os.Getpid(), stageSeq.Add(1))), nil
}

// markDirty writes the sidecar saying the file holds bytes of key not yet
// in S3; markClean removes it.
func (s *stageFile) markDirty(fs *FS, key string) {
	if s.dirty || s.path == "" {
		return
	}
	s.dirty = true
	if err := writeSidecar(s.path+".json", recoveryInfo{Bucket: fs.client.Bucket(), Key: key, Started: time.Now()}); err != nil {
		fs.log.Warn("staging sidecar could not be written", "path", s.path+".json", "err", err)
	}
}

func (s *stageFile) markClean() {
	if s.dirty {
		s.dirty = false
		os.Remove(s.path + ".json")
	}
}

// recoveryInfo is the sidecar of a staging or recovery file (JSON).
type recoveryInfo struct {
	Bucket  string    `json:"bucket"`
	Key     string    `json:"key"`
	Size    int64     `json:"size,omitempty"`
	Started time.Time `json:"started,omitzero"`
	Failed  time.Time `json:"failed,omitzero"`
	Error   string    `json:"error,omitempty"`
	// Missing lists the byte ranges [from, to) that were never written
	// and could not be fetched from the original object (BaseETag): the
	// file holds zeros there.
	Missing  [][2]int64 `json:"missing,omitempty"`
	BaseETag string     `json:"base_etag,omitempty"`
}

func writeSidecar(path string, info recoveryInfo) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

// recharge sets the file's charge in FS.staged to its allocated bytes.
func (s *stageFile) recharge(fs *FS) {
	var st unix.Stat_t
	if err := unix.Fstat(int(s.f.Fd()), &st); err != nil {
		return
	}
	now := max(0, st.Blocks*512-s.base)
	fs.staged.Add(now - s.charged)
	stagedTotal.Add(now - s.charged)
	s.charged = now
}

// chargeFrom starts a taken-over copy's charge at zero: the bytes it
// holds now were the copies' (--copy-cache-size), only growth counts.
func (s *stageFile) chargeFrom(fs *FS) {
	var st unix.Stat_t
	if err := unix.Fstat(int(s.f.Fd()), &st); err == nil {
		s.base = st.Blocks * 512
	}
	s.recharge(fs)
}

// room reports whether n more staged bytes fit in --staging-limit.
func (fs *FS) room(n int64) bool {
	return fs.cfg.StagingLimit <= 0 || fs.staged.Load()+n <= fs.cfg.StagingLimit
}

// remove deletes the staging file and its sidecar and uncharges it.
func (s *stageFile) remove(fs *FS) {
	s.f.Close()
	if s.path != "" {
		os.Remove(s.path)
		os.Remove(s.path + ".json")
	}
	fs.staged.Add(-s.charged)
	stagedTotal.Add(-s.charged)
	s.charged = 0
}

// keep moves the staging file to <cache-dir>/recovery, named after the time
// and the key, with a sidecar saying what it is, and returns its path.
func (s *stageFile) keep(fs *FS, info recoveryInfo) (string, error) {
	dir := filepath.Join(fs.cfg.CacheDir, "recovery")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	name := time.Now().UTC().Format("20060102T150405Z") + "-" + fmt.Sprint(os.Getpid()) + "-" +
		recoveryName(info.Bucket+"/"+info.Key)
	path := filepath.Join(dir, name)
	if s.path == "" {
		// An evicted copy's file has no name to move: its bytes are
		// copied.
		defer func() {
			s.f.Close()
			fs.staged.Add(-s.charged)
			stagedTotal.Add(-s.charged)
			s.charged = 0
		}()
		if err := writeSidecar(path+".json", info); err != nil {
			return path, err
		}
		out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(out, io.NewSectionReader(s.f, 0, 1<<62))
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		return path, err
	}
	s.f.Close()
	// The sidecar first: whoever finds the file finds what it is.
	if err := writeSidecar(path+".json", info); err != nil {
		return path, err
	}
	if err := os.Rename(s.path, path); err != nil {
		return "", err
	}
	os.Remove(s.path + ".json")
	fs.staged.Add(-s.charged)
	stagedTotal.Add(-s.charged)
	s.charged = 0
	return path, nil
}

// recoveryName makes a key a single file name: "/" becomes "%2F", "%"
// becomes "%25", and it is cut to 200 bytes.
func recoveryName(key string) string {
	r := strings.NewReplacer("%", "%25", "/", "%2F")
	n := r.Replace(key)
	if len(n) > 200 {
		n = n[:200]
	}
	return n
}

// uploadRecord is a journal entry of a multipart upload in progress
// (<cache-dir>/uploads/PID-N.json), so that one left by a mount that died
// is aborted at the next mount instead of keeping its parts (and their
// storage cost) in S3.
type uploadRecord struct {
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
	UploadID string `json:"upload_id"`
}

// journalUpload records an upload in progress and returns the record's
// path ("" if it could not be written, which is logged).
func (fs *FS) journalUpload(key, id string) string {
	dir := filepath.Join(fs.cfg.CacheDir, "uploads")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fs.log.Warn("upload journal: cannot create directory", "dir", dir, "err", err)
		return ""
	}
	path := filepath.Join(dir, fmt.Sprintf("%d-%d.json", os.Getpid(), stageSeq.Add(1)))
	b, _ := json.Marshal(uploadRecord{Bucket: fs.client.Bucket(), Key: key, UploadID: id})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		fs.log.Warn("upload journal: cannot write record", "path", path, "err", err)
		return ""
	}
	return path
}

// unjournal removes an upload's record once it completed or was aborted.
func unjournal(path string) {
	if path != "" {
		os.Remove(path)
	}
}

// abortOrphanUploads aborts the multipart uploads of this bucket recorded
// by mounts whose process is gone.
func (fs *FS) abortOrphanUploads() {
	dir := filepath.Join(fs.cfg.CacheDir, "uploads")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		var pid, seq int
		if _, err := fmt.Sscanf(e.Name(), "%d-%d.json", &pid, &seq); err != nil || pid == os.Getpid() || unix.Kill(pid, 0) == nil {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		var rec uploadRecord
		if err != nil || json.Unmarshal(b, &rec) != nil || rec.Bucket != fs.client.Bucket() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = fs.client.AbortMultipart(ctx, rec.Key, rec.UploadID)
		cancel()
		if err != nil && !errors.Is(err, s3backend.ErrNotFound) {
			fs.log.Warn("an upload left by a mount that stopped could not be aborted", "key", rec.Key,
				"upload_id", rec.UploadID, "err", err)
			continue
		}
		fs.log.Info("aborted an upload left by a mount that stopped", "key", rec.Key, "upload_id", rec.UploadID)
		os.Remove(path)
	}
}

// Process-wide write counters, for metrics (see WriteStats).
var (
	partsQueued atomic.Int64 // parts waiting for an upload slot
	stagedTotal atomic.Int64 // bytes of all staging files
)

// WriteStats are the write path's gauges across every mount of the
// process: parts of streamed files waiting for an upload slot (writers
// blocked behind --upload-concurrency), and bytes of staging files on disk.
type WriteStats struct {
	PartsQueued int64
	StagedBytes int64
}

// ReadWriteStats returns the write path's gauges now.
func ReadWriteStats() WriteStats {
	return WriteStats{PartsQueued: partsQueued.Load(), StagedBytes: stagedTotal.Load()}
}
