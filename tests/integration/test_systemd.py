#!/usr/bin/env python3
"""pukaipu under a real systemd: the package's units, socket activation, scale
to zero, Restart=on-failure, limits, and nothing left behind.

PID 1 of these machines is not systemd, so the test boots one in a container:
a Debian 12 root with systemd (made once by mmdebstrap, cached as a tarball in
/var/cache/pukaipu-tests) plus this tree's .deb (tests/test_deb.sh build),
started with

    systemd-nspawn -D ROOT -b --register=no --keep-unit --private-network

in a cgroup of its own, and driven with `nsenter -t PID1 -a ...`. The session
is a tiny static payload (SDSERVE below) in a busybox rootfs: it takes the
listening socket on fd 3 only when LISTEN_FDS=1 and LISTEN_PID is its own PID
(2 in the container), greets every client with one line (as an HTTP response,
so that the front door, pukaipu-front.service, serves it too), and exits 0 after
PUKAIPU_IDLE_TIMEOUT seconds without a client, the way xpra's
--server-idle-timeout does.

Exit status: 0 pass, 1 fail, 77 skip (printed with the reason).
"""
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import harness as h

SRC = os.environ.get("PUKAIPU_SOURCE_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PROBE = os.environ.get("PUKAIPU_PROBE", "")
MKROOTFS = os.environ.get("PUKAIPU_MKROOTFS") or os.path.join(SRC, "tests", "mkrootfs.sh")
CACHE = os.environ.get("PUKAIPU_TEST_CACHE", "/var/cache/pukaipu-tests")
SUITE = "bookworm"
BASE_FORMAT = "pukaipu-systemd-root-2"  # bump when the base recipe below changes
PORT = 14500

SDSERVE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
	const char *fds = getenv("LISTEN_FDS"), *lpid = getenv("LISTEN_PID");
	const char *idle_env = getenv("PUKAIPU_IDLE_TIMEOUT");
	if (!fds || strcmp(fds, "1") || !lpid || atoi(lpid) != getpid()) {
		fprintf(stderr, "sdserve: no socket activation (LISTEN_FDS=%s LISTEN_PID=%s pid=%d)\n",
			fds ? fds : "-", lpid ? lpid : "-", (int)getpid());
		return 2;
	}
	int idle = idle_env ? atoi(idle_env) : 0;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	struct pollfd p[17];
	int n = 1, served = 0;
	p[0].fd = 3;
	p[0].events = POLLIN;
	double last = now();
	fprintf(stderr, "sdserve: serving fd 3, idle timeout %d s\n", idle);
	/* A line that journald would log at emergency level (and broadcast to
	   every terminal) if the unit took priority prefixes from the desktop. */
	printf("<0>sdserve-emergency-attempt\n");
	fflush(stdout);
	while (!stop) {
		int timeout = -1;
		if (idle > 0 && n == 1) {
			double left = last + idle - now();
			if (left <= 0) {
				fprintf(stderr, "sdserve: no client for %d s, exiting\n", idle);
				return 0;
			}
			timeout = (int)(left * 1000) + 1;
		}
		if (poll(p, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			return 3;
		}
		for (int i = n - 1; i >= 1; i--) {
			char buf[256];
			if (p[i].revents && read(p[i].fd, buf, sizeof buf) <= 0) {
				close(p[i].fd);
				p[i] = p[--n];
				last = now();
			}
		}
		if (p[0].revents & POLLIN) {
			int c = accept4(3, NULL, NULL, SOCK_CLOEXEC);
			if (c < 0)
				continue;
			/* An HTTP response, so that the front door (HAProxy in HTTP
			   mode) can serve it too; raw clients skip the header. */
			char body[100], line[240];
			int blen = snprintf(body, sizeof body, "sdserve pid=%d uid=%d served=%d idle=%d\n",
					    (int)getpid(), (int)getuid(), ++served, idle);
			int len = snprintf(line, sizeof line, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
					   "Content-Length: %d\r\n\r\n%s", blen, body);
			if (write(c, line, len) != len || n == 17) {
				close(c);
				continue;
			}
			p[n].fd = c;
			p[n].events = POLLIN;
			n++;
		}
	}
	fprintf(stderr, "sdserve: SIGTERM, exiting\n");
	return 0;
}
"""


def log(msg):
    print(msg, flush=True)


def skip(why):
    print(f"SKIP: {why}", flush=True)
    sys.exit(77)


class Failed(Exception):
    pass


# --------------------------------------------------------------------------
# The .deb and the Debian 12 root, both cached.

def build_deb():
    r = subprocess.run(["bash", os.path.join(SRC, "tests", "test_deb.sh"), "build"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=1500)
    if r.returncode == 77:
        skip("cannot build the .deb: " + r.stdout.strip())
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-3000:])
        raise Failed(f"building the .deb failed: {r.stdout.strip()[-500:]}")
    return r.stdout.strip().splitlines()[-1]


def deb_depends(deb):
    out = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True, text=True,
                         check=True).stdout
    names = []
    for dep in out.replace("\n", " ").split(","):
        name = dep.split("|")[0].split("(")[0].strip()
        if name:
            names.append(name)
    return sorted(set(names))


def base_tarball(deb):
    """Debian 12 minbase + systemd + the package's dependencies, as a tarball."""
    packages = ["systemd"] + deb_depends(deb)
    key = hashlib.sha256(f"{BASE_FORMAT} {SUITE} {' '.join(packages)}".encode()).hexdigest()[:16]
    os.makedirs(CACHE, exist_ok=True)
    tar = os.path.join(CACHE, f"systemd-root-{SUITE}-{key}.tar")
    if os.path.exists(tar):
        return tar
    t0 = time.monotonic()
    # Units that only slow the boot down or talk to a console nobody reads.
    mask = ("console-getty.service getty@.service apt-daily.timer apt-daily-upgrade.timer "
            "dpkg-db-backup.timer e2scrub_all.timer fstrim.timer systemd-tmpfiles-clean.timer")
    tmp = f"{tar[:-4]}.tmp{os.getpid()}.tar"  # mmdebstrap picks the format by the name
    cmd = ["mmdebstrap", "--variant=minbase", "--mode=root", "--quiet", "--dpkgopt=force-unsafe-io",
           "--include=" + ",".join(packages),
           f"--customize-hook=chroot \"$1\" systemctl mask --quiet {mask}",
           SUITE, tmp]
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise Failed(f"mmdebstrap of the systemd root failed: {(r.stdout + r.stderr)[-1500:]}")
    os.replace(tmp, tar)
    for old in os.listdir(CACHE):  # older recipes
        if old.startswith("systemd-root-") and os.path.join(CACHE, old) != tar:
            os.unlink(os.path.join(CACHE, old))
    log(f"made {tar} in {time.monotonic() - t0:.0f} s")
    return tar


def session_rootfs(dest, workdir):
    """The busybox rootfs of tests/mkrootfs.sh, with /bin/sdserve."""
    subprocess.run(["sh", MKROOTFS, dest, PROBE], check=True)
    c = os.path.join(workdir, "sdserve.c")
    with open(c, "w") as f:
        f.write(SDSERVE)
    exe = os.path.join(dest, "bin", "sdserve")
    subprocess.run(["cc", "-static", "-O2", "-Wall", "-Werror", "-o", exe, c], check=True)
    os.chmod(exe, 0o755)


# --------------------------------------------------------------------------
# The machine.

class Machine:
    def __init__(self, root, logfile):
        self.root = root
        self.logfile = logfile
        self.proc = None
        self.pid1 = None
        self.cgroups = []

    def _own_cgroup(self):
        """Runs in the child before exec: a cgroup of its own in every
        hierarchy systemd cares about (nspawn insists on it)."""
        name = f"pukaipu-test-nspawn-{os.getpid()}"
        for base in self.cgroup_bases:
            path = os.path.join(base, name)
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def boot(self):
        self.cgroup_bases = [b for b in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd")
                             if os.path.exists(os.path.join(b, "cgroup.procs"))]
        if not self.cgroup_bases and os.path.exists("/sys/fs/cgroup/cgroup.procs"):
            self.cgroup_bases = ["/sys/fs/cgroup"]  # pure cgroup v2
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        out = open(self.logfile, "w")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-D", self.root, "-b", "--register=no", "--keep-unit",
             "--private-network", "-q", "--console=read-only"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            preexec_fn=self._own_cgroup)
        out.close()
        end = time.monotonic() + 60
        while time.monotonic() < end and self.pid1 is None:
            if self.proc.poll() is not None:
                raise Failed(f"systemd-nspawn exited with {self.proc.returncode}: {self.tail()}")
            # PID 1 of the container, once it is systemd (nspawn's child
            # sets the namespaces up before it execs it).
            for kid in h.children_of(self.proc.pid):
                if h.comm(kid) == "systemd":
                    self.pid1 = kid
            if self.pid1 is None:
                time.sleep(0.05)
        if self.pid1 is None:
            raise Failed("systemd-nspawn started no PID 1 in 60 s")
        while time.monotonic() < end:
            r = self.sh("systemctl is-system-running --wait", check=False, timeout=60)
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                return state
            # offline: systemctl cannot reach systemd yet (still coming up)
            if state not in ("initializing", "starting", "offline", ""):
                raise Failed(f"systemd in the container is '{state}'")
            time.sleep(0.1)
        raise Failed("systemd in the container did not finish booting in 60 s")

    def tail(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def sh(self, script, check=True, timeout=60):
        r = subprocess.run(["nsenter", "-t", str(self.pid1), "-a", "sh", "-c", script],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise Failed(f"in the container: `{script}` exited {r.returncode}: {(r.stdout + r.stderr).strip()}")
        return r

    def show(self, unit, *props):
        r = self.sh(f"systemctl show -p {','.join(props)} {unit}")
        return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)

    def shutdown(self):
        if not self.proc:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to halt
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Whatever outlived nspawn (a container whose init did not halt) is in
        # the cgroup made for it above: every process there is this test's.
        name = f"pukaipu-test-nspawn-{self.proc.pid}"
        for attempt in range(50):
            left = []
            for base in self.cgroup_bases:
                for d, _, files in os.walk(os.path.join(base, name)):
                    if "cgroup.procs" in files:
                        with open(os.path.join(d, "cgroup.procs")) as f:
                            left += [int(x) for x in f.read().split()]
            for pid in sorted(set(left)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            busy = False
            for base in self.cgroup_bases:
                for d, _, _ in sorted(os.walk(os.path.join(base, name)), key=lambda t: -len(t[0])):
                    try:
                        os.rmdir(d)
                    except FileNotFoundError:
                        pass
                    except OSError:
                        busy = True
            if not busy:
                return
            time.sleep(0.1)
        log(f"note: could not remove the cgroups {name}")






# --------------------------------------------------------------------------
# The checks.

def unix_greeting(path, hold=0.0, timeout=20.0):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            if hold:
                time.sleep(hold)
            return data.decode(errors="replace").split("\r\n\r\n", 1)[-1].strip()
    except OSError:
        return ""


class Checks:
    def __init__(self, m):
        self.m = m
        self.failures = 0

    def ok(self, what):
        log(f"ok: {what}")

    def expect(self, cond, what, detail=""):
        if cond:
            self.ok(what)
        else:
            self.failures += 1
            log(f"FAIL: {what}" + (f": {detail}" if detail else ""))
        return cond

    def connect(self, hold=0.0, user="t"):
        """One client of USER's desktop socket, from the host through the
        container's root (/proc/PID1/root/run/pukaipu/USER/desktop.sock, as
        root): the greeting line, or '' when refused."""
        return unix_greeting(f"/proc/{self.m.pid1}/root/run/pukaipu/{user}/desktop.sock", hold)

    def wait_for(self, pred, timeout=15.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = pred()
            if v:
                return v
            time.sleep(0.1)
        return pred()

    def state(self, unit):
        return self.m.sh(f"systemctl is-active {unit}", check=False).stdout.strip()

    def session_pids(self):
        """PIDs (container view) of the payload, from the service's cgroup."""
        r = self.m.sh("cg=$(systemctl show -p ControlGroup --value pukaipu@t.service); "
                      "[ -n \"$cg\" ] || exit 0; for p in $(cat /sys/fs/cgroup$cg/cgroup.procs); do "
                      "[ \"$(cat /proc/$p/comm 2>/dev/null)\" = sdserve ] && echo $p; done; true", check=False)
        return [int(x) for x in r.stdout.split()]

    def uid_procs(self, uid):
        r = self.m.sh(f"for s in /proc/[0-9]*/status; do awk '/^Uid:/ {{ if ($2 == {uid}) print FILENAME }}' "
                      f"$s 2>/dev/null; done; true", check=False)
        return r.stdout.split()


def front_checks(m, c, create_out):
    """`pukaipu front reload` starts and enables pukaipu-front.service, a second
    one is a `systemctl reload` (the master keeps its PID, the journal says
    Reloaded), and curl with t's client certificate gets t's desktop through
    it (from the host's curl in the container's network namespace)."""
    sh = m.sh
    r = sh("pukaipu front reload", check=False)
    c.expect(r.returncode == 0 and "started and enabled pukaipu-front.service" in r.stdout,
             "pukaipu front reload starts and enables pukaipu-front.service", r.stdout + r.stderr)
    c.expect(c.state("pukaipu-front.service") == "active", "pukaipu-front.service is active")
    c.expect(sh("systemctl is-enabled pukaipu-front.service", check=False).stdout.strip() == "enabled",
             "pukaipu-front.service is enabled")
    before = m.show("pukaipu-front.service", "MainPID", "NRestarts")
    r = sh("pukaipu front reload", check=False)
    after = m.show("pukaipu-front.service", "MainPID", "NRestarts")
    c.expect(r.returncode == 0 and "reloaded pukaipu-front.service (systemctl reload)" in r.stdout,
             "a second pukaipu front reload is a systemctl reload", r.stdout + r.stderr)
    c.expect(after == before and after.get("NRestarts") == "0",
             "reloaded, not restarted: the same master PID", f"{before} -> {after}")
    journal = sh("journalctl -u pukaipu-front.service -o cat --no-pager", check=False).stdout
    c.expect("Reloaded" in journal, "the journal shows the unit reloaded", journal[-600:])
    r = sh("pukaipu front status", check=False)
    c.expect("unit: pukaipu-front.service active" in r.stdout and "haproxy: running, master pid "
             + before.get("MainPID", "?") in r.stdout, "pukaipu front status names the unit and its master",
             r.stdout)

    passphrase = create_out.split("passphrase (shown once, never stored): ")[-1].split()[0]
    root = f"/proc/{m.pid1}/root"
    with tempfile.TemporaryDirectory() as d:
        pem = os.path.join(d, "client.pem")
        subprocess.run(["openssl", "pkcs12", "-in", f"{root}/var/lib/pukaipu/instances/t/certs/client.p12",
                        "-passin", f"pass:{passphrase}", "-nodes", "-out", pem], check=True, capture_output=True)
        curl = ["nsenter", "-t", str(m.pid1), "-n", "curl", "-sS", "--max-time", "20", "--resolve",
                "t.example:443:127.0.0.1", "--cacert", f"{root}/etc/pukaipu/ca/ca.crt"]
        r = subprocess.run([*curl, "--cert", pem, "https://t.example/"], capture_output=True, text=True)
        c.expect(r.returncode == 0 and r.stdout.startswith("sdserve pid=2"),
                 "curl with t's client certificate gets t's desktop through pukaipu-front.service",
                 r.stdout + r.stderr)
        r = subprocess.run([*curl, "https://t.example/"], capture_output=True, text=True)
        c.expect(r.returncode != 0 and "sdserve" not in r.stdout, "without a client certificate: refused",
                 r.stdout + r.stderr)


def run_checks(m, c):
    sh = m.sh
    t = time.monotonic()
    # pukaipu-run checks that the unit's cgroup enforces the instance's
    # limits and refuses to start otherwise. A container on a host whose
    # controllers are all on cgroup v1 (nspawn gives it a cgroup2 without
    # any) can enforce none: there the instance has no limits at all
    # (tests/integration/test_limits.py checks the refusal on this host).
    controllers = sh("cat /sys/fs/cgroup/cgroup.controllers", check=False).stdout.split()
    limited = all(x in controllers for x in ("memory", "pids", "cpu"))
    if not limited:
        log("note: no memory/pids/cpu controller in this container's cgroup2: the instance runs without limits")
        sh("""sed -i 's/^{/{"memoryMax": "infinity", "tasksMax": 0, /' /etc/pukaipu/pukaipu.json""")
    r = sh("pukaipu create t --fqdn t.example" + (" --memory 256M --cpus 0.5 --tasks 64" if limited else ""),
           check=False)
    create_out = r.stdout
    c.expect(r.returncode == 0 and "port 14500" in r.stdout, "pukaipu create t", r.stdout + r.stderr)
    uid = int(sh("id -u t").stdout)
    cat = sh("systemctl cat pukaipu@t.socket pukaipu@t.service", check=False).stdout
    c.expect("ListenStream=/run/pukaipu/%i/desktop.sock" in cat and "SocketGroup=haproxy" in cat
             and ("MemoryMax=256M" in cat) == limited,
             "systemd sees the drop-ins pukaipu create wrote (daemon-reload done)", cat[-800:])
    r = sh("pukaipu set t", check=False)
    c.expect(r.returncode == 0 and not r.stderr, "pukaipu set t: silent, drop-ins rewritten", r.stderr)

    sh("systemctl enable --now pukaipu@t.socket")
    c.expect(c.state("pukaipu@t.socket") == "active" and c.state("pukaipu@t.service") == "inactive",
             "socket enabled and listening, service not started yet")
    st = sh("stat -c '%U:%G %a %F' /run/pukaipu/t/desktop.sock", check=False).stdout.strip()
    c.expect(st == "root:haproxy 660 socket", "the desktop socket is root:haproxy 0660 (the front door's group)", st)
    r = sh("pukaipu remove t", check=False)
    c.expect(r.returncode != 0 and "disable --now" in r.stderr, "pukaipu remove refused while the socket is enabled",
             r.stderr)

    # --- socket activation ------------------------------------------------
    t0 = time.monotonic()
    greeting = c.connect(hold=0.3)
    first = time.monotonic() - t0
    c.expect(greeting.startswith(f"sdserve pid=2 uid={uid} served=1"),
             f"first connection started the service and was served ({first:.2f} s)", greeting)
    c.expect(c.state("pukaipu@t.service") == "active", "service active after the first connection")
    props = m.show("pukaipu@t.service", "MainPID", "MemoryMax", "CPUQuotaPerSecUSec", "TasksMax", "NRestarts",
                   "LimitNOFILE", "StatusText", "ControlGroup")
    if limited:
        c.expect(props.get("MemoryMax") == str(256 << 20) and props.get("CPUQuotaPerSecUSec") == "500ms"
                 and props.get("TasksMax") == "64", "limits from the drop-in apply to the unit", str(props))
    c.expect(props.get("LimitNOFILE") == "65536" and props.get("StatusText") == "running t",
             "LimitNOFILE=65536 and the STATUS= pukaipu-run sent", str(props))
    cg = "/sys/fs/cgroup" + props.get("ControlGroup", "")
    mem = sh(f"cat {cg}/memory.max 2>/dev/null", check=False).stdout.strip()
    if mem:
        c.expect(mem == str(256 << 20), "memory.max of the service's cgroup", mem)
    else:
        log("note: the container's cgroup has no memory controller here (a cgroup v1 host): "
            "MemoryMax= is checked on the unit only")
    pidfile = sh("cat /run/pukaipu/t/pid", check=False).stdout.strip()
    c.expect(pidfile == props.get("MainPID"), "/run/pukaipu/t/pid holds pukaipu-run's PID", pidfile)
    r = sh("pukaipu list", check=False)
    c.expect(" running " in r.stdout, "pukaipu list shows it running", r.stdout)
    greeting = c.connect()
    c.expect("served=2" in greeting, "a second client is served by the same session", greeting)

    # --- the front door: pukaipu-front.service ------------------------------
    front_checks(m, c, create_out)

    # --- stop: nothing left ----------------------------------------------
    r = sh("systemctl stop pukaipu@t.service", check=False)
    props = m.show("pukaipu@t.service", "ActiveState", "Result", "ExecMainStatus")
    c.expect(props.get("ActiveState") == "inactive" and props.get("Result") == "success",
             "systemctl stop: inactive, Result=success", str(props))
    c.expect(not c.uid_procs(uid), "no process of the instance's uid is left", " ".join(c.uid_procs(uid)))
    c.expect(sh(f"test -e {cg}", check=False).returncode != 0, "the service's cgroup is gone")
    c.expect(sh("test -e /run/pukaipu/t/pid", check=False).returncode != 0, "the pid file is gone")
    c.expect(c.state("pukaipu@t.socket") == "active", "the socket still listens")
    greeting = c.connect()
    c.expect("served=1" in greeting, "the next connection starts a new session", greeting)

    # --- Restart=on-failure ---------------------------------------------
    pids = c.session_pids()
    if c.expect(len(pids) == 1, "found the payload in the service's cgroup", str(pids)):
        before = m.show("pukaipu@t.service", "MainPID")["MainPID"]
        sh(f"kill -KILL {pids[0]}")
        back = c.wait_for(lambda: m.show("pukaipu@t.service", "NRestarts", "SubState", "MainPID")
                          if m.show("pukaipu@t.service", "NRestarts")["NRestarts"] == "1"
                          and c.state("pukaipu@t.service") == "active" else None, timeout=15)
        c.expect(bool(back) and back["MainPID"] != before,
                 "payload killed with SIGKILL: the service restarted (NRestarts=1)", str(back))
        exitlog = sh("journalctl -u pukaipu@t.service -o cat --no-pager | grep -c 'status=137'",
                     check=False).stdout.strip()
        c.expect(exitlog not in ("", "0"), "pukaipu-run exited 137 (128+SIGKILL) for the killed payload", exitlog)
        greeting = c.connect()
        c.expect("served=1" in greeting, "the restarted session serves", greeting)

    # --- scale to zero ------------------------------------------------------
    r = sh("pukaipu set t --idle-timeout 2s", check=False)
    c.expect(r.returncode == 0, "pukaipu set t --idle-timeout 2s", r.stderr)
    sh("systemctl stop pukaipu@t.service")
    greeting = c.connect(hold=1.0)
    c.expect("idle=2" in greeting, "the session got PUKAIPU_IDLE_TIMEOUT=2", greeting)
    t0 = time.monotonic()
    c.expect(c.wait_for(lambda: c.state("pukaipu@t.service") == "inactive", timeout=15),
             f"idle: the session stopped by itself ({time.monotonic() - t0:.1f} s after the client left)")
    props = m.show("pukaipu@t.service", "Result", "ExecMainStatus", "NRestarts")
    c.expect(props.get("Result") == "success" and props.get("ExecMainStatus") == "0"
             and props.get("NRestarts") == "0", "idle exit is a clean exit, not restarted", str(props))
    c.expect(not c.uid_procs(uid), "idle: no process left")
    c.expect(c.state("pukaipu@t.socket") == "active", "idle: the socket listens again")
    t0 = time.monotonic()
    greeting = c.connect()
    c.expect("served=1" in greeting, f"the next connection starts it again ({time.monotonic() - t0:.2f} s)", greeting)
    sh("pukaipu set t --idle-timeout 0")

    # --- the service on its own, egress, without the socket -----------------
    sh("systemctl disable --now pukaipu@t.socket")
    sh("systemctl stop pukaipu@t.service")
    r = sh("pukaipu create e --fqdn e.example --network egress", check=False)
    c.expect(r.returncode == 0, "pukaipu create e --network egress", r.stderr)
    sh("systemctl start pukaipu@e.service")
    greeting = c.wait_for(lambda: c.connect(user="e"), timeout=20)
    c.expect(greeting.startswith("sdserve pid=2"), "a service started without its socket binds desktop.sock itself",
             greeting)
    st = sh("stat -c '%U:%G %a' /run/pukaipu/e/desktop.sock", check=False).stdout.strip()
    c.expect(st == "root:haproxy 660", "pukaipu-run's own desktop.sock is root:haproxy 0660 too", st)
    links = sh("ls /sys/class/net").stdout.split()
    c.expect(any(n.startswith("pk") for n in links), "egress under the unit's hardening: a veth exists", str(links))
    journal = sh("journalctl -u pukaipu@e.service -o cat --no-pager").stdout
    c.expect("bound /run/pukaipu/e/desktop.sock" in journal, "pukaipu-run says it bound the socket", journal[-500:])
    c.expect("<0>sdserve-emergency-attempt" in journal,
             "the desktop's '<0>...' line is in the journal as text", journal[-500:])
    emerg = sh("journalctl -p emerg -o cat --no-pager", check=False).stdout
    c.expect("sdserve-emergency-attempt" not in emerg,
             "nothing the desktop printed was logged at emergency level", emerg[-500:])
    sh("systemctl stop pukaipu@e.service")
    links = sh("ls /sys/class/net").stdout.split()
    c.expect(not any(n.startswith("pk") for n in links), "egress: the veth is gone after stop", str(links))

    # --- remove -------------------------------------------------------------
    for user in ("t", "e"):
        r = sh(f"pukaipu remove {user} --purge-home", check=False)
        c.expect(r.returncode == 0 and not r.stderr, f"pukaipu remove {user}", r.stdout + r.stderr)
    left = sh("ls -d /etc/systemd/system/pukaipu@* 2>/dev/null; true").stdout.split()
    c.expect(not left, "remove deleted every drop-in", str(left))
    failed = sh("systemctl list-units --failed --plain --no-legend 'pukaipu*'", check=False).stdout.strip()
    log(f"note: failed pukaipu units at the end: {failed or 'none'}")
    log(f"scenario took {time.monotonic() - t:.1f} s")


def main():
    if os.geteuid() != 0:
        skip("needs root (boots systemd in a container with systemd-nspawn)")
    for tool in ("systemd-nspawn", "mmdebstrap", "nsenter", "cc"):
        if not shutil.which(tool):
            skip(f"{tool} not found (bash .ci/install-deps installs it)")
    if not (PROBE and os.path.exists(PROBE)):
        skip("run through meson test (PUKAIPU_PROBE unset)")
    if not os.path.exists("/proc/self/ns/user"):
        skip("kernel without user namespaces")
    if not any(os.path.exists(p) for p in ("/sys/fs/cgroup/unified/cgroup.procs", "/sys/fs/cgroup/cgroup.procs")):
        skip("no cgroup v2 hierarchy for systemd-nspawn")
    if os.path.isdir("/run/systemd/system"):
        skip("the host runs systemd: this test is for hosts where it is not PID 1 "
             "(boot the .deb in a VM instead)")

    t0 = time.monotonic()
    deb = build_deb()
    t_deb = time.monotonic() - t0
    tar = base_tarball(deb)
    t_base = time.monotonic() - t0 - t_deb

    work = tempfile.mkdtemp(prefix="pukaipu-systemd-", dir="/var/tmp")
    t_prep = 0.0
    m = Machine(os.path.join(work, "root"), os.path.join(work, "console.log"))
    c = Checks(m)
    try:
        os.makedirs(m.root)
        subprocess.run(["tar", "-xf", tar, "-C", m.root], check=True)
        shutil.copy(deb, os.path.join(m.root, "var/tmp/pukaipu.deb"))
        r = subprocess.run(["chroot", m.root, "dpkg", "-i", "/var/tmp/pukaipu.deb"], capture_output=True, text=True)
        if r.returncode != 0:
            raise Failed(f"dpkg -i in the systemd root failed: {(r.stdout + r.stderr)[-1500:]}")
        session_rootfs(os.path.join(m.root, "var/lib/pukaipu/rootfs/test"), work)
        os.makedirs(os.path.join(m.root, "etc/pukaipu"), exist_ok=True)
        with open(os.path.join(m.root, "etc/pukaipu/pukaipu.json"), "w") as f:
            f.write('{"rootfs": "/var/lib/pukaipu/rootfs/test", "apparmor": {"policy": "optional"},\n'
                    ' "session": {"command": ["/bin/sdserve"]}, "listenAddress": "127.0.0.1", "domain": "example",\n'
                    ' "network": {"mode": "none"}, "graceSeconds": 3}\n')
        t_prep = time.monotonic() - t0 - t_deb - t_base
        tb = time.monotonic()
        state = m.boot()
        log(f"ok: systemd booted in the container ({time.monotonic() - tb:.1f} s, {state})")
        run_checks(m, c)
    except (Failed, subprocess.SubprocessError, OSError) as e:
        c.failures += 1
        log(f"FAIL: {e}")
        log(m.tail()[-1000:])
    finally:
        if m.pid1:
            r = subprocess.run(["nsenter", "-t", str(m.pid1), "-a", "journalctl", "-u", "pukaipu@*", "-o", "cat",
                                "--no-pager"], capture_output=True, text=True, timeout=30)
            if c.failures:
                log("journal of pukaipu@*:\n" + r.stdout[-4000:])
        m.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    log(f"timing: .deb {t_deb:.0f} s, base root {t_base:.0f} s, preparing the root {t_prep:.0f} s, "
        f"total {time.monotonic() - t0:.0f} s")
    sys.exit(1 if c.failures else 0)


if __name__ == "__main__":
    main()
