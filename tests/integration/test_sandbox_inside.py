"""What a payload sees from inside a pukaipu container, and what it cannot do."""
import os
import subprocess
import unittest

import harness as h


class Inside(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        b = h.bundle("status", h.base_spec(["/bin/probe", "status"]))
        cls.status = h.run(b)
        cls.kv = h.keyvals(cls.status.stdout)

    def test_status_ran(self):
        self.assertEqual(self.status.returncode, 0, self.status.stderr)
        self.assertEqual(self.status.stderr, "")

    def test_ids_are_the_mapped_user_without_groups(self):
        self.assertEqual(self.kv["uid"], "3999,3999,3999")
        self.assertEqual(self.kv["gid"], "3999,3999,3999")
        self.assertEqual(self.kv["groups"], "")

    def test_no_capabilities_in_any_set(self):
        for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            self.assertEqual(int(self.kv[k], 16), 0, k)

    def test_no_new_privs_and_seccomp(self):
        self.assertEqual(self.kv["NoNewPrivs"], "1")
        self.assertEqual(self.kv["Seccomp"], "2")

    def test_pid1_is_ours_and_no_host_process_visible(self):
        self.assertEqual(self.kv["pid1_comm"], "pukaipu-run")
        self.assertEqual(self.kv["pid"], "2")
        self.assertEqual(self.kv["procs"], "2")  # the reaper and the probe

    def test_rlimits_are_applied(self):
        spec = h.base_spec(["/bin/sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"])
        spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
                                      {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
        res = h.run(h.bundle("rlimits", spec))
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(res.stdout.split(), ["512", "1024", "0"])

    def test_hostname(self):
        self.assertEqual(self.kv["hostname"], "pukaipu-test")

    def test_only_stdio_fds(self):
        self.assertEqual(self.kv["fds"], "0,1,2")

    def test_passed_fds_are_kept(self):
        b = h.bundle("fds", h.base_spec(["/bin/probe", "fds"]))
        r, w = os.pipe()
        try:
            os.dup2(r, 3, inheritable=True)
            os.dup2(w, 4, inheritable=True)
            res = subprocess.run([h.RUN, "--bundle", b, "--preserve-fds", "2"], pass_fds=(3, 4),
                                 capture_output=True, text=True, timeout=30)
        finally:
            for fd in (r, w, 3, 4):
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(h.keyvals(res.stdout)["fds"], "0,1,2,3,4")

    def test_root_is_read_only_tmp_is_writable(self):
        b = h.bundle("write", h.base_spec(["/bin/sh", "-c",
                                          "probe write /probe-was-here; probe write /tmp/x; "
                                          "probe write /data/home/x; probe write /proc/sys/kernel/hostname"]))
        res = h.run(b)
        lines = [line for line in res.stdout.splitlines() if line.startswith("write=")]
        self.assertEqual(lines[0], "write=EROFS")
        self.assertEqual(lines[1], "write=ok")
        self.assertNotEqual(lines[2], "write=ok")
        self.assertNotEqual(lines[3], "write=ok")
        self.assertFalse(os.path.exists(os.path.join(h.rootfs(), "probe-was-here")))

    def test_root_mount_is_ro_nosuid_nodev(self):
        b = h.bundle("rootflags", h.base_spec(["/bin/sh", "-c", "awk '$5 == \"/\"' /proc/self/mountinfo"]))
        res = h.run(b)
        self.assertEqual(res.returncode, 0, res.stderr)
        opts = res.stdout.split()[5].split(",")
        for o in ("ro", "nosuid", "nodev"):
            self.assertIn(o, opts, res.stdout)

    def test_masked_paths(self):
        b = h.bundle("masked", h.base_spec(["/bin/sh", "-c",
                                           "stat -c '%t:%T' /proc/keys; wc -c < /proc/keys; "
                                           "ls /sys/firmware 2>&1; echo end"]))
        res = h.run(b)
        out = res.stdout.split()
        self.assertEqual(out[0], "1:3", res.stdout)  # /dev/null over /proc/keys
        self.assertEqual(out[1], "0")                # /proc/keys reads empty
        self.assertIn("Permission denied", res.stdout)  # mode-000 tmpfs over /sys/firmware

    def test_devices(self):
        b = h.bundle("dev", h.base_spec(["/bin/sh", "-c", "ls /dev; head -c 4 /dev/zero | wc -c"]))
        res = h.run(b)
        entries = set(res.stdout.split())
        for d in ("null", "zero", "full", "random", "urandom", "pts", "shm", "mqueue", "ptmx", "fd"):
            self.assertIn(d, entries)
        # No terminal asked for: the host's /dev/tty (the launcher's terminal) is not there.
        for bad in ("tty", "sda", "vda", "mem", "kmsg", "kvm"):
            self.assertNotIn(bad, entries)
        self.assertIn("4", res.stdout.split())


# Expected results with the default profile. Where the probe's harmless
# arguments would give a different errno without the filter, the second
# column says so: those rows prove the filter, not the kernel, said no.
DENIED = {
    "mount": "EPERM", "umount2": "EPERM", "pivot_root": "EPERM", "keyctl": "EPERM",
    "add_key": "EPERM", "request_key": "EPERM", "bpf": "EPERM", "perf_event_open": "EPERM",
    "userfaultfd": "EPERM", "io_uring_setup": "EPERM", "open_tree": "EPERM", "move_mount": "EPERM",
    "fsopen": "EPERM", "fsmount": "EPERM", "fspick": "EPERM", "mount_setattr": "EPERM",
    "ptrace": "EPERM", "process_vm_readv": "EPERM", "tiocsti": "EPERM", "tiocsti_hibits": "EPERM",
    "tioclinux": "EPERM", "clone3": "ENOSYS", "x32": "SIGSYS", "int80": "SIGSYS",
    "kexec_load": "EPERM", "init_module": "EPERM", "delete_module": "EPERM",
}
ALLOWED_NESTED = {"nested_userns": "ok", "nested_uidmap": "ok", "nested_chroot": "ok"}


class Syscalls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with_filter = h.run(h.bundle("sys", h.base_spec(["/bin/probe", "syscalls"])))
        without = h.run(h.bundle("sys-nofilter", h.base_spec(["/bin/probe", "syscalls"], seccomp=False)))
        cls.f = h.keyvals(with_filter.stdout)
        cls.nf = h.keyvals(without.stdout)
        cls.out = with_filter

    def test_denied_with_expected_errno(self):
        self.assertEqual(self.out.returncode, 0, self.out.stderr)
        for name, want in DENIED.items():
            with self.subTest(name=name):
                self.assertEqual(self.f.get(name), want)

    def test_filter_makes_the_difference(self):
        # These give a different answer without the filter: the filter is what denies them.
        for name in ("keyctl", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
                     "open_tree", "mount_setattr", "clone3", "tiocsti", "tiocsti_hibits", "int80"):
            with self.subTest(name=name):
                self.assertNotEqual(self.nf.get(name), self.f.get(name))

    def test_chrome_sandbox_primitives_still_work(self):
        # Chromium's sandbox: a nested user+pid+net namespace, and chroot inside it.
        for name, want in ALLOWED_NESTED.items():
            with self.subTest(name=name):
                self.assertEqual(self.f.get(name), want)

    def test_no_privilege_regain(self):
        self.assertNotEqual(self.f.get("setuid0"), "ok")
        self.assertEqual(self.f.get("unshare_mntns"), "EPERM")
        self.assertEqual(self.f.get("chroot"), "EPERM")


if __name__ == "__main__":
    h.main()
