"""--network egress / none: egress works, nothing lateral does, nothing is left behind.

The test builds its own "internet" on this machine and sends traffic to nothing
else (only loopback and the test hosts below, in namespaces it created):

  host ── pktest-uh 203.0.113.1/30 ══ pktest-un 203.0.113.2 [netns pktest-up]
          routes: 198.51.100.0/24, 169.254.169.254/32,    lo: 198.51.100.10 (HTTP :80)
                  2001:db8::10/128 via pktest-up               169.254.169.254 (HTTP :80, a trap)
                                                               2001:db8::10 (HTTP :80)
  host ── pktest-ph 203.0.113.5/30 ══ pktest-pn 203.0.113.6 [netns pktest-priv]
          route: 10.99.0.0/24 via pktest-priv              lo: 10.99.0.10 (HTTP :80, private host)
                                                               10.99.0.53 (DNS :53, HTTP :80)
  host services: 127.0.0.1:HOSTLO and [::]:HOSTANY (HTTP, every host address)

Every route is dedicated (the host's default route is never touched) and
checked with `ip route get` before any container runs; every netns, link,
route and server is removed in a finally block, even on failure.
"""
import fcntl
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import unittest

import harness as h

UP, PRIV = "pktest-up", "pktest-priv"
HOSTLO, HOSTANY = 18081, 18082
UPSTREAM, UPSTREAM6 = "198.51.100.10", "2001:db8::10"
METADATA = "169.254.169.254"
PRIVATE, RESOLVER = "10.99.0.10", "10.99.0.53"
HOST_LINK, HOST_LINK6 = "203.0.113.1", "2001:db8:ff::1"
NAME = "up.pukaipu.test"

SERVER = r'''
import http.server, socket, socketserver, struct, sys
mode, addr, port, tag = sys.argv[1:5]
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
if mode == "http":
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = ("pktest-ok " + tag + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    class S(http.server.ThreadingHTTPServer):
        address_family = fam
        allow_reuse_address = True
        def server_bind(self):
            # Not HTTPServer's: its getfqdn() would send a DNS query.
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = tag, int(port)
    s = S((addr, int(port)), H)
    print("ready", flush=True)
    s.serve_forever()
A = {"up.pukaipu.test": ("198.51.100.10", "2001:db8::10")}
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((addr, int(port)))
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(512)
    try:
        tid, = struct.unpack(">H", q[:2])
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
            i += 1 + q[i]
        qtype, = struct.unpack(">H", q[i + 1:i + 3])
        name, end = ".".join(labels), i + 5
    except Exception:
        continue
    rdata = b""
    if name in A and qtype == 1:
        rdata = socket.inet_pton(socket.AF_INET, A[name][0])
    elif name in A and qtype == 28:
        rdata = socket.inet_pton(socket.AF_INET6, A[name][1])
    rcode = 0 if name in A else 3
    out = struct.pack(">HHHHHH", tid, 0x8180 | rcode, 1, 1 if rdata else 0, 0, 0) + q[12:end]
    if rdata:
        out += b"\xc0\x0c" + struct.pack(">HHIH", qtype, 1, 60, len(rdata)) + rdata
    s.sendto(out, peer)
'''

# Runs inside a container: one key=value line per destination.
CHECK = r'''
chk() { if timeout 3 wget -q -O /tmp/out "$2" 2>/dev/null && grep -q pktest-ok /tmp/out; then echo "$1=reached"; else echo "$1=blocked"; fi; }
echo "addr=$(ip -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')"
echo "v6addrs=$(grep -vc ' lo$' /proc/net/if_inet6)"
echo "routes=$(tail -n +2 /proc/net/route | wc -l)"
echo "v6routes=$(grep -v ' lo$' /proc/net/ipv6_route | wc -l)"
echo "v6off=$(cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6)"
if nslookup up.pukaipu.test 2>/dev/null | grep -q 198.51.100.10; then echo dns=ok; else echo dns=fail; fi
for t in "$@"; do chk "${t%%=*}" "${t#*=}"; done
'''


def sh(*args, check=True, ns=None):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


class Topology:
    """The fake internet. cleanup() is safe to call at any point."""

    def __init__(self):
        self.procs = []
        self.routes = []

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
        for r in self.routes:
            sh("ip", *r[:1], "route", "del", *r[1:], check=False)
        for link in ("pktest-uh", "pktest-ph"):
            sh("ip", "link", "del", link, check=False)
        for ns in (UP, PRIV):
            sh("ip", "netns", "del", ns, check=False)

    def serve(self, mode, ns, addr, port, tag):
        cmd = ([] if ns is None else ["ip", "netns", "exec", ns]) + \
              [sys.executable, "-c", SERVER, mode, addr, str(port), tag]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"server {mode} {addr}:{port}: {p.stderr.read()}")

    def route(self, fam, dst, via, dev):
        if sh("ip", fam, "route", "show", dst, check=False).strip():
            raise RuntimeError(f"the host already has a route for {dst}: not touching it")
        sh("ip", fam, "route", "add", dst, "via", via, "dev", dev)
        self.routes.append((fam, dst, "via", via, "dev", dev))
        got = sh("ip", fam, "route", "get", dst.split("/")[0])
        if f"dev {dev}" not in got:
            raise RuntimeError(f"{dst} does not route via {dev}: {got}")

    def link(self, host_if, ns_if, ns, host4, ns4, host6=None, ns6=None):
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
        # No link-local addresses: they would appear late and move the leak
        # check's baseline.
        sh("ip", "link", "set", host_if, "addrgenmode", "none")
        sh("ip", "link", "set", ns_if, "addrgenmode", "none", ns=ns)
        sh("ip", "addr", "add", host4 + "/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "addr", "add", ns4 + "/30", "dev", ns_if, ns=ns)
        if host6:
            sh("ip", "-6", "addr", "add", host6 + "/64", "dev", host_if, "nodad")
            sh("ip", "-6", "addr", "add", ns6 + "/64", "dev", ns_if, "nodad", ns=ns)
        sh("ip", "link", "set", ns_if, "up", ns=ns)
        # No default route in there: replies go to the host's address on the
        # link (masquerade), and nothing in a test netns can reach further.

    def build(self):
        self.cleanup()  # leftovers of an interrupted run
        self.link("pktest-uh", "pktest-un", UP, HOST_LINK, "203.0.113.2", HOST_LINK6, "2001:db8:ff::2")
        for a in (UPSTREAM + "/32", METADATA + "/32"):
            sh("ip", "addr", "add", a, "dev", "lo", ns=UP)
        sh("ip", "-6", "addr", "add", UPSTREAM6 + "/128", "dev", "lo", ns=UP)
        self.link("pktest-ph", "pktest-pn", PRIV, "203.0.113.5", "203.0.113.6")
        for a in (PRIVATE + "/32", RESOLVER + "/32"):
            sh("ip", "addr", "add", a, "dev", "lo", ns=PRIV)
        self.route("-4", "198.51.100.0/24", "203.0.113.2", "pktest-uh")
        self.route("-4", METADATA + "/32", "203.0.113.2", "pktest-uh")
        self.route("-4", "10.99.0.0/24", "203.0.113.6", "pktest-ph")
        self.route("-6", UPSTREAM6 + "/128", "2001:db8:ff::2", "pktest-uh")
        self.serve("http", UP, UPSTREAM, 80, "upstream")
        self.serve("http", UP, UPSTREAM6, 80, "upstream6")
        self.serve("http", UP, METADATA, 80, "metadata")
        self.serve("http", PRIV, PRIVATE, 80, "private")
        self.serve("http", PRIV, RESOLVER, 80, "resolver-http")
        self.serve("dns", PRIV, RESOLVER, 53, "dns")
        self.serve("http", None, "127.0.0.1", HOSTLO, "host-loopback")
        self.serve("http", None, "::", HOSTANY, "host-any")


TOPO = Topology()
ROOTFS = None


def net_rootfs():
    """The harness rootfs plus an empty /etc/resolv.conf to mount over."""
    base = h.rootfs()
    dest = os.path.join(h.TMP, "rootfs-net")
    stamp = os.path.join(h.TMP, "rootfs.stamp")
    mine = os.path.join(h.TMP, "rootfs-net.stamp")
    want = open(stamp).read()
    if not (os.path.isdir(dest) and os.path.exists(mine) and open(mine).read() == want):
        shutil.rmtree(dest, ignore_errors=True)
        subprocess.run(["cp", "-a", base, dest], check=True)
        with open(os.path.join(dest, "etc/resolv.conf"), "w"):
            pass
        os.chmod(os.path.join(dest, "etc/resolv.conf"), 0o644)
        with open(mine, "w") as f:
            f.write(want)
    return dest


def spec(args):
    s = h.base_spec(args)
    s["root"]["path"] = ROOTFS
    return s


def container(name, args, *extra):
    return h.run(h.bundle(name, spec(args)), *extra, timeout=120)


def popen(name, args, *extra):
    b = h.bundle(name, spec(args))
    return subprocess.Popen([h.RUN, "--bundle", b, "--seccomp-cache", os.path.join(h.TMP, "seccomp-cache"), *extra],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check(name, targets, *extra):
    args = ["/bin/sh", "-c", CHECK, "check"] + [f"{k}={v}" for k, v in targets.items()]
    r = container(name, args, "--network", "egress", "--dns", RESOLVER, *extra)
    return r, h.keyvals(r.stdout)


def setUpModule():
    global ROOTFS
    ROOTFS = net_rootfs()
    try:
        TOPO.build()
    except Exception:
        TOPO.cleanup()
        raise


def tearDownModule():
    TOPO.cleanup()


def pk_links_in(ns=None):
    return {l.split(":")[1].strip().split("@")[0] for l in sh("ip", "-o", "link", ns=ns).splitlines()
            if l.split(":")[1].strip().startswith("pk-")}


def pk_links():
    return pk_links_in()


class Egress(unittest.TestCase):
    def test_egress_and_nothing_else(self):
        # A second container, serving HTTP on its own address, running meanwhile.
        other = popen("net-other", ["/bin/sh", "-c",
                                    "ip -4 -o addr show dev eth0 | awk '{print \"addr=\" $4}'; "
                                    "httpd -p 8080 -h /etc; sleep 0.2; "
                                    "wget -q -O - http://127.0.0.1:8080/hostname >/dev/null && echo self=ok; "
                                    "exec sleep 1000"],
                      "--network", "egress", "--dns", RESOLVER)
        try:
            other_addr = other.stdout.readline().strip().split("=")[1].split("/")[0]
            self.assertEqual(other.stdout.readline().strip(), "self=ok", "control: the other container serves")
            gateway = other_addr.rsplit(".", 1)[0] + "." + str(int(other_addr.rsplit(".", 1)[1]) - 1)
            r, kv = check("net-check", {
                "upstream": f"http://{UPSTREAM}/",
                "upstream6": f"http://[{UPSTREAM6}]/",
                "hostlo": f"http://127.0.0.1:{HOSTLO}/",
                "hostlink": f"http://{HOST_LINK}:{HOSTANY}/",
                "hostlink6": f"http://[{HOST_LINK6}]:{HOSTANY}/",
                "hostgw_other": f"http://{gateway}:{HOSTANY}/",
                "other": f"http://{other_addr}:8080/hostname",
                "metadata": f"http://{METADATA}/",
                "private": f"http://{PRIVATE}/",
                "resolver_http": f"http://{RESOLVER}/",
            })
            self.assertEqual(r.returncode, 0, r.stderr)
            own = kv["addr"].split("/")[0]
            self.assertTrue(own.startswith("10.233.") and kv["addr"].endswith("/31"), kv)
            self.assertNotEqual(own, other_addr, "two containers at once have distinct addresses")
            self.assertEqual(kv["upstream"], "reached", r.stdout)
            self.assertEqual(kv["dns"], "ok", "DNS through the test resolver (a private address, port 53 only)")
            for k in ("upstream6", "hostlo", "hostlink", "hostlink6", "hostgw_other", "other", "metadata",
                      "private", "resolver_http"):
                self.assertEqual(kv[k], "blocked", f"{k}: {r.stdout}")
            self.assertEqual(kv["v6addrs"], "0", "no IPv6 address but ::1")
            self.assertEqual(kv["v6routes"], "0", "no IPv6 route but lo's")
            self.assertEqual(kv["v6off"], "1", "IPv6 is off on eth0")
            self.assertEqual(kv["routes"], "2", "a /31 and the default route")
            # Nothing reaches a container from outside either, the host included.
            inbound = subprocess.run(["timeout", "3", "python3", "-c",
                                             "import socket,sys; socket.create_connection((sys.argv[1], 8080), 2)",
                                             other_addr], capture_output=True)
            self.assertNotEqual(inbound.returncode, 0, "the host reached a container's port")
        finally:
            other.kill()
            other.communicate()

    def test_concurrent_starts_get_distinct_addresses(self):
        # All alive at once: a slot is free again as soon as its container is gone.
        ps = [popen(f"net-many-{i}", ["/bin/sh", "-c", "ip -4 -o addr show dev eth0 | awk '{print $4}'; "
                                      "exec sleep 1000"], "--network", "egress", "--dns", RESOLVER)
              for i in range(8)]
        try:
            addrs = [p.stdout.readline().strip() for p in ps]
        finally:
            for p in ps:
                p.kill()
                p.communicate()
        self.assertTrue(all(a.startswith("10.233.") for a in addrs), addrs)
        self.assertEqual(len(set(addrs)), 8, addrs)

    def test_pool_is_host_wide(self):
        p = popen("net-pool-a", ["/bin/sh", "-c", "echo up; exec sleep 1000"], "--network", "egress", "--dns", RESOLVER)
        try:
            self.assertEqual(p.stdout.readline().strip(), "up")
            r = container("net-pool-b", ["/bin/true"], "--network", "egress", "--dns", RESOLVER,
                          "--network-pool", "10.234.0.0/16")
            self.assertEqual(r.returncode, 125)
            self.assertIn("the pool is host-wide", r.stderr)
        finally:
            p.kill()
            p.communicate()

    def test_own_gateway_is_a_host_address_and_blocked(self):
        r, kv = check("net-gw", {})
        self.assertEqual(r.returncode, 0, r.stderr)
        own = kv["addr"].split("/")[0]
        gw = own.rsplit(".", 1)[0] + "." + str(int(own.rsplit(".", 1)[1]) - 1)
        r, kv = check("net-gw", {"gw": f"http://{gw}:{HOSTANY}/"})
        self.assertEqual(kv["gw"], "blocked", r.stdout)

    def test_allowlist_opens_private_ranges_but_never_link_local(self):
        r, kv = check("net-allow", {"private": f"http://{PRIVATE}/", "metadata": f"http://{METADATA}/"},
                      "--network-allow", "10.99.0.0/24", "--network-allow", "169.254.0.0/16")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(kv["private"], "reached", r.stdout)
        self.assertEqual(kv["metadata"], "blocked", r.stdout)

    def test_resolv_conf_is_read_only(self):
        r = container("net-resolv", ["/bin/sh", "-c", "cat /etc/resolv.conf; echo x >/etc/resolv.conf && echo WROTE; true"],
                      "--network", "egress", "--dns", RESOLVER)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"nameserver {RESOLVER}", r.stdout)
        self.assertNotIn("WROTE", r.stdout)


    def test_default_nameservers_are_the_hosts(self):
        # Only the file is compared: no query goes to the host's resolvers.
        with open("/etc/resolv.conf") as f:
            want = [l.split()[1] for l in f if l.startswith("nameserver") and len(l.split()) > 1
                    and "." in l.split()[1] and not l.split()[1].startswith("127.")]
        r = container("net-resolv-default", ["/bin/cat", "/etc/resolv.conf"], "--network", "egress")
        if not want:
            self.assertEqual(r.returncode, 125, r.stdout)
            self.assertIn("--dns", r.stderr)
            return
        self.assertEqual(r.returncode, 0, r.stderr)
        got = [l.split()[1] for l in r.stdout.splitlines() if l.startswith("nameserver")]
        self.assertEqual(got, list(dict.fromkeys(want))[:3])

    def test_rootfs_without_resolv_conf_warns(self):
        b = h.bundle("net-noresolv", h.base_spec(["/bin/sh", "-c", "test -e /etc/resolv.conf || echo absent"]))
        r = h.run(b, "--network", "egress", "--dns", RESOLVER)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("absent", r.stdout)
        self.assertIn("no /etc/resolv.conf", r.stderr)


class Modes(unittest.TestCase):
    def test_none_has_no_route(self):
        r = container("net-none", ["/bin/sh", "-c",
                                   "echo routes=$(tail -n +2 /proc/net/route | wc -l); "
                                   f"timeout 3 wget -q -O - http://{UPSTREAM}/ 2>&1 || echo wget=failed"],
                      "--network", "none")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("routes=0", r.stdout)
        self.assertIn("wget=failed", r.stdout)
        self.assertNotIn("pktest-ok", r.stdout)

    def test_host_is_refused_even_when_allowed(self):
        r = container("net-host", ["/bin/true"], "--network", "host")
        self.assertEqual(r.returncode, 125)
        self.assertIn("--allow-host-network", r.stderr)
        r = container("net-host", ["/bin/true"], "--network", "host", "--allow-host-network")
        self.assertEqual(r.returncode, 125)
        self.assertIn("own network namespace", r.stderr)

    def test_bad_options_are_clear_errors(self):
        for extra, msg in ((["--network", "egress", "--network-allow", "10.0.0.1/8"], "did you mean 10.0.0.0/8"),
                           (["--network", "egress", "--dns", "127.0.0.53"], "cannot reach 127.0.0.0/8"),
                           (["--network", "egress", "--dns", HOST_LINK], "an address of this host"),
                           (["--network", "egress", "--dns", "fd00::53"], "IPv6"),
                           (["--dns", RESOLVER], "need --network egress"),
                           (["--network", "bridge"], "expected none, egress or host")):
            r = container("net-bad", ["/bin/true"], *extra)
            self.assertEqual(r.returncode, 125, extra)
            self.assertIn(msg, r.stderr, extra)


def state():
    links = sorted(l.split(":")[1].strip() for l in sh("ip", "-o", "link").splitlines())
    addrs = sorted(" ".join(l.split()[1:4]) for l in sh("ip", "-o", "addr").splitlines())
    return {
        "links": links,
        "addrs": addrs,
        "routes4": sh("ip", "-4", "route", "show", "table", "all"),
        "routes6": sh("ip", "-6", "route", "show", "table", "all"),
        "netns": sh("ip", "netns", "list"),
        "nft": sh("nft", "list", "ruleset"),
    }


def settled_state(timeout=30):
    """state() once two readings 0.2 s apart agree and no route names a
    device that is already gone (ip prints those as "ifN")."""
    deadline = time.monotonic() + timeout
    last = state()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = state()
        unresolved = any(w.startswith("if") and w[2:].isdigit()
                         for k in ("routes4", "routes6") for w in now[k].split())
        if now == last and not unresolved:
            return now
        last = now
    raise AssertionError(f"host network state did not settle in {timeout} s")


class Cleanup(unittest.TestCase):
    maxDiff = None

    def test_100_sigkills_leave_nothing_behind(self):
        # Containers started before this test (not by it) may hold veths; a
        # leak is a veth that was not there when the test began.
        preexisting = set(pk_links())
        ours = lambda: set(pk_links()) - preexisting  # noqa: E731
        r = container("net-warm", ["/bin/true"], "--network", "egress", "--dns", RESOLVER)
        self.assertEqual(r.returncode, 0, r.stderr)  # the static host table exists from here on
        # The kernel tears a dead namespace's veth down asynchronously: the
        # link goes first, its routes a moment later (shown as "dev ifN").
        # The reference state is the one after net-warm's teardown settled.
        self.assertTrue(h.wait_for(lambda: not ours(), timeout=30), ours())
        before = settled_state()
        rng = random.Random(5)
        t0 = time.monotonic()
        for i in range(100):
            p = popen("net-kill", ["/bin/sleep", "1000"], "--network", "egress", "--dns", RESOLVER)
            if i % 2 == 0:  # running: killed with its network complete
                def running():
                    init = h.children_of(p.pid)
                    return init and all(h.children_of(x) for x in init)
                self.assertTrue(h.wait_for(running, timeout=10), f"cycle {i}: {p.stderr.read() if p.poll() else ''}")
            else:  # anywhere during setup
                time.sleep(rng.uniform(0, 0.03))
            p.send_signal(signal.SIGKILL)
            p.communicate()
        elapsed = time.monotonic() - t0
        gone = h.wait_for(lambda: not ours(), timeout=60, step=0.1)
        drained = time.monotonic() - t0 - elapsed
        print(f"100 start/SIGKILL cycles: {elapsed:.1f} s; veths gone {drained:.1f} s later", file=sys.stderr)
        self.assertTrue(gone, f"veths left: {ours()}")
        # A killed pukaipu-run leaves its link's chain (link-IFINDEX) in the
        # host table, inert: no link has that ifindex any more. The next
        # start deletes it, and a normal exit deletes the container's own.
        leftover = [c for c in sh("nft", "list", "table", "inet", "pukaipu").split() if c.startswith("link-")]
        r = container("net-warm", ["/bin/true"], "--network", "egress", "--dns", RESOLVER)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(h.wait_for(lambda: not ours(), timeout=30), ours())
        print(f"link chains left by the kills, before the next start: {len(leftover)}", file=sys.stderr)
        h.wait_for(lambda: state() == before, timeout=30, step=0.1)
        after = state()
        for k in before:
            self.assertEqual(after[k], before[k], k)


if __name__ == "__main__":
    h.skip_unless_possible()
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            print(f"SKIP: '{tool}' is not installed (run .ci/install-deps)")
            sys.exit(77)
    # One run at a time on this host: the topology's names, routes and the
    # leak check's view of the host are host-wide.
    lock = open("/run/lock/pukaipu-test-network.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("waiting for another run of test_network on this host", file=sys.stderr)
        fcntl.flock(lock, fcntl.LOCK_EX)
    h.main()
