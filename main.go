// Command s3mount mounts an S3 bucket, or a path inside one, as a local
// directory over FUSE.
//
//	s3mount mount [options] SOURCE MOUNTPOINT
//	s3mount check [--write-probes] CONNECTION
//	s3mount connection external-id
//
// SOURCE is BUCKET, BUCKET:/PATH, s3://BUCKET/PATH, s3:// (every bucket)
// or the name of a connection in the connections file. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	sdnotify "github.com/coreos/go-systemd/v22/daemon"
	"github.com/urfave/cli/v2"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/fs"
	"github.com/s3mount/s3mount/metrics"
	"github.com/s3mount/s3mount/mountopts"
	"github.com/s3mount/s3mount/s3backend"
)

func main() {
	app := newApp()
	args, err := helperArgs(os.Args, app)
	if err != nil {
		fmt.Fprintf(os.Stderr, "s3mount: %s\n", oneLine(err))
		os.Exit(1)
	}
	if err := app.Run(args); err != nil {
		fmt.Fprintf(os.Stderr, "s3mount: %s\n", oneLine(err))
		os.Exit(1)
	}
}

// appDescription is the DESCRIPTION of s3mount(1) and of --help.
const appDescription = `s3mount mount forks a daemon and returns once the mount answers (--foreground stays attached).
As a mount helper, mount -t fuse.s3mount SOURCE DIR -o OPTIONS and fstab lines of type fuse.s3mount
run s3mount SOURCE DIR -o OPTIONS: every mount option has an -o form named like its flag with
underscores (--endpoint-url URL is endpoint_url=URL).

SIGTERM or SIGINT detaches the mount, serves the files still open until they are closed (each upload
commits when its file closes), then exits 0; a second signal exits at once, abandoning unfinished uploads.

Logs go to --log-file, else stderr in the foreground, else journald (or syslog) for a daemon;
--log-format json, --debug traces every FUSE operation. --metrics-addr 127.0.0.1:PORT serves
Prometheus metrics at /metrics. See README.md for connections, systemd, fstab and troubleshooting.`

// newApp is the command line: its commands and their flags.
func newApp() *cli.App {
	app := &cli.App{
		Name:                 "s3mount",
		Usage:                "mount an S3 bucket, or a path in it, as a local directory",
		Description:          appDescription,
		EnableBashCompletion: true,
		Commands: []*cli.Command{mountCommand(), unmountCommand(), checkCommand(), connectionCommand(),
			completionCommand(), manCommand()},
	}
	for _, c := range app.Commands {
		c.OnUsageError = usageError
	}
	return app
}

// helperArgs rewrites a mount helper call into `s3mount mount`: mount(8)
// runs `s3mount SOURCE MOUNTPOINT -o OPTIONS` through fuse3's mount.fuse3
// for type fuse.s3mount (fstab lines included), and mount.s3mount (a link
// to s3mount) for type s3mount. Other argument lists pass unchanged.
func helperArgs(argv []string, app *cli.App) ([]string, error) {
	if len(argv) < 2 {
		return argv, nil
	}
	rest := argv[1:]
	if filepath.Base(argv[0]) != "mount.s3mount" {
		if strings.HasPrefix(rest[0], "-") || app.Command(rest[0]) != nil || rest[0] == "help" {
			return argv, nil
		}
	}
	var positional []string
	var opts []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "-o" && i+1 < len(rest):
			opts = append(opts, rest[i+1])
			i++
		case strings.HasPrefix(a, "-o") && len(a) > 2:
			opts = append(opts, a[2:])
		case a == "-n" || a == "-s" || a == "-v" || a == "-f":
			// mount(8) helper flags: no mtab, sloppy, verbose, fake.
			if a == "-f" {
				return nil, errors.New("fake mount (-f) is not supported")
			}
		case strings.HasPrefix(a, "-"):
			return nil, fmt.Errorf("mount helper call: unknown flag %s (options go in -o)", a)
		default:
			positional = append(positional, a)
		}
	}
	if len(positional) != 2 {
		return nil, fmt.Errorf("mount helper call needs SOURCE and MOUNTPOINT (got %s)", arguments(len(positional)))
	}
	flags := map[string]bool{}
	for _, f := range app.Command("mount").Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			flags[n] = !isBool
		}
	}
	out := []string{argv[0], "mount"}
	for _, o := range opts {
		more, err := mountopts.HelperArgs(o, flags)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return append(out, positional...), nil
}

// usageError turns urfave/cli's complaint about a flag value (which it
// would follow with the whole help text) into one line naming the option
// as it is written: --name, not -name.
func usageError(_ *cli.Context, err error, _ bool) error {
	return errors.New(usageFlag.ReplaceAllString(err.Error(), "$1--$2"))
}

var usageFlag = regexp.MustCompile(`(^|\s)-{1,2}([a-z][a-z0-9-]+)`)

// arguments says "1 argument" or "N arguments".
func arguments(n int) string {
	if n == 1 {
		return "1 argument"
	}
	return fmt.Sprintf("%d arguments", n)
}

// oneLine folds an error onto one line for the terminal.
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

func mountCommand() *cli.Command {
	d := mountopts.Default()
	return &cli.Command{
		Name:      "mount",
		Usage:     "mount SOURCE (BUCKET, BUCKET:/PATH, s3://BUCKET/PATH, s3:// or a connection name) at MOUNTPOINT",
		ArgsUsage: "SOURCE MOUNTPOINT",
		Flags: append(connectionFlags(),
			&cli.IntFlag{Name: "download-threads", Value: d.DownloadThreads, Usage: "ranged GETs in flight ahead of a sequential reader (1..256)"},
			&cli.StringFlag{Name: "part-size", Value: "8M", Usage: "multipart upload part size, 5M to 5G"},
			&cli.IntFlag{Name: "upload-concurrency", Value: d.UploadConcurrency, Usage: "parts of one file uploading at once (1..64)"},
			&cli.StringFlag{Name: "cache-size", Value: "512M", Usage: "memory for cached file blocks (bytes, K/M/G suffixes)"},
			&cli.StringFlag{Name: "block-size", Value: "1M", Usage: "unit of ranged GETs and of the block cache (a power of two, 64K..64M)"},
			&cli.StringFlag{Name: "cache-dir", Value: d.CacheDir, Usage: "staging files of files changed in place, recovery/ for failed uploads, and local copies (--copy-cache-size)"},
			&cli.StringFlag{Name: "staging-limit", Value: "10G", Usage: "disk bytes all staging files may use; beyond, writes fail with ENOSPC (0: no limit)"},
			&cli.StringFlag{Name: "copy-cache-size", Value: "0", Usage: "disk bytes under --cache-dir for local copies of files read start to end, from which the kernel reads unchanged files opened again (passthrough; root, Linux 6.9+); a writer opening a file read from its copy writes into the copy, uploaded at close; least recently used go first; files over half of it are not copied; 0: off"},
			&cli.DurationFlag{Name: "metadata-ttl", Value: d.MetadataTTL, Usage: "how long stat and listing results are trusted (kernel entry/attr timeout), with a unit: 5s, 500ms, 1m"},
			&cli.IntFlag{Name: "max-rename-objects", Value: d.MaxRenameObjects, Usage: "most objects a directory rename moves; beyond it EXDEV (mv copies); 0: never"},
			&cli.UintFlag{Name: "uid", Value: uint(d.UID), Usage: "owner of directories, and of files without x-amz-meta-uid"},
			&cli.UintFlag{Name: "gid", Value: uint(d.GID), Usage: "group of directories, and of files without x-amz-meta-gid"},
			&cli.StringFlag{Name: "file-mode", Value: "0644", Usage: "permission bits of files (octal)"},
			&cli.StringFlag{Name: "dir-mode", Value: "0755", Usage: "permission bits of directories (octal)"},
			&cli.BoolFlag{Name: "allow-other", Usage: "let other users use the mount (FUSE allow_other)"},
			&cli.BoolFlag{Name: "read-only", Usage: "refuse every change with EROFS"},
			&cli.BoolFlag{Name: "foreground", Aliases: []string{"f"}, Usage: "stay attached instead of forking a daemon"},
			&cli.StringFlag{Name: "log-level", Value: d.LogLevel, Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Value: d.LogFormat, Usage: "text (key=value) or json"},
			&cli.StringFlag{Name: "log-file", Usage: "log to this file (default: stderr in the foreground; as a daemon journald, else syslog)"},
			&cli.BoolFlag{Name: "debug", Aliases: []string{"debug-fuse"}, Usage: "log at debug level and trace every FUSE operation (op, path, errno, duration)"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics at http://HOST:PORT/metrics (\":PORT\" is 127.0.0.1:PORT; bind the loopback)"},
			&cli.StringSliceFlag{Name: "mount-option", Usage: "generic mount option for the kernel (nosuid, noatime, ...; repeatable)"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return fmt.Errorf("mount needs SOURCE and MOUNTPOINT (got %s); options go before them", arguments(c.NArg()))
			}
			opts, err := optionsFrom(c)
			if err != nil {
				return err
			}
			mountpoint := c.Args().Get(1)
			if !opts.Foreground && !isDaemonChild() {
				return spawnDaemon(opts, mountpoint)
			}
			err = serve(opts, c.Args().Get(0), mountpoint)
			if err != nil && opts.SourceNote != "" {
				err = fmt.Errorf("%w (%s)", err, opts.SourceNote)
			}
			if isDaemonChild() {
				reportReady(err)
			}
			return err
		},
	}
}

// connectionFlags are the options that say where to connect and as whom,
// shared by mount and check. They override the connection file.
func connectionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "connections file (default: $" + mountopts.ConfigEnv + ", then " + mountopts.DefaultConfigPath + ")"},
		&cli.StringFlag{Name: "endpoint-url", Usage: "S3 endpoint URL (default: the SDK's, e.g. AWS_ENDPOINT_URL_S3 or AWS)"},
		&cli.StringFlag{Name: "region", Usage: "bucket region (default: detected with GetBucketLocation, else AWS_REGION, the profile, then us-east-1)"},
		&cli.BoolFlag{Name: "force-path-style", Usage: "address the bucket as ENDPOINT/BUCKET (for most non-AWS servers)"},
		&cli.StringFlag{Name: "access-key-id", Usage: "access key ID; its secret comes from AWS_SECRET_ACCESS_KEY or --secret-access-key-file (default: the AWS credential chain)"},
		&cli.StringFlag{Name: "secret-access-key-file", Usage: "file holding the secret access key (mode 0600 or stricter)"},
		&cli.StringFlag{Name: "role-arn", Usage: "IAM role to assume with STS AssumeRole (the caller: the access key, or the AWS chain)"},
		&cli.StringFlag{Name: "external-id", Usage: "external ID sent with AssumeRole"},
		&cli.StringFlag{Name: "role-session-name", Value: mountopts.Default().RoleSessionName, Usage: "role session name"},
		&cli.DurationFlag{Name: "session-duration", Usage: "role session lifetime, 15m..12h", DefaultText: "STS's, 15m"},
		&cli.StringFlag{Name: "sts-endpoint-url", Usage: "STS endpoint URL (default: the SDK's, e.g. AWS_ENDPOINT_URL_STS or AWS)"},
	}
}

// resolveSource fills o from SOURCE: a connection of the connections file
// when SOURCE is a plain word naming one, else a bucket source.
func resolveSource(c *cli.Context, source string, o *mountopts.Options) error {
	if !mountopts.IsBucketSource(source) {
		path, explicit := mountopts.ConfigPath(c.String("config"))
		conns, err := mountopts.LoadConnectionsAt(path, explicit)
		if err != nil {
			return err
		}
		if conn, ok := conns[source]; ok {
			return conn.Apply(source, o)
		}
		o.SourceNote = fmt.Sprintf("%q was read as a bucket name: %s has no connection of that name", source, path)
		if _, err := os.Stat(path); err != nil {
			o.SourceNote = fmt.Sprintf("%q was read as a bucket name: there is no connections file %s", source, path)
		}
		if explicit {
			if err := mountopts.ValidateBucketName(source); err != nil {
				return fmt.Errorf("%q is not a connection in %s, nor a bucket name (%v)", source, path, err)
			}
		}
	}
	var err error
	o.Bucket, o.Prefix, err = mountopts.ParseSource(source)
	return err
}

// optionsFrom fills Options from SOURCE (a connection or a bucket source)
// and then from the flags that were given, which override the connection
// file, and validates them.
func optionsFrom(c *cli.Context) (mountopts.Options, error) {
	o := mountopts.Default()
	if err := resolveSource(c, c.Args().Get(0), &o); err != nil {
		return o, err
	}
	str := func(flag string, dst *string) {
		if c.IsSet(flag) {
			*dst = c.String(flag)
		}
	}
	str("endpoint-url", &o.EndpointURL)
	str("region", &o.Region)
	str("access-key-id", &o.AccessKeyID)
	str("secret-access-key-file", &o.SecretAccessKeyFile)
	str("role-arn", &o.RoleARN)
	str("external-id", &o.ExternalID)
	str("role-session-name", &o.RoleSessionName)
	str("sts-endpoint-url", &o.STSEndpointURL)
	str("log-level", &o.LogLevel)
	str("log-file", &o.LogFile)
	str("log-format", &o.LogFormat)
	str("metrics-addr", &o.MetricsAddr)
	o.Debug = c.Bool("debug")
	if c.IsSet("mount-option") {
		o.KernelOptions = c.StringSlice("mount-option")
	}
	if c.IsSet("secret-access-key-file") {
		o.SecretAccessKey = "" // the flag's file replaces an inline secret
	}
	// Keys or a role given here override the file's choice of auth.
	if c.IsSet("access-key-id") && o.Auth == mountopts.AuthDefault {
		o.Auth = ""
	}
	if c.IsSet("role-arn") && o.Auth != mountopts.AuthIAMRole {
		o.Auth = ""
	}
	if c.IsSet("force-path-style") {
		o.ForcePathStyle = c.Bool("force-path-style")
	}
	if c.IsSet("session-duration") {
		o.SessionDuration = c.Duration("session-duration")
	}
	if c.IsSet("download-threads") {
		o.DownloadThreads = c.Int("download-threads")
	}
	if c.IsSet("upload-concurrency") {
		o.UploadConcurrency = c.Int("upload-concurrency")
	}
	if c.IsSet("metadata-ttl") {
		o.MetadataTTL = c.Duration("metadata-ttl")
	}
	if c.IsSet("max-rename-objects") {
		o.MaxRenameObjects = c.Int("max-rename-objects")
	}
	if c.IsSet("uid") {
		o.UID = uint32(c.Uint("uid"))
	}
	if c.IsSet("gid") {
		o.GID = uint32(c.Uint("gid"))
	}
	if c.IsSet("cache-dir") {
		o.CacheDir = c.String("cache-dir")
	}
	o.AllowOther = c.Bool("allow-other")
	o.ReadOnly = c.Bool("read-only")
	o.Foreground = c.Bool("foreground")
	var err error
	for _, s := range []struct {
		flag string
		dst  *int64
	}{{"part-size", &o.PartSize}, {"cache-size", &o.CacheSize}, {"block-size", &o.BlockSize},
		{"staging-limit", &o.StagingLimit}, {"copy-cache-size", &o.CopyCacheSize}} {
		if !c.IsSet(s.flag) {
			continue
		}
		if *s.dst, err = mountopts.ParseSize(c.String(s.flag)); err != nil {
			return o, fmt.Errorf("option --%s: %w", s.flag, err)
		}
	}
	if c.IsSet("file-mode") {
		if o.FileMode, err = mountopts.ParseMode(c.String("file-mode")); err != nil {
			return o, fmt.Errorf("option --file-mode: %w", err)
		}
	}
	if c.IsSet("dir-mode") {
		if o.DirMode, err = mountopts.ParseMode(c.String("dir-mode")); err != nil {
			return o, fmt.Errorf("option --dir-mode: %w", err)
		}
	}
	return o, o.Validate()
}

// serve mounts and serves until the mount is unmounted or a signal arrives.
// In a daemon child, readiness is reported by the caller from its result;
// serve calls onMounted when the mount answers.
func serve(o mountopts.Options, source, mountpoint string) error {
	log, logDest, logCloser, err := newLogger(o, isDaemonChild())
	if err != nil {
		return err
	}
	defer logCloser.Close()
	slog.SetDefault(log)
	m := metrics.New()
	if o.MetricsAddr != "" {
		addr, err := mountopts.MetricsAddr(o.MetricsAddr)
		if err != nil {
			return fmt.Errorf("option --metrics-addr: %w", err)
		}
		srv, err := m.Serve(addr, log)
		if err != nil {
			return err
		}
		defer srv.Close()
		log.Info("serving metrics", "url", "http://"+srv.Addr+"/metrics")
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// The block cache lives outside the Go heap (cache.Buf); a soft
		// limit on the heap near what it should hold (one writer's parts
		// and room for the rest) makes the garbage collector return
		// churn before the heap doubles.
		debug.SetMemoryLimit(int64(o.UploadConcurrency+1)*o.PartSize + 96<<20)
	}
	if !o.ReadOnly {
		if err := o.PrepareCacheDir(); err != nil {
			return err
		}
	}
	ctx := context.Background()
	session, err := sessionFrom(ctx, o, log)
	if err != nil {
		return err
	}
	blocks, err := cache.NewBlocks(o.CacheSize, o.BlockSize)
	if err != nil {
		return err
	}
	defer blocks.Close()
	m.WatchCache(blocks)
	m.WatchWrites()
	var copies *cache.Copies
	if o.CopyCacheSize > 0 {
		if copies, err = cache.OpenCopies(o.CacheDir, o.CopyCacheSize, o.BlockSize); err != nil {
			log.Warn("local copies off: their directory cannot be made", "dir", o.CacheDir, "err", err)
			copies = nil
		} else {
			defer copies.Close()
		}
	}
	bucketCfg := fs.Config{Blocks: blocks, Prefix: o.Prefix, BlockSize: o.BlockSize, Copies: copies,
		DownloadThreads: o.DownloadThreads, PartSize: o.PartSize, UploadConcurrency: o.UploadConcurrency,
		UID: o.UID, GID: o.GID, FileMode: uint32(o.FileMode), DirMode: uint32(o.DirMode), ReadOnly: o.ReadOnly,
		CacheDir: o.CacheDir, StagingLimit: o.StagingLimit,
		MaxRenameObjects: maxRenameObjects(o.MaxRenameObjects), Logger: log}
	newMeta := func() *cache.Meta { return cache.NewMeta(o.MetadataTTL, 1<<20, nil) }
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var root fs.Root
	if o.Bucket != "" {
		region := o.Region
		if region == "" {
			var how string
			region, how = session.DetectRegion(pctx, o.Bucket, o.Prefix)
			log.Info("bucket region", "bucket", o.Bucket, "region", region, "from", how)
		}
		client := m.Client(session.ForBucket(o.Bucket, region))
		if err := s3backend.Probe(pctx, client, o.Prefix, o.EndpointURL); err != nil {
			return err
		}
		bucketCfg.Client, bucketCfg.Meta = client, newMeta()
		_, root = fs.New(bucketCfg)
	} else {
		if err := s3backend.ProbeBuckets(pctx, session, o.EndpointURL); err != nil {
			return err
		}
		root = fs.NewBuckets(fs.BucketsConfig{Buckets: m.Buckets(session), Bucket: bucketCfg, NewMeta: newMeta, TTL: o.MetadataTTL})
	}
	cancel()
	fsName := source
	if o.Connection != "" {
		fsName = o.Connection
	}
	ops := &fs.Ops{Observe: m.ObserveFuse, Trace: o.Debug}
	m.WatchOps(ops)
	server, err := fs.Mount(mountpoint, root, fs.MountConfig{FsName: fsName, AllowOther: o.AllowOther,
		TTL: o.MetadataTTL, Options: o.KernelOptions, Ops: ops})
	if err != nil {
		return err
	}
	if _, err := os.Stat(mountpoint); err != nil {
		_ = server.Unmount()
		return fmt.Errorf("the mount at %s does not answer: %w", mountpoint, err)
	}
	if copies != nil {
		if err := fs.CheckPassthrough(server, copies); err != nil {
			log.Info("local copies off: the kernel refused a passthrough backing file (needs CAP_SYS_ADMIN and Linux 6.9+)", "err", err)
		} else {
			copies.Enable()
			log.Info("local copies on", "dir", copies.Dir(), "limit_bytes", o.CopyCacheSize)
		}
	}
	log.Info("mounted", "source", fsName, "mountpoint", mountpoint, "bucket", o.Bucket, "prefix", o.Prefix,
		"auth", o.EffectiveAuth(), "log", logDest)
	if isDaemonChild() {
		reportReady(nil)
	}
	// Type=notify systemd units (sd_notify(3)); nothing without NOTIFY_SOCKET.
	if _, err := sdnotify.SdNotify(false, sdnotify.SdNotifyReady); err != nil {
		log.Warn("telling systemd the mount is ready failed", "err", err)
	}
	return waitShutdown(server, mountpoint, ops, m, log)
}

// sessionFrom reads the secret (inline from the connection file, the
// secret file, or AWS_SECRET_ACCESS_KEY) and makes the S3 session the
// options ask for. No request is made.
func sessionFrom(ctx context.Context, o mountopts.Options, log *slog.Logger) (*s3backend.Session, error) {
	secret := string(o.SecretAccessKey)
	if o.AccessKeyID != "" && secret == "" {
		var err error
		if o.SecretAccessKeyFile != "" {
			if secret, err = mountopts.ReadSecretFile(o.SecretAccessKeyFile); err != nil {
				return nil, err
			}
		} else if secret = os.Getenv("AWS_SECRET_ACCESS_KEY"); secret == "" {
			return nil, fmt.Errorf("access key %s needs its secret: secret_access_key_file in the connection, --secret-access-key-file, or AWS_SECRET_ACCESS_KEY", o.AccessKeyID)
		}
	}
	return s3backend.NewSession(ctx, s3backend.Config{Region: o.Region, EndpointURL: o.EndpointURL,
		ForcePathStyle: o.ForcePathStyle, AccessKeyID: o.AccessKeyID, SecretAccessKey: secret,
		Role: s3backend.Role{ARN: o.RoleARN, ExternalID: o.ExternalID, SessionName: o.RoleSessionName,
			Duration: o.SessionDuration, STSEndpointURL: o.STSEndpointURL},
		MaxConns: 4*o.DownloadThreads + o.UploadConcurrency*4, Logger: log})
}

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "check a connection's permissions without mounting",
		ArgsUsage: "CONNECTION (or a SOURCE as for mount)",
		Description: "Prints one row per permission the mount's features need, as granted, denied (with the S3\n" +
			"error code), failed or not tried. Nothing is written unless --write-probes: then one small\n" +
			"object is uploaded under the connection's path and deleted (and, for a connection without a\n" +
			"bucket, a bucket is created and deleted). Exits 1 when the mount could not work.",
		Flags: append(connectionFlags(),
			&cli.BoolFlag{Name: "write-probes", Usage: "also try upload, delete (and create bucket), cleaning up after"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("check needs one CONNECTION (got %s); options go before it", arguments(c.NArg()))
			}
			o, err := optionsFrom(c)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			session, err := sessionFrom(ctx, o, log)
			if err != nil {
				return err
			}
			rows, err := session.Check(ctx, s3backend.CheckOptions{Bucket: o.Bucket, Prefix: o.Prefix,
				WriteProbes: c.Bool("write-probes")})
			fmt.Fprint(c.App.Writer, formatCheck(c.Args().Get(0), o, session.Region(), rows))
			if err != nil {
				return err
			}
			for _, r := range rows {
				if r.Needed && r.Outcome != s3backend.Granted {
					return fmt.Errorf("the mount cannot work: %s is %s", r.Permission, outcomeText(r))
				}
			}
			fmt.Fprintln(c.App.Writer, "the mount can work")
			return nil
		},
	}
}

func outcomeText(r s3backend.CheckResult) string {
	if r.Code != "" {
		return fmt.Sprintf("%s (%s)", r.Outcome, r.Code)
	}
	return r.Outcome.String()
}

// formatCheck renders check's table.
func formatCheck(name string, o mountopts.Options, region string, rows []s3backend.CheckResult) string {
	var b strings.Builder
	what := "every bucket"
	if o.Bucket != "" {
		what = "s3://" + o.Bucket + "/" + o.Prefix
	}
	endpoint := o.EndpointURL
	if endpoint == "" {
		endpoint = "AWS"
	}
	fmt.Fprintf(&b, "connection %s: %s at %s, auth %s, region %s\n", name, what, endpoint, o.EffectiveAuth(), region)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PERMISSION\tRESULT\tON")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Permission, outcomeText(r), r.Note)
	}
	_ = tw.Flush()
	// tabwriter pads an empty last column with spaces: trim them.
	lines := strings.Split(b.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

func unmountCommand() *cli.Command {
	return &cli.Command{
		Name:      "unmount",
		Usage:     "unmount MOUNTPOINT (fusermount3 -u); the daemon finishes pending uploads and exits",
		ArgsUsage: "MOUNTPOINT",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "lazy", Aliases: []string{"l"}, Usage: "detach now and finish once nothing uses the mount (also clears a dead mount)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("unmount needs MOUNTPOINT (got %s)", arguments(c.NArg()))
			}
			return fs.Unmount(c.Args().Get(0), c.Bool("lazy"))
		},
	}
}

func connectionCommand() *cli.Command {
	return &cli.Command{
		Name:  "connection",
		Usage: "helpers for named connections",
		Subcommands: []*cli.Command{{
			Name:  "external-id",
			Usage: "print a new random external ID for a role's trust policy (sts:ExternalId)",
			Action: func(c *cli.Context) error {
				id, err := mountopts.NewExternalID()
				if err != nil {
					return err
				}
				fmt.Fprintln(c.App.Writer, id)
				return nil
			},
		}},
	}
}

// maxRenameObjects maps --max-rename-objects to fs.Config's form, where 0
// means the default and a negative value "never".
func maxRenameObjects(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
