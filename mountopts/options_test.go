package mountopts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSource(t *testing.T) {
	for _, tc := range []struct {
		in, bucket, prefix, err string
	}{
		{in: "data", bucket: "data"},
		{in: "data:/home/alice", bucket: "data", prefix: "home/alice/"},
		{in: "data:home/alice/", bucket: "data", prefix: "home/alice/"},
		{in: "s3://data/home/alice", bucket: "data", prefix: "home/alice/"},
		{in: "s3://data", bucket: "data"},
		{in: "s3://data/", bucket: "data"},
		{in: "ab", err: "3 to 63"},
		{in: "data:/a//b", err: "empty"},
		{in: "data:/a/../b", err: "\"..\""},
		{in: "bad bucket", err: "character"},
	} {
		b, p, err := ParseSource(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSource(%q) error = %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || b != tc.bucket || p != tc.prefix {
			t.Errorf("ParseSource(%q) = %q, %q, %v; want %q, %q", tc.in, b, p, err, tc.bucket, tc.prefix)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "512": 512, "1K": 1024, "8M": 8 << 20, "8MiB": 8 << 20, "8mb": 8 << 20, "2G": 2 << 30, "1T": 1 << 40, " 5 M ": 5 << 20,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1", "1.5G", "12Q", "99999999999T"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded, want an error", in)
		}
	}
}

func TestValidateNamesTheOption(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Options)
		opt    string
	}{
		{func(o *Options) { o.PartSize = 1 << 20 }, "--part-size"},
		{func(o *Options) { o.DownloadThreads = 0 }, "--download-threads"},
		{func(o *Options) { o.CacheSize = 1 }, "--cache-size"},
		{func(o *Options) { o.BlockSize = 3 << 20 }, "--block-size"},
		{func(o *Options) { o.EndpointURL = "127.0.0.1:9000" }, "--endpoint-url"},
		{func(o *Options) { o.LogLevel = "loud" }, "--log-level"},
		{func(o *Options) { o.FileMode = 0o10000 }, "--file-mode"},
		{func(o *Options) { o.MaxRenameObjects = -1 }, "--max-rename-objects"},
		{func(o *Options) { o.SecretAccessKeyFile = "/x" }, "--secret-access-key-file"},
		{func(o *Options) { o.LogFormat = "xml" }, "--log-format"},
		{func(o *Options) { o.MetricsAddr = "9100" }, "--metrics-addr"},
		{func(o *Options) { o.MetricsAddr = "127.0.0.1:http" }, "--metrics-addr"},
		{func(o *Options) { o.CopyCacheSize = -1; o.ReadOnly = true }, "--copy-cache-size"},
		{func(o *Options) { o.CopyCacheSize = 1 << 20; o.ReadOnly = true }, "--copy-cache-size"}, // < 2 blocks
	} {
		o := Default()
		o.Bucket = "data"
		tc.mutate(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.opt) {
			t.Errorf("Validate() = %v, want an error naming %s", err, tc.opt)
		}
	}
	o := Default()
	o.Bucket = "data"
	if err := o.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	o.ReadOnly, o.CopyCacheSize = true, 1<<30
	if err := o.Validate(); err != nil {
		t.Errorf("--read-only --copy-cache-size 1G does not validate: %v", err)
	}
	o.ReadOnly = false
	if err := o.Validate(); err != nil {
		t.Errorf("--copy-cache-size 1G on a read-write mount does not validate: %v", err)
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secret")
	if err := os.WriteFile(p, []byte("s3cr3t\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecretFile(p); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("world-readable secret file accepted: %v", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSecretFile(p)
	if err != nil || got != "s3cr3t" {
		t.Fatalf("ReadSecretFile = %q, %v", got, err)
	}
}

func TestMetricsAddr(t *testing.T) {
	for in, want := range map[string]string{
		":9100": "127.0.0.1:9100", "127.0.0.1:9100": "127.0.0.1:9100", "0.0.0.0:9100": "0.0.0.0:9100",
		"[::1]:9100": "[::1]:9100", "localhost:1": "localhost:1",
	} {
		got, err := MetricsAddr(in)
		if err != nil || got != want {
			t.Errorf("MetricsAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "9100", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000", "::1:9100"} {
		if got, err := MetricsAddr(in); err == nil {
			t.Errorf("MetricsAddr(%q) = %q, want an error", in, got)
		}
	}
}
