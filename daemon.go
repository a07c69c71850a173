package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/s3mount/s3mount/fs"
	"github.com/s3mount/s3mount/mountopts"
)

// The daemon handshake: without --foreground, the command starts itself
// again as a detached child (new session, stdio on /dev/null) with the
// write end of a pipe as fd 3 and S3MOUNT_DAEMON=1, and waits. The child
// writes "ok" once the mount answers, or one line of error, and the parent
// exits 0 or prints that line and exits 1. fstab, `mount -a` and scripts
// thus see the mount ready, or the reason it failed, when the command ends.
const (
	daemonEnv      = "S3MOUNT_DAEMON"
	daemonReadyFd  = 3
	daemonDeadline = 2 * time.Minute
)

func isDaemonChild() bool { return os.Getenv(daemonEnv) == "1" }

var readyOnce sync.Once

// reportReady tells the waiting parent how the mount went; only the first
// call counts.
func reportReady(err error) {
	readyOnce.Do(func() {
		f := os.NewFile(daemonReadyFd, "ready")
		if f == nil {
			return
		}
		msg := "ok\n"
		if err != nil {
			msg = "error: " + oneLine(err) + "\n"
		}
		_, _ = f.WriteString(msg)
		_ = f.Close()
	})
}

// spawnDaemon starts the daemon child and waits for its report.
func spawnDaemon(o mountopts.Options, mountpoint string) error {
	if st, err := os.Stat(mountpoint); err != nil {
		if errors.Is(err, syscall.ENOTCONN) {
			return fs.DeadMountError(mountpoint, err)
		}
		return fmt.Errorf("mountpoint %s: %w", mountpoint, errors.Unwrap(err))
	} else if !st.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", mountpoint)
	}
	if err := fs.CheckNotMounted(mountpoint); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding own executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	cmd.ExtraFiles = []*os.File{w} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("starting the daemon: %w", err)
	}
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	lines := make(chan string, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		if err != nil && err != io.EOF {
			line = ""
		}
		lines <- strings.TrimSpace(line)
	}()
	select {
	case line := <-lines:
		switch {
		case line == "ok":
			return nil
		case strings.HasPrefix(line, "error: "):
			return errors.New(strings.TrimPrefix(line, "error: "))
		}
		// The pipe closed without a report: the child died.
		err := <-exited
		return fmt.Errorf("the daemon exited before mounting (%v); run with --foreground to see why", err)
	case <-time.After(daemonDeadline):
		_ = cmd.Process.Kill()
		return fmt.Errorf("the mount did not answer within %s", daemonDeadline)
	}
}
