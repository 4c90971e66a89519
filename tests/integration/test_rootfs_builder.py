"""rootfs-builder: manifest validation (one line naming the field), the
manifest hash (what goes into it), --list and --rollback, fast and clear
failures for unreachable repositories and wrong keys, an interrupted build
leaving nothing behind, and one small real build.

Network: only Debian's mirror (the small real build) and servers this test
runs on 127.0.0.1. Brave's repository is never contacted; the Brave manifest
is validated, and its unreachable-repository behaviour is tested with the
repository and key URLs pointed at 127.0.0.1:9 (nothing listens there).
"""
import copy
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import stat
import sys
import subprocess
import tempfile
import threading
import time
import unittest

import harness as h

SRC = h.SRC or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILDER = os.path.join(SRC, "rootfs-builder", "rootfs-builder")
MANIFESTS = os.path.join(SRC, "rootfs-builder", "manifests")
FILES = os.path.join(SRC, "rootfs-builder", "files")
UNREACHABLE = "http://127.0.0.1:9/"


def load(name):
    with open(os.path.join(MANIFESTS, f"{name}.json")) as f:
        return json.load(f)


def builder(*args, env=None, timeout=120):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([BUILDER, *args], capture_output=True, text=True, timeout=timeout, env=e,
                          stdin=subprocess.DEVNULL)



def manifest_digest(path):
    """The manifest sha256 that rootfs-builder records (rootfs_manifest.Manifest)."""
    sys.path.insert(0, os.path.join(h.SRC, "rootfs-builder"))
    try:
        import rootfs_manifest
        return rootfs_manifest.Manifest(path).digest()
    finally:
        sys.path.pop(0)

class Workdir:
    def setUp(self):
        h.ensure_tmp()
        self.dir = tempfile.mkdtemp(prefix="rootfs-builder-", dir=h.TMP)
        os.chmod(self.dir, 0o755)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, manifest, name="m.json"):
        p = os.path.join(self.dir, name)
        with open(p, "w") as f:
            json.dump(manifest, f)
        return p

    def manifest(self, base="default", **changes):
        m = copy.deepcopy(load(base))
        m["files_root"] = FILES
        m.update(changes)
        return m


class Validation(Workdir, unittest.TestCase):
    def expect_error(self, mutate, field_re, base="default"):
        m = self.manifest(base)
        mutate(m)
        r = builder("--check", self.write(m))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertRegex(lines[0], r"^rootfs-builder: \S+\.json: " + field_re)
        return lines[0]

    def test_shipped_manifests_are_valid(self):
        for name in ("default", "brave"):
            r = builder("--check", name)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertRegex(r.stdout, rf"ok, name {name}, \d+ packages, manifest sha256 [0-9a-f]{{64}}")

    def test_brave_is_default_with_brave_instead_of_chromium(self):
        dflt, brave = load("default"), load("brave")
        self.assertEqual(brave["packages"], [p if p != "chromium" else "brave-browser" for p in dflt["packages"]])
        self.assertEqual(len(brave["repositories"]), 1)
        repo = brave["repositories"][0]
        self.assertTrue(repo["uri"].startswith("https://"))
        self.assertTrue(repo["key"]["url"].startswith("https://"))
        self.assertTrue(all(re.fullmatch(r"[0-9A-F]{40}", f) for f in repo["key"]["fingerprints"]))
        strip = lambda m: {k: v for k, v in m.items() if k not in ("comment", "name", "packages", "files", "repositories")}
        self.assertEqual(strip(dflt), strip(brave))
        policy = lambda m: {f["destination"] for f in m["files"] if f["source"] == "browser/policy.json"}
        self.assertEqual(policy(dflt), {"/etc/chromium/policies/managed/pukaipu.json"})
        self.assertEqual(policy(brave), {"/etc/brave/policies/managed/pukaipu.json"})
        other = lambda m: [f for f in m["files"] if f["source"] != "browser/policy.json"]
        self.assertEqual(other(dflt), other(brave))

    def test_missing_field(self):
        self.expect_error(lambda m: m.pop("suite"), r"suite: missing$")

    def test_unknown_field(self):
        self.expect_error(lambda m: m.update(pakages=["x"]), r"pakages: unknown field")

    def test_wrong_type(self):
        self.expect_error(lambda m: m.update(packages="xpra"), r"packages: expected a list, got a string$")

    def test_bad_package_name(self):
        self.expect_error(lambda m: m["packages"].append("Bad Name"), r"packages\[\d+\]: 'Bad Name' is not a Debian")

    def test_duplicate_package(self):
        self.expect_error(lambda m: m["packages"].append("xpra"), r"packages\[\d+\]: 'xpra' is listed twice")

    def test_mirror_not_a_url(self):
        self.expect_error(lambda m: m.update(mirror="deb.debian.org"), r"mirror: 'deb.debian.org' is not an http")

    def test_group_writable_file(self):
        self.expect_error(lambda m: m["files"][0].update(mode="0666"), r"files\[0\]\.mode: '0666': group/other-writable")

    def test_setuid_file(self):
        self.expect_error(lambda m: m["files"][0].update(mode="4755"), r"files\[0\]\.mode: '4755': setuid")

    def test_missing_source_file(self):
        self.expect_error(lambda m: m["files"][0].update(source="qtile/nope.py"),
                          r"files\[0\]\.source: 'qtile/nope.py' is not a file")

    def test_source_escaping_files_root(self):
        self.expect_error(lambda m: m["files"][0].update(source="../manifests/default.json"),
                          r"files\[0\]\.source: .* without '\.\.'")

    def test_relative_destination(self):
        self.expect_error(lambda m: m["directories"][0].update(path="data"),
                          r"directories\[0\]\.path: 'data' is not an absolute path")

    def test_repository_key_needs_fingerprints(self):
        self.expect_error(lambda m: m["repositories"][0]["key"].pop("fingerprints"),
                          r"repositories\[0\]\.key\.fingerprints: missing$", base="brave")

    def test_repository_bad_fingerprint(self):
        self.expect_error(lambda m: m["repositories"][0]["key"].update(fingerprints=["0BB75829C2D4E821"]),
                          r"repositories\[0\]\.key\.fingerprints\[0\]: .* 40-digit", base="brave")

    def test_repository_key_url_and_file(self):
        self.expect_error(lambda m: m["repositories"][0]["key"].update(file="k.gpg"),
                          r"repositories\[0\]\.key: give exactly one of 'url' and 'file'$", base="brave")

    def test_not_json(self):
        p = os.path.join(self.dir, "broken.json")
        with open(p, "w") as f:
            f.write("{ nope")
        r = builder("--check", p)
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr.strip(), r"^rootfs-builder: \S+broken\.json: not valid JSON")


class Hash(Workdir, unittest.TestCase):
    def digest(self, path):
        r = builder("--check", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.split()[-1]

    def copy_tree(self):
        files = os.path.join(self.dir, "files")
        shutil.copytree(FILES, files)
        m = self.manifest()
        m["files_root"] = files
        return m, self.write(m), files

    def test_hash_covers_manifest_files_and_modes(self):
        m, path, files = self.copy_tree()
        first = self.digest(path)
        self.assertEqual(first, self.digest(path), "the hash must be stable")
        with open(os.path.join(files, "qtile", "config.py"), "a") as f:
            f.write("# changed\n")
        second = self.digest(path)
        self.assertNotEqual(first, second, "a copied file changed but the hash did not")
        m["files"][0]["mode"] = "0600"
        third = self.digest(self.write(m))
        self.assertNotEqual(second, third, "a mode changed but the hash did not")
        m["packages"].append("hello")
        self.assertNotEqual(third, self.digest(self.write(m)))

    def fake_generation(self, out, name, digest, gen="20260101T000000Z"):
        rec = os.path.join(out, name, gen, "usr", "share", "pukaipu")
        os.makedirs(rec)
        with open(os.path.join(rec, "manifest.sha256"), "w") as f:
            f.write(digest + "\n")
        with open(os.path.join(rec, "packages.lock"), "w") as f:
            f.write("chromium=1.0\nxpra=3.1\n")
        if not os.path.lexists(os.path.join(out, name, "current")):
            os.symlink(gen, os.path.join(out, name, "current"))
        return os.path.join(out, name, gen)

    def test_a_failed_build_leaves_current(self):
        m = self.manifest(mirror=UNREACHABLE)
        path = self.write(m)
        out = os.path.join(self.dir, "out")
        tree = self.fake_generation(out, "default", self.digest(path))
        # Generations are compared after the build (packages can change with
        # the same manifest): an unreachable mirror fails, current stays.
        r = builder("--output-dir", out, path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("mirror: http://127.0.0.1:9/dists/sid/InRelease is unreachable", r.stderr)
        self.assertTrue(os.path.isdir(tree))
        self.assertEqual(os.readlink(os.path.join(out, "default", "current")), os.path.basename(tree))
        self.assertEqual(sorted(os.listdir(os.path.join(out, "default"))), ["20260101T000000Z", "current"])

    def test_list_and_rollback_without_a_previous(self):
        out = os.path.join(self.dir, "out")
        self.fake_generation(out, "default", "0" * 64)
        r = builder("--output-dir", out, "--list", "default")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.splitlines()[1], r"^20260101T000000Z\s+current\s+2026-01-01 00:00\s+0{16}\s+"
                                                   r"chromium 1\.0\s+xpra 3\.1\s")
        r = builder("--output-dir", out, "--rollback", "default")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr.strip(), r"^rootfs-builder: \S+/default: no previous generation to roll back to$")
        r = builder("--output-dir", out, "--list", "nope")
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr.strip(), r"^rootfs-builder: \S+/nope: no such rootfs$")


def gpg_key(workdir):
    """A throwaway signing key: (exported public key file, fingerprint, GNUPGHOME)."""
    home = os.path.join(workdir, "gnupg")
    os.mkdir(home, 0o700)
    env = dict(os.environ, GNUPGHOME=home)
    subprocess.run(["gpg", "--batch", "--quiet", "--passphrase", "", "--quick-gen-key",
                    "pukaipu test repository", "ed25519", "sign", "1d"], env=env, check=True, capture_output=True)
    out = subprocess.run(["gpg", "--batch", "--with-colons", "--list-keys"], env=env, check=True,
                         capture_output=True, text=True).stdout
    fpr = [l.split(":")[9] for l in out.splitlines() if l.startswith("fpr:")][0]
    key = os.path.join(workdir, "repo.gpg")
    with open(key, "wb") as f:
        f.write(subprocess.run(["gpg", "--batch", "--export", fpr], env=env, check=True,
                               capture_output=True).stdout)
    return key, fpr, home


def local_repository(root, gnupghome):
    """A signed apt repository with one package (pukaipu-test-dummy), laid
    out under root for FakeMirror: what an extra repository such as Brave's
    looks like to the builder, without leaving the machine."""
    pkg = os.path.join(root, "..", "pkgroot")
    os.makedirs(os.path.join(pkg, "DEBIAN"))
    os.makedirs(os.path.join(pkg, "usr", "share", "pukaipu-test-dummy"))
    with open(os.path.join(pkg, "usr", "share", "pukaipu-test-dummy", "hello"), "w") as f:
        f.write("from the extra repository\n")
    with open(os.path.join(pkg, "DEBIAN", "control"), "w") as f:
        f.write("Package: pukaipu-test-dummy\nVersion: 1.0\nArchitecture: all\nMaintainer: pukaipu tests "
                "<tests@localhost>\nDescription: test package from a local repository\n")
    os.makedirs(os.path.join(root, "pool"))
    deb = os.path.join(root, "pool", "pukaipu-test-dummy_1.0_all.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", pkg, deb], check=True, capture_output=True)
    with open(deb, "rb") as f:
        data = f.read()
    control = subprocess.run(["dpkg-deb", "-f", deb], check=True, capture_output=True, text=True).stdout
    packages = (control.rstrip("\n") + f"\nFilename: pool/{os.path.basename(deb)}\nSize: {len(data)}\n"
                f"SHA256: {hashlib.sha256(data).hexdigest()}\n\n").encode()
    bdir = os.path.join(root, "dists", "stable", "main", "binary-amd64")
    os.makedirs(bdir)
    with open(os.path.join(bdir, "Packages"), "wb") as f:
        f.write(packages)
    release = ("Origin: pukaipu-tests\nLabel: pukaipu-tests\nSuite: stable\nCodename: stable\n"
               f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S UTC', time.gmtime())}\n"
               "Architectures: amd64\nComponents: main\nSHA256:\n"
               f" {hashlib.sha256(packages).hexdigest()} {len(packages)} main/binary-amd64/Packages\n")
    rel = os.path.join(root, "dists", "stable", "Release")
    with open(rel, "w") as f:
        f.write(release)
    subprocess.run(["gpg", "--batch", "--yes", "--digest-algo", "SHA256", "--clearsign", "-o",
                    os.path.join(root, "dists", "stable", "InRelease"), rel],
                   env=dict(os.environ, GNUPGHOME=gnupghome), check=True, capture_output=True)


class FakeMirror:
    """An HTTP server on 127.0.0.1 that answers /dists/SUITE/InRelease, so the
    builder's mirror check passes without the network."""

    def __init__(self, root, fake_sid=True):
        os.makedirs(root, exist_ok=True)
        if fake_sid:
            os.makedirs(os.path.join(root, "dists", "sid"))
            with open(os.path.join(root, "dists", "sid", "InRelease"), "w") as f:
                f.write("fake\n")
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass
        handler = functools.partial(Quiet, directory=root)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Repositories(Workdir, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.mirror = FakeMirror(os.path.join(self.dir, "www"))

    def tearDown(self):
        self.mirror.close()
        super().tearDown()

    def run_brave(self, mutate):
        m = self.manifest("brave", mirror=self.mirror.url)
        mutate(m["repositories"][0])
        t0 = time.monotonic()
        r = builder("--output-dir", os.path.join(self.dir, "out"), self.write(m))
        return r, time.monotonic() - t0

    def one_line(self, r):
        lines = [l for l in r.stderr.splitlines() if not l.startswith("rootfs-builder: [")]
        self.assertEqual(len(lines), 1, r.stderr)
        return lines[0]

    def test_unreachable_brave_repository_is_a_clear_fast_error(self):
        def point_at_nothing(repo):
            repo["uri"] = UNREACHABLE
            repo["key"]["url"] = UNREACHABLE + "brave-browser-archive-keyring.gpg"
        r, took = self.run_brave(point_at_nothing)
        self.assertEqual(r.returncode, 1, r.stderr)
        line = self.one_line(r)
        self.assertRegex(line, r"^rootfs-builder: repositories\[0\]\.key\.url: http://127\.0\.0\.1:9/\S+ is "
                               r"unreachable: .*[Cc]onnection refused")
        self.assertLess(took, 20)
        self.assertEqual([n for n in os.listdir(os.path.join(self.dir, "out")) if ".tmp-" in n], [])

    def test_key_must_match_the_pinned_fingerprints(self):
        key, fpr, _ = gpg_key(self.dir)

        def wrong(repo):
            repo["key"] = {"file": key, "fingerprints": ["0" * 40]}
        r, _ = self.run_brave(wrong)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(self.one_line(r), rf"repositories\[0\]\.key: key fingerprints \['{fpr}'\] do not match")

        def right(repo):
            repo["key"] = {"file": key, "fingerprints": [fpr]}
            repo["uri"] = UNREACHABLE
        r, _ = self.run_brave(right)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(self.one_line(r), r"repositories\[0\]: http://127\.0\.0\.1:9/dists/stable/InRelease is "
                                           r"unreachable")


def mounts_below(path):
    with open("/proc/self/mountinfo") as f:
        return [l.split()[4] for l in f if l.split()[4].startswith(path + "/")]


@unittest.skipUnless(shutil.which("mmdebstrap"), "mmdebstrap is not installed (run .ci/install-deps)")
class RealBuild(Workdir, unittest.TestCase):
    """A small rootfs from Debian's mirror plus a signed extra repository
    served on 127.0.0.1 (the Brave path): what the builder adds, skipping,
    swapping on --rebuild, and an interrupted build."""

    def setUp(self):
        super().setUp()
        key, fpr, home = gpg_key(self.dir)
        www = os.path.join(self.dir, "www")
        local_repository(www, home)
        self.repo = FakeMirror(www, fake_sid=False)
        self.repo_key = (key, fpr)

    def tearDown(self):
        self.repo.close()
        super().tearDown()

    def small(self):
        m = self.manifest(name="small", variant="essential", packages=["hello", "pukaipu-test-dummy"])
        m["repositories"] = [{"uri": self.repo.url, "suite": "stable", "components": ["main"],
                              "key": {"file": self.repo_key[0], "fingerprints": [self.repo_key[1]]}}]
        m["files"] = [{"source": "pukaipu/browser", "destination": "/usr/lib/pukaipu/browser", "mode": "0750"}]
        m["directories"] = [{"path": "/tmp/.X11-unix", "mode": "1777"}, {"path": "/data/home", "mode": "0755"}]
        return self.write(m)

    def test_build_skip_rebuild(self):
        path, out = self.small(), os.path.join(self.dir, "out")
        r = builder("--output-dir", out, "--quiet", path, timeout=900)
        self.assertEqual(r.returncode, 0, r.stderr)
        print(r.stderr.strip().splitlines()[-1])
        root = os.path.join(out, "small", "current")
        st = os.stat(root)
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o755))
        rec = os.path.join(root, "usr/share/pukaipu")
        with open(os.path.join(rec, "packages.lock")) as f:
            lock = f.read().splitlines()
        self.assertTrue(any(re.fullmatch(r"hello=\S+", l) for l in lock), lock[:5])
        # The extra repository: its package installed, its key inline in the sources.
        self.assertIn("pukaipu-test-dummy=1.0", lock)
        with open(os.path.join(root, "usr/share/pukaipu-test-dummy/hello")) as fh:
            self.assertEqual(fh.read(), "from the extra repository\n")
        sources = subprocess.run(["grep", "-rl", self.repo.url, os.path.join(root, "etc/apt")],
                                 capture_output=True, text=True).stdout.split()
        self.assertEqual(len(sources), 1)
        with open(sources[0]) as fh:
            self.assertIn("BEGIN PGP PUBLIC KEY BLOCK", fh.read())
        self.assertTrue(all("=" in l for l in lock))
        with open(os.path.join(rec, "manifest.sha256")) as f:
            # The manifest's own digest (--check refuses its http:// test
            # repository: only Debian's mirror may be http).
            self.assertEqual(f.read().strip(), manifest_digest(path))
        f = os.stat(os.path.join(root, "usr/lib/pukaipu/browser"))
        self.assertEqual((f.st_uid, stat.S_IMODE(f.st_mode)), (0, 0o750))
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(root, "tmp/.X11-unix")).st_mode), 0o1777)
        self.assertEqual(os.path.getsize(os.path.join(root, "etc/resolv.conf")), 0)
        with open(os.path.join(root, "etc/hostname")) as fh:
            self.assertEqual(fh.read(), "pukaipu\n")
        suid = subprocess.run(["find", root, "-xdev", "-type", "f", "(", "-perm", "-4000", "-o", "-perm", "-2000", ")"],
                              capture_output=True, text=True).stdout.split()
        self.assertEqual(suid, [])
        self.assertEqual(sorted(n for n in os.listdir(out) if not n.endswith(".lock")), ["small"])

        r = builder("--output-dir", out, "--quiet", path, timeout=900)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("nothing changed", r.stderr)
        first = os.readlink(root)
        time.sleep(1.1)
        r = builder("--output-dir", out, "--quiet", "--rebuild", path, timeout=900)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotEqual(os.readlink(root), first, "--rebuild did not make a new generation")
        self.assertEqual(os.readlink(os.path.join(out, "small", "previous")), first)
        self.assertEqual(sorted(n for n in os.listdir(out) if not n.endswith(".lock")), ["small"])

    def test_interrupted_build_leaves_nothing(self):
        path, out = self.small(), os.path.join(self.dir, "out")
        p = subprocess.Popen([BUILDER, "--output-dir", out, path], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seen = []
        for line in p.stderr:
            seen.append(line)
            if "extracting archives" in line or "installing" in line:
                break
        p.send_signal(signal.SIGTERM)
        rest = p.communicate(timeout=120)[1]
        self.assertEqual(p.returncode, 1, "".join(seen) + rest)
        self.assertIn("interrupted by signal 15", rest)
        self.assertEqual(mounts_below(os.path.realpath(out)), [])
        self.assertEqual(sorted(n for n in os.listdir(out) if not n.endswith(".lock")), ["small"])
        self.assertEqual(os.listdir(os.path.join(out, "small")), [], "a partial generation was left")


if __name__ == "__main__":
    h.main()
