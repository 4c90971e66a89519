"""rootfs-builder --check: a manifest validated offline, the way the Brave
manifest is (these machines never contact Brave's repository): the schema,
every extra repository over https://, its sources line (one-line or deb822)
well formed with signed-by naming the pinned key file, that file an OpenPGP
key (gpg --show-keys) with exactly the pinned fingerprints, package names
per Debian Policy. Each broken manifest is one line naming what is wrong and
exit status 2. No network at all: the keys are made here with gpg.
"""
import os
import shutil
import unittest

import harness as h
from test_rootfs_builder import Workdir, builder, gpg_key

BRAVE_URI = "https://brave-browser-apt-release.s3.brave.com/"


@unittest.skipUnless(shutil.which("gpg"), "gpg is not installed (run .ci/install-deps)")
class Check(Workdir, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.key, self.fpr, _ = gpg_key(self.dir)  # self.dir/repo.gpg

    def pinned(self, sources=None):
        """The Brave manifest with its key pinned as a file beside it and a sources line."""
        m = self.manifest("brave")
        m["repositories"][0] = {
            "sources": sources or f"deb [arch=amd64 signed-by=repo.gpg] {BRAVE_URI} stable main",
            "key": {"file": "repo.gpg", "fingerprints": [self.fpr]},
        }
        return m

    def ok(self, m):
        r = builder("--check", self.write(m))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"ok, name brave, \d+ packages, manifest sha256 [0-9a-f]{64}")
        return r

    def broken(self, m, line_re):
        r = builder("--check", self.write(m))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertRegex(lines[0], r"^rootfs-builder: \S+\.json: " + line_re)
        self.assertEqual(r.stdout, "")

    def test_shipped_manifests_pass(self):
        for name in ("default", "brave"):
            r = builder("--check", name)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertRegex(r.stdout, rf"ok, name {name}, \d+ packages")
        # Brave's key comes by URL: --check says it is checked at build time.
        self.assertIn("repositories[0]: key from https://brave-browser-apt-release.s3.brave.com/", r.stderr)

    def test_pinned_key_file_and_sources_line_pass(self):
        self.ok(self.pinned())
        self.ok(self.pinned(f"Types: deb\nURIs: {BRAVE_URI}\nSuites: stable\nComponents: main\n"
                            "Architectures: amd64\nSigned-By: repo.gpg\n"))
        # The same repository as fields, with the pinned file.
        m = self.manifest("brave")
        m["repositories"][0]["key"] = {"file": "repo.gpg", "fingerprints": [self.fpr]}
        self.ok(m)

    def test_missing_key_file(self):
        os.unlink(self.key)
        self.broken(self.pinned(), r"repositories\[0\]\.key\.file: 'repo\.gpg' is not a file$")

    def test_garbage_key(self):
        with open(self.key, "wb") as f:
            f.write(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n")
        self.broken(self.pinned(), r"repositories\[0\]\.key\.file: 'repo\.gpg' is not an OpenPGP public key \(.+\)$")

    def test_key_file_with_other_keys(self):
        m = self.pinned()
        m["repositories"][0]["key"]["fingerprints"] = ["DBF1A116C220B8C7164F98230686B78420038257"]
        self.broken(m, rf"repositories\[0\]\.key\.file: 'repo\.gpg' holds the keys \['{self.fpr}'\], not the pinned")

    def test_bad_sources_line(self):
        self.broken(self.pinned(f"deb [signed-by=repo.gpg] {BRAVE_URI}"),
                    r"repositories\[0\]\.sources: '.*' is not a sources line 'deb \[options\] URI SUITE")
        self.broken(self.pinned(f"deb [signed-by=repo.gpg] {BRAVE_URI} stable"),
                    r"repositories\[0\]\.sources: no component after the suite 'stable'$")
        self.broken(self.pinned(f"deb-src [signed-by=repo.gpg] {BRAVE_URI} stable main"),
                    r"repositories\[0\]\.sources: type 'deb-src': only 'deb'")
        self.broken(self.pinned(f"deb [trusted=yes signed-by=repo.gpg] {BRAVE_URI} stable main"),
                    r"repositories\[0\]\.sources: option 'trusted=yes': only arch=A and signed-by=FILE")
        self.broken(self.pinned(f"Types: deb\nURIs: {BRAVE_URI}\nSuite: stable\nComponents: main\n"),
                    r"repositories\[0\]\.sources: deb822 line 'Suite: stable': expected one of Types:")

    def test_signed_by_not_the_pinned_key(self):
        self.broken(self.pinned(f"deb [signed-by=/usr/share/keyrings/brave.gpg] {BRAVE_URI} stable main"),
                    r"repositories\[0\]\.sources: signed-by '/usr/share/keyrings/brave\.gpg' is not the pinned key "
                    r"file \(key\.file 'repo\.gpg'\)$")
        self.broken(self.pinned(f"deb {BRAVE_URI} stable main"),
                    r"repositories\[0\]\.sources: no signed-by: it must name the pinned key file")

    def test_http_instead_of_https(self):
        http = BRAVE_URI.replace("https://", "http://")
        self.broken(self.pinned(f"deb [signed-by=repo.gpg] {http} stable main"),
                    rf"repositories\[0\]\.sources: '{http}' is not an https:// URL$")
        m = self.manifest("brave")
        m["repositories"][0]["uri"] = http
        self.broken(m, rf"repositories\[0\]\.uri: '{http}' must be https://")
        m = self.manifest("brave")
        m["repositories"][0]["key"]["url"] = m["repositories"][0]["key"]["url"].replace("https:", "http:")
        self.broken(m, r"repositories\[0\]\.key\.url: 'http://\S+' must be https://$")

    def test_bad_package_names(self):
        for bad in ("Brave-Browser", "b", "-brave", "brave_browser", "brave-browser=latest"):
            m = self.pinned()
            m["packages"][-1] = bad
            self.broken(m, rf"packages\[\d+\]: '{bad}' is not a Debian package name")
        m = self.pinned()
        m["packages"].append("brave-browser=1:1.73.91-1")  # epoch:upstream-revision is fine
        m["packages"].remove("brave-browser")
        self.ok(m)

    def test_unknown_field(self):
        m = self.pinned()
        m["repositories"][0]["keyring"] = "repo.gpg"
        self.broken(m, r"repositories\[0\]\.keyring: unknown field \(known: ")
        m = self.pinned()
        m["repositories"][0]["uri"] = BRAVE_URI
        self.broken(m, r"repositories\[0\]\.uri: give either 'sources' or uri/suite/components, not both$")


if __name__ == "__main__":
    h.main()
