"""Instance names, the host CA's name constraints, `pukaipu ca rotate` and
`pukaipu migrate`, with the real pukaipu, openssl, HAProxy and curl, in a
private /etc and /home (Sysroot).

- Names: an IP (v4, v6, as --fqdn or --extra-name) and a wildcard name are
  refused with one line; a name (fqdn or extra name, any case) belongs to one
  instance only, and the refusal names the other instance; a wildcard
  --server-cert may serve two instances, each under its own exact name.
- The host CA carries critical nameConstraints: `openssl verify` fails for a
  name outside the domain and for an IP SAN, passes for a name inside it.
- An old host CA (no constraints, as earlier versions made it): `show` warns;
  `ca rotate` makes the warning go, re-issues the server certificate, and
  through the front door the old client certificate fails the handshake
  while the new one gets through to the desktop's backend.
- migrate: an old-style state tree made by hand (instance.json with a port
  and IP names, RUN_DIR/USER/tls with the user's key copy, the TCP socket
  drop-in) is converted, old -> new URLs printed; a second run changes
  nothing; a corrupt instance file or a shared name gives one line and
  leaves every file as it was.
Needs root, openssl, haproxy and curl (skips, saying which is missing)."""
import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import time
import unittest

import harness as h
from sysroot import Sysroot

TOOL = os.environ.get("PUKAIPU_TOOL", "")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_digest(*roots):
    """Names, modes, owners and contents of every file below the roots."""
    d = hashlib.sha256()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                if name == ".lock":  # the provisioning lock, made by any command
                    continue
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                d.update(f"{p}:{st.st_mode:o}:{st.st_uid}:{st.st_gid}\n".encode())
                if stat.S_ISREG(st.st_mode):
                    d.update(read(p))
    return d.hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def openssl(*args, **kw):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=kw.pop("check", True), **kw)


def make_ca(dirpath, cn, constraints=None):
    """A P-256 CA as earlier pukaipu versions made it (no nameConstraints)."""
    os.makedirs(dirpath, exist_ok=True)
    key, crt = os.path.join(dirpath, "ca.key"), os.path.join(dirpath, "ca.crt")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    exts = ["-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    openssl("req", "-x509", "-new", "-key", key, "-out", crt, "-days", "30", "-subj", f"/CN={cn}", *exts)
    os.chmod(key, 0o600)
    return crt, key


def issue(ca_crt, ca_key, out_dir, stem, sans, client=False):
    """A leaf signed by the CA with openssl (not by pukaipu): key and cert."""
    key, csr, crt = (os.path.join(out_dir, stem + ext) for ext in (".key", ".csr", ".crt"))
    ext = os.path.join(out_dir, stem + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n")
        f.write(f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}\n")
        if sans:
            f.write("subjectAltName=" + ",".join(sans) + "\n")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={stem}")
    openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-days", "10",
            "-extfile", ext, "-out", crt)
    return key, crt


class Base(unittest.TestCase):
    NAME = ""
    DOMAIN = ""
    UIDS = [0, 0]

    @classmethod
    def setUpClass(cls):
        cls.s = Sysroot(cls.NAME)
        cls.front = os.path.join(cls.s.root, "front")
        cls.systemd = os.path.join(cls.s.root, "systemd")
        cls.port = free_port()
        cls.write_config()

    @classmethod
    def write_config(cls, **more):
        cfg = {"uidRange": cls.UIDS, "portRange": [cls.UIDS[0] + 24000, cls.UIDS[1] + 24000],
               "listenAddress": "127.0.0.1", "frontPort": cls.port, "domain": cls.DOMAIN,
               "apparmor": {"policy": "optional"}, **more}
        with open(cls.s.config, "w") as f:
            json.dump(cfg, f)

    @classmethod
    def tearDownClass(cls):
        h.stop_haproxy(cls.s.run_dir)
        cls.s.cleanup()

    @classmethod
    def tool(cls, *args):
        return cls.s.run([TOOL, *args], env={"PUKAIPU_FRONT_DIR": cls.front, "PUKAIPU_SYSTEMD_DIR": cls.systemd})

    def refused(self, r, text):
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn(text, lines[0])

    def certs(self, user):
        return os.path.join(self.s.state, "instances", user, "certs")

    def ca(self):
        return os.path.join(self.s.config_dir, "ca", "ca.crt"), os.path.join(self.s.config_dir, "ca", "ca.key")


class Names(Base):
    NAME, DOMAIN, UIDS = "names", "names.test", [3860, 3869]

    def test_ip_and_wildcard_names_refused(self):
        for args, text in ((["--extra-name", "127.0.0.1"], "'127.0.0.1': an IP address"),
                           (["--fqdn", "10.1.2.3"], "--fqdn '10.1.2.3': an IP address"),
                           (["--fqdn", "::1"], "--fqdn '::1': an IP address"),
                           (["--extra-name", "[2001:db8::1]"], "an IP address"),
                           (["--fqdn", "*.names.test"], "a wildcard")):
            with self.subTest(args=args):
                self.refused(self.tool("create", "ipname", *args), text)
                self.assertFalse(os.path.exists(os.path.join(self.s.state, "instances", "ipname")))

    def test_a_name_belongs_to_one_instance(self):
        r = self.tool("create", "nown", "--extra-name", "Shared.names.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        for args in (["--fqdn", "nown.names.test"], ["--fqdn", "SHARED.names.test"],
                     ["--extra-name", "nown.NAMES.test"]):
            with self.subTest(args=args):
                r = self.tool("create", "nother", *args)
                self.refused(r, "already belongs to instance 'nown'")
                self.assertFalse(os.path.exists(os.path.join(self.s.state, "instances", "nother")))

    def test_name_outside_the_domain_needs_its_own_certificate(self):
        self.refused(self.tool("create", "nout", "--fqdn", "nout.elsewhere.test"),
                     "outside the domains the host CA signs for (names.test)")

    def test_wildcard_server_cert_serves_two_instances(self):
        d = os.path.join(self.s.root, "wild")
        ca_crt, ca_key = make_ca(d, "own CA")
        key, crt = issue(ca_crt, ca_key, d, "wild", ["DNS:*.wild.test"])
        for user in ("wa", "wb"):
            r = self.tool("create", user, "--fqdn", f"{user}.wild.test", "--server-cert", crt, "--server-key", key)
            self.assertEqual(r.returncode, 0, r.stderr)
        r = self.tool("front", "reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(self.front, "crt-list")) as f:
            lines = f.read().splitlines()
        self.assertTrue(any(l.endswith("verify required] wa.wild.test") for l in lines), lines)
        self.assertTrue(any(l.endswith("verify required] wb.wild.test") for l in lines), lines)

    def test_host_ca_name_constraints(self):
        r = self.tool("create", "nca", "--extra-name", "alt.names.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        ca_crt, ca_key = self.ca()
        text = openssl("x509", "-in", ca_crt, "-noout", "-ext", "nameConstraints").stdout
        self.assertIn("critical", text)
        self.assertIn("DNS:names.test", text)
        self.assertIn("IP:0.0.0.0/0.0.0.0", text)
        self.assertIn("IP:0:0:0:0:0:0:0:0/0:0:0:0:0:0:0:0", text)
        # pukaipu's own server certificate passes.
        r = openssl("verify", "-CAfile", ca_crt, os.path.join(self.certs("nca"), "server.crt"), check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # Leaves signed with the CA's key by someone else: only in-domain names pass.
        d = os.path.join(self.s.root, "leaves")
        os.makedirs(d, exist_ok=True)
        for stem, sans, ok, why in (("inside", ["DNS:x.names.test"], True, ""),
                                    ("apex", ["DNS:names.test"], True, ""),
                                    ("outside", ["DNS:bank.example.com"], False, "permitted subtree violation"),
                                    ("lookalike", ["DNS:xnames.test"], False, "permitted subtree violation"),
                                    ("ipv4", ["DNS:y.names.test", "IP:127.0.0.1"], False, "excluded subtree violation"),
                                    ("ipv6", ["IP:2001:db8::1"], False, "excluded subtree violation")):
            with self.subTest(leaf=stem):
                _, crt = issue(ca_crt, ca_key, d, stem, sans)
                r = openssl("verify", "-CAfile", ca_crt, crt, check=False)
                self.assertEqual(r.returncode == 0, ok, r.stdout + r.stderr)
                self.assertIn(why, r.stdout + r.stderr)

    def test_show_has_no_warning_for_a_constrained_ca(self):
        r = self.tool("create", "nshow")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.tool("show", "nshow")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")


class Rotate(Base):
    NAME, DOMAIN, UIDS = "rotate", "rot.test", [3870, 3879]

    def curl(self, crt, key):
        ca_crt, _ = self.ca()
        return subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                               "--resolve", f"ra.rot.test:{self.port}:127.0.0.1", "--cacert", ca_crt,
                               "--cert", crt, "--key", key, f"https://ra.rot.test:{self.port}/"],
                              capture_output=True, text=True)

    def client_pair(self, tag):
        """The instance's current client certificate and key (from client.p12
        with the passphrase create or rotate printed), copied aside."""
        d = os.path.join(self.s.root, tag)
        os.makedirs(d, exist_ok=True)
        pem = os.path.join(d, "client.pem")
        openssl("pkcs12", "-in", os.path.join(self.certs("ra"), "client.p12"), "-passin", f"pass:{self.passphrase}",
                "-nodes", "-out", pem)
        return pem, pem

    def test_old_ca_warned_then_rotated(self):
        ca_crt, ca_key = self.ca()
        make_ca(os.path.dirname(ca_crt), "pukaipu host CA (old)")  # as before: no nameConstraints
        r = self.tool("create", "ra")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.passphrase = r.stdout.split("passphrase (shown once, never stored): ")[1].split()[0]
        old_client = self.client_pair("old")
        server_before = read(os.path.join(self.certs("ra"), "server.crt"))
        r = self.tool("show", "ra")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("has no name constraints", lines[0])
        self.assertIn("pukaipu ca rotate", lines[0])
        r = self.tool("front", "reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        # Through the front door before: TLS and the serial check pass, the
        # request reaches ra's backend (no desktop runs: 503).
        r = self.curl(*old_client)
        self.assertEqual(r.stdout, "503", r.stderr)

        r = self.tool("ca", "rotate")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ra: new server certificate from the new host CA", r.stdout)
        self.assertIn("import", r.stdout)
        self.passphrase = r.stdout.split("ra: new client certificate ")[1].split("never stored): ")[1].split()[0]
        new_client = self.client_pair("new")
        r = self.tool("show", "ra")
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertIn("Name Constraints: critical", openssl("x509", "-in", ca_crt, "-noout", "-text").stdout)
        self.assertNotEqual(read(os.path.join(self.certs("ra"), "server.crt")), server_before)
        r = openssl("verify", "-CAfile", ca_crt, os.path.join(self.certs("ra"), "server.crt"), check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertFalse(os.path.exists(ca_crt + ".new") or os.path.exists(ca_key + ".new"))
        # The front door was refreshed: the new certificate gets through,
        # the old one fails the handshake (curl exit 35/56, no HTTP status).
        deadline = time.monotonic() + 10
        while True:
            r = self.curl(*new_client)
            if r.stdout == "503" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(r.stdout, "503", r.stderr)
        r = self.curl(*old_client)
        self.assertEqual(r.stdout, "000", r.stderr)
        self.assertNotEqual(r.returncode, 0)


class Migrate(Base):
    NAME, DOMAIN, UIDS = "migrate", "mig.test", [3880, 3889]

    def old_instance(self, user, uid, port, fqdn, extra, ca):
        """instance.json, certs/ and RUN_DIR/USER/tls as pukaipu before the
        front door wrote them (commit 273a2a0), and its TCP socket drop-in."""
        idir = os.path.join(self.s.state, "instances", user)
        certs = os.path.join(idir, "certs")
        os.makedirs(certs, mode=0o700)
        sans = [("IP:" if ":" in n or n.replace(".", "").isdigit() else "DNS:") + n for n in [fqdn, *extra]]
        key, crt = issue(*ca, certs, "server", sans)
        os.chmod(key, 0o600)
        client_ca = make_ca(os.path.join(self.s.root, "cca-" + user), f"pukaipu client CA for {user}")
        ckey, ccrt = issue(*client_ca, certs, "client", [], client=True)
        shutil.copy(client_ca[0], os.path.join(certs, "client-ca.crt"))
        openssl("pkcs12", "-export", "-in", ccrt, "-inkey", ckey, "-out", os.path.join(certs, "client.p12"),
                "-passout", "pass:old")
        for junk in ("server.csr", "server.ext", "client.csr", "client.ext", "client.key"):
            os.unlink(os.path.join(certs, junk))
        with open(os.path.join(idir, "instance.json"), "w") as f:
            json.dump({"user": user, "uid": uid, "gid": uid, "port": port, "fqdn": fqdn, "extraNames": extra,
                       "created": "2026-01-01T00:00:00Z", "createdUser": True}, f, indent=2)
        tls = os.path.join(self.s.run_dir, user, "tls")
        os.makedirs(tls)
        for name in ("server.crt", "server.key", "client-ca.crt"):
            shutil.copy(os.path.join(certs, name), os.path.join(tls, name))
        os.chown(os.path.join(tls, "server.key"), uid, uid)
        os.chmod(os.path.join(tls, "server.key"), 0o400)
        dropin = os.path.join(self.systemd, f"pukaipu@{user}.socket.d")
        os.makedirs(dropin)
        with open(os.path.join(dropin, "50-pukaipu-listen.conf"), "w") as f:
            f.write(f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{port}\n")

    def build_old_state(self):
        for d in (self.s.state, self.s.run_dir, self.systemd, self.front, os.path.join(self.s.config_dir, "ca")):
            shutil.rmtree(d, ignore_errors=True)
        os.makedirs(os.path.join(self.s.state, "instances"))
        os.makedirs(self.systemd)
        ca = make_ca(os.path.join(self.s.config_dir, "ca"), "pukaipu host CA (old)")
        self.old_instance("mone", 3881, 27001, "mone.mig.test", ["127.0.0.1", "alt.mig.test"], ca)
        self.old_instance("mtwo", 3882, 27002, "192.0.2.9", [], ca)

    def everything(self):
        return tree_digest(self.s.state, self.s.run_dir, self.systemd, self.s.config_dir, self.front) \
            if os.path.exists(self.front) else tree_digest(self.s.state, self.s.run_dir, self.systemd,
                                                           self.s.config_dir)

    def test_migrate_twice(self):
        self.build_old_state()
        certs = self.certs("mone")
        kept = {n: read(os.path.join(certs, n)) for n in os.listdir(certs)}
        r = self.tool("migrate")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        p = self.port
        self.assertIn(f"mone: https://mone.mig.test:27001/ -> https://mone.mig.test:{p}/, "
                      f"https://127.0.0.1:27001/ -> (IP names are no longer served), "
                      f"https://alt.mig.test:27001/ -> https://alt.mig.test:{p}/\n", r.stdout)
        self.assertIn(f"mtwo: https://192.0.2.9:27002/ -> https://mtwo.mig.test:{p}/\n", r.stdout)
        self.assertIn("has no name constraints", r.stderr)  # the old host CA: rotate it
        # mone keeps its certificates and keys byte for byte; only its IP name went.
        self.assertEqual({n: read(os.path.join(certs, n)) for n in os.listdir(certs)}, kept)
        with open(os.path.join(self.s.state, "instances", "mone", "instance.json")) as f:
            self.assertEqual(json.load(f)["extraNames"], ["alt.mig.test"])
        with open(os.path.join(self.s.state, "instances", "mtwo", "instance.json")) as f:
            self.assertEqual(json.load(f)["fqdn"], "mtwo.mig.test")
        text = openssl("x509", "-in", os.path.join(self.certs("mtwo"), "server.crt"), "-noout", "-ext",
                       "subjectAltName").stdout
        self.assertIn("DNS:mtwo.mig.test", text)
        self.assertNotIn("IP", text)
        for user in ("mone", "mtwo"):
            self.assertFalse(os.path.exists(os.path.join(self.s.run_dir, user, "tls")), user)
            self.assertFalse(os.path.exists(os.path.join(self.systemd, f"pukaipu@{user}.socket.d",
                                                         "50-pukaipu-listen.conf")), user)
            st = os.stat(os.path.join(self.certs(user), "server.key"))
            self.assertEqual((st.st_mode & 0o7777, st.st_uid), (0o600, 0))
        with open(os.path.join(self.front, "crt-list")) as f:
            crt_list = f.read()
        self.assertIn("mone.pem [ca-file", crt_list)
        self.assertIn(" mone.mig.test alt.mig.test\n", crt_list)
        self.assertIn(" mtwo.mig.test\n", crt_list)
        self.assertNotIn("127.0.0.1", crt_list)

        before = self.everything()
        r = self.tool("migrate")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout, "nothing to migrate\n")
        self.assertEqual(self.everything(), before)

    def test_bad_input_changes_nothing(self):
        for what, spoil, text in (
                ("corrupt", lambda: open(os.path.join(self.s.state, "instances", "mtwo", "instance.json"), "w")
                 .write('{"user": "mtwo", "uid": '), "instances/mtwo/instance.json"),
                ("shared name", lambda: self.rewrite("mtwo", fqdn="ALT.mig.test"),
                 "name 'alt.mig.test' already belongs to instance 'm")):
            with self.subTest(what=what):
                self.build_old_state()
                spoil()
                before = self.everything()
                self.refused(self.tool("migrate"), text)
                self.assertEqual(self.everything(), before)

    def rewrite(self, user, **fields):
        path = os.path.join(self.s.state, "instances", user, "instance.json")
        with open(path) as f:
            j = json.load(f)
        j.update(fields)
        with open(path, "w") as f:
            json.dump(j, f)


if __name__ == "__main__":
    for tool in ("haproxy", "openssl", "curl"):
        if not shutil.which(tool):
            print(f"SKIP: no {tool} (apt-get install {tool})")
            raise SystemExit(77)
    h.main()
