package mountopts

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const sampleConfig = `
[connections.team]
auth = "iam-role"
access_key_id = "AKIDTEAM"
secret_access_key_file = "/etc/s3mount/team.secret"
role_arn = "arn:aws:iam::123456789012:role/reader"
external_id = "ext-123"
role_session_name = "alice"
session_duration = "1h"
bucket = "data"
path = "/home/alice"
region = "eu-west-1"
endpoint_url = "https://s3.example.com"
sts_endpoint_url = "https://sts.example.com"
force_path_style = true
download_threads = 16

[connections.everything]
auth = "default"
`

func writeFile(t *testing.T, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "connections.toml")
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConnectionsFillsOptions(t *testing.T) {
	p := writeFile(t, sampleConfig, 0o644) // no inline secret: any mode will do
	conns, err := LoadConnections(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 2 {
		t.Fatalf("got %d connections, want 2", len(conns))
	}
	o := Default()
	if err := conns["team"].Apply("team", &o); err != nil {
		t.Fatal(err)
	}
	want := Options{Connection: "team", Auth: AuthIAMRole, AccessKeyID: "AKIDTEAM",
		SecretAccessKeyFile: "/etc/s3mount/team.secret", RoleARN: "arn:aws:iam::123456789012:role/reader",
		ExternalID: "ext-123", RoleSessionName: "alice", SessionDuration: time.Hour,
		STSEndpointURL: "https://sts.example.com", Bucket: "data", Prefix: "home/alice/", Region: "eu-west-1",
		EndpointURL: "https://s3.example.com", ForcePathStyle: true, DownloadThreads: 16}
	got := o
	// Only the fields a connection sets are compared.
	got.PartSize, got.UploadConcurrency, got.CacheSize, got.BlockSize, got.MetadataTTL = 0, 0, 0, 0, 0
	got.UID, got.GID, got.FileMode, got.DirMode, got.LogLevel, got.LogFormat = 0, 0, 0, 0, "", ""
	got.CacheDir, got.StagingLimit = "", 0
	got.MaxRenameObjects = 0
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("applied options\n got %+v\nwant %+v", got, want)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}

	all := Default()
	if err := conns["everything"].Apply("everything", &all); err != nil {
		t.Fatal(err)
	}
	if all.Bucket != "" || all.EffectiveAuth() != AuthDefault || all.RoleSessionName != "s3mount" {
		t.Errorf("everything: bucket %q auth %q session name %q", all.Bucket, all.EffectiveAuth(), all.RoleSessionName)
	}
	if err := all.Validate(); err != nil {
		t.Errorf("a connection without a bucket (all buckets) does not validate: %v", err)
	}
}

func TestLoadConnectionsRefusesUnknownKeys(t *testing.T) {
	p := writeFile(t, "[connections.x]\nbukcet = \"data\"\n", 0o600)
	if _, err := LoadConnections(p); err == nil || !strings.Contains(err.Error(), "bukcet") {
		t.Errorf("LoadConnections with a misspelt key = %v, want an error naming it", err)
	}
	p = writeFile(t, "[connections.x]\nsession_duration = \"soon\"\n", 0o600)
	if _, err := LoadConnections(p); err == nil || !strings.Contains(err.Error(), "duration") {
		t.Errorf("LoadConnections with a bad duration = %v", err)
	}
	p = writeFile(t, "[connections.\"a b\"]\nbucket = \"data\"\n", 0o600)
	if _, err := LoadConnections(p); err == nil || !strings.Contains(err.Error(), "connection name") {
		t.Errorf("LoadConnections with a bad name = %v", err)
	}
}

// A config file holding a secret must be 0600 or stricter and owned by the
// user or root; the error says which file and why, never the secret.
func TestLoadConnectionsSecretFileMode(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRET"
	body := "[connections.k]\naccess_key_id = \"AKID\"\nsecret_access_key = \"" + secret + "\"\nbucket = \"data\"\n"
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		p := writeFile(t, body, mode)
		_, err := LoadConnections(p)
		if err == nil || !strings.Contains(err.Error(), "0600") || !strings.Contains(err.Error(), p) {
			t.Errorf("mode %04o: LoadConnections = %v, want a refusal naming the file and 0600", mode, err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
	p := writeFile(t, body, 0o600)
	conns, err := LoadConnections(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(conns["k"].SecretAccessKey) != secret {
		t.Errorf("secret not read")
	}
	if os.Getuid() == 0 {
		if err := os.Chown(p, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConnections(p); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
			t.Errorf("a file owned by another user: %v, want a refusal", err)
		}
	}
}

func TestCheckOwner(t *testing.T) {
	if err := checkOwner(0, 1000); err != nil {
		t.Errorf("root-owned: %v", err)
	}
	if err := checkOwner(1000, 1000); err != nil {
		t.Errorf("own file: %v", err)
	}
	if err := checkOwner(1001, 1000); err == nil {
		t.Errorf("another user's file accepted")
	}
}

func TestReadSecretFileOwner(t *testing.T) {
	p := writeFile(t, "s3cr3t\n", 0o600)
	if os.Getuid() != 0 {
		// Only root can give a file away; checkOwner covers the rule.
		if _, err := ReadSecretFile(p); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.Chown(p, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecretFile(p); err == nil || !strings.Contains(err.Error(), "owned by") {
		t.Errorf("ReadSecretFile of a file owned by uid 4242 = %v, want a refusal", err)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	o := Default()
	o.SecretAccessKey = "topsecretvalue"
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("opts", "secret", o.SecretAccessKey, "o", o)
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", o, o, o, o.SecretAccessKey), b.String()} {
		if strings.Contains(s, "topsecretvalue") {
			t.Errorf("secret printed: %s", s)
		}
	}
}

func TestValidateAuth(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Options)
		err    string
	}{
		{func(o *Options) { o.Auth = AuthIAMRole }, "--role-arn"},
		{func(o *Options) { o.Auth = AuthAccessKey }, "--access-key-id"},
		{func(o *Options) { o.Auth = "magic" }, "--auth"},
		{func(o *Options) { o.ExternalID = "x" }, "--external-id"},
		{func(o *Options) { o.RoleARN = "reader" }, "not an ARN"},
		{func(o *Options) { o.RoleARN = "arn:aws:iam::1:role/r"; o.SessionDuration = time.Minute }, "--session-duration"},
		{func(o *Options) { o.Bucket = ""; o.Prefix = "a/" }, "needs a bucket"},
		{func(o *Options) { o.STSEndpointURL = "sts.local" }, "--sts-endpoint-url"},
	} {
		o := Default()
		o.Bucket = "data"
		tc.mutate(&o)
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Validate() = %v, want an error containing %q", err, tc.err)
		}
	}
	o := Default()
	o.RoleARN, o.ExternalID = "arn:aws:iam::1:role/r", "x"
	if err := o.Validate(); err != nil || o.EffectiveAuth() != AuthIAMRole {
		t.Errorf("role without a bucket: %v, auth %s", err, o.EffectiveAuth())
	}
}

func TestConfigPath(t *testing.T) {
	t.Setenv(ConfigEnv, "")
	if p, explicit := ConfigPath(""); p != DefaultConfigPath || explicit {
		t.Errorf("ConfigPath() = %q, %v", p, explicit)
	}
	t.Setenv(ConfigEnv, "/x/env.toml")
	if p, explicit := ConfigPath(""); p != "/x/env.toml" || !explicit {
		t.Errorf("ConfigPath() with the env = %q, %v", p, explicit)
	}
	if p, _ := ConfigPath("/x/flag.toml"); p != "/x/flag.toml" {
		t.Errorf("the flag does not win: %q", p)
	}
	missing := filepath.Join(t.TempDir(), "none.toml")
	if c, err := LoadConnectionsAt(missing, false); err != nil || len(c) != 0 {
		t.Errorf("a missing default file: %v, %v", c, err)
	}
	if _, err := LoadConnectionsAt(missing, true); err == nil {
		t.Errorf("a missing --config file is accepted")
	}
}

func TestNewExternalID(t *testing.T) {
	a, err := NewExternalID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewExternalID()
	if a == b || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(a) {
		t.Errorf("external IDs %q, %q", a, b)
	}
}

func TestParseSourceAllBuckets(t *testing.T) {
	b, p, err := ParseSource("s3://")
	if err != nil || b != "" || p != "" {
		t.Errorf("ParseSource(s3://) = %q, %q, %v", b, p, err)
	}
	if !IsBucketSource("s3://") || !IsBucketSource("data:/x") || IsBucketSource("team") {
		t.Errorf("IsBucketSource misjudges")
	}
}
