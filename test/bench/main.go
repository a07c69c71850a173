// Command s3bench is `make bench` (issue 4): it starts a local versitygw,
// writes the benchmark objects once, then measures, in the same run and as
// the median of -runs runs each:
//
//   - the ceiling: raw aws-sdk-go-v2 GETs (one stream; N parallel ranged GETs)
//     and a local page-cache read (the baseline for warm re-reads);
//   - s3mount and the other S3 mounts that run here (s3fs, rclone), each a
//     foreground child mounted against the same server and bucket: cold and
//     warm sequential dd, 1 MiB reads at random offsets (through a counting
//     proxy: S3 bytes fetched per byte read), time to first byte, peak RSS
//     while reading a large object, `ls -l` of a big directory, find + du of
//     the Go source tree;
//   - a "realistic network" mode: s3mount through a shaping proxy (first-byte
//     latency, per-connection bandwidth cap) with --download-threads 1..16;
//   - writes (issue 5): a sequential dd conv=fsync of a local file into each
//     mount, with the mount's peak RSS, against raw multipart uploads of the
//     same file (s3mount's part size and concurrency, and the best of a grid);
//     many small files created by one process; a source tarball extracted;
//
// and prints a table and the targets as ratios with PASS/FAIL, to
// stdout and to -out. Progress goes to stderr. It needs root (FUSE mounts,
// drop_caches).
//
// `s3bench proxy -target HOST:PORT [-listen ADDR] [-latency D] [-bandwidth B]`
// runs the proxy alone, for poking at a mount by hand; `s3bench get -url URL
// -bucket B -key K [-streams N]` runs the raw GET ceiling alone (keys from
// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), for profiling it beside a mount.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3mount/s3mount/test/bench/proxy"
	"github.com/s3mount/s3mount/test/harness"
)

const bucket = "bench"

// Section names for -skip.
var sections = []string{"ceiling", "local", "seq", "random", "ttfb", "rss", "ls", "find", "realistic", "write", "small", "untar"}

type benchConfig struct {
	runs          int
	size          int64
	rssSize       int64
	quick         bool
	peers         []string
	skip          map[string]bool
	streams       int
	rangeSize     int64
	randomN       int
	randomBS      int64
	randomAlign   int64
	lsObjects     int
	tree          string
	cacheSize     string
	s3mountBin    string
	s3mountFlags  []string
	s3fsFlags     []string
	rcloneFlags   []string
	latency       time.Duration
	bandwidth     int64
	realSize      int64
	realThreads   []int
	workParent    string
	out           string
	keep          bool
	dropCaches    bool
	sizeFlag      string
	cacheSizeFlag string
	// Writes (issue 5).
	writeDefault uploadSetting   // s3mount's default part size and concurrency
	writeGrid    []uploadSetting // raw settings tried for the best ceiling
	smallN       int
	smallSize    int64
	untarTree    string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "proxy" {
		proxyMain(os.Args[2:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "get" {
		getMain(os.Args[2:])
		return
	}
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "s3bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stopAll() // unblock anything reading from a mount
	}()
	b := &bench{cfg: cfg, res: newResults()}
	err = b.main(ctx)
	b.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "s3bench:", err)
		os.Exit(1)
	}
}

func parseFlags() (*benchConfig, error) {
	c := &benchConfig{}
	root, _ := harness.RepoRoot()
	var peers, skip, s3mountFlags, s3fsFlags, rcloneFlags, rangeSize, randomBS, rssSize, bandwidth, realSize, realThreads string
	flag.IntVar(&c.runs, "runs", 3, "runs per figure (the table shows medians)")
	flag.StringVar(&c.sizeFlag, "size", "1G", "size of the main object (cold/warm/random/ttfb/ceiling)")
	flag.StringVar(&rssSize, "rss-size", "4G", "object read with dd while sampling peak RSS")
	flag.BoolVar(&c.quick, "quick", false, "smoke run: 64M objects, 500-object directory, a small tree, 1 run (explicit flags still win)")
	flag.StringVar(&peers, "peers", "s3fs,rclone", "other S3 mounts to compare (comma separated; empty for none)")
	flag.StringVar(&skip, "skip", "", "sections to skip: "+strings.Join(sections, ","))
	flag.IntVar(&c.streams, "streams", 8, "parallel ranged GETs of the ceiling")
	flag.StringVar(&rangeSize, "range-size", "8M", "range size of the parallel ceiling")
	flag.IntVar(&c.randomN, "random-reads", 100, "reads at random offsets")
	flag.StringVar(&randomBS, "random-size", "1M", "size of each random read")
	flag.Int64Var(&c.randomAlign, "random-align", 4096, "random offsets are multiples of this")
	flag.IntVar(&c.lsObjects, "ls-objects", 10000, "objects in the directory listed with ls -l")
	flag.StringVar(&c.tree, "tree", "", "local tree uploaded as src/ for find + du (default `go env GOROOT`/src; -quick: its net/http)")
	flag.StringVar(&c.cacheSizeFlag, "cache-size", "512M", "s3mount --cache-size (the RSS target is this + 100 MiB)")
	flag.StringVar(&c.s3mountBin, "s3mount-bin", "", "s3mount binary (default: bin/s3mount at the repo root, built if missing)")
	flag.StringVar(&s3mountFlags, "s3mount-flags", "", "extra s3mount mount flags, e.g. \"--download-threads 16\"")
	flag.StringVar(&s3fsFlags, "s3fs-flags", "", "extra s3fs arguments, e.g. \"-o parallel_count=8\"")
	flag.StringVar(&rcloneFlags, "rclone-flags", "", "extra rclone mount flags")
	flag.DurationVar(&c.latency, "latency", 20*time.Millisecond, "realistic mode: first-byte latency of each response")
	flag.StringVar(&bandwidth, "bandwidth", "100M", "realistic mode: bandwidth cap per connection, bytes/s (M = MiB)")
	flag.StringVar(&realSize, "realistic-size", "512M", "realistic mode: bytes read with dd (at most -size)")
	flag.StringVar(&realThreads, "realistic-threads", "1,2,4,8,16", "realistic mode: --download-threads values")
	flag.StringVar(&c.workParent, "workdir", os.TempDir(), "where the bench's temp dir (server data, local file, mountpoints) goes")
	flag.StringVar(&c.out, "out", filepath.Join(root, "bench-results.txt"), "file that also receives the table")
	flag.BoolVar(&c.keep, "keep", false, "keep the temp dir (server data, logs) afterwards")
	flag.BoolVar(&c.dropCaches, "drop-caches", true, "sync and drop the kernel caches before the cold rows (false: only a fresh mount)")
	var writeDefault, writeGrid, smallSize string
	flag.StringVar(&writeDefault, "write-setting", "4x8M", "raw multipart ceiling with s3mount's defaults: CONCURRENCYxPART-SIZE (--upload-concurrency, --part-size)")
	flag.StringVar(&writeGrid, "write-grid", "8x8M,8x16M,16x16M", "more raw multipart settings tried; the best of these and -write-setting is the best ceiling")
	flag.IntVar(&c.smallN, "small-files", 1000, "small files created by one process")
	flag.StringVar(&smallSize, "small-size", "4K", "size of each small file")
	flag.StringVar(&c.untarTree, "untar-tree", "", "tree tarred at setup and extracted into each mount (default `go env GOROOT`/src/net; -quick: its net/http)")
	flag.Parse()
	if flag.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.quick {
		if !set["size"] {
			c.sizeFlag = "64M"
		}
		if !set["runs"] {
			c.runs = 1
		}
		if !set["ls-objects"] {
			c.lsObjects = 500
		}
		if !set["random-reads"] {
			c.randomN = 30
		}
		if !set["small-files"] {
			c.smallN = 200
		}
		if !set["write-grid"] {
			writeGrid = "8x16M"
		}
	}
	var err error
	if c.size, err = parseSize(c.sizeFlag); err != nil {
		return nil, fmt.Errorf("-size: %w", err)
	}
	if c.quick && !set["rss-size"] {
		rssSize = fmtSize(4 * c.size)
	}
	if c.rssSize, err = parseSize(rssSize); err != nil {
		return nil, fmt.Errorf("-rss-size: %w", err)
	}
	if c.rangeSize, err = parseSize(rangeSize); err != nil || c.rangeSize <= 0 {
		return nil, fmt.Errorf("-range-size: bad %q", rangeSize)
	}
	if c.randomBS, err = parseSize(randomBS); err != nil || c.randomBS <= 0 || c.randomBS > c.size {
		return nil, fmt.Errorf("-random-size: bad %q (at most -size)", randomBS)
	}
	if c.bandwidth, err = parseSize(bandwidth); err != nil {
		return nil, fmt.Errorf("-bandwidth: %w", err)
	}
	if c.realSize, err = parseSize(realSize); err != nil {
		return nil, fmt.Errorf("-realistic-size: %w", err)
	}
	c.realSize = min(c.realSize, c.size) &^ (1<<20 - 1)
	if _, err := parseSize(c.cacheSizeFlag); err != nil {
		return nil, fmt.Errorf("-cache-size: %w", err)
	}
	c.cacheSize = c.cacheSizeFlag
	if c.size < 1<<20 || c.size%(1<<20) != 0 || c.rssSize%(1<<20) != 0 {
		return nil, fmt.Errorf("-size and -rss-size must be whole MiB, at least 1M")
	}
	if c.runs < 1 {
		return nil, fmt.Errorf("-runs must be at least 1")
	}
	for _, t := range splitList(realThreads) {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-realistic-threads: bad %q", t)
		}
		c.realThreads = append(c.realThreads, n)
	}
	c.peers = splitList(peers)
	for _, p := range c.peers {
		if p != "s3fs" && p != "rclone" {
			return nil, fmt.Errorf("-peers: unknown peer %q (known: s3fs, rclone)", p)
		}
	}
	c.skip = map[string]bool{}
	for _, s := range splitList(skip) {
		if !slices.Contains(sections, s) {
			return nil, fmt.Errorf("-skip: unknown section %q (known: %s)", s, strings.Join(sections, ","))
		}
		c.skip[s] = true
	}
	ws, err := parseUploadSettings(writeDefault)
	if err != nil || len(ws) != 1 {
		return nil, fmt.Errorf("-write-setting: want one CONCxSIZE (%v)", err)
	}
	c.writeDefault = ws[0]
	if c.writeGrid, err = parseUploadSettings(writeGrid); err != nil {
		return nil, fmt.Errorf("-write-grid: %w", err)
	}
	if c.smallSize, err = parseSize(smallSize); err != nil || c.smallSize < 0 || c.smallN < 1 {
		return nil, fmt.Errorf("-small-size/-small-files: bad %q/%d", smallSize, c.smallN)
	}
	c.s3mountFlags = strings.Fields(s3mountFlags)
	c.s3fsFlags = strings.Fields(s3fsFlags)
	c.rcloneFlags = strings.Fields(rcloneFlags)
	if c.tree == "" || c.untarTree == "" {
		goroot := runtime.GOROOT()
		if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
			goroot = strings.TrimSpace(string(out))
		}
		src := filepath.Join(goroot, "src")
		if c.tree == "" {
			c.tree = src
			if c.quick {
				c.tree = filepath.Join(src, "net", "http")
			}
		}
		if c.untarTree == "" {
			c.untarTree = filepath.Join(src, "net")
			if c.quick {
				c.untarTree = filepath.Join(src, "net", "http")
			}
		}
	}
	if c.s3mountBin == "" {
		c.s3mountBin = filepath.Join(root, "bin", "s3mount")
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// bench is one run of the whole benchmark.
type bench struct {
	cfg  *benchConfig
	res  *results
	work string

	server  *harness.Server
	s3      *s3.Client
	s3slow  *s3.Client   // through the shaping proxy
	counter *proxy.Proxy // counting, no shaping: random reads
	shaper  *proxy.Proxy // realistic network

	s3m        *s3mountM
	mounters   []mounter         // s3mount first, then the peers that can run
	peerStatus map[string]string // peer -> "" or "skipped: reason"
	mountFails map[string]int

	seqKey, rssKey, lsPrefix, treePrefix string
	treeFiles                            int
	treeBytes                            int64
	localFile                            string
	tmpfsDir                             string // a tmpfs mounted huge=never, or ""
	tmpfsFile                            string // the local file copied there
	tarball                              string // made at setup from cfg.untarTree
	tarFiles                             int
	tarBytes                             int64
	notes                                []string
	warmOK                               bool
	bestWrite                            []string // the best raw multipart setting of each run
	started                              time.Time
	mountSeq                             int
}

func (b *bench) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	logf("note: %s", s)
	b.notes = append(b.notes, s)
}

func (b *bench) main(ctx context.Context) error {
	c := b.cfg
	b.started = time.Now()
	if os.Geteuid() != 0 {
		logf("warning: not root: mounts may fail and drop_caches will")
	}
	if err := os.MkdirAll(c.workParent, 0o755); err != nil {
		return err
	}
	// Objects, the local file, and room for a written copy of it (the
	// write rows delete what they wrote after each measure).
	need := 2*(c.size+c.rssSize) + 3*c.size + 1<<30
	var st syscall.Statfs_t
	if err := syscall.Statfs(c.workParent, &st); err == nil {
		if free := int64(st.Bavail) * int64(st.Bsize); free < need {
			return fmt.Errorf("%s has %s free, the bench needs about %s (use -workdir)", c.workParent, fmtSize(free&^(1<<20-1)), fmtSize(need&^(1<<20-1)))
		}
	}
	work, err := os.MkdirTemp(c.workParent, "s3mount-bench-")
	if err != nil {
		return err
	}
	b.work = work
	logf("work dir %s", work)
	for _, d := range []string{"logs", "mnt"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			return err
		}
	}

	// s3mount binary.
	if _, err := os.Stat(c.s3mountBin); err != nil {
		root, rerr := harness.RepoRoot()
		if rerr != nil {
			return fmt.Errorf("s3mount binary %s: %v", c.s3mountBin, err)
		}
		logf("building %s", c.s3mountBin)
		cmd := exec.Command("go", "build", "-o", c.s3mountBin, ".")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}

	// Server, client, data.
	srv, err := harness.LaunchServer(harness.ServerOptions{
		DataDir: filepath.Join(work, "data"),
		LogFile: filepath.Join(work, "logs", "versitygw.log"),
	})
	if err != nil {
		return err
	}
	b.server = srv
	logf("versitygw on %s (data %s)", srv.URL, srv.DataDir)
	if b.s3, err = newS3(ctx, srv.Endpoint); err != nil {
		return err
	}
	if err := b.setupData(ctx); err != nil {
		return fmt.Errorf("writing the bench data: %w", err)
	}

	// Proxies.
	if b.counter, err = proxy.Start("127.0.0.1:0", srv.Addr, proxy.Options{}); err != nil {
		return err
	}
	if b.shaper, err = proxy.Start("127.0.0.1:0", srv.Addr, proxy.Options{Latency: c.latency, BytesPerSec: c.bandwidth}); err != nil {
		return err
	}
	slowEP := srv.Endpoint
	slowEP.URL = b.shaper.URL()
	if b.s3slow, err = newS3(ctx, slowEP); err != nil {
		return err
	}

	// Mounts.
	b.s3m = &s3mountM{bin: c.s3mountBin, ep: srv.Endpoint, cacheSize: c.cacheSize, flags: c.s3mountFlags}
	if err := b.s3m.Check(); err != nil {
		return fmt.Errorf("s3mount: %w", err)
	}
	b.mounters = []mounter{b.s3m}
	b.peerStatus = map[string]string{}
	b.mountFails = map[string]int{}
	for _, name := range c.peers {
		var m mounter
		switch name {
		case "s3fs":
			pw, err := writeSecretFile(work, "s3fs-passwd", srv.AccessKey+":"+srv.SecretKey+"\n")
			if err != nil {
				return err
			}
			m = &s3fsM{ep: srv.Endpoint, passwd: pw, flags: c.s3fsFlags}
		case "rclone":
			cf, err := writeSecretFile(work, "rclone.conf", "")
			if err != nil {
				return err
			}
			m = &rcloneM{ep: srv.Endpoint, config: cf, flags: c.rcloneFlags}
		}
		if err := m.Check(); err != nil {
			b.peerStatus[name] = "skipped: " + err.Error()
			logf("%s %s", name, b.peerStatus[name])
			continue
		}
		b.peerStatus[name] = ""
		b.mounters = append(b.mounters, m)
	}

	for r := 1; r <= c.runs; r++ {
		if err := b.run(ctx, r); err != nil {
			return err
		}
	}
	report := b.report()
	fmt.Print(report)
	if c.out != "" {
		if err := os.WriteFile(c.out, []byte(report), 0o644); err != nil {
			return err
		}
		logf("table written to %s", c.out)
	}
	logf("done in %v", time.Since(b.started).Round(time.Second))
	return nil
}

// setupData writes everything the workloads read, once.
func (b *bench) setupData(ctx context.Context) error {
	c := b.cfg
	if err := (&harness.Client{S3: b.s3}).CreateBucket(ctx, bucket); err != nil {
		return err
	}
	b.seqKey = "seq-" + fmtSize(c.size) + ".bin"
	b.rssKey = "rss-" + fmtSize(c.rssSize) + ".bin"
	b.lsPrefix = "many/"
	b.treePrefix = "src/"
	start := time.Now()
	logf("uploading %s (%s)", b.seqKey, fmtSize(c.size))
	if err := putGenerated(ctx, b.s3, bucket, b.seqKey, c.size); err != nil {
		return err
	}
	if !c.skip["rss"] {
		logf("uploading %s (%s)", b.rssKey, fmtSize(c.rssSize))
		if err := putGenerated(ctx, b.s3, bucket, b.rssKey, c.rssSize); err != nil {
			return err
		}
	}
	if !c.skip["ls"] {
		logf("putting %d objects under %s", c.lsObjects, b.lsPrefix)
		if err := putMany(ctx, b.s3, bucket, b.lsPrefix, c.lsObjects); err != nil {
			return err
		}
	}
	if !c.skip["find"] {
		logf("uploading %s as %s", c.tree, b.treePrefix)
		n, bytes, err := uploadTree(ctx, b.s3, bucket, b.treePrefix, c.tree)
		if err != nil {
			return err
		}
		b.treeFiles, b.treeBytes = n, bytes
		logf("  %d files, %d MiB", n, bytes>>20)
	}
	if !c.skip["untar"] {
		b.tarball = filepath.Join(b.work, "untar.tar")
		var err error
		if b.tarFiles, b.tarBytes, err = makeTarball(c.untarTree, b.tarball); err != nil {
			return err
		}
		logf("tarball of %s: %d files, %d KiB", c.untarTree, b.tarFiles, b.tarBytes>>10)
	}
	if !c.skip["local"] || !c.skip["write"] {
		b.localFile = filepath.Join(b.work, "local.bin")
		if _, err := harness.WriteRandomFile(b.localFile, c.size); err != nil {
			return err
		}
	}
	if !c.skip["local"] {
		if err := b.setupTmpfs(); err != nil {
			b.note("no tmpfs reference row: %v", err)
		}
	}
	// The server's copy of each object is a file under its data dir; the
	// bench reads it before each row so that every row reads server data
	// from memory (drop_caches would otherwise make "cold" a disk test).
	b.warmOK = true
	for _, k := range []string{b.seqKey, b.rssKey} {
		if c.skip["rss"] && k == b.rssKey {
			continue
		}
		if fi, err := os.Stat(b.serverFile(k)); err != nil || fi.Size() == 0 {
			b.warmOK = false
			b.note("cannot find the server's file for %s (%v): server data not pre-read after drop_caches", k, err)
		}
	}
	logf("data written in %v", time.Since(start).Round(time.Second))
	return nil
}

// setupTmpfs mounts a tmpfs with huge=never (4 KiB pages, as the kernel
// gives a FUSE file's page cache up to at least Linux 6.18) and copies the
// local file there: a second page-cache baseline.
func (b *bench) setupTmpfs() error {
	dir := filepath.Join(b.work, "tmpfs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	opts := fmt.Sprintf("size=%d,huge=never,mode=0755", b.cfg.size+64<<20)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "s3bench", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("mount -t tmpfs: %v: %s", err, lastLine(string(out)))
	}
	b.tmpfsDir = dir
	b.tmpfsFile = filepath.Join(dir, "local.bin")
	if out, err := exec.Command("cp", b.localFile, b.tmpfsFile).CombinedOutput(); err != nil {
		b.tmpfsFile = ""
		return fmt.Errorf("cp to tmpfs: %v: %s", err, lastLine(string(out)))
	}
	return nil
}

func (b *bench) serverFile(key string) string {
	return filepath.Join(b.server.DataDir, bucket, filepath.FromSlash(key))
}

// warm makes the server side of the next row read from memory.
func (b *bench) warm(ctx context.Context, keys ...string) {
	if !b.warmOK {
		return
	}
	for _, k := range keys {
		if ctx.Err() != nil {
			return
		}
		_ = warmFile(b.serverFile(k))
	}
}

// timeoutFor bounds a workload moving n bytes (at worst 20 MB/s, plus a minute).
func timeoutFor(n int64) time.Duration {
	return time.Minute + time.Duration(float64(n)/20e6*float64(time.Second))
}

// withMount mounts m fresh at url, optionally drops caches and pre-reads
// server files, runs fn under a watchdog (which aborts the mount on
// timeout), then unmounts.
func (b *bench) withMount(ctx context.Context, m mounter, url string, extra []string, drop bool, warmKeys []string, timeout time.Duration, fn func(ctx context.Context, p *mountProc) error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	b.mountSeq++
	mnt := filepath.Join(b.work, "mnt", m.Name())
	logFile := filepath.Join(b.work, "logs", fmt.Sprintf("%03d-%s.log", b.mountSeq, m.Name()))
	p, err := startMount(ctx, m, url, bucket, mnt, logFile, extra)
	if err != nil {
		b.mountFails[m.Name()]++
		return fmt.Errorf("mount: %w", err)
	}
	b.mountFails[m.Name()] = 0
	if drop && b.cfg.dropCaches {
		if err := dropCaches(); err != nil {
			b.note("drop_caches failed: %v", err)
		}
	}
	b.warm(ctx, warmKeys...)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	stopWatch := context.AfterFunc(wctx, func() {
		if wctx.Err() == context.DeadlineExceeded {
			logf("%s: workload exceeded %v: aborting the mount", m.Name(), timeout)
			p.abort()
		}
	})
	ferr := fn(wctx, p)
	stopWatch()
	cancel()
	if serr := p.stop(); serr != nil && ferr == nil {
		ferr = fmt.Errorf("unmount: %w", serr)
	}
	if ferr != nil {
		if wctx.Err() == context.DeadlineExceeded {
			ferr = fmt.Errorf("timed out after %v (%w)", timeout, ferr)
		}
		logf("%s: %v (log %s)", m.Name(), ferr, logFile)
	}
	return ferr
}

// usable says whether mounter m should still be measured.
func (b *bench) usable(m mounter) bool {
	if m.Name() == "s3mount" {
		return true
	}
	if b.mountFails[m.Name()] >= 3 {
		if b.peerStatus[m.Name()] == "" {
			b.peerStatus[m.Name()] = "skipped: failed to mount 3 times in a row (see the notes)"
		}
		return false
	}
	return b.peerStatus[m.Name()] == ""
}

func (b *bench) run(ctx context.Context, r int) error {
	c := b.cfg
	tag := fmt.Sprintf("[run %d/%d]", r, c.runs)
	record := func(row, col string, v float64, err error, unit string) {
		if ctx.Err() != nil {
			return // interrupted: nothing to report
		}
		b.res.add(row, col, v, err)
		if err != nil {
			b.note("run %d, %s, %s: %v", r, rowTitle(row, b), col, err)
		} else {
			logf("%s %-8s %-28s %10.2f %s", tag, col, rowTitle(row, b), v, unit)
		}
	}
	if !c.skip["ceiling"] {
		b.warm(ctx, b.seqKey)
		v, err := ceilingSingle(ctx, b.s3, bucket, b.seqKey, c.size, true)
		record("ceil1", "reference", v, err, "MB/s")
		v, err = ceilingRanges(ctx, b.s3, bucket, b.seqKey, c.size, c.rangeSize, c.streams)
		record("ceilN", "reference", v, err, "MB/s")
	}
	if !c.skip["local"] {
		_, _ = dd(ctx, b.localFile, 0, c.size)
		v, err := dd(ctx, b.localFile, 0, c.size)
		record("local", "reference", v, err, "MB/s")
		if b.tmpfsFile != "" {
			_, _ = dd(ctx, b.tmpfsFile, 0, c.size)
			v, err := dd(ctx, b.tmpfsFile, 0, c.size)
			record("local4k", "reference", v, err, "MB/s")
		}
	}
	direct := b.server.URL
	for _, m := range b.mounters {
		name := m.Name()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		obj := func(p *mountProc, key string) string { return filepath.Join(p.mnt, key) }
		if !c.skip["seq"] && b.usable(m) {
			cold, warmv, cerr, werr := b.coldWarm(ctx, m, direct, nil)
			record("cold", name, cold, cerr, "MB/s")
			record("warm", name, warmv, werr, "MB/s")
			if name == "s3mount" {
				// The same with local copies: the cold read also
				// writes the copy, re-reads come from it.
				extra := []string{"--copy-cache-size", strconv.FormatInt(4*c.size, 10)}
				cold, warmv, cerr, werr = b.coldWarm(ctx, m, direct, extra)
				record("coldcp", name, cold, cerr, "MB/s")
				record("warmcp", name, warmv, werr, "MB/s")
			}
		}
		if !c.skip["random"] && b.usable(m) {
			var v float64
			var rerr error
			err := b.withMount(ctx, m, b.counter.URL(), nil, true, []string{b.seqKey}, timeoutFor(int64(c.randomN)*c.randomBS*20), func(ctx context.Context, p *mountProc) error {
				b.counter.Reset()
				v, rerr = randomReads(obj(p, b.seqKey), c.size, c.randomBS, c.randomN, c.randomAlign)
				return rerr
			})
			fetched := b.counter.BytesDown() // after the mount exited: everything it fetched
			if err == nil {
				err = rerr
			}
			record("rand", name, v, err, "MB/s")
			ratio := float64(fetched) / float64(int64(c.randomN)*c.randomBS)
			record("randx", name, ratio, err, "B fetched/B read")
		}
		if !c.skip["ttfb"] && b.usable(m) {
			var v float64
			err := b.withMount(ctx, m, direct, nil, true, []string{b.seqKey}, 2*time.Minute, func(ctx context.Context, p *mountProc) error {
				var err error
				v, err = firstByte(obj(p, b.seqKey))
				return err
			})
			record("ttfb", name, v, err, "ms")
		}
		if !c.skip["ls"] && b.usable(m) {
			_, _ = listAll(ctx, b.s3, bucket, b.lsPrefix)
			var v float64
			err := b.withMount(ctx, m, direct, nil, false, nil, 5*time.Minute, func(ctx context.Context, p *mountProc) error {
				var err error
				v, err = lsL(ctx, filepath.Join(p.mnt, strings.TrimSuffix(b.lsPrefix, "/")), c.lsObjects)
				return err
			})
			record("ls", name, v, err, "s")
		}
		if !c.skip["find"] && b.usable(m) {
			_, _ = listAll(ctx, b.s3, bucket, b.treePrefix)
			var v float64
			err := b.withMount(ctx, m, direct, nil, false, nil, 10*time.Minute, func(ctx context.Context, p *mountProc) error {
				var err error
				v, err = findDu(ctx, filepath.Join(p.mnt, strings.TrimSuffix(b.treePrefix, "/")), b.treeFiles)
				return err
			})
			record("find", name, v, err, "s")
		}
		if !c.skip["rss"] && b.usable(m) {
			var v, hwm float64
			var herr error
			err := b.withMount(ctx, m, direct, nil, false, []string{b.rssKey}, timeoutFor(c.rssSize), func(ctx context.Context, p *mountProc) error {
				var err error
				v, err = dd(ctx, obj(p, b.rssKey), 0, c.rssSize)
				h, e := p.vmHWM()
				hwm, herr = float64(h)/(1<<20), e
				return err
			})
			if herr == nil {
				herr = err
			}
			record("rssmbps", name, v, err, "MB/s")
			record("rss", name, hwm, herr, "MiB")
		}
		if !c.skip["write"] && name == "s3mount" {
			// The raw ceilings right before s3mount's own write: on a
			// noisy machine, neighbours in time compare best.
			b.writeCeilings(ctx, r, record)
		}
		if !c.skip["write"] && b.usable(m) {
			var v, hwm float64
			var herr error
			key := fmt.Sprintf("wseq-%s-%d.bin", name, r)
			_ = warmFile(b.localFile)
			err := b.withMount(ctx, m, direct, nil, false, nil, 2*timeoutFor(c.size), func(ctx context.Context, p *mountProc) error {
				settle()
				var err error
				v, err = ddWrite(ctx, b.localFile, obj(p, key), c.size)
				h, e := p.vmHWM()
				hwm, herr = float64(h)/(1<<20), e
				return err
			})
			if err == nil {
				// What reached S3, after the unmount.
				if n, serr := objectSize(ctx, b.s3, bucket, key); serr != nil || n != c.size {
					err = fmt.Errorf("after the write, S3 has %d bytes (%v), want %d", n, serr, c.size)
				}
			}
			deleteKey(b.s3, bucket, key)
			if herr == nil {
				herr = err
			}
			record("wseq", name, v, err, "MB/s")
			record("wrss", name, hwm, herr, "MiB")
		}
		if !c.skip["small"] && b.usable(m) {
			var v float64
			prefix := fmt.Sprintf("small-%s-%d", name, r)
			err := b.withMount(ctx, m, direct, nil, false, nil, timeoutFor(int64(c.smallN)*(c.smallSize+1<<20)), func(ctx context.Context, p *mountProc) error {
				var err error
				v, err = smallFiles(ctx, filepath.Join(p.mnt, prefix), c.smallN, c.smallSize)
				return err
			})
			if err == nil {
				if n, lerr := listAll(ctx, b.s3, bucket, prefix+"/"); lerr != nil || n < c.smallN {
					err = fmt.Errorf("after creating %d files, S3 lists %d (%v)", c.smallN, n, lerr)
				}
			}
			record("small", name, v, err, "s")
		}
		if !c.skip["untar"] && b.usable(m) {
			var v float64
			prefix := fmt.Sprintf("untar-%s-%d", name, r)
			err := b.withMount(ctx, m, direct, nil, false, nil, timeoutFor(b.tarBytes+int64(b.tarFiles)<<20), func(ctx context.Context, p *mountProc) error {
				var err error
				v, err = untar(ctx, b.tarball, filepath.Join(p.mnt, prefix))
				return err
			})
			if err == nil {
				if n, lerr := listAll(ctx, b.s3, bucket, prefix+"/"); lerr != nil || n < b.tarFiles {
					err = fmt.Errorf("after extracting %d files, S3 lists %d objects (%v)", b.tarFiles, n, lerr)
				}
			}
			record("untar", name, v, err, "s")
		}
	}
	if !c.skip["realistic"] {
		// What the shaped network allows a plain SDK client.
		b.warm(ctx, b.seqKey)
		v, err := ceilingSingle(ctx, b.s3slow, bucket, b.seqKey, c.realSize, c.realSize == c.size)
		record("real-ceil1", "reference", v, err, "MB/s")
		v, err = ceilingRanges(ctx, b.s3slow, bucket, b.seqKey, c.realSize, c.rangeSize, c.streams)
		record("real-ceilN", "reference", v, err, "MB/s")
		for _, n := range c.realThreads {
			var v float64
			extra := []string{"--download-threads", strconv.Itoa(n)}
			err := b.withMount(ctx, b.s3m, b.shaper.URL(), extra, true, []string{b.seqKey}, timeoutFor(c.realSize), func(ctx context.Context, p *mountProc) error {
				var err error
				v, err = dd(ctx, filepath.Join(p.mnt, b.seqKey), c.realSize>>20, c.realSize)
				return err
			})
			record(realRow(n), "s3mount", v, err, "MB/s")
		}
	}
	return ctx.Err()
}

// writeCeilings measures the raw multipart uploads of run r: s3mount's
// default setting and the best of the grid.
func (b *bench) writeCeilings(ctx context.Context, r int, record func(row, col string, v float64, err error, unit string)) {
	c := b.cfg
	tag := fmt.Sprintf("[run %d/%d]", r, c.runs)
	// The source file in the page cache, as for the mounts' dd. The grid
	// first, s3mount's setting last: next to s3mount's write.
	_ = warmFile(b.localFile)
	best, bestAt := 0.0, c.writeDefault
	for _, u := range append(slices.DeleteFunc(slices.Clone(c.writeGrid), func(u uploadSetting) bool { return u == c.writeDefault }), c.writeDefault) {
		if ctx.Err() != nil {
			return
		}
		settle()
		v, err := ceilingMultipart(ctx, b.s3, bucket, fmt.Sprintf("wceil-%d.bin", r), b.localFile, c.size, u)
		if u == c.writeDefault {
			record("wceil", "reference", v, err, "MB/s")
		} else if err != nil {
			b.note("run %d, raw multipart %v: %v", r, u, err)
		} else {
			logf("%s %-8s %-28s %10.2f MB/s", tag, "", "raw multipart PUT, "+u.String(), v)
		}
		if err == nil && v > best {
			best, bestAt = v, u
		}
	}
	var berr error
	if best == 0 {
		berr = fmt.Errorf("no raw multipart setting succeeded")
	}
	record("wceilbest", "reference", best, berr, "MB/s")
	b.bestWrite = append(b.bestWrite, bestAt.String())
}

// coldWarm mounts m fresh (with extra flags), drops caches, and reads the
// main object three times with dd: the cold read, one unmeasured re-read
// and the measured warm one, as the local reference is measured (the first
// re-read of cached pages also moves them to the active LRU list). It
// returns MB/s of the cold and warm reads and their errors.
func (b *bench) coldWarm(ctx context.Context, m mounter, url string, extra []string) (cold, warm float64, cerr, werr error) {
	c := b.cfg
	err := b.withMount(ctx, m, url, extra, true, []string{b.seqKey}, 2*timeoutFor(c.size), func(ctx context.Context, p *mountProc) error {
		path := filepath.Join(p.mnt, b.seqKey)
		if cold, cerr = dd(ctx, path, 0, c.size); cerr != nil {
			werr = cerr
			return cerr
		}
		if _, werr = dd(ctx, path, 0, c.size); werr != nil {
			return werr
		}
		warm, werr = dd(ctx, path, 0, c.size)
		return werr
	})
	if cerr == nil && err != nil {
		cerr = err
	}
	if werr == nil && err != nil {
		werr = err
	}
	return cold, warm, cerr, werr
}

func realRow(n int) string { return fmt.Sprintf("real-%d", n) }

func (b *bench) cleanup() {
	stopAll()
	if b.counter != nil {
		b.counter.Close()
	}
	if b.shaper != nil {
		b.shaper.Close()
	}
	if b.server != nil {
		if err := b.server.Close(); err != nil {
			logf("stopping versitygw: %v", err)
		}
	}
	if b.work == "" {
		return
	}
	if b.tmpfsDir != "" {
		if out, err := exec.Command("umount", b.tmpfsDir).CombinedOutput(); err != nil {
			logf("umount %s: %v: %s (leaving %s in place)", b.tmpfsDir, err, lastLine(string(out)), b.work)
			return
		}
	}
	if b.cfg.keep {
		logf("kept %s", b.work)
		return
	}
	// Never remove through a mount that is still there.
	entries, _ := os.ReadDir(filepath.Join(b.work, "mnt"))
	for _, e := range entries {
		if ok, _ := harness.IsMounted(filepath.Join(b.work, "mnt", e.Name())); ok {
			logf("%s is still mounted: leaving %s in place", e.Name(), b.work)
			return
		}
	}
	if err := os.RemoveAll(b.work); err != nil {
		logf("removing %s: %v", b.work, err)
	}
}

// proxyMain runs the proxy alone until interrupted.
func proxyMain(args []string) {
	fs := flag.NewFlagSet("proxy", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	target := fs.String("target", "", "server host:port (required)")
	latency := fs.Duration("latency", 0, "first-byte latency per response")
	bw := fs.String("bandwidth", "0", "per-connection cap, bytes/s (0: none)")
	_ = fs.Parse(args)
	rate, err := parseSize(*bw)
	if *target == "" || err != nil {
		fmt.Fprintln(os.Stderr, "usage: s3bench proxy -target HOST:PORT [-listen ADDR] [-latency D] [-bandwidth B]")
		os.Exit(2)
	}
	p, err := proxy.Start(*listen, *target, proxy.Options{Latency: *latency, BytesPerSec: rate})
	if err != nil {
		fmt.Fprintln(os.Stderr, "s3bench proxy:", err)
		os.Exit(1)
	}
	fmt.Println(p.URL())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	p.Close()
	fmt.Fprintf(os.Stderr, "server->client %d bytes, client->server %d bytes, %d connections\n", p.BytesDown(), p.BytesUp(), p.Conns())
}

// getMain runs the raw GET ceiling against a server by hand.
func getMain(args []string) {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	url := fs.String("url", "", "endpoint URL (required)")
	bkt := fs.String("bucket", "", "bucket (required)")
	key := fs.String("key", "", "object key (required)")
	streams := fs.Int("streams", 8, "ranged GETs at once; 0: one GET of the whole object")
	rs := fs.String("range-size", "8M", "range size")
	n := fs.Int("n", 1, "repetitions")
	_ = fs.Parse(args)
	rangeSize, err := parseSize(*rs)
	if *url == "" || *bkt == "" || *key == "" || err != nil {
		fmt.Fprintln(os.Stderr, "usage: s3bench get -url URL -bucket B -key K [-streams N] [-range-size S] [-n N]")
		os.Exit(2)
	}
	ctx := context.Background()
	c, err := newS3(ctx, harness.Endpoint{URL: *url, AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"), Region: os.Getenv("AWS_REGION")})
	if err == nil {
		var size int64
		size, err = objectSize(ctx, c, *bkt, *key)
		for i := 0; i < *n && err == nil; i++ {
			var v float64
			if *streams == 0 {
				v, err = ceilingSingle(ctx, c, *bkt, *key, size, true)
			} else {
				v, err = ceilingRanges(ctx, c, *bkt, *key, size, rangeSize, *streams)
			}
			fmt.Printf("%.0f MB/s\n", v)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "s3bench get:", err)
		os.Exit(1)
	}
}
