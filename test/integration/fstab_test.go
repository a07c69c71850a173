//go:build integration

package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/s3mount/s3mount/test/harness"
)

// installedBin makes `s3mount` reachable where mount.fuse3 looks for the
// program of type fuse.s3mount (/usr/local/bin), as `make install` does,
// and puts back what was there afterwards (an installed s3mount is moved
// aside for the test, not replaced).
func installedBin(t *testing.T) {
	t.Helper()
	const link = "/usr/local/bin/s3mount"
	if cur, err := os.Readlink(link); err == nil && cur == bin {
		return
	}
	if _, err := os.Lstat(link); err == nil {
		aside := link + ".moved-by-s3mount-test"
		if err := os.Rename(link, aside); err != nil {
			t.Fatalf("moving the installed %s aside: %v", link, err)
		}
		t.Cleanup(func() {
			if err := os.Rename(aside, link); err != nil {
				t.Errorf("putting %s back: %v", link, err)
			}
		})
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s: %v", link, err)
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, link); err != nil {
		t.Fatalf("linking %s: %v", link, err)
	}
	t.Cleanup(func() { os.Remove(link) })
}

// mountT runs `mount -T FSTAB DIR` and registers the unmount.
func mountT(t *testing.T, fstab, dir string, env []string) (string, error) {
	t.Helper()
	cmd := exec.Command("mount", "-T", fstab, dir)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() {
		if err := harness.Unmount(dir); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return string(out), err
}

// teamConnection writes a connections file with the connection "team"
// (the name the fstab example and the systemd instance use) serving e's
// bucket, its secret in a 0600 file, and returns both paths.
func teamConnection(t *testing.T, e *env) (cfg, secret string) {
	t.Helper()
	dir := t.TempDir()
	secret = filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(e.ep.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = filepath.Join(dir, "connections.toml")
	conf := fmt.Sprintf(`[connections.team]
auth = "access-key"
access_key_id = %q
secret_access_key_file = %q
bucket = %q
endpoint_url = %q
force_path_style = true
region = "us-east-1"
`, e.ep.AccessKey, secret, e.bucket, e.ep.URL)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, secret
}

// fstabLine is one line of an fstab file.
type fstabLine struct{ source, dir, typ, opts string }

// exampleFstab reads the lines of packaging/fstab.example, and checks that
// the README shows each of them, so that docs and tests cannot drift.
func exampleFstab(t *testing.T) []fstabLine {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(root, "packaging", "fstab.example"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []fstabLine
	for _, l := range strings.Split(string(example), "\n") {
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		if len(f) != 6 || f[2] != "fuse.s3mount" {
			t.Fatalf("packaging/fstab.example line %q: want 6 fields of type fuse.s3mount", l)
		}
		if !strings.Contains(string(readme), l) {
			t.Errorf("README.md does not show the fstab.example line %q", l)
		}
		out = append(out, fstabLine{f[0], f[1], f[2], f[3]})
	}
	if len(out) < 3 {
		t.Fatalf("packaging/fstab.example has %d lines, want the connection, automount and bucket ones", len(out))
	}
	return out
}

// Every line of packaging/fstab.example, mounted with `mount -T` from a
// test fstab: the connection "team" comes from the test's connections file
// (config= added, or replacing the example's path), the bucket line's
// placeholders become the test's bucket, key and secret file, and the
// endpoint of the test server is added to it (the examples are for AWS).
func TestFstabExampleLinesMount(t *testing.T) {
	e := newEnv(t)
	e.put("hello.txt", []byte("hello from fstab"))
	e.put("reports/hello.txt", []byte("hello from fstab"))
	installedBin(t)
	cfg, secret := teamConnection(t, e)
	dir := t.TempDir()
	log := filepath.Join(dir, "s3mount.log")
	sub := strings.NewReplacer("AKIA...", e.ep.AccessKey, "/etc/s3mount/reports.secret", secret,
		"/srv/s3/connections.toml", cfg)
	var lines strings.Builder
	lines.WriteString("# test fstab, never the machine's\n")
	var mounts []fstabLine
	for _, ex := range exampleFstab(t) {
		l := fstabLine{source: ex.source, dir: t.TempDir(), typ: ex.typ, opts: sub.Replace(ex.opts)}
		if strings.Contains(ex.source, ":") { // a bucket source
			l.source = e.bucket + ex.source[strings.Index(ex.source, ":"):]
			l.opts += ",endpoint_url=" + e.ep.URL + ",force_path_style,region=us-east-1"
		} else if !strings.Contains(l.opts, "config=") {
			l.opts += ",config=" + cfg
		}
		l.opts += ",log_file=" + log
		fmt.Fprintf(&lines, "%s %s %s %s 0 0\n", l.source, l.dir, l.typ, l.opts)
		mounts = append(mounts, l)
	}
	fstab := filepath.Join(dir, "fstab")
	if err := os.WriteFile(fstab, []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	env := harness.CleanEnv()
	for i, l := range mounts {
		if out, err := mountT(t, fstab, l.dir, env); err != nil {
			t.Fatalf("mount -T %s %s: %v\n%s\nfstab:\n%s\nlog:\n%s", fstab, l.dir, err, out, lines.String(), readFile(log))
		}
		line := mountLine(t, l.dir)
		if !strings.HasPrefix(line, l.source+" ") || !strings.Contains(line, " fuse.s3mount ") {
			t.Errorf("mount table line %q: want source %s and type fuse.s3mount", line, l.source)
		}
		for _, opt := range []string{"noatime", "nosuid", "nodev"} {
			if strings.Contains(l.opts, opt) && !strings.Contains(line, opt) {
				t.Errorf("mount table line %q lacks %s", line, opt)
			}
		}
		if got, err := os.ReadFile(filepath.Join(l.dir, "hello.txt")); err != nil || string(got) != "hello from fstab" {
			t.Errorf("read through the fstab mount of %s: %q, %v", l.source, got, err)
		}
		name := fmt.Sprintf("written%d.txt", i)
		err := os.WriteFile(filepath.Join(l.dir, name), []byte("w"), 0o644)
		if strings.HasPrefix(l.opts, "ro,") {
			if !errors.Is(err, syscall.EROFS) {
				t.Errorf("write on the ro fstab mount: %v, want EROFS", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("write through the fstab mount of %s: %v", l.source, err)
		} else if string(e.get(name)) != "w" {
			t.Error("the write did not reach S3")
		}
	}
	for _, l := range mounts {
		if strings.Contains(mountLine(t, l.dir)+readFile(log), e.ep.SecretKey) {
			t.Error("a secret shows in the mount table or the log")
		}
	}
}

func TestFstabUnknownOptionFailsNamingIt(t *testing.T) {
	e := newEnv(t)
	installedBin(t)
	dir := t.TempDir()
	mnt := t.TempDir()
	fstab := filepath.Join(dir, "fstab")
	line := fmt.Sprintf("%s %s fuse.s3mount endpoint_url=%s,force_path_style,colour=blue 0 0\n", e.bucket, mnt, e.ep.URL)
	if err := os.WriteFile(fstab, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := mountT(t, fstab, mnt, harness.MountEnv(e.ep))
	if err == nil {
		t.Fatal("mount with an unknown option succeeded")
	}
	if !strings.Contains(out, `"colour"`) {
		t.Errorf("the error does not name the option: %q", out)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
