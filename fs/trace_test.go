package fs

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/s3backend/s3fake"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestOpsTraceCountsAndNamesPaths(t *testing.T) {
	c := s3fake.New("bkt")
	c.PutDirect("dir/a.txt", []byte("hello"))
	c.PutDirect("listed/b.txt", []byte("world"))
	blocks, err := cache.NewBlocks(64<<20, testBlock)
	if err != nil {
		t.Fatal(err)
	}
	var logBuf syncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := Config{Client: c, Blocks: blocks, Meta: cache.NewMeta(time.Second, 1<<16, nil),
		BlockSize: testBlock, DownloadThreads: 4, PartSize: 5 << 20, UploadConcurrency: 2,
		UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), FileMode: 0o644, DirMode: 0o755, Logger: log}
	_, root := New(cfg)
	var mu sync.Mutex
	counts := map[string]int{}
	ops := &Ops{Trace: true, Observe: func(op string, errno syscall.Errno, d time.Duration) {
		mu.Lock()
		counts[op+" "+ErrnoName(errno)]++
		mu.Unlock()
	}}
	mnt := t.TempDir()
	server, err := Mount(mnt, root, MountConfig{FsName: "test", TTL: time.Second, Ops: ops})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		blocks.Close()
	})

	if _, err := os.Stat(filepath.Join(mnt, "missing")); !os.IsNotExist(err) {
		t.Fatalf("stat missing: %v", err)
	}
	f, err := os.Open(filepath.Join(mnt, "dir", "a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if ops.OpenFiles() != 1 {
		t.Errorf("OpenFiles = %d with one file open", ops.OpenFiles())
	}
	if _, err := f.Read(make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	d, err := os.Open(filepath.Join(mnt, "dir"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Readdirnames(-1); err != nil {
		t.Fatal(err)
	}
	if ops.OpenDirs() != 1 {
		t.Errorf("OpenDirs = %d with one directory open", ops.OpenDirs())
	}
	d.Close()
	// A file the kernel learned from READDIRPLUS (ls, then cat): no
	// LOOKUP names it, the listing does.
	if _, err := os.ReadDir(filepath.Join(mnt, "listed")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "listed", "b.txt")); err != nil || string(b) != "world" {
		t.Fatalf("read listed/b.txt: %q %v", b, err)
	}
	// RELEASE is asynchronous: wait for the counts to drop.
	deadline := time.Now().Add(5 * time.Second)
	for (ops.OpenFiles() != 0 || ops.OpenDirs() != 0) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ops.OpenFiles() != 0 || ops.OpenDirs() != 0 {
		t.Errorf("after close: %d files, %d dirs open", ops.OpenFiles(), ops.OpenDirs())
	}

	mu.Lock()
	for _, want := range []string{"LOOKUP ENOENT", "LOOKUP OK", "OPEN OK", "READ OK", "OPENDIR OK"} {
		if counts[want] == 0 {
			t.Errorf("no %s observed; observed %v", want, counts)
		}
	}
	mu.Unlock()
	trace := logBuf.String()
	for _, want := range []string{
		"op=LOOKUP path=/missing errno=ENOENT",
		"op=LOOKUP path=/dir/a.txt errno=OK",
		"op=READ path=/dir/a.txt errno=OK",
		"op=READ path=/listed/b.txt errno=OK",
	} {
		if !strings.Contains(trace, want) {
			t.Errorf("trace lacks %q:\n%s", want, trace)
		}
	}
}

func TestErrnoName(t *testing.T) {
	for e, want := range map[syscall.Errno]string{0: "OK", syscall.ENOENT: "ENOENT", syscall.EIO: "EIO", 4095: "4095"} {
		if got := ErrnoName(e); got != want {
			t.Errorf("ErrnoName(%d) = %q, want %q", e, got, want)
		}
	}
}
