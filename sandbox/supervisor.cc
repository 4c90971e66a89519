#include "supervisor.h"
#include "base/sysutil.h"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

namespace pukaipu {

namespace {

int pidfdSend(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0);
}

// Copies what is readable from `from` to `to`; false on EOF/error of `from`.
bool pump(int from, int to)
{
	char buf[8192];
	ssize_t n = read(from, buf, sizeof(buf));
	if (n <= 0)
		return n < 0 && (errno == EINTR || errno == EAGAIN);
	for (ssize_t off = 0; off < n;) {
		ssize_t w = write(to, buf + off, (size_t)(n - off));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		off += w;
	}
	return true;
}

void copyWindowSize(int master)
{
	struct winsize ws;
	if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0)
		ioctl(master, TIOCSWINSZ, &ws);
}

} // namespace

Result<UniqueFd> openContainerPty(UniqueFd* slave) noexcept
{
	int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return failErrno(errno, "open '/dev/ptmx' in the container (process.terminal needs a devpts at /dev/pts)");
	UniqueFd master(m);
	int unlock = 0;
	if (ioctl(m, TIOCSPTLCK, &unlock) < 0)
		return failErrno(errno, "unlock pty");
	// TIOCGPTPEER opens the slave through the master, not by a path name.
	int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s < 0)
		return failErrno(errno, "open pty peer");
	slave->reset(s);
	return master;
}

int supervise(int pidfd, int signalFd, UniqueFd ptyMaster, int graceSeconds) noexcept
{
	struct termios saved;
	bool rawTty = false;
	bool stdinOpen = ptyMaster.valid();
	if (ptyMaster.valid() && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
		struct termios raw = saved;
		cfmakeraw(&raw);
		rawTty = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
		copyWindowSize(ptyMaster.get());
	}

	long long killAt = -1;
	for (;;) {
		struct pollfd fds[4] = {
			{ pidfd, POLLIN, 0 },
			{ signalFd, POLLIN, 0 },
			{ ptyMaster.valid() ? ptyMaster.get() : -1, POLLIN, 0 },
			{ stdinOpen ? STDIN_FILENO : -1, POLLIN, 0 },
		};
		int timeout = -1;
		if (killAt >= 0)
			timeout = (int)std::max(0LL, killAt - monotonicMs());
		int n = poll(fds, 4, timeout);
		if (n < 0 && errno != EINTR)
			break;
		if (killAt >= 0 && monotonicMs() >= killAt) {
			pidfdSend(pidfd, SIGKILL); // kills PID 1, and so the whole PID namespace
			killAt = -1;
		}
		if (n <= 0)
			continue;
		if (fds[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(signalFd, &si, sizeof(si)) == sizeof(si)) {
				int sig = (int)si.ssi_signo;
				if (sig == SIGWINCH && ptyMaster.valid())
					copyWindowSize(ptyMaster.get());
				if (sig != SIGCHLD)
					pidfdSend(pidfd, sig);
				if ((sig == SIGTERM || sig == SIGINT) && killAt < 0)
					killAt = monotonicMs() + graceSeconds * 1000LL;
			}
		}
		if (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) {
			if (!pump(ptyMaster.get(), STDOUT_FILENO))
				ptyMaster.reset(); // slave side closed (EIO): payload is gone
		}
		if (fds[3].revents & (POLLIN | POLLHUP | POLLERR)) {
			if (!ptyMaster.valid() || !pump(STDIN_FILENO, ptyMaster.get()))
				stdinOpen = false;
		}
		if (fds[0].revents & POLLIN) {
			// Drain what the payload wrote before it exited.
			while (ptyMaster.valid()) {
				struct pollfd p { ptyMaster.get(), POLLIN, 0 };
				if (poll(&p, 1, 0) <= 0 || !pump(ptyMaster.get(), STDOUT_FILENO))
					break;
			}
			break;
		}
	}
	if (rawTty)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);

	siginfo_t info {};
	if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED) < 0)
		return 128 + SIGKILL;
	if (info.si_code == CLD_EXITED)
		return info.si_status;
	return 128 + info.si_status;
}

} // namespace pukaipu
