// Package mountopts holds the one options type of an s3mount mount: what the
// command line (and later fstab -o strings and named connections) fill in,
// the defaults, and the validation that names the offending option.
//
// It imports nothing of ours; main.go turns an Options into each package's
// own Config.
package mountopts

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// S3 multipart limits (Amazon S3 User Guide, "Amazon S3 multipart upload limits").
const (
	// MinPartSize is the smallest part S3 accepts, except for the last part: 5 MiB.
	MinPartSize = 5 << 20
	// MaxPartSize is the largest part S3 accepts: 5 GiB.
	MaxPartSize = 5 << 30
	// MaxParts is the largest part number of a multipart upload.
	MaxParts = 10000
	// MaxObjectSize is the largest object S3 stores: 5 TiB.
	MaxObjectSize = 5 << 40
)

// Options is everything that shapes one mount. Sizes are bytes, durations
// are time.Duration. Default() is the only source of default values.
type Options struct {
	// Bucket is the bucket to mount. Empty: every bucket the credentials
	// can list, each a directory at the mount's root (SOURCE "s3://", or a
	// connection without a bucket).
	Bucket string
	// Prefix restricts the mount to keys under it. Empty, or a key prefix
	// ending in "/" (normalised by ParseSource), such as "home/alice/".
	// Needs a Bucket.
	Prefix string
	// Connection is the name of the named connection the mount was made
	// from (see LoadConnections); "" for none. It is the filesystem name
	// that mount(8) and df(1) show.
	Connection string

	// EndpointURL overrides the S3 endpoint (e.g. http://127.0.0.1:7070).
	// Empty: the SDK's standard resolution (AWS_ENDPOINT_URL_S3, config, AWS).
	EndpointURL string
	// Region is the bucket's region. Empty: detected with
	// GetBucketLocation when a bucket is set, falling back on the SDK's
	// chain (AWS_REGION, profile), then us-east-1. It is also the region
	// new buckets are created in (all-buckets mounts).
	Region string
	// ForcePathStyle sends requests as ENDPOINT/BUCKET/KEY instead of
	// BUCKET.ENDPOINT/KEY. Default false.
	ForcePathStyle bool

	// AccessKeyID selects static credentials. The secret then comes from
	// SecretAccessKeyFile or the AWS_SECRET_ACCESS_KEY environment variable,
	// never from argv. Empty: the standard AWS credential chain.
	AccessKeyID string
	// SecretAccessKeyFile is a file whose first line is the secret access key.
	// It must not be readable by group or others.
	SecretAccessKeyFile string
	// SecretAccessKey is a secret given inline in a connection file (whose
	// mode LoadConnections checks); never from the command line.
	SecretAccessKey Secret

	// Auth is how credentials are found: AuthAccessKey, AuthIAMRole or
	// AuthDefault. Empty: AuthIAMRole when RoleARN is set, AuthAccessKey
	// when AccessKeyID is, else AuthDefault (see EffectiveAuth).
	Auth string
	// RoleARN is the IAM role assumed with STS AssumeRole (iam-role auth);
	// the caller is the access key when one is set, else the AWS chain.
	RoleARN string
	// ExternalID is sent with AssumeRole when not empty (the role's trust
	// policy names it).
	ExternalID string
	// RoleSessionName names the role session. Default "s3mount".
	RoleSessionName string
	// SessionDuration is the lifetime asked of AssumeRole. 0: STS's
	// default (the SDK asks for 15 minutes). Credentials are refreshed
	// before they expire.
	SessionDuration time.Duration
	// STSEndpointURL overrides the STS endpoint. Empty: the SDK's standard
	// settings (AWS_ENDPOINT_URL_STS, the profile's services section, AWS).
	STSEndpointURL string

	// DownloadThreads is the number of ranged GETs in flight ahead of one
	// sequential reader. Default 8.
	DownloadThreads int
	// PartSize is the multipart upload part size in bytes. Default 8 MiB;
	// between MinPartSize and MaxPartSize.
	PartSize int64
	// UploadConcurrency is the number of parts of one file in flight. Default 4.
	UploadConcurrency int
	// CacheSize bounds the shared block cache, in bytes. Default 512 MiB.
	CacheSize int64
	// BlockSize is the unit of ranged GETs and of the block cache, in bytes.
	// Default 1 MiB.
	BlockSize int64
	// MetadataTTL is how long stat and listing results are trusted, and the
	// kernel entry/attr timeout. Default 5 s.
	MetadataTTL time.Duration

	// CacheDir holds the staging files of files being changed in place and
	// the files of uploads that failed (recovery/). Default: the user's
	// cache directory (os.UserCacheDir, e.g. ~/.cache) + "/s3mount", else
	// /var/tmp/s3mount-UID.
	CacheDir string
	// StagingLimit bounds the bytes of all staging files of the mount; a
	// write past it answers ENOSPC. Default 10 GiB; 0 means no limit.
	StagingLimit int64
	// CopyCacheSize bounds the disk bytes of whole local copies of objects
	// read from start to end, kept under CacheDir so that the kernel reads
	// an unchanged object opened again from its copy (FUSE passthrough,
	// Linux 6.9+, CAP_SYS_ADMIN; fs/passthrough.go). A writer that opens
	// a file while it is read from its copy writes into the copy, which
	// is uploaded at close. Objects larger than
	// half of it are not copied. Default 0: no copies (each byte read would also
	// be written to local disk).
	CopyCacheSize int64
	// MaxRenameObjects is the most objects (keys under the directory,
	// its marker included) one directory rename moves with CopyObject and
	// DeleteObject; beyond it rename(2) answers EXDEV and mv(1) copies
	// instead. 0: every directory rename answers EXDEV. Default 10,000.
	MaxRenameObjects int

	// UID and GID own every file. Default: the mounting user's.
	UID, GID uint32
	// FileMode and DirMode are the permission bits of files and
	// directories. Default 0644 and 0755.
	FileMode, DirMode os.FileMode
	// AllowOther lets users other than the mounting one use the mount
	// (FUSE allow_other; needs user_allow_other in /etc/fuse.conf for non-root).
	AllowOther bool
	// ReadOnly refuses every change with EROFS.
	ReadOnly bool

	// Foreground keeps the command attached instead of forking a daemon.
	Foreground bool
	// LogLevel is one of debug, info, warn, error. Default info.
	LogLevel string
	// LogFile receives the log, in the foreground and as a daemon. Empty:
	// stderr in the foreground; as a daemon, journald when
	// /run/systemd/journal/socket exists, else syslog.
	LogFile string
	// LogFormat is "text" (slog's key=value lines) or "json". Default text.
	LogFormat string
	// Debug logs at debug level and traces every FUSE operation (op, node
	// path, errno, duration).
	Debug bool
	// MetricsAddr is HOST:PORT where Prometheus metrics are served at
	// /metrics; ":PORT" means 127.0.0.1:PORT (see MetricsAddr). Empty: none.
	MetricsAddr string
	// SourceNote says how a SOURCE that could have been a connection name
	// was read, for the error of a mount that fails (not an option).
	SourceNote string
	// KernelOptions are generic mount options passed to the kernel through
	// fusermount3 (each one of KernelOptions: nosuid, noatime, ...).
	KernelOptions []string
}

// Default returns the options every mount starts from.
func Default() Options {
	return Options{
		DownloadThreads:   8,
		PartSize:          8 << 20,
		UploadConcurrency: 4,
		CacheSize:         512 << 20,
		BlockSize:         1 << 20,
		MetadataTTL:       5 * time.Second,
		CacheDir:          defaultCacheDir(),
		StagingLimit:      10 << 30,
		CopyCacheSize:     0,
		MaxRenameObjects:  10000,
		UID:               uint32(os.Getuid()),
		GID:               uint32(os.Getgid()),
		FileMode:          0o644,
		DirMode:           0o755,
		LogLevel:          "info",
		LogFormat:         "text",
		RoleSessionName:   "s3mount",
	}
}

// The values of Options.Auth (and of auth in a connection file).
const (
	AuthAccessKey = "access-key"
	AuthIAMRole   = "iam-role"
	AuthDefault   = "default"
)

// EffectiveAuth is Auth, or what the other fields imply when it is empty.
func (o *Options) EffectiveAuth() string {
	switch {
	case o.Auth != "":
		return o.Auth
	case o.RoleARN != "":
		return AuthIAMRole
	case o.AccessKeyID != "":
		return AuthAccessKey
	}
	return AuthDefault
}

// IsBucketSource reports whether a mount SOURCE is written as a bucket
// source ("s3://...", "BUCKET:PATH") rather than a plain word, which may be
// a connection name or a bucket name.
func IsBucketSource(src string) bool {
	return strings.HasPrefix(src, "s3://") || strings.Contains(src, ":")
}

// ParseSource splits a mount SOURCE into bucket and prefix. Accepted forms:
// "BUCKET", "BUCKET:/PATH", "BUCKET:PATH", "s3://BUCKET/PATH", and "s3://"
// alone for every bucket (bucket ""). The prefix comes back without a
// leading "/" and with one trailing "/" ("" for none).
func ParseSource(src string) (bucket, prefix string, err error) {
	var path string
	switch {
	case src == "s3://":
		return "", "", nil
	case strings.HasPrefix(src, "s3://"):
		rest := strings.TrimPrefix(src, "s3://")
		bucket, path, _ = strings.Cut(rest, "/")
	case strings.Contains(src, ":"):
		bucket, path, _ = strings.Cut(src, ":")
	default:
		bucket = src
	}
	if err := ValidateBucketName(bucket); err != nil {
		return "", "", fmt.Errorf("source %q: %w", src, err)
	}
	if prefix, err = NormalizePath(path); err != nil {
		return "", "", fmt.Errorf("source %q: %w", src, err)
	}
	return bucket, prefix, nil
}

// NormalizePath turns a path inside a bucket ("/home/alice", "home/alice/")
// into a key prefix ("home/alice/"), "" for none. An empty, "." or ".."
// segment is an error.
func NormalizePath(path string) (string, error) {
	path = strings.Trim(path, "/")
	if path == "" {
		return "", nil
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("path %q has an empty, \".\" or \"..\" segment", path)
		}
	}
	return path + "/", nil
}

// ValidateBucketName checks the S3 bucket naming rules that matter for
// addressing (3 to 63 characters of lowercase letters, digits, dots,
// hyphens, and for legacy us-east-1 buckets underscores and capitals are
// tolerated). Source: Amazon S3 User Guide, "Bucket naming rules".
func ValidateBucketName(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q must be 3 to 63 characters", b)
	}
	for _, r := range b {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_'
		if !ok {
			return fmt.Errorf("bucket name %q has the character %q", b, r)
		}
	}
	return nil
}

// ParseSize reads a byte count: a plain integer, or one followed by K, M, G
// or T (powers of 1024; "KiB", "MB" and "k" spellings are read the same).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	upper := strings.ToUpper(t)
	for _, suf := range []struct {
		s string
		m int64
	}{{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10},
		{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10},
		{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(upper, suf.s) {
			mult = suf.m
			t = strings.TrimSpace(t[:len(t)-len(suf.s)])
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (bytes, with an optional K, M, G or T suffix)", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// ParseMode reads a permission mode written in octal, such as "0644" or "755".
func ParseMode(s string) (os.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, fmt.Errorf("%q is not an octal mode such as 0644", s)
	}
	return os.FileMode(n), nil
}

// Validate checks the options and returns an error naming the first bad one.
func (o *Options) Validate() error {
	var errs []error
	bad := func(opt, format string, a ...any) {
		errs = append(errs, fmt.Errorf("option --%s: %s", opt, fmt.Sprintf(format, a...)))
	}
	if o.Bucket != "" {
		if err := ValidateBucketName(o.Bucket); err != nil {
			errs = append(errs, err)
		}
	} else if o.Prefix != "" {
		errs = append(errs, fmt.Errorf("a path (%q) needs a bucket", o.Prefix))
	}
	for _, u := range []struct{ opt, val string }{{"endpoint-url", o.EndpointURL}, {"sts-endpoint-url", o.STSEndpointURL}} {
		if u.val == "" {
			continue
		}
		p, err := url.Parse(u.val)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad(u.opt, "%q is not an http:// or https:// URL", u.val)
		}
	}
	switch auth := o.EffectiveAuth(); auth {
	case AuthAccessKey:
		if o.AccessKeyID == "" {
			bad("access-key-id", "auth %q needs an access key ID", auth)
		}
		if o.RoleARN != "" {
			bad("role-arn", "is for auth %q, not %q", AuthIAMRole, auth)
		}
	case AuthIAMRole:
		if o.RoleARN == "" {
			bad("role-arn", "auth %q needs a role ARN", auth)
		} else if !strings.HasPrefix(o.RoleARN, "arn:") {
			bad("role-arn", "%q is not an ARN (arn:aws:iam::ACCOUNT:role/NAME)", o.RoleARN)
		}
	case AuthDefault:
		if o.AccessKeyID != "" || o.RoleARN != "" {
			bad("access-key-id", "auth %q takes credentials from the AWS chain: drop access_key_id and role_arn, or choose another auth", auth)
		}
	default:
		bad("auth", "%q is not one of %s, %s, %s", auth, AuthAccessKey, AuthIAMRole, AuthDefault)
	}
	if o.ExternalID != "" && o.RoleARN == "" {
		bad("external-id", "needs a role ARN (--role-arn)")
	}
	if o.SessionDuration != 0 && (o.SessionDuration < 15*time.Minute || o.SessionDuration > 12*time.Hour) {
		bad("session-duration", "%s is outside STS's 15m..12h", o.SessionDuration)
	}
	if o.SecretAccessKey != "" && o.SecretAccessKeyFile != "" {
		bad("secret-access-key-file", "the connection also has secret_access_key: keep one")
	}
	if o.DownloadThreads < 1 || o.DownloadThreads > 256 {
		bad("download-threads", "%d is outside 1..256", o.DownloadThreads)
	}
	if o.PartSize < MinPartSize || o.PartSize > MaxPartSize {
		bad("part-size", "%d bytes is outside S3's part limits (5 MiB .. 5 GiB)", o.PartSize)
	}
	if o.UploadConcurrency < 1 || o.UploadConcurrency > 64 {
		bad("upload-concurrency", "%d is outside 1..64", o.UploadConcurrency)
	}
	if o.BlockSize < 64<<10 || o.BlockSize > 64<<20 || o.BlockSize&(o.BlockSize-1) != 0 {
		bad("block-size", "%d must be a power of two between 64 KiB and 64 MiB", o.BlockSize)
	}
	if o.CacheSize < 4*o.BlockSize {
		bad("cache-size", "%d bytes is smaller than 4 blocks (%d bytes)", o.CacheSize, 4*o.BlockSize)
	}
	if o.CacheDir == "" {
		bad("cache-dir", "is empty")
	}
	if o.CopyCacheSize < 0 {
		bad("copy-cache-size", "%d bytes is negative", o.CopyCacheSize)
	} else if o.CopyCacheSize > 0 && o.CopyCacheSize < 2*o.BlockSize {
		bad("copy-cache-size", "%d bytes holds no copy: files over half of it are not copied, and files under --block-size (%d) neither; use at least twice --block-size", o.CopyCacheSize, o.BlockSize)
	}
	if o.StagingLimit < 0 {
		bad("staging-limit", "%d bytes is negative", o.StagingLimit)
	}
	if o.MetadataTTL < 0 {
		bad("metadata-ttl", "%s is negative", o.MetadataTTL)
	}
	if o.MaxRenameObjects < 0 {
		bad("max-rename-objects", "%d is negative", o.MaxRenameObjects)
	}
	if o.FileMode&^0o7777 != 0 {
		bad("file-mode", "%o has bits outside 07777", o.FileMode)
	}
	if o.DirMode&^0o7777 != 0 {
		bad("dir-mode", "%o has bits outside 07777", o.DirMode)
	}
	switch o.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "%q is not one of debug, info, warn, error", o.LogLevel)
	}
	switch o.LogFormat {
	case "text", "json":
	default:
		bad("log-format", "%q is not text or json", o.LogFormat)
	}
	if o.MetricsAddr != "" {
		if _, err := MetricsAddr(o.MetricsAddr); err != nil {
			bad("metrics-addr", "%v", err)
		}
	}
	if o.SecretAccessKeyFile != "" && o.AccessKeyID == "" {
		bad("secret-access-key-file", "needs --access-key-id")
	}
	for _, k := range o.KernelOptions {
		if !KernelOptions[k] {
			bad("mount-option", "%q is not a generic mount option s3mount passes on (nosuid, nodev, noexec, noatime, ...)", k)
		}
	}
	return errors.Join(errs...)
}

// MetricsAddr checks a metrics address, HOST:PORT with a numeric port
// 1..65535, and returns it with the host 127.0.0.1 when it is omitted
// (":9100"): the metrics are bound to the loopback unless another host is
// written out (0.0.0.0, an interface address, a name).
func MetricsAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%q is not HOST:PORT (such as 127.0.0.1:9100)", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q: the port must be a number 1..65535", s)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// ReadSecretFile returns the first line of a secret file. The file must
// pass CheckSecretFile: a regular file of mode 0600 or stricter, owned by
// the user or root, so that the secret is never readable by others.
func ReadSecretFile(path string) (string, error) {
	if err := CheckSecretFile(path, "secret file"); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return line, nil
}

// CheckSecretFile refuses a file that holds a secret unless it is a
// regular file, not readable or writable by group or others (mode 0600 or
// stricter), and owned by the user running s3mount or by root. what names
// the file in the error ("secret file", "config file").
func CheckSecretFile(path, what string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s %s is not a regular file", what, path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s %s has mode %04o: it holds a secret, so it must be 0600 or stricter (chmod 600 %s)",
			what, path, st.Mode().Perm(), path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if err := checkOwner(sys.Uid, uint32(os.Getuid())); err != nil {
			return fmt.Errorf("%s %s %w", what, path, err)
		}
	}
	return nil
}

// checkOwner accepts a secret-holding file owned by self or by root.
func checkOwner(owner, self uint32) error {
	if owner == 0 || owner == self {
		return nil
	}
	return fmt.Errorf("is owned by uid %d: it holds a secret, so it must be owned by you (uid %d) or root", owner, self)
}

// defaultCacheDir is Options.CacheDir's default.
func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "s3mount")
	}
	return fmt.Sprintf("/var/tmp/s3mount-%d", os.Getuid())
}

// PrepareCacheDir creates the cache directory (mode 0700) and checks that
// it is writable; the error names --cache-dir.
func (o *Options) PrepareCacheDir() error {
	if err := os.MkdirAll(o.CacheDir, 0o700); err != nil {
		return fmt.Errorf("option --cache-dir: %w", err)
	}
	f, err := os.CreateTemp(o.CacheDir, ".probe-*")
	if err != nil {
		return fmt.Errorf("option --cache-dir: %s is not writable: %w", o.CacheDir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}
