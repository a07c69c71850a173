// Command s3mount mounts an S3 bucket, or a path inside one, as a local
// directory over FUSE.
//
//	s3mount mount [options] SOURCE MOUNTPOINT
//
// SOURCE is BUCKET, BUCKET:/PATH or s3://BUCKET/PATH. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/fs"
	"github.com/s3mount/s3mount/mountopts"
	"github.com/s3mount/s3mount/s3backend"
)

func main() {
	app := &cli.App{
		Name:                 "s3mount",
		Usage:                "mount an S3 bucket, or a path in it, as a local directory",
		EnableBashCompletion: true,
		Commands:             []*cli.Command{mountCommand()},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "s3mount: %s\n", oneLine(err))
		os.Exit(1)
	}
}

// oneLine folds an error onto one line for the terminal.
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

func mountCommand() *cli.Command {
	d := mountopts.Default()
	return &cli.Command{
		Name:      "mount",
		Usage:     "mount SOURCE (BUCKET, BUCKET:/PATH or s3://BUCKET/PATH) at MOUNTPOINT",
		ArgsUsage: "SOURCE MOUNTPOINT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "endpoint-url", Usage: "S3 endpoint URL (default: the SDK's, e.g. AWS_ENDPOINT_URL_S3 or AWS)"},
			&cli.StringFlag{Name: "region", Usage: "bucket region (default: AWS_REGION, the profile, then us-east-1)"},
			&cli.BoolFlag{Name: "force-path-style", Usage: "address the bucket as ENDPOINT/BUCKET (for most non-AWS servers)"},
			&cli.StringFlag{Name: "access-key-id", Usage: "access key ID; its secret comes from AWS_SECRET_ACCESS_KEY or --secret-access-key-file (default: the AWS credential chain)"},
			&cli.StringFlag{Name: "secret-access-key-file", Usage: "file holding the secret access key (mode 0600 or stricter)"},
			&cli.IntFlag{Name: "download-threads", Value: d.DownloadThreads, Usage: "ranged GETs in flight ahead of a sequential reader"},
			&cli.StringFlag{Name: "part-size", Value: "8M", Usage: "multipart upload part size, 5M to 5G"},
			&cli.IntFlag{Name: "upload-concurrency", Value: d.UploadConcurrency, Usage: "parts of one file uploading at once"},
			&cli.StringFlag{Name: "cache-size", Value: "512M", Usage: "memory for cached file blocks (bytes, K/M/G suffixes)"},
			&cli.StringFlag{Name: "block-size", Value: "1M", Usage: "unit of ranged GETs and of the block cache"},
			&cli.DurationFlag{Name: "metadata-ttl", Value: d.MetadataTTL, Usage: "how long stat and listing results are trusted (kernel entry/attr timeout)"},
			&cli.UintFlag{Name: "uid", Value: uint(d.UID), Usage: "owner of every file"},
			&cli.UintFlag{Name: "gid", Value: uint(d.GID), Usage: "group of every file"},
			&cli.StringFlag{Name: "file-mode", Value: "0644", Usage: "permission bits of files (octal)"},
			&cli.StringFlag{Name: "dir-mode", Value: "0755", Usage: "permission bits of directories (octal)"},
			&cli.BoolFlag{Name: "allow-other", Usage: "let other users use the mount (FUSE allow_other)"},
			&cli.BoolFlag{Name: "read-only", Usage: "refuse every change with EROFS"},
			&cli.BoolFlag{Name: "foreground", Aliases: []string{"f"}, Usage: "stay attached instead of forking a daemon"},
			&cli.StringFlag{Name: "log-level", Value: d.LogLevel, Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-file", Usage: "where the daemon logs (default: discarded once detached)"},
			&cli.BoolFlag{Name: "debug-fuse", Usage: "log every FUSE request (very verbose)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return fmt.Errorf("mount needs SOURCE and MOUNTPOINT (got %d arguments); options go before them", c.NArg())
			}
			opts, err := optionsFrom(c)
			if err != nil {
				return err
			}
			mountpoint := c.Args().Get(1)
			if !opts.Foreground && !isDaemonChild() {
				return spawnDaemon(opts, mountpoint)
			}
			err = serve(opts, c.Args().Get(0), mountpoint, c.Bool("debug-fuse"))
			if isDaemonChild() {
				reportReady(err)
			}
			return err
		},
	}
}

// optionsFrom fills Options from the flags and validates them.
func optionsFrom(c *cli.Context) (mountopts.Options, error) {
	o := mountopts.Default()
	var err error
	if o.Bucket, o.Prefix, err = mountopts.ParseSource(c.Args().Get(0)); err != nil {
		return o, err
	}
	o.EndpointURL = c.String("endpoint-url")
	o.Region = c.String("region")
	o.ForcePathStyle = c.Bool("force-path-style")
	o.AccessKeyID = c.String("access-key-id")
	o.SecretAccessKeyFile = c.String("secret-access-key-file")
	o.DownloadThreads = c.Int("download-threads")
	o.UploadConcurrency = c.Int("upload-concurrency")
	o.MetadataTTL = c.Duration("metadata-ttl")
	o.UID, o.GID = uint32(c.Uint("uid")), uint32(c.Uint("gid"))
	o.AllowOther = c.Bool("allow-other")
	o.ReadOnly = c.Bool("read-only")
	o.Foreground = c.Bool("foreground")
	o.LogLevel = c.String("log-level")
	o.LogFile = c.String("log-file")
	for _, s := range []struct {
		flag string
		dst  *int64
	}{{"part-size", &o.PartSize}, {"cache-size", &o.CacheSize}, {"block-size", &o.BlockSize}} {
		if *s.dst, err = mountopts.ParseSize(c.String(s.flag)); err != nil {
			return o, fmt.Errorf("option --%s: %w", s.flag, err)
		}
	}
	if o.FileMode, err = mountopts.ParseMode(c.String("file-mode")); err != nil {
		return o, fmt.Errorf("option --file-mode: %w", err)
	}
	if o.DirMode, err = mountopts.ParseMode(c.String("dir-mode")); err != nil {
		return o, fmt.Errorf("option --dir-mode: %w", err)
	}
	return o, o.Validate()
}

// newLogger makes the slog logger the options ask for.
func newLogger(o mountopts.Options) (*slog.Logger, error) {
	var w io.Writer = os.Stderr
	if o.LogFile != "" {
		f, err := os.OpenFile(o.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("option --log-file: %w", err)
		}
		w = f
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(o.LogLevel))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})), nil
}

// serve mounts and serves until the mount is unmounted or a signal arrives.
// In a daemon child, readiness is reported by the caller from its result;
// serve calls onMounted when the mount answers.
func serve(o mountopts.Options, source, mountpoint string, debugFuse bool) error {
	log, err := newLogger(o)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	secret := ""
	if o.AccessKeyID != "" {
		if o.SecretAccessKeyFile != "" {
			if secret, err = mountopts.ReadSecretFile(o.SecretAccessKeyFile); err != nil {
				return err
			}
		} else if secret = os.Getenv("AWS_SECRET_ACCESS_KEY"); secret == "" {
			return fmt.Errorf("option --access-key-id needs its secret in AWS_SECRET_ACCESS_KEY or --secret-access-key-file")
		}
	}
	ctx := context.Background()
	client, err := s3backend.New(ctx, s3backend.Config{Bucket: o.Bucket, Region: o.Region, EndpointURL: o.EndpointURL,
		ForcePathStyle: o.ForcePathStyle, AccessKeyID: o.AccessKeyID, SecretAccessKey: secret,
		MaxConns: 4*o.DownloadThreads + o.UploadConcurrency*4, Logger: log})
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = s3backend.Probe(pctx, client, o.Prefix, o.EndpointURL)
	cancel()
	if err != nil {
		return err
	}
	blocks, err := cache.NewBlocks(o.CacheSize, o.BlockSize)
	if err != nil {
		return err
	}
	defer blocks.Close()
	_, root := fs.New(fs.Config{Client: client, Blocks: blocks, Meta: cache.NewMeta(o.MetadataTTL, 1<<20, nil),
		Prefix: o.Prefix, BlockSize: o.BlockSize, DownloadThreads: o.DownloadThreads, PartSize: o.PartSize,
		UploadConcurrency: o.UploadConcurrency, UID: o.UID, GID: o.GID, FileMode: uint32(o.FileMode),
		DirMode: uint32(o.DirMode), ReadOnly: o.ReadOnly, Logger: log})
	server, err := fs.Mount(mountpoint, root, fs.MountConfig{FsName: source, AllowOther: o.AllowOther,
		TTL: o.MetadataTTL, Debug: debugFuse})
	if err != nil {
		return err
	}
	if _, err := os.Stat(mountpoint); err != nil {
		_ = server.Unmount()
		return fmt.Errorf("the mount at %s does not answer: %w", mountpoint, err)
	}
	log.Info("mounted", "source", source, "mountpoint", mountpoint, "bucket", o.Bucket, "prefix", o.Prefix)
	if isDaemonChild() {
		reportReady(nil)
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sigs {
			log.Info("unmounting", "signal", s.String())
			if err := server.Unmount(); err != nil {
				log.Error("unmount failed (is the mount busy?)", "mountpoint", mountpoint, "err", err)
			}
		}
	}()
	server.Wait()
	log.Info("unmounted", "mountpoint", mountpoint)
	return nil
}
