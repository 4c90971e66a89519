// sync: the one channel between parent and child (a SOCK_SEQPACKET pair).
//
// parent → child: Go (id maps and network are ready)
// child → parent: SetupError / ExecError (an Error, then the child exits),
//                 PtyMaster (the container's pty master, as SCM_RIGHTS),
//                 AtGate (OCI create: the payload waits for `start`).
// When the payload's execve succeeds the last child copy of the socket is
// closed by O_CLOEXEC, so the parent reads EOF: "the payload is running".
#pragma once

#include <cstdint>

#include "base/error.h"
#include "base/unique_fd.h"

namespace pukaipu {

enum class MsgKind : uint32_t {
	Go = 1,
	SetupError = 2,
	ExecError = 3,
	PtyMaster = 4,
	AtGate = 5,
};

struct SyncMsg {
	MsgKind kind = MsgKind::Go;
	Error error {};
};

[[nodiscard]] Result<void> sendMsg(int sock, const SyncMsg& msg, int fd = -1) noexcept;

// FD to another process over a connected Unix socket (SCM_RIGHTS): the
// container's pty master to an OCI engine's --console-socket.
[[nodiscard]] Result<void> sendFd(int sock, int fd) noexcept;

// Returns false on EOF. A received fd, if any, is stored in *fd.
[[nodiscard]] Result<bool> recvMsg(int sock, SyncMsg& msg, UniqueFd* fd) noexcept;

} // namespace pukaipu
