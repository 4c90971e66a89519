"""The manifest of rootfs-builder: parsing and validation (rootfs-builder(8)).

Every field is checked against one table per object, and every error names
its field: `repositories[1].key.fingerprints[0]: expected 40 hex digits`.
"""
import hashlib
import json
import os
import re
import stat
import subprocess

HERE = os.path.dirname(os.path.realpath(__file__))
MANIFEST_DIR = os.path.join(HERE, "manifests")
# Bump when the builder changes what a manifest produces: forces a rebuild.
BUILD_FORMAT = "pukaipu-rootfs-1"  # generations changed nothing inside a rootfs


class ManifestError(Exception):
    """Invalid manifest: the message names the field."""



# --------------------------------------------------------------------------
# Manifest validation. One table per object: field -> (checker, required).

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SUITE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
COMPONENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
# Debian Policy 5.6.1: lower-case letters, digits, + - . ; at least two
# characters, starting alphanumeric. 5.6.12, a pinned version:
# [epoch:]upstream[-revision], upstream starting with a digit.
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=([0-9]+:)?[0-9][A-Za-z0-9.+~-]*)?$")
FPR_RE = re.compile(r"^[0-9A-F]{40}$")
APTOPT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:_.-]*$")
MODES = ("root", "chrootless")
VARIANTS = ("extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important", "standard")


def _type_name(v):
    return {str: "a string", int: "a number", float: "a number", bool: "true/false", list: "a list",
            dict: "an object", type(None): "null"}.get(type(v), type(v).__name__)


def want_str(path, v, pattern=None, what=None):
    if not isinstance(v, str):
        raise ManifestError(f"{path}: expected a string, got {_type_name(v)}")
    if not v:
        raise ManifestError(f"{path}: must not be empty")
    if pattern and not pattern.match(v):
        raise ManifestError(f"{path}: '{v}' is not {what}")
    return v


def want_list(path, v, item, nonempty=False):
    if not isinstance(v, list):
        raise ManifestError(f"{path}: expected a list, got {_type_name(v)}")
    if nonempty and not v:
        raise ManifestError(f"{path}: must not be empty")
    return [item(f"{path}[{i}]", x) for i, x in enumerate(v)]


def want_url(path, v):
    want_str(path, v)
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", v):
        raise ManifestError(f"{path}: '{v}' is not an http:// or https:// URL")
    return v


def want_abs_path(path, v):
    want_str(path, v)
    if not v.startswith("/") or v == "/" or "//" in v or v.endswith("/"):
        raise ManifestError(f"{path}: '{v}' is not an absolute path below /")
    if any(p in ("..", ".") for p in v.split("/")):
        raise ManifestError(f"{path}: '{v}' contains '.' or '..'")
    return v


def want_mode(path, v, allow_sticky=False):
    want_str(path, v)
    if not re.match(r"^0?[0-7]{3,4}$", v):
        raise ManifestError(f"{path}: '{v}' is not an octal mode like \"0644\"")
    m = int(v, 8)
    if m & (stat.S_ISUID | stat.S_ISGID):
        raise ManifestError(f"{path}: '{v}': setuid/setgid modes are not allowed")
    if m & stat.S_ISVTX and not allow_sticky:
        raise ManifestError(f"{path}: '{v}': the sticky bit is only for directories")
    if m & (stat.S_IWGRP | stat.S_IWOTH) and not m & stat.S_ISVTX:
        raise ManifestError(f"{path}: '{v}': group/other-writable is not allowed")
    return m


def want_comment(path, v):
    if isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)):
        return v
    raise ManifestError(f"{path}: expected a string or a list of strings, got {_type_name(v)}")


def list_of(pattern, what):
    """A checker for a non-empty list of strings that match pattern."""
    return lambda p, x: want_list(p, x, lambda q, y: want_str(q, y, pattern, what), nonempty=True)


def check_object(path, obj, fields):
    """Checks obj against fields (name -> (checker, required)); every object may carry a "comment"."""
    fields = {"comment": (want_comment, False), **fields}
    if not isinstance(obj, dict):
        raise ManifestError(f"{path or 'manifest'}: expected an object, got {_type_name(obj)}")
    out = {}
    for k in obj:
        if k not in fields:
            raise ManifestError(f"{path}.{k}: unknown field (known: {', '.join(sorted(fields))})"
                                if path else f"{k}: unknown field (known: {', '.join(sorted(fields))})")
    for k, (check, required) in fields.items():
        p = f"{path}.{k}" if path else k
        if k not in obj:
            if required:
                raise ManifestError(f"{p}: missing")
            continue
        out[k] = check(p, obj[k])
    return out


def check_key(path, v):
    key = check_object(path, v, {
        "url": (want_url, False),
        "file": (lambda p, x: want_str(p, x), False),
        "fingerprints": (list_of(FPR_RE, "a 40-digit upper-case hex OpenPGP fingerprint"), True),
    })
    if ("url" in key) == ("file" in key):
        raise ManifestError(f"{path}: give exactly one of 'url' and 'file'")
    return key


SOURCES_FIELDS = ("Types", "URIs", "Suites", "Components", "Architectures", "Signed-By")


def parse_sources(path, v):
    """A repository's "sources": one line `deb [arch=A signed-by=F] URI SUITE COMP...`
    or a deb822 stanza (Types/URIs/Suites/Components/Architectures/Signed-By,
    one value each except Components and Architectures). Returns the
    repository fields and the signed-by path."""
    want_str(path, v)
    lines = [l for l in v.strip().splitlines() if l.strip() and not l.lstrip().startswith("#")]
    opts = {}
    if len(lines) == 1 and not re.match(r"^[A-Za-z-]+:\s", lines[0]):
        m = re.match(r"^(\S+)\s+(?:\[([^]]*)\]\s+)?([^\s\[]\S*)\s+(\S+)((?:\s+\S+)*)\s*$", lines[0])
        if not m:
            raise ManifestError(f"{path}: '{v}' is not a sources line 'deb [options] URI SUITE COMPONENT...'")
        kind, raw_opts, uri, suite, comps = m.groups()
        for o in (raw_opts or "").split():
            k, eq, val = o.partition("=")
            if not eq or not val or k not in ("arch", "signed-by"):
                raise ManifestError(f"{path}: option '{o}': only arch=A and signed-by=FILE are supported")
            opts[k] = val
        fields = {"Types": kind, "URIs": uri, "Suites": suite, "Components": comps.strip()}
        if "arch" in opts:
            fields["Architectures"] = opts["arch"].replace(",", " ")
        if "signed-by" in opts:
            fields["Signed-By"] = opts["signed-by"]
    else:
        fields = {}
        for line in lines:
            k, colon, val = line.partition(":")
            if not colon or k not in SOURCES_FIELDS:
                raise ManifestError(f"{path}: deb822 line '{line}': expected one of "
                                    f"{', '.join(f + ':' for f in SOURCES_FIELDS)}")
            if k in fields:
                raise ManifestError(f"{path}: deb822 field {k} is given twice")
            fields[k] = val.strip()
        for k in ("Types", "URIs", "Suites", "Components"):
            if not fields.get(k):
                raise ManifestError(f"{path}: deb822 field {k} is missing")
        for k in ("Types", "URIs", "Suites", "Signed-By"):
            if len(fields.get(k, "").split()) > 1:
                raise ManifestError(f"{path}: deb822 field {k}: give one value")
    if fields["Types"] != "deb":
        raise ManifestError(f"{path}: type '{fields['Types']}': only 'deb' (binary packages) is supported")
    if not re.match(r"^https://[^/\s]+(/\S*)?$", fields["URIs"]):
        raise ManifestError(f"{path}: '{fields['URIs']}' is not an https:// URL")
    if not fields.get("Components"):
        raise ManifestError(f"{path}: no component after the suite '{fields['Suites']}'")
    if not fields.get("Signed-By"):
        raise ManifestError(f"{path}: no signed-by: it must name the pinned key file (key.file)")
    want_str(f"{path} suite", fields["Suites"], SUITE_RE, "a suite name")
    out = {"uri": fields["URIs"], "suite": fields["Suites"],
           "components": list_of(COMPONENT_RE, "a component")(f"{path} components", fields["Components"].split())}
    if fields.get("Architectures"):
        out["architectures"] = list_of(NAME_RE, "an architecture")(f"{path} architectures",
                                                                   fields["Architectures"].split())
    return out, fields["Signed-By"]


def check_repository(path, v):
    r = check_object(path, v, {
        "sources": (parse_sources, False),
        "uri": (want_url, False),
        "suite": (lambda p, x: want_str(p, x, SUITE_RE, "a suite name"), False),
        "components": (list_of(COMPONENT_RE, "a component"), False),
        "architectures": (list_of(NAME_RE, "an architecture"), False),
        "key": (check_key, True),
    })
    if "sources" in r:
        given = [k for k in ("uri", "suite", "components", "architectures") if k in r]
        if given:
            raise ManifestError(f"{path}.{given[0]}: give either 'sources' or uri/suite/components, not both")
        fields, signed_by = r.pop("sources")
        if signed_by != r["key"].get("file"):
            raise ManifestError(f"{path}.sources: signed-by '{signed_by}' is not the pinned key file "
                                f"(key.file {r['key'].get('file', 'is not set')!r})".replace("'is not set'", "is not set"))
        r.update(fields)
    else:
        for k in ("uri", "suite", "components"):
            if k not in r:
                raise ManifestError(f"{path}.{k}: missing (or give 'sources')")
    return r


def check_file(path, v):
    f = check_object(path, v, {
        "source": (lambda p, x: want_str(p, x), True),
        "destination": (want_abs_path, True),
        "mode": (lambda p, x: want_mode(p, x), True),
    })
    if f["source"].startswith("/") or ".." in f["source"].split("/"):
        raise ManifestError(f"{path}.source: '{f['source']}' must be relative to files_root, without '..'")
    return f


def check_directory(path, v):
    return check_object(path, v, {
        "path": (want_abs_path, True),
        "mode": (lambda p, x: want_mode(p, x, allow_sticky=True), True),
    })


def check_apt_options(path, v):
    if not isinstance(v, dict):
        raise ManifestError(f"{path}: expected an object, got {_type_name(v)}")
    for k, x in v.items():
        if not APTOPT_RE.match(k):
            raise ManifestError(f"{path}.{k}: not an apt option name")
        if not isinstance(x, str) or '"' in x or "\n" in x:
            raise ManifestError(f"{path}.{k}: expected a string without quotes or newlines")
    return v


def check_dpkg_option(path, v):
    want_str(path, v)
    if not re.match(r"^(path-exclude|path-include)=/\S+$", v):
        raise ManifestError(f"{path}: '{v}': only path-exclude=/GLOB and path-include=/GLOB are supported")
    return v


TOP_FIELDS = {
    "name": (lambda p, x: want_str(p, x, NAME_RE, "a name ([a-z0-9][a-z0-9._-]*)"), False),
    "suite": (lambda p, x: want_str(p, x, SUITE_RE, "a suite name"), True),
    "mirror": (want_url, True),
    "components": (list_of(COMPONENT_RE, "a component"), False),
    "variant": (lambda p, x: x if x in VARIANTS else (_ for _ in ()).throw(
        ManifestError(f"{p}: expected one of {', '.join(VARIANTS)}")), False),
    "mode": (lambda p, x: x if x in MODES else (_ for _ in ()).throw(
        ManifestError(f"{p}: expected one of {', '.join(MODES)}")), False),
    "architecture": (lambda p, x: want_str(p, x, NAME_RE, "an architecture"), False),
    "apt_options": (check_apt_options, False),
    "dpkg_options": (lambda p, x: want_list(p, x, check_dpkg_option), False),
    "repositories": (lambda p, x: want_list(p, x, check_repository), False),
    "packages": (list_of(PACKAGE_RE, "a Debian package name"), True),
    "files_root": (lambda p, x: want_str(p, x), False),
    "files": (lambda p, x: want_list(p, x, check_file), False),
    "directories": (lambda p, x: want_list(p, x, check_directory), False),
    "strip_setuid": (lambda p, x: x if isinstance(x, bool) else (_ for _ in ()).throw(
        ManifestError(f"{p}: expected true/false, got {_type_name(x)}")), False),
}


class Manifest:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise ManifestError(f"cannot read: {e.strerror}")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ManifestError(f"not valid JSON: {e}")
        self.doc = doc
        m = check_object("", doc, TOP_FIELDS)
        self.name = m.get("name") or re.sub(r"\.json$", "", os.path.basename(self.path))
        if not NAME_RE.match(self.name):
            raise ManifestError(f"name: '{self.name}' (from the file name) is not a valid name; set 'name'")
        self.suite = m["suite"]
        self.mirror = m["mirror"]
        self.components = m.get("components", ["main"])
        self.variant = m.get("variant", "minbase")
        self.mode = m.get("mode", "root")
        self.architecture = m.get("architecture", "amd64")
        self.apt_options = m.get("apt_options", {})
        self.dpkg_options = m.get("dpkg_options", [])
        self.repositories = m.get("repositories", [])
        self.packages = m["packages"]
        self.strip_setuid = m.get("strip_setuid", True)
        self.files_root = os.path.normpath(os.path.join(os.path.dirname(self.path), m.get("files_root", "../files")))
        self.files = m.get("files", [])
        self.directories = m.get("directories", [])
        seen = {}
        for i, p in enumerate(self.packages):
            n = p.split("=")[0]
            if n in seen:
                raise ManifestError(f"packages[{i}]: '{n}' is listed twice (also packages[{seen[n]}])")
            seen[n] = i
        dests = {}
        for i, f in enumerate(self.files):
            if f["destination"] in dests:
                raise ManifestError(f"files[{i}].destination: '{f['destination']}' is also files[{dests[f['destination']]}]")
            dests[f["destination"]] = i
            src = os.path.join(self.files_root, f["source"])
            if not os.path.isfile(src):
                raise ManifestError(f"files[{i}].source: '{f['source']}' is not a file in {self.files_root}")
            f["abs"] = src
        for i, r in enumerate(self.repositories):
            if "file" in r["key"]:
                kf = os.path.join(os.path.dirname(self.path), r["key"]["file"])
                if not os.path.isfile(kf):
                    raise ManifestError(f"repositories[{i}].key.file: '{r['key']['file']}' is not a file")
                r["key"]["abs"] = kf

    def digest(self):
        """sha256 of the manifest and of everything it pulls in (files, key files)."""
        h = hashlib.sha256()
        h.update(BUILD_FORMAT.encode() + b"\0")
        h.update(json.dumps(self.doc, sort_keys=True, separators=(",", ":")).encode() + b"\0")
        for f in sorted(self.files, key=lambda f: f["destination"]):
            with open(f["abs"], "rb") as fh:
                h.update(f"{f['destination']}\0{f['mode']:o}\0".encode() + hashlib.sha256(fh.read()).digest())
        for r in self.repositories:
            if "abs" in r["key"]:
                with open(r["key"]["abs"], "rb") as fh:
                    h.update(b"key\0" + hashlib.sha256(fh.read()).digest())
        return h.hexdigest()


def primary_fingerprints(colons):
    """The primary keys' fingerprints in gpg --with-colons output."""
    have, record = [], None
    for line in colons.splitlines():
        parts = line.split(":")
        if parts[0] == "fpr":
            if record == "pub":  # the first fpr after a pub line is the primary key's
                have.append(parts[9])
            record = None
        else:
            record = parts[0]
    return have


def check_offline(man, gpg_home):
    """What --check adds to the schema, without the network: every extra
    repository over https://, its pinned key file an OpenPGP key (gpg
    --show-keys, nothing imported) holding exactly the pinned fingerprints.
    A key given by URL is fetched and checked at build time. Returns notes."""
    notes = []
    for i, r in enumerate(man.repositories):
        what = f"repositories[{i}]"
        if not r["uri"].startswith("https://"):
            raise ManifestError(f"{what}.uri: '{r['uri']}' must be https:// (only Debian's mirror may be http)")
        key = r["key"]
        if "url" in key:
            if not key["url"].startswith("https://"):
                raise ManifestError(f"{what}.key.url: '{key['url']}' must be https://")
            notes.append(f"{what}: key from {key['url']}, checked against its fingerprints at build time")
            continue
        res = subprocess.run(["gpg", "--batch", "--no-tty", "--no-autostart", "--homedir", gpg_home,
                              "--with-colons", "--show-keys", key["abs"]],
                             capture_output=True, text=True, errors="replace", env=dict(os.environ, LC_ALL="C"))
        have = primary_fingerprints(res.stdout)
        if res.returncode or not have:
            err = (res.stderr.strip().splitlines() or ["no key in it"])[-1]
            raise ManifestError(f"{what}.key.file: '{key['file']}' is not an OpenPGP public key ({err})")
        if sorted(have) != sorted(key["fingerprints"]):
            raise ManifestError(f"{what}.key.file: '{key['file']}' holds the keys {sorted(have)}, "
                                f"not the pinned fingerprints {sorted(key['fingerprints'])}")
    return notes


def find_manifest(arg):
    if os.path.exists(arg) or "/" in arg or arg.endswith(".json"):
        return arg
    return os.path.join(MANIFEST_DIR, arg + ".json")
