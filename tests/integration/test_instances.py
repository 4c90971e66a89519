"""Instances: pukaipu create/list/show/remove/cert renew, and pukaipu-run USER."""
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import time
import unittest

import harness as h
from sysroot import Sysroot

TOOL = os.environ.get("PUKAIPU_TOOL", "")
PASSPHRASE = re.compile(r"^passphrase \(shown once, never stored\): ([0-9a-z]{5}(-[0-9a-z]{5}){3})$", re.M)


def tree_digest(*roots):
    """Content, mode and owner of every file under the roots."""
    d = hashlib.sha256()
    for root in roots:
        for dirpath, dirnames, filenames in sorted(os.walk(root)):
            dirnames.sort()
            for name in sorted(filenames + dirnames):
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                d.update(f"{p}:{st.st_mode:o}:{st.st_uid}:{st.st_gid}\n".encode())
                if stat.S_ISREG(st.st_mode):
                    with open(p, "rb") as f:
                        d.update(f.read())
    return d.hexdigest()


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, input=input)


class Instances(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Sysroot("instances")
        cls.rootfs = h.rootfs()
        cfg = {
            "rootfs": cls.rootfs,
            "uidRange": [3000, 3099],
            "portRange": [24500, 24599],
            "listenAddress": "127.0.0.1",
            "domain": "example.test",
            "apparmor": {"policy": "optional"},
            "seccompProfile": os.path.join(h.SRC, "profiles/seccomp/default.json"),
            "tmpSize": "8m",
            "session": {"command": ["/bin/sh", "-c",
                                    "probe status; probe fds; echo LISTEN_FDS=$LISTEN_FDS LISTEN_PID=$LISTEN_PID "
                                    "XPRA_SD_SOCKET_TYPE=$XPRA_SD_SOCKET_TYPE; "
                                    "echo hello > /data/home/from-inside; cat /etc/passwd; "
                                    "if test -e /run/pukaipu/tls; then echo tls-inside; else echo no-tls-inside; fi; "
                                    "dd if=/dev/zero of=/tmp/fill bs=1048576 count=20 2>/dev/null; "
                                    "echo tmpfill=$(( $(stat -c %s /tmp/fill) / 1048576 ))"],
                        "shell": ["/bin/sh"]},
            "network": {"mode": "none"},
        }
        with open(cls.s.config, "w") as f:
            json.dump(cfg, f)

    @classmethod
    def tearDownClass(cls):
        cls.s.cleanup()

    def pukaipu(self, *args, **kw):
        return self.s.run([TOOL, *args], **kw)

    def create(self, user, *extra):
        r = self.pukaipu("create", user, "--fqdn", f"{user}.example.test", *extra)
        return r

    def assert_refused(self, r, needle):
        self.assertNotEqual(r.returncode, 0, r.stdout)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn(needle, lines[0])

    # --- provisioning --------------------------------------------------------

    def test_create_fresh(self):
        r = self.create("john")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"created instance 'john': uid (\d+), port (\d+)", r.stdout)
        self.assertTrue(m, r.stdout)
        uid, port = int(m.group(1)), int(m.group(2))
        self.assertTrue(3000 <= uid <= 3099)
        self.assertTrue(24500 <= port <= 24599)
        self.assertRegex(r.stdout, PASSPHRASE)
        pw = self.s.passwd()["john"]
        self.assertEqual(int(pw[2]), uid)
        certs = os.path.join(self.s.state, "instances/john/certs")
        for name, mode in (("server.key", 0o600), ("client.p12", 0o600), ("server.crt", 0o644),
                           ("client-ca.crt", 0o644), ("client.crt", 0o644)):
            st = os.stat(os.path.join(certs, name))
            self.assertEqual(stat.S_IMODE(st.st_mode), mode, name)
            self.assertEqual(st.st_uid, 0, name)
        self.assertFalse(os.path.exists(os.path.join(certs, "client-ca.key")))  # never kept
        home = self.s.host_home("john")
        # The home pukaipu made is the user's alone (useradd's default here is 0755).
        self.assertEqual(stat.S_IMODE(os.stat(home).st_mode), 0o700)
        for d in (".config/qtile", ".config/kitty", ".cache", "Downloads", "brave-profile"):
            st = os.stat(os.path.join(home, d))
            self.assertEqual(st.st_uid, uid, d)
        # The passphrase is stored nowhere.
        pw_text = PASSPHRASE.search(r.stdout).group(1)
        for dirpath, _, files in os.walk(self.s.root):
            for f in files:
                p = os.path.join(dirpath, f)
                if os.path.isfile(p) and os.path.getsize(p) < 5 << 20:
                    with open(p, "rb") as fh:
                        self.assertNotIn(pw_text.encode(), fh.read(), p)

    def test_create_again_changes_nothing(self):
        self.create("ida")
        before = tree_digest(self.s.state, self.s.config_dir, self.s.etc, self.s.home)
        r = self.create("ida")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("nothing changed", r.stdout)
        self.assertNotRegex(r.stdout, PASSPHRASE)
        self.assertEqual(tree_digest(self.s.state, self.s.config_dir, self.s.etc, self.s.home), before)
        # A different request for the same instance is refused, and also changes nothing.
        r = self.pukaipu("create", "ida", "--fqdn", "other.example.test")
        self.assert_refused(r, "already exists")
        self.assertEqual(tree_digest(self.s.state, self.s.config_dir, self.s.etc, self.s.home), before)

    def test_concurrent_creates_get_distinct_uids_and_ports(self):
        users = [f"conc{i}" for i in range(6)]
        procs = [self.s.popen([TOOL, "create", u, "--fqdn", f"{u}.example.test"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for u in users]
        outs = [p.communicate(timeout=120) for p in procs]
        for p, (out, err) in zip(procs, outs):
            self.assertEqual(p.returncode, 0, err)
        got = [re.search(r"uid (\d+), port (\d+)", o).groups() for o, _ in outs]
        self.assertEqual(len({u for u, _ in got}), len(users))
        self.assertEqual(len({p for _, p in got}), len(users))

    def test_bad_names_and_ids_create_nothing(self):
        before = tree_digest(self.s.state, self.s.etc, self.s.home)
        cases = [
            (["create", "root", "--fqdn", "x.example.test"], "refusing"),
            (["create", "Bob", "--fqdn", "x.example.test"], "is not valid"),
            (["create", "1bob", "--fqdn", "x.example.test"], "is not valid"),
            (["create", "a/b", "--fqdn", "x.example.test"], "is not valid"),
            (["create", "..", "--fqdn", "x.example.test"], "is not valid"),
            (["create", "x" * 33, "--fqdn", "x.example.test"], "is not valid"),
            (["create", "bob-", "--fqdn", "x.example.test"], "is not valid"),
            (["create", "start", "--fqdn", "x.example.test"], "taken by pukaipu-run's OCI runtime commands"),
            (["create", "daemon", "--fqdn", "x.example.test"], "outside the instance range"),
            (["create", "bob", "--fqdn", "x.example.test", "--uid", "500"], "outside the configured range"),
            (["create", "bob", "--fqdn", "x.example.test", "--uid", "5000"], "outside the configured range"),
            (["create", "bob", "--fqdn", "x.example.test", "--port", "80"], "outside the configured range"),
            (["create", "bob", "--fqdn", "bad name!"], "fqdn"),
        ]
        for args, needle in cases:
            with self.subTest(args=args):
                self.assert_refused(self.pukaipu(*args), needle)
        self.assertEqual(tree_digest(self.s.state, self.s.etc, self.s.home), before)

    def test_bad_numbers_are_usage_errors_naming_the_option(self):
        # Numbers are parsed and range-checked by the command line parser:
        # exit status 2, one line naming the option, nothing changed.
        self.assertEqual(self.create("numset").returncode, 0)
        before = tree_digest(self.s.state, self.s.etc, self.s.home)
        cases = [
            (["create", "bob", "--fqdn", "x.example.test", "--port", "0"], "--port"),
            (["create", "bob", "--fqdn", "x.example.test", "--port", "65536"], "--port"),
            (["create", "bob", "--fqdn", "x.example.test", "--port", "http"], "--port"),
            (["create", "bob", "--fqdn", "x.example.test", "--uid", "-1"], "--uid"),
            (["create", "bob", "--fqdn", "x.example.test", "--uid", "4294967295"], "--uid"),
            (["create", "bob", "--fqdn", "x.example.test", "--cpus", "0"], "--cpus"),
            (["create", "bob", "--fqdn", "x.example.test", "--cpus", "1,5"], "--cpus"),
            (["create", "bob", "--fqdn", "x.example.test", "--cpus", "2000"], "--cpus"),
            (["create", "bob", "--fqdn", "x.example.test", "--tasks", "3"], "--tasks"),
            (["create", "bob", "--fqdn", "x.example.test", "--tasks", "-16"], "--tasks"),
            (["create", "bob", "--fqdn", "x.example.test", "--tasks", "2048x"], "--tasks"),
            (["set", "numset", "--cpus", "0"], "--cpus"),
            (["set", "numset", "--cpus", "lots"], "--cpus"),
            (["set", "numset", "--tasks", "99999999999"], "--tasks"),
            (["set", "numset", "--tasks", "1.5"], "--tasks"),
        ]
        for args, option in cases:
            with self.subTest(args=args):
                r = self.pukaipu(*args)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assert_refused(r, option)
        # Not a number at all, past the parser: still one line naming it.
        self.assert_refused(self.pukaipu("set", "numset", "--cpus", "nan"), "--cpus")
        self.assertEqual(tree_digest(self.s.state, self.s.etc, self.s.home), before)
        # "none" still removes a limit (set) and is refused as pointless (create).
        r = self.pukaipu("set", "numset", "--cpus", "none", "--tasks", "none")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_refused(self.pukaipu("create", "bob", "--fqdn", "x.example.test", "--tasks", "none"), "'none' is the default")

    def test_port_and_uid_collisions_refused(self):
        r = self.create("pa", "--port", "24590", "--uid", "3090")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_refused(self.create("pb", "--port", "24590"), "already used by another instance")
        self.assert_refused(self.create("pc", "--uid", "3090"), "already used")

    def test_ports_with_a_listener_on_the_host_are_skipped(self):
        # Another program already listening on a port of the range would make
        # the instance's first start fail with EADDRINUSE: create skips it.
        r = self.pukaipu("list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        taken = {x["port"] for x in json.loads(r.stdout)}
        free = [p for p in range(24500, 24600) if p not in taken]
        socks = []
        for port in free:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # someone else's already: create must skip it too
                s.close()
                continue
            s.listen(1)
            socks.append(s)
            break
        self.assertTrue(socks, "no port of the test range could be bound")
        held = socks[0].getsockname()[1]
        try:
            self.assert_refused(self.create("busy1", "--port", str(held)), "already listens on it")
            r = self.create("busy2")
            self.assertEqual(r.returncode, 0, r.stderr)
            port = int(re.search(r"port (\d+)", r.stdout).group(1))
            self.assertNotEqual(port, held)
            self.assertGreater(port, held)  # the lowest free port was the held one
        finally:
            for s in socks:
                s.close()

    def test_adopts_an_existing_user_in_range(self):
        r = self.s.run(["useradd", "--uid", "3050", "--user-group", "--create-home", "--home-dir",
                        "/home/existing", "existing"])
        self.assertEqual(r.returncode, 0, r.stderr)
        os.chmod(self.s.host_home("existing"), 0o755)
        r = self.create("existing")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("uid 3050", r.stdout)
        # An adopted home stays as it is, but a home others can read is said.
        self.assertIn("is open to others (mode 0755)", r.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(self.s.host_home("existing")).st_mode), 0o755)

    def test_a_user_left_by_a_failed_create_is_still_ours(self):
        # What a create leaves when it fails after useradd: the user, with
        # our comment. The next create adopts it as its own, so that
        # remove --purge-home may delete it (a foreign user it would not).
        r = self.s.run(["useradd", "--uid", "3054", "--user-group", "--create-home", "--home-dir",
                        "/home/halfway", "--comment", "pukaipu instance", "halfway"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.create("halfway")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.pukaipu("remove", "halfway", "--purge-home")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("halfway", self.s.passwd())
        # A user someone else made stays, home and all.
        r = self.s.run(["useradd", "--uid", "3055", "--user-group", "--create-home", "--home-dir",
                        "/home/foreign", "foreign"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.create("foreign")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_refused(self.pukaipu("remove", "foreign", "--purge-home"), "was not created by pukaipu")

    def test_adopted_user_without_a_home(self):
        # Under a root-owned /home the missing home is made, the user's, 0700.
        r = self.s.run(["useradd", "--uid", "3052", "--user-group", "--no-create-home", "--home-dir",
                        "/home/homeless", "homeless"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.create("homeless")
        self.assertEqual(r.returncode, 0, r.stderr)
        st = os.lstat(self.s.host_home("homeless"))
        self.assertTrue(stat.S_ISDIR(st.st_mode))
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (3052, 3052, 0o700))
        # Under a parent others can write (where the new directory could be
        # swapped for a symlink before root hands it over): refused.
        shared = os.path.join(self.s.home, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o1777)
        r = self.s.run(["useradd", "--uid", "3053", "--user-group", "--no-create-home", "--home-dir",
                        "/home/shared/drifter", "drifter"])
        self.assertEqual(r.returncode, 0, r.stderr)
        before = tree_digest(self.s.home)
        self.assert_refused(self.create("drifter"), "writable by others than root")
        self.assertEqual(tree_digest(self.s.home), before)

    def test_planted_symlink_in_home_is_not_followed(self):
        r = self.s.run(["useradd", "--uid", "3060", "--user-group", "--create-home", "--home-dir",
                        "/home/mallory", "mallory"])
        self.assertEqual(r.returncode, 0, r.stderr)
        target = os.path.join(self.s.root, "root-owned-target")
        os.makedirs(target, mode=0o755, exist_ok=True)
        home = self.s.host_home("mallory")
        # The user plants ~/.config -> a directory root owns (e.g. /etc).
        os.symlink(target, os.path.join(home, ".config"))
        os.lchown(os.path.join(home, ".config"), 3060, 3060)
        r = self.create("mallory")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(os.listdir(target), [])  # nothing was written through the link
        self.assertTrue(os.path.islink(os.path.join(home, ".config")))
        # ... and the admin is told which directories are missing.
        self.assertIn("~/.config/qtile in /home/mallory was not created", r.stderr)
        self.assertIn("~/.config/kitty in /home/mallory was not created", r.stderr)

    def test_remove_keeps_home_and_purge_deletes_it(self):
        self.create("rem1")
        self.create("rem2")
        r = self.pukaipu("remove", "rem1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.s.state, "instances/rem1")))
        self.assertTrue(os.path.isdir(self.s.host_home("rem1")))
        r = self.pukaipu("remove", "rem2", "--purge-home")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(self.s.host_home("rem2")))
        self.assertNotIn("rem2", self.s.passwd())
        self.assert_refused(self.pukaipu("remove", "nobody-here"), "no instance 'nobody-here'")

    def test_remove_with_a_user_filled_run_dir(self):
        # The attach directory in the run dir is the user's: a symlink out and
        # nesting deeper than remove goes cost a warning, never root's write
        # through the link, and the instance is still removed.
        self.create("rem3")
        attach = os.path.join(self.s.run_dir, "rem3", "attach")
        os.makedirs(attach)
        target = os.path.join(self.s.root, "rem3-target")
        os.mkdir(target)
        with open(os.path.join(target, "keep"), "w") as f:
            f.write("x")
        os.symlink(target, os.path.join(attach, "out"))
        deep = attach
        for _ in range(70):
            deep = os.path.join(deep, "d")
            os.mkdir(deep)
        r = self.pukaipu("remove", "rem3")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("nested deeper than 64 directories", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.s.state, "instances/rem3")))
        self.assertTrue(os.path.exists(os.path.join(target, "keep")))
        self.assertFalse(os.path.lexists(os.path.join(attach, "out")))  # the link itself went

    def test_list_and_show(self):
        self.create("lister")
        r = self.pukaipu("list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = {x["user"]: x for x in json.loads(r.stdout)}
        self.assertEqual(rows["lister"]["state"], "stopped")
        self.assertIn("clientCertExpires", rows["lister"])
        r = self.pukaipu("list")
        self.assertRegex(r.stdout, r"(?m)^USER +UID +PORT +STATE")
        self.assertRegex(r.stdout, r"(?m)^lister +30\d\d +245\d\d +stopped")
        r = self.pukaipu("show", "lister", "--json")
        self.assertEqual(json.loads(r.stdout)["fqdn"], "lister.example.test")

    # --- certificates ----------------------------------------------------------

    def test_certificates(self):
        r = self.create("certy", "--extra-name", "alt.example.test", "--extra-name", "Alt2.example.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        passphrase = PASSPHRASE.search(r.stdout).group(1)
        certs = os.path.join(self.s.state, "instances/certy/certs")
        server = openssl("x509", "-in", os.path.join(certs, "server.crt"), "-noout", "-text").stdout
        self.assertIn("ASN1 OID: prime256v1", server)
        self.assertIn("TLS Web Server Authentication", server)
        self.assertIn("DNS:certy.example.test", server)
        self.assertIn("DNS:alt.example.test", server)
        self.assertIn("DNS:Alt2.example.test", server)
        self.assertNotIn("IP Address", server)
        client = openssl("x509", "-in", os.path.join(certs, "client.crt"), "-noout", "-text").stdout
        self.assertIn("TLS Web Client Authentication", client)
        self.assertNotIn("TLS Web Server Authentication", client)
        self.assertIn("CN = certy", client)
        # Chains: server to the host CA, client to the instance's own client CA only.
        host_ca = os.path.join(self.s.config_dir, "ca/ca.crt")
        ok = openssl("verify", "-purpose", "sslserver", "-CAfile", host_ca, os.path.join(certs, "server.crt"))
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        ok = openssl("verify", "-purpose", "sslclient", "-CAfile", os.path.join(certs, "client-ca.crt"),
                     os.path.join(certs, "client.crt"))
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        self.create("other")
        other_ca = os.path.join(self.s.state, "instances/other/certs/client-ca.crt")
        bad = openssl("verify", "-CAfile", other_ca, os.path.join(certs, "client.crt"))
        self.assertNotEqual(bad.returncode, 0)
        # client.p12 opens with the printed passphrase and not with another.
        p12 = os.path.join(certs, "client.p12")
        good = openssl("pkcs12", "-in", p12, "-passin", "pass:" + passphrase, "-nokeys")
        self.assertEqual(good.returncode, 0, good.stderr)
        self.assertIn("BEGIN CERTIFICATE", good.stdout)
        wrong = openssl("pkcs12", "-in", p12, "-passin", "pass:wrong-passphrase", "-nokeys")
        self.assertNotEqual(wrong.returncode, 0)
        info = openssl("pkcs12", "-in", p12, "-passin", "pass:" + passphrase, "-info", "-noout")
        self.assertIn("AES-256-CBC", info.stderr + info.stdout)

    def test_renew_invalidates_older_client_certificates(self):
        r = self.create("renewer")
        first = PASSPHRASE.search(r.stdout).group(1)
        certs = os.path.join(self.s.state, "instances/renewer/certs")
        old_client = os.path.join(self.s.root, "old-client.crt")
        shutil.copy(os.path.join(certs, "client.crt"), old_client)
        r = self.pukaipu("cert", "renew", "renewer")
        self.assertEqual(r.returncode, 0, r.stderr)
        second = PASSPHRASE.search(r.stdout).group(1)
        self.assertNotEqual(first, second)
        ca = os.path.join(certs, "client-ca.crt")
        self.assertNotEqual(openssl("verify", "-CAfile", ca, old_client).returncode, 0)
        self.assertEqual(openssl("verify", "-CAfile", ca, os.path.join(certs, "client.crt")).returncode, 0)

    # --- pukaipu-run USER --------------------------------------------------------

    def test_run_instance_payload_view(self):
        r = self.create("runner")
        self.assertEqual(r.returncode, 0, r.stderr)
        uid = int(re.search(r"uid (\d+)", r.stdout).group(1))
        res = self.s.run([h.RUN, "runner"], timeout=60)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(res.stdout, "")  # the desktop's output comes through the relay, on stderr
        res.stdout = res.stderr
        kv = h.keyvals(res.stdout)
        self.assertEqual(kv["uid"], f"{uid},{uid},{uid}")
        self.assertEqual(kv["CapEff"], "0000000000000000")
        self.assertEqual(kv["Seccomp"], "2")
        self.assertEqual(kv["NoNewPrivs"], "1")
        self.assertEqual(kv["hostname"], "pukaipu-runner")
        self.assertEqual(kv["cwd"], "/data/home")
        self.assertEqual(kv["fds"], "0,1,2,3")  # fd 3: the listening socket
        self.assertIn("LISTEN_FDS=1 LISTEN_PID=2 XPRA_SD_SOCKET_TYPE=unix-domain", res.stdout)
        self.assertRegex(res.stdout, rf"(?m)^runner:x:{uid}:{uid}:[^:]*:/data/home:/bin/bash$")
        # TLS ends at the front door: no certificate and no key inside.
        self.assertIn("no-tls-inside", res.stdout)
        self.assertNotIn("-----BEGIN", res.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.s.run_dir, "runner", "tls")))
        self.assertEqual(kv["tmpfill"], "8")  # filling /tmp stops at tmpSize, not at the host's memory
        # The home is the user's, on the host.
        f = os.path.join(self.s.host_home("runner"), "from-inside")
        self.assertEqual(open(f).read(), "hello\n")
        self.assertEqual(os.stat(f).st_uid, uid)
        # The listening socket: a Unix socket for root and the front door only.
        sock = os.path.join(self.s.run_dir, "runner", "desktop.sock")
        self.assertIn(f"listening socket bound {sock}", res.stderr)
        st = os.stat(sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        group = self.s.group_id("haproxy")
        if group is None:
            self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (0, 0, 0o600))
            self.assertIn("no group 'haproxy'", res.stderr)
        else:
            self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (0, group, 0o660))

    def assert_run_refused(self, r, needle):
        # pukaipu-run may warn first (AppArmor is optional here); the error is its last line.
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertIn(needle, r.stderr.strip().splitlines()[-1])

    def test_desktop_socket_taken_or_stale(self):
        # A session that still accepts on the socket keeps it; one that is
        # gone left a socket file that the next start replaces.
        self.assertEqual(self.create("sock").returncode, 0)
        d = os.path.join(self.s.run_dir, "sock")
        os.makedirs(d, mode=0o755, exist_ok=True)
        path = os.path.join(d, "desktop.sock")
        live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            live.bind(path)
            live.listen(1)
            self.assert_run_refused(self.s.run([h.RUN, "sock"], timeout=60), "a session already listens there")
        finally:
            live.close()
        self.assertTrue(os.path.exists(path))  # now stale
        res = self.s.run([h.RUN, "sock"], timeout=60)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn(f"listening socket bound {path}", res.stderr)
        os.unlink(path)
        with open(path, "w"):
            pass
        self.assert_run_refused(self.s.run([h.RUN, "sock"], timeout=60), "exists and is not a socket")

    def test_systemd_socket_must_be_unix(self):
        # What an old TCP drop-in of pukaipu@USER.socket would hand over.
        self.assertEqual(self.create("tcpsock").returncode, 0)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            tcp.listen(1)
            argv = ["sh", "-c", 'export LISTEN_FDS=1 LISTEN_PID=$$; exec "$@" 3<&0', "sh", h.RUN, "tcpsock"]
            r = subprocess.run(self.s.wrap(argv), env=self.s.env(), stdin=tcp.fileno(), capture_output=True,
                               text=True, timeout=60)
        self.assert_run_refused(r, "fd 3 is not a listening Unix stream socket")

    def test_print_spec_runs_unchanged_under_crun(self):
        if not shutil.which("crun"):
            self.skipTest("crun is not installed")
        self.create("speccy")
        first = self.s.run([h.RUN, "speccy"], timeout=60)  # writes the runtime files the spec binds
        self.assertEqual(first.returncode, 0, first.stderr)
        r = self.s.run([h.RUN, "speccy", "--print-spec"])
        self.assertEqual(r.returncode, 0, r.stderr)
        spec = json.loads(r.stdout)
        bundle = os.path.join(self.s.root, "crun-bundle")
        os.makedirs(bundle, mode=0o755, exist_ok=True)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            f.write(r.stdout)
        state = os.path.join(self.s.root, "crun-state")
        # crun 1.8 refuses this host's hybrid cgroups unless the unified
        # hierarchy is hidden (tmpfs) in a private mount namespace.
        script = ('mount -t tmpfs tmpfs /sys/fs/cgroup/unified 2>/dev/null; '
                  'exec crun --root "$1" run --bundle "$2" "pukaipu-test-$$"')
        res = self.s.run(["sh", "-c", script, "sh", state, bundle], stdin=subprocess.PIPE, timeout=60)
        self.assertEqual(res.returncode, 0, res.stderr)
        kv = h.keyvals(res.stdout)
        uid = spec["process"]["user"]["uid"]
        self.assertEqual(kv["uid"], f"{uid},{uid},{uid}")
        self.assertEqual(kv["NoNewPrivs"], "1")
        self.assertEqual(kv["Seccomp"], "2")

    def test_shell_under_tmux(self):
        if not shutil.which("tmux"):
            self.skipTest("tmux is not installed")
        r = self.create("shelly")
        uid = re.search(r"uid (\d+)", r.stdout).group(1)
        session = f"pukaipu-test-{os.getpid()}"
        cmd = shlex.join(self.s.wrap([h.RUN, "shelly", "--shell"]))
        env = self.s.env()
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "30", cmd], env=env, check=True)
        try:
            time.sleep(1.0)
            subprocess.run(["tmux", "send-keys", "-t", session, "id -u; echo marker-$((40+2))", "Enter"], check=True)
            screen = ""
            for _ in range(50):
                screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                        text=True).stdout
                if "marker-42" in screen:
                    break
                time.sleep(0.1)
            self.assertIn("marker-42", screen)
            self.assertRegex(screen, rf"(?m)^{uid}\s*$")
            subprocess.run(["tmux", "send-keys", "-t", session, "exit", "Enter"], check=True)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)

    def test_run_refuses_unknown_instance_and_wrong_user(self):
        r = self.s.run([h.RUN, "ghost"])
        self.assertEqual(r.returncode, 125)
        self.assertIn("no instance 'ghost'", r.stderr)
        r = self.s.run([h.RUN, "../etc"])
        self.assertEqual(r.returncode, 125)
        self.assertIn("not a valid user name", r.stderr)


def instance_sysroot(name, first_uid, first_port, command, shell, sysroot=Sysroot, **extra):
    """A Sysroot (or a subclass) whose pukaipu.json runs `command` as the
    desktop (busybox rootfs); `extra` adds or replaces keys."""
    s = sysroot(name)
    cfg = {
        "rootfs": h.rootfs(),
        "uidRange": [first_uid, first_uid + 99],
        "portRange": [first_port, first_port + 99],
        "listenAddress": "127.0.0.1",
        "domain": "example.test",
        "apparmor": {"policy": "optional"},
        "seccompProfile": os.path.join(h.SRC, "profiles/seccomp/default.json"),
        "session": {"command": command, "shell": shell},
        "network": {"mode": "none"},
        **extra,
    }
    with open(s.config, "w") as f:
        json.dump(cfg, f)
    return s


class OneInstance(unittest.TestCase):
    """A Sysroot (instance_sysroot) with one instance USER, made once per class."""
    NAME = USER = ""
    FIRST_UID = FIRST_PORT = 0
    COMMAND = SHELL = ["/bin/sh"]

    @classmethod
    def setUpClass(cls):
        cls.s = instance_sysroot(cls.NAME, cls.FIRST_UID, cls.FIRST_PORT, cls.COMMAND, cls.SHELL)
        r = cls.s.run([TOOL, "create", cls.USER, "--fqdn", f"{cls.USER}.example.test"])
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        cls.s.cleanup()


class RunRecords(OneInstance):
    """Each pukaipu-run of an instance keeps its own record: a --shell that
    ends never removes the desktop's, and remove waits for all of them."""

    NAME, USER, FIRST_UID, FIRST_PORT = "records", "rec", 3200, 24700
    COMMAND = ["/bin/sh", "-c", "echo desktop-up; exec sleep 120"]
    SHELL = ["/bin/sh", "-c", "echo shell-up; sleep 1"]

    def state(self):
        r = self.s.run([TOOL, "list", "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        return {i["user"]: i["state"] for i in json.loads(r.stdout)}["rec"]

    def test_a_shell_ending_leaves_the_desktop_running_and_remove_refused(self):
        desktop = self.s.popen([h.RUN, "rec"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            self.assertTrue(h.wait_for(lambda: self.state() == "running", timeout=30), "desktop never ran")
            shell = self.s.run([h.RUN, "rec", "--shell"], timeout=60, stdin=subprocess.DEVNULL)
            self.assertEqual(shell.returncode, 0, shell.stderr)
            self.assertIn("shell-up", shell.stdout)
            # The shell's end took only its own record.
            self.assertEqual(self.state(), "running")
            r = self.s.run([TOOL, "remove", "rec"])
            self.assertNotEqual(r.returncode, 0)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn("instance 'rec' is running (pukaipu-run pid", r.stderr)
            self.assertTrue(os.path.exists(os.path.join(self.s.state, "instances/rec/instance.json")))
        finally:
            desktop.terminate()
            desktop.wait(timeout=30)
        # A shell alone also holds the instance.
        shell = self.s.popen([h.RUN, "rec", "--shell"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            run_dir = os.path.join(self.s.run_dir, "rec")
            self.assertTrue(h.wait_for(lambda: any(n.startswith("shell-") for n in os.listdir(run_dir)), timeout=30))
            r = self.s.run([TOOL, "remove", "rec"])
            self.assertNotEqual(r.returncode, 0, r.stdout)
            self.assertIn("is running", r.stderr)
        finally:
            shell.communicate(timeout=60)
        self.assertEqual(self.state(), "stopped")
        r = self.s.run([TOOL, "remove", "rec"])
        self.assertEqual(r.returncode, 0, r.stderr)


class DesktopStdio(OneInstance):
    """`pukaipu-run USER` run by an administrator in a terminal: the desktop
    gets none of it (stdin /dev/null, output through the relay with control
    characters escaped, no /dev/tty, a session of its own)."""

    SCRIPT = (
        "for fd in 0 1 2; do [ -t $fd ] && echo tty-on-fd-$fd; done; "
        "[ -e /dev/tty ] && echo dev-tty-present; "
        "stty raw -echo </dev/tty 2>/dev/null && echo stty-changed-a-terminal; "
        "echo sid=$(cut -d' ' -f6 /proc/self/stat) pgrp=$(cut -d' ' -f5 /proc/self/stat); "
        "read -r line && echo read-from-stdin:$line; "
        "printf '<0>emergency-from-inside\\n'; "
        "printf '\\033]0;owned\\007\\033[2Jafter-escapes\\n'; "
        "printf 'no newline at the end'")

    NAME, USER, FIRST_UID, FIRST_PORT = "stdio", "ttyuser", 3100, 24600
    COMMAND = ["/bin/sh", "-c", SCRIPT]

    def test_desktop_keeps_nothing_of_the_launchers_terminal(self):
        import pty
        import termios
        master, slave = pty.openpty()
        before = termios.tcgetattr(slave)
        p = self.s.popen([h.RUN, "ttyuser"], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                         preexec_fn=lambda: __import__("fcntl").ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        os.write(master, b"typed-by-the-admin\n")
        out = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the slave is gone
                break
            if not chunk:
                break
            out += chunk
        self.assertEqual(p.wait(timeout=30), 0, out)
        text = out.decode(errors="replace")
        for bad in ("tty-on-fd-", "dev-tty-present", "stty-changed-a-terminal", "read-from-stdin:"):
            self.assertNotIn(bad, text)
        # The container has its own session: inside, it is led by PID 1 (the
        # reaper). Without setsid it would be the launcher's, outside the
        # PID namespace, and show as 0.
        self.assertRegex(text, r"sid=1 pgrp=1")
        self.assertIn("<0>emergency-from-inside", text)  # text, not a priority (SyslogLevelPrefix=no)
        self.assertNotIn("\x1b]0;owned", text)          # no raw escape reached the terminal
        self.assertIn("\\x1b]0;owned\\x07\\x1b[2Jafter-escapes", text)
        self.assertIn("no newline at the end", text)       # the last partial line is flushed
        # The terminal's modes are the launcher's to change, and it changed none.
        self.assertEqual(termios.tcgetattr(master), before)
        os.close(master)


if __name__ == "__main__":
    h.main()
