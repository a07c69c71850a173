package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/s3mount/s3mount/mountopts"
)

// parseHelper runs a mount helper call (`s3mount SOURCE DIR -o OPTS`)
// through helperArgs and the mount command's flag parsing, and returns the
// options the mount would use (nothing is mounted).
func parseHelper(t *testing.T, opts string) (mountopts.Options, error) {
	t.Helper()
	app := newApp()
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	var got mountopts.Options
	app.Command("mount").Action = func(c *cli.Context) error {
		var err error
		got, err = optionsFrom(c)
		return err
	}
	args, err := helperArgs([]string{"s3mount", "data:/p", "/mnt/x", "-o", opts}, app)
	if err != nil {
		return got, err
	}
	return got, app.Run(args)
}

// Every flag of `s3mount mount` has an -o form (its name with underscores)
// that reaches the mount's options. The cases are checked against the
// command's flags, so a new flag without a case here fails the test.
func TestEveryMountOptionHasAnOForm(t *testing.T) {
	type check func(o mountopts.Options) bool
	cases := map[string]struct {
		opt  string
		want check
	}{
		"config":                 {"config=/etc/s3mount/other.toml", func(o mountopts.Options) bool { return true }},
		"endpoint-url":           {"endpoint_url=http://127.0.0.1:7070", func(o mountopts.Options) bool { return o.EndpointURL == "http://127.0.0.1:7070" }},
		"region":                 {"region=eu-west-3", func(o mountopts.Options) bool { return o.Region == "eu-west-3" }},
		"force-path-style":       {"force_path_style", func(o mountopts.Options) bool { return o.ForcePathStyle }},
		"access-key-id":          {"access_key_id=AKIDX", func(o mountopts.Options) bool { return o.AccessKeyID == "AKIDX" }},
		"secret-access-key-file": {"access_key_id=AKIDX,secret_access_key_file=/etc/s3mount/x.secret", func(o mountopts.Options) bool { return o.SecretAccessKeyFile == "/etc/s3mount/x.secret" }},
		"role-arn":               {"role_arn=arn:aws:iam::1:role/r", func(o mountopts.Options) bool { return o.RoleARN == "arn:aws:iam::1:role/r" }},
		"external-id":            {"role_arn=arn:aws:iam::1:role/r,external_id=ext1", func(o mountopts.Options) bool { return o.ExternalID == "ext1" }},
		"role-session-name":      {"role_session_name=me", func(o mountopts.Options) bool { return o.RoleSessionName == "me" }},
		"session-duration":       {"role_arn=arn:aws:iam::1:role/r,session_duration=2h", func(o mountopts.Options) bool { return o.SessionDuration == 2*time.Hour }},
		"sts-endpoint-url":       {"sts_endpoint_url=https://sts.example.com", func(o mountopts.Options) bool { return o.STSEndpointURL == "https://sts.example.com" }},
		"download-threads":       {"download_threads=16", func(o mountopts.Options) bool { return o.DownloadThreads == 16 }},
		"part-size":              {"part_size=16M", func(o mountopts.Options) bool { return o.PartSize == 16<<20 }},
		"upload-concurrency":     {"upload_concurrency=2", func(o mountopts.Options) bool { return o.UploadConcurrency == 2 }},
		"cache-size":             {"cache_size=1G", func(o mountopts.Options) bool { return o.CacheSize == 1<<30 }},
		"block-size":             {"block_size=2M", func(o mountopts.Options) bool { return o.BlockSize == 2<<20 }},
		"metadata-ttl":           {"metadata_ttl=30s", func(o mountopts.Options) bool { return o.MetadataTTL == 30*time.Second }},
		"uid":                    {"uid=1000", func(o mountopts.Options) bool { return o.UID == 1000 }},
		"gid":                    {"gid=1001", func(o mountopts.Options) bool { return o.GID == 1001 }},
		"file-mode":              {"file_mode=0600", func(o mountopts.Options) bool { return o.FileMode == 0o600 }},
		"dir-mode":               {"dir_mode=0700", func(o mountopts.Options) bool { return o.DirMode == 0o700 }},
		"allow-other":            {"allow_other", func(o mountopts.Options) bool { return o.AllowOther }},
		"read-only":              {"read_only", func(o mountopts.Options) bool { return o.ReadOnly }},
		"foreground":             {"foreground", func(o mountopts.Options) bool { return o.Foreground }},
		"log-level":              {"log_level=warn", func(o mountopts.Options) bool { return o.LogLevel == "warn" }},
		"log-format":             {"log_format=json", func(o mountopts.Options) bool { return o.LogFormat == "json" }},
		"log-file":               {"log_file=/var/log/s3mount.log", func(o mountopts.Options) bool { return o.LogFile == "/var/log/s3mount.log" }},
		"debug":                  {"debug", func(o mountopts.Options) bool { return o.Debug }},
		"metrics-addr":           {"metrics_addr=127.0.0.1:9100", func(o mountopts.Options) bool { return o.MetricsAddr == "127.0.0.1:9100" }},
		"cache-dir":              {"cache_dir=/var/cache/s3mount", func(o mountopts.Options) bool { return o.CacheDir == "/var/cache/s3mount" }},
		"staging-limit":          {"staging_limit=2G", func(o mountopts.Options) bool { return o.StagingLimit == 2<<30 }},
		"copy-cache-size":        {"copy_cache_size=3G,ro", func(o mountopts.Options) bool { return o.CopyCacheSize == 3<<30 && o.ReadOnly }},
		"max-rename-objects":     {"max_rename_objects=250", func(o mountopts.Options) bool { return o.MaxRenameObjects == 250 }},
		// Generic options are its -o form: nosuid, noatime, ... (mount_option=
		// itself is refused, see the bad cases).
		"mount-option": {"nosuid,nodev,noatime", func(o mountopts.Options) bool {
			return strings.Join(o.KernelOptions, ",") == "nosuid,nodev,noatime"
		}},
	}
	for _, f := range mountCommand().Flags {
		name := f.Names()[0]
		tc, ok := cases[name]
		if !ok {
			t.Errorf("flag --%s has no -o case in this test: add one (and check that its -o form works)", name)
			continue
		}
		delete(cases, name)
		o, err := parseHelper(t, tc.opt)
		if err != nil {
			t.Errorf("-o %s (--%s): %v", tc.opt, name, err)
			continue
		}
		if !tc.want(o) {
			t.Errorf("-o %s did not set --%s: %+v", tc.opt, name, o)
		}
	}
	for name := range cases {
		t.Errorf("case %q names no flag of the mount command", name)
	}
}

// The generic mount options mount(8), systemd and mount.fuse3 pass are
// accepted, mapped or dropped; none is refused.
func TestGenericMountOptions(t *testing.T) {
	for opt, want := range map[string]func(mountopts.Options) bool{
		"ro":                  func(o mountopts.Options) bool { return o.ReadOnly },
		"rw":                  func(o mountopts.Options) bool { return !o.ReadOnly },
		"allow_other":         func(o mountopts.Options) bool { return o.AllowOther },
		"uid=7,gid=8":         func(o mountopts.Options) bool { return o.UID == 7 && o.GID == 8 },
		"default_permissions": func(o mountopts.Options) bool { return true },
		"nosuid,nodev,noexec,noatime,relatime,sync,dirsync": func(o mountopts.Options) bool { return len(o.KernelOptions) == 7 },
		"_netdev,nofail,auto,noauto,user,users,nouser,defaults": func(o mountopts.Options) bool {
			return len(o.KernelOptions) == 0
		},
		"x-systemd.automount,x-systemd.requires=network-online.target,x-systemd.idle-timeout=60,comment=x": func(o mountopts.Options) bool { return true },
		"debug_fuse":                            func(o mountopts.Options) bool { return o.Debug },
		"force_path_style=false,read_only=true": func(o mountopts.Options) bool { return !o.ForcePathStyle && o.ReadOnly },
	} {
		o, err := parseHelper(t, opt)
		if err != nil {
			t.Errorf("-o %s: %v", opt, err)
			continue
		}
		if !want(o) {
			t.Errorf("-o %s gave %+v", opt, o)
		}
	}
}

// A bad -o option fails with an error naming it.
func TestBadMountOptionsNameTheOption(t *testing.T) {
	for opt, name := range map[string]string{
		"colour=blue":                        `"colour"`,
		"ro,bogus":                           `"bogus"`,
		"mount_option=nosuid":                `"mount_option"`,
		"endpoint_url":                       `"endpoint_url" needs a value`,
		"force_path_style=maybe":             `"force_path_style"`,
		"download_threads=many":              "--download-threads",
		"download_threads=0":                 "--download-threads",
		"part_size=1M":                       "--part-size",
		"cache_size=lots":                    "--cache-size",
		"block_size=3M":                      "--block-size",
		"metadata_ttl=forever":               "--metadata-ttl",
		"uid=-1":                             "--uid",
		"file_mode=999":                      "--file-mode",
		"dir_mode=rwx":                       "--dir-mode",
		"log_level=loud":                     "--log-level",
		"log_format=xml":                     "--log-format",
		"metrics_addr=9100":                  "--metrics-addr",
		"metrics_addr=127.0.0.1:http":        "--metrics-addr",
		"endpoint_url=127.0.0.1:7070":        "--endpoint-url",
		"external_id=x":                      "--external-id",
		"secret_access_key_file=/x":          "--secret-access-key-file",
		"role_arn=reader":                    "--role-arn",
		"role_arn=arn:x,session_duration=1m": "--session-duration",
		"upload_concurrency=1000":            "--upload-concurrency",
		"max_rename_objects=-3":              "--max-rename-objects",
		"staging_limit=lots":                 "--staging-limit",
	} {
		_, err := parseHelper(t, opt)
		if err == nil {
			t.Errorf("-o %s was accepted", opt)
			continue
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("-o %s: error %q does not name %s", opt, err, name)
		}
	}
}
