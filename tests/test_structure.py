#!/usr/bin/env python3
"""The structure the code promises (README, Layout; sandbox/stages.cc), checked.

- Layers: base/ includes nothing of the others; sandbox/ and certs/ stand
  side by side on base/ and include nothing of each other or of launcher/;
  their meson.build files name no library of each other; and the linked
  programs agree (the certificate tool links no sandbox, pukaipu-run no
  OpenSSL or certs).
- Size: no product source file is over 600 lines.
- Order: the security-relevant steps of a container's start happen in the
  order stages.cc's header writes down; moving one fails here.

    test_structure.py SOURCE_ROOT BUILD_ROOT
"""
import os
import re
import sys
import unittest

SRC = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else os.path.join(SRC, "build")

LAYERS = ("base", "sandbox", "certs", "launcher")
# What each layer may include with "...": itself and the layers below it.
ALLOWED = {
    "base": {"base"},
    "sandbox": {"base", "sandbox"},
    "certs": {"base", "certs"},
    "launcher": {"base", "sandbox", "certs", "launcher"},
}
PRODUCT_DIRS = ("base", "sandbox", "certs", "launcher", "rootfs-builder", "profiles")
SOURCE_EXT = (".cc", ".h", ".c", ".py", ".sh", ".in")
MAX_LINES = 600


def sources(layer):
    for dirpath, _, files in os.walk(os.path.join(SRC, layer)):
        for f in sorted(files):
            if f.endswith((".cc", ".h")):
                yield os.path.join(dirpath, f)


def included_layer(path, name):
    """The layer a quoted include resolves to, or None for a header the build generates."""
    if name in ("build_config.h", "xpra_guard_script.h"):
        return None
    first = name.split("/", 1)[0]
    if first in LAYERS and "/" in name:
        return first
    # Relative to the including file's own directory.
    here = os.path.relpath(os.path.dirname(path), SRC).split(os.sep)[0]
    if os.path.exists(os.path.join(os.path.dirname(path), name)):
        return here
    return "unknown"


class Layers(unittest.TestCase):
    def test_includes_point_down_only(self):
        bad = []
        for layer in LAYERS:
            for path in sources(layer):
                with open(path) as f:
                    for n, line in enumerate(f, 1):
                        m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                        if not m:
                            continue
                        target = included_layer(path, m.group(1))
                        if target is not None and target not in ALLOWED[layer]:
                            bad.append(f"{os.path.relpath(path, SRC)}:{n}: includes \"{m.group(1)}\" ({target})")
        self.assertEqual(bad, [], "\n".join(bad))

    def test_meson_files_name_no_library_of_a_sibling(self):
        names = {
            "base": r"\b(sandbox|certs|instance)_(dep|lib)\b",
            "sandbox": r"\b(certs|instance)_(dep|lib)\b",
            "certs": r"\b(sandbox|instance)_(dep|lib)\b",
        }
        for layer, pattern in names.items():
            with open(os.path.join(SRC, layer, "meson.build")) as f:
                text = f.read()
            self.assertIsNone(re.search(pattern, text), f"{layer}/meson.build names {re.search(pattern, text)}")

    def link_line(self, target):
        path = os.path.join(BUILD, "build.ninja")
        if not os.path.exists(path):
            self.skipTest(f"no {path}: give the build directory as the second argument")
        with open(path) as f:
            for line in f:
                if line.startswith(f"build {target}:") and "LINKER" in line:
                    return line
        self.fail(f"no link rule for {target} in {path}")

    def test_certificate_tool_links_no_sandbox(self):
        line = self.link_line("tests/pukaipu-certtool")
        self.assertIn("libpukaipu-base.a", line)
        self.assertNotIn("libpukaipu-sandbox.a", line)
        self.assertNotIn("libpukaipu-instance.a", line)

    def test_launcher_links_no_openssl(self):
        line = self.link_line("launcher/pukaipu-run")
        self.assertIn("libpukaipu-sandbox.a", line)
        self.assertNotIn("libpukaipu-certs.a", line)


class Size(unittest.TestCase):
    def test_product_files_at_most_600_lines(self):
        over = []
        for d in PRODUCT_DIRS:
            for dirpath, _, files in os.walk(os.path.join(SRC, d)):
                for f in files:
                    path = os.path.join(dirpath, f)
                    with open(path, "rb") as fh:
                        head = fh.read(64)
                    script = head.startswith(b"#!")
                    if not (f.endswith(SOURCE_EXT) or script):
                        continue
                    with open(path, "rb") as fh:
                        n = sum(1 for _ in fh)
                    if n > MAX_LINES:
                        over.append(f"{os.path.relpath(path, SRC)}: {n} lines")
        self.assertEqual(over, [], "\n".join(over))


def positions(text, needles):
    """Index of each needle in text (the first occurrence after the previous one)."""
    out, at = [], 0
    for n in needles:
        i = text.find(n, at)
        if i < 0:
            return n
        out.append(i)
        at = i + len(n)
    return None


class StartOrder(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(SRC, "sandbox", "stages.cc")) as f:
            cls.text = f.read()

    def function(self, signature):
        i = self.text.index(signature)
        j = self.text.index("\n}\n", i)
        return self.text[i:j]

    def assertInOrder(self, body, needles):
        missing = positions(body, needles)
        self.assertIsNone(missing, f"'{missing}' is missing or out of the order {needles}")

    def test_child_steps(self):
        body = self.function("[[noreturn]] void childMain(")
        steps = [int(n) for n in re.findall(r"^\t// (\d+)\. ", body, re.M)]
        self.assertEqual(steps, list(range(0, 19)), "child step comments must be 0..18 in order")
        self.assertInOrder(body, [
            "PR_SET_PDEATHSIG",                          # 0
            "recvMsg(sync, go",                          # 1: the id maps are written
            "setresgid(", "setresuid(",                  # 2: gid first, then uid
            "MS_REC | MS_SLAVE",                         # 3
            "bind rootfs",                               # 4
            "mountInChild(",                             # 5
            "maskPathInChild(", "readonlyPathInChild(",  # 6
            "remountWith(rootFd",                        # 7
            "SYS_pivot_root", "MNT_DETACH",              # 8
            "loopbackUp()", "sethostname(",              # 9
            "openContainerPty(",                         # 10
            "dropAllCapabilities()",                     # 11
            "PR_SET_NO_NEW_PRIVS",                       # 12
            "fork()", "reapUntilPayloadExits(",          # 13
            "setsid()", "chdir(s.process.cwd",           # 14
            "changeProfileOnExec(",                      # 15
            "SYS_close_range",                           # 16
            "waitAtStartGate(",                          # 16, OCI create: wait for start, before seccomp
            "installSeccomp(",                           # 17
            "execPayload(",                              # 18
        ])

    def test_reaper_installs_seccomp_before_reaping(self):
        body = self.function("[[noreturn]] void childMain(")
        reaper = body[body.index("if (payload > 0) {"):body.index("// --- the payload ---")]
        self.assertInOrder(reaper, ["installSeccomp(", "reapUntilPayloadExits("])
        for skipped in ("changeProfileOnExec", "execPayload", "SYS_close_range", "waitAtStartGate"):
            self.assertNotIn(skipped, reaper)

    def test_parent_steps(self):
        body = self.function("Outcome run(const Prepared& p, const RunOptions& opts)")
        self.assertInOrder(body, [
            "setgroups(0, nullptr)", "socketpair(", "sigprocmask(SIG_BLOCK", "assertSingleThreaded()",
            # the cgroup with its limits before the clone, the child born inside it
            "Cgroup::create(", "enterSelf()", "CLONE_INTO_CGROUP", "SYS_clone3", "leaveSelf()",
            '"setgroups", "deny"', '"gid_map"', '"uid_map"', "prlimit(",
            "networkFromParent(", "MsgKind::Go", "recvMsg(parentSock", "supervise(", "cg->remove()",
        ])

    def test_prepare_steps(self):
        body = self.function("Result<Prepared> prepare(Spec spec, const RunOptions& opts)")
        self.assertInOrder(body, [
            "// R1.", "checkTrustedPath(", "// R2.", "planMounts(", "checkReach(", "prepareNetwork(", "generatedFile(",
            "// R3.", "checkAppArmor(", "// R4.", "loadOrCompileSeccomp(", "// R5.",
            "// R6.", "checkOwnCgroupEnforces(", "planCgroupHere(",
        ])

    def test_header_lists_every_child_step(self):
        header = self.text[:self.text.index("#include")]
        self.assertInOrder(header, [f" {n} " for n in range(0, 19)])
        for phrase in ("launcher", "prepare()", "run(), parent", "child:", "The reaper branch of 13 skips"):
            self.assertIn(phrase, header)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
