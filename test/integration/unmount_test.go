//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3mount/s3mount/test/harness"
)

// run runs the s3mount binary and returns its exit code and stderr.
func runBin(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running s3mount %v: %v", args, err)
	}
	return code, stderr.String()
}

// daemonsOf returns the pids of the s3mount processes whose last argument is
// mountpoint: the one serving it, and any earlier one still exiting.
func daemonsOf(t *testing.T, mountpoint string) []int {
	t.Helper()
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 1 && args[0] == bin && args[len(args)-1] == mountpoint {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		t.Fatalf("no s3mount process serves %s", mountpoint)
	}
	return pids
}

func TestUnmountBusyNotMountedAndDeadMount(t *testing.T) {
	e := newEnv(t)
	mnt := e.mount()
	env := harness.MountEnv(e.ep)

	f, err := os.Open(mnt) // an open directory keeps the mount busy
	if err != nil {
		t.Fatal(err)
	}
	code, stderr := runBin(t, env, "unmount", mnt)
	if code == 0 || !strings.Contains(stderr, "busy") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
		t.Errorf("unmount of a busy mount: exit %d, %q; want non-zero and one line saying busy", code, stderr)
	}
	f.Close()
	if code, stderr := runBin(t, env, "unmount", mnt); code != 0 {
		t.Fatalf("unmount: exit %d, %q", code, stderr)
	}
	if mounted, _ := harness.IsMounted(mnt); mounted {
		t.Fatal("still mounted after unmount")
	}
	if code, stderr := runBin(t, env, "unmount", mnt); code == 0 || !strings.Contains(stderr, "not mounted") {
		t.Errorf("unmount of nothing: exit %d, %q; want non-zero, not mounted", code, stderr)
	}

	// A mount whose process died answers ENOTCONN; mounting again says so
	// and how to recover, and the recovery works.
	harness.Mount(t, bin, e.ep, e.bucket, mnt)
	// Every daemon named after mnt: the one unmounted above may still be
	// exiting on a loaded machine, and killing only it would leave the
	// new mount answering.
	for _, pid := range daemonsOf(t, mnt) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := os.ReadDir(mnt)
		if err != nil && strings.Contains(err.Error(), "not connected") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after killing the daemon, readdir gives %v, want ENOTCONN", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	args := harness.MountArgs(e.ep, "", e.bucket, mnt)
	code, stderr = runBin(t, env, args...)
	if code == 0 || !strings.Contains(stderr, "is dead") || !strings.Contains(stderr, "unmount --lazy") {
		t.Errorf("mount over a dead mount: exit %d, %q; want the dead mount and its recovery named", code, stderr)
	}
	if code, stderr := runBin(t, env, "unmount", "--lazy", mnt); code != 0 {
		t.Fatalf("unmount --lazy of the dead mount: exit %d, %q", code, stderr)
	}
	harness.Mount(t, bin, e.ep, e.bucket, mnt)
	if _, err := os.ReadDir(mnt); err != nil {
		t.Errorf("readdir after remounting: %v", err)
	}
}
