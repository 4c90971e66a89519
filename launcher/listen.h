// listen: the desktop's listening socket, as fd 3 for the sandbox. It is the
// Unix socket RUN_DIR/USER/desktop.sock that the front door (HAProxy, which
// terminates TLS) connects to; xpra serves plain HTTP and WebSocket on it.
#pragma once

#include <string>
#include <sys/types.h>

#include "base/error.h"

namespace pukaipu {

// The group that may connect to the desktop sockets besides root: the front
// door's. Without it on the host, the socket is root's alone.
inline constexpr const char* kFrontDoorGroup = "haproxy";

// The front door's group id; -1 when the group does not exist.
[[nodiscard]] Result<gid_t> frontDoorGid();

struct ListenSocket {
	std::string how;     // for logs: "inherited from systemd" / "bound /run/pukaipu/john/desktop.sock"
	std::string warning; // non-fatal, e.g. no front-door group on this host
};

// Makes fd 3 the listening socket: inherited from systemd socket activation
// (LISTEN_FDS=1 and LISTEN_PID = our pid; it must be a listening AF_UNIX
// stream socket) when present, otherwise a Unix stream socket bound here at
// `path`, owned by root and the front-door group, mode 0660. A socket left
// at `path` by a session that is gone is replaced; one that still accepts
// connections is an error. Either way the container never binds anything of
// the host itself.
[[nodiscard]] Result<ListenSocket> prepareListenSocket(const std::string& path);

} // namespace pukaipu
