"""The real desktop (issue 4): Xpra + Xvfb + Qtile + Chromium from the rootfs
that rootfs-builder makes, under pukaipu-run with the Chrome-aware seccomp
profile (and its log-mode variant), the browser's own sandbox ON.

The payload is the rootfs's /usr/lib/pukaipu/xpra-session as PID 2 with a
socket-activated Unix socket (fd 3, bound here, root's alone), exactly as an
instance runs it: xpra serves plain HTTP/WebSocket there, TLS and the client
certificate are the front door's (HAProxy, tested through in test_e2e.py);
`--start=desktop-check` (tests/desktop) looks at the
desktop from inside the container and writes JSON into the home directory.
The container has loopback only, and the browser runs with background
networking off: nothing leaves the machine.

The rootfs is cached in /var/cache/pukaipu-tests/rootfs/default (override:
PUKAIPU_TEST_ROOTFS_CACHE) and rebuilt by rootfs-builder only when its
manifest or a file it copies changes (about 1-2 minutes with a good mirror).
"""
import os
import socket
import sys
import time
import unittest

import harness as h

sys.path.insert(0, os.path.join(h.SRC or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "tests", "desktop"))
import desktop_harness as d  # noqa: E402

ROOTFS = None


def setUpModule():
    global ROOTFS
    h.ensure_tmp()
    ROOTFS = d.ensure_rootfs("default")


def start_time(pid):
    """Field 22 of /proc/PID/stat (None when the process is gone): tells a
    surviving process from a new one that reused its PID."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def measure(line):
    print(f"MEASURE {line}", flush=True)


class DesktopRun:
    """One desktop under PROFILE, started once for the class; the tests read
    what was seen. Subclasses set PROFILE."""
    PROFILE = None
    STALE_LOCK = "crashed-host-4242"
    USER_QTILE_CONFIG = False  # a ~/.config/qtile/config.py with the bar at the bottom

    @classmethod
    def setUpClass(cls):
        cls.ready = cls.seen = cls.lock_after = None
        cls.page = ("not tried", "", b"")
        cls.pss_mib, cls.nprocs, cls.before = 0, 0, {}
        cls.sockets = None
        name = f"desktop-{cls.PROFILE}"
        cls.home = d.fresh_home(name)
        # A crash leftover the session start must clear.
        prof = os.path.join(cls.home, "brave-profile")
        os.mkdir(prof, 0o700)
        os.symlink(cls.STALE_LOCK, os.path.join(prof, "SingletonLock"))
        for p in (prof, os.path.join(prof, "SingletonLock")):
            os.lchown(p, d.UID, d.GID)
        if cls.USER_QTILE_CONFIG:
            with open(os.path.join(ROOTFS, "etc/xdg/qtile/config.py")) as f:
                text = f.read()
            assert "top=bar.Bar(" in text
            cfg = os.path.join(cls.home, ".config", "qtile")
            os.makedirs(cfg)
            with open(os.path.join(cfg, "config.py"), "w") as f:
                f.write(text.replace("top=bar.Bar(", "bottom=bar.Bar("))
            for p in (os.path.dirname(cfg), cfg, os.path.join(cfg, "config.py")):
                os.chown(p, d.UID, d.GID)
        cls.desk = d.Desktop(name, d.desktop_spec(ROOTFS, cls.home, seccomp=cls.PROFILE))
        try:
            cls.ready = d.wait_http_ready(cls.desk)
            cls.page = d.http_get(cls.desk.path)
            cls.seen = d.wait_check(cls.home, cls.desk)
            pids = cls.desk.pids()
            cls.pss_mib = cls.desk.pss_kib(pids) / 1024
            cls.nprocs = len(pids)
            cls.before = {p: start_time(p) for p in pids}
            cls.lock_after = os.readlink(os.path.join(prof, "SingletonLock")) \
                if os.path.islink(os.path.join(prof, "SingletonLock")) else None
            cls.sockets = cls.inspect_sockets(pids)
        finally:
            t0 = time.monotonic()
            cls.exit_status = cls.desk.stop()
            cls.stop_seconds = time.monotonic() - t0
            cls.left = [p for p, t in cls.before.items() if t is not None and start_time(p) == t]
        measure(f"profile={cls.PROFILE} socket_ready_s={cls.ready if cls.ready is None else round(cls.ready, 2)} "
                f"pss_mib={cls.pss_mib:.0f} processes={cls.nprocs} "
                f"desktop_complete_after_s={cls.seen and cls.seen.get('waited')} stop_s={cls.stop_seconds:.1f}")
        if not (cls.seen and cls.seen.get("complete")):
            print(f"--- pukaipu-run/xpra log tail ({cls.desk.log_path}):\n{cls.desk.log_tail(60)}", flush=True)

    @classmethod
    def inspect_sockets(cls, pids):
        """Last, while the desktop runs: the host-namespace sockets its
        processes hold, and shutdown+connect on each (desktop_harness)."""
        tcp = socket.create_server(("127.0.0.1", 0))
        upath = os.path.join(h.TMP, f"host-target-{cls.PROFILE}.sock")
        if os.path.exists(upath):
            os.unlink(upath)
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(upath)
        unix.listen(4)
        try:
            return d.inspect_sockets(pids, cls.desk.path, {socket.AF_INET: tcp.getsockname(),
                                                          socket.AF_UNIX: upath})
        finally:
            tcp.close()
            unix.close()
            os.unlink(upath)

    def setUp(self):
        self.assertIsNotNone(self.seen, "desktop-check wrote nothing; log:\n" + self.desk.log_tail(40))

    def procs(self, role):
        return [p for p in self.seen["processes"] if p["role"] == role]

    def test_socket_ready(self):
        self.assertIsNotNone(self.ready, "no HTTP 200 on the desktop socket within 60 s")
        self.assertLess(self.ready, 30)

    def test_serves_the_html5_client_in_plain_http(self):
        # What the front door forwards after TLS; the TLS checks (client
        # certificate required, another CA refused) are HAProxy's, in test_e2e.py.
        kind, status, body = self.page
        self.assertEqual(kind, "http", status)
        self.assertIn(" 200 ", status + " ")
        self.assertIn(b"xpra", body.lower())

    def test_xpra_xvfb_qtile_browser_run(self):
        for role in ("xpra", "xvfb", "qtile", "browser"):
            self.assertTrue(self.procs(role), f"no {role} process in the container")
        self.assertEqual(self.procs("xpra")[0]["pid"], 2, "xpra must be PID 2 (socket activation)")
        self.assertTrue(self.seen["complete"], "the desktop did not come up completely")

    def test_everything_is_the_user_and_confined(self):
        me = self.seen["self"]
        self.assertEqual(me["Seccomp"], "2")
        self.assertEqual(me["NoNewPrivs"], "1")
        self.assertEqual(me["CapEff"], "0000000000000000")
        for p in self.seen["processes"]:
            self.assertEqual(p["uid"], [str(d.UID)], p["argv"][:1])
            self.assertEqual(p["seccomp"], "2", f"pid {p['pid']} {p['argv'][:1]} not under seccomp")

    def test_browser_sandbox_is_on(self):
        for p in self.seen["processes"]:
            self.assertNotIn("--no-sandbox", p["argv"], p["argv"][:1])
        renderers = self.procs("browser:renderer")
        self.assertTrue(renderers, "no renderer process")
        own = int(self.seen["self"]["Seccomp_filters"])
        for r in renderers:
            # Nested namespaces, read from the container's /proc.
            self.assertTrue(r["ns_user"].startswith("user:["), r["ns_user"])
            self.assertNotEqual(r["ns_user"], self.seen["self"]["ns_user"], "renderer shares the container's userns")
            self.assertNotEqual(r["ns_pid"], self.seen["self"]["ns_pid"], "renderer shares the container's pidns")
            self.assertNotEqual(r["ns_net"], self.seen["self"]["ns_net"], "renderer shares the container's netns")
            self.assertGreaterEqual(len(r["nspid"]), 2, "renderer not in a nested PID namespace")
            # Seccomp: 2 (filter mode) with Chromium's own filter stacked on ours.
            self.assertEqual(r["seccomp"], "2")
            self.assertGreater(int(r["seccomp_filters"]), own, "renderer has no seccomp filter of its own")

    def test_browser_window_and_qtile_bar_exist(self):
        w = self.seen["windows"]
        self.assertTrue(w["browser_windows"], "no visible browser window")
        bars = [b for b in w["qtile_internal"] if b["viewable"] and b.get("Width") == w["screen"][0]]
        self.assertTrue(bars, f"no screen-wide Qtile bar: {w}")
        if self.USER_QTILE_CONFIG:
            # The user's ~/.config/qtile/config.py wins over /etc/xdg/qtile.
            self.assertEqual(bars[0].get("Absolute upper-left Y"), w["screen"][1] - bars[0]["Height"],
                             "the user's config puts the bar at the bottom")
        else:
            self.assertEqual(bars[0].get("Absolute upper-left Y"), 0, "the system config puts the bar at the top")

    def test_network_is_loopback_only_and_browser_quiet(self):
        net = self.seen["network"]
        self.assertEqual(net["interfaces"], ["lo"])
        self.assertEqual(net["ipv4_routes"], 0)
        self.assertEqual(net["ipv6_routes_not_lo"], 0)
        main = self.procs("browser")
        browser = [p for p in main if p["argv"] and p["argv"][0].endswith(("/chromium", "/brave"))]
        self.assertTrue(browser)
        for flag in ("--disable-background-networking", "--disable-component-update", "--no-pings",
                     "--user-data-dir=/data/home/brave-profile", "--no-first-run"):
            self.assertIn(flag, browser[0]["argv"])

    def test_no_tls_inside(self):
        # xpra does no TLS any more: no OpenSSL trust override, no certificate options.
        xpra = self.procs("xpra")[0]
        self.assertFalse(xpra["has_ssl_cert_env"], "xpra runs with SSL_CERT_FILE")
        self.assertIn("--ssl=off", xpra["argv"])
        self.assertFalse([a for a in xpra["argv"] if a.startswith(("--ssl-", "--bind-ssl"))], xpra["argv"])

    def test_no_socket_of_the_hosts_network_namespace(self):
        # Issue 12: the desktop's AF_UNIX listener (and what it accepted) is
        # the only socket it holds from the host's namespace, and it cannot
        # be turned into a client (shutdown + connect).
        self.assertIsNotNone(self.sockets)
        seen, findings = self.sockets
        self.assertGreater(seen, 10, "the desktop's processes hold hardly any socket: was it looked at?")
        self.assertEqual(findings, [])

    def test_no_private_key_inside(self):
        # Issue 12: TLS ends in the front door; no file the desktop's uid can
        # read holds a private key (desktop-check greps everything outside
        # /usr, /proc, /sys and /dev).
        k = self.seen["private_keys"]
        self.assertGreater(k["files"], 20, k)
        self.assertEqual(k["found"], [])

    def test_xpra_can_resize_window_icons(self):
        # xpra 3.1.5 + Pillow >= 10: the rootfs's pukaipu_pil_compat.
        self.assertTrue(self.seen["pillow"]["ok"], self.seen["pillow"])

    def test_new_commands_cannot_be_started(self):
        c = self.seen["control_start"]
        self.assertNotEqual(c["rc"], 0, c)

    def test_stale_singleton_lock_was_cleared(self):
        self.assertIsNotNone(self.lock_after, "the browser holds no SingletonLock")
        self.assertNotEqual(self.lock_after, self.STALE_LOCK)
        self.assertTrue(self.lock_after.startswith("pukaipu-desktop-"), self.lock_after)
        self.assertTrue(os.path.isdir(os.path.join(self.home, "Downloads")))

    def test_stops_cleanly(self):
        self.assertEqual(self.exit_status, 128 + 15, self.desk.log_tail(20))
        self.assertLess(self.stop_seconds, 15)
        self.assertEqual(self.left, [])


class DefaultProfile(DesktopRun, unittest.TestCase):
    PROFILE = "default"


class LogProfile(DesktopRun, unittest.TestCase):
    PROFILE = "log"
    USER_QTILE_CONFIG = True


class BrowserScript(unittest.TestCase):
    def test_refuses_no_sandbox(self):
        import subprocess
        home = d.fresh_home("browser-script")
        spec = d.desktop_spec(ROOTFS, home, args=["/usr/lib/pukaipu/browser", "--no-sandbox"])
        b = d.write_bundle("browser-script", spec)
        r = subprocess.run([d.RUN, "--bundle", b, "--apparmor", "optional",
                            "--seccomp-cache", os.path.join(h.TMP, "seccomp-cache")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("refusing '--no-sandbox'", r.stderr)


if __name__ == "__main__":
    h.main()
