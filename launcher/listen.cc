#include "listen.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/net_literal.h"
#include "base/unique_fd.h"

namespace pukaipu {

namespace {
constexpr int kListenFd = 3; // SD_LISTEN_FDS_START

bool isListeningStream(int fd)
{
	int v = 0, type = 0;
	socklen_t len = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0 || !v)
		return false;
	len = sizeof(type);
	return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}
} // namespace

Result<std::string> prepareListenSocket(const std::string& address, uint16_t port)
{
	const char* fds = std::getenv("LISTEN_FDS");
	const char* pid = std::getenv("LISTEN_PID");
	if (fds && pid && std::atoi(pid) == getpid()) {
		if (std::strcmp(fds, "1") != 0)
			return fail("socket activation: LISTEN_FDS=%s, expected exactly one socket", fds);
		if (!isListeningStream(kListenFd))
			return fail("socket activation: fd 3 is not a listening stream socket");
		// Consumed: nothing below us should take these for its own.
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDNAMES");
		return std::string("inherited from systemd");
	}

	auto ip = parseIpLiteral(address);
	if (!ip)
		return fail("listenAddress '%s': not an IPv4 or IPv6 address", address.c_str());
	union {
		sockaddr_in v4;
		sockaddr_in6 v6;
	} sa {};
	socklen_t len;
	if (ip->family == AF_INET) {
		sa.v4.sin_family = AF_INET;
		sa.v4.sin_port = htons(port);
		std::memcpy(&sa.v4.sin_addr, ip->bytes, ip->size());
		len = sizeof(sa.v4);
	} else {
		sa.v6.sin6_family = AF_INET6;
		sa.v6.sin6_port = htons(port);
		std::memcpy(&sa.v6.sin6_addr, ip->bytes, ip->size());
		len = sizeof(sa.v6);
	}
	UniqueFd s(socket(ip->family, SOCK_STREAM | SOCK_CLOEXEC, 0));
	if (!s)
		return failErrno(errno, "socket");
	int one = 1;
	if (setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		return failErrno(errno, "setsockopt SO_REUSEADDR");
	if (bind(s.get(), reinterpret_cast<sockaddr*>(&sa), len) < 0)
		return failErrno(errno, "bind %s port %u", address.c_str(), port);
	if (listen(s.get(), SOMAXCONN) < 0)
		return failErrno(errno, "listen on %s port %u", address.c_str(), port);
	if (s.get() != kListenFd) {
		if (dup3(s.get(), kListenFd, O_CLOEXEC) < 0)
			return failErrno(errno, "move the listening socket to fd 3");
		s.reset(); // the original; fd 3 now holds the socket
	} else {
		(void)s.release(); // fd 3 itself: keep it open
	}
	return "bound " + address + " port " + std::to_string(port);
}

} // namespace pukaipu
