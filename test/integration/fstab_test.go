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

func TestFstabMountsByConnectionNameAndBySource(t *testing.T) {
	e := newEnv(t)
	e.put("hello.txt", []byte("hello from fstab"))
	installedBin(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(e.ep.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "connections.toml")
	conf := fmt.Sprintf(`[connections.itfstab]
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
	byName, bySource := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "s3mount.log")
	fstab := filepath.Join(dir, "fstab")
	lines := fmt.Sprintf(
		"# test fstab, never the machine's\n"+
			"itfstab %s fuse.s3mount _netdev,nofail,noatime,x-systemd.automount,config=%s,log_file=%s 0 0\n"+
			"%s %s fuse.s3mount ro,_netdev,endpoint_url=%s,force_path_style,region=us-east-1,access_key_id=%s,secret_access_key_file=%s,log_file=%s 0 0\n",
		byName, cfg, log, e.bucket+":/", bySource, e.ep.URL, e.ep.AccessKey, secret, log)
	if err := os.WriteFile(fstab, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	env := harness.CleanEnv()

	if out, err := mountT(t, fstab, byName, env); err != nil {
		t.Fatalf("mount -T %s %s: %v\n%s\nlog:\n%s", fstab, byName, err, out, readFile(log))
	}
	line := mountLine(t, byName)
	if !strings.HasPrefix(line, "itfstab ") || !strings.Contains(line, " fuse.s3mount ") || !strings.Contains(line, "noatime") {
		t.Errorf("mount table line %q: want the connection name, type fuse.s3mount and noatime", line)
	}
	if got, err := os.ReadFile(filepath.Join(byName, "hello.txt")); err != nil || string(got) != "hello from fstab" {
		t.Errorf("read through the fstab mount: %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(byName, "written.txt"), []byte("w"), 0o644); err != nil {
		t.Errorf("write through the fstab mount: %v", err)
	}
	if string(e.get("written.txt")) != "w" {
		t.Error("the write did not reach S3")
	}

	if out, err := mountT(t, fstab, bySource, env); err != nil {
		t.Fatalf("mount -T %s %s: %v\n%s\nlog:\n%s", fstab, bySource, err, out, readFile(log))
	}
	if got, err := os.ReadFile(filepath.Join(bySource, "hello.txt")); err != nil || string(got) != "hello from fstab" {
		t.Errorf("read through the ro fstab mount: %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(bySource, "nope.txt"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write on the ro fstab mount: %v, want EROFS", err)
	}
	for _, s := range []string{e.ep.SecretKey} {
		if strings.Contains(mountLine(t, bySource)+mountLine(t, byName)+readFile(log), s) {
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
