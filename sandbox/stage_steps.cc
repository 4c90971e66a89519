// stage_steps: the small steps of a container's start that stages.cc calls
// by name (the order lives there, not here).
#include "stage_steps.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sync.h"

namespace pukaipu {

// --- parent ------------------------------------------------------------------

Result<void> writeProcFile(pid_t pid, const char* name, const std::string& data)
{
	char path[64];
	std::snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return failErrno(errno, "open '%s'", path);
	UniqueFd f(fd);
	const ssize_t n = write(fd, data.data(), data.size());
	if (n < 0)
		return failErrno(errno, "write '%s'", path);
	if ((size_t)n != data.size()) // id maps must be written in one write()
		return fail("write '%s': short write (%zd of %zu bytes)", path, n, data.size());
	return {};
}

Result<void> assertSingleThreaded()
{
	// clone3 copies only the calling thread; a lock held by another thread
	// would stay locked forever in the child. Checked, not assumed.
	struct stat st;
	if (stat("/proc/self/task", &st) < 0)
		return failErrno(errno, "stat /proc/self/task");
	if (st.st_nlink != 3)
		return fail("pukaipu-run must be single-threaded before clone3 (found %lu threads)",
			    (unsigned long)st.st_nlink - 2);
	return {};
}

// --- child -------------------------------------------------------------------

Result<void> loopbackUp() noexcept
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return failErrno(errno, "network: socket");
	UniqueFd sock(s);
	struct ifreq ifr {};
	std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return failErrno(errno, "network: get flags of lo");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		return failErrno(errno, "network: bring lo up");
	return {};
}

// Finds args[0] on the spec's PATH and execs it. Returns only on failure,
// with the errno that explains best (ENOENT unless a candidate existed).
int execPayload(const Spec& s, char* const* argv, char* const* envp) noexcept
{
	const char* file = argv[0];
	if (std::strchr(file, '/')) {
		execve(file, argv, envp);
		return errno;
	}
	const char* path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (const auto& e : s.process.env)
		if (e.rfind("PATH=", 0) == 0)
			path = e.c_str() + 5;
	int best = ENOENT;
	for (const char* p = path;; p++) {
		const char* end = std::strchr(p, ':');
		size_t len = end ? (size_t)(end - p) : std::strlen(p);
		char cand[PATH_MAX];
		if (std::snprintf(cand, sizeof(cand), "%.*s/%s", (int)len, len ? p : ".", file) < (int)sizeof(cand)) {
			execve(cand, argv, envp);
			if (errno != ENOENT && errno != ENOTDIR)
				best = errno;
		}
		if (!end)
			break;
		p = end;
	}
	return best;
}

// OCI create's start gate (step 16). The fifo (ROOT/ID/exec.fifo, 0622 in a
// root-only directory) is reached through our O_PATH fd at gateFd: its
// directory is never searched from in here. A non-blocking open first
// proves that the reopen will work (ENXIO: no reader yet) while the parent
// still listens; then AtGate, and the blocking open returns once `start`
// opens the other end.
Result<void> waitAtStartGate(int sync, int gateFd) noexcept
{
	char path[64];
	std::snprintf(path, sizeof(path), "/proc/self/fd/%d", gateFd);
	int probe = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (probe >= 0) {
		close(probe);
		return fail("start gate: the exec fifo already has a reader");
	}
	if (errno != ENXIO)
		return failErrno(errno, "start gate: reopen the exec fifo through %s (is /proc mounted?)", path);
	SyncMsg m;
	m.kind = MsgKind::AtGate;
	TRYV(sendMsg(sync, m));
	int fd;
	do
		fd = open(path, O_WRONLY | O_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		die("start gate: open the exec fifo"); // nobody listens any more: stderr is all there is
	if (write(fd, "0", 1) != 1)
		die("start gate: write the exec fifo");
	close(fd);
	close(gateFd);
	return {};
}

} // namespace pukaipu
