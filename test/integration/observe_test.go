//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/s3mount/s3mount/test/harness"
)

// scrape reads http://addr/metrics into series (name{labels} as printed,
// labels in Prometheus' sorted order) → value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scraping metrics: HTTP %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// metricsAddr is a free 127.0.0.1 address for --metrics-addr.
func metricsAddr(t *testing.T) string {
	t.Helper()
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// preadUncached reads n bytes at off through the mount after dropping the
// file's pages from the kernel's page cache.
func preadUncached(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// readUncached reads a file through the mount after dropping its pages
// from the kernel's page cache, so that every byte is a FUSE READ.
func readUncached(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The metrics endpoint, scraped after a known workload: a 20 MiB file
// written (multipart: 8 MiB parts) and a small one (PutObject), read twice
// (the second time from the block cache), a listing and a stat of a
// missing name.
func TestMetricsCountAKnownWorkload(t *testing.T) {
	e := newEnv(t)
	addr := metricsAddr(t)
	mnt := e.mount("--metrics-addr", addr, "--part-size", "8M")
	before := scrape(t, addr)
	if before[`s3mount_s3_requests_total{op="UploadPart",status="ok"}`] != 0 {
		t.Fatal("parts counted before any write")
	}
	data := harness.RandomBytes(20 << 20)
	if err := os.WriteFile(filepath.Join(mnt, "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "small.txt"), []byte("small"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readUncached(t, filepath.Join(mnt, "big.bin")); harness.SHA256Hex(got) != harness.SHA256Hex(data) {
		t.Fatal("read back different bytes")
	}
	// A random read (1 MiB at 13 MiB) is kept in the block cache (blocks
	// read ahead of a lone sequential reader are not: the kernel's page
	// cache holds those), so reading it again after the kernel dropped
	// its pages is answered by the block cache.
	preadUncached(t, filepath.Join(mnt, "big.bin"), 13<<20, 1<<20)
	afterFirst := scrape(t, addr)
	if got := preadUncached(t, filepath.Join(mnt, "big.bin"), 13<<20, 1<<20); !bytes.Equal(got, data[13<<20:14<<20]) {
		t.Fatal("re-read different bytes")
	}
	if names := dirNames(t, mnt); strings.Join(names, ",") != "big.bin,small.txt" {
		t.Errorf("ls: %v", names)
	}
	if _, err := os.Stat(filepath.Join(mnt, "missing")); !os.IsNotExist(err) {
		t.Fatalf("stat missing: %v", err)
	}
	m := scrape(t, addr)

	for series, want := range map[string]float64{
		`s3mount_s3_requests_total{op="CreateMultipartUpload",status="ok"}`:   1,
		`s3mount_s3_requests_total{op="UploadPart",status="ok"}`:              3, // 8 + 8 + 4 MiB
		`s3mount_s3_requests_total{op="CompleteMultipartUpload",status="ok"}`: 1,
		`s3mount_s3_requests_total{op="PutObject",status="ok"}`:               1,
		`s3mount_multipart_uploads_open`:                                      0,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}
	for series, min := range map[string]float64{
		`s3mount_s3_requests_total{op="GetObject",status="ok"}`:                1,
		`s3mount_s3_sent_bytes_total`:                                          20<<20 + 5,
		`s3mount_s3_received_bytes_total`:                                      20 << 20,
		`s3mount_fuse_ops_total{errno="ENOENT",op="LOOKUP"}`:                   1,
		`s3mount_fuse_ops_total{errno="OK",op="READ"}`:                         2,
		`s3mount_fuse_ops_total{errno="OK",op="WRITE"}`:                        20,
		`s3mount_s3_request_duration_seconds_count{op="UploadPart"}`:           3,
		`s3mount_fuse_op_duration_seconds_count{op="LOOKUP"}`:                  1,
		`s3mount_cache_misses_total`:                                           1,
		`s3mount_cache_bytes`:                                                  1,
		`s3mount_cache_max_bytes`:                                              512 << 20,
		`s3mount_fuse_ops_total{errno="OK",op="READDIRPLUS"}`:                  1,
		`s3mount_s3_requests_in_flight{op="UploadPart"}`:                       0,
		`s3mount_s3_request_duration_seconds_bucket{op="GetObject",le="+Inf"}`: 1,
	} {
		if m[series] < min {
			t.Errorf("%s = %v, want at least %v", series, m[series], min)
		}
	}
	// The re-read came from the block cache: hits grew by its block (1
	// MiB), and no new GetObject was needed.
	hits := m[`s3mount_cache_hits_total`] - afterFirst[`s3mount_cache_hits_total`]
	if hits < 1 {
		t.Errorf("cache hits grew by %v on re-reading a cached block, want at least 1", hits)
	}
	gets := `s3mount_s3_requests_total{op="GetObject",status="ok"}`
	if m[gets] != afterFirst[gets] {
		t.Errorf("the re-read sent %v GetObject, want 0 (block cache)", m[gets]-afterFirst[gets])
	}
	if q := m[`s3mount_upload_parts_queued`]; q != 0 {
		t.Errorf("s3mount_upload_parts_queued = %v with nothing being written", q)
	}
	// An in-place edit stages the file on disk until its last close.
	f, err := os.OpenFile(filepath.Join(mnt, "big.bin"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 64<<10), 1<<20); err != nil {
		t.Fatal(err)
	}
	if st := scrape(t, addr)[`s3mount_staging_bytes`]; st < 64<<10 {
		t.Errorf("s3mount_staging_bytes = %v while 64 KiB are staged", st)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var st float64
	for range 100 { // the last release follows close(2) asynchronously
		if st = scrape(t, addr)[`s3mount_staging_bytes`]; st == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st != 0 {
		t.Errorf("s3mount_staging_bytes = %v after the edited file was closed", st)
	}
}

// A mount with an access key whose secret comes from a file, logging at
// debug level in JSON with the FUSE trace: the trace names ops, paths and
// errnos; a failed S3 request logs op, key, status and request ID on one
// line; and the secret appears nowhere in the log.
func TestDebugJSONLogTracesFUSEAndHidesTheSecret(t *testing.T) {
	e := newEnv(t)
	e.put("dir/file.txt", []byte("content"))
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(e.ep.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "s3mount.log")
	mnt := t.TempDir()
	args := harness.MountArgs(e.ep, logFile, e.bucket, mnt, "--access-key-id", e.ep.AccessKey,
		"--secret-access-key-file", secretFile, "--debug", "--log-format", "json")
	env := harness.FilterEnv(harness.MountEnv(e.ep), "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
	res := harness.RunMount(t, bin, env, args, mnt, logFile)
	if res.ExitCode != 0 || !res.Mounted {
		t.Fatalf("mount: %s\nlog:\n%s", res, harness.LogTail(logFile))
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "dir", "file.txt")); err != nil || string(b) != "content" {
		t.Fatalf("read: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "dir", "nope.txt")); !os.IsNotExist(err) {
		t.Fatalf("stat missing: %v", err)
	}
	if err := harness.Unmount(mnt); err != nil {
		t.Fatal(err)
	}
	raw := readFile(logFile)
	if strings.Contains(raw, e.ep.SecretKey) {
		t.Fatal("the secret access key appears in the debug log")
	}
	var traced, failed, readTraced bool
	for _, line := range lines(raw) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		if rec["msg"] == "fuse" && rec["op"] == "LOOKUP" && rec["path"] == "/dir/nope.txt" && rec["errno"] == "ENOENT" {
			if _, ok := rec["us"]; ok {
				traced = true
			}
		}
		if rec["msg"] == "fuse" && rec["op"] == "READ" && rec["path"] == "/dir/file.txt" && rec["errno"] == "OK" {
			readTraced = true
		}
		if rec["msg"] == "s3 request failed" && rec["op"] == "HeadObject" && rec["key"] == "dir/nope.txt" {
			_, hasStatus := rec["status"]
			_, hasID := rec["request_id"]
			if hasStatus && hasID && rec["status"] == float64(404) {
				failed = true
			}
		}
	}
	if !traced || !readTraced {
		t.Errorf("no FUSE trace of LOOKUP /dir/nope.txt ENOENT (%v) or READ /dir/file.txt (%v) in the log:\n%s", traced, readTraced, clip(raw, 6000))
	}
	if !failed {
		t.Errorf("no line for the failed HeadObject of dir/nope.txt with status 404 and request_id:\n%s", clip(raw, 6000))
	}
}
