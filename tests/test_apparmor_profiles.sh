#!/bin/bash
# Checks the AppArmor profiles in profiles/apparmor/ without loading them:
#   1. pukaipu-session compiles with the installed apparmor_parser (no kernel
#      needed), against Debian's pinned kernel feature set and against the
#      declared abi 3.0, with no error and no warning;
#   2. pukaipu-session.apparmor4 differs from it only by the abi line and
#      `userns,`; it is compiled too, strictly, with a 4.x parser: the
#      installed one, PUKAIPU_APPARMOR4_PARSER, or else Debian trixie's from a
#      cached mmdebstrap root (needs root and the Debian mirror);
#   3. the preprocessed policy (includes expanded) keeps the denials and
#      has no blanket allow: mount/umount/pivot_root denied, capabilities
#      only sys_admin + sys_chroot, no raw/packet network, no exec
#      transitions, writes only to the expected places.
# Exit status: 0 pass, 1 fail, 77 skip (apparmor_parser not installed).
#
# Environment:
#   PUKAIPU_SOURCE_ROOT       source tree (default: this script's parent dir)
#   APPARMOR_PARSER           parser to use (default: apparmor_parser)
#   PUKAIPU_APPARMOR4_PARSER  an AppArmor 4.x parser command, e.g. a wrapper
#                             around Debian trixie's or Ubuntu's, to compile
#                             the .apparmor4 variant on a 3.x host
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=${PUKAIPU_SOURCE_ROOT:-$(dirname "$here")}
dir=$root/profiles/apparmor
v3=$dir/pukaipu-session
v4=$dir/pukaipu-session.apparmor4
common=$dir/pukaipu-session.d/common

parser=${APPARMOR_PARSER:-}
if [ -z "$parser" ]; then
	parser=$(PATH=$PATH:/usr/sbin:/sbin command -v apparmor_parser || true)
fi
if [ -z "$parser" ] || ! "$parser" --version >/dev/null 2>&1; then
	echo "SKIP: apparmor_parser not found (install Debian's 'apparmor' package)"
	exit 77
fi

failures=0
checks=0
pass() { checks=$((checks + 1)); echo "ok: $*"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); echo "FAIL: $*"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for f in "$v3" "$v4" "$common"; do
	[ -f "$f" ] || { echo "FAIL: missing $f"; exit 1; }
done

version=$("$parser" --version | sed -n 's/^AppArmor parser version \([0-9][0-9.]*\).*/\1/p')
major=${version%%.*}
echo "parser: $parser (AppArmor $version)"

# The include <pukaipu-session.d/common> is found through -I; everything
# else (tunables, abstractions, abi) from the parser's own base directory.
inc=(-I "$dir")

# Kernel feature sets to compile against. Without AppArmor in the running
# kernel the parser would otherwise assume a feature set without mount,
# ptrace, signal and network mediation and silently drop those rules.
#   /usr/share/apparmor-features/features  the distribution's pinned set
#                                          (Debian 12: its 6.1 kernel)
#   /etc/apparmor.d/abi/3.0 (or 4.0)       the abi the profile declares
#                                          (with af_unix mediation, as Ubuntu)
#   kernel                                 the running kernel's, if any
featuresets=()
[ -f /usr/share/apparmor-features/features ] && featuresets+=(/usr/share/apparmor-features/features)
if [ "${major:-0}" -ge 4 ]; then
	[ -f /etc/apparmor.d/abi/4.0 ] && featuresets+=(/etc/apparmor.d/abi/4.0)
else
	[ -f /etc/apparmor.d/abi/3.0 ] && featuresets+=(/etc/apparmor.d/abi/3.0)
fi
[ -d /sys/kernel/security/apparmor/features ] && featuresets+=(kernel)
if [ ${#featuresets[@]} -eq 0 ]; then
	fail "no kernel feature set to compile against (no /usr/share/apparmor-features/features, no /etc/apparmor.d/abi/*, no AppArmor in the kernel)"
fi

# compile LABEL FEATURES FILE STRICT PARSER-COMMAND...
# Compiles without loading (-Q) or touching the cache (-K); the binary
# policy goes to $tmp/out (-S). FEATURES: a features file, "kernel" (the
# running kernel's) or "-" (whatever the parser command brings).
# Fails on a non-zero status, on any output on stderr (only the parser's
# "Cache read/write disabled" notice about a kernel without AppArmor is not
# about the profile) and on an empty policy. STRICT=1: also compile with
# --warn=all, where only the warnings in $benign may appear: D-Bus rules are
# enforced by dbus-daemon, never by the kernel; fine-grained unix rules and
# userns are downgraded/unenforced on kernels without that mediation
# (Debian's), which is expected.
benign='dbus rules not enforced|downgrading extended network unix socket rule to generic network rule|userns rules not enforced'
notice='^Cache read/write disabled: interface file missing'
compile() {
	local label=$1 features=$2 file=$3 strict=$4
	shift 4
	local fopt=()
	[ "$features" = - ] && features="the feature set its command brings"
	case $features in
	kernel | "the feature set its command brings") ;;
	*) fopt=(--kernel-features "$features") ;;
	esac
	local rc
	"$@" -Q -K -S "${fopt[@]}" "${inc[@]}" "$file" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ $rc -ne 0 ] || grep -v -E "$notice" "$tmp/err" | grep -q .; then
		fail "$label: $(basename "$file") against $features: exit $rc"
		sed 's/^/    /' "$tmp/err"
		return
	fi
	if ! [ -s "$tmp/out" ] || ! grep -qa 'pukaipu-session' "$tmp/out"; then
		fail "$label: $(basename "$file") against $features: no compiled policy named pukaipu-session"
		return
	fi
	if [ "$strict" = 1 ]; then
		"$@" -Q -K "${fopt[@]}" --warn=all "${inc[@]}" "$file" >/dev/null 2>"$tmp/err"
		if grep -v -E "^\$|$benign|$notice" "$tmp/err" >"$tmp/bad"; then
			fail "$label: $(basename "$file") against $features: warnings with --warn=all"
			sed 's/^/    /' "$tmp/bad"
			return
		fi
		pass "$label: $(basename "$file") compiles against $features with no error or warning (also --warn=all)"
	else
		pass "$label: $(basename "$file") compiles against $features with no error or warning"
	fi
}

# ---- 1. the profile compiles with the installed parser ----------------------
# A 3.x parser: the 3.0 profile, strictly. A 4.x parser: the .apparmor4
# profile strictly; the 3.0 one must still compile (with --warn=all a 4.x
# parser notes that its abstractions declare abi 4.0, hence the 4.x file).
for fs in "${featuresets[@]}"; do
	if [ "${major:-0}" -ge 4 ]; then
		compile "parser $version" "$fs" "$v4" 1 "$parser"
		compile "parser $version" "$fs" "$v3" 0 "$parser"
	else
		compile "parser $version" "$fs" "$v3" 1 "$parser"
	fi
done

names=$("$parser" -N -K -Q "${inc[@]}" "$v3" 2>/dev/null)
if [ "$names" = pukaipu-session ]; then
	pass "the profile is named pukaipu-session and is the only one"
else
	fail "profile names: '$names' (expected exactly 'pukaipu-session')"
fi

# ---- 2. the 4.x variant -----------------------------------------------------
if grep -qx 'abi <abi/3.0>,' "$v3" && ! grep -v '^[[:space:]]*#' "$v3" | grep -q 'userns'; then
	pass "pukaipu-session declares abi 3.0 and has no userns rule"
else
	fail "pukaipu-session must declare 'abi <abi/3.0>,' and must not mention userns (parser 3.0 rejects it)"
fi
if [ "$(grep -cx 'abi <abi/4.0>,' "$v4")" = 1 ] && [ "$(grep -cE '^[[:space:]]*userns,' "$v4")" = 1 ]; then
	pass "pukaipu-session.apparmor4 declares abi 4.0 and has one userns rule"
else
	fail "pukaipu-session.apparmor4 must have exactly one 'abi <abi/4.0>,' and one 'userns,' line"
fi
sed -e 's|^abi <abi/4\.0>,$|abi <abi/3.0>,|' -e '/^[[:space:]]*userns,[[:space:]]*$/d' "$v4" >"$tmp/v4-as-v3"
if diff -u "$v3" "$tmp/v4-as-v3" >"$tmp/diff"; then
	pass "pukaipu-session.apparmor4 differs from pukaipu-session only by the abi and userns lines"
else
	fail "pukaipu-session.apparmor4 differs from pukaipu-session by more than the abi and userns lines:"
	sed 's/^/    /' "$tmp/diff"
fi
# The userns rule must sit in the profile body, before the shared rules.
if awk '/^profile pukaipu-session /{p=1; next} p && /^[[:space:]]*userns,/{ok=1} p && /include <pukaipu-session.d\/common>/{exit} END{exit !ok}' "$v4"; then
	pass "userns, is inside profile pukaipu-session"
else
	fail "userns, is not inside the body of profile pukaipu-session"
fi
if grep -qE '^[[:space:]]*(abi|userns)' "$common"; then
	fail "pukaipu-session.d/common must not hold abi or userns lines (they are what differs)"
else
	pass "the shared rules hold no abi or userns line"
fi

# Without a 4.x parser given: Debian trixie's (AppArmor 4.1), from a small
# trixie root that mmdebstrap makes once (about 25 s, 80 MB; cached beside
# the other test roots, rebuilt when the recipe below changes). The wrapper
# runs it chrooted there, with this profile directory bind-mounted at the
# same path in a private mount namespace, against trixie's pinned features.
aa4_root() {
	local cache=${PUKAIPU_TEST_CACHE:-/var/cache/pukaipu-tests}
	local recipe="trixie apt apparmor v1"
	local key
	key=$(printf '%s' "$recipe" | sha256sum | cut -c1-12)
	local root=$cache/apparmor4-$key
	if [ ! -x "$root/usr/sbin/apparmor_parser" ]; then
		[ "$(id -u)" = 0 ] && command -v mmdebstrap >/dev/null || return 1
		mkdir -p "$cache" || return 1
		rm -rf "$root.tmp"
		echo "making a Debian trixie root with apparmor in $root (once)" >&2
		mmdebstrap --variant=apt --mode=root --quiet --include=apparmor \
			--aptopt='Acquire::Check-Valid-Until "false"' --dpkgopt='path-exclude=/usr/share/doc/*' \
			--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
			trixie "$root.tmp" http://deb.debian.org/debian >"$tmp/mmdebstrap.log" 2>&1 ||
			{ tail -5 "$tmp/mmdebstrap.log" >&2; rm -rf "$root.tmp"; return 1; }
		mv "$root.tmp" "$root" || return 1
	fi
	printf '%s\n' "$root"
}
if [ -z "${PUKAIPU_APPARMOR4_PARSER:-}" ] && [ "${major:-0}" -lt 4 ]; then
	if aa4=$(aa4_root); then
		cat >"$tmp/aa4-parser" <<EOF
#!/bin/sh
exec unshare --mount --propagation private sh -c 'mkdir -p "\$0$dir" && mount --bind "$dir" "\$0$dir" && exec chroot "\$0" apparmor_parser --kernel-features /usr/share/apparmor-features/features "\$@"' "$aa4" "\$@"
EOF
		chmod +x "$tmp/aa4-parser"
		PUKAIPU_APPARMOR4_PARSER=$tmp/aa4-parser
	else
		fail "no AppArmor 4.x parser: could not make the trixie root (mmdebstrap; see above)"
	fi
fi

# A 4.x parser given from outside (e.g. a wrapper around Debian trixie's or
# Ubuntu's apparmor_parser with its own base dir and features), or the
# trixie one above: compile the .apparmor4 file with it, strictly.
if [ -n "${PUKAIPU_APPARMOR4_PARSER:-}" ]; then
	v=$($PUKAIPU_APPARMOR4_PARSER --version 2>/dev/null | sed -n 's/^AppArmor parser version \([0-9][0-9.]*\).*/\1/p')
	if [ -z "$v" ] || [ "${v%%.*}" -lt 4 ]; then
		fail "PUKAIPU_APPARMOR4_PARSER=$PUKAIPU_APPARMOR4_PARSER is not an AppArmor 4.x parser (version '${v}')"
	else
		# shellcheck disable=SC2086
		compile "parser $v" - "$v4" 1 $PUKAIPU_APPARMOR4_PARSER
	fi
elif [ "${major:-0}" -lt 4 ]; then
	echo "note: no AppArmor 4.x parser here: pukaipu-session.apparmor4 is checked by the diff above (set PUKAIPU_APPARMOR4_PARSER to also compile it)"
fi

# ---- 3. what the policy allows and denies -----------------------------------
# -p: the profile with every include expanded (base, tunables, common).
if ! "$parser" -p -K "${inc[@]}" "$v3" >"$tmp/pre" 2>"$tmp/err" || ! [ -s "$tmp/pre" ]; then
	fail "apparmor_parser -p failed"
	sed 's/^/    /' "$tmp/err"
	echo "$failures of $checks checks failed"
	exit 1
fi
# One rule per line: strip comments and surrounding blanks.
sed -e 's/[[:space:]]#.*$//' -e 's/^#.*$//' -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' \
	-e 's/[[:space:]][[:space:]]*/ /g' "$tmp/pre" | grep -v '^$' >"$tmp/rules"

# Rules that must be there, exactly.
required=(
	'profile pukaipu-session flags=(attach_disconnected) {'
	'deny mount,'
	'deny umount,'
	'deny pivot_root,'
	'capability sys_admin,'
	'capability sys_chroot,'
	'deny capability sys_module,'
	'deny capability sys_rawio,'
	'deny capability sys_ptrace,'
	'deny capability mac_admin,'
	'deny capability mac_override,'
	'deny capability bpf,'
	'deny capability net_admin,'
	'deny capability net_raw,'
	'deny network inet raw,'
	'deny network inet6 raw,'
	'deny network packet,'
	'deny ptrace (trace),'
	'deny ptrace (read) peer=unconfined,'
	'deny signal (send) peer=unconfined,'
	'deny @{PROC}/[^0-9]** wl,'
	'deny @{sys}/** wl,'
	'@{PROC}/@{pid}/setgroups w,'
	'@{PROC}/@{pid}/uid_map w,'
	'@{PROC}/@{pid}/gid_map w,'
	'@{PROC}/@{pid}/oom_score_adj w,'
)
for r in "${required[@]}"; do
	if grep -qxF -- "$r" "$tmp/rules"; then
		pass "has: $r"
	else
		fail "missing rule: $r"
	fi
done
for f in sysrq-trigger kcore kmsg keys; do
	if grep -E '^deny @\{PROC\}/\{[^}]*\}' "$tmp/rules" | grep -qE "[{,]${f}[,}].* rwlk,"; then
		pass "denies @{PROC}/$f"
	else
		fail "no deny rule for @{PROC}/$f"
	fi
done
if grep -E '^deny @\{PROC\}/@\{pid\}/' "$tmp/rules" | grep -qE 'attr/\*\*.*mem'; then
	pass "denies writes to /proc/PID/attr and /proc/PID/mem"
else
	fail "no deny rule for /proc/PID/attr and /proc/PID/mem"
fi

# Allow rules: drop leading audit/allow qualifiers; deny rules are skipped.
grep -v '^deny ' "$tmp/rules" | sed -E 's/^(audit |allow )+//' >"$tmp/allow"

# No mount, umount, remount or pivot_root allowed in any form.
if grep -E '^(mount|umount|unmount|remount|pivot_root)([ ,]|$)' "$tmp/allow" >"$tmp/bad"; then
	fail "mount-type rules allowed:"; sed 's/^/    /' "$tmp/bad"
else
	pass "no mount, umount, remount or pivot_root allowed"
fi

# Capabilities: no blanket rule, and only sys_admin and sys_chroot.
if grep -E '^capability ?,' "$tmp/allow" >"$tmp/bad"; then
	fail "blanket capability allow:"; sed 's/^/    /' "$tmp/bad"
else
	pass "no blanket 'capability,'"
fi
caps=$(grep -E '^capability ' "$tmp/allow" | sed -E 's/^capability //; s/,$//' | tr ' ' '\n' | sort -u | tr '\n' ' ')
if [ "$caps" = "sys_admin sys_chroot " ]; then
	pass "capabilities allowed: only sys_admin and sys_chroot"
else
	fail "capabilities allowed: $caps(expected only sys_admin sys_chroot)"
fi

# Network: no blanket rule, no raw or packet, only inet/inet6/unix/netlink.
if grep -E '^network ?,|^network (raw|packet)|^network [a-z0-9]+ raw|^network packet' "$tmp/allow" |
	grep -vE '^network netlink raw,$' >"$tmp/bad"; then
	fail "network allows raw/packet or everything:"; sed 's/^/    /' "$tmp/bad"
else
	pass "no blanket network, raw (other than netlink) or packet socket allowed"
fi
if grep -E '^network ' "$tmp/allow" | grep -vE '^network (inet|inet6|unix|netlink)( [a-z]+)?,$' >"$tmp/bad"; then
	fail "network families beyond inet, inet6, unix, netlink:"; sed 's/^/    /' "$tmp/bad"
else
	pass "network families: only inet, inet6, unix, netlink"
fi

# No escape hatches.
if grep -E '^(change_profile|change_hat|userns|unconfined)([ ,]|$)|flags=\([^)]*(unconfined|complain)' "$tmp/rules" >"$tmp/bad"; then
	fail "change_profile/userns/unconfined/complain in the 3.0 policy:"; sed 's/^/    /' "$tmp/bad"
else
	pass "no change_profile, userns, unconfined or complain mode"
fi

# File rules: "[owner] PATH PERMS[ -> TARGET],".
awk '/^@\{[^}]*\} ?\+?=/ { next }   # variable definitions
/^(owner |file )*(\/|@\{|")/ {
	sub(/^(owner |file )+/, "")
	path = $1; perms = $2; sub(/,$/, "", perms)
	print path "\t" perms
}' "$tmp/allow" >"$tmp/files"
if ! [ -s "$tmp/files" ]; then
	fail "found no file rules in the preprocessed policy"
fi

# Exec: inherit only (ix); never px/cx/ux/pix/... transitions.
if awk -F'\t' '$2 ~ /x/ { p = $2; gsub(/ix/, "", p); if (p ~ /x/) print }' "$tmp/files" >"$tmp/bad" && [ -s "$tmp/bad" ]; then
	fail "exec rules other than ix:"; sed 's/^/    /' "$tmp/bad"
else
	pass "every exec rule is ix"
fi
# Exec: never from the writable trees.
if awk -F'\t' '$2 ~ /x/ && $1 ~ /^\/(data|tmp|run|dev)\/|^@\{run\}/' "$tmp/files" >"$tmp/bad" && [ -s "$tmp/bad" ]; then
	fail "exec allowed in a writable tree:"; sed 's/^/    /' "$tmp/bad"
else
	pass "no exec from /data, /tmp, /run or /dev"
fi

# Writes (w or a): only to these. The last group is abstractions/base's
# (journald/syslog sockets, ecryptfs private dirs).
write_ok='^(/data/home/|/tmp/|/run/|/dev/shm/)\{,\*\*\}$'
write_ok+='|^/dev/(ptmx|tty|null|zero|full|pts/\*)$'
write_ok+='|^@\{PROC\}/@\{pid\}/(setgroups|uid_map|gid_map|oom_score_adj|comm|task/@\{tid\}/comm)$'
write_ok+='|^/dev/log$|^@\{run\}/systemd/journal/(dev-log|socket|stdout)$'
write_ok+='|^@\{HOME\}/\.Private/\*\*$|^@\{HOMEDIRS\}/\.ecryptfs/\*/\.Private/\*\*$'
if awk -F'\t' -v ok="$write_ok" '$2 ~ /[wa]/ && $1 !~ ok' "$tmp/files" >"$tmp/bad" && [ -s "$tmp/bad" ]; then
	fail "writes allowed outside the expected places:"; sed 's/^/    /' "$tmp/bad"
else
	pass "writes only to /data/home, /tmp, /run, /dev/shm, ptys and the listed /proc/PID files"
fi
# ... which also rules out any blanket write (/**, /{,**}, @{PROC}/**, ...).
if awk -F'\t' '$2 ~ /[wa]/ && ($1 ~ /^\/(\*\*|\{,\*\*\})$/ || $1 ~ /^(@\{PROC\}|\/proc|@\{sys\}|\/sys)\/\*\*$/)' "$tmp/files" | grep -q .; then
	fail "blanket write rule present"
else
	pass "no blanket write rule (/**, /proc/**, /sys/**)"
fi

echo "$((checks - failures)) passed, $failures failed"
[ $failures -eq 0 ] || exit 1
exit 0
