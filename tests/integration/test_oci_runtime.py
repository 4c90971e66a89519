"""pukaipu-run as an OCI runtime (issue 16): the runc command line that
conmon and containerd's shim call, on busybox bundles, driven the way those
engines drive it. The test process is a child subreaper, as conmon and the
shim are: the container's init is reparented to it after `create` exits,
and it reaps it and reads its exit status.

Checked from outside: the payload does not run before `start`; `state`
follows created → running → stopped; kill, delete (with and without
--force), run (foreground and --detach), --pid-file, --console-socket
(SCM_RIGHTS, a real pty), --log in json; and bad input: one line, exit 1,
the state untouched."""
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

import harness as h

PR_SET_CHILD_SUBREAPER = 36


def read(path):
    with open(path) as f:
        return f.read()


def setUpModule():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_CHILD_SUBREAPER")


class Runtime(unittest.TestCase):
    def setUp(self):
        h.ensure_tmp()
        self.root = os.path.join(h.TMP, "oci-root", self.id().rsplit(".", 1)[-1])
        shutil.rmtree(self.root, ignore_errors=True)
        self.out = os.path.join(h.TMP, "oci-out")
        os.makedirs(self.out, exist_ok=True)
        self.started = []

    def tearDown(self):
        for cid in os.listdir(self.root) if os.path.isdir(self.root) else []:
            self.oci("delete", "--force", cid)
        shutil.rmtree(self.root, ignore_errors=True)

    def oci(self, *args, timeout=30, stdout=None):
        """pukaipu-run --root ROOT ARGS. Output goes through files, never
        pipes: a created container keeps the stdio it was given (passed
        through, as runc does), and a pipe would stay open with it."""
        env = dict(os.environ, PUKAIPU_SECCOMP_CACHE=os.path.join(h.TMP, "seccomp-cache"))
        with open(os.path.join(self.out, "cmd.err"), "w+") as err, open(os.path.join(self.out, "cmd.out"), "w+") as out:
            p = subprocess.run([h.RUN, "--root", self.root, *args], timeout=timeout, env=env,
                               stdin=subprocess.DEVNULL, stdout=stdout or out, stderr=err)
            err.seek(0)
            out.seek(0)
            return subprocess.CompletedProcess(p.args, p.returncode, out.read(), err.read())

    def one_line_error(self, r, needle):
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertTrue(lines[0].startswith("pukaipu-run: "), lines[0])
        self.assertIn(needle, lines[0])

    def bundle(self, name, args, terminal=False):
        return h.bundle("oci-" + name, h.base_spec(args, terminal=terminal))

    def state(self, cid):
        r = self.oci("state", cid)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def create(self, cid, args, **kw):
        b = self.bundle(cid, args)
        pidfile = os.path.join(self.out, f"{cid}.pid")
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        r = self.oci("create", "--bundle", b, "--pid-file", pidfile, cid, **kw)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(pidfile) as f:
            return int(f.read()), b

    def reap(self, pid, timeout=10):
        """Waits for the container's init (reparented to us) and returns its
        exit code (128+N for a signal)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
            time.sleep(0.02)
        self.fail(f"the container's init {pid} did not exit")

    def test_lifecycle(self):
        out = os.path.join(self.out, "lifecycle.txt")
        with open(out, "w") as f:
            pid, bundle = self.create("life", ["/bin/sh", "-c", "echo hello; exec sleep 60"], stdout=f)
        # Created: the init exists, the payload waits before its exec.
        st = self.state("life")
        self.assertEqual((st["status"], st["pid"], st["id"], st["bundle"]), ("created", pid, "life", bundle))
        self.assertEqual(st["ociVersion"], "1.0.2")
        time.sleep(0.3)
        self.assertEqual(read(out), "", "the payload ran before start")
        with open(f"/proc/{pid}/status") as f:
            uid_line = next(line for line in f if line.startswith("Uid:"))
        self.assertNotIn("\t0\t", uid_line + "\t", "the container's init runs as host root")
        # Start: the payload runs.
        r = self.oci("start", "life")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(h.wait_for(lambda: read(out) == "hello\n", 5), read(out))
        self.assertEqual(self.state("life")["status"], "running")
        self.assertFalse(os.path.exists(os.path.join(self.root, "life", "exec.fifo")))
        # A second start is refused, the container keeps running.
        self.one_line_error(self.oci("start", "life"), "is running, not created")
        self.assertEqual(self.state("life")["status"], "running")
        # delete without --force is refused while it runs.
        self.one_line_error(self.oci("delete", "life"), "is running")
        self.assertEqual(self.state("life")["status"], "running")
        # kill by name: the init forwards SIGTERM, sleep dies of it.
        r = self.oci("kill", "life", "TERM")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.reap(pid), 128 + signal.SIGTERM)
        self.assertEqual(self.state("life")["status"], "stopped")
        self.assertEqual(self.state("life")["pid"], 0)
        self.one_line_error(self.oci("kill", "life", "KILL"), "is not running")
        r = self.oci("delete", "life")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.root, "life")))
        self.one_line_error(self.oci("state", "life"), "container 'life' does not exist")

    def test_exit_status_reaches_the_engine(self):
        pid, _ = self.create("seven", ["/bin/sh", "-c", "exit 7"])
        self.assertEqual(self.oci("start", "seven").returncode, 0)
        self.assertEqual(self.reap(pid), 7)
        self.assertEqual(self.state("seven")["status"], "stopped")

    def test_kill_a_created_container_and_delete(self):
        pid, _ = self.create("early", ["/bin/sh", "-c", "echo never"])
        r = self.oci("kill", "early", "9")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.reap(pid), 128 + signal.SIGKILL)
        self.assertEqual(self.state("early")["status"], "stopped")
        self.one_line_error(self.oci("start", "early"), "is stopped, not created")
        self.assertEqual(self.oci("delete", "early").returncode, 0)

    def test_delete_of_a_created_container_kills_it(self):
        pid, _ = self.create("created-del", ["/bin/sh", "-c", "echo never"])
        r = self.oci("delete", "created-del")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.reap(pid), 128 + signal.SIGKILL)

    def test_delete_force(self):
        pid, _ = self.create("forced", ["/bin/sh", "-c", "exec sleep 60"])
        self.assertEqual(self.oci("start", "forced").returncode, 0)
        r = self.oci("delete", "--force", "forced")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.reap(pid), 128 + signal.SIGKILL)
        self.assertFalse(os.path.exists(os.path.join(self.root, "forced")))

    def test_kill_all(self):
        pid, _ = self.create("all", ["/bin/sh", "-c", "sleep 60 & sleep 60 & wait"])
        self.assertEqual(self.oci("start", "all").returncode, 0)
        self.assertTrue(h.wait_for(lambda: len(h.descendants(pid)) >= 3, 5), h.descendants(pid))
        r = self.oci("kill", "--all", "all", "SIGTERM")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.reap(pid)

    def test_run_foreground_passes_the_status_and_cleans_up(self):
        b = self.bundle("fg", ["/bin/sh", "-c", "echo out; exit 3"])
        r = self.oci("run", "--bundle", b, "fg")
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertEqual(r.stdout, "out\n")
        self.assertFalse(os.path.exists(os.path.join(self.root, "fg")))

    def test_run_foreground_state_while_it_runs(self):
        b = self.bundle("fg2", ["/bin/sh", "-c", "exec sleep 60"])
        p = subprocess.Popen([h.RUN, "--root", self.root, "run", "--bundle", b, "fg2"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.assertTrue(h.wait_for(lambda: os.path.exists(os.path.join(self.root, "fg2", "state.json")), 10))
            self.assertEqual(self.state("fg2")["status"], "running")
            self.assertEqual(self.oci("kill", "fg2", "KILL").returncode, 0)
            self.assertEqual(p.wait(10), 128 + signal.SIGKILL)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertFalse(os.path.exists(os.path.join(self.root, "fg2")))

    def test_run_detach(self):
        out = os.path.join(self.out, "detach.txt")
        b = self.bundle("det", ["/bin/sh", "-c", "echo up; exec sleep 60"])
        pidfile = os.path.join(self.out, "det.pid")
        with open(out, "w") as f:
            r = self.oci("run", "--detach", "--bundle", b, "--pid-file", pidfile, "det", stdout=f)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(pidfile) as f:
            pid = int(f.read())
        self.assertEqual(self.state("det")["status"], "running")
        self.assertTrue(h.wait_for(lambda: read(out) == "up\n", 5), read(out))
        self.assertEqual(self.oci("delete", "-f", "det").returncode, 0)
        self.reap(pid)

    def test_console_socket_gets_a_pty(self):
        path = os.path.join(self.out, "console.sock")
        if os.path.exists(path):
            os.unlink(path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)
        got = {}

        def accept():
            conn, _ = srv.accept()
            msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
            got["fds"], got["name"] = fds, msg
            conn.close()
        t = threading.Thread(target=accept)
        t.start()
        b = h.bundle("oci-tty", h.base_spec(["/bin/sh", "-c", "tty; echo on-the-pty"], terminal=True))
        pidfile = os.path.join(self.out, "tty.pid")
        r = self.oci("create", "--bundle", b, "--console-socket", path, "--pid-file", pidfile, "tty")
        t.join(5)
        srv.close()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(got.get("fds", [])), 1, got)
        master = got["fds"][0]
        with open(pidfile) as f:
            pid = int(f.read())
        self.assertEqual(self.oci("start", "tty").returncode, 0)
        seen = b""
        deadline = time.monotonic() + 5
        while b"on-the-pty" not in seen and time.monotonic() < deadline:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
        os.close(master)
        self.assertIn(b"/dev/pts/", seen)
        self.assertIn(b"on-the-pty", seen)
        self.reap(pid)

    def test_bad_input(self):
        b = self.bundle("bad", ["/bin/true"])
        for args, needle in [
            (("start", "nope"), "container 'nope' does not exist"),
            (("state", "nope"), "container 'nope' does not exist"),
            (("kill", "nope"), "container 'nope' does not exist"),
            (("delete", "nope"), "container 'nope' does not exist"),
            (("create", "--bundle", b, "a/b"), "container id 'a/b'"),
            (("create", "--bundle", b, ".."), "container id '..'"),
            (("kill", "x", "SIGNOPE"), "signal 'SIGNOPE': unknown"),
            (("exec", "x", "true"), "exec: not implemented"),
            (("--systemd-cgroup", "create", "--bundle", b, "x"), "--systemd-cgroup"),
        ]:
            with self.subTest(args=args):
                self.one_line_error(self.oci(*args), needle)
        # A console socket that is not a socket: one line, nothing left.
        notsock = os.path.join(self.out, "not-a-socket")
        with open(notsock, "w"):
            pass
        t = h.bundle("oci-bad-tty", h.base_spec(["/bin/true"], terminal=True))
        self.one_line_error(self.oci("create", "--bundle", t, "--console-socket", notsock, "c1"),
                            f"--console-socket '{notsock}'")
        self.assertFalse(os.path.exists(os.path.join(self.root, "c1")))
        # A terminal without a console socket, a broken spec: nothing left.
        self.one_line_error(self.oci("create", "--bundle", t, "c2"), "give --console-socket")
        broken = h.bundle("oci-broken", {**h.base_spec(["/bin/true"]), "process": {"args": "no"}})
        self.one_line_error(self.oci("create", "--bundle", broken, "c3"), "process")
        # A spec that maps host root: refused, never run.
        spec = h.base_spec(["/bin/true"])
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]
        self.one_line_error(self.oci("create", "--bundle", h.bundle("oci-root", spec), "c4"), "host uid 0")
        self.assertEqual(sorted(os.listdir(self.root)), [])

    def test_the_same_id_twice(self):
        pid, b = self.create("twice", ["/bin/sh", "-c", "exec sleep 60"])
        self.one_line_error(self.oci("create", "--bundle", b, "twice"), "container 'twice' already exists")
        self.assertEqual(self.state("twice")["status"], "created")
        self.assertEqual(self.oci("delete", "twice").returncode, 0)
        self.reap(pid)

    def test_concurrent_creates_one_wins(self):
        b = self.bundle("race", ["/bin/sh", "-c", "exec sleep 60"])
        env = dict(os.environ, PUKAIPU_SECCOMP_CACHE=os.path.join(h.TMP, "seccomp-cache"))
        # stderr to files: the winner's container keeps its stdio (passed
        # through, as runc does) and would hold a pipe open.
        errs = [open(os.path.join(self.out, f"race-{i}.err"), "w+") for i in range(4)]
        procs = [subprocess.Popen([h.RUN, "--root", self.root, "create", "--bundle", b, "race"], env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errs[i])
                 for i in range(4)]
        results = []
        for p, f in zip(procs, errs):
            rc = p.wait(30)
            f.seek(0)
            results.append((rc, f.read()))
            f.close()
        self.assertEqual(sorted(rc for rc, _ in results), [0, 1, 1, 1], results)
        for rc, err in results:
            if rc:
                self.assertIn("container 'race' already exists", err)
        pid = self.state("race")["pid"]
        self.assertEqual(self.oci("delete", "race").returncode, 0)
        self.reap(pid)

    def test_log_json(self):
        log = os.path.join(self.out, "log.json")
        if os.path.exists(log):
            os.unlink(log)
        r = self.oci("--log", log, "--log-format", "json", "start", "missing")
        self.assertEqual(r.returncode, 1)
        with open(log) as f:
            entry = json.loads(f.read().strip().splitlines()[-1])
        self.assertEqual(entry["level"], "error")
        self.assertEqual(entry["msg"], "container 'missing' does not exist")
        self.assertIn("time", entry)

    def test_resources_get_a_cgroup_that_delete_removes(self):
        # linux.resources: the container's own cgroup (sandbox/cgroup.h),
        # which outlives create and goes with delete.
        spec = h.base_spec(["/bin/sh", "-c", "exec sleep 60"])
        spec["linux"]["resources"] = {"pids": {"limit": 32}}
        pidfile = os.path.join(self.out, "cg.pid")
        r = self.oci("create", "--bundle", h.bundle("oci-cg", spec), "--pid-file", pidfile, "cg")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(pidfile) as f:
            pid = int(f.read())
        with open(os.path.join(self.root, "cg", "state.json")) as f:
            leaves = json.load(f)["cgroups"]
        self.assertTrue(leaves)
        for leaf in leaves:
            with open(os.path.join(leaf, "cgroup.procs")) as f:
                self.assertIn(str(pid), f.read().split())
            if os.path.exists(os.path.join(leaf, "pids.max")):
                with open(os.path.join(leaf, "pids.max")) as f:
                    self.assertEqual(f.read().strip(), "32")
        self.assertEqual(self.oci("start", "cg").returncode, 0)
        r = self.oci("delete", "--force", "cg")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.reap(pid)
        for leaf in leaves:
            self.assertFalse(os.path.exists(leaf), leaf)

    def test_list_features_version(self):
        pid, _ = self.create("listed", ["/bin/sh", "-c", "exec sleep 60"])
        r = self.oci("list", "--format", "json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([(c["id"], c["status"]) for c in json.loads(r.stdout)], [("listed", "created")])
        self.assertEqual(self.oci("list", "-q").stdout, "listed\n")
        f = json.loads(self.oci("features").stdout)
        self.assertIn("user", f["linux"]["namespaces"])
        self.assertTrue(self.oci("--version").stdout.startswith("pukaipu-run version "))
        self.assertEqual(self.oci("delete", "listed").returncode, 0)
        self.reap(pid)


if __name__ == "__main__":
    h.main()
