/*
 * Outliving the instance: leave processes behind (a setsid daemon, the init
 * of a nested PID namespace). Only info here; the host judges outlive_instance.
 */

#define _GNU_SOURCE
#include <sched.h>
#include <unistd.h>
#include <sys/wait.h>

#include "escape.h"

/* Two processes that try to stay when the instance stops: a daemon
 * (double fork + setsid) and the init of a nested PID namespace. The host
 * judges (outlive_instance): nothing with the token in its argv may be
 * left once pukaipu-run has exited. */
void a_lingerers(void)
{
	char *const argv[] = { "escape", "linger", (char *) conf("token"), NULL };
	int started = 0;
	pid_t pid = fork();

	if (pid == 0) {
		setsid();
		if (fork() == 0) {
			execv("/data/home/escape", argv);
			_exit(127);
		}
		_exit(0);
	}
	if (pid > 0 && waitpid(pid, NULL, 0) == pid)
		started++;
	pid = fork();
	if (pid == 0) {
		setsid();
		if (unshare(CLONE_NEWUSER | CLONE_NEWPID) < 0)
			_exit(1);
		if (fork() == 0) {
			execv("/data/home/escape", argv);
			_exit(127);
		}
		_exit(0);
	}
	if (pid > 0) {
		int st;

		if (waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
			started++;
	}
	/* Not a verdict: the host decides once the instance is stopped. */
	say("info", "%d of 2 lingerers started (setsid daemon; init of a nested PID namespace)", started);
}
