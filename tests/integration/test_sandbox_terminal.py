"""process.terminal: the payload gets a pty from the container's own devpts."""
import unittest

import harness as h


class Terminal(unittest.TestCase):
    def test_payload_has_a_controlling_pty(self):
        b = h.bundle("tty", h.base_spec(["/bin/sh", "-c", "tty; stat -c %u /proc/self/fd/0; echo done"],
                                        terminal=True))
        r = h.run(b)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = [x.strip() for x in r.stdout.splitlines()]
        self.assertEqual(lines[0], "/dev/pts/0")   # the container's devpts, a new instance
        self.assertEqual(lines[1], str(h.UID))     # the slave belongs to the container user
        self.assertEqual(lines[2], "done")

    def test_input_reaches_an_interactive_shell(self):
        b = h.bundle("tty-sh", h.base_spec(["/bin/sh"], terminal=True))
        r = h.run(b, input="echo $((6*7))\nexit 3\n", timeout=30)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("42", r.stdout)

    def test_terminal_without_devpts_is_a_clear_error(self):
        spec = h.base_spec(["/bin/true"], terminal=True)
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/dev/pts"]
        r = h.run(h.bundle("tty-nodevpts", spec))
        self.assertEqual(r.returncode, 125)
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        self.assertIn("/dev/ptmx", r.stderr)


if __name__ == "__main__":
    h.main()
