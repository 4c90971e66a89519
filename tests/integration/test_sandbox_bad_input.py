"""Bad input: one clear line on stderr, a non-zero exit, nothing left behind."""
import json
import os
import shutil
import subprocess
import unittest

import harness as h


class BadInput(unittest.TestCase):
    def expect_error(self, bundle_dir, needle, status=125, extra=()):
        before = h.host_pids()
        r = h.run(bundle_dir, *extra)
        self.assertEqual(r.returncode, status, r.stderr)
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertTrue(lines[0].startswith("pukaipu-run: "), lines[0])
        self.assertIn(needle, lines[0])
        self.assertEqual(r.stdout, "")
        # Nothing of a container survives a failed start. Only this build's
        # pukaipu-run counts: other checkouts may run containers meanwhile.
        leftover = h.host_pids() - before
        self.assertFalse([p for p in leftover if h.exe(p) == os.path.realpath(h.RUN)])
        return lines[0]

    def spec_bundle(self, name, mutate):
        spec = h.base_spec(["/bin/probe", "exit", "0"])
        mutate(spec)
        return h.bundle(name, spec)

    def test_missing_bundle(self):
        self.expect_error(os.path.join(h.TMP, "no-such-bundle"), "no-such-bundle")

    def test_malformed_json(self):
        d = h.bundle("malformed", {})
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write('{"ociVersion": "1.0.2", ')
        self.expect_error(d, "invalid JSON")

    def test_wrong_type(self):
        d = self.spec_bundle("wrongtype", lambda s: s["process"].__setitem__("args", "sh"))
        self.expect_error(d, "process.args: expected an array of strings")

    def test_missing_root(self):
        d = self.spec_bundle("noroot", lambda s: s.pop("root"))
        self.expect_error(d, "root: missing")

    def test_relative_root_is_resolved_against_the_bundle(self):
        d = self.spec_bundle("relroot", lambda s: s["root"].__setitem__("path", "rootfs"))
        line = self.expect_error(d, "root.path")
        self.assertIn(os.path.join(d, "rootfs"), line)

    def test_rootfs_missing_directory(self):
        d = self.spec_bundle("missingroot", lambda s: s["root"].__setitem__("path", "/nonexistent/rootfs"))
        self.expect_error(d, "No such file or directory")

    def test_rootfs_writable_by_others(self):
        src = h.rootfs()
        bad = os.path.join(h.TMP, "rootfs-writable")
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(src, bad, symlinks=True)
        os.chmod(bad, 0o777)
        d = self.spec_bundle("writable-root", lambda s: s["root"].__setitem__("path", bad))
        self.expect_error(d, "writable by group or others")
        os.chmod(bad, 0o755)
        os.chown(bad, h.UID, h.GID)
        self.expect_error(d, "owned by uid 3999")
        shutil.rmtree(bad)

    def test_rootfs_and_bind_source_out_of_the_users_reach(self):
        # As a checkout under root's 0700 home: the container's uid cannot
        # search a directory above the rootfs (or a bind source). Said
        # before any namespace exists, naming that directory and the ids.
        hidden = os.path.join(h.TMP, "hidden")
        shutil.rmtree(hidden, ignore_errors=True)
        os.mkdir(hidden)
        os.chmod(hidden, 0o700)
        root = os.path.join(hidden, "rootfs")
        shutil.copytree(h.rootfs(), root, symlinks=True)
        home = os.path.join(hidden, "home")
        os.mkdir(home)
        os.chmod(home, 0o755)
        behind = f"uid {h.UID} (gid {h.GID}) cannot search '{hidden}' (mode 0700, owner 0:0)"
        d_root = self.spec_bundle("hidden-root", lambda s: s["root"].__setitem__("path", root))
        line = self.expect_error(d_root, "cannot search")
        self.assertEqual(line, f"pukaipu-run: root.path '{root}': {behind}")
        d_home = self.spec_bundle("hidden-home", lambda s: s["mounts"].append(
            {"destination": "/data/home", "type": "bind", "source": home, "options": ["rbind"]}))
        line = self.expect_error(d_home, "cannot search")
        self.assertEqual(line, f"pukaipu-run: mount '{home}' on '/data/home': {behind}")
        # Others may pass (not list): both start.
        os.chmod(hidden, 0o711)
        for d in (d_root, d_home):
            r = h.run(d)
            self.assertEqual(r.returncode, 0, r.stderr)
        shutil.rmtree(hidden)

    def test_bundle_writable_by_others(self):
        d = self.spec_bundle("writable-bundle", lambda s: None)
        os.chmod(d, 0o777)
        try:
            self.expect_error(d, "writable by group or others")
        finally:
            os.chmod(d, 0o755)

    def test_mapping_host_root(self):
        d = self.spec_bundle("maproot", lambda s: s["linux"].__setitem__(
            "uidMappings", [{"containerID": 0, "hostID": 0, "size": 1}]))
        self.expect_error(d, "maps host uid 0 (root)")
        d = self.spec_bundle("maprootgid", lambda s: s["linux"].__setitem__(
            "gidMappings", [{"containerID": 3999, "hostID": 0, "size": 1}]))
        self.expect_error(d, "maps host gid 0 (root)")

    def test_no_user_namespace(self):
        d = self.spec_bundle("nouserns", lambda s: s["linux"].__setitem__(
            "namespaces", [{"type": "pid"}, {"type": "mount"}]))
        self.expect_error(d, "no user namespace")

    def test_unknown_namespace(self):
        d = self.spec_bundle("unknownns", lambda s: s["linux"]["namespaces"].append({"type": "time"}))
        self.expect_error(d, "unknown namespace 'time'")

    def test_unsupported_oci_version(self):
        # 1.0.x to 1.2.x are read (unit: "ociVersion: 1.0.x, 1.1.x and 1.2.x ...").
        d = self.spec_bundle("ociver", lambda s: s.__setitem__("ociVersion", "1.3.0"))
        self.expect_error(d, "ociVersion: '1.3.0' not supported")

    def test_unsupported_field_is_named(self):
        d = self.spec_bundle("hooks", lambda s: s.__setitem__("hooks", {"prestart": []}))
        self.expect_error(d, "hooks: field not supported by pukaipu")

    def test_payload_not_found(self):
        d = self.spec_bundle("notfound", lambda s: s["process"].__setitem__("args", ["no-such-program"]))
        line = self.expect_error(d, "exec 'no-such-program': No such file or directory", status=127)
        self.assertTrue(line)

    def test_payload_not_executable(self):
        d = self.spec_bundle("noexec", lambda s: s["process"].__setitem__("args", ["/etc/passwd"]))
        self.expect_error(d, "exec '/etc/passwd': Permission denied", status=126)

    def test_missing_mount_point_in_readonly_rootfs(self):
        d = self.spec_bundle("nomountpoint", lambda s: s["mounts"].append(
            {"destination": "/no-such-dir", "type": "tmpfs", "source": "tmpfs"}))
        self.expect_error(d, "'/no-such-dir'")

    def test_missing_bind_source(self):
        d = self.spec_bundle("nosource", lambda s: s["mounts"].append(
            {"destination": "/data/home", "type": "bind", "source": "/nonexistent-home", "options": ["rbind"]}))
        self.expect_error(d, "mount '/nonexistent-home' on '/data/home': No such file or directory")

    def test_rlimit_above_what_the_kernel_allows(self):
        d = self.spec_bundle("rlimit-huge", lambda s: s["process"].__setitem__(
            "rlimits", [{"type": "RLIMIT_NOFILE", "soft": 1 << 30, "hard": 1 << 30}]))
        self.expect_error(d, "set RLIMIT_NOFILE to 1073741824/1073741824: Operation not permitted")

    def test_bad_seccomp_profile(self):
        d = self.spec_bundle("badseccomp", lambda s: s["linux"]["seccomp"].__setitem__("defaultAction", "NOPE"))
        self.expect_error(d, "linux.seccomp.defaultAction")

    def test_bad_options(self):
        d = self.spec_bundle("badopt", lambda s: None)
        self.expect_error(d, "--apparmor", extra=("--apparmor", "sometimes"))
        self.expect_error(d, "--preserve-fds", extra=("--preserve-fds", "9"))
        self.expect_error(d, "--preserve-fds", extra=("--preserve-fds", "65"))
        self.expect_error(d, "--grace", extra=("--grace", "-5"))
        self.expect_error(d, "--grace", extra=("--grace", "ten"))


class AppArmorPolicy(unittest.TestCase):
    """This kernel has no AppArmor: 'required' must refuse, 'optional' must warn and run."""

    @classmethod
    def setUpClass(cls):
        enabled = False
        try:
            with open("/sys/module/apparmor/parameters/enabled") as f:
                enabled = f.read().strip() == "Y"
        except FileNotFoundError:
            pass
        cls.enabled = enabled

    def bundle(self):
        spec = h.base_spec(["/bin/probe", "exit", "0"])
        spec["process"]["apparmorProfile"] = "pukaipu-test-profile"
        return h.bundle("apparmor", spec)

    def test_required_refuses_without_apparmor(self):
        if self.enabled:
            self.skipTest("AppArmor is enabled on this host: the refusal path cannot be shown here")
        r = h.run(self.bundle(), "--apparmor", "required")
        self.assertEqual(r.returncode, 125)
        self.assertEqual(r.stderr.strip(),
                         "pukaipu-run: apparmor profile 'pukaipu-test-profile': AppArmor is not enabled on "
                         "this host; refusing to start (policy 'required')")

    def test_required_is_the_default(self):
        if self.enabled:
            self.skipTest("AppArmor is enabled on this host")
        r = h.run(self.bundle())
        self.assertEqual(r.returncode, 125)

    def test_optional_warns_once_and_runs(self):
        if self.enabled:
            self.skipTest("AppArmor is enabled on this host: the warning path cannot be shown here")
        r = h.run(self.bundle(), "--apparmor", "optional")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1)
        self.assertIn("warning: apparmor profile 'pukaipu-test-profile'", lines[0])
        self.assertIn("running unconfined", lines[0])


class NotRoot(unittest.TestCase):
    def test_refuses_to_run_unprivileged(self):
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", h.RUN,
                            "--bundle", "/nonexistent"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 125)
        self.assertIn("must run as root", r.stderr)


if __name__ == "__main__":
    h.main()
