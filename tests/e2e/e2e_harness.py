"""End-to-end fixtures: real pukaipu instances and the real clients on the host.

An `E2eHost` is a private copy of /etc and /home (tests/integration/sysroot.py)
plus a pukaipu configuration that runs the real rootfs (rootfs-builder's
`default`, cached by tests/desktop/desktop_harness.py). The rootfs is seen
through a read-only overlay that adds one CA of the test's own to the
rootfs's system trust store (/etc/ssl/certs), so the tests can show that a
certificate from such a CA does not open a desktop. The overlay, like the
/etc and /home copies, exists only in the mount namespace of the commands run
through `E2eHost.wrap`: nothing on the host changes.

`pukaipu create` makes the instances (USER.localhost) and `pukaipu-run USER`
runs them, binding RUN_DIR/USER/desktop.sock itself or, with
`Instance(listen_sock=...)`, taking it as fd 3 the way pukaipu@USER.socket
hands it over (systemd is not PID 1 here). The instances have network mode
`none` (loopback only) and the session command
`env PUKAIPU_TEST_OFFLINE=1 /usr/lib/pukaipu/xpra-session` (env execs, so
xpra stays PID 2 and LISTEN_PID=2 still holds): the instance's browser runs
with its background networking off.

The front door: `FrontDoor`, Debian 12's HAProxy (2.6) on 127.0.0.1, which
terminates TLS with each instance's certificate and client CA and forwards
plain HTTP/WebSocket to the instances' desktop sockets.

The clients, both through the front door: Debian 12's xpra 3.1.3
(`xpra screenshot wss://...`), and headless Chromium with the user's
client.p12 in its NSS database, driven over the DevTools protocol on a pipe
(`--remote-debugging-pipe`, see `Chromium`). Neither asks a DNS server:
xpra's USER.localhost comes from a private /etc/hosts, Chromium's from
--host-resolver-rules.

Used by tests/integration/test_e2e.py and bench/instances. Stdlib plus PIL
(Debian's python3-pil, for the pixel checks), so it runs under /usr/bin/python3.
"""
import grp
import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("PUKAIPU_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, os.path.join(SRC, "tests", "desktop"))
import desktop_harness  # noqa: E402
import harness as h  # noqa: E402
from sysroot import Sysroot  # noqa: E402

RUN = os.environ.get("PUKAIPU_RUN", "")
TOOL = os.environ.get("PUKAIPU_TOOL", "")
TMP = h.TMP
SESSION = ["/usr/bin/env", "PUKAIPU_TEST_OFFLINE=1", "/usr/lib/pukaipu/xpra-session"]
SCREEN = (1920, 1080)           # the session's screen (xpra-session: PUKAIPU_SCREEN)
BAR_RGB = (0x2e, 0x34, 0x40)     # qtile bar background (rootfs-builder/files/qtile/config.py)
BAR_HEIGHT = 26
CLIENT_UID = 65534               # the host's Chromium runs as nobody, with its own sandbox
CHROMIUM = "/usr/lib/chromium/chromium"  # Debian's binary, not its wrapper script (which adds flags)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(argv, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(argv, **kw)


def check(argv, **kw):
    r = run(argv, **kw)
    if r.returncode:
        raise RuntimeError(f"{' '.join(argv[:3])}: exit {r.returncode}: {(r.stderr or r.stdout).strip()[-800:]}")
    return r


# --- certificates ---------------------------------------------------------

def p12_to_pem(p12, passphrase, out_dir, name):
    """client.p12 -> NAME.crt + NAME.key (unencrypted, 0600) in out_dir."""
    crt, key = os.path.join(out_dir, f"{name}.crt"), os.path.join(out_dir, f"{name}.key")
    check(["openssl", "pkcs12", "-in", p12, "-passin", "pass:" + passphrase, "-nokeys", "-clcerts", "-out", crt])
    old = os.umask(0o077)
    try:
        check(["openssl", "pkcs12", "-in", p12, "-passin", "pass:" + passphrase, "-nocerts", "-nodes", "-out", key])
    finally:
        os.umask(old)
    return crt, key


def make_rogue_pki(d):
    """A CA of our own and a client certificate it signed, CN like a user's."""
    os.makedirs(d, mode=0o700, exist_ok=True)
    if not os.path.exists(os.path.join(d, "rogue.crt")):
        desktop_harness.make_ca(d, "rogue-ca", "pukaipu e2e rogue CA (rootfs system store)")
        desktop_harness.make_leaf(d, "rogue", "rogue-ca", "alice", "clientAuth")
    return os.path.join(d, "rogue-ca.crt"), os.path.join(d, "rogue.crt"), os.path.join(d, "rogue.key")


def trust_store_layer(rootfs, rogue_ca, layer):
    """An overlay layer with the rootfs's /etc/ssl/certs/ca-certificates.crt
    plus rogue_ca, and its OpenSSL hash link: the rootfs's system store with
    one more CA, the way update-ca-certificates would have put it there."""
    certs = os.path.join(layer, "etc", "ssl", "certs")
    shutil.rmtree(layer, ignore_errors=True)
    os.makedirs(certs, mode=0o755)
    for p in (layer, os.path.join(layer, "etc"), os.path.join(layer, "etc", "ssl"), certs):
        os.chmod(p, 0o755)
    with open(os.path.join(rootfs, "etc", "ssl", "certs", "ca-certificates.crt")) as f:
        bundle = f.read()
    with open(rogue_ca) as f:
        pem = f.read()
    with open(os.path.join(certs, "ca-certificates.crt"), "w") as f:
        f.write(bundle + pem)
    hsh = check(["openssl", "x509", "-noout", "-hash", "-in", rogue_ca]).stdout.strip()
    with open(os.path.join(certs, f"{hsh}.0"), "w") as f:
        f.write(pem)
    for n in os.listdir(certs):
        os.chmod(os.path.join(certs, n), 0o644)
    return layer


# --- the host side: a private /etc and /home, a config, instances ---------

class E2eHost(Sysroot):
    """Sysroot + pukaipu.json for real desktops + the overlay rootfs."""

    def __init__(self, name, rootfs, *, ports=(24700, 24799), uids=(3100, 3199), extra_layer=None,
                 network="none", session=None, seccomp=True):
        super().__init__(name)
        self.lower = rootfs
        self.layer = extra_layer
        self.mnt = os.path.join(self.root, "rootfs")   # mount point (empty on the host)
        os.makedirs(self.mnt, mode=0o755)
        cfg = {
            "rootfs": self.mnt if extra_layer else rootfs,
            "uidRange": list(uids),
            "portRange": list(ports),
            "listenAddress": "127.0.0.1",
            "apparmor": {"policy": "optional"},
            "seccompProfile": os.path.join(SRC, "profiles/seccomp/default.json") if seccomp else "",
            "session": {"command": session or SESSION},
            "network": {"mode": network},
            "graceSeconds": 5,
        }
        with open(self.config, "w") as f:
            json.dump(cfg, f, indent=1)
        self.cfg = cfg
        self.ports = set()

    @property
    def host_ca(self):
        return os.path.join(self.config_dir, "ca", "ca.crt")

    def wrap(self, argv, activation=False):
        # As Sysroot.wrap, plus the read-only overlay (two lower layers, no
        # upper: nothing can be written through it). activation: fd 3 is a
        # listening socket handed over as systemd does (LISTEN_PID is this
        # shell's PID, which exec makes pukaipu-run's).
        script = 'mount --bind "$1" /etc && mount --bind "$2" /home && '
        args = [self.etc, self.home]
        if self.layer:
            script += 'mount -t overlay overlay -o "ro,lowerdir=$3:$4" "$5" && shift 3 && '
            args += [self.layer, self.lower, self.mnt]
        if activation:
            script += 'export LISTEN_FDS=1 LISTEN_PID=$$ && '
        script += 'shift 2 && exec "$@"'
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *args, *argv]

    def env(self, extra=None):
        e = super().env(extra)
        e["PUKAIPU_SYSTEMD_DIR"] = os.path.join(self.root, "systemd")
        e["PUKAIPU_FRONT_DIR"] = os.path.join(self.root, "front")
        return e

    def free_port(self):
        """A port of portRange that no instance of ours has and nothing on
        this host listens on now (pukaipu create only avoids its own
        instances' ports; the machine may be running other tests)."""
        for port in range(self.cfg["portRange"][0], self.cfg["portRange"][1] + 1):
            if port in self.ports:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            self.ports.add(port)
            return port
        raise RuntimeError(f"no free port in {self.cfg['portRange']}")

    def create(self, user, *extra):
        """pukaipu create USER --fqdn USER.localhost --port (a free one) →
        dict(user, name, port, uid, p12, passphrase, home, out)."""
        name = f"{user}.localhost"
        r = self.run([TOOL, "create", user, "--fqdn", name, "--port", str(self.free_port()), *extra])
        if r.returncode:
            raise RuntimeError(f"pukaipu create {user}: {r.stderr.strip()}")
        info = {"user": user, "name": name, "out": r.stdout}
        for line in r.stdout.splitlines():
            if line.startswith("created instance"):
                info["uid"] = int(line.split("uid ")[1].split(",")[0])
                info["port"] = int(line.split("port ")[1].split()[0])
            elif line.startswith("client certificate: "):
                info["p12"] = line.split(": ", 1)[1]
            elif line.startswith("passphrase"):
                info["passphrase"] = line.split(": ", 1)[1]
        info["home"] = self.host_home(user)
        return info


def spawn(argv, fds=None, **kw):
    """subprocess.Popen with fds moved to fixed numbers in the child
    ({3: sock.fileno()}): copies above fd 9 first, so that no move can
    overwrite another source, then dup2 in the child (dup2 clears
    close-on-exec; every other fd of ours is close-on-exec, PEP 446)."""
    import fcntl
    high = {want: fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for want, fd in (fds or {}).items()}

    def child():
        for want, fd in high.items():
            os.dup2(fd, want)
    try:
        if high:
            kw.update(preexec_fn=child, close_fds=False)
        return subprocess.Popen(argv, **kw)
    finally:
        for fd in high.values():
            os.close(fd)


def listening_socket(path):
    """What systemd's pukaipu@USER.socket would hold: a Unix socket at path
    (RUN_DIR/USER/desktop.sock), root and group haproxy, 0660."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        s.bind(path)
    finally:
        os.umask(old)
    os.chown(path, 0, grp.getgrnam("haproxy").gr_gid)
    os.chmod(path, 0o660)
    s.listen(128)
    return s


class Instance(desktop_harness.Supervised):
    """`pukaipu-run USER` in the host's private namespace, in the background.
    Without listen_sock it binds its desktop socket itself (no systemd here); with
    one, it gets the socket as fd 3 with LISTEN_FDS/LISTEN_PID, exactly what
    pukaipu@USER.socket would pass (socket activation played by the caller)."""

    def __init__(self, host, user, port, log_name=None, listen_sock=None):
        self.host, self.user, self.port = host, user, port
        self.log_path = os.path.join(host.root, f"{log_name or user}.log")
        self.logf = open(self.log_path, "a")
        self.t0 = time.monotonic()
        # unshare and sh exec: this PID is pukaipu-run itself.
        self.proc = spawn(host.wrap([RUN, user], activation=listen_sock is not None),
                          {3: listen_sock.fileno()} if listen_sock else None, env=host.env(),
                          stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT)

    def pids(self):
        """pukaipu-run and every process below it (host PIDs)."""
        return process_tree(self.proc.pid)

    def pss_kib(self):
        return desktop_harness.pss_kib(self.pids())

    def stop(self, timeout=30):
        return super().stop(timeout)


# --- the front door: HAProxy ----------------------------------------------

class FrontDoor:
    """The product's front door: `pukaipu front reload` with frontPort =
    `port` in the host's pukaipu.json writes host.root/front
    (PUKAIPU_FRONT_DIR: haproxy.cfg, crt-list, maps, PEMs) from the
    instances' state and starts HAProxy (master-worker, pid in
    RUN_DIR/front.pid, log in RUN_DIR/front.log). `instances` (dicts from
    E2eHost.create) must be all of the host's instances. stop() ends it by
    its pid file."""

    def __init__(self, host, instances, port):
        self.host = host
        self.port = port
        self.names = [i["name"] for i in instances]
        self.dir = os.path.join(host.root, "front")
        self.pid_path = os.path.join(host.run_dir, "front.pid")
        self.log_path = os.path.join(host.run_dir, "front.log")
        host.cfg["frontPort"] = port
        with open(host.config, "w") as f:
            json.dump(host.cfg, f, indent=1)
        r = host.run([TOOL, "front", "reload"])
        if r.returncode:
            raise RuntimeError(f"pukaipu front reload: {r.stderr.strip()}\n{desktop_harness.file_tail(self.log_path, 20)}")
        self.reload_output = r.stdout
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        self.pid = int(_read(self.pid_path).split()[0])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if not self.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"haproxy did not listen on {port}:\n{self.log_tail()}")
                time.sleep(0.05)

    def alive(self):
        try:
            return os.readlink(f"/proc/{self.pid}/exe").endswith("/haproxy")
        except OSError:
            return False

    def workers(self):
        """The master's children: the processes that serve connections."""
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == self.pid:
                            out.append(int(d))
                except (OSError, IndexError, ValueError):
                    pass
        return out

    def log_tail(self, n=40):
        return desktop_harness.file_tail(self.log_path, n)

    def stop(self, timeout=20):
        """SIGTERM to the master named by the pid file (it stops its workers)."""
        # Again every half second: a SIGTERM that arrives while the master
        # re-executes itself for a reload (create's SIGUSR2) can be lost.
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            os.kill(self.pid, signal.SIGTERM)
            end = time.monotonic() + 0.5
            while self.alive() and time.monotonic() < end:
                time.sleep(0.05)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)


def _read(path):
    with open(path) as f:
        return f.read()


# --- TLS probes -------------------------------------------------------------

def client_ctx(ca, cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def https_get(port, ctx, path="/", host="localhost", timeout=10.0, headers=None):
    """GET path over TLS to 127.0.0.1:port with SNI `host`: ("http", status
    line, whole answer), or ("refused", why, b"") when the handshake or the
    request failed. headers: more (or other: Host) request headers."""
    data = b""
    hdrs = {"Host": host, "Connection": "close", **(headers or {})}
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                s.sendall(request.encode())
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
    except (ssl.SSLError, OSError) as ex:
        if not data.startswith(b"HTTP/"):
            return "refused", f"{type(ex).__name__}: {ex}", b""
    if data.startswith(b"HTTP/"):
        return "http", data.split(b"\r\n")[0].decode(errors="replace"), data
    return "refused", f"no HTTP answer ({data[:40]!r})", b""


def wait_https_200(port, ctx, t0, deadline, alive=lambda: True, host="localhost"):
    """Seconds from t0 to the first `GET /` answered with 200 (the HTML5
    page), polling every 20 ms; None on timeout."""
    while time.monotonic() < deadline and alive():
        kind, status, _ = https_get(port, ctx, host=host, timeout=max(0.2, deadline - time.monotonic()))
        if kind == "http" and " 200 " in status + " ":
            return time.monotonic() - t0
        time.sleep(0.02)
    return None


# --- pixels -------------------------------------------------------------------

def load_png(path):
    from PIL import Image
    im = Image.open(path)
    im.load()
    return im.convert("RGB")


def close_to(px, rgb, tol=6):
    return all(abs(a - b) <= tol for a, b in zip(px, rgb))


def region_fraction(im, box, pred, step=4):
    """Fraction of sampled pixels in box (x0, y0, x1, y1) for which pred(px)."""
    x0, y0, x1, y1 = box
    n = hit = 0
    px = im.load()
    for y in range(y0, y1, step):
        for x in range(x0, x1, step):
            n += 1
            hit += bool(pred(px[x, y]))
    return hit / n if n else 0.0


def distinct_colours(im, box=None, step=3):
    x0, y0, x1, y1 = box or (0, 0, im.width, im.height)
    px = im.load()
    return len({px[x, y] for y in range(y0, y1, step) for x in range(x0, x1, step)})


def desktop_seen(im, origin=(0, 0), screen=SCREEN):
    """What a frame of the desktop shows, at origin in the image:
    bar = fraction of the top strip (qtile's bar) in the bar colour;
    window = fraction of the area below the bar that is a browser window
    (light pixels: Chromium's toolbar and its empty page), colours = how
    many distinct colours the frame has."""
    ox, oy = origin
    w, h = screen
    bar = region_fraction(im, (ox, oy + 2, ox + w, oy + BAR_HEIGHT - 2), lambda p: close_to(p, BAR_RGB))
    window = region_fraction(im, (ox + 8, oy + BAR_HEIGHT + 8, ox + w - 8, oy + h - 8), lambda p: sum(p) >= 3 * 200)
    return {"bar": round(bar, 3), "window": round(window, 3),
            "colours": distinct_colours(im, (ox, oy, ox + w, oy + h))}


def same_pixels(a, b):
    from PIL import ImageChops
    return a.size == b.size and ImageChops.difference(a, b).getbbox() is None


def looks_like_desktop(seen):
    # The bar: mostly its background (the rest is text, the group boxes and
    # the clock). The browser: a window filling the area below (Max layout).
    return seen["bar"] >= 0.5 and seen["window"] >= 0.5 and seen["colours"] >= 16


# --- the xpra client ---------------------------------------------------------

def xpra_screenshot(out, port, cert, key, ca, hostname="localhost", timeout=60):
    """The host's xpra (Debian 12: 3.1.3) connects to the front door with
    the client certificate (WebSocket over TLS: the front door speaks HTTP,
    and Host must be `hostname`) and saves the server's screen. It resolves
    hostname through a private /etc/hosts (a mount namespace of its own), so
    no DNS server is asked. Returns the CompletedProcess."""
    home = tempfile.mkdtemp(prefix="xpra-client-", dir=TMP)
    try:
        hosts = os.path.join(home, "hosts")
        with open(hosts, "w") as f:
            f.write(f"127.0.0.1 localhost {hostname}\n")
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "XDG_RUNTIME_DIR": home, "LANG": "C.UTF-8"}
        return run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                    'mount --bind "$1" /etc/hosts && shift && exec "$@"', "sh", hosts,
                    "xpra", "screenshot", out, f"wss://{hostname}:{port}/", f"--ssl-cert={cert}",
                    f"--ssl-key={key}", f"--ssl-ca-certs={ca}", f"--ssl-server-hostname={hostname}",
                    "--ssl-server-verify-mode=required", "--mdns=no", "--notifications=no",
                    "--opengl=no"],
                   env=env, timeout=timeout)
    finally:
        shutil.rmtree(home, ignore_errors=True)


# --- headless Chromium on the host, over the DevTools pipe ------------------

class CdpError(RuntimeError):
    pass


class Chromium:
    """Debian's chromium, headless, as CLIENT_UID with its own sandbox, in a
    private mount namespace where /etc/chromium is a directory of ours
    holding only the managed policy AutoSelectCertificateForUrls (so the
    client certificate is picked without a dialog; the host's
    /etc/chromium is untouched). HOME is a temporary directory whose
    .pki/nssdb holds the user's client.p12 and trusts the host CA.
    Background networking is off, there is no proxy, and the only names it
    resolves are `names` (each to 127.0.0.1, by --host-resolver-rules; every
    other name fails without asking a DNS server). DevTools:
    --remote-debugging-pipe (commands on fd 3, answers on fd 4,
    NUL-terminated JSON)."""

    def __init__(self, name, url_origin, p12, passphrase, host_ca, size=SCREEN, names=()):
        self.dir = os.path.join(TMP, f"chromium-{name}")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.home = os.path.join(self.dir, "home")
        self.etc = os.path.join(self.dir, "etc-chromium")
        nssdb = os.path.join(self.home, ".pki", "nssdb")
        os.makedirs(nssdb, mode=0o700)
        os.makedirs(os.path.join(self.etc, "policies", "managed"), mode=0o755)
        os.chmod(self.dir, 0o755)
        check(["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"])
        check(["pk12util", "-i", p12, "-d", f"sql:{nssdb}", "-W", passphrase, "-K", ""])
        check(["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "pukaipu host CA", "-t", "C,,", "-i", host_ca])
        pattern = json.dumps({"pattern": url_origin, "filter": {}})
        with open(os.path.join(self.etc, "policies", "managed", "pukaipu-e2e.json"), "w") as f:
            json.dump({"AutoSelectCertificateForUrls": [pattern],
                       "BackgroundModeEnabled": False, "MetricsReportingEnabled": False}, f)
        check(["chown", "-R", f"{CLIENT_UID}:{CLIENT_UID}", self.home])
        self.log_path = os.path.join(self.dir, "chromium.log")
        self.logf = open(self.log_path, "w")
        cmd_r, self.cmd_w = os.pipe()
        self.out_r, out_w = os.pipe()
        flags = [
            "--headless", f"--window-size={size[0]},{size[1]}", "--hide-scrollbars",
            f"--user-data-dir={self.home}/profile", "--remote-debugging-pipe",
            "--no-first-run", "--no-default-browser-check", "--password-store=basic",
            "--disable-background-networking", "--disable-component-update", "--no-pings",
            "--disable-sync", "--disable-breakpad", "--disable-domain-reliability",
            "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
            "--no-proxy-server",
            "--host-resolver-rules=" + ", ".join([f"MAP {n} 127.0.0.1" for n in names] + ["MAP * ~NOTFOUND"]),
            "--disable-gpu", "about:blank",
        ]
        script = ('mount --bind "$1" /etc/chromium && shift && exec setpriv --reuid=%d --regid=%d '
                  '--clear-groups --inh-caps=-all --bounding-set=-all -- "$@"' % (CLIENT_UID, CLIENT_UID))
        env = {"PATH": "/usr/bin:/bin", "HOME": self.home, "LANG": "C.UTF-8"}
        self.proc = spawn(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", self.etc,
             CHROMIUM, *flags],
            {3: cmd_r, 4: out_w},
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT, env=env, cwd=self.dir)
        os.close(cmd_r)
        os.close(out_w)
        self.closed = False
        self.buf = b""
        self.next_id = 0
        self.session = None

    # The protocol: one JSON object per message, NUL-terminated.
    def _send(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        return self.next_id

    def _read(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError("DevTools: timed out")
            r, _, _ = select.select([self.out_r], [], [], left)
            if r:
                chunk = os.read(self.out_r, 1 << 20)
                if not chunk:
                    raise CdpError(f"DevTools: chromium closed the pipe; log:\n{self.log_tail()}")
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, timeout=30, session=True):
        want = self._send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == want:
                if "error" in m:
                    raise CdpError(f"{method}: {m['error']}")
                return m.get("result", {})

    def open(self, url):
        """Attaches to the first page and navigates it to url."""
        targets = self.call("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True},
                                 session=False)["sessionId"]
        self.call("Page.enable")
        return self.call("Page.navigate", {"url": url})

    def evaluate(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        return r.get("result", {}).get("value")

    def screenshot(self, path):
        import base64
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def set_viewport(self, size):
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False})

    # True once the page has loaded and the HTML5 client's scripts ran (Client.js
    # defines XpraClient, index.html's document-ready handler sets `client`).
    CLIENT_STARTED = "document.readyState !== 'complete' || (typeof XpraClient === 'function' && !!window.client)"

    def show_desktop(self, url, path, timeout=60.0, interval=1.0, settle=True, reloads=2):
        """Navigates to the HTML5 client at url and takes DevTools screenshots
        every `interval` s until the page shows the desktop (looks_like_desktop)
        and, with settle, until two frames in a row are the same (Qtile and
        the browser have laid themselves out for the client's size, which the
        desktop follows). Returns dict(seen, drawn_s, settled_s, reloaded),
        times from the navigation.

        Now and then this Chromium fails the requests in flight with
        net::ERR_NETWORK_CHANGED (its network change notifier fired, and
        loopback is no exception; seen at the same moment in two browsers on
        one machine, so a host-wide trigger, not xpra). If that hits the HTML5
        client's scripts, its page shows the menu (static HTML) but has no
        client: it never connects, no desktop ever comes, and only a reload
        helps. So when the page has loaded without its client, navigate again
        (up to `reloads` times); `reloaded` says when and why."""
        out = {"seen": None, "drawn_s": None, "settled_s": None, "reloaded": []}
        t0 = time.monotonic()
        self.call("Page.navigate", {"url": url})
        prev = None
        no_client = 0   # checks in a row that found the page loaded but no client
        while time.monotonic() < t0 + timeout:
            time.sleep(interval)
            if out["drawn_s"] is None and len(out["reloaded"]) < reloads:
                try:
                    started = self.evaluate(self.CLIENT_STARTED)
                except CdpError:
                    started = None  # between documents
                no_client = no_client + 1 if started is False else 0
                if no_client >= 2:
                    out["reloaded"].append(f"{time.monotonic() - t0:.1f} s: {self.evaluate('location.href')} "
                                           "loaded without the HTML5 client's scripts")
                    self.call("Page.navigate", {"url": url})
                    no_client, prev = 0, None
                    continue
            im = load_png(self.screenshot(path))
            out["seen"] = desktop_seen(im, screen=im.size)
            if looks_like_desktop(out["seen"]):
                out["drawn_s"] = out["drawn_s"] or time.monotonic() - t0
                if not settle:
                    break
                if prev is not None and same_pixels(prev, im):
                    out["settled_s"] = time.monotonic() - t0
                    break
            prev = im
        return out

    def log_tail(self, n=30):
        return desktop_harness.file_tail(self.log_path, n)

    def close(self):
        """Browser.close, then SIGKILL after 10 s; idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.proc.poll() is None:
                try:
                    self._send("Browser.close", session=False)
                    self.proc.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            if self.proc.poll() is None:
                # unshare exec'd sh exec'd setpriv exec'd chromium: one PID.
                self.proc.kill()
                self.proc.wait()
        finally:
            for fd in (self.cmd_w, self.out_r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.logf.close()


process_tree = desktop_harness.process_tree


def _addr(hexaddr):
    ip, port = hexaddr.split(":")
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)
    # /proc/net/tcp6: four host-order 32-bit words
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words), int(port, 16)


def peers_of(pids):
    """Remote (address, port) of every connected TCP/UDP socket the
    processes hold, read from the /proc/net tables of their network
    namespaces."""
    inodes = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    t = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if t.startswith("socket:["):
                    inodes[t[8:-1]] = pid
        except OSError:
            pass
    peers = set()
    tables_read = set()
    for pid in set(inodes.values()):
        try:
            ns = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if ns in tables_read:
            continue
        tables_read.add(ns)
        for table in ("tcp", "tcp6", "udp", "udp6"):
            try:
                with open(f"/proc/{pid}/net/{table}") as f:
                    lines = f.read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) > 9 and fields[9] in inodes:
                    ip, port = _addr(fields[2])
                    if port:
                        peers.add((table, ip, port))
    return peers


def is_loopback(ip):
    return ip.startswith("127.") or ip in ("::1", "::ffff:127.0.0.1") or ip.startswith("::ffff:127.")
