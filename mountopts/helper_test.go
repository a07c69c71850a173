package mountopts

import (
	"strings"
	"testing"
)

var testFlags = map[string]bool{
	"endpoint-url": true, "force-path-style": false, "download-threads": true, "read-only": false,
	"allow-other": false, "uid": true, "gid": true, "config": true, "part-size": true,
	"metadata-ttl": true, "mount-option": true, "log-file": true, "max-rename-objects": true,
}

func TestHelperArgs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"endpoint_url=http://127.0.0.1:7070,force_path_style", "--endpoint-url http://127.0.0.1:7070 --force-path-style"},
		{"download_threads=16,part_size=16M,metadata_ttl=10s", "--download-threads 16 --part-size 16M --metadata-ttl 10s"},
		{"max_rename_objects=500", "--max-rename-objects 500"},
		{"ro", "--read-only"},
		{"rw", ""},
		{"allow_other,uid=1000,gid=1000", "--allow-other --uid 1000 --gid 1000"},
		{"default_permissions", ""},
		{"nosuid,nodev,noatime", "--mount-option nosuid --mount-option nodev --mount-option noatime"},
		{"_netdev,nofail,auto,noauto,user,users,defaults", ""},
		{"x-systemd.automount,x-systemd.requires=network-online.target,comment=x", ""},
		{"force_path_style=true", "--force-path-style"},
		{"force_path_style=false", "--force-path-style=false"},
		{`config="/etc/s3mount/a,b.toml",ro`, "--config /etc/s3mount/a,b.toml --read-only"},
	} {
		got, err := HelperArgs(tc.in, testFlags)
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("HelperArgs(%q) = %q, %v; want %q", tc.in, strings.Join(got, " "), err, tc.want)
		}
	}
}

func TestHelperArgsRefusesNamingTheOption(t *testing.T) {
	for in, name := range map[string]string{
		"bogus":                  `"bogus"`,
		"ro,colour=blue":         `"colour"`,
		"endpoint_url":           `"endpoint_url" needs a value`,
		"force_path_style=maybe": `"force_path_style"`,
		"mount_option=nosuid":    `"mount_option"`,
	} {
		_, err := HelperArgs(in, testFlags)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("HelperArgs(%q) error = %v, want one naming %s", in, err, name)
		}
	}
}
