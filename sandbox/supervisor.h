// supervisor: the parent half after the child is released.
//
// Waits on the container's pidfd and a signalfd. SIGTERM/SIGINT/SIGHUP (and
// QUIT, USR1, USR2, WINCH) are forwarded to the container's PID 1; after
// SIGTERM or SIGINT the container gets `graceSeconds` before SIGKILL. With a
// terminal, copies bytes between our stdio and the container's pty master.
// Returns pukaipu-run's exit status: the payload's exit code or 128+signal.
#pragma once

#include <string>
#include <string_view>
#include <sys/types.h>

#include "base/unique_fd.h"

namespace pukaipu {

// `output`, when valid, is the read end of the payload's stdout/stderr pipe
// (RunOptions::isolateStdio): relayed to our stderr line by line.
[[nodiscard]] int supervise(int pidfd, int signalFd, UniqueFd ptyMaster, UniqueFd output, int graceSeconds) noexcept;

// One line of the payload's output as the relay writes it: valid UTF-8 is
// kept, except C0 and C1 control characters and DEL, which become \xNN
// (a tab stays), so nothing the payload prints can move a terminal's cursor,
// change its modes or answer it. No newline is added. Pure.
[[nodiscard]] std::string relayLine(std::string_view raw);

// Child side of a terminal: a pty from the container's own devpts, so the
// slave belongs to the container user. Returns the master; *slave gets the peer.
[[nodiscard]] Result<UniqueFd> openContainerPty(UniqueFd* slave) noexcept;

} // namespace pukaipu
