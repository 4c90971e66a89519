"""xpra's control channel (issue 13, item 4): no process of the desktop can
undo what `pukaipu grant` decided through xpra.

One instance on the real rootfs (tests/desktop/desktop_harness.py), with
clipboard granted to-browser only, started by `pukaipu-run USER` as an
administrator would. tests/desktop/xpra-control-probe is the attacker:
once as a process of the running desktop (xpra starts it with --start, as it
starts the browser) and once as the instance's `pukaipu-run USER --shell`.
It runs `xpra control SOCKET clipboard-direction both` (and `start`) on every
socket it finds and opens /proc/<xpra>/mem for writing. A usercustomize.py
in the home's Python user site-packages leaves a mark for every Python that
runs it. Then, from the host, the owner's `xpra info` over the attach socket
(the local attach) shows what xpra's clipboard does now.

Instances live in a private copy of the user database (sysroot.py); the run
directory is under the host's /run (the attach directory has the same path
inside). The container has loopback only.
"""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

import harness as h
from sysroot import Sysroot

sys.path.insert(0, os.path.join(h.SRC or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "tests", "desktop"))
import desktop_harness as d  # noqa: E402

TOOL = os.environ.get("PUKAIPU_TOOL", "")
RUN_DIR = f"/run/pukaipu-test-xpractl-{os.getpid()}"
USER = "xctl"
UID = 3250
PROBE = "/data/home/xpra-control-probe"
MARKS = "usercustomize-ran"
# Every Python that imports it leaves /data/home/usercustomize-ran/PID-TIME with its command line.
# (PID-time: the desktop and the shell are two PID namespaces, each with a PID 2.)
USERCUSTOMIZE = f"""import os, time
try:
    os.makedirs("/data/home/{MARKS}", exist_ok=True)
    with open("/proc/self/cmdline", "rb") as src, \\
         open("/data/home/{MARKS}/%d-%d" % (os.getpid(), time.time_ns()), "xb") as dst:
        dst.write(src.read().replace(b"\\0", b" "))
except OSError:
    pass
"""
S = None


def setUpModule():
    global S
    h.ensure_tmp()
    S = Sysroot("xpractl")
    S.run_dir = RUN_DIR


def tearDownModule():
    if S:
        S.cleanup()
    shutil.rmtree(RUN_DIR, ignore_errors=True)


class XpraControl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        try:
            rootfs = d.ensure_rootfs("default")
        except Exception as e:  # noqa: BLE001 - a rootfs that cannot be built is a skip, with why
            raise unittest.SkipTest(f"the desktop rootfs is not available: {e}")
        if not shutil.which("xpra"):
            raise unittest.SkipTest("no xpra client on this host (.ci/install-deps installs it)")
        cfg = {
            "rootfs": rootfs,
            "uidRange": [3200, 3299],
            "portRange": [24700, 24799],
            "listenAddress": "127.0.0.1",
            "domain": "example.test",
            "apparmor": {"policy": "optional"},
            "seccompProfile": os.path.join(h.SRC, "profiles/seccomp/default.json"),
            "network": {"mode": "none"},
            "session": {"command": ["/usr/lib/pukaipu/xpra-session", f"--start=python3 {PROBE} desktop"],
                        "shell": ["/usr/bin/python3", PROBE, "shell"]},
        }
        with open(S.config, "w") as f:
            json.dump(cfg, f)
        os.chmod(S.config, 0o644)
        cls.proc = cls.logf = None
        r = S.run([TOOL, "create", USER, "--fqdn", f"{USER}.example.test", "--uid", str(UID)])
        assert r.returncode == 0, r.stderr
        r = S.run([TOOL, "grant", USER, "clipboard", "to-browser"])
        assert r.returncode == 0, r.stderr
        cls.home = S.host_home(USER)
        shutil.copyfile(os.path.join(h.SRC, "tests", "desktop", "xpra-control-probe"),
                        os.path.join(cls.home, os.path.basename(PROBE)))
        os.chown(os.path.join(cls.home, os.path.basename(PROBE)), UID, UID)
        for py in sorted(glob.glob(os.path.join(rootfs, "usr/lib/python3.*"))):
            site = os.path.join(cls.home, ".local/lib", os.path.basename(py), "site-packages")
            os.makedirs(site)
            with open(os.path.join(site, "usercustomize.py"), "w") as f:
                f.write(USERCUSTOMIZE)
        subprocess.run(["chown", "-R", f"{UID}:{UID}", os.path.join(cls.home, ".local")], check=True)

        cls.logf = open(os.path.join(h.TMP, "xpractl-desktop.log"), "w")
        cls.proc = S.popen([h.RUN, USER], stdin=subprocess.DEVNULL, stdout=cls.logf, stderr=subprocess.STDOUT)
        sock = f"{RUN_DIR}/{USER}/attach/socket"
        cls.info_before = None
        if h.wait_for(lambda: cls.proc.poll() is None and os.path.exists(sock) and cls.info()[0] == 0,
                      timeout=120, step=0.5):
            cls.info_before = cls.info()
        # One attacker at a time, each judged by what xpra does after it:
        # first the instance's shell, while the desktop runs ...
        cls.shell_run = S.run([h.RUN, USER, "--shell"], stdin=subprocess.DEVNULL, timeout=300)
        cls.shell = cls.read_json("shell")
        cls.info_after_shell = cls.info()
        # ... then the process in the desktop, which waits for this file.
        with open(os.path.join(cls.home, "xpra-probe-go"), "w"):
            pass
        cls.desktop = cls.wait_json("desktop", 300)
        cls.xpra_argv = next((h.cmdline(p) for p in sorted(h.descendants(cls.proc.pid))
                              if "start-desktop" in h.cmdline(p)), [])
        cls.info_after_desktop = cls.info()
        # Last, the owner's own client: control commands are refused there too.
        cls.owner_control = S.run(["runuser", "-u", USER, "--", "env", f"HOME=/home/{USER}", "xpra", "control",
                                   f"socket://{sock}", "clipboard-direction", "both"], timeout=60)
        cls.info_after_owner = cls.info()

    @classmethod
    def tearDownClass(cls):
        if cls.proc and cls.proc.poll() is None:
            cls.proc.send_signal(signal.SIGTERM)
            try:
                cls.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait()
        if cls.logf:
            cls.logf.close()

    @classmethod
    def read_json(cls, where):
        try:
            with open(os.path.join(cls.home, f"xpra-probe-{where}.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    @classmethod
    def wait_json(cls, where, timeout):
        h.wait_for(lambda: cls.read_json(where) is not None or cls.proc.poll() is not None, timeout=timeout, step=0.5)
        return cls.read_json(where)

    @classmethod
    def info(cls):
        """The owner's `xpra info` over the attach socket, from the host."""
        sock = f"socket://{RUN_DIR}/{USER}/attach/socket"
        r = S.run(["runuser", "-u", USER, "--", "env", f"HOME=/home/{USER}", "xpra", "info", sock], timeout=60)
        return r.returncode, h.keyvals(r.stdout) if r.returncode == 0 else r.stdout + r.stderr

    def log_tail(self):
        with open(self.logf.name, errors="replace") as f:
            return f.read()[-3000:]

    def assert_control_failed(self, seen):
        self.assertIsNotNone(seen, "the probe wrote nothing; desktop log:\n" + self.log_tail())
        self.assertTrue(seen["control"], seen)
        for target, tries in seen["control"].items():
            for what, r in tries.items():
                with self.subTest(where=seen["where"], socket=target, command=what):
                    self.assertNotEqual(r["rc"], 0, r["out"])

    def assert_clipboard_as_granted(self, seen):
        rc, info = seen
        self.assertEqual(rc, 0, info)
        # to-browser: xpra (the browser's side) takes the client's clipboard, never sends its own.
        self.assertEqual((info.get("clipboard.can-receive"), info.get("clipboard.can-send")), ("True", "False"),
                         {k: v for k, v in info.items() if k.startswith("clipboard")})

    def test_control_from_a_desktop_process_changes_nothing(self):
        self.assert_control_failed(self.desktop)
        attach = f"{RUN_DIR}/{USER}/attach/socket"
        self.assertIn(attach, self.desktop["sockets"], "the probe did not even find the attach socket")
        self.assert_clipboard_as_granted(self.info_after_desktop)

    def test_control_from_the_shell_changes_nothing(self):
        self.assertEqual(self.shell_run.returncode, 0, self.shell_run.stdout + self.shell_run.stderr)
        self.assert_control_failed(self.shell)
        self.assert_clipboard_as_granted(self.info_after_shell)

    def test_xpra_memory_does_not_open_for_writing(self):
        self.assertIsNotNone(self.desktop, "the probe wrote nothing; desktop log:\n" + self.log_tail())
        self.assertIsNotNone(self.desktop["xpra_pid"], "the probe saw no xpra server")
        self.assertTrue(self.desktop["mem"].startswith("refused"), self.desktop["mem"])
        # From the shell xpra is not even in sight (a PID namespace of its own).
        self.assertIsNone(self.shell and self.shell["xpra_pid"], self.shell)

    def test_usercustomize_in_the_home_is_not_run_by_xpra(self):
        marks = {}
        for p in glob.glob(os.path.join(self.home, MARKS, "*")):
            with open(p, errors="replace") as f:
                marks[os.path.basename(p)] = f.read()
        # It works: the probe's own python3 (no -s) ran it.
        self.assertTrue([m for m in marks.values() if "xpra-control-probe" in m], marks)
        self.assertEqual([m for m in marks.values() if re.search(r"xpra (start-desktop|start|shadow)", m)], [], marks)

    def test_control_is_refused_also_to_the_owners_client(self):
        r = self.owner_control
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("control commands are disabled", r.stdout + r.stderr)
        self.assert_clipboard_as_granted(self.info_after_owner)

    def test_xpra_runs_behind_the_guard(self):
        # pukaipu-run's file over the rootfs's xpra: root's, not writable by the user.
        st = os.stat(f"{RUN_DIR}/{USER}/xpra-guard")
        self.assertEqual((st.st_uid, st.st_mode & 0o7777), (0, 0o755))
        self.assertEqual(self.xpra_argv[:3], ["/usr/bin/python3", "-I", "/usr/bin/xpra"], self.xpra_argv)

    def test_the_owners_local_attach_still_answers(self):
        # As granted before anything was tried (so the checks above can fail),
        # and still answering after both attackers.
        self.assertIsNotNone(self.info_before, "xpra never answered the owner; log:\n" + self.log_tail())
        self.assert_clipboard_as_granted(self.info_before)
        rc, info = self.info_after_desktop
        self.assertEqual(rc, 0, info)
        self.assertIn("mmap.supported", " ".join(info))


if __name__ == "__main__":
    h.main()
