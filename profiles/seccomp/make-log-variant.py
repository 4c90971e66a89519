#!/usr/bin/env python3
"""Generates log.json from default.json, so the two profiles never drift.

log.json is default.json with defaultAction SCMP_ACT_LOG: whatever the
default profile would refuse is allowed and logged to the kernel log, which
shows what a new browser version needs. The explicit denials (mount API,
keyrings, io_uring, ptrace, TIOCSTI, clone3 -> ENOSYS, ...) stay: they are
rules, not the default.

Usage:
  make-log-variant.py            rewrite log.json next to this script
  make-log-variant.py --check    exit 1 if log.json is not up to date
  make-log-variant.py DEFAULT LOG [--check]
"""
import json
import pathlib
import sys

COMMENT = (
    "pukaipu log-mode seccomp profile: GENERATED from default.json by "
    "make-log-variant.py, do not edit. Same rules as default.json, but "
    "syscalls it would deny by default are allowed and logged (SCMP_ACT_LOG); "
    "the explicit denials stay."
)


def render(default_text):
    profile = json.loads(default_text)
    if profile.get("defaultAction") != "SCMP_ACT_ERRNO":
        raise SystemExit("default.json: expected defaultAction SCMP_ACT_ERRNO")
    out = {"comment": COMMENT}
    for key, value in profile.items():
        if key == "comment":
            continue
        if key == "defaultAction":
            value = "SCMP_ACT_LOG"
        if key == "defaultErrnoRet":
            continue  # only valid with SCMP_ACT_ERRNO
        out[key] = value
    return json.dumps(out, indent="\t", ensure_ascii=False) + "\n"


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    here = pathlib.Path(__file__).resolve().parent
    if len(args) not in (0, 2):
        raise SystemExit(__doc__)
    src = pathlib.Path(args[0]) if args else here / "default.json"
    dst = pathlib.Path(args[1]) if args else here / "log.json"
    text = render(src.read_text(encoding="utf-8"))
    if check:
        current = dst.read_text(encoding="utf-8") if dst.exists() else ""
        if current != text:
            print(f"{dst} is out of date: run {pathlib.Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    dst.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
