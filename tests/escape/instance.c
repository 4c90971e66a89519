/*
 * The instance's own TLS key, fds, handles and environment: write the TLS
 * files, find a directory fd that leads above the container's root, fds and
 * variables inherited from the launcher, file handles (open_by_handle_at).
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "escape.h"

void a_tls_key_write(void)
{
	struct acc a = { .len = 0 };

	acc_open_w(&a, "/run/pukaipu/tls/server.key");
	acc_fail(&a, chmod("/run/pukaipu/tls/server.key", 0600), "chmod");
	acc_fail(&a, unlink("/run/pukaipu/tls/client-ca.crt"), "unlink client-ca.crt");
	acc_fail(&a, rename("/run/pukaipu/tls/server.crt", "/run/pukaipu/tls/x"), "rename server.crt");
	{
		int fd = open("/run/pukaipu/tls/client-ca.crt.new", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

		if (fd >= 0) {
			close(fd);
			unlink("/run/pukaipu/tls/client-ca.crt.new");
		}
		acc_fail(&a, fd, "create a file next to it");
	}
	acc_say(&a);
}

/* Walks ".." from a directory fd up to where it stops. */
static int top_of(int fd, struct stat *top)
{
	int cur = fd;

	for (int i = 0; i < 256; i++) {
		struct stat a, b;
		int up = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);

		if (up < 0 || fstat(cur, &a) < 0 || fstat(up, &b) < 0) {
			if (up >= 0)
				close(up);
			if (cur != fd)
				close(cur);
			return -1;
		}
		if (a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			*top = a;
			close(up);
			if (cur != fd)
				close(cur);
			return 0;
		}
		if (cur != fd)
			close(cur);
		cur = up;
	}
	return -1;
}

void a_held_directories(void)
{
	struct stat root, top, st;
	struct dirent *de, *fe;
	int procs = 0, dirs = 0, denied = 0, outside = 0;
	char where[200] = "";
	DIR *d = opendir("/proc");

	stat("/", &root);
	while (d && (de = readdir(d))) {
		char p[300];
		DIR *fdd;

		if (!is_pid(de->d_name))
			continue;
		procs++;
		/* root, cwd and every fd of every process we can see */
		for (int k = 0; k < 3; k++) {
			const char *links[] = { "root", "cwd", "fd" };

			snprintf(p, sizeof(p), "/proc/%s/%s", de->d_name, links[k]);
			if (k < 2) {
				int fd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);

				if (fd < 0) {
					denied++;
					continue;
				}
				dirs++;
				if (top_of(fd, &top) == 0 && (top.st_dev != root.st_dev || top.st_ino != root.st_ino)) {
					outside++;
					snprintf(where, sizeof(where), "%.190s", p);
				}
				close(fd);
				continue;
			}
			fdd = opendir(p);
			if (!fdd) {
				denied++;
				continue;
			}
			while ((fe = readdir(fdd))) {
				char fp[400];
				int fd;

				if (!is_pid(fe->d_name))
					continue;
				snprintf(fp, sizeof(fp), "%.300s/%.20s", p, fe->d_name);
				if (stat(fp, &st) < 0 || !S_ISDIR(st.st_mode))
					continue;
				fd = open(fp, O_PATH | O_DIRECTORY | O_CLOEXEC);
				if (fd < 0)
					continue;
				dirs++;
				if (top_of(fd, &top) == 0 && (top.st_dev != root.st_dev || top.st_ino != root.st_ino)) {
					outside++;
					snprintf(where, sizeof(where), "%.190s", fp);
				}
				close(fd);
			}
			closedir(fdd);
		}
	}
	if (d)
		closedir(d);
	if (outside)
		ESCAPED("%d directories lead above the container's root, e.g. %s", outside, where);
	else
		BLOCKED("%d processes, %d root/cwd/fd directories: all lead up to the container's root (%d not readable)",
			procs, dirs, denied);
}

/* The fds the probe got at exec, listed by main() before it opened any. */
static char g_exec_fds[512];
static int g_exec_fds_extra;

void list_exec_fds(void)
{
	struct dirent *de;
	char p[300], t[PATH_MAX];
	DIR *d = opendir("/proc/self/fd");

	while (d && (de = readdir(d))) {
		size_t used = strlen(g_exec_fds);
		ssize_t n;

		if (!is_pid(de->d_name) || atoi(de->d_name) == dirfd(d))
			continue;
		snprintf(p, sizeof(p), "/proc/self/fd/%.20s", de->d_name);
		n = readlink(p, t, sizeof(t) - 1);
		t[n > 0 ? n : 0] = '\0';
		if (atoi(de->d_name) > 2)
			g_exec_fds_extra++;
		if (used < sizeof(g_exec_fds) - 64)
			snprintf(g_exec_fds + used, sizeof(g_exec_fds) - used, "%s%.8s->%.40s", used ? "," : "",
				 de->d_name, t);
	}
	if (d)
		closedir(d);
}

void a_exec_fds(void)
{
	if (g_exec_fds_extra)
		ESCAPED("the probe inherited fds beyond stdio at exec: %s", g_exec_fds);
	else
		BLOCKED("the probe got only stdio at exec: %s", g_exec_fds);
}

void a_open_by_handle_forged(void)
{
	/* "shocker": an ext4-style handle of inode 2 (a file system root). */
	struct { unsigned int bytes; int type; uint32_t ino, gen; } fh = { 8, 1, 2, 0 };
	int mfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	long fd = syscall(SYS_open_by_handle_at, mfd, &fh, O_RDONLY);

	if (fd >= 0)
		close((int) fd);
	expect_fail(fd, "open_by_handle_at(forged inode 2)");
}

void a_name_to_handle_then_open(void)
{
	struct { unsigned int bytes; int type; unsigned char h[128]; } fh = { 128, 0, { 0 } };
	int mount_id, mfd;
	long fd;

	if (syscall(SYS_name_to_handle_at, AT_FDCWD, "/data/home", &fh, &mount_id, 0) < 0) {
		BLOCKED("name_to_handle_at(/data/home): %s", errname(errno));
		return;
	}
	mfd = open("/data/home", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	fd = syscall(SYS_open_by_handle_at, mfd, &fh, O_RDONLY);
	if (fd >= 0)
		close((int) fd);
	expect_fail(fd, "name_to_handle_at(/data/home) ok, then open_by_handle_at");
}

void a_host_env_leak(void)
{
	extern char **environ;
	const char *bad[] = { "PUKAIPU_CONFIG=", "PUKAIPU_STATE_DIR=", "PUKAIPU_RUN_DIR=", "PUKAIPU_SECCOMP_CACHE=",
			      "NOTIFY_SOCKET=", "SSH_AUTH_SOCK=", "INVOCATION_ID=", "MESON_TEST_ITERATION=" };
	struct acc a = { .len = 0 };

	for (char **e = environ; *e; e++)
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			if (strncmp(*e, bad[i], strlen(bad[i])) == 0)
				acc_add(&a, 1, "%.80s", *e);
	if (!a.len)
		acc_add(&a, 0, "none of the launcher's or the test's variables (PUKAIPU_CONFIG, NOTIFY_SOCKET, ...)");
	acc_say(&a);
}
