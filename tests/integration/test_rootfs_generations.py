"""rootfs-builder generations, offline: a local apt repository (dpkg-deb +
dpkg-scanpackages, served on 127.0.0.1) with a busybox package made from the
host's static /bin/busybox and a test package in two versions. Each build is
mmdebstrap --variant=custom --mode=chrootless (about 2 s). Checks: a new
generation only when something changed, packages.lock diff, hard links to
identical files, the current/previous pointers, --rollback, --list, garbage
collection that spares what a live run record names, an unresolvable
manifest, an interrupted (SIGKILL) build, a full disk, the migration of a
single old rootfs, and an instance (pukaipu-run) pinned to its generation.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import harness as h
import sys
sys.path.insert(0, os.path.join(h.SRC, "rootfs-builder")) if h.SRC else None
from test_rootfs_builder import BUILDER, FakeMirror, builder

TEST_PKG = "pukaipu-test-gen"


def deb(pool, name, version, files, depends=None):
    root = tempfile.mkdtemp(dir=pool)
    os.makedirs(os.path.join(root, "DEBIAN"))
    for path, (data, mode) in files.items():
        p = os.path.join(root, path.lstrip("/"))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if isinstance(data, str) and data.startswith("->"):
            os.symlink(data[2:], p)
            continue
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)
    with open(os.path.join(root, "DEBIAN", "control"), "w") as f:
        f.write(f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: pukaipu tests <t@localhost>\n"
                + (f"Depends: {depends}\n" if depends else "") + "Description: pukaipu test package\n")
    out = os.path.join(pool, f"{name}_{version}_all.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, out], check=True, capture_output=True)
    shutil.rmtree(root)


def publish(www):
    """dists/stable/{Release,main/binary-amd64/Packages}: unsigned (the test
    manifest allows that with apt options; the signed path is test_rootfs_builder's)."""
    b = os.path.join(www, "dists", "stable", "main", "binary-amd64")
    os.makedirs(b, exist_ok=True)
    pk = subprocess.run(["dpkg-scanpackages", "--multiversion", "pool"], cwd=www, check=True, capture_output=True).stdout
    with open(os.path.join(b, "Packages"), "wb") as f:
        f.write(pk)
    import hashlib
    with open(os.path.join(www, "dists", "stable", "Release"), "w") as f:
        f.write("Suite: stable\nCodename: stable\nArchitectures: amd64 all\nComponents: main\nSHA256:\n"
                f" {hashlib.sha256(pk).hexdigest()} {len(pk)} main/binary-amd64/Packages\n")


def busybox_files():
    with open("/bin/busybox", "rb") as f:
        bb = f.read()
    files = {"/bin/busybox": (bb, 0o755)}
    if h.PROBE:  # static too: `probe serve-fd3` stands in for xpra on the desktop socket
        with open(h.PROBE, "rb") as f:
            files["/bin/probe"] = (f.read(), 0o755)
    for applet in ("sh", "sleep", "cat", "echo", "ls", "true"):
        files[f"/bin/{applet}"] = ("->busybox", 0)
    return files


def gen_files(version, big):
    return {"/usr/share/pukaipu-test/version": (f"{version}\n".encode(), 0o644),
            "/usr/share/pukaipu-test/big": (big, 0o644)}


@unittest.skipUnless(shutil.which("mmdebstrap") and shutil.which("dpkg-scanpackages"),
                     "mmdebstrap or dpkg-dev is not installed (run .ci/install-deps)")
class Generations(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        h.ensure_tmp()
        cls.dir = tempfile.mkdtemp(prefix="rootfs-gen-", dir=h.TMP)
        os.chmod(cls.dir, 0o755)
        cls.www = os.path.join(cls.dir, "www")
        cls.pool = os.path.join(cls.www, "pool")
        os.makedirs(cls.pool)
        deb(cls.pool, "pukaipu-test-busybox", "1.0", busybox_files())
        cls.big = os.urandom(1 << 20)  # the same 1 MiB in both versions: shared by hard link
        deb(cls.pool, TEST_PKG, "1.0", gen_files("1.0", cls.big))
        publish(cls.www)
        cls.mirror = FakeMirror(cls.www, fake_sid=False)
        # pukaipu-run mounts the instance's passwd and group over these.
        cls.files = os.path.join(cls.dir, "files")
        os.makedirs(cls.files)
        for n in ("passwd", "group"):
            with open(os.path.join(cls.files, n), "w") as f:
                f.write("root:x:0:0:root:/root:/bin/sh\n" if n == "passwd" else "root:x:0:\n")

    @classmethod
    def tearDownClass(cls):
        cls.mirror.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.out = tempfile.mkdtemp(prefix="out-", dir=self.dir)
        os.chmod(self.out, 0o755)
        self.run_dir = tempfile.mkdtemp(prefix="run-", dir=self.dir)
        self.base = os.path.join(self.out, "tiny")

    def tearDown(self):
        shutil.rmtree(self.out, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def manifest(self, packages=None, **extra):
        m = {"name": "tiny", "suite": "stable", "mirror": self.mirror.url, "variant": "custom", "mode": "chrootless",
             "apt_options": {"Acquire::AllowInsecureRepositories": "true", "APT::Get::AllowUnauthenticated": "true"},
             "packages": packages or ["pukaipu-test-busybox", TEST_PKG],
             "directories": [{"path": "/data/home", "mode": "0755"}, {"path": "/tmp", "mode": "1777"},
                             {"path": "/proc", "mode": "0755"}, {"path": "/dev", "mode": "0755"},
                             {"path": "/sys", "mode": "0755"}, {"path": "/run", "mode": "0755"},
                             {"path": "/etc/chromium/policies/managed", "mode": "0755"}],
             "files_root": self.files,
             "files": [{"source": "passwd", "destination": "/etc/passwd", "mode": "0644"},
                       {"source": "group", "destination": "/etc/group", "mode": "0644"}],
             **extra}
        p = os.path.join(self.dir, "tiny.json")
        with open(p, "w") as f:
            json.dump(m, f)
        return p

    def build(self, *extra, manifest=None, expect=0):
        r = builder("--output-dir", self.out, "--run-dir", self.run_dir, "--quiet", *extra,
                    manifest or self.manifest(), timeout=300)
        self.assertEqual(r.returncode, expect, r.stderr)
        return r

    def current(self, which="current"):
        return os.readlink(os.path.join(self.base, which))

    def gens(self):
        return sorted(n for n in os.listdir(self.base) if n[:1].isdigit() and not n.endswith(".json"))

    def add_version_2(self):
        deb(self.pool, TEST_PKG, "2.0", gen_files("2.0", self.big))
        publish(self.www)

    def tearDown_version_2(self):
        os.unlink(os.path.join(self.pool, f"{TEST_PKG}_2.0_all.deb"))
        publish(self.www)

    def test_generations_skip_diff_links_rollback_gc(self):
        r = self.build()
        g1 = self.current()
        self.assertEqual(self.gens(), [g1])
        self.assertFalse(os.path.lexists(os.path.join(self.base, "previous")))
        with open(os.path.join(self.base, g1, "usr/share/pukaipu/packages.lock")) as f:
            self.assertIn(f"{TEST_PKG}=1.0", f.read().splitlines())
        # Nothing changed: no new generation, and it says so.
        r = self.build()
        self.assertIn("nothing changed", r.stderr)
        self.assertEqual(self.gens(), [g1])
        # One package newer: a new generation, the diff printed, identical files shared.
        self.add_version_2()
        self.addCleanup(self.tearDown_version_2)
        time.sleep(1.1)  # generation names have one-second resolution (a suffix would do too)
        r = self.build()
        print(r.stderr.strip().splitlines()[-1])
        g2 = self.current()
        self.assertNotEqual(g1, g2)
        self.assertEqual(self.current("previous"), g1)
        self.assertIn(f"  {TEST_PKG}: 1.0 -> 2.0", r.stderr)
        a, b = (os.stat(os.path.join(self.base, g, "usr/share/pukaipu-test/big")) for g in (g1, g2))
        self.assertEqual(a.st_ino, b.st_ino, "identical file not hard-linked")
        self.assertEqual(os.stat(os.path.join(self.base, g1, "bin/busybox")).st_ino,
                         os.stat(os.path.join(self.base, g2, "bin/busybox")).st_ino)
        va, vb = (os.stat(os.path.join(self.base, g, "usr/share/pukaipu-test/version")) for g in (g1, g2))
        self.assertNotEqual(va.st_ino, vb.st_ino)
        with open(os.path.join(self.base, g2, "usr/share/pukaipu-test/version")) as f:
            self.assertEqual(f.read(), "2.0\n")
        # --list: both, their state and sizes; the second one's own size is small.
        r = builder("--output-dir", self.out, "--run-dir", self.run_dir, "--list", "tiny")
        self.assertEqual(r.returncode, 0, r.stderr)
        print(r.stdout)
        rows = {l.split()[0]: l for l in r.stdout.splitlines()[1:]}
        self.assertIn("current", rows[g2])
        self.assertIn("previous", rows[g1])
        own = self.own_bytes(g2)
        self.assertLess(own, 256 << 10, "the second generation should cost kilobytes, not the shared MiB")
        print(f"disk cost of generation 2 (one package changed): {own} bytes of "
              f"{self.total_bytes(g2)}")
        # Rollback moves current back; again forward.
        r = builder("--output-dir", self.out, "--run-dir", self.run_dir, "--rollback", "tiny")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual((self.current(), self.current("previous")), (g1, g2))
        r = builder("--output-dir", self.out, "--run-dir", self.run_dir, "--rollback", "tiny")
        self.assertEqual((self.current(), self.current("previous")), (g2, g1))
        # GC: a third generation (--rebuild) makes g1 removable, unless a live record names it.
        record = os.path.join(self.run_dir, "alice", f"rootfs-{os.getpid()}")
        os.makedirs(os.path.dirname(record))
        with open(record, "w") as f:
            f.write(os.path.join(self.base, g1) + "\n")
        time.sleep(1.1)
        r = self.build("--rebuild")
        g3 = self.current()
        self.assertEqual(self.gens(), [g1, g2, g3])
        self.assertIn(f"keeping generation {g1}: in use by alice", r.stderr)
        # A stale record (its process is gone) names nothing.
        dead = subprocess.Popen(["true"])
        dead.wait()
        os.rename(record, os.path.join(os.path.dirname(record), f"rootfs-{dead.pid}"))
        # A run that changes nothing still collects.
        r = self.build()
        self.assertIn("nothing changed", r.stderr)
        self.assertIn(f"removed generation {g1}", r.stderr)
        self.assertEqual(self.gens(), [g2, g3], r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.base, g1 + ".json")))
        time.sleep(1.1)
        r = self.build("--rebuild")
        self.assertEqual(self.gens(), [g3, self.current()], r.stderr)
        self.assertIn(f"removed generation {g2}", r.stderr)

    def own_bytes(self, gen):
        import rootfs_generations as G
        return G.sizes(self.base, self.gens())[gen][1]

    def total_bytes(self, gen):
        import rootfs_generations as G
        return G.sizes(self.base, self.gens())[gen][0]

    def untouched(self):
        return (self.current(), self.gens(), sorted(os.listdir(self.base)))

    def test_unresolvable_manifest_leaves_current(self):
        self.build()
        before = self.untouched()
        r = self.build(manifest=self.manifest(packages=["pukaipu-test-busybox", "no-such-package"]), expect=1)
        line = r.stderr.strip().splitlines()[-1]
        self.assertRegex(line, r"^rootfs-builder: mmdebstrap failed \(exit \d+\): .*no-such-package")
        self.assertEqual(self.untouched(), before)

    def build_until_mmdebstrap_runs(self):
        p = subprocess.Popen([BUILDER, "--output-dir", self.out, "--run-dir", self.run_dir, "--rebuild",
                              self.manifest()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        for line in p.stderr:
            if "extracting archives" in line or "downloading packages" in line:
                break
        return p

    def test_sigkill_mid_build_is_cleaned_by_the_next_run(self):
        self.build()
        before = self.untouched()
        p = self.build_until_mmdebstrap_runs()
        self.assertIsNone(p.poll(), "the build ended before it could be killed")
        p.kill()
        p.wait()
        p.stderr.close()
        # mmdebstrap (its child) may still be finishing: wait until it is gone.
        self.assertTrue(h.wait_for(lambda: not subprocess.run(["pgrep", "-f", self.out], capture_output=True).stdout,
                                   timeout=30))
        leftovers = [n for n in os.listdir(self.base) if n.startswith(".build-")]
        self.assertEqual(len(leftovers), 1, os.listdir(self.base))
        self.assertEqual(self.current(), before[0])
        r = self.build()
        self.assertIn(f"removing {leftovers[0]}, left by an interrupted build", r.stderr)
        self.assertIn("nothing changed", r.stderr)
        self.assertEqual(self.untouched(), before)

    def test_sigint_mid_build(self):
        self.build()
        before = self.untouched()
        p = self.build_until_mmdebstrap_runs()
        p.send_signal(signal.SIGINT)
        rest = p.communicate(timeout=120)[1]
        self.assertEqual(p.returncode, 1, rest)
        self.assertIn("interrupted by signal 2", rest)
        self.assertEqual(self.untouched(), before)

    def test_full_disk_leaves_current(self):
        self.build()
        g1 = self.current()
        # A small tmpfs as OUTPUT: the first generation fits, the second does not
        # (the test package grows by 4 MiB that cannot be hard-linked).
        small = os.path.join(self.dir, "small")
        os.makedirs(small, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", small], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", small])
        subprocess.run(["cp", "-a", self.base, os.path.join(small, "tiny")], check=True)
        deb(self.pool, TEST_PKG, "3.0", {**gen_files("3.0", self.big), "/usr/share/pukaipu-test/fat":
                                         (os.urandom(4 << 20), 0o644)})
        publish(self.www)
        self.addCleanup(lambda: (os.unlink(os.path.join(self.pool, f"{TEST_PKG}_3.0_all.deb")), publish(self.www)))
        r = builder("--output-dir", small, "--run-dir", self.run_dir, "--quiet", self.manifest(), timeout=300)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(r.stderr.strip().splitlines()[-1], r"No space left on device|mmdebstrap failed")
        self.assertEqual(os.readlink(os.path.join(small, "tiny", "current")), g1)
        self.assertEqual([n for n in os.listdir(os.path.join(small, "tiny")) if n.startswith(".build-")], [])

    def test_single_old_rootfs_becomes_the_first_generation(self):
        self.build()
        g1 = self.current()
        # The layout before generations: the tree itself at OUTPUT/NAME.
        old = os.path.join(self.out, "tiny.old")
        os.rename(os.path.join(self.base, g1), old)
        shutil.rmtree(self.base)
        os.rename(old, self.base)
        r = builder("--output-dir", self.out, "--list", "tiny")
        self.assertIn("a single rootfs from before generations", r.stderr)
        # What the package's postinst runs on upgrade (and every build does first).
        r = builder("--output-dir", self.out, "--migrate", "tiny")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("was a single rootfs: it is now generation", r.stderr)
        r = builder("--output-dir", self.out, "--migrate", "tiny")
        self.assertIn("already has generations", r.stderr)
        r = self.build()
        self.assertIn("nothing changed", r.stderr)
        self.assertEqual(len(self.gens()), 1)
        self.assertTrue(os.path.isfile(os.path.join(self.base, "current", "bin", "busybox")))


    def test_instance_keeps_its_generation_and_moves_when_no_client(self):
        """A real pukaipu-run instance on generation 1: it keeps running across
        the build of generation 2 (and its generation is not collected), `pukaipu
        list` says it is behind, it does not restart while a client is connected
        to its desktop socket, and restarts (log line) once none is; the next
        start runs generation 2. rootfsUpdate.staleDays 0 stands for "N days
        have passed"; checkSeconds 1 keeps the test short."""
        from sysroot import Sysroot  # noqa: F401 (instance_sysroot's)
        from test_instances import TOOL, instance_sysroot
        if not (h.RUN and TOOL):
            self.skipTest("run through meson test (PUKAIPU_RUN, PUKAIPU_TOOL unset)")
        self.build()
        g1 = self.current()
        cmd = ["/bin/sh", "-c", "echo version=$(cat /usr/share/pukaipu-test/version); exec /bin/probe serve-fd3"]
        s = instance_sysroot("rootfs-gen", 3600, 26600, cmd, ["/bin/sh"], rootfs=self.base,
                             rootfsUpdate={"staleDays": 0, "checkSeconds": 1})
        self.addCleanup(s.cleanup)
        r = s.run([TOOL, "create", "genuser", "--fqdn", "genuser.example.test"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.run_dir = s.run_dir  # the builder's GC reads these records

        def listed():
            r = s.run([TOOL, "list", "--json"])
            self.assertEqual(r.returncode, 0, r.stderr)
            return {i["user"]: i for i in json.loads(r.stdout)}["genuser"]

        def start():
            p = s.popen([h.RUN, "genuser"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True)
            self.addCleanup(lambda: p.poll() is None and (p.terminate(), p.wait(timeout=30)))
            self.assertTrue(h.wait_for(lambda: listed()["state"] == "running", timeout=30), "never ran")
            return p

        p = start()
        self.assertEqual((listed()["generation"], listed()["behind"]), (g1, False))
        records = [n for n in os.listdir(os.path.join(s.run_dir, "genuser")) if n.startswith("rootfs-")]
        self.assertEqual(len(records), 1)
        with open(os.path.join(s.run_dir, "genuser", records[0])) as f:
            self.assertEqual(f.read().strip(), os.path.join(self.base, g1))
        # A client on the desktop socket (the front door's connection would be one).
        import socket
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(os.path.join(s.run_dir, "genuser", "desktop.sock"))
        self.add_version_2()
        self.addCleanup(self.tearDown_version_2)
        time.sleep(1.1)
        self.build()
        g2 = self.current()
        self.assertNotEqual(g1, g2)
        time.sleep(1.1)
        r = self.build("--rebuild")  # g3: g1 is neither current nor previous now
        g3 = self.current()
        self.assertIn(f"keeping generation {g1}: in use by genuser", r.stderr)
        self.assertIn(g1, self.gens())
        info = listed()
        self.assertEqual((info["generation"], info["behind"], info["currentGeneration"]), (g1, True, g3))
        time.sleep(4)  # four checks with a client attached (accepted by the payload): no restart
        self.assertIsNone(p.poll(), "restarted while a client was attached")
        client.close()
        out = p.communicate(timeout=30)[0]
        self.assertIn("version=1.0", out)
        self.assertRegex(out, rf"pukaipu-run: genuser: restarting on the current rootfs generation: generation {g1} "
                              rf"is behind current \({g3}\) for 0 days \(rootfsUpdate.staleDays 0\) and no client")
        # 75 (EX_TEMPFAIL): pukaipu@.service's RestartForceExitStatus= starts it again, socket or not.
        self.assertEqual(p.returncode, 75, out)
        # The next start (pukaipu@USER.socket's) runs the current generation.
        p = start()
        self.assertEqual((listed()["generation"], listed()["behind"]), (g3, False))
        # `pukaipu restart --when-idle`: the request is acted on (no client).
        r = s.run([TOOL, "restart", "genuser", "--when-idle"])
        self.assertEqual(r.returncode, 0, r.stderr)
        out = p.communicate(timeout=30)[0]
        self.assertIn("version=2.0", out)
        self.assertIn("a restart was asked for (pukaipu restart --when-idle)", out)
        self.assertEqual(p.returncode, 75, out)
        # A stop from outside (systemctl stop's SIGTERM) is not a swap: 143, stays stopped.
        p = start()
        p.terminate()
        out = p.communicate(timeout=30)[0]
        self.assertEqual(p.returncode, 143, out)
        self.assertNotIn("restarting on the current rootfs generation", out)
        # Nothing names g1 now: the next build collects it.
        time.sleep(1.1)
        r = self.build("--rebuild")
        self.assertIn(f"removed generation {g1}", r.stderr)


if __name__ == "__main__":
    h.main()
