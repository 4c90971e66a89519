#include "reaper.h"

#include <cerrno>
#include <initializer_list>
#include <sys/wait.h>
#include <unistd.h>

#include "base/sysutil.h"

namespace pukaipu {

namespace {
int exitCodeOf(int status) noexcept
{
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The payload is gone. What it left behind (a browser whose parent was
// xpra, say) gets SIGTERM and kDrainMs to write its state and exit, as it
// would on a normal logout; PID 1's own exit then makes the kernel SIGKILL
// whatever is still there. kill(-1) from PID 1 reaches every process of this
// PID namespace except PID 1 itself, and nothing outside it.
[[noreturn]] void drainAndExit(int code, const sigset_t* set) noexcept
{
	kill(-1, SIGTERM);
	const long long deadline = monotonicMs() + kDrainMs;
	for (;;) {
		int status;
		pid_t pid;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		}
		if (pid < 0 && errno == ECHILD)
			_exit(code); // every process of the namespace has exited
		const long long left = deadline - monotonicMs();
		if (left <= 0)
			_exit(code);
		timespec ts { (time_t)(left / 1000), (long)(left % 1000) * 1000000L };
		siginfo_t si;
		// Further SIGTERM/SIGINT from outside change nothing now: the
		// processes already have theirs, and the parent's grace still runs.
		(void)sigtimedwait(set, &si, &ts);
	}
}
} // namespace

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
			drainAndExit(exitCodeOf(status), &set);
		}
	}
}

} // namespace pukaipu
