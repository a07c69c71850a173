package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// MountTimeout bounds one run of `s3mount mount` (daemon mode returns once
// the mount answers, or fails).
var MountTimeout = 2 * time.Minute

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// BuildS3mount builds the s3mount binary once per process into dir (go build
// at the repo root) and returns its path. If $S3MOUNT_BIN is set, that binary
// is used instead.
func BuildS3mount(dir string) (string, error) {
	buildOnce.Do(func() {
		if p := os.Getenv("S3MOUNT_BIN"); p != "" {
			abs, err := filepath.Abs(p)
			if err == nil {
				err = checkExecutable(abs)
			}
			if err != nil {
				buildErr = fmt.Errorf("S3MOUNT_BIN=%s: %w", p, err)
				return
			}
			buildBin = abs
			return
		}
		root, err := RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		out := filepath.Join(dir, "s3mount")
		cmd := exec.Command("go", "build", "-o", out, ".")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build of s3mount failed: %v\n%s", err, b)
			return
		}
		buildBin = out
	})
	return buildBin, buildErr
}

// MountResult is what one run of `s3mount mount` did.
type MountResult struct {
	Args       []string
	ExitCode   int // -1 if it did not exit by itself (timeout) or did not start
	Stdout     string
	Stderr     string
	Err        error // error from running it (non-zero exit included)
	Mounted    bool  // the mountpoint is a mount after the command returned
	Mountpoint string
	LogFile    string
	Duration   time.Duration
}

func (r MountResult) String() string {
	return fmt.Sprintf("s3mount %s: exit %d after %v (err %v)\nstdout: %q\nstderr: %q",
		strings.Join(r.Args, " "), r.ExitCode, r.Duration.Round(time.Millisecond), r.Err, r.Stdout, r.Stderr)
}

// MountArgs is the command line the harness uses: endpoint, path style,
// region and a log file first, then extra, then SOURCE MOUNTPOINT.
func MountArgs(ep Endpoint, logFile, source, mountpoint string, extra ...string) []string {
	args := []string{"mount",
		"--endpoint-url", ep.URL,
		"--force-path-style",
		"--region", ep.RegionOrDefault(),
	}
	if logFile != "" {
		args = append(args, "--log-file", logFile)
	}
	args = append(args, extra...)
	return append(args, source, mountpoint)
}

// MountEnv is the environment for the binary: ours, with any AWS credential
// or profile variables replaced by ep's keys.
func MountEnv(ep Endpoint) []string {
	env := FilterEnv(os.Environ(),
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_EC2_METADATA_DISABLED")
	return append(env,
		"AWS_ACCESS_KEY_ID="+ep.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+ep.SecretKey,
		"AWS_EC2_METADATA_DISABLED=true")
}

// TryMount runs `s3mount mount` in daemon mode and reports what happened,
// without judging it. If the mountpoint ends up mounted, the test's cleanup
// unmounts it (and checks that the daemon exits). The log goes to a file in
// a temp dir unless extra has --log-file.
func TryMount(t testing.TB, bin string, ep Endpoint, source, mountpoint string, extra ...string) MountResult {
	t.Helper()
	logFile := ""
	if !hasFlag(extra, "--log-file") {
		logFile = filepath.Join(t.TempDir(), "s3mount.log")
	}
	if abs, err := filepath.Abs(mountpoint); err == nil {
		mountpoint = abs
	}
	if real, err := filepath.EvalSymlinks(mountpoint); err == nil {
		mountpoint = real
	}
	args := MountArgs(ep, logFile, source, mountpoint, extra...)
	return RunMount(t, bin, TestMountEnv(t, ep, extra), args, mountpoint, logFile)
}

// TestMountEnv is MountEnv for a test's mount: unless extra has
// --cache-dir, the default cache directory (staging files, upload
// records, copies) is a temp dir of the test, not the user's ~/.cache.
func TestMountEnv(t testing.TB, ep Endpoint, extra []string) []string {
	env := MountEnv(ep)
	if !hasFlag(extra, "--cache-dir") {
		env = append(FilterEnv(env, "XDG_CACHE_HOME"), "XDG_CACHE_HOME="+t.TempDir())
	}
	return env
}

// RunMount runs the binary with exactly args (whose last is mountpoint)
// and env, and reports like TryMount; a mount it made is unmounted when the
// test ends. logFile is where the args send the daemon's log ("" if none).
func RunMount(t testing.TB, bin string, env, args []string, mountpoint, logFile string) MountResult {
	t.Helper()
	res := MountResult{Args: args, Mountpoint: mountpoint, LogFile: logFile, ExitCode: -1}

	outDir := t.TempDir()
	stdout, err := os.Create(filepath.Join(outDir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(outDir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()

	ctx, cancel := context.WithTimeout(context.Background(), MountTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	// Files, not pipes: the daemon may inherit them and outlive the command.
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Stdin = nil
	start := time.Now()
	res.Err = cmd.Run()
	res.Duration = time.Since(start)
	if cmd.ProcessState != nil && ctx.Err() == nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		res.Err = fmt.Errorf("s3mount mount did not return within %v: %w", MountTimeout, ctx.Err())
	}
	o, _ := os.ReadFile(stdout.Name())
	e, _ := os.ReadFile(stderr.Name())
	res.Stdout, res.Stderr = string(o), string(e)

	mounted, err := IsMounted(mountpoint)
	if err != nil {
		t.Fatalf("reading mount table: %v", err)
	}
	res.Mounted = mounted
	if mounted || res.ExitCode == 0 {
		daemons := findDaemons(bin, mountpoint)
		t.Cleanup(func() { cleanupMount(t, mountpoint, daemons, logFile) })
	}
	return res
}

// Mount mounts source at mountpoint with the real binary in daemon mode
// (env AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from ep) and unmounts it when
// the test ends. An empty mountpoint makes a temp dir. It fails the test if
// the command fails or the mountpoint is not mounted afterwards. It returns
// the mountpoint.
func Mount(t testing.TB, bin string, ep Endpoint, source, mountpoint string, extra ...string) string {
	t.Helper()
	if mountpoint == "" {
		mountpoint = t.TempDir()
	}
	res := TryMount(t, bin, ep, source, mountpoint, extra...)
	if res.ExitCode != 0 || res.Err != nil || !res.Mounted {
		t.Fatalf("mount failed (mounted=%v): %s\nlog tail:\n%s", res.Mounted, res, logTail(res.LogFile))
	}
	return res.Mountpoint
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

func cleanupMount(t testing.TB, mountpoint string, daemons []int, logFile string) {
	if err := Unmount(mountpoint); err != nil {
		t.Errorf("unmount %s: %v", mountpoint, err)
	}
	if len(daemons) == 0 {
		t.Logf("no s3mount daemon process found for %s: not checking that it exits", mountpoint)
	}
	// The daemon should exit once its mount is gone.
	deadline := time.Now().Add(20 * time.Second)
	for _, pid := range daemons {
		for processAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if processAlive(pid) {
			t.Errorf("s3mount daemon pid %d still running 20s after unmount of %s; killing it", pid, mountpoint)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if t.Failed() && logFile != "" {
		t.Logf("s3mount log tail (%s):\n%s", logFile, logTail(logFile))
	}
}

// Unmount runs `fusermount3 -u`, retrying while busy, then falls back to a
// lazy `fusermount3 -uz`. Not being mounted is not an error.
func Unmount(mountpoint string) error {
	var last []byte
	for i := 0; i < 40; i++ {
		mounted, err := IsMounted(mountpoint)
		if err != nil {
			return err
		}
		if !mounted {
			return nil
		}
		out, err := exec.Command("fusermount3", "-u", mountpoint).CombinedOutput()
		if err == nil {
			return nil
		}
		last = out
		time.Sleep(250 * time.Millisecond)
	}
	out, err := exec.Command("fusermount3", "-uz", mountpoint).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fusermount3 -u kept failing (%s) and -uz failed: %v: %s",
			bytes.TrimSpace(last), err, bytes.TrimSpace(out))
	}
	return fmt.Errorf("fusermount3 -u kept failing (%s); lazily unmounted with -uz", bytes.TrimSpace(last))
}

// IsMounted reports whether path is a mount point (per /proc/self/mountinfo).
func IsMounted(path string) (bool, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false, err
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMountinfo(f[4]) == abs {
			return true, nil
		}
	}
	return false, nil
}

// unescapeMountinfo undoes the \ooo octal escapes of /proc mount tables.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// findDaemons returns pids running bin whose command line names mountpoint.
func findDaemons(bin, mountpoint string) []int {
	realBin, err := filepath.EvalSymlinks(bin)
	if err != nil {
		realBin = bin
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || strings.TrimSuffix(exe, " (deleted)") != realBin {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, arg := range bytes.Split(cmdline, []byte{0}) {
			if string(arg) == mountpoint {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie has exited; its parent just has not reaped it yet.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
		return false
	}
	return true
}

func logTail(path string) string {
	if path == "" {
		return "(no log file)"
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "(log file not created)"
	}
	if err != nil {
		return err.Error()
	}
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// LogTail returns the end of an s3mount log file, for failure messages.
func LogTail(path string) string { return logTail(path) }
