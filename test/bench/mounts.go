package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/s3mount/s3mount/test/harness"
)

// mounter starts one kind of S3 mount as a foreground child process.
type mounter interface {
	Name() string
	// Check says why this mount cannot run here (nil when it can).
	Check() error
	// Command is the child process for bucket at mnt against endpoint
	// url; extra are per-workload flags (s3mount only).
	Command(url, bucket, mnt, logFile string, extra []string) (*exec.Cmd, error)
}

// mountProc is one running mount.
type mountProc struct {
	name    string
	mnt     string
	logFile string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	stopped sync.Once
	// wasMounted: the mountpoint was seen mounted (set before stop runs,
	// or by stop itself).
	wasMounted atomic.Bool
}

var (
	liveMu sync.Mutex
	live   = map[*mountProc]struct{}{}
)

// startMount runs m's command and waits until mnt is mounted and answers.
func startMount(ctx context.Context, m mounter, url, bucket, mnt, logFile string, extra []string) (*mountProc, error) {
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}
	if ok, _ := harness.IsMounted(mnt); ok {
		if err := harness.Unmount(mnt); err != nil {
			return nil, fmt.Errorf("%s is still mounted: %w", mnt, err)
		}
	}
	cmd, err := m.Command(url, bucket, mnt, logFile, extra)
	if err != nil {
		return nil, err
	}
	out, err := os.OpenFile(logFile+".out", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: a Ctrl-C reaches the bench, which unmounts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", m.Name(), err)
	}
	p := &mountProc{name: m.Name(), mnt: mnt, logFile: logFile, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	liveMu.Lock()
	live[p] = struct{}{}
	liveMu.Unlock()

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.exited:
			p.stop()
			return nil, fmt.Errorf("%s exited before mounting (%v): %s", m.Name(), p.waitErr, tail(logFile))
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		default:
		}
		if ok, _ := harness.IsMounted(mnt); ok {
			p.wasMounted.Store(true)
			// Mounted: make sure it answers.
			if err := statWithin(mnt, 30*time.Second); err != nil {
				p.stop()
				return nil, fmt.Errorf("%s mounted but %s does not answer: %v", m.Name(), mnt, err)
			}
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s did not mount within 60s: %s", m.Name(), tail(logFile))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statWithin(path string, d time.Duration) error {
	done := make(chan error, 1)
	go func() { _, err := os.ReadDir(path); done <- err }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return errors.New("timed out")
	}
}

// pid is the mount process id.
func (p *mountProc) pid() int { return p.cmd.Process.Pid }

// vmHWM is the process's peak resident set in bytes.
func (p *mountProc) vmHWM() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in status")
}

// stop unmounts (fusermount3 -u, retried while busy) and waits for the
// process to exit; a mount that appears meanwhile (stop raced with
// startup) is unmounted too. A process that does not exit gets SIGTERM,
// then SIGKILL.
func (p *mountProc) stop() error {
	var err error
	p.stopped.Do(func() {
		defer func() {
			liveMu.Lock()
			delete(live, p)
			liveMu.Unlock()
		}()
		wait := 20 * time.Second
		if !p.wasMounted.Load() {
			wait = 3 * time.Second // startup interrupted: do not wait long
		}
		deadline := time.Now().Add(wait)
		for {
			select {
			case <-p.exited:
				return
			default:
			}
			if ok, _ := harness.IsMounted(p.mnt); ok {
				p.wasMounted.Store(true)
				if e := harness.Unmount(p.mnt); e != nil {
					err = e
				}
			}
			if time.Now().After(deadline) {
				break
			}
			select {
			case <-p.exited:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
			return
		case <-time.After(5 * time.Second):
		}
		_ = p.cmd.Process.Kill()
		<-p.exited
		if err == nil {
			err = fmt.Errorf("%s did not exit after unmount; killed", p.name)
		}
	})
	return err
}

// abort kills the mount process (aborting its FUSE connection, so that
// readers stuck on it get an error) and lazily unmounts.
func (p *mountProc) abort() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
	}
	_ = exec.Command("fusermount3", "-uz", p.mnt).Run()
}

// stopAll stops every live mount (on exit or interrupt).
func stopAll() {
	liveMu.Lock()
	ps := make([]*mountProc, 0, len(live))
	for p := range live {
		ps = append(ps, p)
	}
	liveMu.Unlock()
	for _, p := range ps {
		_ = p.stop()
	}
}

func tail(path string) string {
	var b []byte
	for _, f := range []string{path, path + ".out"} {
		if x, err := os.ReadFile(f); err == nil {
			b = append(b, x...)
		}
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 1500 {
		s = "..." + s[len(s)-1500:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}

// --- s3mount ---

type s3mountM struct {
	bin       string
	ep        harness.Endpoint
	cacheSize string
	flags     []string
}

func (m *s3mountM) Name() string { return "s3mount" }

func (m *s3mountM) Check() error {
	fi, err := os.Stat(m.bin)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable", m.bin)
	}
	return nil
}

func (m *s3mountM) Command(url, bucket, mnt, logFile string, extra []string) (*exec.Cmd, error) {
	args := []string{"mount", "--foreground",
		"--endpoint-url", url, "--force-path-style", "--region", m.ep.RegionOrDefault(),
		"--cache-size", m.cacheSize, "--log-file", logFile}
	args = append(args, m.flags...)
	args = append(args, extra...)
	args = append(args, bucket, mnt)
	cmd := exec.Command(m.bin, args...)
	cmd.Env = harness.MountEnv(m.ep)
	return cmd, nil
}

// --- s3fs ---

type s3fsM struct {
	ep      harness.Endpoint
	passwd  string // AK:SK file, mode 0600
	flags   []string
	version string
}

func (m *s3fsM) Name() string { return "s3fs" }

func (m *s3fsM) Check() error {
	p, err := exec.LookPath("s3fs")
	if err != nil {
		return errors.New("s3fs not installed (apt-get install s3fs)")
	}
	out, _ := exec.Command(p, "--version").CombinedOutput()
	if f := strings.Fields(firstLine(string(out))); len(f) > 0 {
		for _, w := range f {
			if strings.HasPrefix(w, "V") && strings.Contains(w, ".") {
				m.version = w
			}
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return errors.New("/dev/fuse missing")
	}
	return nil
}

func (m *s3fsM) Command(url, bucket, mnt, logFile string, extra []string) (*exec.Cmd, error) {
	args := []string{bucket, mnt, "-f",
		"-o", "url=" + url,
		"-o", "use_path_request_style",
		"-o", "endpoint=" + m.ep.RegionOrDefault(),
		"-o", "passwd_file=" + m.passwd,
		"-o", "logfile=" + logFile,
	}
	args = append(args, m.flags...)
	cmd := exec.Command("s3fs", args...)
	cmd.Env = peerEnv() // keys come from the passwd file
	return cmd, nil
}

// --- rclone ---

type rcloneM struct {
	ep      harness.Endpoint
	config  string // an empty config file: the remote comes from env vars
	flags   []string
	version string
}

func (m *rcloneM) Name() string { return "rclone" }

func (m *rcloneM) Check() error {
	p, err := exec.LookPath("rclone")
	if err != nil {
		return errors.New("rclone not installed (apt-get install rclone)")
	}
	out, _ := exec.Command(p, "version").CombinedOutput()
	if f := strings.Fields(firstLine(string(out))); len(f) > 1 {
		m.version = f[1]
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return errors.New("/dev/fuse missing")
	}
	return nil
}

func (m *rcloneM) Command(url, bucket, mnt, logFile string, extra []string) (*exec.Cmd, error) {
	args := []string{"mount", "bench:" + bucket, mnt,
		"--config", m.config,
		"--vfs-cache-mode", "off",
		"--log-file", logFile, "--log-level", "NOTICE",
	}
	args = append(args, m.flags...)
	cmd := exec.Command("rclone", args...)
	// rclone refuses to start while AWS_CA_BUNDLE is set; keys via env.
	env := harness.FilterEnv(peerEnv(), "AWS_CA_BUNDLE", "RCLONE_CONFIG")
	cmd.Env = append(env,
		"RCLONE_CONFIG_BENCH_TYPE=s3",
		"RCLONE_CONFIG_BENCH_PROVIDER=Other",
		"RCLONE_CONFIG_BENCH_ENV_AUTH=false",
		"RCLONE_CONFIG_BENCH_ENDPOINT="+url,
		"RCLONE_CONFIG_BENCH_REGION="+m.ep.RegionOrDefault(),
		"RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true",
		"RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="+m.ep.AccessKey,
		"RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="+m.ep.SecretKey,
	)
	return cmd, nil
}

// peerEnv is our environment without any AWS credential variables.
func peerEnv() []string {
	return harness.FilterEnv(os.Environ(), "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWSACCESSKEYID", "AWSSECRETACCESSKEY", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
		"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// writeSecretFile writes content to dir/name with mode 0600.
func writeSecretFile(dir, name, content string) (string, error) {
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, []byte(content), 0o600)
}
