// reaper: PID 1 of the container, after the privilege drop.
//
// Forwards SIGTERM, SIGINT, SIGHUP (and QUIT, USR1, USR2, WINCH) to the
// payload, reaps every child (orphans re-parent to PID 1), and exits with the
// payload's status: its exit code, or 128+signal. Before exiting it sends
// SIGTERM to every process the payload left behind and reaps them for at most
// kDrainMs (a browser then shuts down as on a logout: profile written,
// SingletonLock removed). When PID 1 exits the kernel kills whatever is left.
#pragma once

#include <signal.h>
#include <sys/types.h>

namespace pukaipu {

inline constexpr long long kDrainMs = 2000;

// Signals the parent blocks before clone3 and the reaper waits for.
void forwardedSignals(sigset_t* set) noexcept;

[[noreturn]] void reapUntilPayloadExits(pid_t payload) noexcept;

} // namespace pukaipu
