#include "reaper.h"

#include <cerrno>
#include <initializer_list>
#include <sys/wait.h>
#include <unistd.h>

namespace pukaipu {

void forwardedSignals(sigset_t* set) noexcept
{
	sigemptyset(set);
	for (int s : { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD })
		sigaddset(set, s);
}

void reapUntilPayloadExits(pid_t payload) noexcept
{
	sigset_t set;
	forwardedSignals(&set);
	for (;;) {
		// The signals stay blocked (inherited from the parent): PID 1 ignores
		// signals it has no handler for, but blocked ones are queued for us.
		siginfo_t si;
		int sig = sigwaitinfo(&set, &si);
		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			kill(payload, sig);
			continue;
		}
		for (;;) {
			int status;
			pid_t pid = waitpid(-1, &status, WNOHANG);
			if (pid <= 0)
				break;
			if (pid != payload)
				continue; // an orphan, reaped
			_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		}
	}
}

} // namespace pukaipu
