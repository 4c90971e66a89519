#!/usr/bin/python3 -I
"""pukaipu's xpra: pukaipu-run binds this file, read-only, over the rootfs's
/usr/bin/xpra in every desktop (launcher/xpra_guard.cc), so the session's
`exec xpra start-desktop ...` runs xpra's own code behind these guards.

Every process of the desktop (the browser first) runs as xpra's uid. Without
them, any of them could undo what `pukaipu grant` decided: connect to one of
xpra's Unix sockets and `xpra control` the clipboard direction, file
transfer or new commands; write xpra's memory through /proc/PID/mem (no Yama
here); or make xpra's Python run a usercustomize.py from the home.

In this order, each before anything it protects:
1. `-I` on the #! line: before Python imports anything it ignores every
   PYTHON* variable (PYTHONPATH, PYTHONSTARTUP, ...), the user's
   site-packages (~/.local/lib/python3*/site-packages: usercustomize.py, .pth
   files) and the current directory. The home is writable by the desktop.
2. PR_SET_DUMPABLE 0, before any xpra code runs, so before xpra starts a
   thread, a child or a listener: processes of the same uid can no longer
   ptrace xpra, open /proc/PID/mem or environ, or take its fds (pidfd_getfd,
   e.g. the front door's listening socket). execve makes a process dumpable
   again, so this is xpra's own process only: Xvfb, Qtile and the browser
   (whose sandbox needs it) are unchanged. Until here the container holds
   only its reaper and this process: xpra starts every other one later.
3. Before xpra reads a byte of a new connection: refuse every peer inside the
   container. SO_PEERCRED's pid is translated into xpra's PID namespace: a
   process there, or in a namespace below it (Chromium's), has a pid; a peer
   outside it (the front door's HAProxy, the user's `pukaipu attach` on the
   host) has pid 0. Only Unix sockets are accepted at all.
4. Control commands (`xpra control`, the "command_request" packet): refused
   on every connection, also the host's. pukaipu uses none; the grants are
   xpra's command line.
5. xpra's main, as /usr/bin/xpra runs it.
If 2, 3 or 4 cannot be put in place, a server does not start.
"""
import ctypes
import socket
import struct
import sys

ME = "pukaipu-xpra-guard"
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
SERVER_MODES = ("start", "start-desktop", "upgrade", "upgrade-desktop", "shadow", "proxy")


def die(msg):
    sys.stderr.write(f"{ME}: {msg}\n")
    sys.exit(1)


def not_dumpable():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 or libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0:
        die(f"prctl(PR_SET_DUMPABLE, 0): errno {ctypes.get_errno()}")


def refusal(sock):
    """Why a new connection is refused, or None for a peer outside the container."""
    try:
        if sock is None or sock.family != socket.AF_UNIX:
            return "not a Unix socket"
        pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
    except (OSError, AttributeError, struct.error) as e:
        return f"no peer credentials ({e})"
    if pid != 0:
        return f"pid {pid} (uid {uid}) is a process of the desktop"
    return None


def guard_server():
    from xpra.server.server_core import ServerCore
    accept = ServerCore.handle_new_connection
    if not callable(accept) or not callable(ServerCore.process_control_command):
        raise AttributeError("ServerCore has no handle_new_connection / process_control_command")

    def handle_new_connection(self, conn, socket_info):
        why = refusal(getattr(conn, "_socket", None))
        if why:
            sys.stderr.write(f"{ME}: connection on {socket_info} refused: {why}\n")
            try:
                conn.close()
            except OSError:
                pass
            return None
        return accept(self, conn, socket_info)

    def process_control_command(self, *args):
        sys.stderr.write(f"{ME}: control command {str(args[:1])[:80]} refused\n")
        return 6, "control commands are disabled in pukaipu's desktops"

    ServerCore.handle_new_connection = handle_new_connection
    ServerCore.process_control_command = process_control_command


def main():
    not_dumpable()
    from xpra.platform import init, set_default_name
    set_default_name("Xpra")
    init()
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        guard_server()
    except (ImportError, AttributeError) as e:
        if mode in SERVER_MODES or mode.startswith("_proxy"):
            die(f"cannot guard this xpra's server ({e}): not starting it")
    from xpra.scripts.main import main as xpra_main
    sys.exit(xpra_main(sys.argv[0], sys.argv))


if __name__ == "__main__":
    main()
