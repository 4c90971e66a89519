"""The escape battery (issue 8): inside a running instance, as its user, a
probe tries to get out, and every attempt must fail while the browser's own
sandbox keeps working.

Two instances are made with the real `pukaipu create` in a private copy of
/etc and /home (sysroot.py), and run with the real `pukaipu-run USER`:
- bob: the real desktop (the rootfs's xpra-session: Xvfb + Qtile + Chromium,
  PUKAIPU_TEST_OFFLINE=1, network mode none). session.command passes
  `--start=/data/home/escape-run` to xpra, so xpra itself starts the probe
  (tests/escape/, built static, copied into bob's home) next to the browser:
  as bob, in the same namespaces, under the same seccomp filter, after the
  privilege drop. The probe never goes through nsenter or anything else from
  the host.
- alice: a second instance whose payload is a bare Xvfb on display :177 (no
  auth) with a secret in her home (0755 home, 0644 file: only the mount
  namespace keeps bob out).

On the host the test plants what the probe then tries to reach: canaries
holding a random token (in the /etc that pukaipu-run sees and in a
world-readable host directory), a TCP service on 127.0.0.1 and ::1, an
abstract and a path Unix socket, a SysV shared memory segment, a sentinel
process running as bob's own uid (it writes into bob's home if any signal
reaches it), and in bob's home root-owned setuid, setgid and file-capability
copies of the probe and a root-only file. It passes their names in
~/escape.conf.

The probe writes ~/escape.out: one line per attempt, NAME=blocked|ESCAPED
DETAIL, the browser sandbox checks, a summary. The test prints the whole
report and fails if anything escaped or was not judged, if fewer than 40
attempts ran, if the browser's sandbox was not on before and after, or if
the host saw anything (sentinel signalled, a listener got a connection, the
supervisor or alice died). Alice's X server is checked from her own
namespaces as a control: it was there to be attacked.

Needs root and the rootfs that tests/desktop builds (cached in
/var/cache/pukaipu-tests/rootfs): a few seconds once that cache is warm,
the first rootfs build takes minutes.
"""
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import unittest

import harness as h
from sysroot import Sysroot

sys.path.insert(0, os.path.join(h.SRC or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "tests", "desktop"))
import desktop_harness as d  # noqa: E402

# meson passes the probe as the first argument (unittest parses the rest).
ESCAPE = sys.argv.pop(1) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else \
    os.environ.get("PUKAIPU_ESCAPE", "")
TOOL = os.environ.get("PUKAIPU_TOOL", "")
HOST_PYTHON = "/usr/bin/python3"  # runs as bob: not a python under /root
ALICE_DISPLAY = "177"
MIN_ATTEMPTS = 40
PROBE_TIMEOUT = 150
LINE = re.compile(r"^([a-z0-9_]+)=(blocked|ESCAPED|ERROR)(?: (.*))?$")
CHECK = re.compile(r"^check:([a-z0-9_]+)=(ok|FAILED)(?: (.*))?$")

SENTINEL = r"""
import signal, sys, time
hit = sys.argv[2]
def got(sig, frame):
    with open(hit, "a") as f:
        f.write(signal.Signals(sig).name + "\n")
for s in (signal.SIGCONT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGINT, signal.SIGTERM,
          signal.SIGWINCH, signal.SIGALRM):
    signal.signal(s, got)
while True:
    time.sleep(3600)
"""


def log(msg):
    print(msg, flush=True)


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


def skip_unless_possible():
    if os.geteuid() != 0:
        skip("needs root (pukaipu create, pukaipu-run, namespaces)")
    if not (h.RUN and TOOL and ESCAPE and h.SRC):
        skip("run through meson test (PUKAIPU_RUN, PUKAIPU_TOOL, PUKAIPU_SOURCE_ROOT or the probe path missing)")
    if not os.path.exists("/proc/self/ns/user"):
        skip("kernel without user namespaces")
    for tool in ("unshare", "nsenter", "useradd"):
        if not shutil.which(tool):
            skip(f"{tool} is not installed (run .ci/install-deps)")
    if not os.access(HOST_PYTHON, os.X_OK):
        skip(f"{HOST_PYTHON} is missing (the sentinel runs as the instance's user)")


def set_owner_mode(path, uid, gid, mode):
    os.chown(path, uid, gid)  # first: chown clears the setuid/setgid bits
    os.chmod(path, mode)


def write_file(path, text, uid=0, gid=0, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    set_owner_mode(path, uid, gid, mode)


def copy_file(src, dst, uid, gid, mode):
    shutil.copyfile(src, dst)
    set_owner_mode(dst, uid, gid, mode)


def file_caps_xattr():
    """security.capability v2: cap_dac_override, cap_setuid, cap_sys_admin, +ep."""
    perm = (1 << 1) | (1 << 7) | (1 << 21)
    return struct.pack("<IIIII", 0x02000000 | 0x1, perm, 0, 0, 0)


class SysvShm:
    """A SysV shared memory segment in the host's IPC namespace."""

    IPC_CREAT, IPC_EXCL, IPC_RMID = 0o1000, 0o2000, 0

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.key = self.id = None
        for _ in range(20):
            key = secrets.randbelow(0x3fffffff) + 0x10000000
            shmid = self.libc.shmget(ctypes.c_int(key), ctypes.c_size_t(4096),
                                     ctypes.c_int(self.IPC_CREAT | self.IPC_EXCL | 0o666))
            if shmid >= 0:
                self.key, self.id = key, shmid
                return
        raise OSError(ctypes.get_errno(), "shmget")

    def remove(self):
        if self.id is not None:
            self.libc.shmctl(ctypes.c_int(self.id), ctypes.c_int(self.IPC_RMID), None)
            self.id = None


class HostListeners:
    """Services on the host that nothing in an instance may reach."""

    def __init__(self, token, unix_path):
        self.socks = {}
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        self.socks["tcp"] = tcp
        try:
            tcp6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            tcp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            tcp6.bind(("::1", 0))
            self.socks["tcp6"] = tcp6
        except OSError:
            pass  # no IPv6 on the host: the probe's attempt still runs
        self.abstract = f"pukaipu-escape-{token}"
        ab = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ab.bind("\0" + self.abstract)
        self.socks["abstract"] = ab
        self.unix_path = unix_path
        if os.path.exists(unix_path):
            os.unlink(unix_path)
        ux = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ux.bind(unix_path)
        os.chmod(unix_path, 0o777)
        self.socks["unix"] = ux
        for s in self.socks.values():
            s.listen(16)
            s.setblocking(False)

    def port(self, name):
        s = self.socks.get(name)
        return s.getsockname()[1] if s else 1

    def connections(self):
        """Names of the listeners that got a connection."""
        got = []
        for name, s in self.socks.items():
            try:
                c, _ = s.accept()
                c.close()
                got.append(name)
            except (BlockingIOError, OSError):
                pass
        return got

    def close(self):
        for s in self.socks.values():
            s.close()
        try:
            os.unlink(self.unix_path)
        except OSError:
            pass


def host_ipv4():
    r = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True)
    m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", r.stdout or "")
    return m.group(1) if m else ""








class EscapeBattery(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.report, cls.host, cls.host_attempts = "", {}, []
        cls.timings = {}
        cls.s = Sysroot("escape")
        cls.bob = cls.alice = cls.sentinel = cls.listeners = cls.shm = None
        t0 = time.monotonic()
        try:
            cls.run_battery(t0)
        finally:
            cls.teardown_all()
            cls.timings["total_s"] = round(time.monotonic() - t0, 1)
            cls.print_report()

    @classmethod
    def run_battery(cls, t0):
        s = cls.s
        h.ensure_tmp()
        rootfs = d.ensure_rootfs("default")
        cls.timings["rootfs_s"] = round(time.monotonic() - t0, 1)
        token = secrets.token_hex(16)
        cls.token = token

        # --- configuration and the two instances ------------------------------
        cfg = {
            "rootfs": rootfs,
            "uidRange": [3400, 3499],
            "portRange": [26400, 26499],
            "listenAddress": "127.0.0.1",
            "domain": "escape.test",
            "apparmor": {"policy": "optional"},
            "seccompProfile": os.path.join(h.SRC, "profiles/seccomp/default.json"),
            "session": {"command": ["/usr/bin/env", "PUKAIPU_TEST_OFFLINE=1", "/usr/lib/pukaipu/xpra-session",
                                    "--start=/data/home/escape-run"],
                        "shell": ["/bin/sh"]},
            "network": {"mode": "none"},
            "graceSeconds": 5,
        }
        with open(s.config, "w") as f:
            json.dump(cfg, f)
        # alice: same instances, another payload (a bare X server to attack).
        # Without LISTEN_FDS/LISTEN_PID: Xvfb (xserver 21) takes a socket-
        # activated Unix socket as its own, and would listen on alice's
        # desktop.sock instead of /tmp/.X11-unix/X<N> (env execs: still PID 2).
        alice_cfg = os.path.join(s.config_dir, "pukaipu-alice.json")
        cfg_a = dict(cfg, session={"command": ["/usr/bin/env", "-u", "LISTEN_FDS", "-u", "LISTEN_PID",
                                               "/usr/bin/Xvfb", f":{ALICE_DISPLAY}", "-nolisten", "tcp"],
                                   "shell": ["/bin/sh"]})
        with open(alice_cfg, "w") as f:
            json.dump(cfg_a, f)

        ids = {}
        for user in ("bob", "alice"):
            r = s.run([TOOL, "create", user, "--fqdn", f"{user}.escape.test"])
            if r.returncode:
                raise RuntimeError(f"pukaipu create {user}: {r.stderr.strip()}")
            m = re.search(r"uid (\d+), port (\d+)", r.stdout)
            pw = s.passwd()[user]
            ids[user] = (int(pw[2]), int(pw[3]), int(m.group(2)))
        cls.timings["create_s"] = round(time.monotonic() - t0, 1)
        bob_uid, bob_gid, _ = ids["bob"]
        alice_uid, alice_gid, alice_port = ids["alice"]
        bob_home, alice_home = s.host_home("bob"), s.host_home("alice")

        # --- what the probe will try to reach ----------------------------------
        host_dir = os.path.join(s.root, "host-only")
        os.makedirs(host_dir, mode=0o755)
        os.chmod(s.root, 0o755)
        host_canary = os.path.join(host_dir, "canary")
        write_file(host_canary, f"host canary {token}\n")
        etc_canary = os.path.join(s.etc, "pukaipu-escape-canary")
        write_file(etc_canary, f"etc canary {token}\n")
        os.chmod(alice_home, 0o755)
        alice_secret = os.path.join(alice_home, "secret")
        write_file(alice_secret, f"alice's secret {token}\n", alice_uid, alice_gid, 0o644)

        cls.listeners = HostListeners(token, os.path.join(host_dir, "sock"))
        cls.shm = SysvShm()
        hit_host = os.path.join(bob_home, ".escape-sentinel-hit")
        cls.hit_host = hit_host
        # The sentinel: a host process as bob's uid (think: bob's ssh login).
        cls.sentinel = subprocess.Popen([HOST_PYTHON, "-c", SENTINEL, f"pukaipu-escape-sentinel-{token}", hit_host],
                                        user=bob_uid, group=bob_gid, extra_groups=[], cwd="/",
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

        # In bob's home: the probe, how xpra starts it, and root-owned bait.
        copy_file(ESCAPE, os.path.join(bob_home, "escape"), bob_uid, bob_gid, 0o755)
        write_file(os.path.join(bob_home, "escape-run"),
                   "#!/bin/sh\n# Started by the instance's xpra (--start), so as the user, inside.\n"
                   "exec /data/home/escape battery /data/home/escape.conf /data/home/escape.out "
                   ">/data/home/escape.log 2>&1\n", bob_uid, bob_gid, 0o755)
        copy_file(ESCAPE, os.path.join(bob_home, "suid-root"), 0, 0, 0o4755)
        copy_file(ESCAPE, os.path.join(bob_home, "sgid-root"), 0, 0, 0o2755)
        filecap = os.path.join(bob_home, "filecap")
        copy_file(ESCAPE, filecap, 0, 0, 0o755)
        os.setxattr(filecap, "security.capability", file_caps_xattr())
        write_file(os.path.join(bob_home, "root-only"), f"root only {token}\n", 0, 0, 0o600)

        # --- alice first: her X server must be up before bob attacks it ---------
        cls.alice_log = open(os.path.join(s.root, "alice.log"), "w")
        cls.alice = s.popen([h.RUN, "alice"], env={"PUKAIPU_CONFIG": alice_cfg}, stdin=subprocess.DEVNULL,
                            stdout=cls.alice_log, stderr=subprocess.STDOUT)
        cls.alice_xvfb = h.wait_for(lambda: next((p for p in h.descendants(cls.alice.pid)
                                                 if h.comm(p) == "Xvfb"), None), timeout=30)
        if not cls.alice_xvfb:
            raise RuntimeError("alice's Xvfb did not start")
        cls.host["alice_x_listening"] = cls.alice_x_reachable()
        cls.timings["alice_up_s"] = round(time.monotonic() - t0, 1)

        # --- bob: the real desktop, the probe inside ------------------------------
        cls.bob_log_path = os.path.join(s.root, "bob.log")
        cls.bob_log = open(cls.bob_log_path, "w")
        t_bob = time.monotonic()
        cls.bob = s.popen([h.RUN, "bob"], stdin=subprocess.DEVNULL, stdout=cls.bob_log, stderr=subprocess.STDOUT)
        if not h.wait_for(lambda: h.comm(cls.bob.pid) == "pukaipu-run" or cls.bob.poll() is not None, timeout=10):
            raise RuntimeError(f"pid {cls.bob.pid} never became pukaipu-run")
        cls.supervisor_start = start_time(cls.bob.pid)
        conf = {
            "token": token,
            "uid": bob_uid,
            "etc_canary_host": etc_canary,
            "etc_shadow_host": os.path.join(s.etc, "shadow"),
            "host_canary": host_canary,
            "state_dir": s.state,
            "state_server_key": os.path.join(s.state, "instances/bob/certs/server.key"),
            "alice_secret_host": alice_secret,
            "alice_tls_key_host": os.path.join(s.run_dir, "alice/tls/server.key"),
            "alice_state_key_host": os.path.join(s.state, "instances/alice/certs/server.key"),
            "alice_display": ALICE_DISPLAY,
            "alice_port": alice_port,
            "alice_desktop_sock": os.path.join(s.run_dir, "alice/desktop.sock"),
            "host_tcp_port": cls.listeners.port("tcp"),
            "host_tcp6_port": cls.listeners.port("tcp6"),
            "host_ip": host_ipv4(),
            "host_abstract": cls.listeners.abstract,
            "host_unix": cls.listeners.unix_path,
            "supervisor_pid": cls.bob.pid,
            "sentinel_pid": cls.sentinel.pid,
            "sentinel_hit": "/data/home/.escape-sentinel-hit",
            "sysv_key": cls.shm.key,
            "root_only": "/data/home/root-only",
            "suid_root": "/data/home/suid-root",
            "sgid_root": "/data/home/sgid-root",
            "filecap": "/data/home/filecap",
        }
        text = "".join(f"{k}={v}\n" for k, v in conf.items()) + "end=1\n"
        write_file(os.path.join(bob_home, "escape.conf.tmp"), text, bob_uid, bob_gid, 0o644)
        os.replace(os.path.join(bob_home, "escape.conf.tmp"), os.path.join(bob_home, "escape.conf"))

        out = os.path.join(bob_home, "escape.out")
        end = time.monotonic() + PROBE_TIMEOUT
        while time.monotonic() < end and cls.bob.poll() is None and not os.path.exists(out):
            time.sleep(0.2)
        cls.timings["bob_start_to_report_s"] = round(time.monotonic() - t_bob, 1)
        for path in (out, out + ".partial"):
            if os.path.exists(path):
                with open(path) as f:
                    cls.report = f.read()
                cls.report_complete = path == out
                break
        else:
            cls.report_complete = False

        # --- what the host saw, while both still run --------------------------------
        cls.host["bob_running"] = cls.bob.poll() is None
        cls.host["supervisor_untouched"] = cls.bob.poll() is None and start_time(cls.bob.pid) == cls.supervisor_start
        cls.host["alice_running"] = cls.alice.poll() is None
        cls.host["sentinel_alive"] = cls.sentinel.poll() is None
        cls.host["sentinel_signals"] = open(hit_host).read().split() if os.path.exists(hit_host) else []
        cls.host["listener_connections"] = cls.listeners.connections()
        cls.host["lingerers_running"] = sorted(cls.lingerers())
        # Controls: the sentinel and the listeners do notice when reached.
        os.kill(cls.sentinel.pid, signal.SIGUSR2)
        cls.host["control_sentinel_notices"] = bool(h.wait_for(
            lambda: os.path.exists(hit_host) and "SIGUSR2" in open(hit_host).read(), timeout=5))
        with socket.create_connection(("127.0.0.1", cls.listeners.port("tcp")), timeout=5):
            cls.host["control_listener_notices"] = bool(h.wait_for(
                lambda: "tcp" in cls.listeners.connections(), timeout=5))

    @classmethod
    def lingerers(cls):
        """Host PIDs of the probe's `escape linger TOKEN` processes."""
        want = ["linger", getattr(cls, "token", "?")]
        return {int(p) for p in os.listdir("/proc") if p.isdigit() and h.cmdline(p)[1:3] == want}

    @classmethod
    def judge_lingerers(cls):
        """outlive_instance, judged here: the probe started processes that
        try to stay (a setsid daemon, the init of a nested PID namespace);
        none may be left once pukaipu-run has exited."""
        before = cls.host.get("lingerers_running", [])
        left = sorted(cls.lingerers())
        for pid in left:  # started by this test's probe: end them, by PID
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            verdict = f"ESCAPED {len(left)} of the probe's processes outlived the instance (host pids {left})"
        elif not before:
            verdict = "ERROR no lingerer was running before the stop (see info:lingerers)"
        else:
            verdict = (f"blocked {len(before)} lingerers (setsid daemon, nested PID namespace init) "
                       "were gone when pukaipu-run exited")
        cls.host_attempts.append(f"outlive_instance={verdict}")

    @classmethod
    def alice_x_reachable(cls):
        """Control, from alice's own namespaces (as root on the host): her
        X server listens on the abstract and on the path socket."""
        pid = cls.alice_xvfb
        abstract = f"/tmp/.X11-unix/X{ALICE_DISPLAY}"
        code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(5)\n"
                "s.connect('\\0' + sys.argv[1])\nprint('ok')")
        got = {}
        for name, args in (("abstract", ["-n", HOST_PYTHON, "-c", code, abstract]),
                           ("path", ["-n", "-m", "/bin/sh", "-c", f"test -S {abstract} && echo ok"])):
            ok = False
            for _ in range(50):  # Xvfb takes a moment to listen
                r = subprocess.run(["nsenter", "-t", str(pid), *args], capture_output=True, text=True, timeout=20)
                if r.stdout.strip() == "ok":
                    ok = True
                    break
                time.sleep(0.1)
            got[name] = ok
        return got

    @classmethod
    def teardown_all(cls):
        t = time.monotonic()
        cls.host["bob_exit"] = h.stop(cls.bob)
        cls.host["alice_exit"] = h.stop(cls.alice)
        cls.timings["stop_s"] = round(time.monotonic() - t, 1)
        if cls.bob is not None:
            cls.judge_lingerers()
        for f in ("bob_log", "alice_log"):
            if getattr(cls, f, None):
                getattr(cls, f).close()
        if cls.sentinel and cls.sentinel.poll() is None:
            cls.sentinel.kill()
            cls.sentinel.wait()
        if cls.listeners:
            cls.listeners.close()
        if cls.shm:
            cls.shm.remove()
        cls.bob_log_tail = ""
        if getattr(cls, "bob_log_path", None) and os.path.exists(cls.bob_log_path):
            with open(cls.bob_log_path, errors="replace") as f:
                cls.bob_log_tail = "".join(f.readlines()[-40:])
        probe_log = os.path.join(cls.s.host_home("bob"), "escape.log")
        cls.probe_log = open(probe_log, errors="replace").read()[-3000:] if os.path.exists(probe_log) else ""
        cls.s.cleanup()

    @classmethod
    def print_report(cls):
        log("=== escape battery report (from inside bob's instance) ===")
        log(cls.report.rstrip() or "(no report)")
        log("=== judged on the host ===")
        for line in cls.host_attempts:
            log(line)
        for k, v in cls.host.items():
            log(f"host:{k}={v}")
        log("timings: " + " ".join(f"{k}={v}" for k, v in cls.timings.items()))
        if not getattr(cls, "report_complete", False):
            log(f"--- pukaipu-run bob log tail:\n{cls.bob_log_tail}")
            log(f"--- probe log:\n{cls.probe_log}")

    # --- the verdicts -------------------------------------------------------

    def attempts(self):
        out = {}
        for line in self.report.splitlines() + self.host_attempts:
            m = LINE.match(line)
            if m:
                out[m.group(1)] = (m.group(2), m.group(3) or "")
        return out

    def checks(self):
        return {m.group(1): (m.group(2), m.group(3) or "") for m in map(CHECK.match, self.report.splitlines()) if m}

    def test_report_is_complete(self):
        self.assertTrue(self.report_complete, "the probe wrote no complete report (see the log above)")
        self.assertRegex(self.report, r"(?m)^summary: attempts=\d+")
        self.assertGreaterEqual(len(self.attempts()), MIN_ATTEMPTS)

    def test_nothing_escaped(self):
        escaped = {k: v for k, (r, v) in self.attempts().items() if r == "ESCAPED"}
        self.assertEqual(escaped, {})

    def test_every_attempt_was_judged(self):
        errors = {k: v for k, (r, v) in self.attempts().items() if r == "ERROR"}
        self.assertEqual(errors, {})

    def test_browser_sandbox_on_during_the_battery(self):
        c = self.checks()
        for when in ("before", "after"):
            self.assertEqual(c.get(f"browser_sandbox_{when}", ("missing",))[0], "ok", c.get(f"browser_sandbox_{when}"))

    def test_probe_ran_confined_as_the_user(self):
        c = self.checks()
        for name in ("confined", "runs_as_the_user", "own_x_display_reachable"):
            self.assertEqual(c.get(name, ("missing",))[0], "ok", (name, c.get(name)))

    def test_host_saw_nothing(self):
        self.assertTrue(self.host.get("supervisor_untouched"), "bob's pukaipu-run died or was replaced")
        self.assertTrue(self.host.get("alice_running"), "alice's instance died during the battery")
        self.assertTrue(self.host.get("sentinel_alive"), "the host sentinel died")
        self.assertEqual(self.host.get("sentinel_signals"), [], "a signal reached the host sentinel")
        self.assertEqual(self.host.get("listener_connections"), [], "a host listener got a connection")
        self.assertTrue(self.host.get("control_sentinel_notices"), "control: the sentinel does not notice signals")
        self.assertTrue(self.host.get("control_listener_notices"), "control: the listener does not notice connections")

    def test_control_alice_x_server_was_there(self):
        self.assertEqual(self.host.get("alice_x_listening"), {"abstract": True, "path": True})


def start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


if __name__ == "__main__":
    skip_unless_possible()
    prog = unittest.main(exit=False, verbosity=2)
    sys.exit(0 if prog.result.wasSuccessful() else 1)
