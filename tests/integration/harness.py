"""Shared fixtures for pukaipu's integration tests.

Each test file is one meson test. Tests run the real pukaipu-run as root on a
tiny busybox rootfs (built here, once, by tests/mkrootfs.sh) with a static
probe inside, and check from inside what must and must NOT be possible.
Exit status follows meson: 0 pass, 1 fail, 77 skip (always printed with why).
"""
import fcntl
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import unittest

RUN = os.environ.get("PUKAIPU_RUN", "")
PROBE = os.environ.get("PUKAIPU_PROBE", "")
MKROOTFS = os.environ.get("PUKAIPU_MKROOTFS", "")
SRC = os.environ.get("PUKAIPU_SOURCE_ROOT", "")
# Scratch for rootfs, bundles, homes and instance state: outside the checkout
# (meson sets /var/cache/pukaipu-tests/tmp/<hash of the build dir>), because
# the container's uid must be able to search every directory above them.
TMP = os.environ.get("PUKAIPU_TEST_TMP", "/tmp/pukaipu-tests")
UID = GID = 3999


def skip_unless_possible():
    why = None
    if os.geteuid() != 0:
        why = "needs root (creates namespaces and writes id maps)"
    elif not (RUN and PROBE and MKROOTFS):
        why = "run through meson test (PUKAIPU_RUN, PUKAIPU_PROBE, PUKAIPU_MKROOTFS unset)"
    elif not os.path.exists("/proc/self/ns/user"):
        why = "kernel without user namespaces"
    if why:
        print(f"SKIP: {why}")
        sys.exit(77)


def ensure_tmp():
    """Creates TMP and the missing directories above it 0755 (whatever the
    umask: the container's uid must search them), and refuses a TMP that
    someone other than root could change: root writes the containers'
    rootfs and bundles there."""
    missing, d = [], TMP
    while not os.path.isdir(d):
        missing.append(d)
        d = os.path.dirname(d)
    for d in reversed(missing):
        os.makedirs(d, mode=0o755, exist_ok=True)
        os.chmod(d, 0o755)
    d = TMP
    while True:
        st = os.lstat(d)
        sticky = st.st_mode & stat.S_ISVTX and d != TMP
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or (st.st_mode & 0o022 and not sticky):
            raise RuntimeError(f"test scratch {TMP}: {d} is not a directory only root can change")
        if d == "/":
            return TMP
        d = os.path.dirname(d)


def rootfs():
    """Builds the busybox+probe rootfs once per build (rebuilt when the probe changes)."""
    ensure_tmp()
    dest = os.path.join(TMP, "rootfs")
    stamp = os.path.join(TMP, "rootfs.stamp")
    with open(os.path.join(TMP, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(MKROOTFS, "rb") as f:
            want = str(os.stat(PROBE).st_mtime_ns) + ":" + hashlib.sha256(f.read()).hexdigest()
        have = None
        if os.path.exists(stamp):
            with open(stamp) as f:
                have = f.read()
        if not (os.path.isdir(dest) and have == want):
            subprocess.run(["sh", MKROOTFS, dest, PROBE], check=True)
            with open(stamp, "w") as f:
                f.write(want)
    return dest


def default_seccomp():
    with open(os.path.join(SRC, "profiles/seccomp/default.json")) as f:
        return json.load(f)


def base_spec(args, seccomp=True, terminal=False):
    spec = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": terminal,
            "user": {"uid": UID, "gid": GID},
            "args": args,
            "env": ["PATH=/bin", "HOME=/tmp"],
            "cwd": "/",
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs(), "readonly": True},
        "hostname": "pukaipu-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in
                           ("user", "mount", "pid", "ipc", "uts", "network", "cgroup")],
            "uidMappings": [{"containerID": UID, "hostID": UID, "size": 1}],
            "gidMappings": [{"containerID": GID, "hostID": GID, "size": 1}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }
    if seccomp:
        spec["linux"]["seccomp"] = default_seccomp()
    return spec


def bundle(name, spec):
    """Writes DIR/config.json (root-owned, 0755 dir) and returns DIR."""
    d = os.path.join(TMP, "bundles", name)
    os.makedirs(d, mode=0o755, exist_ok=True)
    os.chmod(os.path.join(TMP, "bundles"), 0o755)
    os.chmod(d, 0o755)
    tmp = os.path.join(d, "config.json.tmp")
    with open(tmp, "w") as f:
        json.dump(spec, f, indent=1)
    os.replace(tmp, os.path.join(d, "config.json"))
    return d


def run(bundle_dir, *extra, timeout=60, stdin=subprocess.DEVNULL, input=None):
    cmd = [RUN, "--bundle", bundle_dir, "--seccomp-cache", os.path.join(TMP, "seccomp-cache"), *extra]
    return subprocess.run(cmd, stdin=None if input is not None else stdin, input=input,
                          capture_output=True, text=True, timeout=timeout)


def keyvals(out):
    kv = {}
    for line in out.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            kv[k] = v
    return kv


def host_pids():
    return {int(p) for p in os.listdir("/proc") if p.isdigit()}


def children_of(pid):
    """Direct children of pid, from /proc/PID/task/*/children."""
    out = set()
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out |= {int(x) for x in f.read().split()}
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def descendants(pid):
    """Every process below pid (not pid itself)."""
    seen, todo = set(), [pid]
    while todo:
        for c in children_of(todo.pop()):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def exe(pid):
    """The executable of PID ("" when it is gone or not readable)."""
    try:
        return os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        return ""


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def wait_for(pred, timeout=10.0, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def stop(proc, timeout=20):
    """SIGTERM to a process the test started, SIGKILL if it lingers; its exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def main():
    skip_unless_possible()
    prog = unittest.main(exit=False, verbosity=2)
    r = prog.result
    if r.skipped and not (r.failures or r.errors):
        for _, why in r.skipped:
            print(f"skipped: {why}")
    sys.exit(0 if r.wasSuccessful() else 1)


def cleanup_dir(path):
    shutil.rmtree(path, ignore_errors=True)


def stop_front(pid_file):
    """Stops the front door's HAProxy whose master wrote `pid_file`: SIGTERM
    again until it is gone (one sent while the master re-executes itself for
    a reload can be lost), SIGKILL after 7.5 s."""
    try:
        with open(pid_file) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return
    for i in range(200):
        try:
            if not os.readlink(f"/proc/{pid}/exe").endswith("/haproxy"):
                break
            if i % 10 == 0:
                os.kill(pid, signal.SIGTERM if i < 150 else signal.SIGKILL)
        except OSError:
            break
        time.sleep(0.05)


def stop_haproxy(run_dir):
    """stop_front for the HAProxy that `pukaipu front reload` started with
    RUN_DIR/front.pid."""
    stop_front(os.path.join(run_dir, "front.pid"))
