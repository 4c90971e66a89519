/*
 * Privileges: setuid, setgid and file-capability binaries (in the rootfs and
 * planted in the home), setuid(0), capset, raised rlimits, core dumps and
 * oom_score_adj.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include "escape.h"

static int g_suid_found;

static int suid_walk(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void) ftw;
	if (type == FTW_F && S_ISREG(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID))) {
		if (g_suid_found < 3)
			fprintf(stderr, "escape: setuid/setgid file %s\n", path);
		g_suid_found++;
	}
	return 0;
}

void a_rootfs_setuid_files(void)
{
	const char *dirs[] = { "/usr", "/etc", "/opt", "/var", "/srv" };
	struct statvfs sv;

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		nftw(dirs[i], suid_walk, 32, FTW_PHYS | FTW_MOUNT);
	if (g_suid_found) {
		ESCAPED("%d setuid/setgid files in the rootfs (the builder must strip them)", g_suid_found);
		return;
	}
	BLOCKED("no setuid/setgid file in the rootfs; / is %s", statvfs("/", &sv) == 0 && (sv.f_flag & ST_NOSUID)
		? "nosuid" : "suid-capable (no_new_privs still applies)");
}

/* Runs PATH ids; parses "euid=... egid=... capeff=...". */
static void run_privileged(const char *path, const char *what)
{
	int pfd[2], status;
	char buf[256] = "";
	ssize_t n;
	pid_t pid;
	unsigned euid = 1, egid = 1;
	unsigned long long capeff = 0;

	if (!*path) {
		UNJUDGED("no path configured for %s", what);
		return;
	}
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		UNJUDGED("pipe: %s", errname(errno));
		return;
	}
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		execl(path, path, "ids", (char *) NULL);
		printf("exec=%s\n", errname(errno));
		fflush(stdout);
		_exit(127);
	}
	close(pfd[1]);
	n = read(pfd[0], buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(pfd[0]);
	waitpid(pid, &status, 0);
	buf[strcspn(buf, "\n")] = '\0';
	if (sscanf(buf, "euid=%u egid=%u capeff=%llx", &euid, &egid, &capeff) != 3) {
		BLOCKED("%s: did not run with privileges (%s)", what, buf);
		return;
	}
	{
		struct statvfs sv;
		const char *home = statvfs("/data/home", &sv) == 0 && (sv.f_flag & ST_NOSUID) ? "nosuid" : "suid-capable";

		if (euid == 0 || egid == 0 || capeff != 0)
			ESCAPED("%s ran privileged: %s", what, buf);
		else
			BLOCKED("%s ran as the user: %s (home mount %s, no_new_privs %s)", what, buf, home,
				prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? "on" : "OFF");
	}
}

void a_setuid_root_in_home(void)
{
	run_privileged(conf("suid_root"), "a root-owned setuid binary in the home");
}

void a_setgid_root_in_home(void)
{
	run_privileged(conf("sgid_root"), "a root-owned setgid binary in the home");
}

void a_filecap_in_home(void)
{
	run_privileged(conf("filecap"), "a binary with file capabilities in the home");
}

void a_setuid0(void)
{
	struct acc a = { .len = 0 };

	acc_fail(&a, setuid(0), "setuid(0)");
	acc_fail(&a, setresgid(0, 0, 0), "setresgid(0)");
	acc_fail(&a, setgroups(0, NULL), "setgroups");
	acc_say(&a);
}

void a_capset_raise(void)
{
	struct { uint32_t version; int pid; } hdr = { 0x20080522, 0 };
	struct { uint32_t eff, prm, inh; } data[2] = { { ~0u, ~0u, ~0u }, { ~0u, ~0u, ~0u } };

	expect_fail(syscall(SYS_capset, &hdr, data), "capset(all)");
}

void a_rlimit_core_raise(void)
{
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };

	expect_fail(setrlimit(RLIMIT_CORE, &rl), "raise RLIMIT_CORE hard limit");
}

void a_core_dump(void)
{
	const char *dir = "/data/home/.escape-core";
	struct rlimit rl;
	int status, n = 0;
	pid_t pid;
	struct dirent *de;
	DIR *d;

	mkdir(dir, 0700);
	getrlimit(RLIMIT_CORE, &rl);
	rl.rlim_cur = rl.rlim_max; /* as much as we may */
	setrlimit(RLIMIT_CORE, &rl);
	pid = fork();
	if (pid == 0) {
		if (chdir(dir) == 0)
			abort();
		_exit(1);
	}
	waitpid(pid, &status, 0);
	d = opendir(dir);
	while (d && (de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	if (d)
		closedir(d);
	if (n)
		ESCAPED("a crash left %d file(s) in %s", n, dir);
	else
		BLOCKED("RLIMIT_CORE %llu/%llu; SIGABRT left no core (%s)", (unsigned long long) rl.rlim_cur,
			(unsigned long long) rl.rlim_max, WCOREDUMP(status) ? "kernel says dumped" : "not dumped");
}

void a_oom_score_adj(void)
{
	int r = write_str("/proc/self/oom_score_adj", "-1000");

	if (r < 0)
		errno = -r;
	expect_fail(r, "oom_score_adj = -1000");
}
