// supervisor: the parent half after the child is released.
//
// Waits on the container's pidfd and a signalfd. SIGTERM/SIGINT/SIGHUP (and
// QUIT, USR1, USR2, WINCH) are forwarded to the container's PID 1; after
// SIGTERM or SIGINT the container gets `graceSeconds` before SIGKILL. With a
// terminal, copies bytes between our stdio and the container's pty master.
// Returns pukaipu-run's exit status: the payload's exit code or 128+signal.
#pragma once

#include <sys/types.h>

#include "base/unique_fd.h"

namespace pukaipu {

[[nodiscard]] int supervise(int pidfd, int signalFd, UniqueFd ptyMaster, int graceSeconds) noexcept;

// Child side of a terminal: a pty from the container's own devpts, so the
// slave belongs to the container user. Returns the master; *slave gets the peer.
[[nodiscard]] Result<UniqueFd> openContainerPty(UniqueFd* slave) noexcept;

} // namespace pukaipu
