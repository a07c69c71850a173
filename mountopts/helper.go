package mountopts

import (
	"fmt"
	"strings"
)

// A mount helper call is `s3mount SOURCE MOUNTPOINT -o OPT[,OPT...]`: how
// mount(8) runs fuse3's mount.fuse3 for a filesystem of type fuse.s3mount
// (and mount.s3mount for type s3mount), from the command line or from an
// fstab line (mount.fuse(8), fstab(5)).

// KernelOptions are the generic mount options passed on to the kernel
// through fusermount3 (mount(8), "FILESYSTEM-INDEPENDENT MOUNT OPTIONS").
var KernelOptions = map[string]bool{
	"nosuid": true, "suid": true, "nodev": true, "dev": true, "noexec": true, "exec": true,
	"noatime": true, "atime": true, "nodiratime": true, "diratime": true, "relatime": true,
	"norelatime": true, "strictatime": true, "nostrictatime": true, "sync": true, "async": true,
	"dirsync": true,
}

// ignoredOptions are read by mount(8), systemd or mount.fuse3 themselves and
// mean nothing to s3mount; they are accepted and dropped.
var ignoredOptions = map[string]bool{
	"defaults": true, "_netdev": true, "nofail": true, "auto": true, "noauto": true,
	"user": true, "users": true, "nouser": true, "owner": true, "group": true,
	// s3mount always asks the kernel to check permissions.
	"default_permissions": true,
}

// HelperArgs turns the -o string of a mount helper call into flags of
// `s3mount mount`. Each s3mount option has an -o form named like its flag
// with underscores: endpoint_url=URL is --endpoint-url URL, and
// force_path_style alone is --force-path-style. flags lists the mount
// command's flag names (without dashes), each true when the flag takes a
// value. Generic options: ro is --read-only, rw is the default, allow_other
// is --allow-other, uid= and gid= are --uid and --gid; KernelOptions become
// --mount-option NAME; ignoredOptions, x-* (x-systemd.*) and comment= are
// dropped. Any other option is an error naming it.
func HelperArgs(opts string, flags map[string]bool) ([]string, error) {
	var args []string
	for _, opt := range splitOptions(opts) {
		name, value, hasValue := strings.Cut(opt, "=")
		switch {
		case name == "":
			continue
		case name == "ro":
			args = append(args, "--read-only")
			continue
		case name == "rw":
			continue
		case ignoredOptions[name], strings.HasPrefix(name, "x-"), name == "comment":
			continue
		case KernelOptions[name]:
			args = append(args, "--mount-option", name)
			continue
		}
		flag := strings.ReplaceAll(name, "_", "-")
		takesValue, known := flags[flag]
		if !known || flag == "mount-option" {
			return nil, fmt.Errorf("mount option %q is not an s3mount option", name)
		}
		switch {
		case takesValue && !hasValue:
			return nil, fmt.Errorf("mount option %q needs a value (%s=...)", name, name)
		case takesValue:
			args = append(args, "--"+flag, value)
		case hasValue:
			switch strings.ToLower(value) {
			case "true", "1", "yes":
				args = append(args, "--"+flag)
			case "false", "0", "no":
				args = append(args, "--"+flag+"=false")
			default:
				return nil, fmt.Errorf("mount option %q takes no value, or true/false", name)
			}
		default:
			args = append(args, "--"+flag)
		}
	}
	return args, nil
}

// splitOptions splits at commas outside double quotes, as libmount does.
func splitOptions(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
		case r == ',' && !quoted:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(out, cur.String())
}
