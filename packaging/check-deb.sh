#!/bin/bash
# check-deb.sh DEB: fails unless the package holds every file s3mount installs and depends on fuse3.
set -euo pipefail
deb=${1:?usage: check-deb.sh DEB}
listing=$(dpkg-deb -c "$deb")
fail=0
for path in ./usr/bin/s3mount ./sbin/mount.s3mount ./usr/lib/systemd/system/s3mount@.service \
	./usr/share/doc/s3mount/fstab.example ./usr/share/man/man1/s3mount.1.gz \
	./usr/share/bash-completion/completions/s3mount ./usr/share/zsh/vendor-completions/_s3mount \
	./usr/share/fish/vendor_completions.d/s3mount.fish; do
	if ! grep -qE "[[:space:]]${path//./\\.}( -> .*)?$" <<<"$listing"; then
		echo "check-deb: $deb lacks $path" >&2
		fail=1
	fi
done
if ! grep -qE '^-rwxr-xr-x .* \./usr/bin/s3mount$' <<<"$listing"; then
	echo "check-deb: ./usr/bin/s3mount is not mode 0755" >&2
	fail=1
fi
if ! grep -qE ' \./sbin/mount\.s3mount -> /usr/bin/s3mount$' <<<"$listing"; then
	echo "check-deb: ./sbin/mount.s3mount is not a link to /usr/bin/s3mount" >&2
	fail=1
fi
depends=$(dpkg-deb -f "$deb" Depends)
if [[ "$depends" != *fuse3* ]]; then
	echo "check-deb: Depends is \"$depends\", not fuse3" >&2
	fail=1
fi
if [[ $fail != 0 ]]; then
	echo "$listing" >&2
	exit 1
fi
echo "check-deb: $deb holds the binary, mount.s3mount, the unit, the fstab example, the man page and completions; depends on fuse3"
