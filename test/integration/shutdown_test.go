//go:build integration

package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3mount/s3mount/test/harness"
)

// fgMount is `s3mount mount --foreground` run by the test, so that the
// test can signal it and see its exit status.
type fgMount struct {
	cmd    *exec.Cmd
	mnt    string
	log    string
	exited chan error
}

// startForeground mounts e's bucket with --foreground (plus extra) and
// returns once the mountpoint is mounted.
func startForeground(t *testing.T, e *env, extra ...string) *fgMount {
	t.Helper()
	m := &fgMount{mnt: t.TempDir(), log: filepath.Join(t.TempDir(), "s3mount.log"), exited: make(chan error, 1)}
	args := harness.MountArgs(e.ep, m.log, e.bucket, m.mnt, append([]string{"--foreground"}, extra...)...)
	m.cmd = exec.Command(bin, args...)
	m.cmd.Env = harness.TestMountEnv(t, e.ep, extra)
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.exited <- m.cmd.Wait() }()
	t.Cleanup(func() {
		_ = harness.Unmount(m.mnt)
		_ = m.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("s3mount log:\n%s", harness.LogTail(m.log))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if mounted, _ := harness.IsMounted(m.mnt); mounted {
			return m
		}
		select {
		case err := <-m.exited:
			t.Fatalf("s3mount exited before mounting: %v\nlog:\n%s", err, harness.LogTail(m.log))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("not mounted after 30 s\nlog:\n%s", harness.LogTail(m.log))
		}
	}
}

// waitDetached waits until the mountpoint is no longer in the mount table.
func (m *fgMount) waitDetached(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if mounted, _ := harness.IsMounted(m.mnt); !mounted {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("still in the mount table 10 s after SIGTERM: the mount was not detached")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exitCode waits for the process to end and returns its exit status.
func (m *fgMount) exitCode(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case err := <-m.exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("waiting for s3mount: %v", err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("s3mount still running %v later\nlog:\n%s", within, harness.LogTail(m.log))
	}
	return -1
}

func (m *fgMount) alive() bool {
	select {
	case err := <-m.exited:
		m.exited <- err
		return false
	default:
		return true
	}
}

// writeChunks writes n MiB of seeded random bytes to f, and returns their
// SHA-256 through sum when done.
func writeChunks(f *os.File, rng *rand.Rand, n int, h interface{ Write([]byte) (int, error) }) error {
	buf := make([]byte, 1<<20)
	for i := 0; i < n; i++ {
		rng.Read(buf)
		h.Write(buf)
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// SIGTERM while a program writes a large file: the mount is detached at
// once (no new opens), the writer goes on and closes successfully, the
// daemon exits 0 once it has, and the object in S3 is complete.
func TestSIGTERMDuringLargeWriteCompletesTheUpload(t *testing.T) {
	e := newEnv(t)
	m := startForeground(t, e)
	const total, before = 300, 40 // MiB
	f, err := os.Create(filepath.Join(m.mnt, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(6))
	h := sha256.New()
	if err := writeChunks(f, rng, before, h); err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	m.waitDetached(t)
	if _, err := os.Stat(filepath.Join(m.mnt, "big.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after SIGTERM the mountpoint still shows the file (%v): not detached", err)
	}
	if !m.alive() {
		t.Fatal("s3mount exited while a file was still open for writing")
	}
	// It says what it waits for (every 5 s).
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(readFile(m.log), `msg="waiting for open files to close before exiting" open_files=1`) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line of what the stopping daemon waits for:\n%s", readFile(m.log))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := writeChunks(f, rng, total-before, h); err != nil {
		t.Fatalf("writing after SIGTERM: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close after SIGTERM: %v", err)
	}
	if code := m.exitCode(t, 60*time.Second); code != 0 {
		t.Fatalf("s3mount exited %d after the writer closed, want 0\nlog:\n%s", code, harness.LogTail(m.log))
	}
	size, err := e.c.HeadObject(e.ctx, e.bucket, "big.bin")
	if err != nil || size != total<<20 {
		t.Fatalf("object size %d, %v; want %d", size, err, total<<20)
	}
	s3sum := sha256.New()
	if _, err := e.c.GetObjectTo(e.ctx, e.bucket, "big.bin", s3sum); err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(s3sum.Sum(nil)), hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("object sha256 %s, written %s", got, want)
	}
	log := readFile(m.log)
	for _, want := range []string{"stopping: detaching the mount", "unmounted"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// A second signal forces the exit while a file is open: non-zero status,
// the log says the upload was abandoned (and aborted), the writer's next
// write or close fails, and no object appears.
func TestSecondSignalForcesExit(t *testing.T) {
	e := newEnv(t)
	m := startForeground(t, e, "--part-size", "5M")
	f, err := os.Create(filepath.Join(m.mnt, "abandoned.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewSource(7))
	if err := writeChunks(f, rng, 12, sha256.New()); err != nil { // two parts out: a multipart upload is open
		t.Fatal(err)
	}
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	m.waitDetached(t)
	time.Sleep(200 * time.Millisecond)
	if !m.alive() {
		t.Fatal("s3mount exited after one SIGTERM with a file open")
	}
	if err := m.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := m.exitCode(t, 20*time.Second); code == 0 {
		t.Error("forced exit returned 0, want non-zero")
	}
	log := readFile(m.log)
	for _, want := range []string{"second signal", "abandoned", "multipart_uploads_open=1", "aborted=true"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	werr := writeChunks(f, rng, 1, sha256.New())
	cerr := f.Close()
	if werr == nil && cerr == nil {
		t.Error("write and close succeeded after the daemon was forced out")
	}
	if _, err := e.c.HeadObject(e.ctx, e.bucket, "abandoned.bin"); !harness.IsNotFound(err) {
		t.Errorf("HeadObject of the abandoned file: %v, want not found", err)
	}
}
