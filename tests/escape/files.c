/*
 * Host files and other users' homes: read the host's /etc, shadow, root's
 * home, the state keys and alice's secret, by name, by host path and through
 * /proc/PID/root and cwd. Only the mount namespace is in the way.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>

#include "escape.h"

void a_host_etc_canary(void)
{
	struct acc a = { .len = 0 };

	/* The /etc pukaipu-run saw (the test's copy of the host's /etc, with a
	 * canary in it), by its name and by its real path on the host. */
	acc_host_file(&a, "/etc/pukaipu-escape-canary");
	acc_host_file(&a, conf("etc_canary_host"));
	acc_say(&a);
}

void a_host_shadow(void)
{
	struct acc a = { .len = 0 };

	acc_open_r(&a, "/etc/shadow");
	acc_open_r(&a, "/etc/gshadow");
	acc_host_file(&a, conf("etc_shadow_host"));
	acc_say(&a);
}

void a_host_root_home(void)
{
	struct acc a = { .len = 0 };
	DIR *d = opendir("/root");

	if (d)
		closedir(d);
	acc_fail(&a, d ? 0 : -1, "opendir /root");
	acc_host_file(&a, "/root/.bash_history");
	acc_say(&a);
}

void a_host_canary_file(void)
{
	struct acc a = { .len = 0 };

	/* World-readable on the host, in world-readable directories: only the
	 * mount namespace keeps it out. */
	acc_host_file(&a, conf("host_canary"));
	acc_say(&a);
}

void a_host_state_server_key(void)
{
	struct acc a = { .len = 0 };

	acc_host_file(&a, conf("state_server_key"));
	acc_open_r(&a, conf("state_dir"));
	acc_say(&a);
}

void a_alice_home_host_path(void)
{
	struct acc a = { .len = 0 };

	/* alice's home is 0755 and her secret 0644 for this test: no
	 * permission stands in the way, only the mount namespace. */
	acc_host_file(&a, conf("alice_secret_host"));
	acc_say(&a);
}

void a_alice_home_by_name(void)
{
	struct acc a = { .len = 0 };

	acc_host_file(&a, "/home/alice/secret");
	acc_host_file(&a, "/data/home/../alice/secret");
	acc_host_file(&a, "/data/alice/secret");
	acc_say(&a);
}

void a_alice_tls_key(void)
{
	struct acc a = { .len = 0 };

	acc_open_r(&a, conf("alice_tls_key_host"));
	acc_open_r(&a, conf("alice_state_key_host"));
	acc_say(&a);
}

/* Through every process's root and cwd: /proc/PID/root/<host path>. */
void a_proc_root_paths(void)
{
	struct acc a = { .len = 0 };
	const char *paths[] = { conf("host_canary"), conf("alice_secret_host"), conf("etc_canary_host"),
				"/etc/pukaipu-escape-canary" };
	struct dirent *de;
	int tried = 0, found = 0;
	size_t i;
	DIR *d = opendir("/proc"); /* the /proc walk is repeated on purpose: each attempt reads alone */

	if (!d) {
		UNJUDGED("opendir /proc: %s", errname(errno));
		return;
	}
	while ((de = readdir(d))) {
		if (!is_pid(de->d_name))
			continue;
		for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
			char p[PATH_MAX];
			int err;

			if (!*paths[i])
				continue;
			for (int k = 0; k < 2; k++) {
				snprintf(p, sizeof(p), "/proc/%s/%s%s", de->d_name, k ? "cwd/../../../../../.." : "root",
					 paths[i]);
				tried++;
				if (file_has_token(p, &err)) {
					found++;
					if (found < 4)
						acc_add(&a, 1, "%s: READ", p);
				}
			}
		}
	}
	closedir(d);
	if (!found)
		acc_add(&a, 0, "%d paths through /proc/*/root and /proc/*/cwd: none reaches a host file", tried);
	acc_say(&a);
}
