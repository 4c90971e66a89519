// reaper: PID 1 of the container, after the privilege drop.
//
// Forwards SIGTERM, SIGINT, SIGHUP (and QUIT, USR1, USR2, WINCH) to the
// payload, reaps every child (orphans re-parent to PID 1), and exits with the
// payload's status: its exit code, or 128+signal. When PID 1 exits the kernel
// kills everything left in the PID namespace.
#pragma once

#include <signal.h>
#include <sys/types.h>

namespace pukaipu {

// Signals the parent blocks before clone3 and the reaper waits for.
void forwardedSignals(sigset_t* set) noexcept;

[[noreturn]] void reapUntilPayloadExits(pid_t payload) noexcept;

} // namespace pukaipu
