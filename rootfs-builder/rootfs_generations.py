"""Rootfs generations (rootfs-builder(8)): the layout, the `current` and
`previous` pointers, run records, garbage collection, hard links between
generations, --list and --rollback.

    OUTPUT/NAME/20261207T221500Z/     a generation: a whole rootfs, never changed once published
    OUTPUT/NAME/20261207T221500Z.json its record: built, manifest sha256, superseded (when current left it)
    OUTPUT/NAME/current  -> 20261207T221500Z   what a new start uses (pukaipu-run resolves it once)
    OUTPUT/NAME/previous -> 20261130T...       kept for --rollback
    OUTPUT/NAME/.build-*                       a build in progress (removed by the next run if it died)

A pointer moves with symlink(tmp) + rename(tmp, current): a reader sees the
old or the new target, never none. pukaipu-run writes RUN_DIR/USER/rootfs-PID
(the resolved generation directory) before it opens the rootfs, and removes
it when the instance ends; a generation named by a record of a live process,
or that is `current` or `previous`, is never removed.
"""
import calendar
import json
import os
import re
import stat
import time

GEN_RE = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
RECORD_DIR = "usr/share/pukaipu"  # the build records inside a generation
BUILD_PREFIX = ".build-"


def gen_name(now=None):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


def new_gen_name(base):
    n = gen_name()
    cand, i = n, 1
    while os.path.lexists(os.path.join(base, cand)):
        i += 1
        cand = f"{n}-{i}"
    return cand


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pointer(base, which):
    """The generation `current` or `previous` names, or None."""
    try:
        t = os.readlink(os.path.join(base, which))
    except OSError:
        return None
    return t if GEN_RE.match(t) and os.path.isdir(os.path.join(base, t)) else None


def set_pointer(base, which, gen):
    """Moves `which` to gen atomically: a new symlink renamed over the old one."""
    tmp = os.path.join(base, f".{which}.tmp-{os.getpid()}")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(gen, tmp)
    os.rename(tmp, os.path.join(base, which))
    fsync_dir(base)


def generations(base):
    if not os.path.isdir(base):
        return []
    return sorted(n for n in os.listdir(base) if GEN_RE.match(n) and os.path.isdir(os.path.join(base, n)))


def info_path(base, gen):
    return os.path.join(base, gen + ".json")


def read_info(base, gen):
    try:
        with open(info_path(base, gen)) as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def write_info(base, gen, info):
    p = info_path(base, gen)
    tmp = p + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.rename(tmp, p)


def move_current(base, gen):
    """current -> gen, previous -> the old current; marks when the old one was superseded."""
    old = pointer(base, "current")
    if old == gen:
        return old
    if old:
        info = read_info(base, old)
        if not info.get("superseded"):
            info["superseded"] = int(time.time())
            write_info(base, old, info)
        set_pointer(base, "previous", old)
    info = read_info(base, gen)
    if info.get("superseded"):
        info.pop("superseded")  # current again (a rollback)
        write_info(base, gen, info)
    set_pointer(base, "current", gen)
    return old


def read_lock(root):
    try:
        with open(os.path.join(root, RECORD_DIR, "packages.lock")) as f:
            return [l for l in f.read().splitlines() if l]
    except OSError:
        return None


def read_digest(root):
    try:
        with open(os.path.join(root, RECORD_DIR, "manifest.sha256")) as f:
            return f.read().strip()
    except OSError:
        return None


def lock_diff(old, new):
    """Lines `name: OLD -> NEW`, `+name=V`, `-name=V` between two packages.lock."""
    o = dict(l.split("=", 1) for l in (old or []))
    n = dict(l.split("=", 1) for l in new)
    out = []
    for k in sorted(set(o) | set(n)):
        if k in o and k in n and o[k] != n[k]:
            out.append(f"  {k}: {o[k]} -> {n[k]}")
        elif k not in o:
            out.append(f"  +{k}={n[k]}")
        elif k not in n:
            out.append(f"  -{k}={o[k]}")
    return out


# --------------------------------------------------------------------------
# Who uses a generation.

def run_records(run_dir):
    """{generation directory (real path): [(user, pid)]} from the records of live pukaipu-run processes."""
    out = {}
    if not os.path.isdir(run_dir):
        return out
    for user in os.listdir(run_dir):
        d = os.path.join(run_dir, user)
        if not os.path.isdir(d) or os.path.islink(d):
            continue
        for n in os.listdir(d):
            m = re.match(r"^rootfs-(\d+)$", n)
            if not m:
                continue
            pid = int(m.group(1))
            if not os.path.exists(f"/proc/{pid}"):
                continue  # stale: its pukaipu-run is gone (SIGKILL); names nothing
            try:
                with open(os.path.join(d, n)) as f:
                    path = f.read().strip()
            except OSError:
                continue
            out.setdefault(os.path.realpath(path), []).append((user, pid))
    return out


def root_users(path):
    """PIDs whose root directory is inside path (a container started without a record)."""
    path = os.path.realpath(path)
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            root = os.readlink(f"/proc/{p}/root")
        except OSError:
            continue
        if root == path or root.startswith(path + "/"):
            pids.append(int(p))
    return pids


def users_of(base, gen, records):
    """Users (from run records) and PIDs (rooted there) of one generation."""
    path = os.path.realpath(os.path.join(base, gen))
    users = sorted({u for u, _ in records.get(path, [])})
    return users, root_users(path)


def collect(base, run_dir, remove_tree, say):
    """Removes every generation that is neither current nor previous, named by
    no live run record and no process's root. Returns the names removed."""
    keep = {pointer(base, "current"), pointer(base, "previous")}
    records = run_records(run_dir)
    removed = []
    for g in generations(base):
        if g in keep:
            continue
        users, pids = users_of(base, g, records)
        if users or pids:
            say(f"keeping generation {g}: in use by {', '.join(users) or f'{len(pids)} processes'}")
            continue
        remove_tree(os.path.join(base, g))
        try:
            os.unlink(info_path(base, g))
        except FileNotFoundError:
            pass
        removed.append(g)
    return removed


# --------------------------------------------------------------------------
# Hard links between generations.

def _xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return None
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))


def _same_file(a, b, sa, sb):
    if (stat.S_IMODE(sa.st_mode), sa.st_uid, sa.st_gid, sa.st_size) != \
            (stat.S_IMODE(sb.st_mode), sb.st_uid, sb.st_gid, sb.st_size):
        return False
    if _xattrs(a) != _xattrs(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def link_identical(new_root, old_root):
    """Replaces each regular file of new_root that is identical to the file at
    the same path in old_root (content, mode, owner, xattrs) with a hard link
    to it, so both generations share one inode: stored once, one page cache.
    The old file is never written (its mtime is the one that stays). Returns
    (files linked, bytes saved)."""
    linked = saved = 0
    dev = os.lstat(new_root).st_dev
    if os.lstat(old_root).st_dev != dev:
        return 0, 0
    for dirpath, dirnames, filenames in os.walk(new_root):
        rel = os.path.relpath(dirpath, new_root)
        odir = os.path.normpath(os.path.join(old_root, rel))
        for n in filenames:
            p, o = os.path.join(dirpath, n), os.path.join(odir, n)
            try:
                sp, so = os.lstat(p), os.lstat(o)
            except FileNotFoundError:
                continue
            if not (stat.S_ISREG(sp.st_mode) and stat.S_ISREG(so.st_mode)) or sp.st_ino == so.st_ino:
                continue
            if not _same_file(p, o, sp, so):
                continue
            tmp = os.path.join(dirpath, f".{n}.pukaipu-link")
            os.link(o, tmp)
            os.rename(tmp, p)
            linked += 1
            saved += sp.st_blocks * 512
    return linked, saved


# --------------------------------------------------------------------------
# Sizes and --list.

def sizes(base, gens):
    """{gen: (apparent blocks of its tree, blocks only it holds)} in bytes;
    a file hard-linked into several generations counts in each one's size
    and in no one's own size."""
    where, blocks = {}, {}
    for g in gens:
        for dirpath, dirnames, filenames in os.walk(os.path.join(base, g)):
            for n in filenames + dirnames:
                try:
                    st = os.lstat(os.path.join(dirpath, n))
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode) and n in dirnames:
                    key = (st.st_ino, g)  # directories are never shared
                else:
                    key = st.st_ino
                where.setdefault(key, set()).add(g)
                blocks[key] = st.st_blocks * 512
    total = {g: 0 for g in gens}
    own = {g: 0 for g in gens}
    for k, gs in where.items():
        for g in gs:
            total[g] += blocks[k]
        if len(gs) == 1:
            own[next(iter(gs))] += blocks[k]
    return {g: (total[g], own[g]) for g in gens}


def version_of(lock, names):
    for l in lock or []:
        n, v = l.split("=", 1)
        if n in names:
            return f"{n} {v}"
    return "-"


def list_rows(base, run_dir):
    gens = generations(base)
    cur, prev = pointer(base, "current"), pointer(base, "previous")
    records = run_records(run_dir)
    sz = sizes(base, gens)
    rows = []
    for g in gens:
        root = os.path.join(base, g)
        info = read_info(base, g)
        lock = read_lock(root)
        users, pids = users_of(base, g, records)
        built = info.get("built") or calendar.timegm(time.strptime(g[:16], "%Y%m%dT%H%M%SZ"))
        rows.append({
            "generation": g,
            "state": "current" if g == cur else "previous" if g == prev else "",
            "built": time.strftime("%Y-%m-%d %H:%M", time.gmtime(built)),
            "manifest": (read_digest(root) or "-")[:16],
            "browser": version_of(lock, ("chromium", "brave-browser")),
            "xpra": version_of(lock, ("xpra",)),
            "size": sz[g][0],
            "own": sz[g][1],
            "users": users or ([f"{len(pids)} processes"] if pids else []),
        })
    return rows


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def format_list(rows):
    head = ("GENERATION", "", "BUILT (UTC)", "MANIFEST", "BROWSER", "XPRA", "SIZE", "OWN", "USERS")
    table = [head] + [(r["generation"], r["state"], r["built"], r["manifest"], r["browser"], r["xpra"],
                       human(r["size"]), human(r["own"]), ",".join(r["users"]) or "-") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


# --------------------------------------------------------------------------
# Layout upkeep.

def is_plain_rootfs(base):
    """A rootfs of the time before generations: a tree directly at OUTPUT/NAME."""
    return os.path.isdir(os.path.join(base, "usr")) and not os.path.lexists(os.path.join(base, "current"))


def migrate(out_dir, name, say):
    """OUTPUT/NAME holding one rootfs becomes OUTPUT/NAME/GEN with current -> GEN.
    Order: the new directory with its `current` link is made beside NAME; NAME
    is renamed into it as GEN; then it is renamed to NAME. Between the two
    renames (microseconds) NAME does not exist: a start then fails and
    systemd retries it; running containers keep their mount of the old tree,
    which is the same inode afterwards."""
    base = os.path.join(out_dir, name)
    new = os.path.join(out_dir, f".{name}.migrate")
    if os.path.isdir(new) and not os.path.lexists(base):
        os.rename(new, base)  # died between the two renames: finish
        say(f"finished the migration of {base} to generations")
        return pointer(base, "current")
    if not is_plain_rootfs(base):
        return None
    st = os.lstat(base)
    gen = gen_name(st.st_mtime)
    if os.path.lexists(new):
        # A migration that died before moving the tree: only the link and the record.
        for n in os.listdir(new):
            os.unlink(os.path.join(new, n))
        os.rmdir(new)
    os.mkdir(new, 0o755)
    os.symlink(gen, os.path.join(new, "current"))
    write_info(new, gen, {"built": int(st.st_mtime), "manifest_sha256": read_digest(base) or "",
                          "migrated": True})
    os.rename(base, os.path.join(new, gen))
    os.rename(new, base)
    fsync_dir(out_dir)
    say(f"{base} was a single rootfs: it is now generation {gen} (current)")
    return gen
