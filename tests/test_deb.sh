#!/usr/bin/env bash
# test_deb.sh: the Debian package.
#
#   test_deb.sh          build the .deb, run lintian, install it into a clean
#                        Debian 12 made by mmdebstrap, run `pukaipu --help` and
#                        check the installed files there
#   test_deb.sh build    only build (or reuse) the .deb; prints its path last
#                        (tests/integration/test_systemd.py uses this)
#
# The package is built with `dpkg-buildpackage -us -uc -b` in a copy of the
# source tree (git's tracked and untracked-but-not-ignored files), at a fixed
# path so that ccache hits across runs. A .deb built from identical sources is
# reused: /var/cache/pukaipu-tests/deb/<sha256 of the sources>/.
# Exit: 0 pass, 1 fail, 77 skip (with the reason).
set -uo pipefail

src=${PUKAIPU_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
cache=${PUKAIPU_TEST_CACHE:-/var/cache/pukaipu-tests}
work=${PUKAIPU_DEB_WORK:-/var/tmp/pukaipu-deb}  # fixed: ccache and -ffile-prefix-map see the same paths
mode=${1:-test}

say() { echo "test_deb: $*" >&2; }
skip() { echo "SKIP: $*"; exit 77; }
die() { echo "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (mmdebstrap --mode=root, a clean chroot)"
for tool in dpkg-buildpackage dh lintian mmdebstrap; do
	command -v "$tool" >/dev/null || skip "$tool not found (bash .ci/install-deps installs it)"
done
[ -x /usr/bin/dh_apparmor ] || skip "dh_apparmor not found (apt-get install dh-apparmor)"

mkdir -p "$cache/deb" "$work"
exec 9>"$work/.lock"
flock 9 # one build at a time: test_deb and test_systemd may both ask for it

# --- the package, built or reused -------------------------------------------
files() { # NUL-separated paths relative to $src, of files that exist
	if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git -C "$src" ls-files -z --cached --others --exclude-standard
	else
		(cd "$src" && find . -path ./build -prune -o -path './build-*' -prune -o -name __pycache__ -prune \
			-o -type f -printf '%P\0')
	fi | (cd "$src" && while IFS= read -r -d '' f; do
		case $f in # what an in-tree package build leaves behind
			.git/* | obj-*/* | debian/pukaipu/* | debian/.debhelper/* | debian/files | debian/*.substvars | \
				debian/debhelper-build-stamp | debian/tmp/*) continue ;;
		esac
		[ -f "$f" ] && printf '%s\0' "$f"
	done) | sort -z
}
version=$(sed -n '1s/^pukaipu (\([^)]*\)).*/\1/p' "$src/debian/changelog")
[ -n "$version" ] || die "no version in debian/changelog"
key=$(files | (cd "$src" && xargs -0 sha256sum --) | sha256sum | cut -c1-16)
deb="$cache/deb/$key/pukaipu_${version}_amd64.deb"
if [ -f "$deb" ]; then
	say "reusing $deb (sources unchanged)"
else
	t0=$(date +%s)
	tree="$work/pukaipu-$version"
	rm -rf "$tree" "$work"/pukaipu_* "$work"/pukaipu-dbgsym_*
	mkdir -p "$tree"
	files | (cd "$src" && xargs -0 cp --parents -t "$tree") ||
		die "copying the source tree failed"
	say "building $version with dpkg-buildpackage in $tree"
	export CCACHE_DIR="$cache/ccache" DEB_BUILD_OPTIONS="nocheck noautodbgsym parallel=$(nproc)"
	if ! (cd "$tree" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
		tail -40 "$work/build.log"
		die "dpkg-buildpackage failed (log: $work/build.log)"
	fi
	mkdir -p "$cache/deb/$key.tmp"
	cp "$work"/pukaipu_"${version}"_amd64.deb "$work"/pukaipu_"${version}"_amd64.changes \
		"$work"/pukaipu_"${version}"_amd64.buildinfo "$cache/deb/$key.tmp/" || die "no .deb was built"
	rm -rf "$cache/deb/$key" && mv "$cache/deb/$key.tmp" "$cache/deb/$key"
	# Keep the three newest builds.
	ls -1dt "$cache"/deb/*/ | tail -n +4 | xargs -r rm -rf
	say "built $deb in $(($(date +%s) - t0)) s"
fi
if [ "$mode" = build ]; then
	echo "$deb"
	exit 0
fi
[ "$mode" = test ] || { echo "usage: test_deb.sh [build]" >&2; exit 2; }

status=0
fail() { echo "FAIL: $*"; status=1; }

# --- lintian ----------------------------------------------------------------
t0=$(date +%s)
changes="${deb%.deb}.changes"
if out=$(lintian --fail-on error,warning --tag-display-limit 0 "$changes" 2>&1 |
	grep -v '^running with root privileges is not recommended!$'; exit "${PIPESTATUS[0]}"); then
	say "lintian: clean ($(($(date +%s) - t0)) s)${out:+; notes:}"
	[ -z "$out" ] || echo "$out" >&2
else
	echo "$out"
	fail "lintian reported errors or warnings"
fi

# --- contents ---------------------------------------------------------------
contents=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|')
for want in /usr/sbin/pukaipu /usr/sbin/pukaipu-run /lib/systemd/system/pukaipu@.service \
	/lib/systemd/system/pukaipu@.socket /lib/systemd/system/pukaipu-front.service /usr/share/pukaipu/seccomp/default.json \
	/usr/share/pukaipu/seccomp/log.json /etc/apparmor.d/pukaipu-session \
	/etc/apparmor.d/pukaipu-session.d/common /usr/share/man/man8/pukaipu-run.8.gz \
	/usr/share/man/man8/pukaipu.8.gz /usr/share/man/man5/pukaipu.json.5.gz \
	/usr/share/man/man8/rootfs-builder.8.gz /usr/share/doc/pukaipu/examples/pukaipu.json; do
	grep -qxF "$want" <<<"$contents" || fail "the package lacks $want"
done
if [ -f "$src/rootfs-builder/meson.build" ]; then
	for want in /usr/sbin/rootfs-builder /usr/lib/pukaipu/rootfs-builder/manifests/default.json; do
		grep -qxF "$want" <<<"$contents" || fail "the package lacks $want"
	done
else
	say "note: rootfs-builder/meson.build does not exist yet: the package has no rootfs-builder"
fi
# The front door: the desktop sockets are root:haproxy and HAProxy serves them.
dpkg-deb -f "$deb" Depends | tr ',' '\n' | grep -qE '^ *haproxy( |$)' ||
	fail "the package does not depend on haproxy (the front door; the group of the desktop sockets)"
conffiles=$(dpkg-deb -I "$deb" conffiles 2>/dev/null)
grep -qx /etc/apparmor.d/pukaipu-session <<<"$conffiles" || fail "the AppArmor profile is not a conffile"

# --- a clean Debian 12 with the package -------------------------------------
# mmdebstrap installs the .deb with apt (which pulls its dependencies from
# Debian) in a customize hook, then the next hooks check the result. Downloaded
# packages are kept in $cache/apt-archives between runs.
t0=$(date +%s)
mkdir -p "$cache/apt-archives"
cat >"$work/checks.sh" <<'EOF'
set -e
pukaipu --help | grep -q "create and manage per-user remote browser desktops"
pukaipu-run --help | grep -q "pukaipu-run"
pukaipu --version
PUKAIPU_CONFIG=/usr/share/doc/pukaipu/examples/pukaipu.json PUKAIPU_STATE_DIR=/var/tmp/nostate pukaipu list >/dev/null
PUKAIPU_STATE_DIR=/var/tmp/nostate pukaipu list >/dev/null
if [ -e /usr/sbin/rootfs-builder ]; then
	rootfs-builder --help | grep -q "manifest"
	rootfs-builder --check default | grep -q "ok, name default"
fi
# The front door's group exists (the haproxy package made it).
getent group haproxy >/dev/null
# The units went in, and nothing was enabled or started.
test -f /lib/systemd/system/pukaipu@.service
test -f /lib/systemd/system/pukaipu-front.service
if ls /etc/systemd/system/*/pukaipu-front.service 2>/dev/null; then echo "the front unit was enabled"; exit 1; fi
if ls /etc/systemd/system/*/pukaipu@* 2>/dev/null; then echo "a unit was enabled"; exit 1; fi
# Without AppArmor in the chroot the postinst skipped loading, cleanly.
test -f /etc/apparmor.d/local/pukaipu-session
dpkg-query -W -f='${Status}\n' pukaipu | grep -qx 'install ok installed'
# Removal and purge work too.
apt-get purge -y -qq pukaipu >/dev/null
if test -e /usr/sbin/pukaipu; then echo "purge left /usr/sbin/pukaipu"; exit 1; fi
echo "in-chroot checks: ok"
EOF
if out=$(mmdebstrap --variant=minbase --mode=root --format=null --quiet \
	--setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
	--setup-hook="sync-in $cache/apt-archives /var/cache/apt/archives" \
	--skip=download/empty --dpkgopt=force-unsafe-io \
	--customize-hook="copy-in $deb $work/checks.sh /var/tmp" \
	--customize-hook="chroot \"\$1\" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /var/tmp/$(basename "$deb")'" \
	--customize-hook="sync-out /var/cache/apt/archives $cache/apt-archives" \
	--customize-hook='chroot "$1" sh -e /var/tmp/checks.sh' \
	bookworm /dev/null 2>&1); then
	grep -q "in-chroot checks: ok" <<<"$out" || { echo "$out" | tail -30; fail "the in-chroot checks did not finish"; }
	say "clean install into Debian 12: ok ($(($(date +%s) - t0)) s)"
else
	echo "$out" | tail -40
	fail "installing into a clean Debian 12 failed"
fi
[ $status = 0 ] && echo "test_deb: pass"
exit $status
