//go:build integration

package integration

import (
	"bytes"
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

// unitCommands reads packaging/s3mount@.service and returns its Type and
// the argv of ExecStartPre and ExecStart, with the instance %i and the
// /mnt directory replaced as given.
func unitCommands(t *testing.T, instance, mntDir string) (typ string, pre, start []string) {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(filepath.Join(root, "packaging", "s3mount@.service"))
	if err != nil {
		t.Fatal(err)
	}
	sub := strings.NewReplacer("/mnt/", mntDir+"/", "%i", instance)
	for _, l := range strings.Split(string(unit), "\n") {
		key, val, ok := strings.Cut(strings.TrimSpace(l), "=")
		if !ok || strings.HasPrefix(key, "#") {
			continue
		}
		switch key {
		case "Type":
			typ = val
		case "ExecStartPre":
			pre = strings.Fields(sub.Replace(val))
		case "ExecStart":
			start = strings.Fields(sub.Replace(val))
		}
	}
	if len(start) < 2 || filepath.Base(start[0]) != "s3mount" {
		t.Fatalf("the unit's ExecStart %q does not run s3mount", start)
	}
	return typ, pre, start
}

// The systemd unit template, run as systemd would run s3mount@team: its
// ExecStartPre and ExecStart command lines, read from
// packaging/s3mount@.service, with the connection "team" from the test's
// connections file (S3MOUNT_CONFIG; systemd's would be the default file)
// and /mnt replaced by a temp dir. Type=notify: s3mount must say READY=1 on
// $NOTIFY_SOCKET only once the mount answers, and STOPPING=1 when SIGTERM
// (systemctl stop) unmounts it; it then exits 0 (sd_notify(3)).
func TestSystemdUnitRunsAndNotifies(t *testing.T) {
	e := newEnv(t)
	e.put("ready.txt", []byte("ready"))
	cfg, _ := teamConnection(t, e)
	dir := t.TempDir()
	typ, pre, start := unitCommands(t, "team", dir)
	if typ != "notify" {
		t.Errorf("the unit's Type is %q, want notify", typ)
	}
	if len(pre) > 0 {
		if out, err := exec.Command(pre[0], pre[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("ExecStartPre %q: %v\n%s", pre, err, out)
		}
	}
	mnt := start[len(start)-1]
	if filepath.Dir(mnt) != dir {
		t.Fatalf("the unit's mountpoint %s is not under /mnt", mnt)
	}
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cmd := exec.Command(bin, start[1:]...)
	cmd.Env = harness.CleanEnv("S3MOUNT_CONFIG="+cfg, "NOTIFY_SOCKET="+sock)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr // systemd's journal: the unit has no --log-file
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
			t.Fatalf("waiting for %s on NOTIFY_SOCKET: %v\nstderr:\n%s", want, err, stderr.String())
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
			t.Errorf("s3mount exited with %v after SIGTERM, want 0\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("s3mount did not exit within 30 s of SIGTERM")
	}
	if mounted, _ := harness.IsMounted(mnt); mounted {
		t.Error("still mounted after SIGTERM")
	}
	if !strings.Contains(stderr.String(), "msg=mounted") || !strings.Contains(stderr.String(), "log=stderr") {
		t.Errorf("the foreground log on stderr lacks the mounted line:\n%s", stderr.String())
	}
}
