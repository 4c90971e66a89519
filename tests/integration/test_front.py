"""The front door: `pukaipu front reload|status|sni-map` on instances made by
`pukaipu create`, in a private /etc and /home (Sysroot). Checks the files it
writes (serials as openssl prints them, Origins with the port, PEMs 0640
root:haproxy), that HAProxy starts and reloads, and bad input: a
configuration `haproxy -c` refuses keeps the old files and the running
HAProxy, with one line on stderr. Needs root and haproxy (skips without)."""
import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import unittest

import harness as h
from sysroot import Sysroot

TOOL = os.environ.get("PUKAIPU_TOOL", "")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest(root):
    d = hashlib.sha256()
    for name in sorted(os.listdir(root)):
        p = os.path.join(root, name)
        st = os.lstat(p)
        d.update(f"{name}:{st.st_mode:o}:{st.st_uid}:{st.st_gid}\n".encode())
        if stat.S_ISREG(st.st_mode):
            with open(p, "rb") as f:
                d.update(f.read())
    return d.hexdigest()


class Front(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Sysroot("front")
        cls.front = os.path.join(cls.s.root, "front")
        cls.port = free_port()
        cfg = {"uidRange": [3300, 3399], "portRange": [25500, 25599], "listenAddress": "127.0.0.1",
               "frontPort": cls.port, "domain": "front.test", "extraDomains": ["example.test"], "apparmor": {"policy": "optional"}}
        with open(cls.s.config, "w") as f:
            json.dump(cfg, f)
        for args in (["create", "fa"], ["create", "fb", "--fqdn", "Desk.Example.Test"]):
            r = cls.run_tool(*args)
            assert r.returncode == 0, r.stderr
        r = cls.run_tool("front", "reload")
        assert r.returncode == 0, r.stderr
        cls.reload_out = r.stdout

    @classmethod
    def run_tool(cls, *args):
        return cls.s.run([TOOL, *args], env={"PUKAIPU_FRONT_DIR": cls.front,
                                             "PUKAIPU_SYSTEMD_DIR": os.path.join(cls.s.root, "systemd")})

    @classmethod
    def master(cls):
        try:
            with open(os.path.join(cls.s.run_dir, "front.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    @classmethod
    def tearDownClass(cls):
        h.stop_haproxy(cls.s.run_dir)
        cls.s.cleanup()

    def read(self, name):
        with open(os.path.join(self.front, name)) as f:
            return f.read()

    def certs(self, user):
        return os.path.join(self.s.state, "instances", user, "certs")

    def test_files(self):
        self.assertIn("started haproxy", self.reload_out)
        serial = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in",
                                 os.path.join(self.certs("fa"), "client.crt")],
                                capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
        self.assertIn(f"fa.front.test {serial}\n", self.read("serials.map"))
        self.assertIn(f"fa.front.test https://fa.front.test:{self.port}\n", self.read("origins.map"))
        self.assertIn("desk.example.test fb\n", self.read("backends.map"))
        crt_list = self.read("crt-list").splitlines()
        self.assertIn("default.pem [ca-file", crt_list[0])
        self.assertTrue(any(line.endswith("verify required] fa.front.test") for line in crt_list), crt_list)
        cfg = self.read("haproxy.cfg")
        self.assertIn(f"bind 127.0.0.1:{self.port} ssl crt-list {self.front}/crt-list", cfg)
        self.assertIn(f"server s unix@{self.s.run_dir}/fa/desktop.sock", cfg)
        gid = self.s.group_id("haproxy")
        st = os.stat(os.path.join(self.front, "fa.pem"))
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o777), (0, gid, 0o640))

    def test_status_and_sni_map(self):
        r = self.run_tool("front", "status")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("haproxy: running", r.stdout)
        r = self.run_tool("front", "sni-map")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, f"fa.front.test 127.0.0.1:{self.port}\ndesk.example.test 127.0.0.1:{self.port}\n")

    def test_serves_tls(self):
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.port}", "-servername",
                            "fa.front.test", "-CAfile", os.path.join(self.s.config_dir, "ca", "ca.crt")],
                           input="", capture_output=True, text=True, timeout=20)
        self.assertIn("CN = fa.front.test", r.stdout)
        self.assertIn("Acceptable client certificate CA names", r.stdout)

    def test_haproxy_refuses_keeps_old(self):
        before, pid = digest(self.front), self.master()
        key = os.path.join(self.certs("fb"), "server.key")
        with open(key) as f:
            saved = f.read()
        try:
            with open(key, "w") as f:
                f.write("not a key\n")
            r = self.run_tool("front", "reload")
        finally:
            with open(key, "w") as f:
                f.write(saved)
        self.assertEqual(r.returncode, 1)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("haproxy -c refused the new configuration, the old one stays", lines[0])
        self.assertIn(f"{self.front}/fb.pem", lines[0])
        self.assertEqual(digest(self.front), before)
        self.assertFalse(os.path.exists(os.path.join(self.front, ".new")))
        self.assertEqual(self.master(), pid)

    def test_bad_front_port(self):
        bad = os.path.join(self.s.root, "bad.json")
        with open(bad, "w") as f:
            json.dump({"frontPort": 70000}, f)
        r = self.s.run([TOOL, "--config", bad, "front", "reload"], env={"PUKAIPU_FRONT_DIR": self.front})
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("frontPort", r.stderr)

    def test_zz_remove_refreshes(self):
        r = self.run_tool("create", "fc")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("fc.front.test", self.read("backends.map"))
        r = self.run_tool("remove", "fc")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("fc.front.test", self.read("backends.map"))
        self.assertFalse(os.path.exists(os.path.join(self.front, "fc.pem")))


if __name__ == "__main__":
    if not shutil.which("haproxy"):
        print("SKIP: no haproxy (apt-get install haproxy)")
        raise SystemExit(77)
    h.main()
