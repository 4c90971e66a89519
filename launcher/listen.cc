#include "listen.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/unique_fd.h"

namespace pukaipu {

namespace {
constexpr int kListenFd = 3; // SD_LISTEN_FDS_START

bool isListeningUnixStream(int fd)
{
	int listening = 0, type = 0, domain = 0;
	socklen_t len = sizeof(listening);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening)
		return false;
	len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
		return false;
	len = sizeof(domain);
	return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX;
}

// A socket already at the path: a session that is gone left it (removed
// here), or one still accepts on it (an error: never take its place).
Result<void> removeStaleSocket(const std::string& path, const sockaddr_un& sa)
{
	struct stat st;
	if (lstat(path.c_str(), &st) < 0) {
		if (errno == ENOENT)
			return {};
		return failErrno(errno, "stat '%s'", path.c_str());
	}
	if (!S_ISSOCK(st.st_mode))
		return fail("'%s' exists and is not a socket", path.c_str());
	// Non-blocking: a live session with a full backlog answers EAGAIN
	// instead of making us wait.
	UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
	if (!probe)
		return failErrno(errno, "socket");
	if (connect(probe.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) == 0 || errno == EAGAIN)
		return fail("'%s': a session already listens there", path.c_str());
	if (errno != ECONNREFUSED)
		return failErrno(errno, "connect to '%s'", path.c_str());
	if (unlink(path.c_str()) < 0 && errno != ENOENT)
		return failErrno(errno, "remove the stale socket '%s'", path.c_str());
	return {};
}

} // namespace

// The front door's group id; -1 when the group does not exist.
Result<gid_t> frontDoorGid()
{
	struct group gr, *res = nullptr;
	char buf[4096];
	int rc = getgrnam_r(kFrontDoorGroup, &gr, buf, sizeof(buf), &res);
	if (rc != 0)
		return failErrno(rc, "look up group '%s'", kFrontDoorGroup);
	return res ? res->gr_gid : static_cast<gid_t>(-1);
}

Result<ListenSocket> prepareListenSocket(const std::string& path)
{
	const char* fds = std::getenv("LISTEN_FDS");
	const char* pid = std::getenv("LISTEN_PID");
	if (fds && pid && std::atoi(pid) == getpid()) {
		if (std::strcmp(fds, "1") != 0)
			return fail("socket activation: LISTEN_FDS=%s, expected exactly one socket", fds);
		if (!isListeningUnixStream(kListenFd))
			return fail("socket activation: fd 3 is not a listening Unix stream socket "
				    "(pukaipu@.socket listens on RUN_DIR/USER/desktop.sock)");
		// Consumed: nothing below us should take these for its own.
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDNAMES");
		return ListenSocket { "inherited from systemd", "" };
	}

	sockaddr_un sa {};
	sa.sun_family = AF_UNIX;
	if (path.size() >= sizeof(sa.sun_path))
		return fail("'%s': too long for a Unix socket (at most %zu bytes)", path.c_str(), sizeof(sa.sun_path) - 1);
	std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
	TRYV(removeStaleSocket(path, sa));
	TRY(gid, frontDoorGid());
	ListenSocket out { "bound " + path, "" };
	if (*gid == static_cast<gid_t>(-1))
		out.warning = "no group '" + std::string(kFrontDoorGroup) + "' on this host: '" + path +
			      "' is root's alone, the front door cannot connect to it";

	UniqueFd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	if (!s)
		return failErrno(errno, "socket");
	// Created 0600 (we are single-threaded: the umask is ours), so nobody
	// else can connect before the group and mode below are set.
	const mode_t oldMask = umask(0177);
	const int bound = bind(s.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof(sa));
	const int bindErr = errno;
	umask(oldMask);
	if (bound < 0)
		return failErrno(bindErr, "bind '%s'", path.c_str());
	if (*gid != static_cast<gid_t>(-1)) {
		if (lchown(path.c_str(), 0, *gid) < 0)
			return failErrno(errno, "chown '%s' to root:%s", path.c_str(), kFrontDoorGroup);
		if (chmod(path.c_str(), 0660) < 0)
			return failErrno(errno, "chmod 0660 '%s'", path.c_str());
	}
	if (listen(s.get(), SOMAXCONN) < 0)
		return failErrno(errno, "listen on '%s'", path.c_str());
	if (s.get() != kListenFd) {
		if (dup3(s.get(), kListenFd, O_CLOEXEC) < 0)
			return failErrno(errno, "move the listening socket to fd 3");
		s.reset(); // the original; fd 3 now holds the socket
	} else {
		(void)s.release(); // fd 3 itself: keep it open
	}
	return out;
}

} // namespace pukaipu
