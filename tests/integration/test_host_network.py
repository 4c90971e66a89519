"""Egress's changes to the host: the host table inet pukaipu, ip_forward, and
their undoing when the last instance is removed.

Everything runs in a network namespace of its own, HOST, standing in for the
host (its own nftables ruleset and its own net.ipv4.* sysctls), so the test
sets ip_forward to 0 there without touching this machine's:

  [pkh-wan]  198.51.100.10 HTTP (the internet)       ── pkhw 203.0.113.1/30 ── ┐
  [pkh-lan]  192.168.77.2 HTTP (a LAN host)          ── pkhl 192.168.77.1/24 ──┤
  [pkh-vpn]  10.77.0.2 HTTP (a VPN peer),            ── pkhv 10.77.0.1/24  ────┤ [pkh-host]
             10.77.0.53 DNS :53 (the resolver) + HTTP                          │   nat: local :8080 → 192.0.2.2:8080
  [pkh-svc]  192.0.2.2:8080 HTTP (a DNAT'd service)  ── pkhs 192.0.2.1/24 ─────┘        local :8081 → 192.168.77.2:80
                                                                                    198.51.100.80:80 → 192.168.77.2:80 (a ClusterIP)

The host forwards for the LAN, the VPN and the service (their interfaces'
forwarding is 1) and not for the internet side (pkhw's is 0; ip_forward 0).
Every "blocked" is a real connection: without the prerouting rule dnat_wan is
reached, without the forward chain's private drop dnat_clusterip is, and
without the forwarding_before rules the internet side reaches the LAN
(checked by reverting each rule once).
"""
import os
import shutil
import subprocess
import sys
import time
import unittest

import harness as h
from sysroot import Sysroot
import test_instances as ti
import test_network as tn

HOST, WAN, LAN, VPN, SVC, FAKE = "pkh-host", "pkh-wan", "pkh-lan", "pkh-vpn", "pkh-svc", "pkh-fake"
TOOL = os.environ.get("PUKAIPU_TOOL", "")
UPSTREAM, LANHOST, VPNPEER, RESOLVER, SERVICE = "198.51.100.10", "192.168.77.2", "10.77.0.2", "10.77.0.53", "192.0.2.2"
HOSTWAN = "203.0.113.1"
DNAT = """table ip hostnat {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local tcp dport 8080 dnat to 192.0.2.2:8080
    fib daddr type local tcp dport 8081 dnat to 192.168.77.2:80
    ip daddr 198.51.100.80 tcp dport 80 dnat to 192.168.77.2:80
  }
}
"""

# In the instance: DNS, the internet, then every destination that must stay
# out of reach, each a real connection attempt.
CHECK = r'''
chk() { if timeout 3 wget -q -O /tmp/out "$2" 2>/dev/null && grep -q pktest-ok /tmp/out; then echo "$1=reached"; else echo "$1=blocked"; fi; }
if nslookup up.pukaipu.test 2>/dev/null | grep -q 198.51.100.10; then echo dns=ok; else echo dns=fail; fi
chk upstream http://198.51.100.10/
chk lan http://192.168.77.2/
chk vpn http://10.77.0.2/
chk resolver_http http://10.77.0.53/
chk dnat_wan http://203.0.113.1:8080/
chk dnat_lan http://192.168.77.1:8081/
chk dnat_private http://203.0.113.1:8081/
chk dnat_clusterip http://198.51.100.80/
echo checks=done
'''


def sh(*args, ns=None, check=True):
    return tn.sh(*args, ns=ns, check=check)


def sysctl(name, value=None):
    path = "/proc/sys/net/ipv4/" + name
    if value is None:
        return sh("cat", path, ns=HOST).strip()
    sh("sh", "-c", f"echo {value} > {path}", ns=HOST)


def reach(ns, url):
    """A real HTTP GET from netns `ns`: True when the test server answered."""
    r = subprocess.run(["ip", "netns", "exec", ns, "timeout", "3", sys.executable, "-c",
                        "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())",
                        url], capture_output=True, text=True)
    return "pktest-ok" in r.stdout


class Topology(tn.Topology):
    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
        self.procs = []
        for ns in (HOST, WAN, LAN, VPN, SVC, FAKE):
            sh("ip", "netns", "del", ns, check=False)

    def serve_in(self, ns, mode, addr, port, tag):
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", tn.SERVER, mode, addr, str(port), tag],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"server {mode} {addr}:{port}: {p.stderr.read()}")

    def wire(self, ns, name, host_addr, ns_addr, prefix, routes):
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", ns, ns=HOST)
        sh("ip", "link", "set", name, "addrgenmode", "none", ns=HOST)
        sh("ip", "addr", "add", f"{host_addr}/{prefix}", "dev", name, ns=HOST)
        sh("ip", "link", "set", name, "up", ns=HOST)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "addr", "add", f"{ns_addr}/{prefix}", "dev", "eth0", ns=ns)
        sh("ip", "link", "set", "eth0", "up", ns=ns)
        for dst in routes:
            sh("ip", "route", "add", dst, "via", host_addr, ns=ns)

    def build(self):
        self.cleanup()
        sh("ip", "netns", "add", HOST)
        sh("ip", "link", "set", "lo", "up", ns=HOST)
        # The host's own forwarding policy, before pukaipu: not a router in
        # general (ip_forward 0), but for the LAN, the VPN and the service.
        sysctl("ip_forward", 0)
        sysctl("conf/default/forwarding", 0)
        self.wire(WAN, "pkhw", HOSTWAN, "203.0.113.2", 30, ["192.168.77.0/24"])
        self.wire(LAN, "pkhl", "192.168.77.1", LANHOST, 24, ["10.77.0.0/24", "192.0.2.0/24", "203.0.113.0/30"])
        self.wire(VPN, "pkhv", "10.77.0.1", VPNPEER, 24, ["192.168.77.0/24"])
        self.wire(SVC, "pkhs", "192.0.2.1", SERVICE, 24, ["192.168.77.0/24"])
        for link in ("pkhl", "pkhv", "pkhs"):
            sysctl(f"conf/{link}/forwarding", 1)
        sh("ip", "route", "add", "default", "via", "203.0.113.2", ns=HOST)
        for a in (UPSTREAM,):
            sh("ip", "addr", "add", a + "/32", "dev", "lo", ns=WAN)
        sh("ip", "addr", "add", RESOLVER + "/32", "dev", "lo", ns=VPN)
        subprocess.run(["ip", "netns", "exec", HOST, "nft", "-f", "-"], input=DNAT, text=True, check=True)
        self.serve_in(WAN, "http", UPSTREAM, 80, "upstream")
        self.serve_in(LAN, "http", LANHOST, 80, "lan")
        self.serve_in(VPN, "http", VPNPEER, 80, "vpn")
        self.serve_in(VPN, "http", RESOLVER, 80, "resolver-http")
        self.serve_in(VPN, "dns", RESOLVER, 53, "dns")
        self.serve_in(SVC, "http", SERVICE, 8080, "service")


TOPO = Topology()


class InHost(Sysroot):
    """A Sysroot whose commands run in the HOST netns."""

    def wrap(self, argv):
        return ["ip", "netns", "exec", HOST] + super().wrap(argv)


def host_tables():
    return sh("nft", "list", "tables", ns=HOST)


class HostNetwork(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        tn.ROOTFS = tn.net_rootfs()
        cls.s = ti.instance_sysroot("host-network", 3600, 25300, ["/bin/sh", "-c", CHECK + "exec sleep 120"],
                                    ["/bin/sh", "-c", "echo shell-up"], sysroot=InHost, rootfs=tn.ROOTFS,
                                    network={"mode": "egress", "dns": [RESOLVER]},
                                    # `ip netns exec` mounts a sysfs of its own: no
                                    # /sys/fs/cgroup in there, so no limits can be
                                    # enforced (test_limits checks them).
                                    memoryMax="infinity", tasksMax=0)
        try:
            TOPO.build()
        except Exception:
            TOPO.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        TOPO.cleanup()
        cls.s.cleanup()

    def forwarding_as_before(self, when):
        """The host's own forwarding: LAN <-> VPN and LAN -> DNAT'd service
        work, the internet side reaches nothing behind the host."""
        self.assertTrue(reach(LAN, f"http://{VPNPEER}/"), f"{when}: LAN -> VPN")
        self.assertTrue(reach(VPN, f"http://{LANHOST}/"), f"{when}: VPN -> LAN")
        self.assertTrue(reach(LAN, "http://192.168.77.1:8080/"), f"{when}: LAN -> the DNAT'd service")
        self.assertFalse(reach(WAN, f"http://{LANHOST}/"), f"{when}: the internet side -> LAN")

    def fake_container_without_its_own_table(self):
        """The host's rules alone, as if a container's own table were gone:
        a netns on a link pk-900 with a pool address and no nftables."""
        try:
            sh("ip", "netns", "add", FAKE)
            sh("ip", "link", "add", "pk-900", "type", "veth", "peer", "name", "eth0", "netns", FAKE, ns=HOST)
            sh("ip", "addr", "add", "10.233.7.8/31", "dev", "pk-900", ns=HOST)
            sh("ip", "link", "set", "pk-900", "up", ns=HOST)
            sh("ip", "link", "set", "lo", "up", ns=FAKE)
            sh("ip", "addr", "add", "10.233.7.9/31", "dev", "eth0", ns=FAKE)
            sh("ip", "link", "set", "eth0", "up", ns=FAKE)
            sh("ip", "route", "add", "default", "via", "10.233.7.8", ns=FAKE)
            self.assertTrue(reach(FAKE, f"http://{UPSTREAM}/"), "control: the fake container has egress")
            for what, url in (("LAN", f"http://{LANHOST}/"), ("VPN", f"http://{VPNPEER}/"),
                              ("resolver", f"http://{RESOLVER}/"), ("host", f"http://{HOSTWAN}:8080/"),
                              ("DNAT to the LAN", "http://198.51.100.80/")):
                self.assertFalse(reach(FAKE, url), f"a pk-* link without its own table reached the {what}")
        finally:
            sh("ip", "link", "del", "pk-900", ns=HOST, check=False)
            sh("ip", "netns", "del", FAKE, check=False)

    def sysctls(self):
        return {k: sysctl(k) for k in ("ip_forward", "conf/default/forwarding", "conf/pkhw/forwarding",
                                       "conf/pkhl/forwarding", "conf/pkhv/forwarding", "conf/pkhs/forwarding")}

    def test_instance_reaches_nothing_behind_the_host_and_remove_undoes(self):
        before = self.sysctls()
        self.assertEqual(before["ip_forward"], "0")
        self.assertNotIn("pukaipu", host_tables())
        self.forwarding_as_before("no instance yet")

        r = self.s.run([TOOL, "create", "hn", "--fqdn", "hn.example.test"])
        self.assertEqual(r.returncode, 0, r.stderr)
        p = self.s.popen([h.RUN, "hn"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
        out = []
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                line = p.stderr.readline()
                if not line:
                    break
                out.append(line)
                if "checks=done" in line:
                    break
            text = "".join(out)
            kv = h.keyvals(text)
            self.assertEqual(kv.get("checks"), "done", text)
            self.assertEqual(kv["dns"], "ok", text)
            self.assertEqual(kv["upstream"], "reached", text)  # egress works
            for k in ("lan", "vpn", "resolver_http", "dnat_wan", "dnat_lan", "dnat_private", "dnat_clusterip"):
                self.assertEqual(kv[k], "blocked", f"{k}: {text}")
            # While the instance runs: ip_forward is on, the host's policy is not.
            self.assertEqual(sysctl("ip_forward"), "1")
            self.forwarding_as_before("instance running")
            table = sh("nft", "list", "table", "inet", "pukaipu", ns=HOST)
            self.assertIn("net.ipv4.ip_forward was 0", table)
            self.assertIn("jump link-", table)
            self.fake_container_without_its_own_table()
        finally:
            h.stop(p, timeout=30)
            p.stderr.close()
        # An idle stop keeps the table (and its link chain goes).
        self.assertTrue(h.wait_for(lambda: not tn.pk_links_in(HOST), timeout=30))
        table = sh("nft", "list", "table", "inet", "pukaipu", ns=HOST)
        self.assertNotIn("jump link-", table)
        self.forwarding_as_before("instance stopped")
        # A second start finds ip_forward on and keeps the first record.
        r = self.s.run([h.RUN, "hn", "--shell"], timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sh("nft", "list", "table", "inet", "pukaipu", ns=HOST), table)

        r = self.s.run([TOOL, "remove", "hn"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("removed the host table inet pukaipu", r.stdout)
        self.assertNotIn("pukaipu", host_tables())
        self.assertEqual(self.sysctls(), before)
        self.forwarding_as_before("last instance removed")


if __name__ == "__main__":
    h.skip_unless_possible()
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            print(f"SKIP: '{tool}' is not installed (run .ci/install-deps)")
            sys.exit(77)
    h.main()
