"""Exit statuses, signals, supervision, and nothing left behind."""
import os
import signal
import subprocess
import time
import unittest

import harness as h


def start(name, args, *extra):
    b = h.bundle(name, h.base_spec(args))
    p = subprocess.Popen([h.RUN, "--bundle", b, "--seccomp-cache", os.path.join(h.TMP, "seccomp-cache"), *extra],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until the container's PID 1 has its payload child.
    def payload_running():
        init = h.children_of(p.pid)
        return init and all(h.children_of(i) for i in init)
    h.wait_for(payload_running)
    return p


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class ExitStatus(unittest.TestCase):
    def test_exit_code_is_the_payloads(self):
        r = h.run(h.bundle("exit7", h.base_spec(["/bin/probe", "exit", "7"])))
        self.assertEqual(r.returncode, 7)

    def test_sigkill_of_payload_gives_137(self):
        r = h.run(h.bundle("kill9", h.base_spec(["/bin/probe", "kill-self", "9"])))
        self.assertEqual(r.returncode, 137)

    def test_pid1_cannot_be_killed_from_inside(self):
        r = h.run(h.bundle("sigparent", h.base_spec(["/bin/probe", "signal-parent"])))
        kv = h.keyvals(r.stdout)
        self.assertEqual(r.returncode, 0)
        self.assertEqual(kv.get("pid"), "2")


class Signals(unittest.TestCase):
    def test_sigterm_stops_the_payload(self):
        p = start("term", ["/bin/sleep", "1000"])
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=10)
        self.assertEqual(p.returncode, 128 + signal.SIGTERM)
        self.assertLess(time.monotonic() - t0, 5)

    def test_sigterm_ignored_means_sigkill_after_grace(self):
        p = start("grace", ["/bin/sh", "-c", "trap '' TERM; while :; do sleep 1; done"], "--grace", "1")
        time.sleep(0.3)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=15)
        self.assertEqual(p.returncode, 128 + signal.SIGKILL)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)

    def test_sighup_is_forwarded(self):
        p = start("hup", ["/bin/sh", "-c", "trap 'exit 42' HUP; while :; do sleep 0.1; done"])
        time.sleep(0.3)
        p.send_signal(signal.SIGHUP)
        p.communicate(timeout=10)
        self.assertEqual(p.returncode, 42)

    def test_sigkill_of_launcher_leaves_no_container_process(self):
        p = start("kill-launcher", ["/bin/sh", "-c", "sleep 1000 & sleep 1000 & wait"])
        time.sleep(0.3)
        inside = h.descendants(p.pid)
        self.assertGreaterEqual(len(inside), 3, inside)
        p.kill()
        p.communicate(timeout=10)
        gone = h.wait_for(lambda: not any(alive(x) for x in inside), timeout=10)
        self.assertTrue(gone, [x for x in inside if alive(x)])

    def test_leftovers_get_sigterm_when_the_payload_exits(self):
        # A process the payload leaves behind (the browser when xpra exits)
        # is told to stop, not killed outright: its TERM handler runs.
        r = h.run(h.bundle("drain", h.base_spec(
            ["/bin/sh", "-c", "(trap 'echo drained; exit 0' TERM; while :; do sleep 0.1; done) & sleep 0.3; exit 3"])))
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("drained", r.stdout)

    def test_leftovers_that_ignore_sigterm_are_killed_after_the_drain(self):
        t0 = time.monotonic()
        r = h.run(h.bundle("drain-ignored", h.base_spec(
            ["/bin/sh", "-c", "(trap '' TERM; while :; do sleep 0.1; done) & sleep 0.3; exit 4"])), timeout=30)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertGreaterEqual(elapsed, 2.0)  # 0.3 s payload + 2 s drain
        self.assertLess(elapsed, 10)

    def test_orphans_are_reaped(self):
        r = h.run(h.bundle("orphans", h.base_spec(
            ["/bin/sh", "-c", "probe spawn-orphans 5 >/dev/null; sleep 0.6; ps -o stat,comm | grep -c '^Z' || true"])))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip().splitlines()[-1], "0")


NS_TYPES = ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup")


def namespaces_in_use(ignore_pids=frozenset()):
    """Namespaces held by a process (other than ignore_pids) or an nsfs mount.

    Namespace inode numbers are recycled, so a process that was already
    running before the test (ignore_pids) may come to hold a number a
    container once had; only processes born during the test can be leaks."""
    held = set()
    for pid in h.host_pids() - ignore_pids:
        for n in NS_TYPES:
            try:
                held.add(os.readlink(f"/proc/{pid}/ns/{n}"))
            except OSError:
                pass
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if " - nsfs " in line:
                held.add(fields[3].lstrip("/"))
    return held


class NoLeaks(unittest.TestCase):
    def test_200_runs_leave_nothing_behind(self):
        # Each run reports its own namespaces from inside; afterwards none of
        # them may still exist (held by a process or a bind mount), and no
        # mount may refer to the rootfs. Precise even if other work runs on
        # the machine at the same time.
        script = "for n in " + " ".join(NS_TYPES) + "; do readlink /proc/self/ns/$n; done"
        b = h.bundle("leak", h.base_spec(["/bin/sh", "-c", script]))
        h.run(b)  # warm the seccomp cache
        before = frozenset(h.host_pids())
        seen = set()
        for i in range(200):
            r = h.run(b)
            self.assertEqual(r.returncode, 0, f"run {i}: {r.stderr}")
            ids = r.stdout.split()
            self.assertEqual(len(ids), len(NS_TYPES), r.stdout)
            seen.update(ids)
        leaked = h.wait_for(lambda: not (seen & namespaces_in_use(before)), timeout=5)
        self.assertTrue(leaked, sorted(seen & namespaces_in_use(before))[:10])
        with open("/proc/self/mountinfo") as f:
            mounts = [line for line in f if h.rootfs() in line]
        self.assertEqual(mounts, [])
        self.assertEqual(h.descendants(os.getpid()), set())  # no process of ours is left


if __name__ == "__main__":
    h.main()
