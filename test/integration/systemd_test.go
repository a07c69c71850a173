//go:build integration

package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3mount/s3mount/test/harness"
)

// A Type=notify unit runs `s3mount mount --foreground`: it must say READY=1
// on $NOTIFY_SOCKET only once the mount answers, and STOPPING=1 when a
// SIGTERM unmounts it (sd_notify(3)).
func TestSystemdNotify(t *testing.T) {
	e := newEnv(t)
	e.put("ready.txt", []byte("ready"))
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mnt := t.TempDir()
	args := harness.MountArgs(e.ep, filepath.Join(dir, "s3mount.log"), e.bucket, mnt, "--foreground")
	cmd := exec.Command(bin, args...)
	cmd.Env = append(harness.MountEnv(e.ep), "NOTIFY_SOCKET="+sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = harness.Unmount(mnt)
		_ = cmd.Process.Kill()
	})

	read := func(want string) {
		t.Helper()
		buf := make([]byte, 4096)
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("waiting for %s on NOTIFY_SOCKET: %v", want, err)
		}
		if got := string(buf[:n]); !strings.Contains(got, want) {
			t.Fatalf("NOTIFY_SOCKET got %q, want %s", got, want)
		}
	}
	read("READY=1")
	// Ready means the mount answers now, not eventually.
	if got, err := os.ReadFile(filepath.Join(mnt, "ready.txt")); err != nil || string(got) != "ready" {
		t.Fatalf("read right after READY=1: %q, %v", got, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	read("STOPPING=1")
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("s3mount exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("s3mount did not exit within 30 s of SIGTERM")
	}
	if mounted, _ := harness.IsMounted(mnt); mounted {
		t.Error("still mounted after SIGTERM")
	}
}
