#include "notify.h"

#include <cstdlib>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/unique_fd.h"

namespace pukaipu {

bool notifySystemd(const std::string& state)
{
	const char* path = std::getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return true;
	struct sockaddr_un sa {};
	sa.sun_family = AF_UNIX;
	size_t len = std::strlen(path);
	if (len >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@'))
		return false;
	std::memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; // abstract namespace
	UniqueFd s(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	if (!s)
		return false;
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	return sendto(s.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), salen) ==
	       (ssize_t)state.size();
}

} // namespace pukaipu
