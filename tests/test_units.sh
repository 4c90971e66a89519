#!/usr/bin/env bash
# test_units.sh BUILD_DIR: the systemd units as installed, with the drop-in
# that the real `pukaipu create/set` write, pass `systemd-analyze verify`
# with no error and nothing at all on stdout or stderr (unknown keys are only
# warnings there); `pukaipu set` and `remove` rewrite and delete the drop-ins.
#
# `meson install --destdir` puts the units (ExecStart= filled in by meson) and
# pukaipu-run into a scratch root; verify runs with --root on it, next to the
# host's targets and slices (the units' default dependencies). Users are made
# in a private mount namespace over a copy of /etc, never the host's.
# Exit: 0 pass, 1 fail, 77 skip (with the reason).
set -uo pipefail

build=${1:?usage: test_units.sh BUILD_DIR}
src=$(cd "$(dirname "$0")/.." && pwd)
skip() { echo "SKIP: $*"; exit 77; }
status=0
fail() { echo "FAIL: $*"; status=1; }

command -v systemd-analyze >/dev/null || skip "systemd-analyze not found (the systemd package)"
[ -f /lib/systemd/system/sysinit.target ] || skip "no systemd targets on this host (/lib/systemd/system/sysinit.target)"
[ "$(id -u)" = 0 ] || skip "needs root (pukaipu create makes a user, in a private copy of /etc)"
command -v unshare >/dev/null || skip "unshare not found (util-linux)"

tmp=$(mktemp -d /var/tmp/pukaipu-units.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
if ! out=$(DESTDIR=$root meson install -C "$build" --no-rebuild --quiet 2>&1); then
	echo "$out"
	echo "FAIL: meson install --destdir failed"
	exit 1
fi
unitdir=$(dirname "$(find "$root" -name 'pukaipu@.service' -print -quit)")
[ -f "$unitdir/pukaipu@.service" ] && [ -f "$unitdir/pukaipu@.socket" ] || {
	echo "FAIL: meson install put no pukaipu@.service and pukaipu@.socket into $root"
	exit 1
}
sbin=$(sed -n 's|^ExecStart=\(.*\)/pukaipu-run %i$|\1|p' "$unitdir/pukaipu@.service")
[ -n "$sbin" ] && [ -x "$root$sbin/pukaipu-run" ] || fail "ExecStart= does not name the installed pukaipu-run"
grep -n '@[A-Z_]*@' "$unitdir"/pukaipu@.* && fail "a placeholder was left in the installed units"
# The units' default dependencies (sysinit.target, ...) come from the host.
cp -n /lib/systemd/system/*.target /lib/systemd/system/*.slice "$root/lib/systemd/system/" 2>/dev/null
if [ "$unitdir" != "$root/lib/systemd/system" ]; then
	cp -n /lib/systemd/system/*.target /lib/systemd/system/*.slice "$unitdir/" 2>/dev/null
fi

# The AppArmor profile as installed: /etc/apparmor.d/pukaipu-session finds
# pukaipu-session.d/common next to it (what the package's postinst loads).
aa=$(command -v apparmor_parser || echo /sbin/apparmor_parser)
profile=$(find "$root" -path '*/apparmor.d/pukaipu-session' -print -quit)
if [ ! -x "$aa" ]; then
	echo "note: apparmor_parser not found: the installed profile is not compiled"
elif [ -z "$profile" ]; then
	fail "meson install put no apparmor.d/pukaipu-session into $root"
elif out=$("$aa" -Q -K -S -I "$(dirname "$profile")" -I /etc/apparmor.d "$profile" 2>&1 >/dev/null); then
	echo "ok: the installed AppArmor profile compiles with its installed include"
else
	echo "$out"
	fail "the installed AppArmor profile does not compile"
fi

# A private /etc and /home for useradd; pukaipu's own state in $tmp.
cp -a /etc "$tmp/etc"
mkdir -m 0755 "$tmp/home"
sd=$root/etc/systemd/system
pk() {
	env PUKAIPU_CONFIG="$tmp/pukaipu.json" PUKAIPU_STATE_DIR="$tmp/state" PUKAIPU_RUN_DIR="$tmp/run" \
		PUKAIPU_SYSTEMD_DIR="$sd" \
		unshare -m --propagation private sh -c 'mount --bind "$1" /etc && mount --bind "$2" /home && shift 2 && exec "$@"' \
		sh "$tmp/etc" "$tmp/home" "$build/launcher/pukaipu" "$@"
}
verify() { # what: systemd-analyze verify the instance's units, silently
	local out
	out=$(cd "$tmp" && systemd-analyze verify --man=no --root="$root" pukaipu@unitt.service pukaipu@unitt.socket 2>&1)
	local rc=$?
	if [ $rc != 0 ] || [ -n "$out" ]; then
		echo "$out"
		fail "$1: systemd-analyze verify exited $rc and printed the above"
	else
		echo "ok: $1: systemd-analyze verify is silent"
	fi
}
expect_file() { # path regex what
	if [ -f "$1" ] && grep -qx -- "$2" "$1"; then
		echo "ok: $3"
	else
		[ -f "$1" ] && cat "$1"
		fail "$3: no line '$2' in $1"
	fi
}

echo '{"listenAddress": "127.0.0.1", "domain": "example", "portRange": [15500, 15510], "uidRange": [3900, 3950]}' >"$tmp/pukaipu.json"
out=$(pk create unitt --fqdn unitt.example --memory 2G --cpus 1.5 --tasks 2048 --idle-timeout 30m 2>&1) ||
	{ echo "$out"; echo "FAIL: pukaipu create failed"; exit 1; }
limits=$sd/pukaipu@unitt.service.d/50-pukaipu-limits.conf
# The socket is the template's Unix socket for the front door; no drop-in.
expect_file "$unitdir/pukaipu@.socket" 'ListenStream=/run/pukaipu/%i/desktop.sock' "the socket: a Unix socket per instance"
expect_file "$unitdir/pukaipu@.socket" 'SocketGroup=haproxy' "the socket: group haproxy"
expect_file "$unitdir/pukaipu@.socket" 'SocketMode=0660' "the socket: root and the front door only"
[ ! -e "$sd/pukaipu@unitt.socket.d" ] && echo "ok: create: no socket drop-in" || fail "create wrote a socket drop-in"
expect_file "$limits" 'MemoryMax=2G' "create: MemoryMax="
expect_file "$limits" 'CPUQuota=150%' "create: CPUQuota="
expect_file "$limits" 'TasksMax=2048' "create: TasksMax="
grep -q '"idleSeconds": 1800' "$tmp/state/instances/unitt/instance.json" || fail "create: idleSeconds not 1800"
verify "with limits"

# The TCP listen drop-in of an earlier version goes with the next `pukaipu set`.
listen=$sd/pukaipu@unitt.socket.d/50-pukaipu-listen.conf
mkdir -p "$(dirname "$listen")"
printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:15500\n' >"$listen"
out=$(pk set unitt --memory none --cpus none --tasks none 2>&1) || { echo "$out"; fail "pukaipu set failed"; }
[ ! -e "$listen" ] && [ ! -e "$sd/pukaipu@unitt.socket.d" ] && echo "ok: set: the old listen drop-in is gone" ||
	fail "set: the old listen drop-in is still there"
# The instance's own limits are gone; pukaipu.json's defaults remain.
expect_file "$limits" 'MemoryMax=4G' "set none: the default memoryMax"
expect_file "$limits" 'TasksMax=4096' "set none: the default tasksMax"
grep -q '^CPUQuota=' "$limits" && fail "set none: CPUQuota= outlived --cpus none"
# No defaults either (a host that cannot enforce them): no drop-in at all.
echo '{"listenAddress": "127.0.0.1", "portRange": [15500, 15510], "uidRange": [3900, 3950],
       "memoryMax": "infinity", "tasksMax": 0}' >"$tmp/pukaipu.json"
out=$(pk set unitt 2>&1) || { echo "$out"; fail "pukaipu set failed"; }
[ ! -e "$limits" ] && [ ! -e "$sd/pukaipu@unitt.service.d" ] && echo "ok: set: no limits, no drop-in" ||
	fail "set: the limits drop-in outlived its limits"
verify "without limits"

out=$(pk set unitt --cpus 0.25 --memory 512m 2>&1) || { echo "$out"; fail "pukaipu set failed"; }
expect_file "$limits" 'CPUQuota=25%' "set: CPUQuota="
expect_file "$limits" 'MemoryMax=512M' "set: MemoryMax= (suffix normalized)"
verify "after set"

for bad in "--memory 2X" "--cpus 0" "--tasks 3" "--idle-timeout 8d"; do
	# shellcheck disable=SC2086 # word splitting wanted
	if pk set unitt $bad >/dev/null 2>&1; then fail "set $bad was accepted"; else echo "ok: set $bad refused"; fi
done

out=$(pk remove unitt --purge-home 2>&1) || { echo "$out"; fail "pukaipu remove failed"; }
if [ -e "$sd/pukaipu@unitt.socket.d" ] || [ -e "$sd/pukaipu@unitt.service.d" ]; then
	fail "remove left drop-ins: $(find "$sd" -path '*unitt*')"
else
	echo "ok: remove deleted the drop-ins"
fi
# The weekly rootfs rebuild: installed, verified, not enabled by default.
for u in pukaipu-rootfs-update.service pukaipu-rootfs-update.timer; do
	[ -f "$unitdir/$u" ] || fail "meson install put no $u into $unitdir"
done
out=$(cd "$tmp" && systemd-analyze verify --man=no --root="$root" pukaipu-rootfs-update.timer pukaipu-rootfs-update.service 2>&1)
if [ $? != 0 ] || [ -n "$out" ]; then
	echo "$out"
	fail "pukaipu-rootfs-update: systemd-analyze verify printed the above"
else
	echo "ok: pukaipu-rootfs-update.{service,timer}: systemd-analyze verify is silent"
fi
expect_file "$unitdir/pukaipu-rootfs-update.timer" 'RandomizedDelaySec=6h' "the rebuild timer: a random delay"
expect_file "$unitdir/pukaipu-rootfs-update.service" "ExecStart=$sbin/rootfs-builder --quiet default" "the rebuild service runs rootfs-builder"
# A restart for a rootfs swap exits kExitRestartOnCurrent (generation.h):
# systemd starts the desktop again also without its socket; a stop from
# outside (143) stays a clean stop, and only 75 is forced.
swap_status=$(sed -n 's/^inline constexpr int kExitRestartOnCurrent = \([0-9]*\);$/\1/p' "$src/launcher/generation.h")
[ "$swap_status" = 75 ] || fail "launcher/generation.h: no kExitRestartOnCurrent = 75 (found '$swap_status')"
expect_file "$unitdir/pukaipu@.service" "RestartForceExitStatus=$swap_status" "a swap restart ($swap_status) is restarted"
expect_file "$unitdir/pukaipu@.service" 'SuccessExitStatus=143' "systemctl stop's SIGTERM (143) is a clean stop"
expect_file "$unitdir/pukaipu@.service" 'Restart=on-failure' "a crash restarts, an idle exit does not"
[ "$(grep -c '^RestartForceExitStatus=' "$unitdir/pukaipu@.service")" = 1 ] ||
	fail "pukaipu@.service: more than one RestartForceExitStatus= line"
find "$root/etc" -name 'pukaipu-rootfs-update.timer' | grep -q . && fail "the rebuild timer is enabled by meson install"
# The front door's unit, as installed: the front dir filled in, and silent
# under systemd-analyze verify (its programs are the host's haproxy and sh).
front=$unitdir/pukaipu-front.service
expect_file "$front" 'ExecStart=/usr/sbin/haproxy -Ws -S /run/pukaipu/front-master.sock,mode,600 -f ${CONFIG} -p /run/pukaipu/front.pid' "front unit: haproxy -Ws"
expect_file "$front" "ExecReload=/bin/sh -c 'kill -USR2 \"\$MAINPID\"'" "front unit: reload = SIGUSR2 after haproxy -c"
expect_file "$front" "Environment=CONFIG=$(sed -n 's|^Environment=CONFIG=||p' "$front")" "front unit: one CONFIG"
grep -q '^Environment=CONFIG=/etc/pukaipu/front/haproxy.cfg$' "$front" && echo "ok: front unit: reads /etc/pukaipu/front" ||
	fail "front unit: CONFIG is not /etc/pukaipu/front/haproxy.cfg"
if [ -x /usr/sbin/haproxy ]; then
	mkdir -p "$root/usr/sbin" "$root/bin"
	cp -n /usr/sbin/haproxy "$root/usr/sbin/haproxy"
	cp -n /bin/sh "$root/bin/sh"
	out=$(cd "$tmp" && systemd-analyze verify --man=no --root="$root" pukaipu-front.service 2>&1)
	rc=$?
	if [ $rc != 0 ] || [ -n "$out" ]; then
		echo "$out"
		fail "front unit: systemd-analyze verify exited $rc and printed the above"
	else
		echo "ok: front unit: systemd-analyze verify is silent"
	fi
else
	echo "note: no /usr/sbin/haproxy: the front unit is not verified"
fi

[ $status = 0 ] && echo "test_units: pass"
exit $status
