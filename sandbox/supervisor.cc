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

// Length of the well-formed UTF-8 sequence at s[0], or 0 (overlong forms,
// surrogates and code points above U+10FFFF are not well-formed).
size_t utf8Length(std::string_view s)
{
	const auto b = [&](size_t i) { return (unsigned char)s[i]; };
	const auto cont = [&](size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
	unsigned char c = b(0);
	if (c >= 0xC2 && c <= 0xDF && cont(1))
		return 2;
	if (c >= 0xE0 && c <= 0xEF && cont(1) && cont(2)) {
		if ((c == 0xE0 && b(1) < 0xA0) || (c == 0xED && b(1) >= 0xA0))
			return 0;
		return 3;
	}
	if (c >= 0xF0 && c <= 0xF4 && cont(1) && cont(2) && cont(3)) {
		if ((c == 0xF0 && b(1) < 0x90) || (c == 0xF4 && b(1) >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

// Complete lines of `buf` go to stderr; with `flush`, the rest too. Lines
// longer than kMaxLine are cut into pieces.
constexpr size_t kMaxLine = 4096;
void relayLines(std::string& buf, bool flush)
{
	size_t start = 0;
	for (;;) {
		size_t nl = buf.find('\n', start);
		size_t end = nl == std::string::npos ? buf.size() : nl;
		if (end - start > kMaxLine)
			end = start + kMaxLine;
		else if (nl == std::string::npos && !flush)
			break;
		if (end == start && nl == std::string::npos)
			break;
		std::string line = relayLine(std::string_view(buf).substr(start, end - start)) + "\n";
		for (size_t off = 0; off < line.size();) {
			ssize_t w = write(STDERR_FILENO, line.data() + off, line.size() - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break; // nobody reads our stderr: the output is dropped, the payload runs on
			off += (size_t)w;
		}
		start = end < buf.size() && buf[end] == '\n' ? end + 1 : end;
	}
	buf.erase(0, start);
}

// Reads what the payload wrote; false at EOF (every writer gone).
bool relayOutput(int fd, std::string& buf)
{
	char chunk[8192];
	ssize_t n = read(fd, chunk, sizeof(chunk));
	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	if (n == 0)
		return false;
	buf.append(chunk, (size_t)n);
	relayLines(buf, false);
	return true;
}

void copyWindowSize(int master)
{
	struct winsize ws;
	if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0)
		ioctl(master, TIOCSWINSZ, &ws);
}

} // namespace

std::string relayLine(std::string_view raw)
{
	static const char hex[] = "0123456789abcdef";
	std::string out;
	out.reserve(raw.size());
	for (size_t i = 0; i < raw.size();) {
		unsigned char c = (unsigned char)raw[i];
		if (c >= 0x20 && c < 0x7F) {
			out += (char)c;
			i++;
			continue;
		}
		size_t len = c >= 0x80 ? utf8Length(raw.substr(i)) : 0;
		// U+0080..U+009F (C2 80..C2 9F) are the C1 controls, CSI among them.
		bool c1 = len == 2 && c == 0xC2 && (unsigned char)raw[i + 1] < 0xA0;
		if (len > 0 && !c1) {
			out.append(raw.substr(i, len));
			i += len;
			continue;
		}
		if (c == '\t') {
			out += '\t';
		} else {
			out += "\\x";
			out += hex[c >> 4];
			out += hex[c & 15];
		}
		i++;
	}
	return out;
}

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

int supervise(int pidfd, int signalFd, UniqueFd ptyMaster, UniqueFd output, int graceSeconds) noexcept
{
	std::string pending; // the payload's output since its last newline
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
		struct pollfd fds[5] = {
			{ pidfd, POLLIN, 0 },
			{ signalFd, POLLIN, 0 },
			{ ptyMaster.valid() ? ptyMaster.get() : -1, POLLIN, 0 },
			{ stdinOpen ? STDIN_FILENO : -1, POLLIN, 0 },
			{ output.valid() ? output.get() : -1, POLLIN, 0 },
		};
		int timeout = -1;
		if (killAt >= 0)
			timeout = (int)std::max(0LL, killAt - monotonicMs());
		int n = poll(fds, 5, timeout);
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
		if (fds[4].revents & (POLLIN | POLLHUP | POLLERR)) {
			if (!relayOutput(output.get(), pending))
				output.reset(); // every writer is gone
		}
		if (fds[0].revents & POLLIN) {
			// Drain what the payload wrote before it exited.
			while (ptyMaster.valid()) {
				struct pollfd p { ptyMaster.get(), POLLIN, 0 };
				if (poll(&p, 1, 0) <= 0 || !pump(ptyMaster.get(), STDOUT_FILENO))
					break;
			}
			while (output.valid()) {
				struct pollfd p { output.get(), POLLIN, 0 };
				if (poll(&p, 1, 0) <= 0 || !relayOutput(output.get(), pending))
					break;
			}
			relayLines(pending, true);
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
