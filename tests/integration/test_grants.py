"""Grants and local attach (issue 6): pukaipu grant/revoke/grants/attach.

Each grant is checked from inside the instance: a granted folder is there,
read-only or read-write, and absent without the grant; network none leaves
no route; clipboard, downloads and printing show in xpra's command line and
configuration and in the browser's policy file. Refused paths are refused at
grant time (also through a symbolic link the user planted) and at start (a
path swapped for a symlink after the grant). Local attach: the owner gets a
frame through the Unix socket, another user a permission error.

Instances live in a private copy of the user database (sysroot.py). The mount
and network checks use the busybox rootfs (plus /mnt, /media, /srv and the
browser policy placeholder); the xpra checks use the real rootfs (tests/
desktop/desktop_harness.py) in a container with loopback only. The run
directory is under the host's /run (removed at the end): the attach
directory must have the same path inside, where /run is the container's own
tmpfs.
"""
import json
import os
import re
import shutil
import signal
import socket
import stat
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
PLACEHOLDER = "etc/chromium/policies/managed/pukaipu-grants.json"
S = None            # the Sysroot
ROOTFS = None       # busybox + probe + grant mount roots + policy placeholder
AUDIO_ROOTFS = None  # the same, with what the audio grant looks for
CFG_AUDIO = CFG_DESKTOP = None
USER_TOOL = None    # TOOL where the instances' users can run it (user_tool())
RUN_DIR = f"/run/pukaipu-test-grants-{os.getpid()}"
UIDS = iter(range(3100, 3199))

# The session: whatever the test put into the home as inside.sh.
INSIDE = "/data/home/inside.sh"


def make_rootfs(name, audio=False):
    """A copy of the busybox rootfs with what grants use."""
    dest = os.path.join(h.TMP, name)
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run(["cp", "-a", h.rootfs(), dest], check=True)
    for sub in ("mnt", "media", "srv", "etc/chromium/policies/managed"):
        os.makedirs(os.path.join(dest, sub), mode=0o755, exist_ok=True)
    for p in ("etc/chromium", "etc/chromium/policies", "etc/chromium/policies/managed"):
        os.chmod(os.path.join(dest, p), 0o755)
    with open(os.path.join(dest, PLACEHOLDER), "w") as f:
        f.write("{}\n")
    if audio:
        gst = os.path.join(dest, "usr/lib/python3/dist-packages/gi/overrides")
        os.makedirs(gst, mode=0o755)
        open(os.path.join(gst, "Gst.py"), "w").close()
        pa = os.path.join(dest, "bin/pulseaudio")  # /usr/bin -> ../bin in this rootfs
        with open(pa, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(pa, 0o755)
    subprocess.run(["chmod", "-R", "go-w", dest], check=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    return dest


def config(rootfs, session=True):
    cfg = {
        "rootfs": rootfs,
        "uidRange": [3100, 3199],
        "portRange": [24600, 24699],
        "listenAddress": "127.0.0.1",
        "domain": "example.test",
        "apparmor": {"policy": "optional"},
        "seccompProfile": os.path.join(h.SRC, "profiles/seccomp/default.json"),
        "network": {"mode": "none"},
    }
    if session:
        cfg["session"] = {"command": ["/bin/sh", INSIDE], "shell": ["/bin/sh"]}
    return cfg


def write_config(path, cfg):
    with open(path, "w") as f:
        json.dump(cfg, f)
    os.chmod(path, 0o644)
    return path


# Host folders the tests grant. Not under the build tree or the test scratch
# (h.TMP): a checkout may live under /tmp, and so does h.TMP when the tests
# run outside meson, and pukaipu never lets an instance mount /tmp.
HOSTDATA = f"/srv/pukaipu-test-grants-{os.getpid()}"


def user_tool():
    """TOOL as the instances' users run it (runuser): a copy in h.TMP, since
    the build tree may be out of their reach (a checkout under root's 0700
    home)."""
    dest = os.path.join(h.TMP, "bin", "pukaipu")
    os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
    os.chmod(os.path.dirname(dest), 0o755)
    shutil.copyfile(TOOL, dest + ".tmp")
    os.chmod(dest + ".tmp", 0o755)
    os.replace(dest + ".tmp", dest)
    return dest


def setUpModule():
    global S, ROOTFS, AUDIO_ROOTFS, CFG_AUDIO, USER_TOOL
    os.makedirs(HOSTDATA, mode=0o755, exist_ok=True)
    h.ensure_tmp()
    USER_TOOL = user_tool()
    S = Sysroot("grants")
    S.run_dir = RUN_DIR
    ROOTFS = make_rootfs("grants-rootfs")
    AUDIO_ROOTFS = make_rootfs("grants-rootfs-audio", audio=True)
    write_config(S.config, config(ROOTFS))
    CFG_AUDIO = write_config(os.path.join(S.config_dir, "audio.json"), config(AUDIO_ROOTFS))


def tearDownModule():
    shutil.rmtree(HOSTDATA, ignore_errors=True)
    if S:
        S.cleanup()
    shutil.rmtree(RUN_DIR, ignore_errors=True)


def pukaipu(*args, **kw):
    return S.run([TOOL, *args], **kw)


def state_of(user):
    with open(os.path.join(S.state, "instances", user, "instance.json"), "rb") as f:
        return f.read()


class Base(unittest.TestCase):
    def create(self, user):
        r = pukaipu("create", user, "--fqdn", f"{user}.example.test", "--uid", str(next(UIDS)))
        self.assertEqual(r.returncode, 0, r.stderr)
        uid = int(re.search(r"uid (\d+)", r.stdout).group(1))
        return uid

    def home(self, user):
        return S.host_home(user)

    def inside(self, user, script, uid):
        """Sets the session script (run as the payload by pukaipu-run USER)."""
        p = os.path.join(self.home(user), "inside.sh")
        with open(p, "w") as f:
            f.write(script)
        os.chown(p, uid, uid)

    def start(self, user, *extra, env=None, timeout=60):
        r = S.run([h.RUN, user, *extra], env=env, timeout=timeout)
        if "--shell" not in extra and "--print-spec" not in extra:
            # The desktop's output comes through pukaipu-run's relay, on its
            # stderr (pukaipu-run(8)): split it from pukaipu-run's own lines.
            lines = r.stderr.splitlines(True)
            r.stdout += "".join(x for x in lines if not x.startswith("pukaipu-run: "))
            r.stderr = "".join(x for x in lines if x.startswith("pukaipu-run: "))
        return r

    def grant(self, user, kind, value, env=None):
        r = pukaipu("grant", user, kind, value, env=env)
        self.assertEqual(r.returncode, 0, f"grant {kind} {value}: {r.stderr}")
        return r

    def assert_refused(self, r, needle):
        self.assertNotEqual(r.returncode, 0, r.stdout)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn(needle, lines[0])
        return lines[0]

    def mkdir_as(self, path, uid, mode=0o755):
        os.mkdir(path, mode)
        os.chown(path, uid, uid)
        os.chmod(path, mode)


class Commands(Base):
    def test_defaults_are_isolated_and_listed(self):
        self.create("gdef")
        r = pukaipu("grants", "gdef", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(j["network"], {"value": "none", "default": True})  # this config's default
        for k in ("clipboard", "downloads", "printing", "audio", "gpu"):
            self.assertEqual(j[k], {"value": "off", "default": True}, k)
        self.assertEqual(j["mounts"], [])
        r = pukaipu("grants", "gdef")
        self.assertRegex(r.stdout, r"(?m)^KIND +VALUE$")
        self.assertRegex(r.stdout, r"(?m)^clipboard +off \(default\)$")
        self.assertNotIn("grants", json.loads(state_of("gdef")))

    def test_unknown_kinds_and_values_change_nothing(self):
        self.create("gbad")
        before = state_of("gbad")
        cases = [
            (("webcam", "on"), "unknown kind 'webcam' (valid: mount, network, clipboard, downloads, printing, audio, gpu)"),
            (("clipboard", "yes"), "'yes' is not one of: both, to-browser, from-browser, off"),
            (("downloads", "allow"), "'allow' is not one of: on, off"),
            (("printing", "1"), "'1' is not one of: on, off"),
            (("network", "host"), "'host' is not one of: egress, none"),
            (("mount", "/srv"), "is not HOST_PATH:CONTAINER_PATH[:ro|:rw]"),
            (("mount", "/srv:/mnt/x:rx"), "'rx' is not one of: ro, rw"),
        ]
        for (kind, value), needle in cases:
            with self.subTest(kind=kind, value=value):
                line = self.assert_refused(pukaipu("grant", "gbad", kind, value), needle)
                self.assertIn("nothing changed", line)
        self.assertEqual(state_of("gbad"), before)
        self.assert_refused(pukaipu("grant", "nosuch", "clipboard", "both"), "no instance 'nosuch'")

    def test_changes_are_atomic_and_logged(self):
        self.create("glog")
        r = pukaipu("grant", "glog", "clipboard", "both", env={"SUDO_USER": "alice"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("granted 'glog' clipboard both", r.stdout)
        self.assertRegex(r.stderr, r"grant glog clipboard both \(clipboard: off -> both\) by root \(uid 0, sudo from "
                                   r"alice[^)]*\) at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
        self.assertEqual(json.loads(state_of("glog"))["grants"], {"clipboard": "both"})
        st = os.stat(os.path.join(S.state, "instances/glog/instance.json"))
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid), (0o644, 0))
        leftovers = [n for n in os.listdir(os.path.join(S.state, "instances/glog")) if ".tmp" in n]
        self.assertEqual(leftovers, [])
        # The same grant again: nothing to change, nothing logged.
        r = pukaipu("grant", "glog", "clipboard", "both")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("unchanged", r.stdout)
        self.assertEqual(r.stderr, "")
        r = pukaipu("revoke", "glog", "clipboard", "both")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("revoke glog clipboard both (clipboard: both -> off) by root", r.stderr)
        self.assertNotIn("grants", json.loads(state_of("glog")))
        # Other changes (pukaipu set) keep the grants.
        self.grant("glog", "downloads", "on")
        r = pukaipu("set", "glog", "--tasks", "4096")
        if r.returncode == 0:
            self.assertEqual(json.loads(state_of("glog"))["grants"], {"downloads": "on"})

    def test_only_root_changes_grants(self):
        self.create("groot")
        uid = self.create("gother")
        r = S.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", USER_TOOL, "grant", "groot",
                   "clipboard", "both"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("must run as root", r.stderr)

    def test_gpu_refused_without_render_nodes(self):
        if any(n.startswith("renderD") for n in (os.listdir("/dev/dri") if os.path.isdir("/dev/dri") else [])):
            self.skipTest("this host has GPU render nodes")
        self.create("ggpu")
        before = state_of("ggpu")
        self.assert_refused(pukaipu("grant", "ggpu", "gpu", "on"), "gpu: this host has no GPU render nodes")
        self.assertEqual(state_of("ggpu"), before)

    def test_audio_needs_pulseaudio_in_the_rootfs(self):
        self.create("gaudio")
        before = state_of("gaudio")
        line = self.assert_refused(pukaipu("grant", "gaudio", "audio", "on"), "audio: the rootfs")
        self.assertIn("PulseAudio (/usr/bin/pulseaudio: package pulseaudio)", line)
        self.assertIn("python3-gst-1.0", line)
        self.assertEqual(state_of("gaudio"), before)
        # With a rootfs that has them, the grant is taken and reaches the session.
        r = pukaipu("grant", "gaudio", "audio", "on", env={"PUKAIPU_CONFIG": CFG_AUDIO})
        self.assertEqual(r.returncode, 0, r.stderr)
        spec = json.loads(S.run([h.RUN, "gaudio", "--print-spec"], env={"PUKAIPU_CONFIG": CFG_AUDIO}).stdout)
        self.assertIn("PUKAIPU_AUDIO=on", spec["process"]["env"])
        # On a rootfs without them, the start says so and leaves audio off.
        r = S.run([h.RUN, "gaudio", "--print-spec"])
        self.assertIn("PUKAIPU_AUDIO=off", json.loads(r.stdout)["process"]["env"])
        self.assertIn("audio is granted, but the rootfs lacks PulseAudio", r.stderr)


class Mounts(Base):
    def test_granted_folders_inside_ro_and_rw_and_absent_without(self):
        uid = self.create("gmnt")
        home = self.home("gmnt")
        shared = os.path.join(HOSTDATA, "shared-ro")
        os.makedirs(shared, mode=0o755, exist_ok=True)
        with open(os.path.join(shared, "hello.txt"), "w") as f:
            f.write("shared-content\n")
        os.chmod(os.path.join(shared, "hello.txt"), 0o644)
        work = os.path.join(home, "work")
        self.mkdir_as(work, uid)
        self.inside("gmnt", "cat /mnt/shared/hello.txt; echo ro-write=$(touch /mnt/shared/x 2>/dev/null && echo ok || echo refused); "
                    "echo rw-write=$(echo from-inside > /srv/work/made-inside && echo ok || echo refused); "
                    "ls -d /mnt/shared /srv/work 2>&1; grep -E ' /(mnt|srv)/' /proc/self/mountinfo; true\n", uid)
        # Without grants: neither is there.
        r = self.start("gmnt")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("shared-content", r.stdout)
        self.assertIn("/mnt/shared: No such file or directory", r.stdout)
        self.grant("gmnt", "mount", f"{shared}:/mnt/shared")
        self.grant("gmnt", "mount", f"/home/gmnt/work:/srv/work:rw")
        r = self.start("gmnt")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("shared-content", r.stdout)
        self.assertIn("ro-write=refused", r.stdout)
        self.assertIn("rw-write=ok", r.stdout)
        with open(os.path.join(work, "made-inside")) as f:
            self.assertEqual(f.read(), "from-inside\n")
        self.assertEqual(os.stat(os.path.join(work, "made-inside")).st_uid, uid)
        self.assertFalse(os.path.exists(os.path.join(shared, "x")))
        mi = [l for l in r.stdout.splitlines() if " /mnt/shared " in l or " /srv/work " in l]
        self.assertEqual(len(mi), 2, r.stdout)
        for l in mi:
            self.assertIn("nosuid", l.split()[5])
            self.assertIn("nodev", l.split()[5])
            self.assertIn("ro," if "/mnt/shared" in l else "rw,", l.split()[5] + ",")
        # Revoked: gone again.
        r = pukaipu("revoke", "gmnt", "mount", "/mnt/shared")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.start("gmnt")
        self.assertNotIn("shared-content", r.stdout)
        self.assertIn("/srv/work", r.stdout)

    def test_refused_at_grant_time(self):
        uid = self.create("gref")
        self.create("gneighbour")
        home = self.home("gref")
        secret = os.path.join(HOSTDATA, "root-only")
        os.makedirs(secret, mode=0o700, exist_ok=True)
        os.chmod(secret, 0o700)
        # The user plants symlinks in its own home.
        for name, target in (("to-etc", "/etc"), ("to-neighbour", "/home/gneighbour"), ("to-root", "/root"),
                             ("to-state", S.state), ("to-secret", secret)):
            p = os.path.join(home, name)
            os.symlink(target, p)
            os.lchown(p, uid, uid)
        before = state_of("gref")
        cases = [
            ("/", "refused"),
            ("/etc", "it is or lies inside '/etc'"),
            ("/etc/ssl", "it is or lies inside '/etc'"),
            ("/proc", "'/proc'"),
            ("/sys/kernel", "'/sys'"),
            ("/dev", "'/dev'"),
            ("/root", "'/root'"),
            ("/tmp", "'/tmp'"),
            ("/run", "'/run'"),
            (S.state, "it is or lies inside"),
            (os.path.join(S.state, "instances"), "it is or lies inside"),
            (RUN_DIR, "'/run'"),
            ("/home/gneighbour", "it is or lies inside '/home/gneighbour'"),
            ("/home", "it contains '/home/"),
            ("/var", "it contains"),
            (S.root, "refused"),  # holds the state directory (and may lie in /tmp)
            (secret, "the user cannot"),
            ("/home/gref/missing", "No such file or directory"),
            ("/home/gref/to-etc", "(resolves to '/etc'): refused"),
            ("/home/gref/to-neighbour", "(resolves to '/home/gneighbour'): refused"),
            ("/home/gref/to-root", "resolves to '/root'"),
            ("/home/gref/to-state", f"resolves to '{S.state}'"),
            ("/home/gref/to-secret", "the user cannot"),
        ]
        for host, needle in cases:
            with self.subTest(host=host):
                line = self.assert_refused(pukaipu("grant", "gref", "mount", f"{host}:/mnt/x"), needle)
                self.assertIn("nothing changed", line)
        for cont in ("/etc/x", "/data/home", "/data/home/x", "/usr/x", "/tmp/x", "/run/x", "/var/x", "/opt/x",
                     "/mnt", "/"):
            with self.subTest(container=cont):
                self.assert_refused(pukaipu("grant", "gref", "mount", f"/home/gref:{cont}"), "must be inside /mnt")
        self.assert_refused(pukaipu("grant", "gref", "mount", "/home/gref/../gneighbour:/mnt/x"), "not a normalized")
        self.assertEqual(state_of("gref"), before)

    def test_path_swapped_after_the_grant_is_refused_at_start(self):
        uid = self.create("gswap")
        self.create("gvictim")
        home = self.home("gswap")
        data = os.path.join(home, "data")
        self.mkdir_as(data, uid)
        self.inside("gswap", "ls /mnt/data; echo session-ran\n", uid)
        self.grant("gswap", "mount", "/home/gswap/data:/mnt/data")
        r = self.start("gswap")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("session-ran", r.stdout)
        secret = os.path.join(HOSTDATA, "root-only-2")
        os.makedirs(secret, mode=0o700, exist_ok=True)
        # Another host folder the user may read: no rule forbids it, only the
        # grant's recorded identity tells it from the granted one.
        readable = os.path.join(HOSTDATA, "readable-elsewhere")
        os.makedirs(readable, mode=0o755, exist_ok=True)
        symlinked = " refused, a symlink is on the way now"
        for target, needle in (("/etc", symlinked), ("/home/gvictim", symlinked), ("/", symlinked),
                               (secret, symlinked), (readable, symlinked)):
            with self.subTest(target=target):
                # The user swaps the granted folder for a symlink.
                os.rename(data, data + ".old") if os.path.isdir(data) and not os.path.islink(data) else os.unlink(data)
                os.symlink(target, data)
                os.lchown(data, uid, uid)
                r = self.start("gswap")
                self.assertEqual(r.returncode, 125, r.stdout + r.stderr)
                self.assertNotIn("session-ran", r.stdout)
                # One error line, the last (warnings and the socket line come before it).
                errors = [x for x in r.stderr.splitlines() if "grant '" in x]
                self.assertEqual(len(errors), 1, r.stderr)
                self.assertIn(f"grant '/home/gswap/data':{needle}", r.stderr.strip().splitlines()[-1])
        os.unlink(data)
        # Or for another real folder of its own, by rename: the same path,
        # another inode.
        self.mkdir_as(data, uid)
        r = self.start("gswap")
        self.assertEqual(r.returncode, 125, r.stdout + r.stderr)
        self.assertIn("grant '/home/gswap/data': refused, it is not the one that was granted", r.stderr)
        os.rmdir(data)
        os.rename(data + ".old", data)
        r = self.start("gswap")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_folder_the_user_can_change_is_refused_at_grant_time(self):
        uid = self.create("ganc")
        # A folder outside the home whose parent the user owns: the user could
        # put anything at the granted path later.
        parent = os.path.join(HOSTDATA, "owned-by-ganc")
        self.mkdir_as(parent, uid)
        child = os.path.join(parent, "data")
        self.mkdir_as(child, uid)
        before = state_of("ganc")
        line = self.assert_refused(pukaipu("grant", "ganc", "mount", f"{child}:/mnt/data"),
                                   f"refused, the user can change its folder '{parent}'")
        self.assertIn("nothing changed", line)
        self.assertEqual(state_of("ganc"), before)
        # Inside the user's own home it is allowed, and the identity is kept.
        inner = os.path.join(self.home("ganc"), "a", "b")
        self.mkdir_as(os.path.dirname(inner), uid)
        self.mkdir_as(inner, uid)
        self.grant("ganc", "mount", "/home/ganc/a/b:/mnt/b")
        with open(os.path.join(S.state, "instances/ganc/instance.json")) as f:
            g = json.load(f)["grants"]["mounts"][0]
        st = os.stat(inner)
        self.assertEqual((g["resolved"], g["dev"], g["ino"]), ("/home/ganc/a/b", st.st_dev, st.st_ino))

    def test_print_spec_shows_grants_and_stays_plain_oci(self):
        uid = self.create("gspec")
        self.mkdir_as(os.path.join(self.home("gspec"), "pics"), uid)
        self.grant("gspec", "mount", "/home/gspec/pics:/media/pics:rw")
        self.grant("gspec", "clipboard", "from-browser")
        self.grant("gspec", "downloads", "on")
        r = S.run([h.RUN, "gspec", "--print-spec"])
        self.assertEqual(r.returncode, 0, r.stderr)
        spec = json.loads(r.stdout)
        self.assertEqual(set(spec), {"ociVersion", "process", "root", "hostname", "mounts", "linux"})
        mounts = {m["destination"]: m for m in spec["mounts"]}
        self.assertEqual(mounts["/media"]["type"], "tmpfs")
        self.assertEqual(mounts["/media/pics"], {"destination": "/media/pics", "type": "bind",
                                                 "source": "/home/gspec/pics",
                                                 "options": ["bind", "rw", "nosuid", "nodev"]})
        self.assertEqual(mounts["/" + PLACEHOLDER]["source"], f"{RUN_DIR}/gspec/browser-policy.json")
        attach = f"{RUN_DIR}/gspec/attach"
        self.assertEqual(mounts[attach]["source"], attach)
        env = spec["process"]["env"]
        for e in ("PUKAIPU_CLIPBOARD=to-client", "PUKAIPU_DOWNLOADS=on", "PUKAIPU_PRINTING=off", "PUKAIPU_AUDIO=off",
                  f"PUKAIPU_ATTACH_DIR={attach}"):
            self.assertIn(e, env)
        # A shell gets the mounts, not the desktop's settings.
        r = S.run([h.RUN, "gspec", "--shell", "--print-spec"])
        spec = json.loads(r.stdout)
        self.assertIn("/media/pics", [m["destination"] for m in spec["mounts"]])
        self.assertFalse([e for e in spec["process"]["env"] if e.startswith("PUKAIPU_CLIPBOARD")])
        if shutil.which("crun"):
            self.run_under_crun("gspec", uid)

    def run_under_crun(self, user, uid):
        """The printed spec runs unchanged under crun, grants included."""
        with open(os.path.join(self.home(user), "pics", "p.txt"), "w") as f:
            f.write("a picture\n")
        self.inside(user, "cat /media/pics/p.txt\n", uid)
        self.assertEqual(self.start(user).returncode, 0)  # writes the runtime files the spec binds
        r = S.run([h.RUN, user, "--print-spec"])
        bundle = os.path.join(S.root, "crun-bundle")
        os.makedirs(bundle, mode=0o755, exist_ok=True)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            f.write(r.stdout)
        script = ('mount -t tmpfs tmpfs /sys/fs/cgroup/unified 2>/dev/null; '
                  'exec crun --root "$1" run --bundle "$2" "pukaipu-grants-$$"')
        res = S.run(["sh", "-c", script, "sh", os.path.join(S.root, "crun-state"), bundle],
                    stdin=subprocess.PIPE, timeout=60)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("a picture", res.stdout)

    def test_browser_policy_and_attach_dir_at_start(self):
        uid = self.create("gpol")
        self.inside("gpol", f"cat /{PLACEHOLDER}; ls -ld {RUN_DIR}/gpol/attach\n", uid)
        r = self.start("gpol")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"DownloadRestrictions": 3', r.stdout)
        self.assertIn('"PrintingEnabled": false', r.stdout)
        self.grant("gpol", "downloads", "on")
        r = self.grant("gpol", "printing", "on")
        self.assertIn("warning: the rootfs has no CUPS", r.stderr)  # xpra's side needs it; the browser's does not
        r = self.start("gpol")
        self.assertIn('"DownloadRestrictions": 0', r.stdout)
        self.assertIn('"PrintingEnabled": true', r.stdout)
        policy = os.stat(f"{RUN_DIR}/gpol/browser-policy.json")
        self.assertEqual((stat.S_IMODE(policy.st_mode), policy.st_uid), (0o644, 0))
        st = os.lstat(f"{RUN_DIR}/gpol/attach")
        self.assertTrue(stat.S_ISDIR(st.st_mode))
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid), (0o700, uid, uid))
        # The rootfs file is untouched.
        with open(os.path.join(ROOTFS, PLACEHOLDER)) as f:
            self.assertEqual(f.read(), "{}\n")


class Network(Base):
    def test_network_none_has_no_route_egress_has_one(self):
        uid = self.create("gnet")
        self.inside("gnet", "echo routes-begin; tail -n +2 /proc/net/route; echo routes-end; "
                    "cat /proc/net/dev | tail -n +3 | cut -d: -f1\n", uid)
        self.grant("gnet", "network", "egress")
        r = self.start("gnet")
        self.assertEqual(r.returncode, 0, r.stderr)
        routes = r.stdout.split("routes-begin")[1].split("routes-end")[0].split()
        self.assertIn("00000000", routes, r.stdout)  # a default route
        r = pukaipu("grant", "gnet", "network", "none")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("network: egress -> none", r.stderr)
        r = self.start("gnet")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split("routes-begin")[1].split("routes-end")[0].strip(), "")
        self.assertEqual(r.stdout.split("routes-end")[1].split(), ["lo"])


# --- the real desktop: xpra's effective settings and local attach -------------





class DesktopGrants(Base):
    """Two instances on the real rootfs: one with grants, one with none."""

    @classmethod
    def setUpClass(cls):
        global CFG_DESKTOP
        try:
            rootfs = d.ensure_rootfs("default")
        except Exception as e:  # noqa: BLE001 - a rootfs that cannot be built is a skip, with why
            raise unittest.SkipTest(f"the desktop rootfs is not available: {e}")
        if not os.path.exists(os.path.join(rootfs, PLACEHOLDER)):
            raise unittest.SkipTest(f"{rootfs} predates the grants placeholder (rootfs-builder rebuilds it)")
        CFG_DESKTOP = write_config(os.path.join(S.config_dir, "desktop.json"), config(rootfs, session=False))
        cls.env = {"PUKAIPU_CONFIG": CFG_DESKTOP}
        cls.procs = {}

    @classmethod
    def tearDownClass(cls):
        for user, (p, logf) in cls.procs.items():
            h.stop(p, timeout=30)
            logf.close()

    def start_desktop(self, user):
        logf = open(os.path.join(h.TMP, f"grants-desktop-{user}.log"), "w")
        p = S.popen([h.RUN, user], env=self.env, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        type(self).procs[user] = (p, logf)
        sock = f"{RUN_DIR}/{user}/attach/socket"
        ok = h.wait_for(lambda: p.poll() is None and os.path.exists(sock) and self.xpra_as(user, "info", timeout=20)
                        .returncode == 0, timeout=90, step=0.5)
        if not ok:
            with open(logf.name) as f:
                self.fail(f"{user}: xpra did not answer on {sock}:\n{f.read()[-3000:]}")
        return p

    def xpra_as(self, user, *args, timeout=60):
        sock = f"socket://{RUN_DIR}/{user}/attach/socket"
        argv = list(args)
        if argv[0] == "screenshot":
            argv = ["screenshot", argv[1], sock]
        else:
            argv = [argv[0], sock, *argv[1:]]
        return S.run(["runuser", "-u", user, "--", "env", f"HOME=/home/{user}", "xpra", *argv], timeout=timeout)

    def xpra_process(self, p):
        """(host pid, command line as one string) of the xpra server: python
        may have rewritten its title (setproctitle), so no argv splitting."""
        for pid in sorted(h.descendants(p.pid)):
            a = " ".join(h.cmdline(pid))
            if re.search(r"(^|/)xpra start-desktop ", a):
                return pid, a + " "
        self.fail("no xpra start-desktop process in the container")

    def info(self, user):
        r = self.xpra_as(user, "info")
        self.assertEqual(r.returncode, 0, r.stderr)
        return h.keyvals(r.stdout)

    def test_granted_settings_reach_xpra_and_the_browser(self):
        if not shutil.which("xpra"):
            self.skipTest("no xpra client on this host (.ci/install-deps installs it)")
        self.create("dgrant")
        for kind, value in (("clipboard", "to-browser"), ("downloads", "on"), ("printing", "on")):
            self.grant("dgrant", kind, value, env=self.env)
        p = self.start_desktop("dgrant")
        pid, argv = self.xpra_process(p)
        for opt in ("--clipboard=yes", "--clipboard-direction=to-server", "--file-transfer=yes", "--printing=yes",
                    "--pulseaudio=no", "--speaker=disabled", f"--bind={RUN_DIR}/dgrant/attach/socket"):
            self.assertIn(f" {opt} ", argv)
        info = self.info("dgrant")
        self.assertEqual(info.get("file.enabled"), "True", {k: v for k, v in info.items() if k.startswith("file")})
        # to-browser: the server (the browser's side) takes the client's clipboard, never sends its own.
        self.assertEqual((info.get("clipboard.can-receive"), info.get("clipboard.can-send")), ("True", "False"))
        with open(f"/proc/{pid}/root/{PLACEHOLDER}") as f:
            self.assertEqual(json.load(f), {"DownloadRestrictions": 0, "PrintingEnabled": True})

    def test_defaults_reach_xpra_and_the_browser(self):
        if not shutil.which("xpra"):
            self.skipTest("no xpra client on this host (.ci/install-deps installs it)")
        self.create("dnone")
        p = self.start_desktop("dnone")
        pid, argv = self.xpra_process(p)
        for opt in ("--clipboard=no", "--file-transfer=no", "--printing=no", "--speaker=disabled"):
            self.assertIn(f" {opt} ", argv)
        self.assertNotIn("--clipboard-direction", argv)
        info = self.info("dnone")
        # No file transfer and no clipboard at all: xpra reports neither.
        self.assertFalse([k for k in info if k.startswith(("file.", "clipboard."))])
        self.assertIn("mmap.supported", " ".join(info))  # (the info itself is complete)
        with open(f"/proc/{pid}/root/{PLACEHOLDER}") as f:
            self.assertEqual(json.load(f), {"DownloadRestrictions": 3, "PrintingEnabled": False})

    def test_local_attach_for_the_owner_only(self):
        if not shutil.which("xpra"):
            self.skipTest("no xpra client on this host (.ci/install-deps installs it)")
        self.create("dattach")
        self.create("dintruder")
        self.start_desktop("dattach")
        attach = f"{RUN_DIR}/dattach/attach"
        st = os.stat(attach)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o700)
        st = os.stat(attach + "/socket")
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        # The owner gets a frame through the socket.
        shot = "/home/dattach/frame.png"
        r = self.xpra_as("dattach", "screenshot", shot)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(self.home("dattach"), "frame.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        # Another user cannot even reach it: not with xpra, not with pukaipu attach.
        r = self.xpra_as("dintruder", "screenshot", "/home/dintruder/frame.png")
        self.assertNotEqual(r.returncode, 0)
        self.assertFalse(os.path.exists(os.path.join(self.home("dintruder"), "frame.png")))
        r = S.run(["runuser", "-u", "dintruder", "--", USER_TOOL, "attach", "dattach"])
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(), "pukaipu: attach to 'dattach': only dattach can open that "
                                           "desktop: Permission denied")
        # Nor root: its client would serve the sandboxed side with root's rights.
        r = S.run([TOOL, "attach", "dattach"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("not as root", r.stderr)
        self.assertIn("runuser -u dattach -- pukaipu attach dattach", r.stderr)
        # Not running: said as such.
        self.create("dstopped")
        r = S.run(["runuser", "-u", "dstopped", "--", USER_TOOL, "attach", "dstopped"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("is not running", r.stderr)
        self.attach_with_display("dattach", attach)
        self.fake_socket_is_not_attached_to("dattach", attach)

    def fake_socket_is_not_attached_to(self, user, attach):
        """A process of the desktop (the user's uid, in the container's PID
        and mount namespaces) replaces the attach socket with its own server:
        `pukaipu attach` refuses it in one line and sends it nothing (today's
        fake would get the client's hello, then its clipboard and files)."""
        pid, _ = self.xpra_process(type(self).procs[user][0])
        st = os.stat(attach)  # the user's directory: the user's uid and gid (of the test's sysroot)
        fake = ("import os, socket, sys\n"
                f"p = {attach + '/socket'!r}\n"
                "os.unlink(p)\n"
                "s = socket.socket(socket.AF_UNIX); s.bind(p); s.listen(4)\n"
                "print('listening', flush=True)\n"
                "while True:\n"
                "    c, _ = s.accept(); c.settimeout(5)\n"
                "    try:\n"
                "        d = c.recv(64)\n"
                "    except OSError:\n"
                "        d = b''\n"
                "    print('got', len(d), flush=True)\n")
        server = S.popen(["nsenter", f"--target={pid}", "--pid", "--mount", f"--setuid={st.st_uid}",
                          f"--setgid={st.st_gid}", "--", "/usr/bin/python3", "-c", fake],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            self.assertEqual(server.stdout.readline().strip(), "listening")
            r = S.run(["runuser", "-u", user, "--", "env", f"HOME=/home/{user}", USER_TOOL, "attach", user],
                      timeout=60)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertRegex(r.stderr.strip(), rf"^pukaipu: attach to '{user}': not connecting to "
                                               rf"'{attach}/socket': its server \(pid \d+\) is not this "
                                               r"desktop's xpra$")
            # The check's own connection (to read SO_PEERCRED) carries no byte.
            self.assertEqual(server.stdout.readline().strip(), "got 0")
        finally:
            server.kill()
            server.wait()

    def attach_with_display(self, user, attach):
        """`pukaipu attach` as the owner: the local client connects, with mmap
        through the shared directory. Needs an X display for the client."""
        if not shutil.which("Xvfb"):
            print("note: no Xvfb on this host: `pukaipu attach` with a real client not tried", flush=True)
            return
        # Xvfb picks a free display and says which (-displayfd).
        xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-nolisten", "tcp", "-screen", "0", "1024x768x24"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        client = None
        try:
            display = ":" + xvfb.stdout.readline().strip()
            self.assertNotEqual(display, ":", "Xvfb did not start")
            log = os.path.join(h.TMP, "grants-attach-client.log")
            with open(log, "w") as logf:
                client = S.popen(["runuser", "-u", user, "--", "env", f"HOME=/home/{user}", f"DISPLAY={display}",
                                  USER_TOOL, "attach", user, "--", "--opengl=no", "--notifications=no", "--tray=no",
                                  "--speaker=off", "--microphone=off", "--webcam=no"],
                                 stdout=logf, stderr=subprocess.STDOUT)

            def said(what):
                with open(log, errors="replace") as f:
                    return what in f.read()
            # The client made its mmap file in the shared directory; xpra
            # inside opened it at the same path and found the client's token.
            ok = h.wait_for(lambda: said("enabled fast mmap transfers") or client.poll() is not None, timeout=60,
                            step=0.5)
            with open(log, errors="replace") as f:
                out = f.read()
            self.assertTrue(ok and "enabled fast mmap transfers" in out, f"pukaipu attach:\n{out[-3000:]}")
            # Through the inode `pukaipu attach` checked, never the path again.
            self.assertRegex(out, r"Attached to socket:///proc/self/fd/\d+")
            self.assertIsNone(client.poll(), out[-3000:])
        finally:
            if client and client.poll() is None:
                client.send_signal(signal.SIGTERM)
                try:
                    client.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    client.kill()
                    client.wait()
            xvfb.terminate()
            xvfb.wait(timeout=20)
            xvfb.stdout.close()


if __name__ == "__main__":
    h.main()
