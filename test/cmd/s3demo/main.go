// Command s3demo runs a local S3 server seeded with a real tree of files, for
// trying s3mount by hand (see `make demo`).
//
//	s3demo start   start versitygw in the background (or reuse a running one),
//	               seed bucket "demo", write the keys to .demo/env (mode 0600)
//	s3demo stop    stop the server started by start
//	s3demo env     print .demo/env
//
// Flags (before the subcommand): -dir .demo, -addr 127.0.0.1:7070 (another
// free port when that one is busy), -bucket demo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/s3mount/s3mount/test/harness"
)

var (
	dir    = flag.String("dir", ".demo", "state directory: data, pid file, env, logs")
	addr   = flag.String("addr", "127.0.0.1:7070", "listen address (a free port is used when busy)")
	bucket = flag.String("bucket", "demo", "bucket to seed")
)

func main() {
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: s3demo [flags] start|stop|env\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fatal(err)
	}
	*dir = abs
	switch flag.Arg(0) {
	case "start":
		err = start()
	case "stop":
		err = stop()
	case "env":
		var b []byte
		b, err = os.ReadFile(envFile())
		if err == nil {
			os.Stdout.Write(b)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "s3demo:", err)
	os.Exit(1)
}

func pidFile() string  { return filepath.Join(*dir, "versitygw.pid") }
func envFile() string  { return filepath.Join(*dir, "env") }
func dataDir() string  { return filepath.Join(*dir, "data") }
func sumsFile() string { return filepath.Join(*dir, "SHA256SUMS") }

// running returns the pid of the demo's versitygw if it is alive.
func running() (int, bool) {
	b, err := os.ReadFile(pidFile())
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || filepath.Base(strings.TrimSuffix(exe, " (deleted)")) != "versitygw" {
		return 0, false // gone, or the pid was reused by something else
	}
	return pid, true
}

func start() error {
	if pid, ok := running(); ok {
		if _, err := os.Stat(envFile()); err == nil {
			fmt.Fprintf(os.Stderr, "s3demo: versitygw already running (pid %d); run `s3demo stop` for a fresh one\n", pid)
			return printEnv()
		}
		if err := stop(); err != nil {
			return err
		}
	}
	_ = os.Remove(pidFile())
	if err := os.RemoveAll(dataDir()); err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir(), 0o755); err != nil {
		return err
	}

	listen := *addr
	if l, err := net.Listen("tcp", listen); err != nil {
		port, perr := harness.FreePort()
		if perr != nil {
			return perr
		}
		fmt.Fprintf(os.Stderr, "s3demo: %s is busy (%v); using port %d\n", listen, err, port)
		listen = fmt.Sprintf("127.0.0.1:%d", port)
	} else {
		l.Close()
	}

	logFile := filepath.Join(*dir, "versitygw.log")
	srv, err := harness.LaunchServer(harness.ServerOptions{
		Addr:    listen,
		DataDir: dataDir(),
		LogFile: logFile,
		Detach:  true,
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(pidFile(), []byte(strconv.Itoa(srv.PID())+"\n"), 0o644); err != nil {
		srv.Close()
		return err
	}
	env := fmt.Sprintf("export AWS_ACCESS_KEY_ID=%s\nexport AWS_SECRET_ACCESS_KEY=%s\nexport AWS_REGION=us-east-1\nexport S3_ENDPOINT=%s\nexport S3_BUCKET=%s\n",
		srv.AccessKey, srv.SecretKey, srv.URL, *bucket)
	if err := os.WriteFile(envFile(), []byte(env), 0o600); err != nil {
		srv.Close()
		return err
	}
	if err := os.Chmod(envFile(), 0o600); err != nil { // an older file keeps its mode
		srv.Close()
		return err
	}
	fmt.Fprintf(os.Stderr, "s3demo: versitygw %s on %s (pid %d, data %s, log %s)\n",
		harness.VersitygwVersion, srv.URL, srv.PID(), dataDir(), logFile)

	if err := seed(srv.Endpoint); err != nil {
		srv.Close()
		_ = os.Remove(pidFile())
		return fmt.Errorf("seeding: %w", err)
	}
	// The server runs on in its own session; this process just exits.
	fmt.Printf("demo S3 server ready; its endpoint, bucket and keys are in %s (mode 0600)\n", envFile())
	return nil
}

func printEnv() error {
	b, err := os.ReadFile(envFile())
	if err != nil {
		return err
	}
	fmt.Print(string(b))
	return nil
}

func seed(ep harness.Endpoint) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := harness.NewClient(ctx, ep)
	if err != nil {
		return err
	}
	if err := c.CreateBucket(ctx, *bucket); err != nil {
		return err
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("go env GOROOT: %w", err)
	}
	goroot := strings.TrimSpace(string(out))
	total := 0
	for _, t := range []struct{ local, prefix string }{
		{filepath.Join(goroot, "src", "net", "http"), "go/src/net/http"},
		{filepath.Join(goroot, "doc"), "go/doc"},
	} {
		if _, err := os.Stat(t.local); err != nil {
			fmt.Fprintf(os.Stderr, "s3demo: skipping %s: %v\n", t.local, err)
			continue
		}
		n, err := c.UploadTree(ctx, *bucket, t.prefix, t.local, 8)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "s3demo: seeded %d files from %s under %s/\n", n, t.local, t.prefix)
		total += n
	}

	// Assorted sizes of random data, around the multipart boundaries.
	tmp, err := os.MkdirTemp("", "s3demo-blobs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var sums strings.Builder
	for _, b := range []struct {
		name string
		size int64
	}{
		{"empty", 0}, {"1KiB.bin", 1 << 10}, {"1MiB.bin", 1 << 20},
		{"5MiB-plus-1.bin", 5<<20 + 1}, {"24MiB.bin", 24 << 20},
	} {
		p := filepath.Join(tmp, b.name)
		sum, err := harness.WriteRandomFile(p, b.size)
		if err != nil {
			return err
		}
		if err := c.PutFile(ctx, *bucket, "blobs/"+b.name, p); err != nil {
			return err
		}
		fmt.Fprintf(&sums, "%s  blobs/%s\n", sum, b.name)
		total++
	}
	if err := os.WriteFile(sumsFile(), []byte(sums.String()), 0o644); err != nil {
		return err
	}
	extra := map[string][]byte{
		"README.txt": []byte("This is the s3mount demo bucket, served by a local versitygw.\n" +
			"go/ holds a copy of Go's net/http sources and docs, blobs/ random data\n" +
			"(check it with: cd mnt && sha256sum -c ../.demo/SHA256SUMS).\n"),
		"notes/with space.txt": []byte("keys may have spaces\n"),
		"notes/caf\u00e9.txt":  []byte("and non-ASCII names\n"),
		// A go.mod at the bucket root makes the mounted tree its own module,
		// so `go test ./...` in the repo does not wander into ./mnt.
		"go.mod": []byte("module s3mount.demo/mnt\n"),
	}
	if err := c.PutMany(ctx, *bucket, extra, 4); err != nil {
		return err
	}
	total += len(extra)
	fmt.Fprintf(os.Stderr, "s3demo: bucket %q has %d objects\n", *bucket, total)
	return nil
}

func stop() error {
	pid, ok := running()
	if !ok {
		_ = os.Remove(pidFile())
		fmt.Fprintln(os.Stderr, "s3demo: no demo versitygw running")
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := running(); !ok {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, ok := running(); ok {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = os.Remove(pidFile())
	fmt.Fprintf(os.Stderr, "s3demo: stopped versitygw (pid %d)\n", pid)
	return nil
}
