"""Resource limits (issue 13, item 6): a container's memory, tasks and CPU in a
cgroup of its own (sandbox/cgroup.h), made by pukaipu-run, and bounded tmpfs.

Real runs on this host (cgroup v1 controllers on a hybrid host, or cgroup v2):
a memory hog stops at memory.limit, a fork bomb at pids.limit while the host
still forks, the cgroup is gone after exit, a limit that cannot be enforced is
refused with one line, and an instance's /tmp fills up to tmpSize only while
the host's /run is untouched.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

import harness as h
from test_instances import OneInstance, TOOL


def cgroup_dirs(pid, launcher=None):
    """The host directories of pid's cgroups for memory, pids and cpu
    (with `launcher`: checked to be its child still, not a recycled pid)."""
    mounts = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            i = fields.index("-")
            if fields[i + 1] == "cgroup":
                for opt in fields[i + 3].split(","):
                    mounts.setdefault(opt, fields[4])
            elif fields[i + 1] == "cgroup2":
                mounts.setdefault("", fields[4])
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in (ctrls.split(",") if ctrls else [""]):
                if c in mounts:
                    out[c] = mounts[c] + path
    if launcher is not None:
        with open(f"/proc/{pid}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[1]) == launcher, f"{pid} is not the container's init"
    v2 = out.get("")
    return {c: out.get(c) or v2 for c in ("memory", "pids", "cpu")}


def read(path):
    with open(path) as f:
        return f.read().strip()


def limit_file(d, v1, v2):
    return os.path.join(d, v1 if os.path.exists(os.path.join(d, v1)) else v2)


def wait_for(pred, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return None


def hit_limit(pids_dir):
    """Forks refused at pids.max so far (pids.events), or a full cgroup."""
    m = re.search(r"max (\d+)", read(os.path.join(pids_dir, "pids.events")))
    return int(m.group(1)) > 0


def container_init(launcher):
    def is_launcher():
        try:
            return os.readlink(f"/proc/{launcher.pid}/exe").endswith("/pukaipu-run")
        except OSError:
            return False
    assert wait_for(is_launcher), "pukaipu-run did not start"
    kids = wait_for(lambda: h.children_of(launcher.pid))
    assert kids, "pukaipu-run started no container"
    return min(kids)


class BundleLimits(unittest.TestCase):
    def spec(self, args, resources):
        s = h.base_spec(args)
        s["linux"]["resources"] = resources
        return s

    def start(self, name, args, resources):
        d = h.bundle(name, self.spec(args, resources))
        return subprocess.Popen([h.RUN, "--bundle", d, "--grace", "1", "--seccomp-cache",
                                 os.path.join(h.TMP, "seccomp-cache")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def test_memory_hog_stops_at_the_limit_and_the_cgroup_goes(self):
        # awk doubles a string until something stops it: with 64 MiB, the
        # kernel's OOM killer in the container's own cgroup.
        hog = "awk 'BEGIN { s = \"x\"; while (1) { s = s s; print length(s) > \"/dev/stderr\" } }'"
        p = self.start("mem-hog", ["sh", "-c", "sleep 0.5; " + hog + "; echo hog-status=$?"],
                       {"memory": {"limit": 64 << 20}})
        init = container_init(p)
        dirs = cgroup_dirs(init)
        mem = dirs["memory"]
        self.assertIn("pukaipu-bundle-", mem)
        self.assertEqual(int(read(limit_file(mem, "memory.limit_in_bytes", "memory.max"))), 64 << 20)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        status = int(re.search(r"hog-status=(\d+)", out).group(1))
        self.assertEqual(status, 128 + signal.SIGKILL, "the hog was not killed at the limit")
        biggest = max(int(x) for x in re.findall(r"(?m)^(\d+)$", err))
        self.assertLess(biggest, 64 << 20)   # never held more than the limit
        self.assertGreater(biggest, 4 << 20)  # and got somewhere before it
        self.assertFalse(os.path.exists(mem), f"{mem} left behind")

    def test_a_small_allocation_under_the_limit_works(self):
        p = self.start("mem-ok", ["sh", "-c", "awk 'BEGIN { s = \"x\"; for (i = 0; i < 22; i++) s = s s; "
                                              "print length(s) }'"], {"memory": {"limit": 64 << 20}})
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(out.strip(), str(1 << 22))

    def test_fork_bomb_stops_at_the_pids_limit_and_the_host_is_fine(self):
        # The shell forks once (the bomb's subshell) and then needs no fork
        # (exec): a fork it made itself would fail once the bomb is at the
        # limit, and a failed fork ends busybox's shell.
        bomb = "(f() { f | f & }; f) & exec sleep 30"
        p = self.start("fork-bomb", ["sh", "-c", bomb], {"pids": {"limit": 48}})
        try:
            init = container_init(p)
            pids = cgroup_dirs(init, p.pid)["pids"]
            self.assertIn("pukaipu-bundle-", pids)
            self.assertEqual(read(os.path.join(pids, "pids.max")), "48")
            # The bomb hits the limit (forks refused: pids.events counts
            # them) and never goes beyond it.
            self.assertTrue(wait_for(lambda: hit_limit(pids)), "the fork bomb never reached the limit")
            self.assertLessEqual(int(read(os.path.join(pids, "pids.current"))), 48)
            # The host still forks.
            self.assertEqual(subprocess.run(["true"]).returncode, 0)
        finally:
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=60)
        self.assertFalse(os.path.exists(pids), f"{pids} left behind")

    def test_cpu_quota_is_written(self):
        p = self.start("cpu", ["sh", "-c", "sleep 30"],
                       {"cpu": {"quota": 20000, "period": 100000, "shares": 512}})
        try:
            cpu = cgroup_dirs(container_init(p))["cpu"]
            if os.path.exists(os.path.join(cpu, "cpu.cfs_quota_us")):
                self.assertEqual(read(os.path.join(cpu, "cpu.cfs_quota_us")), "20000")
                self.assertEqual(read(os.path.join(cpu, "cpu.cfs_period_us")), "100000")
                self.assertEqual(read(os.path.join(cpu, "cpu.shares")), "512")
            else:
                self.assertEqual(read(os.path.join(cpu, "cpu.max")), "20000 100000")
        finally:
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=60)
        self.assertFalse(os.path.exists(cpu))

    def test_a_killed_launchers_cgroup_goes_at_the_next_start(self):
        p = self.start("killed", ["sleep", "30"], {"pids": {"limit": 16}})
        init = container_init(p)
        left = cgroup_dirs(init, p.pid)["pids"]
        p.kill()  # SIGKILL: no P10; the container dies with it (parent-death signal)
        p.communicate(timeout=30)
        self.assertTrue(wait_for(lambda: int(read(os.path.join(left, "pids.current"))) == 0),
                        "the container outlived its launcher")
        self.assertTrue(os.path.isdir(left))
        q = self.start("next", ["true"], {"pids": {"limit": 16}})
        _, err = q.communicate(timeout=60)
        self.assertEqual(q.returncode, 0, err)
        self.assertFalse(os.path.exists(left), f"{left} outlived the next start")

    def test_no_resources_no_cgroup(self):
        p = self.start("no-cg", ["sh", "-c", "sleep 30"], {})
        try:
            self.assertNotIn("pukaipu-", cgroup_dirs(container_init(p))["pids"])
        finally:
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=60)

    def refused(self, name, resources, needle):
        d = h.bundle(name, self.spec(["true"], resources))
        r = h.run(d)
        self.assertEqual(r.returncode, 125, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn(needle, lines[0])

    def test_limits_that_cannot_be_enforced_are_refused_with_one_line(self):
        self.refused("no-rt", {"cpu": {"realtimeRuntime": 1000}},
                     "linux.resources.cpu.realtimeRuntime: field not supported")
        self.refused("no-cpuset", {"cpu": {"cpus": "0"}}, "linux.resources.cpu.cpus: field not supported")
        self.refused("no-hugetlb", {"hugepageLimits": []}, "linux.resources.hugepageLimits: field not supported")
        self.refused("no-reservation", {"memory": {"reservation": 1 << 20}},
                     "linux.resources.memory.reservation: field not supported")
        self.refused("bad-period", {"cpu": {"quota": 5000, "period": 10}}, "cpu.period 10: expected 1000..1000000")
        self.refused("swap-only", {"memory": {"swap": 1 << 30}}, "memory.swap needs memory.limit")
        self.refused("zero-pids", {"pids": {"limit": 0}}, "linux.resources.pids.limit: expected a positive integer")
        if not os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") and \
                not os.path.exists("/sys/fs/cgroup/memory.swap.max"):
            self.refused("swap", {"memory": {"limit": 64 << 20, "swap": 128 << 20}}, "swap")


class InstanceLimits(OneInstance):
    """`pukaipu-run USER` outside its unit: the instance's limits in a cgroup
    of its own; /tmp and the runtime dir bounded, the host's /run untouched."""

    NAME, USER, FIRST_UID, FIRST_PORT = "limits", "lim", 3300, 24800
    COMMAND = ["/bin/sh", "-c",
               "dd if=/dev/zero of=/tmp/fill bs=1048576 count=600 2>/dev/null; "
               "echo tmp=$(( $(stat -c %s /tmp/fill) / 1048576 )); "
               "dd if=/dev/zero of=$XDG_RUNTIME_DIR/fill bs=1048576 count=600 2>/dev/null; "
               "echo rundir=$(( $(stat -c %s $XDG_RUNTIME_DIR/fill) / 1048576 )); "
               "(f() { f | f & }; f) & exec sleep 60"]

    def uid(self):
        return int(self.s.run(["id", "-u", self.USER]).stdout)

    def test_limits_and_bounded_tmpfs(self):
        r = self.s.run([TOOL, "set", self.USER, "--tasks", "64", "--memory", "1G"])
        self.assertEqual(r.returncode, 0, r.stderr)
        spec = json.loads(self.s.run([h.RUN, self.USER, "--print-spec"]).stdout)
        self.assertEqual(spec["linux"]["resources"], {"memory": {"limit": 1 << 30}, "pids": {"limit": 64}})
        p = self.s.popen([h.RUN, self.USER, "--grace", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        try:
            init = container_init(p)
            dirs = cgroup_dirs(init)
            self.assertIn(f"pukaipu-{self.USER}-{p.pid}", dirs["pids"])
            self.assertEqual(read(os.path.join(dirs["pids"], "pids.max")), "64")
            self.assertEqual(int(read(limit_file(dirs["memory"], "memory.limit_in_bytes", "memory.max"))),
                             1 << 30)
            self.assertTrue(wait_for(lambda: hit_limit(dirs["pids"]), timeout=60),
                            "the fork bomb never reached the task limit")
            self.assertLessEqual(int(read(os.path.join(dirs["pids"], "pids.current"))), 64)
            self.assertEqual(subprocess.run(["true"]).returncode, 0)
            # The bomb comes after the two fills: both stopped at their
            # tmpfs's size, on file systems of the container's own (not the
            # host's /run or /tmp, where nothing of it shows).
            root = f"/proc/{init}/root"
            tmp_fill = os.stat(f"{root}/tmp/fill")
            run_fill = os.stat(f"{root}/run/user/{self.uid()}/fill")
            self.assertEqual(tmp_fill.st_size, 512 << 20)
            self.assertEqual(run_fill.st_size, 64 << 20)
            host = {os.stat(d).st_dev for d in ("/run", "/tmp", "/dev/shm")}
            self.assertNotIn(tmp_fill.st_dev, host)
            self.assertNotIn(run_fill.st_dev, host)
            self.assertNotEqual(tmp_fill.st_dev, run_fill.st_dev)
        finally:
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=60)
        self.assertIn("tmp=512", err)     # tmpSize, the default
        self.assertIn("rundir=64", err)   # runtimeDirSize, the default
        self.assertFalse(os.path.exists(dirs["pids"]), f"{dirs['pids']} left behind")
        self.assertFalse(os.path.exists(dirs["memory"]), f"{dirs['memory']} left behind")


class UnderTheUnit(OneInstance):
    """pukaipu-run in a cgroup named pukaipu@USER.service (made here in this
    host's hierarchies, as systemd would): it makes no cgroup of its own,
    and starts only when that cgroup already enforces the limits."""

    NAME, USER, FIRST_UID, FIRST_PORT = "unit", "unt", 3400, 24900
    COMMAND = ["/bin/sh", "-c", "echo session-ran"]

    def setUp(self):
        self.unit = {}
        with open("/proc/self/cgroup") as f:
            own = {c: path for _, ctrls, path in (l.rstrip("\n").split(":", 2) for l in f)
                   for c in (ctrls.split(",") if ctrls else [""])}
        here = cgroup_dirs(os.getpid())
        for c in ("name=systemd", "memory", "pids"):
            base = here.get(c) or ("/sys/fs/cgroup/systemd" + own.get("name=systemd", "/")
                                   if c == "name=systemd" else None)
            if not base or not os.path.isdir(base):
                self.skipTest(f"no cgroup v1 hierarchy for {c} here")
            self.unit[c] = os.path.join(base, f"pukaipu@{self.USER}.service")
            os.makedirs(self.unit[c], exist_ok=True)
        r = self.s.run([TOOL, "set", self.USER, "--tasks", "64", "--memory", "1G"])
        self.assertEqual(r.returncode, 0, r.stderr)

    def tearDown(self):
        for d in self.unit.values():
            wait_for(lambda: not os.path.exists(d) or os.rmdir(d) or True)

    def run_in_unit(self):
        def enter():
            for d in self.unit.values():
                with open(os.path.join(d, "cgroup.procs"), "w") as f:
                    f.write("0")
        return subprocess.run(self.s.wrap([h.RUN, self.USER]), env=self.s.env(), capture_output=True, text=True,
                              timeout=60, preexec_fn=enter)

    def test_refused_when_the_unit_does_not_enforce_the_limits(self):
        with open(os.path.join(self.unit["memory"], "memory.limit_in_bytes"), "w") as f:
            f.write(str(512 << 20))
        with open(os.path.join(self.unit["pids"], "pids.max"), "w") as f:
            f.write("max")
        r = self.run_in_unit()
        self.assertEqual(r.returncode, 125, r.stderr)
        last = r.stderr.strip().splitlines()[-1]
        self.assertRegex(last, r"^pukaipu-run: linux.resources: the task limit of 64 is not enforced: "
                               r"pukaipu-run's own cgroup \('.*pukaipu@unt.service'\) allows any$")
        self.assertNotIn("session-ran", r.stderr)

    def test_runs_in_the_units_cgroup_when_it_enforces_them(self):
        with open(os.path.join(self.unit["pids"], "pids.max"), "w") as f:
            f.write("64")
        with open(os.path.join(self.unit["memory"], "memory.limit_in_bytes"), "w") as f:
            f.write(str(512 << 20))
        before = set(os.listdir(self.unit["pids"]))
        r = self.run_in_unit()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("session-ran", r.stderr)
        self.assertEqual(set(os.listdir(self.unit["pids"])), before)  # no cgroup of its own


if __name__ == "__main__":
    h.main()
