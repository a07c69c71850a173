package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"
)

// dropCaches flushes dirty pages and drops the page, dentry and inode caches.
func dropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
}

// settle prepares a write row: the bench's own freed heap goes back to the
// kernel now rather than in the background during the row
// (debug.FreeOSMemory), every dirty page is written back (sync(2)) so that
// a row does not pay for the writeback of the uploads measured before it
// (the server keeps each object on this machine's disk), and then 2 s pass
// for the kernel's background work on what the last row freed (this VM
// reports freed memory to the hypervisor at once: README.md, "Machine notes").
// Without the pause, s3mount's write measured 200–260 MB/s in the bench
// against 300–340 by hand, almost all of it in a slower
// CompleteMultipartUpload (fsync 1.3 s against 0.6 s). The source file
// stays in the page cache.
func settle() {
	debug.FreeOSMemory()
	syscall.Sync()
	time.Sleep(2 * time.Second)
}

// warmFile reads a local file so that it is in the page cache (the
// server's copy of an object: every row then reads the server from memory).
func warmFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyBuffer(discard{}, f, make([]byte, 1<<20))
	return err
}

var ddBytes = regexp.MustCompile(`(?m)^(\d+) bytes`)

// dd reads path with `dd bs=1M` (count MiB when count > 0) and returns MB/s
// over the wall time of the dd process; it checks that want bytes were read.
func dd(ctx context.Context, path string, count, want int64) (float64, error) {
	args := []string{"if=" + path, "of=/dev/null", "bs=1M"}
	if count > 0 {
		args = append(args, fmt.Sprintf("count=%d", count))
	}
	cmd := exec.CommandContext(ctx, "dd", args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("dd %s: %v: %s", path, err, lastLine(errb.String()))
	}
	m := ddBytes.FindStringSubmatch(errb.String())
	if m == nil {
		return 0, fmt.Errorf("dd %s: no byte count in %q", path, errb.String())
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	if n != want {
		return 0, fmt.Errorf("dd %s read %d bytes, want %d", path, n, want)
	}
	return mbps(n, d), nil
}

// randomReads preads n blocks of bs bytes at random offsets (multiples of
// align, fixed seed: every mount reads the same offsets); returns MB/s.
func randomReads(path string, size, bs int64, n int, align int64) (float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rng := mrand.New(mrand.NewPCG(4, 2))
	buf := make([]byte, bs)
	slots := (size-bs)/align + 1
	start := time.Now()
	for i := 0; i < n; i++ {
		off := rng.Int64N(slots) * align
		k, err := f.ReadAt(buf, off)
		if err != nil && !(errors.Is(err, io.EOF) && int64(k) == bs) {
			return 0, fmt.Errorf("pread %d bytes at %d: got %d: %w", bs, off, k, err)
		}
	}
	return mbps(int64(n)*bs, time.Since(start)), nil
}

// firstByte times open + a 1-byte pread at offset 0, in milliseconds.
func firstByte(path string) (float64, error) {
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return 0, err
	}
	return float64(time.Since(start).Microseconds()) / 1000, nil
}

type lineCounter struct{ n int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

// run runs a command with stdout counted in lines and returns the wall time.
func run(ctx context.Context, name string, args ...string) (time.Duration, int, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var lc lineCounter
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &lc, &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, lc.n, fmt.Errorf("%s: %v: %s", name, err, lastLine(errb.String()))
	}
	return d, lc.n, nil
}

// lsL times `ls -l dir` and checks that it listed want entries.
func lsL(ctx context.Context, dir string, want int) (float64, error) {
	d, lines, err := run(ctx, "ls", "-l", dir)
	if err != nil {
		return 0, err
	}
	if lines-1 != want { // first line is "total N"
		return 0, fmt.Errorf("ls -l listed %d entries, want %d", lines-1, want)
	}
	return d.Seconds(), nil
}

// findDu times `find dir` then `du -s dir`; find must list at least files
// entries (files plus directories).
func findDu(ctx context.Context, dir string, files int) (float64, error) {
	d1, lines, err := run(ctx, "find", dir)
	if err != nil {
		return 0, err
	}
	if lines < files {
		return 0, fmt.Errorf("find listed %d entries, want at least %d files", lines, files)
	}
	d2, _, err := run(ctx, "du", "-s", dir)
	if err != nil {
		return 0, err
	}
	return (d1 + d2).Seconds(), nil
}

func lastLine(s string) string {
	s = string(bytes.TrimSpace([]byte(s)))
	if i := bytes.LastIndexByte([]byte(s), '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}
