"""More than one host: two "hosts" as two network namespaces, each with its
own pukaipu state (Sysroot), its own front door (`pukaipu front reload` run
inside the namespace, listenAddress on its veth, frontProxyFrom the router's
address) and one instance whose desktop.sock is served by wsdesk.py (a
minimal HTTP + WebSocket backend, not xpra: routing is what is tested here;
test_e2e.py runs the real desktop through a front door). In front of them,
in the test's own namespace, a third, stock HAProxy in TCP mode routes by
req.ssl_sni with a map made of both hosts' `pukaipu front sni-map` output
and sends PROXY v2 (the configuration of pukaipu(8), MORE THAN ONE HOST).

From a real TLS client on 127.0.0.2: each user reaches their own desktop
and only theirs (another user's name refuses the handshake), and each
host's access log shows 127.0.0.2 with the client's port, not the router's
address. A connection from an address outside frontProxyFrom that starts
with a forged PROXY header is refused. Needs root, haproxy and ip."""
import json
import os
import re
import shutil
import socket
import subprocess
import time
import unittest

import harness as h
import wsdesk
from sysroot import Sysroot

TOOL = os.environ.get("PUKAIPU_TOOL", "")
FRONT_PORT = 8443
TAG = f"pkh{os.getpid() % 100000}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True, text=True)


class Host:
    """One host: namespace NS with veth 10.231.N.2 (router side 10.231.N.1)."""

    def __init__(self, n, user):
        self.n, self.user, self.ns = n, user, f"{TAG}{n}"
        self.addr, self.router = f"10.231.{n}.2", f"10.231.{n}.1"
        self.name = f"{user}.hosts.test"
        sh("ip", "netns", "add", self.ns)
        outer, inner = f"{TAG}o{n}", f"{TAG}i{n}"
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", self.ns)
        sh("ip", "addr", "add", f"{self.router}/24", "dev", outer)
        # A second address on the router's side, outside frontProxyFrom.
        sh("ip", "addr", "add", f"10.231.{n}.3/24", "dev", outer)
        sh("ip", "link", "set", outer, "up")
        for cmd in (["ip", "addr", "add", f"{self.addr}/24", "dev", inner], ["ip", "link", "set", inner, "up"],
                    ["ip", "link", "set", "lo", "up"]):
            sh("ip", "netns", "exec", self.ns, *cmd)
        self.s = Sysroot(f"hosts-{n}")
        with open(self.s.config, "w") as f:
            json.dump({"uidRange": [3500 + 10 * n, 3509 + 10 * n], "portRange": [26000 + 100 * n, 26099 + 100 * n],
                       "listenAddress": self.addr, "frontPort": FRONT_PORT, "domain": "hosts.test",
                       "frontProxyFrom": [self.router], "apparmor": {"policy": "optional"}}, f)
        self.front = os.path.join(self.s.root, "front")
        r = self.tool("create", user)
        assert r.returncode == 0, r.stderr
        passphrase = re.search(r"passphrase \(shown once, never stored\): (\S+)", r.stdout).group(1)
        p12 = os.path.join(self.s.state, "instances", user, "certs", "client.p12")
        self.crt, self.key = os.path.join(self.s.root, "c.crt"), os.path.join(self.s.root, "c.key")
        for out, opt in ((self.crt, "-nokeys"), (self.key, "-nocerts")):
            sh("openssl", "pkcs12", "-in", p12, "-passin", "pass:" + passphrase, opt, "-nodes", "-out", out)
        self.desk = wsdesk.Desk(os.path.join(self.s.run_dir, user, "desktop.sock"), f"host{n} {user}",
                                self.s.group_id("haproxy"))
        r = self.tool("front", "reload")
        assert r.returncode == 0, r.stderr
        self.ca = os.path.join(self.s.config_dir, "ca", "ca.crt")

    def tool(self, *args):
        """pukaipu inside this host's network namespace, with its own state."""
        return self.s.run(["ip", "netns", "exec", self.ns, TOOL, *args],
                          env={"PUKAIPU_FRONT_DIR": self.front,
                               "PUKAIPU_SYSTEMD_DIR": os.path.join(self.s.root, "systemd")})

    def log(self):
        with open(os.path.join(self.s.run_dir, "front.log")) as f:
            return f.read()

    def close(self):
        h.stop_front(os.path.join(self.s.run_dir, "front.pid"))
        self.desk.stop()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", f"{TAG}o{self.n}"], capture_output=True)
        self.s.cleanup()


ROUTER_CFG = """global
	log stdout format raw local0 info

defaults
	mode tcp
	log global
	timeout connect 5s
	timeout client 30s
	timeout server 30s
	timeout tunnel 8h

frontend sni-router
	bind 127.0.0.1:{port}
	tcp-request inspect-delay 5s
	tcp-request content accept if {{ req.ssl_hello_type 1 }}
	use_backend %[req.ssl_sni,lower,map({map})]
	default_backend nowhere

backend nowhere
	tcp-request content reject
"""


class Hosts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hosts, cls.router = [], None
        try:
            cls.hosts = [Host(1, "ua"), Host(2, "ub")]
            d = os.path.join(h.ensure_tmp(), "sni-router")
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            lines = ""
            for host in cls.hosts:
                r = host.tool("front", "sni-map")
                assert r.returncode == 0, r.stderr
                lines += r.stdout
            cls.sni_map = lines
            with open(os.path.join(d, "sni.map"), "w") as f:
                f.write(lines)
            cls.port = free_port()
            cfg = ROUTER_CFG.format(port=cls.port, map=os.path.join(d, "sni.map"))
            # One backend per host, named as the map names it: HOST:PORT.
            for addr in sorted({line.split()[1] for line in lines.splitlines()}):
                cfg += f"\nbackend {addr}\n\tserver front {addr} send-proxy-v2\n"
            with open(os.path.join(d, "haproxy.cfg"), "w") as f:
                f.write(cfg)
            cls.router = subprocess.Popen(["haproxy", "-db", "-f", os.path.join(d, "haproxy.cfg")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", cls.port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.router:
            cls.router.terminate()
            cls.router.wait(timeout=10)
        for host in cls.hosts:
            host.close()

    def get(self, host, name, cert_host=None, via=None):
        """(status, body, client port) of GET / for `name` with the client
        certificate of `cert_host`, from 127.0.0.2 through the router."""
        c = cert_host or host
        ctx = wsdesk.tls_context(c.crt, c.key, host.ca)
        try:
            sock = wsdesk.tls_socket(via or ("127.0.0.1", self.port), name, ctx, source=("127.0.0.2", 0))
        except OSError as e:
            return 0, str(e).encode(), 0
        with sock:
            port = sock.getsockname()[1]
            status, body = wsdesk.http_get(sock, f"{name}:{FRONT_PORT}")
            return status, body, port

    def test_sni_map_lines(self):
        self.assertEqual(self.sni_map, f"ua.hosts.test 10.231.1.2:{FRONT_PORT}\nub.hosts.test 10.231.2.2:{FRONT_PORT}\n")

    def test_each_user_reaches_their_own_desktop_only(self):
        a, b = self.hosts
        for host, other in ((a, b), (b, a)):
            status, body, port = self.get(host, host.name)
            self.assertEqual((status, body), (200, f"desktop host{host.n} {host.user}\n".encode()))
            # The real client, not the router (10.231.N.1), in that host's log.
            for _ in range(40):
                if f"client=127.0.0.2:{port} instance={host.name} " in host.log():
                    break
                time.sleep(0.05)
            line = next(x for x in host.log().splitlines() if f"client=127.0.0.2:{port} " in x)
            print(f"host{host.n} access log:", line)
            self.assertIn(f"instance={host.name} ", line)
            self.assertIn(" status=200 ", line)
            self.assertNotIn(host.router, host.log())
            # The other user's certificate on this name: the handshake fails.
            status, body, _ = self.get(host, host.name, cert_host=other)
            self.assertEqual(status, 0, body)
            # This user's certificate asking for the other host's desktop
            # by Host: 421, nothing is opened.
            ctx = wsdesk.tls_context(host.crt, host.key, host.ca)
            with wsdesk.tls_socket(("127.0.0.1", self.port), host.name, ctx) as sock:
                self.assertEqual(wsdesk.http_get(sock, f"{other.name}:{FRONT_PORT}")[0], 421)

    def test_proxy_header_only_from_front_proxy_from(self):
        a = self.hosts[0]
        # The router's address must send a header: a bare TLS handshake
        # from it is not taken for one.
        raw = socket.create_connection((a.addr, FRONT_PORT), timeout=5, source_address=(a.router, 0))
        ctx = wsdesk.tls_context(a.crt, a.key, a.ca)
        with self.assertRaises(OSError):
            ctx.wrap_socket(raw, server_hostname=a.name).close()
        raw.close()
        # Another address that forges one: refused, and never logged as 192.0.2.66.
        raw = socket.create_connection((a.addr, FRONT_PORT), timeout=5, source_address=("10.231.1.3", 0))
        raw.sendall(b"PROXY TCP4 192.0.2.66 10.231.1.2 4000 8443\r\n")
        with self.assertRaises(OSError):
            ctx.wrap_socket(raw, server_hostname=a.name).close()
        raw.close()
        time.sleep(0.2)
        self.assertNotIn("192.0.2.66", a.log())


if __name__ == "__main__":
    for tool in ("haproxy", "ip"):
        if not shutil.which(tool):
            print(f"SKIP: no {tool}")
            raise SystemExit(77)
    h.main()
