"""A private copy of the host's user database for tests that create users.

`pukaipu create` runs the real useradd/groupadd, and pukaipu-run looks users
up with getpwnam. So that tests never touch the machine's /etc or /home, every
command runs in its own mount namespace (unshare -m) where a copy of /etc and
an empty /home are bind-mounted over the real ones. The copies persist between
commands, so a user created by one command is seen by the next.
"""
import os
import shutil
import subprocess

import harness as h


class Sysroot:
    def __init__(self, name):
        self.root = os.path.join(h.ensure_tmp(), "sysroot-" + name)
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(self.root, mode=0o755)
        self.etc = os.path.join(self.root, "etc")
        self.home = os.path.join(self.root, "home")
        subprocess.run(["cp", "-a", "/etc", self.etc], check=True)
        os.makedirs(self.home, mode=0o755)
        self.config_dir = os.path.join(self.root, "pukaipu-etc")
        os.makedirs(self.config_dir, mode=0o755)
        self.state = os.path.join(self.root, "state")
        self.run_dir = os.path.join(self.root, "run")
        self.config = os.path.join(self.config_dir, "pukaipu.json")

    def env(self, extra=None):
        e = dict(os.environ)
        e.update({"PUKAIPU_CONFIG": self.config, "PUKAIPU_STATE_DIR": self.state,
                  "PUKAIPU_RUN_DIR": self.run_dir,
                  "PUKAIPU_SECCOMP_CACHE": os.path.join(h.TMP, "seccomp-cache")})
        e.update(extra or {})
        return e

    def wrap(self, argv):
        script = ('mount --bind "$1" /etc && mount --bind "$2" /home && shift 2 && exec "$@"')
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", self.etc, self.home, *argv]

    def run(self, argv, timeout=120, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.wrap(argv), env=self.env(kw.pop("env", None)), timeout=timeout, **kw)

    def popen(self, argv, **kw):
        return subprocess.Popen(self.wrap(argv), env=self.env(kw.pop("env", None)), **kw)

    def passwd(self):
        with open(os.path.join(self.etc, "passwd")) as f:
            return {line.split(":")[0]: line.strip().split(":") for line in f if line.strip()}

    def group_id(self, name):
        """The gid of group `name` in the private /etc; None when it has none."""
        with open(os.path.join(self.etc, "group")) as f:
            for line in f:
                fields = line.strip().split(":")
                if fields[0] == name:
                    return int(fields[2])
        return None

    def host_home(self, user):
        return os.path.join(self.home, user)

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)
