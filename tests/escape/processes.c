/*
 * Host processes, PID 1, signals, ptrace: see, signal, kill or trace what
 * lies outside the instance's PID namespace (the supervisor, a host sentinel
 * of the same uid) and the container's own reaper.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "escape.h"

void a_host_processes_visible(void)
{
	struct dirent *de;
	int n = 0, hits = 0;
	char buf[8192], who[256] = "";
	DIR *d = opendir("/proc"); /* the /proc walk is repeated on purpose: each attempt reads alone */

	if (!d) {
		UNJUDGED("opendir /proc: %s", errname(errno));
		return;
	}
	while ((de = readdir(d))) {
		if (!is_pid(de->d_name))
			continue;
		n++;
		if (cmdline(de->d_name, buf, sizeof(buf)) && *conf("token") && strstr(buf, conf("token"))) {
			hits++;
			snprintf(who, sizeof(who), "pid %.20s: %.100s", de->d_name, buf);
		}
	}
	closedir(d);
	if (hits)
		ESCAPED("the host's sentinel process is visible (%s)", who);
	else
		BLOCKED("%d processes visible, none is the host's sentinel (token in its argv)", n);
}

void a_proc1_root(void)
{
	char comm[64] = "", nspid[64], ppid[32], link[PATH_MAX];
	struct stat s1, sr;
	ssize_t n;

	read_file("/proc/1/comm", comm, sizeof(comm));
	comm[strcspn(comm, "\n")] = '\0';
	status_field("1", "NSpid", nspid, sizeof(nspid));
	status_field("1", "PPid", ppid, sizeof(ppid));
	if (strcmp(nspid, "1") != 0 || strcmp(ppid, "0") != 0) {
		ESCAPED("/proc/1 is not this namespace's init (comm %s, NSpid %s, PPid %s)", comm, nspid, ppid);
		return;
	}
	n = readlink("/proc/1/root", link, sizeof(link) - 1);
	if (n < 0) {
		BLOCKED("/proc/1 is the container's reaper (comm %s, NSpid 1, PPid 0); /proc/1/root: %s", comm,
			errname(errno));
		return;
	}
	if (stat("/proc/1/root/", &s1) == 0 && stat("/", &sr) == 0 && (s1.st_dev != sr.st_dev || s1.st_ino != sr.st_ino))
		ESCAPED("/proc/1/root is not the container's root");
	else
		BLOCKED("/proc/1 is the container's reaper; its root is ours");
}

void a_proc1_mem(void)
{
	struct acc a = { .len = 0 };

	acc_open_r(&a, "/proc/1/mem");
	acc_open_w(&a, "/proc/1/mem");
	acc_say(&a);
}

void a_proc1_fds(void)
{
	DIR *d = opendir("/proc/1/fd");

	if (!d) {
		BLOCKED("opendir /proc/1/fd: %s (the reaper is not dumpable)", errname(errno));
		return;
	}
	closedir(d);
	ESCAPED("the reaper's fds are listable");
}

void a_signal_supervisor(void)
{
	long pid = conf_long("supervisor_pid");
	char comm[64] = "", p[64];

	if (pid <= 0) {
		UNJUDGED("no supervisor_pid in the configuration");
		return;
	}
	if (pid_exists(pid)) {
		snprintf(p, sizeof(p), "/proc/%ld/comm", pid);
		read_file(p, comm, sizeof(comm));
		comm[strcspn(comm, "\n")] = '\0';
		BLOCKED("host pid %ld names a container process here (comm %s), not pukaipu-run", pid, comm);
		return;
	}
	{
		struct acc a = { .len = 0 };
		long fd;

		acc_fail(&a, kill((pid_t) pid, 0), "kill(supervisor, 0)");
		fd = syscall(SYS_pidfd_open, pid, 0);
		if (fd >= 0)
			close((int) fd);
		acc_fail(&a, fd, "pidfd_open(supervisor)");
		acc_say(&a);
	}
}

void a_signal_host_same_uid(void)
{
	long pid = conf_long("sentinel_pid");

	/* A host process running as the instance's own uid: without the PID
	 * namespace, kill() would reach it. */
	if (pid <= 0) {
		UNJUDGED("no sentinel_pid in the configuration");
		return;
	}
	if (pid_exists(pid)) {
		BLOCKED("host pid %ld names a container process here, not the sentinel (not signalled)", pid);
		return;
	}
	expect_fail(kill((pid_t) pid, SIGUSR1), "kill(host sentinel, SIGUSR1)");
}

void a_signal_broadcast(void)
{
	const char *hit = conf("sentinel_hit");
	int r = kill(-1, SIGCONT), e = errno;

	sleep_ms(500);
	if (*hit && access(hit, F_OK) == 0)
		ESCAPED("kill(-1, SIGCONT) reached the host sentinel (%s exists)", hit);
	else
		BLOCKED("kill(-1, SIGCONT): %s, the host sentinel (same uid) got nothing", r < 0 ? errname(e) : "sent in the namespace");
}

void a_kill_pid1(void)
{
	unsigned long long before = start_time(1);
	int r = kill(1, SIGKILL), e = errno;

	sleep_ms(200);
	if (start_time(1) != before)
		ESCAPED("PID 1 is gone after SIGKILL");
	else
		BLOCKED("kill(1, SIGKILL): %s; PID 1 survives (namespace init: the kernel drops it)",
			r < 0 ? errname(e) : "returned 0");
}

void a_reaper_pidfd(void)
{
	struct acc a = { .len = 0 };
	unsigned long long before = start_time(1);
	long pfd = syscall(SYS_pidfd_open, 1, 0);

	if (pfd < 0) {
		BLOCKED("pidfd_open(1): %s", errname(errno));
		return;
	}
	for (int fd = 0; fd < 8; fd++) {
		long r = syscall(SYS_pidfd_getfd, pfd, fd, 0);

		if (r >= 0) {
			close((int) r);
			acc_add(&a, 1, "pidfd_getfd(reaper, %d): GOT IT", fd);
		} else if (fd == 0) {
			acc_add(&a, 0, "pidfd_getfd(reaper, 0..7): %s", errname(errno));
		}
	}
	syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
	sleep_ms(200);
	acc_add(&a, start_time(1) != before, "pidfd_send_signal(reaper, SIGKILL): %s",
		start_time(1) != before ? "PID 1 DIED" : "PID 1 survives");
	close((int) pfd);
	acc_say(&a);
}

void a_ptrace_pid1(void)
{
	expect_fail(ptrace(PTRACE_SEIZE, 1, NULL, NULL), "ptrace(SEIZE, 1)");
}

void a_ptrace_sibling(void)
{
	/* PID 2 is xpra. SEIZE does not stop it; we detach by exiting. */
	expect_fail(ptrace(PTRACE_SEIZE, 2, NULL, NULL), "ptrace(SEIZE, 2 = xpra)");
}

void a_process_vm_readv(void)
{
	char maps[4096], c;
	unsigned long start = 0;
	struct iovec local = { &c, 1 }, remote;

	if (read_file("/proc/2/maps", maps, sizeof(maps)) > 0)
		start = strtoul(maps, NULL, 16);
	remote.iov_base = (void *) start;
	remote.iov_len = 1;
	expect_fail(syscall(SYS_process_vm_readv, 2, &local, 1, &remote, 1, 0), "process_vm_readv(2 = xpra)");
}
