#!/usr/bin/env python3
"""TLS behaviour of pukaipu's certificates against a server set up as xpra does.

Certificates are made by pukaipu-certtool (tests/certtool/certtool.cc), i.e. by the same
library as `pukaipu create`. The server mirrors xpra 3.1's
xpra/net/socket_util.py get_ssl_wrap_socket_fn() for
`--ssl-protocol=TLS --ssl-client-verify-mode=required --ssl-ca-certs=CLIENT-CA`
with xpra's defaults (ciphers DEFAULT, options ALL,NO_COMPRESSION, verify flags
X509_STRICT): SSLContext(PROTOCOL_TLS), load_cert_chain(server), CERT_REQUIRED,
load_default_certs(CLIENT_AUTH) -- always, so the system trust store also
vouches for client certificates -- then load_verify_locations(cafile=CLIENT-CA).

What must hold (issue 3, DESIGN.md section 2):
  - john's certificate opens john's instance; not alice's; no certificate opens
    nothing; a certificate from before `cert renew` is refused afterwards;
  - TLS below 1.2 is refused;
  - a CA in the system trust store is NOT trusted for client certificates once
    xpra runs with SSL_CERT_FILE=<instance client CA> and SSL_CERT_DIR=<empty
    or missing directory>; without that env it IS trusted (so the env is
    necessary), and each of the two variables is needed on its own.
The "system trust store" is the real default path (/etc/ssl/certs, through
/usr/lib/ssl/{cert.pem,certs}) with a rogue CA bind-mounted over it in a private
mount namespace (root); without root, SSL_CERT_FILE/SSL_CERT_DIR stand in for it.

Run: meson test tls, or PUKAIPU_CERTTOOL=build/tests/pukaipu-certtool python3
tests/integration/test_tls.py. Everything listens on 127.0.0.1 only.
Exit status: 0 pass, 1 fail, 77 skip (printed with why).
"""
import glob
import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest
import warnings

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYSTEM_CERT_DIR = "/etc/ssl/certs"  # where Debian's /usr/lib/ssl/{cert.pem,certs} point


def find_certtool():
    tool = os.environ.get("PUKAIPU_CERTTOOL", "")
    if tool:
        return tool
    found = sorted(glob.glob(os.path.join(SRC, "build*", "tests", "pukaipu-certtool")), key=os.path.getmtime)
    return found[-1] if found else ""


CERTTOOL = find_certtool()


# --- the server: xpra's SSL setup, in a child process with its own env -------

def serve(cert, key, ca_certs):
    """Runs in the child. One line per connection on stdout: 'ok CN VERSION' or 'refused REASON'."""
    warnings.simplefilter("ignore", DeprecationWarning)  # PROTOCOL_TLS, as xpra uses it
    # xpra: get_ssl_wrap_socket_fn(protocol="TLS", client_verify_mode="required",
    #       verify_flags="X509_STRICT", options="ALL,NO_COMPRESSION", ciphers="DEFAULT")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS)
    context.set_ciphers("DEFAULT")
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags = ssl.VERIFY_X509_STRICT
    context.options = ssl.OP_ALL | ssl.OP_NO_COMPRESSION
    context.load_cert_chain(certfile=cert, keyfile=key, password=None)
    context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    context.load_verify_locations(cafile=ca_certs)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    print(listener.getsockname()[1], flush=True)
    listener.settimeout(60)
    while True:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            return
        conn.setblocking(True)
        tls = context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False, suppress_ragged_eofs=True)
        tls.settimeout(10)
        try:
            tls.do_handshake()
            subject = dict(x[0] for x in tls.getpeercert()["subject"])
            cn = subject.get("commonName", "")
            tls.sendall(b"hello " + cn.encode() + b"\n")
            print("ok", cn, tls.version(), flush=True)
        except (ssl.SSLError, OSError) as e:
            print("refused", e, flush=True)
        finally:
            tls.close()


class Server:
    """An xpra-like TLS server in a child process, optionally in a private mount
    namespace where `system_store` is bind-mounted over the system trust store."""

    def __init__(self, cert, key, ca_certs, env=None, system_store=None, python=sys.executable):
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("SSL_CERT_")}
        child_env.update(env or {})
        cmd = [python, os.path.abspath(__file__), "--serve", cert, key, ca_certs]
        if system_store:
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount --bind "$0" ' + SYSTEM_CERT_DIR + ' && exec "$@"', system_store] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=child_env, text=True)
        self.port = int(self._line())

    def _line(self, timeout=15):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError("server said nothing within %ss" % timeout)
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError("server exited (status %s)" % self.proc.wait())
        return line.strip()

    def result(self):
        return self._line()

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- certificates through pukaipu-certtool -------------------------------------

def certtool(*args):
    r = subprocess.run([CERTTOOL, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("pukaipu-certtool %s: %s" % (" ".join(args), r.stderr.strip()))
    return r.stdout


def subject_hash(cert):
    m = re.search(r"^subject_hash=([0-9a-f]{8})$", certtool("inspect", cert), re.M)
    return m.group(1)


class Pki:
    """Host CA + server certificates; per-instance client CAs + client certificates."""

    def __init__(self, root):
        self.root = root
        self.host_ca = self._ca("host-ca", "pukaipu host CA")
        self.passphrases = {}

    def _dir(self, name):
        d = os.path.join(self.root, name)
        os.makedirs(d, exist_ok=True)
        return d

    def _ca(self, name, cn):
        d = self._dir(name)
        certtool("ca", d, "--cn", cn)
        return d

    def server(self, fqdn):
        d = self._dir("server-" + fqdn)
        certtool("server", self.host_ca, fqdn, d)
        # As `pukaipu create` writes it: the full chain, leaf first.
        with open(os.path.join(d, "fullchain.crt"), "w") as out:
            for f in (os.path.join(d, "server.crt"), os.path.join(self.host_ca, "ca.crt")):
                with open(f) as i:
                    out.write(i.read())
        return os.path.join(d, "fullchain.crt"), os.path.join(d, "server.key")

    def instance(self, user, generation=1):
        """A client CA for `user` and its client certificate; a new generation = `cert renew`."""
        tag = "%s-%d" % (user, generation)
        ca = self._ca("client-ca-" + tag, "pukaipu client CA for " + user)
        d = self._dir("client-" + tag)
        self.passphrases[tag] = certtool("client", ca, user, d).strip()
        return Client(os.path.join(ca, "ca.crt"), os.path.join(d, "client.crt"), os.path.join(d, "client.key"),
                      os.path.join(d, "client.p12"), self.passphrases[tag])


class Client:
    def __init__(self, ca, cert, key, p12, passphrase):
        self.ca, self.cert, self.key, self.p12, self.passphrase = ca, cert, key, p12, passphrase


def connect(port, host_ca, server_name, client=None, tls_max=None, weak=False):
    """('accepted', greeting) or ('refused', reason), as the client sees it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.load_verify_locations(cafile=host_ca)  # the server is checked too, with its name
    if client:
        ctx.load_cert_chain(client.cert, client.key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1 and TLSv1_1: the point
        if weak:  # to offer TLS 1.0/1.1 at all, OpenSSL 3 needs security level 0
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        if tls_max:
            ctx.maximum_version = tls_max
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
                # TLS 1.3: the client's handshake ends before the server has
                # judged the client certificate; its verdict arrives as data or alert.
                data = tls.recv(100)
                if data.startswith(b"hello "):
                    return "accepted", data.decode().strip()
                return "refused", "connection closed"
        except (ssl.SSLError, OSError) as e:
            return "refused", str(e)


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="pukaipu-tls-")
        pki = Pki(cls.tmp)
        cls.pki = pki
        cls.host_ca = os.path.join(pki.host_ca, "ca.crt")
        cls.john_server = pki.server("john.test")
        cls.alice_server = pki.server("alice.test")
        cls.john = pki.instance("john")
        cls.alice = pki.instance("alice")
        cls.john_renewed = pki.instance("john", generation=2)
        # A CA that some system trust store holds, and a client certificate it signed.
        rogue_ca = pki._ca("rogue-ca", "Rogue Public Root")
        rogue_dir = pki._dir("client-rogue")
        certtool("client", rogue_ca, "john", rogue_dir)
        cls.rogue = Client(os.path.join(rogue_ca, "ca.crt"), os.path.join(rogue_dir, "client.crt"),
                           os.path.join(rogue_dir, "client.key"), None, None)
        # That store, laid out as Debian's: a bundle file and a hashed directory.
        cls.store = pki._dir("system-store")
        shutil.copy(cls.rogue.ca, os.path.join(cls.store, "ca-certificates.crt"))
        shutil.copy(cls.rogue.ca, os.path.join(cls.store, "rogue.pem"))
        os.symlink("rogue.pem", os.path.join(cls.store, subject_hash(cls.rogue.ca) + ".0"))
        cls.empty_dir = pki._dir("empty")
        cls.can_mount = os.geteuid() == 0 and os.path.isdir(SYSTEM_CERT_DIR) and shutil.which("unshare") and subprocess.run(
            ["unshare", "--mount", "true"], capture_output=True).returncode == 0

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def server(self, which, client_ca, env=None, system_store=None, python=sys.executable):
        cert, key = self.john_server if which == "john" else self.alice_server
        return Server(cert, key, client_ca, env=env, system_store=system_store, python=python)

    def expect(self, srv, server_name, client, accepted, **kw):
        verdict, detail = connect(srv.port, self.host_ca, server_name, client, **kw)
        seen = srv.result()
        if accepted:
            self.assertEqual(verdict, "accepted", detail)
            self.assertTrue(seen.startswith("ok "), seen)
        else:
            self.assertEqual(verdict, "refused", detail)
            self.assertTrue(seen.startswith("refused "), seen)
        return seen

    # --- which certificate opens which instance ---

    def test_john_accepted_by_john(self):
        with self.server("john", self.john.ca) as srv:
            seen = self.expect(srv, "john.test", self.john, True)
            self.assertRegex(seen, r"^ok john TLSv1\.3$")

    def test_john_refused_by_alice(self):
        with self.server("alice", self.alice.ca) as srv:
            seen = self.expect(srv, "alice.test", self.john, False)
            self.assertIn("certificate verify failed", seen)
            self.expect(srv, "alice.test", self.alice, True)  # control: alice's own works

    def test_no_certificate_refused(self):
        with self.server("john", self.john.ca) as srv:
            seen = self.expect(srv, "john.test", None, False)
            self.assertIn("PEER_DID_NOT_RETURN_A_CERTIFICATE", seen)

    def test_pre_renewal_certificate_refused(self):
        with self.server("john", self.john_renewed.ca) as srv:
            seen = self.expect(srv, "john.test", self.john, False)
            self.assertIn("certificate verify failed", seen)
            self.expect(srv, "john.test", self.john_renewed, True)

    def test_server_certificate_names_the_instance(self):
        # The client checks the server with the host CA and the name: john's
        # server certificate does not pass for alice's.
        with self.server("john", self.john.ca) as srv:
            verdict, detail = connect(srv.port, self.host_ca, "alice.test", self.john)
            self.assertEqual(verdict, "refused")
            self.assertIn("Hostname mismatch", detail)

    # --- protocol versions ---

    def test_tls_below_1_2_refused(self):
        # Upstream Python (3.10+) sets TLS 1.2 as the minimum itself; Debian's
        # python3 (xpra's, in the rootfs) leaves it to OpenSSL, whose security
        # level >= 1 allows no TLS 1.0/1.1 handshake (SHA-1/MD5 signatures).
        # Both must refuse, on the server side.
        pythons = [sys.executable]
        debian = "/usr/bin/python3"
        if os.path.exists(debian) and os.path.realpath(debian) != os.path.realpath(sys.executable):
            pythons.append(debian)
        for python in pythons:
            with self.server("john", self.john.ca, python=python) as srv:
                for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
                    with self.subTest(python=python, version=version):
                        seen = self.expect(srv, "john.test", self.john, False, tls_max=version, weak=True)
                        self.assertRegex(seen, r"UNSUPPORTED_PROTOCOL|NO_SUITABLE_SIGNATURE_ALGORITHM")
                        print("note: %s server refused %s: %s" % (python, version.name, seen), file=sys.stderr)
                seen = self.expect(srv, "john.test", self.john, True, tls_max=ssl.TLSVersion.TLSv1_2)
                self.assertRegex(seen, r"^ok john TLSv1\.2$")

    # --- the system trust store ---

    def rogue_store(self):
        """(system_store, env) that put the rogue CA where xpra's load_default_certs() looks."""
        if self.can_mount:
            return self.store, {}
        print("note: not root, so SSL_CERT_FILE/SSL_CERT_DIR stand in for the system store", file=sys.stderr)
        return None, {"SSL_CERT_FILE": os.path.join(self.store, "ca-certificates.crt"), "SSL_CERT_DIR": self.store}

    def test_system_store_is_trusted_without_the_env(self):
        store, env = self.rogue_store()
        with self.server("john", self.john.ca, env=env, system_store=store) as srv:
            self.expect(srv, "john.test", self.rogue, True)  # the danger is real: the env is necessary
            self.expect(srv, "john.test", self.john, True)

    def test_instance_env_refuses_the_system_store(self):
        store, _ = self.rogue_store()
        for cert_dir in (self.empty_dir, os.path.join(self.tmp, "does-not-exist")):
            env = {"SSL_CERT_FILE": self.john.ca, "SSL_CERT_DIR": cert_dir}
            with self.subTest(SSL_CERT_DIR=cert_dir), \
                    self.server("john", self.john.ca, env=env, system_store=store) as srv:
                seen = self.expect(srv, "john.test", self.rogue, False)
                self.assertIn("certificate verify failed", seen)
                self.expect(srv, "john.test", self.john, True)
                self.expect(srv, "john.test", self.alice, False)

    def test_each_variable_is_needed(self):
        if not self.can_mount:
            self.skipTest("needs root and unshare to place a CA in the real default paths")
        # Only the file redirected: the default directory still vouches for the rogue CA.
        with self.server("john", self.john.ca, env={"SSL_CERT_FILE": self.john.ca}, system_store=self.store) as srv:
            self.expect(srv, "john.test", self.rogue, True)
        # Only the directory redirected: the default bundle file still holds it.
        with self.server("john", self.john.ca, env={"SSL_CERT_DIR": self.empty_dir}, system_store=self.store) as srv:
            self.expect(srv, "john.test", self.rogue, True)

    # --- what the admin hands to the user ---

    def test_p12_and_passphrase(self):
        self.assertRegex(self.john.passphrase, r"^[0-9a-hjkmnp-tv-z]{5}(-[0-9a-hjkmnp-tv-z]{5}){3}$")
        self.assertNotEqual(self.john.passphrase, self.john_renewed.passphrase)
        for f in (self.john.p12, self.john.key):
            st = os.stat(f)
            self.assertEqual(st.st_mode & 0o777, 0o600, f)
        try:
            from cryptography.hazmat.primitives.serialization import pkcs12
        except ImportError:
            print("note: python3-cryptography missing; the p12 is checked by the unit tests only", file=sys.stderr)
            return
        with open(self.john.p12, "rb") as f:
            data = f.read()
        key, cert, extra = pkcs12.load_key_and_certificates(data, self.john.passphrase.encode())
        self.assertIsNotNone(key)
        self.assertIn("CN=john", cert.subject.rfc4514_string())
        self.assertEqual(len(extra), 1)
        with self.assertRaises(ValueError):
            pkcs12.load_key_and_certificates(data, b"wrong-passphrase")


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(*sys.argv[2:])
        return 0
    if not CERTTOOL or not os.access(CERTTOOL, os.X_OK):
        print("SKIP: pukaipu-certtool not found (set PUKAIPU_CERTTOOL or build it: meson compile certs/pukaipu-certtool)")
        return 77
    result = unittest.main(exit=False, verbosity=2).result
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
