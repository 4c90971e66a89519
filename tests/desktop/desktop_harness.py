"""Fixtures for the desktop tests: the real rootfs (built by rootfs-builder,
cached outside the clone), an OCI bundle that runs the rootfs's own payload
/usr/lib/pukaipu/xpra-session under pukaipu-run with a socket-activated Unix
socket (plain HTTP/WebSocket, as behind the front door), host-side
measurements, and the test CA helpers the e2e tests use (openssl CLI).

Used by tests/integration/test_desktop.py; also handy by hand:
    sudo PUKAIPU_RUN=build/launcher/pukaipu-run python3 -c \
        'import desktop_harness as d; print(d.ensure_rootfs())'
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("PUKAIPU_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
RUN = os.environ.get("PUKAIPU_RUN", "")
TMP = os.environ.get("PUKAIPU_TEST_TMP", "/tmp/pukaipu-tests")
BUILDER = os.path.join(SRC, "rootfs-builder", "rootfs-builder")
# Outside the clone: a 1.1 GiB tree that survives `git clean` and new clones;
# the builder rebuilds it when the manifest (or a file it copies) changes.
CACHE = os.environ.get("PUKAIPU_TEST_ROOTFS_CACHE", "/var/cache/pukaipu-tests/rootfs")
UID = GID = 3999
CHECKER_DIR = "/tmp/pukaipu-tests"          # where checker_dir() is bind-mounted inside
CHECK_OUT = "/data/home/desktop-check.json"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cached_tree(manifest):
    """CACHE/NAME/current (generations) or CACHE/NAME (a cache made before them)."""
    path = os.path.join(CACHE, manifest)
    return os.path.join(path, "current") if os.path.lexists(os.path.join(path, "current")) else path


def cached_digest(manifest):
    try:
        with open(os.path.join(cached_tree(manifest), "usr/share/pukaipu/manifest.sha256")) as f:
            return f.read().strip()
    except OSError:
        return None


def ensure_rootfs(manifest="default"):
    """Reuses the cached rootfs while its manifest hash is the manifest's (the
    builder itself rebuilds to pick up new package versions, which tests must
    not wait for), else builds it; returns the directory to run (a
    generation's, when the cache has generations). Raises on failure."""
    t0 = time.monotonic()
    check = subprocess.run([BUILDER, "--check", manifest], capture_output=True, text=True)
    if check.returncode == 0 and cached_digest(manifest) == check.stdout.split()[-1]:
        path = os.path.realpath(cached_tree(manifest))
        log(f"rootfs {path} is up to date (manifest sha256 {check.stdout.split()[-1][:16]})")
        return path
    r = subprocess.run([BUILDER, "--output-dir", CACHE, "--quiet", manifest],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800)
    sys.stderr.write(r.stderr)
    if r.returncode:
        raise RuntimeError(f"rootfs-builder {manifest} failed (exit {r.returncode}): "
                           f"{(r.stderr.strip().splitlines() or ['no output'])[-1]}")
    path = os.path.realpath(cached_tree(manifest))
    log(f"rootfs {path} ready after {time.monotonic() - t0:.1f} s")
    return path


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"openssl {' '.join(args[:2])}: {r.stderr.strip()}")


def make_ca(d, name, cn):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={cn}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=d)


def make_leaf(d, name, ca, cn, usage, san=None):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                f"extendedKeyUsage={usage}\n" + (f"subjectAltName={san}\n" if san else ""))
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext, cwd=d)


def passwd_files():
    """/etc/passwd and /etc/group for the container, as pukaipu-run writes them."""
    d = os.path.join(TMP, "desktop-etc")
    os.makedirs(d, mode=0o755, exist_ok=True)
    files = {
        "passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\n"
                  f"desktop-test:x:{UID}:{GID}:desktop test:/data/home:/bin/bash\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\ndesktop-test:x:{GID}:\nnogroup:x:65534:\n",
    }
    out = []
    for name, text in files.items():
        p = os.path.join(d, name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, 0o644)
        out.append(p)
    return out


def seccomp_profile(name):
    with open(os.path.join(SRC, "profiles", "seccomp", f"{name}.json")) as f:
        return json.load(f)


def fresh_home(name):
    home = os.path.join(TMP, "desktop-homes", name)
    subprocess.run(["rm", "-rf", home], check=True)
    os.makedirs(os.path.dirname(home), mode=0o755, exist_ok=True)
    os.chmod(os.path.dirname(home), 0o755)
    os.mkdir(home, 0o700)
    os.chown(home, UID, GID)
    return home


_checker = None


def checker_dir():
    """A copy of the checker (desktop-check) in TMP, made once per process:
    the bind source must be reachable by the container's uid, and the
    checkout may not be (a clone under root's 0700 home)."""
    global _checker
    if _checker is None:
        dest = os.path.join(TMP, "desktop-checker")
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest, mode=0o755)
        shutil.copyfile(os.path.join(HERE, "desktop-check"), os.path.join(dest, "desktop-check"))
        os.chmod(os.path.join(dest, "desktop-check"), 0o755)
        os.chmod(dest, 0o755)
        _checker = dest
    return _checker


def desktop_spec(rootfs, home, seccomp="default", args=None, env=None):
    """The bundle for one desktop: the rootfs's xpra-session as PID 2 (the
    same payload pukaipu's instances run), socket-activated on fd 3, with
    the mounts and environment pukaipu-run gives an instance (launcher/
    instance.cc composeSpec) plus the checker's directory."""
    passwd, group = passwd_files()
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=1g"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        {"destination": "/tmp/.X11-unix", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "noexec", "mode=1777", "size=1m"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]},
        {"destination": f"/run/user/{UID}", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=700"]},
        {"destination": "/data/home", "type": "bind", "source": home, "options": ["rbind", "rw"]},
        {"destination": "/etc/passwd", "type": "bind", "source": passwd, "options": ["bind", "ro"]},
        {"destination": "/etc/group", "type": "bind", "source": group, "options": ["bind", "ro"]},
        {"destination": CHECKER_DIR, "type": "bind", "source": checker_dir(), "options": ["bind", "ro"]},
    ]
    e = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/data/home",
        "USER": "desktop-test",
        "LOGNAME": "desktop-test",
        "LANG": "C.UTF-8",
        "XDG_RUNTIME_DIR": f"/run/user/{UID}",
        "XDG_CONFIG_HOME": "/data/home/.config",
        "XDG_CACHE_HOME": "/data/home/.cache",
        "LISTEN_FDS": "1",
        "LISTEN_PID": "2",
        "XPRA_SD_SOCKET_TYPE": "unix-domain",
        "PUKAIPU_TEST_OFFLINE": "1",
        "PUKAIPU_CHECK_OUT": CHECK_OUT,
    }
    e.update(env or {})
    spec = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": UID, "gid": GID},
            "args": args or ["/usr/lib/pukaipu/xpra-session", f"--start={CHECKER_DIR}/desktop-check"],
            "env": [f"{k}={v}" for k, v in e.items()],
            "cwd": "/data/home",
            "noNewPrivileges": True,
            "apparmorProfile": "pukaipu-session",
            "rlimits": [{"type": "RLIMIT_CORE", "hard": 0, "soft": 0}],
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": "pukaipu-desktop",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": t} for t in ("user", "mount", "pid", "ipc", "uts", "network", "cgroup")],
            "uidMappings": [{"containerID": UID, "hostID": UID, "size": 1}],
            "gidMappings": [{"containerID": GID, "hostID": GID, "size": 1}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                            "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
    if seccomp:
        spec["linux"]["seccomp"] = seccomp_profile(seccomp)
    return spec


def write_bundle(name, spec):
    d = os.path.join(TMP, "bundles", name)
    os.makedirs(d, mode=0o755, exist_ok=True)
    for p in (os.path.join(TMP, "bundles"), d):
        os.chmod(p, 0o755)
    tmp = os.path.join(d, "config.json.tmp")
    with open(tmp, "w") as f:
        json.dump(spec, f, indent=1)
    os.replace(tmp, os.path.join(d, "config.json"))
    return d


def process_tree(root_pid):
    """root_pid and every process below it (host PIDs)."""
    seen, todo = {root_pid}, [root_pid]
    while todo:
        pid = todo.pop()
        try:
            for t in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{t}/children") as f:
                    for c in f.read().split():
                        if int(c) not in seen:
                            seen.add(int(c))
                            todo.append(int(c))
        except OSError:
            pass
    return seen


def pss_kib(pids):
    """The proportional set size of these processes together, in KiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


# The host's socket tables and the column of each that holds the inode (the
# headers do not line up with the data: "tx_queue rx_queue" is one field).
HOST_NET_TABLES = {**{t: 9 for t in ("tcp", "tcp6", "udp", "udp6", "udplite", "udplite6", "raw", "raw6",
                                     "icmp", "icmp6", "netlink")}, "packet": 8}


def host_socket_inodes():
    """{inode: table} of every non-Unix socket of the host's network
    namespace (this test's), from /proc/self/net/*."""
    found = {}
    for table, col in HOST_NET_TABLES.items():
        try:
            with open(f"/proc/self/net/{table}") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if col < len(fields) and fields[col].isdigit():
                found[int(fields[col])] = table
    return found


def host_unix_paths():
    """{inode: path} of the host namespace's Unix sockets (/proc/self/net/unix)."""
    out = {}
    with open("/proc/self/net/unix") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            out[int(fields[6])] = fields[7] if len(fields) > 7 else ""
    return out


def _pidfd_getfd(pid, fd):
    """A copy of PID's FD in this process (pidfd_getfd(2), as root)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        n = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd
        if n < 0:
            raise OSError(ctypes.get_errno(), f"pidfd_getfd {pid}/{fd}")
        return n
    finally:
        os.close(pidfd)


SIOCGSKNS = 0x894C  # linux/sockios.h: an fd of the socket's network namespace


def inspect_sockets(pids, listener_path, targets):
    """What a desktop's processes hold that belongs to the host's network
    namespace. Each socket fd of PIDS is copied here (pidfd_getfd) and asked
    for its namespace (SIOCGSKNS): an INET, INET6, NETLINK, PACKET or any
    other non-Unix socket of the host's namespace is a finding, and so is a
    host Unix socket other than LISTENER_PATH (the desktop's own listener and
    the connections accepted on it). The host's /proc/net tables name what
    was found. Then every socket of the host's namespace (the inherited
    listener) is turned against the host the way a listener can be:
    shutdown(SHUT_RD), then connect() to TARGETS[family] (a listener of the
    host that accepts); a connect that succeeds is a finding. Sockets of the
    container's own namespace are left alone (shutting down the desktop's X
    connections would only break it). Call it last: the listener is shut
    down for reading afterwards. Returns (sockets seen, findings)."""
    import fcntl
    host_ns = os.stat("/proc/self/ns/net").st_ino
    tables = host_socket_inodes()
    unix = host_unix_paths()
    seen, findings = 0, []
    for pid in sorted(pids):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                what = os.readlink(f"/proc/{pid}/fd/{fd}")
                mine = _pidfd_getfd(pid, int(fd)) if what.startswith("socket:[") else None
            except OSError:
                continue  # the process or fd is gone
            if mine is None:
                continue
            seen += 1
            inode = int(what[8:-1])
            s = socket.socket(fileno=mine)
            try:
                ns = fcntl.ioctl(mine, SIOCGSKNS)
                try:
                    in_host = os.fstat(ns).st_ino == host_ns
                finally:
                    os.close(ns)
                if not in_host:
                    continue
                if s.family != socket.AF_UNIX:
                    findings.append(f"pid {pid} fd {fd}: a host {tables.get(inode, f'family {s.family}')} socket")
                elif unix.get(inode, "") != listener_path:
                    findings.append(f"pid {pid} fd {fd}: host Unix socket {unix.get(inode, '(unnamed)')!r}")
                s.settimeout(1)
                try:
                    s.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
                target = targets.get(s.family)
                try:
                    if target is not None:
                        s.connect(target)
                        findings.append(f"pid {pid} fd {fd}: shutdown+connect reached {target}")
                except (OSError, TypeError, ValueError):
                    pass
            finally:
                s.detach()
                os.close(mine)
    return seen, findings


def file_tail(path, n):
    """The last n lines of a log file; "" when there is none yet."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Supervised:
    """pukaipu-run in the background (self.proc), its output in
    self.log_path (open as self.logf)."""

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=40):
        return file_tail(self.log_path, n)

    def stop(self, timeout=20):
        """SIGTERM to pukaipu-run (it stops the container); SIGKILL after timeout."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        return self.proc.returncode


class Desktop(Supervised):
    """One running container: pukaipu-run with a listening Unix socket as fd
    3 (self.path, root's alone), as pukaipu@USER.socket hands it over."""

    def __init__(self, name, spec):
        self.name = name
        self.bundle = write_bundle(name, spec)
        self.path = os.path.join(TMP, f"{name}.sock")
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(self.path)
        finally:
            os.umask(old)
        self.sock.listen(64)
        self.log_path = os.path.join(TMP, f"desktop-{name}.log")
        self.logf = open(self.log_path, "w")
        fd = self.sock.fileno()
        cmd = [RUN, "--bundle", self.bundle, "--preserve-fds", "1", "--apparmor", "optional",
               "--seccomp-cache", os.path.join(TMP, "seccomp-cache"), "--grace", "5"]
        self.t0 = time.monotonic()
        # The socket must be fd 3 in pukaipu-run: let sh move it there.
        move = "" if fd == 3 else f"3<&{fd} {fd}<&-"
        self.proc = subprocess.Popen(["/bin/sh", "-c", f'exec "$@" {move}', "sh", *cmd],
                                     pass_fds=(fd,), stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        # The parent keeps its copy: closing it would not stop xpra, and the
        # test's connections go to the same socket either way.

    def pids(self):
        """The container's processes as host PIDs (below pukaipu-run)."""
        return process_tree(self.proc.pid) - {self.proc.pid}

    def pss_kib(self, pids=None):
        return pss_kib(pids if pids is not None else self.pids())

    def stop(self, timeout=20):
        status = super().stop(timeout)
        self.sock.close()
        os.unlink(self.path)
        return status


def http_get(path, timeout=10.0):
    """`GET /` over the Unix socket at path, in plain HTTP (what the front
    door sends after TLS). Returns ("http", status line, whole answer) or
    ("refused", why, b"")."""
    data = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        if not data.startswith(b"HTTP/"):
            return "refused", f"{type(e).__name__}: {e}", b""
    if data.startswith(b"HTTP/"):
        return "http", data.split(b"\r\n")[0].decode(errors="replace"), data
    return "refused", f"no HTTP answer ({data[:40]!r})", b""


def wait_http_ready(d, timeout=60.0):
    """Seconds from launch until the desktop answers `GET /` with 200 on its
    socket (the socket itself accepts at once: the host made it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and d.proc.poll() is None:
        kind, status, _ = http_get(d.path, timeout=max(0.1, end - time.monotonic()))
        if kind == "http" and " 200 " in status + " ":
            return time.monotonic() - d.t0
        time.sleep(0.05)
    return None


def wait_check(home, d, timeout=120.0):
    """The checker's JSON (written inside the container into the home dir)."""
    path = os.path.join(home, os.path.basename(CHECK_OUT))
    end = time.monotonic() + timeout
    while time.monotonic() < end and d.proc.poll() is None:
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        time.sleep(0.2)
    return None
