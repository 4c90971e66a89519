"""The front door: `pukaipu front reload|status|sni-map` on instances made by
`pukaipu create`, in a private /etc and /home (Sysroot). Checks the files it
writes (serials as openssl prints them, Origins with the port, PEMs 0640
root:haproxy), that HAProxy starts and reloads, and bad input: a
configuration `haproxy -c` refuses keeps the old files and the running
HAProxy, with one line on stderr. Needs root and haproxy (skips without).

Behind it, each instance's desktop.sock is served by wsdesk.py (a minimal
HTTP + WebSocket backend, not xpra: test_e2e.py runs the real desktop), so
that from a real TLS client's side these tests see:
- `cert renew` through the runtime API: the old certificate refused within
  1 s (measured, printed), that user's open WebSocket closed, the other
  instance's open WebSocket kept, HAProxy's master pid unchanged;
- TLS 1.2 and 1.3 sessions (`openssl s_client -sess_out/-sess_in`) resumed
  with another instance's name, or after a renew: no 2xx from any desktop;
- a WebSocket idle longer than `timeout client` (2 s here, through
  PUKAIPU_FRONT_TEST_TIMEOUT_CLIENT) stays open (`timeout tunnel`);
- the access log line's fields."""
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
import time
import unittest

import harness as h
import wsdesk
from sysroot import Sysroot

TOOL = os.environ.get("PUKAIPU_TOOL", "")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest(root):
    d = hashlib.sha256()
    for name in sorted(os.listdir(root)):
        p = os.path.join(root, name)
        st = os.lstat(p)
        d.update(f"{name}:{st.st_mode:o}:{st.st_uid}:{st.st_gid}\n".encode())
        if stat.S_ISREG(st.st_mode):
            with open(p, "rb") as f:
                d.update(f.read())
    return d.hexdigest()


class Front(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Sysroot("front")
        cls.front = os.path.join(cls.s.root, "front")
        cls.port = free_port()
        cfg = {"uidRange": [3300, 3399], "portRange": [25500, 25599], "listenAddress": "127.0.0.1",
               "frontPort": cls.port, "domain": "front.test", "extraDomains": ["example.test"], "apparmor": {"policy": "optional"}}
        with open(cls.s.config, "w") as f:
            json.dump(cfg, f)
        cls.pem = {}
        for args in (["create", "fa"], ["create", "fb", "--fqdn", "Desk.Example.Test"]):
            r = cls.run_tool(*args)
            assert r.returncode == 0, r.stderr
            cls.take_pem(args[1], r.stdout)
        r = cls.run_tool("front", "reload")
        assert r.returncode == 0, r.stderr
        cls.reload_out = r.stdout
        gid = cls.s.group_id("haproxy")
        cls.desks = [wsdesk.Desk(os.path.join(cls.s.run_dir, u, "desktop.sock"), u, gid) for u in ("fa", "fb")]

    @classmethod
    def take_pem(cls, user, stdout):
        """The client certificate and key of client.p12, with the passphrase
        that `create` or `cert renew` printed."""
        passphrase = re.search(r"passphrase \(shown once, never stored\): (\S+)", stdout).group(1)
        p12 = os.path.join(cls.s.state, "instances", user, "certs", "client.p12")
        crt, key = os.path.join(cls.s.root, user + ".crt"), os.path.join(cls.s.root, user + ".key")
        for out, opt in ((crt, "-nokeys"), (key, "-nocerts")):
            subprocess.run(["openssl", "pkcs12", "-in", p12, "-passin", "pass:" + passphrase, opt, "-nodes",
                            "-out", out], check=True, capture_output=True)
        cls.pem[user] = (crt, key)

    @classmethod
    def run_tool(cls, *args):
        return cls.s.run([TOOL, *args], env={"PUKAIPU_FRONT_DIR": cls.front,
                                             "PUKAIPU_SYSTEMD_DIR": os.path.join(cls.s.root, "systemd"),
                                             "PUKAIPU_FRONT_TEST_TIMEOUT_CLIENT": "2"})

    @classmethod
    def master(cls):
        try:
            with open(os.path.join(cls.s.run_dir, "front.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    @classmethod
    def tearDownClass(cls):
        h.stop_front(os.path.join(cls.s.run_dir, "front.pid"))
        for d in getattr(cls, "desks", []):
            d.stop()
        cls.s.cleanup()

    def read(self, name):
        with open(os.path.join(self.front, name)) as f:
            return f.read()

    def certs(self, user):
        return os.path.join(self.s.state, "instances", user, "certs")

    def test_files(self):
        self.assertIn("started haproxy", self.reload_out)
        serial = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in",
                                 os.path.join(self.certs("fa"), "client.crt")],
                                capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
        self.assertIn(f"fa.front.test {serial}\n", self.read("serials.map"))
        self.assertIn(f"fa.front.test https://fa.front.test:{self.port}\n", self.read("origins.map"))
        self.assertIn("desk.example.test fb\n", self.read("backends.map"))
        crt_list = self.read("crt-list").splitlines()
        self.assertIn("default.pem [ca-file", crt_list[0])
        self.assertTrue(any(line.endswith("verify required] fa.front.test") for line in crt_list), crt_list)
        cfg = self.read("haproxy.cfg")
        self.assertIn(f"bind 127.0.0.1:{self.port} ssl crt-list {self.front}/crt-list", cfg)
        self.assertIn(f"server s unix@{self.s.run_dir}/fa/desktop.sock", cfg)
        gid = self.s.group_id("haproxy")
        st = os.stat(os.path.join(self.front, "fa.pem"))
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o777), (0, gid, 0o640))

    def test_status_and_sni_map(self):
        r = self.run_tool("front", "status")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("haproxy: running", r.stdout)
        self.assertIn(f"runtime API: {self.s.run_dir}/front-master.sock, 1 worker(s)\n", r.stdout)
        r = self.run_tool("front", "sni-map")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, f"fa.front.test 127.0.0.1:{self.port}\ndesk.example.test 127.0.0.1:{self.port}\n")

    def test_serves_tls(self):
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.port}", "-servername",
                            "fa.front.test", "-CAfile", os.path.join(self.s.config_dir, "ca", "ca.crt")],
                           input="", capture_output=True, text=True, timeout=20)
        self.assertIn("CN = fa.front.test", r.stdout)
        self.assertIn("Acceptable client certificate CA names", r.stdout)

    def test_haproxy_refuses_keeps_old(self):
        before, pid = digest(self.front), self.master()
        key = os.path.join(self.certs("fb"), "server.key")
        with open(key) as f:
            saved = f.read()
        try:
            with open(key, "w") as f:
                f.write("not a key\n")
            r = self.run_tool("front", "reload")
        finally:
            with open(key, "w") as f:
                f.write(saved)
        self.assertEqual(r.returncode, 1)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("haproxy -c refused the new configuration, the old one stays", lines[0])
        self.assertIn(f"{self.front}/fb.pem", lines[0])
        self.assertEqual(digest(self.front), before)
        self.assertFalse(os.path.exists(os.path.join(self.front, ".new")))
        self.assertEqual(self.master(), pid)

    def test_bad_front_port(self):
        bad = os.path.join(self.s.root, "bad.json")
        with open(bad, "w") as f:
            json.dump({"frontPort": 70000}, f)
        r = self.s.run([TOOL, "--config", bad, "front", "reload"], env={"PUKAIPU_FRONT_DIR": self.front})
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("frontPort", r.stderr)

    # --- clients --------------------------------------------------------

    NAMES = {"fa": "fa.front.test", "fb": "desk.example.test"}

    def ca(self):
        return os.path.join(self.s.config_dir, "ca", "ca.crt")

    def origin(self, name):
        return f"https://{name}:{self.port}"

    def ws(self, user, pem=None):
        """An open WebSocket to `user`'s desktop with its client certificate."""
        name = self.NAMES[user]
        crt, key = pem or self.pem[user]
        sock = wsdesk.tls_socket(("127.0.0.1", self.port), name, wsdesk.tls_context(crt, key, self.ca()))
        conn, status = wsdesk.upgrade(sock, f"{name}:{self.port}", self.origin(name))
        self.assertIsNotNone(conn, status)
        self.assertEqual(self.echo(conn, "hello " + user), "hello " + user)
        return conn

    @staticmethod
    def echo(conn, text):
        conn.send(text)
        msg = conn.recv()
        return msg[1].decode() if msg else None

    def get(self, user, pem=None, host=None, source=None):
        """(status, body) of GET / on `user`'s name; status 0: handshake refused."""
        name = self.NAMES[user]
        crt, key = pem or self.pem[user]
        try:
            sock = wsdesk.tls_socket(("127.0.0.1", self.port), name, wsdesk.tls_context(crt, key, self.ca()),
                                     source=source)
            with sock:
                return wsdesk.http_get(sock, host or f"{name}:{self.port}")
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            return 0, str(e).encode()

    def s_client(self, name, host, version, pem=None, sess_in=None, sess_out=None):
        """openssl s_client with one GET: (reused, HTTP status or 0). With
        sess_out, the file is removed first: it exists after only when the
        server gave something to resume (a session id or a ticket)."""
        argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{self.port}", "-servername", name, version,
                "-CAfile", self.ca(), "-ign_eof"]
        if pem:
            argv += ["-cert", pem[0], "-key", pem[1]]
        if sess_in:
            argv += ["-sess_in", sess_in]
        if sess_out:
            argv += ["-sess_out", sess_out]
            if os.path.exists(sess_out):
                os.unlink(sess_out)
        req = f"GET / HTTP/1.1\r\nHost: {host}:{self.port}\r\nConnection: close\r\n\r\n"
        r = subprocess.run(argv, input=req, capture_output=True, text=True, timeout=20)
        m = re.search(r"^HTTP/1\.[01] (\d{3})", r.stdout, re.M)
        return re.search(r"^Reused, TLS", r.stdout, re.M) is not None, int(m.group(1)) if m else 0

    # --- behaviour, from the client's side --------------------------------

    def test_access_log_fields(self):
        src = socket.socket()
        src.bind(("127.0.0.1", 0))
        port = src.getsockname()[1]
        src.close()
        status, body = self.get("fa", source=("127.0.0.1", port))
        self.assertEqual((status, body), (200, b"desktop fa\n"))
        serial = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", self.pem["fa"][0]],
                                capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
        line = ""
        for _ in range(40):
            with open(os.path.join(self.s.run_dir, "front.log")) as f:
                line = next((x for x in f if f"client=127.0.0.1:{port} " in x), "")
            if line:
                break
            time.sleep(0.05)
        print("access log:", line.strip())
        m = re.match(r"time=(\S+ \+0000) client=127\.0\.0\.1:(\d+) instance=(\S+) serial=(\S+) status=(\d+) "
                     r"bytes_out=(\d+) bytes_in=(\d+) backend=(\S+) duration_ms=(\d+) request=\"GET / HTTP/1\.1\"$",
                     line.strip())
        self.assertIsNotNone(m, line)
        self.assertRegex(m.group(1), r"^\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000$")
        self.assertEqual((int(m.group(2)), m.group(3), m.group(4), m.group(5), m.group(8)),
                         (port, "fa.front.test", serial, "200", "fa"))
        self.assertGreater(int(m.group(6)), len(body))

    def test_idle_websocket_outlives_timeout_client(self):
        cfg = self.read("haproxy.cfg")
        self.assertIn("timeout client 2s\n", cfg)
        self.assertIn("timeout tunnel 8h\n", cfg)
        conn = self.ws("fb")
        conn.sock.settimeout(10)
        time.sleep(3.5)
        self.assertEqual(self.echo(conn, "still here"), "still here")
        conn.close()

    def test_resumption_across_instances_opens_nothing(self):
        sess = os.path.join(self.s.root, "fa.sess")
        for version in ("-tls1_2", "-tls1_3"):
            with self.subTest(version=version):
                reused, status = self.s_client("fa.front.test", "fa.front.test", version, self.pem["fa"], sess_out=sess)
                self.assertEqual((reused, status), (False, 200))
                if not os.path.exists(sess):
                    # TLS 1.2 without a session cache: HAProxy sends an empty
                    # session id, s_client has nothing to save. Offer one
                    # anyway: the session a TLS 1.3 connection got.
                    self.assertEqual(version, "-tls1_2")
                    self.s_client("fa.front.test", "fa.front.test", "-tls1_3", self.pem["fa"], sess_out=sess)
                    print(f"{version}: no session id given; offering a TLS 1.3 session instead")
                self.assertGreater(os.path.getsize(sess), 0)
                # No resumption at all (tune.ssl.cachesize 0): not on fa's
                # own name, and not on fb's, where TLS 1.2 with a session
                # cache resumes fa's session, keeps its SNI and opened fa's
                # desktop for `Host: fa.front.test`. Without a certificate
                # the full handshake fails: nothing answers.
                own = self.s_client("fa.front.test", "fa.front.test", version, sess_in=sess)
                cross = [self.s_client("desk.example.test", host, version, sess_in=sess)
                         for host in ("desk.example.test", "fa.front.test")]
                print(f"{version}: fa's session offered on fa: (reused, status) = {own}; "
                      f"on desk.example.test for fb and fa: {cross}")
                for reused, status in [own] + cross:
                    self.assertEqual((reused, status), (False, 0))

    def test_x_renew_without_runtime_api_reloads(self):
        old = self.keep_old("fb")
        cli = os.path.join(self.s.run_dir, "front-master.sock")
        os.rename(cli, cli + ".away")
        try:
            r = self.run_tool("cert", "renew", "fb")
        finally:
            os.rename(cli + ".away", cli)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertRegex(lines[0], r"^pukaipu: note: front door: runtime API unavailable \(connect to '.*': "
                                   r"No such file or directory\); reloaded HAProxy instead")
        self.take_pem("fb", r.stdout)
        # The reload reads the files renew wrote: the new certificate opens
        # fb, the old one nothing.
        for _ in range(100):
            if self.get("fb")[0] == 200 and self.get("fb", pem=old)[0] == 0:
                break
            time.sleep(0.05)
        self.assertEqual(self.get("fb"), (200, b"desktop fb\n"))
        self.assertEqual(self.get("fb", pem=old)[0], 0)

    def test_y_renew_refuses_old_cert_and_closes_its_sessions(self):
        old = self.keep_old("fa")
        master = self.master()
        sessions = {}
        for version in ("-tls1_2", "-tls1_3"):
            sessions[version] = os.path.join(self.s.root, f"fa-old{version}.sess")
            self.assertEqual(self.s_client("fa.front.test", "fa.front.test", version, old,
                                           sess_out=sessions[version]), (False, 200))
            if not os.path.exists(sessions[version]):  # TLS 1.2: no session id (see above)
                self.s_client("fa.front.test", "fa.front.test", "-tls1_3", old, sess_out=sessions[version])
            self.assertGreater(os.path.getsize(sessions[version]), 0)
        fa_ws, fb_ws = self.ws("fa"), self.ws("fb")
        fa_ws.sock.settimeout(5)
        fb_ws.sock.settimeout(5)
        # A create reloads: both WebSockets stay on the old worker, which
        # the renew must reach as well (the master CLI's `@!PID`).
        r = self.run_tool("create", "fd")
        self.assertEqual(r.returncode, 0, r.stderr)
        for _ in range(100):
            if len(self.workers()) == 2:
                break
            time.sleep(0.05)
        self.assertEqual(len(self.workers()), 2, "an old worker holds the open WebSockets")
        self.assertEqual((self.echo(fa_ws, "x"), self.echo(fb_ws, "y")), ("x", "y"))
        log_size = os.path.getsize(os.path.join(self.s.run_dir, "front.log"))

        # New connections with the old certificate, one after another, while
        # `cert renew` runs: (start, status) each.
        attempts, stop = [], threading.Event()

        def poll():
            while not stop.is_set():
                t = time.monotonic()
                attempts.append((t, self.get("fa", pem=old)[0]))

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        r = self.run_tool("cert", "renew", "fa")
        t1 = time.monotonic()
        time.sleep(1.2)
        stop.set()
        poller.join()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")  # no "runtime API unavailable" note: no reload
        self.take_pem("fa", r.stdout)

        accepted = [t for t, st in attempts if st == 200]
        refused_after = [t for t, st in attempts if st != 200 and t >= t0]
        self.assertTrue(accepted and accepted[0] < t0, "the old certificate worked before the renew")
        self.assertTrue(refused_after, attempts)
        last_ok, first_refused = max(accepted) - t0, min(refused_after) - t0
        print(f"cert renew took {t1 - t0:.3f} s; old certificate last accepted at +{last_ok:.3f} s, "
              f"refused from +{first_refused:.3f} s ({len(attempts)} attempts); "
              f"refused {first_refused - (t1 - t0):+.3f} s after the command returned")
        self.assertLessEqual(max(accepted), t1, "the old certificate opened something after renew returned")
        self.assertLessEqual(min(refused_after), t1 + 1.0)
        self.assertTrue(all(st != 200 for t, st in attempts if t >= t1))

        # fa's open WebSocket is closed; fb's stays open; no reload happened.
        self.assertIsNone(fa_ws.recv())
        self.assertEqual(self.echo(fb_ws, "fb survives"), "fb survives")
        self.assertEqual(self.master(), master)
        with open(os.path.join(self.s.run_dir, "front.log")) as f:
            f.seek(log_size)
            self.assertNotIn("Reexecuting Master", f.read())
        fa_ws.close()
        # The new certificate opens fa; sessions of the old one open nothing.
        self.assertEqual(self.get("fa"), (200, b"desktop fa\n"))
        for version, sess in sessions.items():
            reused, status = self.s_client("fa.front.test", "fa.front.test", version, sess_in=sess)
            print(f"{version}: old certificate's session after renew: reused={reused} status={status}")
            self.assertEqual((reused, status), (False, 0))
        # What a restart would load is what runs: the files say the same.
        self.assertIn(f"fa.front.test {self.serial_of(self.pem['fa'][0])}\n", self.read("serials.map"))
        fb_ws.close()
        self.assertEqual(self.run_tool("remove", "fd").returncode, 0)

    def keep_old(self, user):
        """A copy of `user`'s current client certificate and key (take_pem
        overwrites the files after a renew)."""
        out = []
        for path in self.pem[user]:
            out.append(path + ".old")
            shutil.copy(path, out[-1])
        return tuple(out)

    def workers(self):
        """Worker pids from the master CLI's `show proc` (current first); []
        while the master re-executes itself for a reload."""
        out = b""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            try:
                sock.connect(os.path.join(self.s.run_dir, "front-master.sock"))
                sock.sendall(b"show proc\n")
                sock.shutdown(socket.SHUT_WR)
                while chunk := sock.recv(65536):
                    out += chunk
            except OSError:
                return []
        return [int(line.split()[0]) for line in out.decode().splitlines()
                if len(line.split()) > 1 and line.split()[1] == "worker"]

    def serial_of(self, crt):
        return subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", crt],
                              capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]

    def test_zz_remove_refreshes(self):
        r = self.run_tool("create", "fc")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("fc.front.test", self.read("backends.map"))
        r = self.run_tool("remove", "fc")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("fc.front.test", self.read("backends.map"))
        self.assertFalse(os.path.exists(os.path.join(self.front, "fc.pem")))


class FrontBadStart(unittest.TestCase):
    """The front door cannot start: its port is taken, or haproxy is not
    installed. One line that says which, exit 1, no HAProxy left running."""

    @classmethod
    def setUpClass(cls):
        cls.s = Sysroot("front-bad")
        cls.front = os.path.join(cls.s.root, "front")
        cls.busy = socket.create_server(("127.0.0.1", 0))
        cls.port = cls.busy.getsockname()[1]
        with open(cls.s.config, "w") as f:
            json.dump({"uidRange": [3300, 3399], "portRange": [25500, 25599], "listenAddress": "127.0.0.1",
                       "frontPort": cls.port, "domain": "front.test", "apparmor": {"policy": "optional"}}, f)
        r = cls.tool("create", "fz")
        assert r.returncode == 0, r.stderr

    @classmethod
    def tool(cls, *args, env=None):
        return cls.s.run([TOOL, *args], env={"PUKAIPU_FRONT_DIR": cls.front,
                                             "PUKAIPU_SYSTEMD_DIR": os.path.join(cls.s.root, "systemd"),
                                             **(env or {})})

    @classmethod
    def tearDownClass(cls):
        cls.busy.close()
        h.stop_haproxy(cls.s.run_dir)
        cls.s.cleanup()

    def assert_not_running(self):
        pid_file = os.path.join(self.s.run_dir, "front.pid")
        if os.path.exists(pid_file):
            with open(pid_file) as f:
                pid = int(f.read().split()[0] or 0)
            self.assertFalse(os.path.exists(f"/proc/{pid}") and
                             os.readlink(f"/proc/{pid}/exe").endswith("/haproxy"), "an HAProxy runs")

    def test_port_in_use(self):
        r = self.tool("front", "reload")
        self.assertEqual(r.returncode, 1, r.stdout)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("haproxy exited at start", lines[0])
        self.assertIn("Address already in use", lines[0])
        self.assertIn(f"127.0.0.1:{self.port}", lines[0])
        self.assert_not_running()

    def test_haproxy_missing(self):
        missing = os.path.join(self.s.root, "no-such-haproxy")
        r = self.tool("front", "reload", env={"PUKAIPU_HAPROXY": missing})
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertEqual(r.stderr.strip().splitlines(),
                         [f"pukaipu: haproxy not found at {missing}: install Debian's haproxy package"])
        self.assert_not_running()


if __name__ == "__main__":
    if not shutil.which("haproxy"):
        print("SKIP: no haproxy (apt-get install haproxy)")
        raise SystemExit(77)
    h.main()
