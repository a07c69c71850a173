//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3mount/s3mount/test/harness"
)

// connEnv is a versitygw with standalone IAM (users with their own keys
// and policies), one bucket made by root, and a directory for connection
// files, for the tests of named connections.
type connEnv struct {
	t      *testing.T
	ctx    context.Context
	g      *harness.IAMGateway
	root   *harness.Client
	bucket string
	dir    string
}

func newConnEnv(t *testing.T) *connEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	g := harness.StartIAMGateway(t)
	root, err := harness.NewClient(ctx, g.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	c := &connEnv{t: t, ctx: ctx, g: g, root: root, bucket: harness.BucketName(t.Name()), dir: t.TempDir()}
	if err := root.CreateBucket(ctx, c.bucket); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *connEnv) put(key, body string) {
	c.t.Helper()
	if err := c.root.PutObject(c.ctx, c.bucket, key, []byte(body)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *connEnv) user(name, policy string) (ak, sk string) {
	c.t.Helper()
	ak, sk, err := c.g.IAM.CreateUser(c.ctx, name, policy)
	if err != nil {
		c.t.Fatal(err)
	}
	return ak, sk
}

// file writes a file of the given mode in the test's directory.
func (c *connEnv) file(name, body string, mode os.FileMode) string {
	c.t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// mount runs `s3mount mount --config CFG --log-file LOG [extra] NAME DIR`
// with an environment free of AWS credentials (plus env).
func (c *connEnv) mount(cfg, name string, env []string, extra ...string) harness.MountResult {
	c.t.Helper()
	mnt := c.t.TempDir()
	logFile := filepath.Join(c.t.TempDir(), "s3mount.log")
	args := append([]string{"mount", "--config", cfg, "--log-file", logFile, "--log-level", "debug"}, extra...)
	args = append(args, name, mnt)
	return harness.RunMount(c.t, bin, harness.CleanEnv(env...), args, mnt, logFile)
}

func (c *connEnv) mustMount(cfg, name string, env []string, extra ...string) harness.MountResult {
	c.t.Helper()
	res := c.mount(cfg, name, env, extra...)
	if res.ExitCode != 0 || !res.Mounted {
		c.t.Fatalf("mount %s failed: %s\nlog:\n%s", name, res, harness.LogTail(res.LogFile))
	}
	return res
}

// run runs s3mount with args and returns stdout, stderr and the exit code.
func (c *connEnv) run(env []string, args ...string) (string, string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = harness.CleanEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("s3mount %s: %v", strings.Join(args, " "), err)
	}
	return stdout.String(), stderr.String(), code
}

// mountLine is the /proc/self/mounts line of mountpoint.
func mountLine(t *testing.T, mountpoint string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[1] == mountpoint {
			return l
		}
	}
	t.Fatalf("%s is not in /proc/self/mounts", mountpoint)
	return ""
}

// assertNoSecrets fails when a secret shows in ps, the mount table, the
// log file or the given outputs.
func assertNoSecrets(t *testing.T, secrets []string, logFile string, outputs ...string) {
	t.Helper()
	ps, err := exec.Command("ps", "-eo", "pid,args", "ww").CombinedOutput()
	if err != nil {
		t.Fatalf("ps: %v: %s", err, ps)
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(ps, []byte("s3mount")) || len(log) == 0 {
		t.Fatalf("nothing to look at: ps shows no s3mount (%d bytes), log %d bytes", len(ps), len(log))
	}
	places := map[string]string{"ps": string(ps), "mount table": string(mounts), "log": string(log)}
	for i, o := range outputs {
		places[fmt.Sprintf("output %d", i)] = o
	}
	for _, s := range secrets {
		if len(s) < 8 {
			t.Fatalf("secret %q too short to search for", s)
		}
		for where, text := range places {
			if strings.Contains(text, s) {
				t.Errorf("a secret appears in the %s", where)
			}
		}
	}
}

// TestConnectionBucketUser: a connection restricted to a bucket, for a
// user whose policy allows only that bucket, mounts by name; the region is
// detected (GetBucketLocation); command-line options override the file;
// the connection name is the filesystem name in the mount table and df;
// the secret shows nowhere.
func TestConnectionBucketUser(t *testing.T) {
	c := newConnEnv(t)
	c.put("hello.txt", "hello from the bucket")
	ak, sk := c.user("bucketuser", harness.BucketPolicy(c.bucket))
	secretFile := c.file("bucketuser.secret", sk+"\n", 0o600)
	// endpoint_url in the file is wrong on purpose: --endpoint-url wins.
	cfg := c.file("connections.toml", fmt.Sprintf(`
[connections.data]
auth = "access-key"
access_key_id = %q
secret_access_key_file = %q
bucket = %q
endpoint_url = "http://127.0.0.1:1"
force_path_style = true
download_threads = 4
`, ak, secretFile, c.bucket), 0o644)
	res := c.mustMount(cfg, "data", nil, "--endpoint-url", c.g.URL)
	mnt := res.Mountpoint

	if got := dirNames(t, mnt); !slices.Equal(got, []string{"hello.txt"}) {
		t.Errorf("root = %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "hello.txt")); err != nil || string(b) != "hello from the bucket" {
		t.Errorf("hello.txt = %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "written.txt"), []byte("by bucketuser"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := c.root.GetObject(c.ctx, c.bucket, "written.txt"); err != nil || string(b) != "by bucketuser" {
		t.Errorf("written.txt in S3 = %q, %v", b, err)
	}
	if l := mountLine(t, mnt); strings.Fields(l)[0] != "data" || strings.Fields(l)[2] != "fuse.s3mount" {
		t.Errorf("mount table line %q: want filesystem name data, type fuse.s3mount", l)
	}
	df := sh(t, 30*time.Second, "df", mnt)
	if !regexp.MustCompile(`(?m)^data\s`).MatchString(df) {
		t.Errorf("df shows no filesystem named data:\n%s", df)
	}
	log, _ := os.ReadFile(res.LogFile)
	if !regexp.MustCompile(`msg="bucket region".*region=us-east-1 from=GetBucketLocation`).Match(log) {
		t.Errorf("the log does not say the region was detected with GetBucketLocation:\n%s", harness.LogTail(res.LogFile))
	}
	assertNoSecrets(t, []string{sk}, res.LogFile, res.Stdout, res.Stderr)
}

// TestConnectionPrefixUser: a user whose policy allows s3:ListBucket only
// with an s3:prefix under home/alice/ and object actions only there mounts
// that path (never needing HeadBucket, an unprefixed list, ListBuckets or
// GetBucketLocation, all denied to it); a mount of a path outside it fails
// with one line; a user who may list home/ but read only home/alice/ gets
// EACCES reading outside it.
func TestConnectionPrefixUser(t *testing.T) {
	c := newConnEnv(t)
	c.put("home/alice/notes.txt", "alice's notes")
	c.put("home/alice/sub/deep.txt", "deep")
	c.put("home/bob/secret.txt", "bob's")
	c.put("top.txt", "top")
	ak, sk := c.user("alice", harness.PrefixPolicy(c.bucket, "home/alice/"))
	cfg := c.file("connections.toml", fmt.Sprintf(`
[connections.alice]
access_key_id = %q
secret_access_key = %q
bucket = %q
path = "home/alice"
endpoint_url = %q
force_path_style = true

[connections.alice-bob]
access_key_id = %[1]q
secret_access_key = %[2]q
bucket = %[3]q
path = "/home/bob/"
endpoint_url = %[4]q
force_path_style = true
`, ak, sk, c.bucket, c.g.URL), 0o600)

	res := c.mustMount(cfg, "alice", nil)
	mnt := res.Mountpoint
	if got := dirNames(t, mnt); !slices.Equal(got, []string{"notes.txt", "sub"}) {
		t.Errorf("root of alice = %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "sub/deep.txt")); err != nil || string(b) != "deep" {
		t.Errorf("sub/deep.txt = %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new.txt"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(mnt, "made"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "notes.txt")); err != nil {
		t.Fatal(err)
	}
	keys, err := c.root.ListAllKeys(c.ctx, c.bucket, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"home/alice/made/", "home/alice/new.txt", "home/alice/sub/deep.txt", "home/bob/secret.txt", "top.txt"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys after alice's changes = %q\nwant %q", keys, want)
	}
	log, _ := os.ReadFile(res.LogFile)
	if !regexp.MustCompile(`msg="bucket region".*from=(default|x-amz-bucket-region)`).Match(log) {
		t.Errorf("without GetBucketLocation the region should come from the fallback:\n%s", harness.LogTail(res.LogFile))
	}

	// Outside the policy's prefix: the mount refuses, in one line.
	bad := c.mount(cfg, "alice-bob", nil)
	if bad.ExitCode != 1 || bad.Mounted {
		t.Fatalf("mount of home/bob as alice: %s", bad)
	}
	if msg := strings.TrimSpace(bad.Stderr); strings.Count(msg, "\n") != 0 ||
		!strings.Contains(msg, "access denied listing s3://"+c.bucket+"/home/bob/") {
		t.Errorf("stderr %q: want one line saying access to home/bob/ is denied", msg)
	}

	// A user who may list home/ but read and write only under home/alice/.
	policy := strings.Replace(harness.PrefixPolicy(c.bucket, "home/alice/"), `"s3:prefix":["home/alice/*"]`, `"s3:prefix":["home/*"]`, 1)
	if policy == harness.PrefixPolicy(c.bucket, "home/alice/") {
		t.Fatal("policy not widened")
	}
	rak, rsk := c.user("lister", policy)
	cfg2 := c.file("lister.toml", fmt.Sprintf(`
[connections.home]
access_key_id = %q
secret_access_key = %q
bucket = %q
path = "home"
endpoint_url = %q
force_path_style = true
`, rak, rsk, c.bucket, c.g.URL), 0o600)
	home := c.mustMount(cfg2, "home", nil).Mountpoint
	if got := dirNames(t, home); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Errorf("root of home = %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(home, "alice/new.txt")); err != nil || string(b) != "new" {
		t.Errorf("alice/new.txt = %q, %v", b, err)
	}
	if _, err := os.ReadFile(filepath.Join(home, "bob/secret.txt")); !errors.Is(err, syscall.EACCES) {
		t.Errorf("reading bob/secret.txt: %v, want EACCES", err)
	}
}

// TestConnectionAssumeRole: auth = "iam-role" calls AssumeRole at the
// tests' own STS endpoint (which checks the SigV4 signature of the
// caller's keys, the role ARN and the external ID) and uses the role's
// credentials; they expire every few seconds and are renewed before they
// do, while reads and writes keep succeeding. A wrong external ID (given on
// the command line, which overrides the file) fails the mount with one
// line; the STS endpoint may come from AWS_ENDPOINT_URL_STS.
func TestConnectionAssumeRole(t *testing.T) {
	c := newConnEnv(t)
	c.put("data.txt", "read through the role")
	roleAK, roleSK := c.user("roleuser", harness.BucketPolicy(c.bucket))
	callerAK, callerSK := "AKCALLER"+strings.ToUpper(harness.RandomHex(6)), harness.RandomHex(20)
	extID := harness.RandomHex(16)
	const roleARN = "arn:aws:iam::123456789012:role/s3mount-test"
	// Expiration 5 minutes (the refresh window) and 3 s ahead: renewed
	// about every 3 s.
	sts := harness.StartSTS(t, harness.STSConfig{CallerAccessKey: callerAK, CallerSecretKey: callerSK,
		RoleARN: roleARN, ExternalID: extID, AccessKey: roleAK, SecretKey: roleSK, Lifetime: 5*time.Minute + 3*time.Second})
	cfg := c.file("connections.toml", fmt.Sprintf(`
[connections.team]
auth = "iam-role"
access_key_id = %q
secret_access_key = %q
role_arn = %q
external_id = %q
role_session_name = "alice-laptop"
bucket = %q
region = "us-east-1"
endpoint_url = %q
force_path_style = true
sts_endpoint_url = %q
`, callerAK, callerSK, roleARN, extID, c.bucket, c.g.URL, sts.URL), 0o600)

	res := c.mustMount(cfg, "team", nil)
	mnt := res.Mountpoint
	first := sts.Calls()
	if first < 1 {
		t.Fatalf("the STS endpoint was not called (refused: %q)", sts.Refused())
	}
	deadline := time.Now().Add(10 * time.Second)
	ops := 0
	for i := 0; time.Now().Before(deadline); i++ {
		// A new name each time: neither the kernel nor the stat cache
		// answers without S3.
		name := fmt.Sprintf("f%03d.txt", i)
		if err := os.WriteFile(filepath.Join(mnt, name), []byte(name), 0o644); err != nil {
			t.Fatalf("write %s at %d STS calls: %v", name, sts.Calls(), err)
		}
		if b, err := c.root.GetObject(c.ctx, c.bucket, name); err != nil || string(b) != name {
			t.Fatalf("%s in S3 = %q, %v", name, b, err)
		}
		if got := dirNames(t, mnt); !slices.Contains(got, name) {
			t.Fatalf("listing misses %s: %q", name, got)
		}
		ops++
		time.Sleep(300 * time.Millisecond)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "data.txt")); err != nil || string(b) != "read through the role" {
		t.Errorf("data.txt = %q, %v", b, err)
	}
	if n := sts.Calls(); n < first+2 {
		t.Errorf("AssumeRole called %d times in 10 s of use with 3 s credentials, want at least %d (refresh)", n, first+2)
	} else {
		t.Logf("%d operations, AssumeRole called %d times, none refused", ops, n)
	}
	if r := sts.Refused(); len(r) != 0 {
		t.Errorf("STS refused requests: %q", r)
	}
	for _, n := range sts.SessionNames() {
		if n != "alice-laptop" {
			t.Errorf("role session name %q, want alice-laptop", n)
		}
	}
	assertNoSecrets(t, []string{callerSK, roleSK}, res.LogFile, res.Stdout, res.Stderr)

	// A wrong external ID, and the STS endpoint from the SDK's standard
	// setting instead of the file.
	cfg2 := c.file("nosts.toml", strings.Replace(string(must(os.ReadFile(cfg))),
		fmt.Sprintf("sts_endpoint_url = %q\n", sts.URL), "", 1), 0o600)
	if strings.Contains(string(must(os.ReadFile(cfg2))), "sts_endpoint_url") {
		t.Fatal("sts_endpoint_url not removed")
	}
	before := len(sts.Refused())
	bad := c.mount(cfg2, "team", []string{"AWS_ENDPOINT_URL_STS=" + sts.URL}, "--external-id", "not-the-right-one")
	if bad.ExitCode != 1 || bad.Mounted {
		t.Fatalf("mount with a wrong external ID: %s", bad)
	}
	msg := strings.TrimSpace(bad.Stderr)
	if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "STS AssumeRole failed (AccessDenied") ||
		!strings.Contains(msg, "external ID") {
		t.Errorf("stderr %q: want one line saying AssumeRole was denied", msg)
	}
	refused := sts.Refused()[before:]
	if len(refused) == 0 || !strings.Contains(refused[0], "external ID") {
		t.Errorf("the STS endpoint (via AWS_ENDPOINT_URL_STS) saw no external-ID refusal: %q", refused)
	}
	if strings.Contains(msg, callerSK) || strings.Contains(msg, "not-the-right-one") {
		t.Errorf("the error shows a secret or the external ID: %q", msg)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestConnectionAllBuckets: a connection without a bucket (and SOURCE
// s3://) mounts every bucket as a directory of the root; mkdir there
// creates a bucket, rmdir deletes an empty one and gives ENOTEMPTY for
// one with objects.
func TestConnectionAllBuckets(t *testing.T) {
	c := newConnEnv(t)
	second := harness.BucketName(t.Name() + "-two")
	if err := c.root.CreateBucket(c.ctx, second); err != nil {
		t.Fatal(err)
	}
	c.put("one.txt", "in the first bucket")
	if err := c.root.PutObject(c.ctx, second, "dir/two.txt", []byte("in the second")); err != nil {
		t.Fatal(err)
	}
	secretFile := c.file("root.secret", c.g.SecretKey+"\n", 0o600)
	cfg := c.file("connections.toml", fmt.Sprintf(`
[connections.everything]
access_key_id = %q
secret_access_key_file = %q
endpoint_url = %q
force_path_style = true
`, c.g.AccessKey, secretFile, c.g.URL), 0o644)
	res := c.mustMount(cfg, "everything", nil)
	mnt := res.Mountpoint
	want := []string{c.bucket, second}
	slices.Sort(want)
	if got := dirNames(t, mnt); !slices.Equal(got, want) {
		t.Fatalf("root = %q, want %q", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, c.bucket, "one.txt")); err != nil || string(b) != "in the first bucket" {
		t.Errorf("one.txt = %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, second, "dir/two.txt")); err != nil || string(b) != "in the second" {
		t.Errorf("dir/two.txt = %q, %v", b, err)
	}
	third := harness.BucketName(t.Name() + "-three")
	if err := os.Mkdir(filepath.Join(mnt, third), 0o755); err != nil {
		t.Fatalf("mkdir %s at the root: %v", third, err)
	}
	if err := c.root.PutObject(c.ctx, third, "probe", []byte("x")); err != nil {
		t.Fatalf("the bucket made by mkdir does not take objects: %v", err)
	}
	if _, err := c.root.S3.DeleteObject(c.ctx, &s3.DeleteObjectInput{Bucket: &third, Key: aws.String("probe")}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, third, "via-mount.txt"), []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := c.root.GetObject(c.ctx, third, "via-mount.txt"); err != nil || string(b) != "y" {
		t.Errorf("via-mount.txt in the new bucket = %q, %v", b, err)
	}
	if err := syscall.Rmdir(filepath.Join(mnt, third)); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("rmdir of a bucket with objects: %v, want ENOTEMPTY", err)
	}
	if err := os.Remove(filepath.Join(mnt, third, "via-mount.txt")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Rmdir(filepath.Join(mnt, third)); err != nil {
		t.Fatalf("rmdir of the emptied bucket: %v", err)
	}
	if err := c.root.PutObject(c.ctx, third, "probe", []byte("x")); err == nil || !harness.IsNotFound(err) {
		t.Errorf("bucket %s still takes objects after rmdir: %v", third, err)
	}
	if got := dirNames(t, mnt); !slices.Equal(got, want) {
		t.Errorf("root after rmdir = %q, want %q", got, want)
	}
	if err := os.WriteFile(filepath.Join(mnt, "at-root.txt"), []byte("x"), 0o644); !errors.Is(err, syscall.EPERM) {
		t.Errorf("a file at the root: %v, want EPERM", err)
	}
	if l := mountLine(t, mnt); strings.Fields(l)[0] != "everything" {
		t.Errorf("mount table line %q: want filesystem name everything", l)
	}

	// SOURCE s3:// with keys from the environment: the same root.
	mnt2 := harness.Mount(t, bin, c.g.Endpoint, "s3://", "")
	if got := dirNames(t, mnt2); !slices.Equal(got, want) {
		t.Errorf("root of s3:// = %q, want %q", got, want)
	}
	assertNoSecrets(t, []string{c.g.SecretKey}, res.LogFile)
}

// TestConnectionCheck: `s3mount check` prints one row per permission; a
// full user has them all (with --write-probes, which cleans up after
// itself); a user limited to a path is denied list all buckets and get
// bucket location, not tried on writes without the flag, and its mount can
// work; a connection whose path the user may not list cannot, exit 1.
func TestConnectionCheck(t *testing.T) {
	c := newConnEnv(t)
	c.put("home/alice/a.txt", "a")
	ak, sk := c.user("alice", harness.PrefixPolicy(c.bucket, "home/alice/"))
	cfg := c.file("connections.toml", fmt.Sprintf(`
[connections.full]
access_key_id = %q
secret_access_key = %q
bucket = %q
path = "home/alice"
endpoint_url = %q
force_path_style = true

[connections.everything]
access_key_id = %[1]q
secret_access_key = %[2]q
endpoint_url = %[4]q
force_path_style = true

[connections.alice]
access_key_id = %[5]q
secret_access_key = %[6]q
bucket = %[3]q
path = "home/alice"
endpoint_url = %[4]q
force_path_style = true

[connections.alice-top]
access_key_id = %[5]q
secret_access_key = %[6]q
bucket = %[3]q
endpoint_url = %[4]q
force_path_style = true
`, c.g.AccessKey, c.g.SecretKey, c.bucket, c.g.URL, ak, sk), 0o600)
	row := func(out, perm string) string {
		t.Helper()
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, perm+"  ") {
				return strings.Join(strings.Fields(strings.TrimPrefix(l, perm)), " ")
			}
		}
		t.Errorf("no row %q in:\n%s", perm, out)
		return ""
	}
	expect := func(out string, rows map[string]string) {
		t.Helper()
		for perm, want := range rows {
			if got := row(out, perm); !strings.HasPrefix(got, want) {
				t.Errorf("row %q = %q, want it to start with %q\n%s", perm, got, want, out)
			}
		}
	}

	out, errOut, code := c.run(nil, "check", "--config", cfg, "--write-probes", "full")
	if code != 0 {
		t.Errorf("check --write-probes full: exit %d, stderr %q\n%s", code, errOut, out)
	}
	expect(out, map[string]string{"list all buckets": "granted", "list files": "granted", "download": "granted",
		"upload": "granted", "delete": "granted", "get bucket location": "granted", "create bucket": "not tried"})
	if !strings.Contains(out, "the mount can work") {
		t.Errorf("no verdict:\n%s", out)
	}
	if keys, err := c.root.ListAllKeys(c.ctx, c.bucket, ""); err != nil || !slices.Equal(keys, []string{"home/alice/a.txt"}) {
		t.Errorf("keys after check --write-probes = %q, %v: the probe was not cleaned up", keys, err)
	}

	out, errOut, code = c.run(nil, "check", "--config", cfg, "--write-probes", "everything")
	if code != 0 {
		t.Errorf("check everything: exit %d, stderr %q\n%s", code, errOut, out)
	}
	expect(out, map[string]string{"list all buckets": "granted", "create bucket": "granted"})
	if names, err := c.root.S3.ListBuckets(c.ctx, nil); err != nil || len(names.Buckets) != 1 {
		t.Errorf("buckets after check --write-probes everything: %v, %v: the probe bucket was not removed", names, err)
	}

	out, errOut, code = c.run(nil, "check", "--config", cfg, "alice")
	if code != 0 {
		t.Errorf("check alice: exit %d, stderr %q\n%s", code, errOut, out)
	}
	expect(out, map[string]string{"list all buckets": "denied (AccessDenied)", "list files": "granted",
		"download": "granted", "upload": "not tried", "delete": "not tried",
		"get bucket location": "denied (AccessDenied)", "create bucket": "not tried"})
	t.Logf("check alice:\n%s", out)

	out, _, code = c.run(nil, "check", "--config", cfg, "--write-probes", "alice")
	if code != 0 {
		t.Errorf("check --write-probes alice: exit %d\n%s", code, out)
	}
	expect(out, map[string]string{"upload": "granted", "delete": "granted"})
	if keys, err := c.root.ListAllKeys(c.ctx, c.bucket, ""); err != nil || !slices.Equal(keys, []string{"home/alice/a.txt"}) {
		t.Errorf("keys after alice's write probes = %q, %v", keys, err)
	}

	out, errOut, code = c.run(nil, "check", "--config", cfg, "alice-top")
	if code != 1 {
		t.Errorf("check alice-top: exit %d, want 1\n%s", code, out)
	}
	expect(out, map[string]string{"list files": "denied (AccessDenied)"})
	if !strings.Contains(errOut, "the mount cannot work: list files is denied (AccessDenied)") {
		t.Errorf("stderr %q", errOut)
	}
	assertNoSecretsIn(t, []string{sk, c.g.SecretKey}, out, errOut)
}

func assertNoSecretsIn(t *testing.T, secrets []string, texts ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, text := range texts {
			if strings.Contains(text, s) {
				t.Errorf("a secret appears in %q", text)
			}
		}
	}
}

// TestConnectionSecretFileModes: a secret in a file readable by others is
// refused with one line naming the file; so is a connections file holding
// secret_access_key with mode 0644.
func TestConnectionSecretFileModes(t *testing.T) {
	c := newConnEnv(t)
	ak, sk := c.user("u", harness.BucketPolicy(c.bucket))
	secretFile := c.file("open.secret", sk+"\n", 0o644)
	cfg := c.file("connections.toml", fmt.Sprintf(`
[connections.open]
access_key_id = %q
secret_access_key_file = %q
bucket = %q
endpoint_url = %q
force_path_style = true
`, ak, secretFile, c.bucket, c.g.URL), 0o644)
	res := c.mount(cfg, "open", nil)
	msg := strings.TrimSpace(res.Stderr)
	if res.ExitCode != 1 || res.Mounted || strings.Count(msg, "\n") != 0 ||
		!strings.Contains(msg, secretFile) || !strings.Contains(msg, "0600") {
		t.Errorf("mount with a 0644 secret file: %s", res)
	}
	inline := c.file("inline.toml", fmt.Sprintf(`
[connections.inline]
access_key_id = %q
secret_access_key = %q
bucket = %q
endpoint_url = %q
force_path_style = true
`, ak, sk, c.bucket, c.g.URL), 0o644)
	res = c.mount(inline, "inline", nil)
	msg = strings.TrimSpace(res.Stderr)
	if res.ExitCode != 1 || res.Mounted || strings.Count(msg, "\n") != 0 ||
		!strings.Contains(msg, inline) || !strings.Contains(msg, "0600") {
		t.Errorf("mount with a 0644 connections file holding a secret: %s", res)
	}
	assertNoSecretsIn(t, []string{sk}, res.Stderr, res.Stdout)
	// The same files made private work.
	if err := os.Chmod(inline, 0o600); err != nil {
		t.Fatal(err)
	}
	c.mustMount(inline, "inline", nil)
}

// TestConnectionExternalID: `s3mount connection external-id` prints a new
// random ID each time.
func TestConnectionExternalID(t *testing.T) {
	a := strings.TrimSpace(sh(t, 30*time.Second, bin, "connection", "external-id"))
	b := strings.TrimSpace(sh(t, 30*time.Second, bin, "connection", "external-id"))
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(a) || a == b {
		t.Errorf("external IDs %q and %q", a, b)
	}
}
