"""End to end (issue 8): a real pukaipu instance behind the front door, seen
through real clients.

`pukaipu create` makes two instances, alice and bob (alice.localhost,
bob.localhost), in a private copy of /etc and /home; `pukaipu-run alice` runs
alice's desktop from the real rootfs (rootfs-builder's default: Xpra + Qtile +
Chromium) with network mode `none` and the browser's background networking
off. xpra serves plain HTTP/WebSocket on RUN_DIR/alice/desktop.sock; the front
door, HAProxy on 127.0.0.1 as `pukaipu front reload` configures and starts it
(e2e_harness.FrontDoor), terminates TLS with each
instance's certificate and client CA and forwards to that socket. Then, from
the host, through the front door:

- Debian 12's xpra client takes a screenshot (wss://) with alice's client
  certificate (extracted from client.p12 with the printed passphrase);
- headless Chromium opens the HTML5 client with client.p12 in its NSS database
  and the AutoSelectCertificateForUrls policy, and a DevTools screenshot must
  show Qtile's bar and a browser window;
- refused: bob's certificate, no certificate, a certificate from a CA in the
  rootfs's system trust store (it plays no part: TLS ends outside), plaintext
  HTTP, TLS 1.0 and 1.1, a Host that is not the TLS server name (421), an
  Origin that is not alice's page (403);
- persistence: the browser's profile lands in /home/alice on the host, owned by
  alice, and the browser of the next start of the instance reuses it.

Screenshots go to TMP/e2e-artifacts (docs/desktop.png is one of them; the
log says where TMP is: /var/cache/pukaipu-tests/tmp/<hash of the build dir>).
Needs root, xpra, chromium, haproxy, certutil/pk12util (libnss3-tools) and
python3-pil (.ci/install-deps installs them), and the rootfs (cached in
/var/cache/pukaipu-tests/rootfs, built by rootfs-builder when missing).
Run alone: meson test -C build --suite e2e -v
"""
import grp
import json
import os
import shutil
import socket
import ssl
import sys
import time
import unittest
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("PUKAIPU_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
import e2e_harness as e  # noqa: E402
import harness as h  # noqa: E402

HOST = ALICE = BOB = INST = FRONT = None
ROGUE = None   # (ca, crt, key)
ART = os.path.join(e.TMP, "e2e-artifacts")
VIEWPORT = (1280, 800)  # the headless client's window; the desktop follows it


def missing_tools():
    out = []
    for tool in ("xpra", "chromium", "haproxy", "certutil", "pk12util", "openssl", "setpriv", "unshare"):
        if not shutil.which(tool):
            out.append(tool)
    if not os.access(e.CHROMIUM, os.X_OK):
        out.append(e.CHROMIUM)
    try:
        import PIL  # noqa: F401 (the pixel checks)
    except ImportError:
        out.append(f"python3-pil (for {sys.executable})")
    return out


def setUpModule():
    try:
        start_alice()
    except BaseException:
        tearDownModule()  # unittest skips it when setUpModule fails
        raise


def start_alice():
    global HOST, ALICE, BOB, INST, ROGUE, FRONT
    h.ensure_tmp()
    shutil.rmtree(ART, ignore_errors=True)
    os.makedirs(ART, mode=0o755)
    e.log(f"screenshots go to {ART}")
    rootfs = e.desktop_harness.ensure_rootfs("default")
    ROGUE = e.make_rogue_pki(os.path.join(e.TMP, "e2e-rogue"))
    layer = e.trust_store_layer(rootfs, ROGUE[0], os.path.join(e.TMP, "e2e-trust-layer"))
    HOST = e.E2eHost("e2e", rootfs, extra_layer=layer)
    ALICE = HOST.create("alice")
    BOB = HOST.create("bob")
    for who in (ALICE, BOB):
        who["crt"], who["key"] = e.p12_to_pem(who["p12"], who["passphrase"], HOST.root, who["user"])
    FRONT = e.FrontDoor(HOST, [ALICE, BOB], HOST.free_port())
    INST = e.Instance(HOST, "alice", ALICE["port"])
    ready = wait_alice(INST)
    if ready is None:
        raise RuntimeError(f"alice's desktop never served its page; log:\n{INST.log_tail(40)}\n"
                           f"front door:\n{FRONT.log_tail(10)}")
    print(f"MEASURE alice: HTML5 page served through the front door {ready:.2f} s after pukaipu-run started",
          flush=True)


def wait_alice(inst):
    return e.wait_https_200(FRONT.port, ctx(ALICE), inst.t0, time.monotonic() + 90, inst.alive, host=ALICE["name"])


def tearDownModule():
    global INST, HOST, FRONT
    if INST:
        INST.stop()
        INST = None
    if FRONT:
        FRONT.stop()
        shutil.copy(FRONT.log_path, os.path.join(ART, "haproxy.log"))  # one line per request
        FRONT = None
    if HOST:
        HOST.cleanup()
        HOST = None


def ctx(who=None):
    if who is None:
        return e.client_ctx(HOST.host_ca)
    return e.client_ctx(HOST.host_ca, who["crt"], who["key"])


def xpra_frame(name, who, port=None, tries=5):
    """`xpra screenshot` with who's certificate; returns (path, seen, last
    CompletedProcess). Only meaningful while a display client is attached:
    without one, xpra 3.1 keeps answering with the frame it captured first
    (seen here: a blank screen for a whole minute after the desktop was up)."""
    path = os.path.join(ART, name)
    seen, r = None, None
    for _ in range(tries):
        r = e.xpra_screenshot(path, port or FRONT.port, who["crt"], who["key"], HOST.host_ca, hostname=ALICE["name"])
        if r.returncode == 0 and os.path.exists(path):
            im = e.load_png(path)
            seen = e.desktop_seen(im, screen=im.size)
            seen["size"] = im.size
            if e.looks_like_desktop(seen):
                break
        time.sleep(1)
    return path, seen, r


def both_clients(tag):
    """Headless Chromium opens the HTML5 client with alice's client.p12 and
    waits (DevTools screenshots, once a second, up to 30 s, then after one
    reload up to 60 s) until the page shows the desktop; then, while that
    display client is attached, the host's xpra client takes its
    screenshot. Returns what both saw."""
    out = {"html5": None, "html5_path": os.path.join(ART, f"html5-client{tag}.png"), "title": None,
           "peers": set(), "drawn_s": None, "settled_s": None, "xpra": (None, None, None), "log": ""}
    origin = f"https://{ALICE['name']}:{FRONT.port}"
    c = e.Chromium("alice" + tag, origin, ALICE["p12"], ALICE["passphrase"], HOST.host_ca, size=VIEWPORT,
                   names=[ALICE["name"]])
    try:
        c.open("about:blank")
        c.set_viewport(VIEWPORT)
        out.update(c.show_desktop(origin + "/", out["html5_path"], timeout=30))
        for why in out["reloaded"]:
            # The client browser failed the page's scripts with
            # net::ERR_NETWORK_CHANGED (see Chromium.show_desktop): its menu
            # was there, its client was not. show_desktop navigated again.
            print(f"NOTE: the HTML5 client's page was reloaded: {why}", flush=True)
        if out["drawn_s"] is None:
            # No known cause left (the ERR_NETWORK_CHANGED page is reloaded
            # above): say so, keep the frame, and connect once more.
            print(f"NOTE: the HTML5 client showed no desktop in 30 s ({out['seen']}); reloading once", flush=True)
            shutil.copy(out["html5_path"], out["html5_path"].replace(".png", "-no-desktop.png"))
            out.update(c.show_desktop(origin + "/", out["html5_path"], timeout=60))
        out["html5"] = out.pop("seen")
        out["title"] = c.evaluate("document.title")
        out["xpra"] = xpra_frame(f"xpra-client{tag}.png", ALICE)
        out["peers"] = e.peers_of(e.process_tree(c.proc.pid))
    finally:
        c.close()
        out["log"] = c.log_tail()
    print(f"html5 client{tag}: {out['html5_path']} {out['html5']}, drawn after {out['drawn_s']} s, "
          f"settled after {out['settled_s']} s; xpra client{tag}: {out['xpra'][0]} {out['xpra'][1]}", flush=True)
    return out


class Test1Clients(unittest.TestCase):
    """The two real clients on the host see the desktop."""

    @classmethod
    def setUpClass(cls):
        # A screenshot by the xpra client before any display client came:
        # shows what "stale frame" means (not asserted).
        early = xpra_frame("xpra-client-no-display-client.png", ALICE, tries=1)
        print(f"xpra client, no display client attached yet: {early[1]}", flush=True)
        cls.seen = both_clients("")

    def test_1_html5_client_in_chromium(self):
        s = self.seen
        self.assertIsNotNone(s["html5"], s["log"])
        self.assertTrue(e.looks_like_desktop(s["html5"]),
                        f"{s['html5_path']}: the page does not show Qtile's bar and a browser window: {s['html5']}")
        self.assertIn("xpra", (s["title"] or "").lower())
        self.assertIsNotNone(s["settled_s"], "the desktop kept changing for 60 s")

    def test_2_xpra_client_screenshot(self):
        path, seen, r = self.seen["xpra"]
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIsNotNone(seen, "no screenshot")
        self.assertEqual(seen["size"], VIEWPORT, "the frame is not the desktop the HTML5 client sized")
        self.assertTrue(e.looks_like_desktop(seen), f"{path}: not a desktop frame: {seen}")

    def test_3_client_browser_talks_only_to_this_machine(self):
        # Every connected socket of the client browser goes to loopback (the
        # dead proxy catches everything else).
        peers = self.seen["peers"]
        self.assertTrue(any(p[2] == FRONT.port for p in peers), f"no connection to the front door: {peers}")
        outside = [p for p in peers if not e.is_loopback(p[1])]
        self.assertEqual(outside, [], f"the client browser talked to {outside}")

    def test_4_instance_has_no_route_out(self):
        # The container's network namespace, read from the host: lo only.
        pids = [p for p in INST.pids() if p != INST.proc.pid]
        self.assertTrue(pids)
        with open(f"/proc/{pids[0]}/net/dev") as f:
            ifaces = sorted(line.split(":")[0].strip() for line in f.read().splitlines()[2:])
        self.assertEqual(ifaces, ["lo"])
        with open(f"/proc/{pids[0]}/net/route") as f:
            self.assertEqual(f.read().splitlines()[1:], [], "an IPv4 route in the container")
        browsers = []
        for p in pids:
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"/chromium") and not any(a.startswith(b"--type=") for a in argv):
                browsers.append(argv)
        self.assertTrue(browsers, "no browser in the instance")
        for flag in (b"--disable-background-networking", b"--disable-component-update", b"--no-pings"):
            self.assertIn(flag, browsers[0], "PUKAIPU_TEST_OFFLINE did not reach the browser")


def alice_get(who, **kw):
    return e.https_get(FRONT.port, ctx(who), host=ALICE["name"], **kw)


class Test2Refused(unittest.TestCase):
    """Only alice's own certificate opens alice's desktop, over TLS >= 1.2,
    for a request to alice's name from alice's page."""

    def test_alice_certificate_opens_it(self):
        kind, status, body = alice_get(ALICE)
        self.assertEqual(kind, "http", status)
        self.assertIn(" 200 ", status + " ")
        self.assertIn(b"xpra", body.lower())

    def test_another_instances_certificate(self):
        kind, why, _ = alice_get(BOB)
        self.assertEqual(kind, "refused", why)
        self.assertIn("ALERT_UNKNOWN_CA", why)
        r = e.xpra_screenshot(os.path.join(ART, "bob-on-alice.png"), FRONT.port, BOB["crt"], BOB["key"],
                              HOST.host_ca, hostname=ALICE["name"], timeout=30)
        self.assertNotEqual(r.returncode, 0, "xpra client with bob's certificate got in")
        self.assertFalse(os.path.exists(os.path.join(ART, "bob-on-alice.png")))

    def test_no_certificate(self):
        kind, why, _ = alice_get(None)
        self.assertEqual(kind, "refused", why)
        self.assertIn("CERTIFICATE_REQUIRED", why)

    def test_certificate_from_the_rootfs_system_trust_store(self):
        # The CA is in the system store the container sees (the overlay):
        # it does not matter, the front door trusts alice's client CA only.
        store = os.path.join(HOST.layer, "etc", "ssl", "certs")
        v = e.run(["openssl", "verify", "-CApath", store, ROGUE[1]])
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        with open(os.path.join(store, "ca-certificates.crt")) as f, open(ROGUE[0]) as g:
            self.assertIn(g.read().strip(), f.read())
        kind, why, _ = e.https_get(FRONT.port, e.client_ctx(HOST.host_ca, ROGUE[1], ROGUE[2]), host=ALICE["name"])
        self.assertEqual(kind, "refused", why)
        self.assertIn("ALERT_UNKNOWN_CA", why)

    def test_host_must_be_the_server_name(self):
        # SNI alice (alice's certificate checked), Host bob: 421, never bob's desktop.
        kind, status, _ = alice_get(ALICE, headers={"Host": BOB["name"]})
        self.assertEqual(kind, "http", status)
        self.assertIn(" 421 ", status + " ")

    def test_origin_must_be_alices_page(self):
        kind, status, _ = alice_get(ALICE, headers={"Origin": "https://evil.example"})
        self.assertIn(" 403 ", status + " ")
        kind, status, _ = alice_get(ALICE, headers={"Origin": f"https://{BOB['name']}:{FRONT.port}"})
        self.assertIn(" 403 ", status + " ")
        kind, status, _ = alice_get(ALICE, headers={"Origin": f"https://{ALICE['name']}:{FRONT.port}"})
        self.assertIn(" 200 ", status + " ")

    def test_desktop_socket_is_root_and_the_front_doors(self):
        st = os.stat(os.path.join(HOST.run_dir, "alice", "desktop.sock"))
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o777), (0, grp.getgrnam("haproxy").gr_gid, 0o660))
        workers = FRONT.workers()
        self.assertTrue(workers, "the front door's HAProxy has no worker")
        for pid in workers:
            with open(f"/proc/{pid}/status") as f:
                ids = {k: v.split() for k, v in (line.split(":", 1) for line in f if line.startswith(("Uid", "Gid")))}
            self.assertNotEqual(ids["Uid"][0], "0", "haproxy's worker runs as root: the socket's group proves nothing")

    def test_plaintext_http(self):
        with socket.create_connection(("127.0.0.1", FRONT.port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
        # The front door's TLS port closes on a plain request: never the HTML5 client.
        first = data.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
        self.assertNotIn(b" 200 ", first + b" ", data[:200])
        self.assertNotIn(b"<script", data.lower())

    def tls_with(self, version):
        c = ctx(ALICE)
        # The host's OpenSSL would not even offer TLS < 1.2 (MinProtocol and
        # SECLEVEL 2 in Debian's openssl.cnf): lift that, so any refusal is
        # the server's.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            c.minimum_version = ssl.TLSVersion.TLSv1
            c.maximum_version = version
        c.set_ciphers("DEFAULT:@SECLEVEL=0")
        return e.https_get(FRONT.port, c, host=ALICE["name"])

    def test_tls_1_0_and_1_1(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
        for v in old:
            kind, why, _ = self.tls_with(v)
            self.assertEqual(kind, "refused", f"{v.name}: {why}")
            # The server's alert, not the client giving up.
            self.assertIn("ALERT_PROTOCOL_VERSION", why, v.name)
        # Control: the same client settings up to TLS 1.2 get in.
        kind, status, _ = self.tls_with(ssl.TLSVersion.TLSv1_2)
        self.assertEqual(kind, "http", status)


class Test2bForeignPage(unittest.TestCase):
    """A page on another origin, in a real browser that holds alice's
    certificate and sends it on its own (AutoSelectCertificateForUrls): its
    WebSocket to alice's desktop is refused by the front door (Origin rule,
    403). The same script on alice's own page opens one: the Origin is the
    only difference."""

    OPEN_WS = """new Promise(done => {
        const ws = new WebSocket("wss://%s:%d/", ["binary"]);
        ws.binaryType = "arraybuffer";
        ws.onopen = () => { done("open"); ws.close(); };
        ws.onerror = () => done("error");
        ws.onclose = ev => done("closed " + ev.code);
        setTimeout(() => done("timeout"), 15000);
    })"""

    def ws_from(self, c, page):
        c.call("Page.navigate", {"url": page})
        self.assertTrue(h.wait_for(lambda: c.evaluate("document.readyState") == "complete", 20), page)
        r = c.call("Runtime.evaluate", {"expression": self.OPEN_WS % (ALICE["name"], FRONT.port),
                                        "awaitPromise": True, "returnByValue": True}, timeout=30)
        return r.get("result", {}).get("value"), c.evaluate("location.origin")

    def test_websocket_from_another_origin_in_chromium(self):
        import http.server
        import threading

        class Page(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"<!doctype html><title>elsewhere</title><p>another site"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        origin = f"https://{ALICE['name']}:{FRONT.port}"
        c = e.Chromium("foreign-origin", origin, ALICE["p12"], ALICE["passphrase"], HOST.host_ca,
                       names=[ALICE["name"], "elsewhere.localhost"])
        try:
            c.open("about:blank")
            # First the user's own desktop (the browser has chosen the
            # client certificate for alice's name), then the other site.
            own, where_own = self.ws_from(c, origin + "/")
            self.assertEqual(where_own, origin)
            foreign, where = self.ws_from(c, f"http://elsewhere.localhost:{srv.server_address[1]}/")
            self.assertEqual(where, f"http://elsewhere.localhost:{srv.server_address[1]}")
        finally:
            c.close()
            srv.shutdown()
            srv.server_close()
        self.assertEqual(own, "open", "control: alice's own page could not open its WebSocket; log:\n"
                         + c.log_tail())
        self.assertNotEqual(foreign, "open", "a page on another origin drove alice's desktop")
        self.assertIn(foreign, ("error", "closed 1006"))


class Test3Persistence(unittest.TestCase):
    """The browser's profile lands in /home/alice on the host, owned by alice,
    and survives a restart: the next browser reuses it."""

    def test_profile_survives_a_restart(self):
        global INST
        pw = HOST.passwd()["alice"]
        uid, gid, home_in_passwd = int(pw[2]), int(pw[3]), pw[5]
        self.assertEqual(home_in_passwd, "/home/alice")
        home = HOST.host_home("alice")   # /home/alice in the host's (private) /home
        prefs = os.path.join(home, "brave-profile", "Default", "Preferences")
        self.assertTrue(h.wait_for(lambda: os.path.exists(prefs), 30), "the browser wrote no profile")
        with open(prefs) as f:
            created = json.load(f)["profile"]["creation_time"]
        st = os.stat(prefs)
        self.assertEqual((st.st_uid, st.st_gid), (uid, gid))
        not_alices = e.run(["find", home, "(", "!", "-uid", str(uid), "-o", "!", "-gid", str(gid), ")",
                            "-print"]).stdout.split()
        self.assertEqual(not_alices, [], "files in the home not owned by alice")
        before = {os.path.relpath(os.path.join(d, n), home) for d, _, files in os.walk(home) for n in files}

        # Restart: SIGTERM, as systemctl stop would send.
        pids = INST.pids()
        self.assertEqual(INST.stop(), 128 + 15, INST.log_tail(20))
        left = [p for p in pids if os.path.exists(f"/proc/{p}")]
        self.assertEqual(left, [], "processes left after the stop")
        # When xpra (PID 2) exits, the reaper sends SIGTERM to what is left
        # and waits for it (sandbox/reaper.h): the browser shuts down as on a
        # logout and records it, so the next start offers no "restore pages".
        with open(prefs) as f:
            exit_type = json.load(f)["profile"].get("exit_type")
        self.assertIn(exit_type, ("Normal", "SessionEnded"), "the browser did not shut down cleanly")
        restarted = time.time()
        time.sleep(0.1)
        INST = e.Instance(HOST, "alice", ALICE["port"], log_name="alice-2")
        ready = wait_alice(INST)
        self.assertIsNotNone(ready, INST.log_tail(30))
        seen = both_clients("-after-restart")
        self.assertTrue(seen["html5"] and e.looks_like_desktop(seen["html5"]), seen)

        # The new browser rewrote Preferences, and it is still the same profile.
        def rewritten():
            try:
                return os.stat(prefs).st_mtime > restarted
            except OSError:
                return False
        self.assertTrue(h.wait_for(rewritten, 30), "the browser of the second start did not use the profile")
        with open(prefs) as f:
            self.assertEqual(json.load(f)["profile"]["creation_time"], created, "a new profile was made")
        after = {os.path.relpath(os.path.join(d, n), home) for d, _, files in os.walk(home) for n in files}
        kept = {"brave-profile/Local State", "brave-profile/Default/Preferences"}
        self.assertTrue(kept <= before and kept <= after, (kept - before, kept - after))
        st = os.stat(prefs)
        self.assertEqual((st.st_uid, st.st_gid), (uid, gid))


if __name__ == "__main__":
    if os.geteuid() == 0 and missing_tools():
        print(f"SKIP: missing {', '.join(missing_tools())} (bash .ci/install-deps installs them)")
        sys.exit(77)
    h.main()
