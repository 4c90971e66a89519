#!/bin/sh
# mkrootfs.sh DEST PROBE_BINARY
#
# Build the tiny rootfs the integration tests run containers from:
#   /bin/busybox (static) + a symlink per applet, /bin/probe,
#   /sbin, /usr/bin, /usr/sbin -> bin, proc sys dev run data data/home home root,
#   /tmp (1777), minimal /etc/{passwd,group,hostname,hosts}.
# Everything is owned by root:root and not group/other-writable (except
# /tmp), because pukaipu-run refuses a rootfs writable by non-root users.
#
# The tree is built in DEST.tmp.$$ and then renamed into place; an
# existing DEST is replaced.  Environment: BUSYBOX (default /bin/busybox).
set -eu

die() {
	echo "mkrootfs.sh: $*" >&2
	exit 1
}

[ $# -eq 2 ] || die "usage: mkrootfs.sh DEST PROBE_BINARY"
dest=$1
probe=$2
busybox=${BUSYBOX:-/bin/busybox}

# Normalise DEST (no trailing slashes) and refuse obviously wrong targets.
while [ "${dest%/}" != "$dest" ]; do dest=${dest%/}; done
case $dest in
	'' | . | .. | */. | */..) die "refusing DEST '$2'" ;;
esac

if [ ! -f "$busybox" ] || [ ! -x "$busybox" ]; then
	die "$busybox not found: install busybox-static"
fi
if command -v readelf >/dev/null 2>&1; then
	if LC_ALL=C readelf -lW "$busybox" 2>/dev/null | grep -q 'program interpreter'; then
		die "$busybox is dynamically linked: install busybox-static"
	fi
fi
applets=$("$busybox" --list) || die "'$busybox --list' failed"
[ -n "$applets" ] || die "'$busybox --list' listed no applets"

if [ ! -f "$probe" ] || [ ! -x "$probe" ]; then
	die "probe binary '$probe' not found or not executable"
fi
if command -v readelf >/dev/null 2>&1; then
	if LC_ALL=C readelf -lW "$probe" 2>/dev/null | grep -q 'program interpreter'; then
		die "probe binary '$probe' is dynamically linked (build it with -static)"
	fi
fi

parent=$(dirname -- "$dest")
mkdir -p -- "$parent" || die "cannot create $parent"

tmp=$dest.tmp.$$
old=$dest.old.$$
# shellcheck disable=SC2317 # invoked via trap
cleanup() {
	rm -rf -- "$tmp" "$old"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

rm -rf -- "$tmp"
umask 022
mkdir -m 0755 -- "$tmp"

for d in bin etc proc sys dev run data data/home home usr; do
	mkdir -m 0755 -- "$tmp/$d"
done
mkdir -m 0700 -- "$tmp/root"
mkdir -- "$tmp/tmp"
chmod 1777 -- "$tmp/tmp"
ln -s bin "$tmp/sbin"
ln -s ../bin "$tmp/usr/bin"
ln -s ../bin "$tmp/usr/sbin"

cp -- "$busybox" "$tmp/bin/busybox"
chmod 0755 -- "$tmp/bin/busybox"
set -f
for a in $applets; do
	case $a in
		busybox | probe | */* | .*) continue ;;
	esac
	ln -s busybox "$tmp/bin/$a"
done
set +f

cp -- "$probe" "$tmp/bin/probe"
chmod 0755 -- "$tmp/bin/probe"

cat >"$tmp/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
tester:x:3999:3999:tester:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$tmp/etc/group" <<'EOF'
root:x:0:
tester:x:3999:
nogroup:x:65534:
EOF
echo pukaipu-test >"$tmp/etc/hostname"
cat >"$tmp/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1	localhost
EOF
chmod 0644 -- "$tmp/etc/passwd" "$tmp/etc/group" "$tmp/etc/hostname" "$tmp/etc/hosts"

chown -hR 0:0 -- "$tmp" 2>/dev/null || die "cannot chown $tmp to root:root (run as root)"
# Belt and braces: nothing but /tmp may be group/other-writable
# (chmod -R does not touch symlinks).
chmod -R go-w -- "$tmp"
chmod 1777 -- "$tmp/tmp"

# Swap into place: two renames, the old tree is removed afterwards.
if [ -e "$dest" ] || [ -L "$dest" ]; then
	mv -T -- "$dest" "$old" || die "cannot move old $dest aside"
fi
if ! mv -T -- "$tmp" "$dest"; then
	[ -e "$old" ] && mv -T -- "$old" "$dest"
	die "cannot rename $tmp to $dest"
fi
rm -rf -- "$old"
trap - EXIT
exit 0
