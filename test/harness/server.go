// Package harness runs the pieces that s3mount's tests and demo need: a local
// S3 server (Versity S3 Gateway, or an in-process gofakes3), an S3 client to
// seed and inspect buckets, and the real s3mount binary mounted in daemon mode.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// VersitygwVersion is the gateway release the tests are written against.
const VersitygwVersion = "v1.8.0"

// Endpoint is everything a client needs to talk to an S3 server.
type Endpoint struct {
	URL       string // e.g. http://127.0.0.1:7070
	AccessKey string
	SecretKey string
	Region    string // empty means us-east-1
}

// RegionOrDefault returns the region, us-east-1 when none is set.
func (e Endpoint) RegionOrDefault() string {
	if e.Region == "" {
		return "us-east-1"
	}
	return e.Region
}

// VersitygwPath locates the versitygw binary: $VERSITYGW if set, else
// $HOME/.cache/s3mount-tools/bin/versitygw. A missing binary is an error that
// says how to get it.
func VersitygwPath() (string, error) {
	if p := os.Getenv("VERSITYGW"); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("VERSITYGW=%s: %w", p, err)
		}
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locating versitygw: %w", err)
	}
	p := filepath.Join(home, ".cache", "s3mount-tools", "bin", "versitygw")
	if err := checkExecutable(p); err != nil {
		return "", fmt.Errorf("versitygw not found at %s (%v): run `make deps`, or "+
			"`GOBIN=$HOME/.cache/s3mount-tools/bin go install github.com/versity/versitygw/cmd/versitygw@%s` "+
			"from outside the repo, or set VERSITYGW", p, err, VersitygwVersion)
	}
	return p, nil
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// ServerOptions configures LaunchServer. Zero values pick safe defaults.
type ServerOptions struct {
	// Addr is host:port to listen on; empty picks a free port on 127.0.0.1.
	Addr string
	// DataDir is the posix backend directory; empty makes a temp dir that
	// Close removes.
	DataDir string
	// AccessKey and SecretKey are the root credentials; empty picks random ones.
	AccessKey, SecretKey string
	// LogFile receives versitygw's output; empty keeps it in memory (shown in
	// errors).
	LogFile string
	// Detach starts the server in its own session so that it outlives this
	// process (used by the demo). Close still stops it.
	Detach bool
	// ReadyTimeout bounds the wait for /healthz; zero means 30s.
	ReadyTimeout time.Duration
	// ExtraArgs are more global flags, placed before the backend word (e.g.
	// --iam-standalone-endpoint SOCK).
	ExtraArgs []string
}

// Server is a running versitygw.
type Server struct {
	Endpoint
	Addr    string
	DataDir string

	cmd       *exec.Cmd
	exited    chan struct{}
	waitErr   error
	out       *syncBuffer
	logFile   *os.File
	removeDir bool
	closeOnce sync.Once
}

// StartServer starts versitygw on a free 127.0.0.1 port with random root keys
// and a fresh data dir, and stops it when the test ends. A missing binary or a
// server that does not come up fails the test.
func StartServer(t testing.TB) *Server {
	t.Helper()
	s, err := LaunchServer(ServerOptions{})
	if err != nil {
		t.Fatalf("starting versitygw: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("stopping versitygw: %v", err)
		}
	})
	return s
}

// LaunchServer starts versitygw and waits until /healthz answers.
func LaunchServer(opts ServerOptions) (*Server, error) {
	bin, err := VersitygwPath()
	if err != nil {
		return nil, err
	}
	s := &Server{DataDir: opts.DataDir}
	if s.DataDir == "" {
		d, err := os.MkdirTemp("", "s3mount-versitygw-")
		if err != nil {
			return nil, err
		}
		s.DataDir, s.removeDir = d, true
	} else if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		return nil, err
	}
	s.AccessKey, s.SecretKey = opts.AccessKey, opts.SecretKey
	if s.AccessKey == "" {
		s.AccessKey = "AK" + strings.ToUpper(RandomHex(9))
	}
	if s.SecretKey == "" {
		s.SecretKey = RandomHex(20)
	}
	s.Region = "us-east-1"
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}

	// A free port picked here may be taken before versitygw binds it; retry
	// a few times when the address was ours to pick.
	attempts := 1
	if opts.Addr == "" {
		attempts = 4
	}
	var lastErr error
	for i := 0; i < attempts; i++ {
		addr := opts.Addr
		if addr == "" {
			port, err := FreePort()
			if err != nil {
				s.cleanupDir()
				return nil, err
			}
			addr = fmt.Sprintf("127.0.0.1:%d", port)
		}
		lastErr = s.start(bin, addr, opts, timeout)
		if lastErr == nil {
			return s, nil
		}
	}
	s.cleanupDir()
	return nil, lastErr
}

func (s *Server) start(bin, addr string, opts ServerOptions, timeout time.Duration) error {
	s.Addr = addr
	s.URL = "http://" + addr
	args := []string{"--port", addr, "--keep-alive", "--health", "/healthz", "--quiet"}
	args = append(args, opts.ExtraArgs...)
	cmd := exec.Command(bin, append(args, "posix", s.DataDir)...)
	cmd.Env = append(FilterEnv(os.Environ(), "ROOT_ACCESS_KEY", "ROOT_SECRET_KEY"),
		"ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	s.out = &syncBuffer{}
	if opts.LogFile != "" {
		f, err := os.OpenFile(opts.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		s.logFile = f
		cmd.Stdout, cmd.Stderr = f, f
	} else {
		cmd.Stdout, cmd.Stderr = s.out, s.out
	}
	if opts.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		s.closeLog()
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := waitHealthy(s.URL+"/healthz", timeout, s.exited); err != nil {
		s.kill()
		s.closeLog()
		return fmt.Errorf("versitygw on %s did not become ready: %w; output: %s", addr, err, s.output(opts.LogFile))
	}
	return nil
}

func (s *Server) output(logFile string) string {
	var b []byte
	if logFile != "" {
		b, _ = os.ReadFile(logFile)
	} else {
		b = s.out.Bytes()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "(none)"
	}
	return string(b)
}

// PID is the server process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Close stops the server (kill, then wait) and removes a temp data dir.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.kill()
		s.closeLog()
		err = s.cleanupDir()
	})
	return err
}

func (s *Server) kill() { terminate(s.cmd, s.exited) }

// terminate stops a child started with cmd, whose waiter closes exited:
// SIGTERM, then SIGKILL after 5 s. A child already gone is left alone.
func terminate(cmd *exec.Cmd, exited <-chan struct{}) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (s *Server) closeLog() {
	if s.logFile != nil {
		_ = s.logFile.Close()
		s.logFile = nil
	}
}

func (s *Server) cleanupDir() error {
	if s.removeDir && s.DataDir != "" {
		s.removeDir = false
		return os.RemoveAll(s.DataDir)
	}
	return nil
}

// waitHealthy polls url until it answers 200, the process exits or timeout.
func waitHealthy(url string, timeout time.Duration, exited <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("process exited")
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			lastErr = fmt.Errorf("status %s", resp.Status)
		} else {
			lastErr = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %v (last: %v)", timeout, lastErr)
}

// WaitHealthy polls an already running server's /healthz.
func WaitHealthy(ctx context.Context, baseURL string) error {
	deadline, ok := ctx.Deadline()
	timeout := 30 * time.Second
	if ok {
		timeout = time.Until(deadline)
	}
	return waitHealthy(strings.TrimSuffix(baseURL, "/")+"/healthz", timeout, nil)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FilterEnv returns env without the named variables.
func FilterEnv(env []string, names ...string) []string {
	out := env[:0:0]
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 1<<20 { // keep memory bounded; the tail is what matters
		b.b.Reset()
	}
	return b.b.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.b.Bytes()...)
}
