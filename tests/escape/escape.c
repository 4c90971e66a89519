/*
 * escape — the escape battery (issue 8). Runs INSIDE a running pukaipu
 * instance, as the instance's user, started by the instance's own xpra
 * (--start), so under the same namespaces, seccomp filter, no_new_privs and
 * empty capability sets as the browser. It assumes the worst case of the
 * threat model (DESIGN.md §2): arbitrary code as the user in the container.
 *
 *   escape battery CONF OUT   wait for CONF (written by the test on the host)
 *                             and for a browser renderer, then try every
 *                             escape and write the report to OUT (atomically)
 *   escape ids                print euid/egid/CapEff (the setuid targets)
 *   escape linger TOKEN       sleep 10 minutes (outlive_instance, judged
 *                             on the host)
 *
 * Report: one line per attempt, "NAME=blocked DETAIL" or "NAME=ESCAPED
 * DETAIL" ("NAME=ERROR DETAIL" when an attempt could not be judged);
 * "check:NAME=ok|FAILED DETAIL" for what MUST work (the browser's own
 * sandbox, before and after the battery); "info:..." for context;
 * "summary: attempts=N blocked=N escaped=N errors=N" last.
 *
 * Every attempt runs in a forked child with a watchdog: a seccomp kill
 * (SIGSYS) is a block, a hang or another crash is an ERROR. Attempts use
 * real arguments where success would be harmless, and bogus ones (checked
 * after the permission check in the kernel) where it would not be.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "x86_64_compat.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x80
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

#define ATTEMPT_TIMEOUT_S 10

struct mount_attr_compat { uint64_t attr_set, attr_clr, propagation, userns_fd; };

/* ------------------------------------------------------------------ */
/* errno names                                                         */

static const char *errname(int e)
{
	static char buf[4][16];
	static int slot;

	switch (e) {
	case 0: return "ok";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case EXDEV: return "EXDEV";
	case ENODEV: return "ENODEV";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case ENOTTY: return "ENOTTY";
	case ETXTBSY: return "ETXTBSY";
	case EROFS: return "EROFS";
	case ENOSYS: return "ENOSYS";
	case ELOOP: return "ELOOP";
	case ENOTSOCK: return "ENOTSOCK";
	case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case ENETUNREACH: return "ENETUNREACH";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ENOKEY: return "ENOKEY";
	case ESTALE: return "ESTALE";
	case EOVERFLOW: return "EOVERFLOW";
	default:
		slot = (slot + 1) % 4;
		snprintf(buf[slot], sizeof(buf[slot]), "E%d", e);
		return buf[slot];
	}
}

/* ------------------------------------------------------------------ */
/* configuration written by the host side                              */

static char g_conf[8192];

static const char *conf(const char *key)
{
	size_t klen = strlen(key);
	const char *p = g_conf;

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t) (nl - p) : strlen(p);

		if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
			static char vals[8][PATH_MAX];
			static int slot;
			size_t vlen = len - klen - 1;

			if (vlen >= PATH_MAX)
				vlen = PATH_MAX - 1;
			slot = (slot + 1) % 8;
			memcpy(vals[slot], p + klen + 1, vlen);
			vals[slot][vlen] = '\0';
			return vals[slot];
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	return "";
}

static long conf_long(const char *key)
{
	const char *v = conf(key);

	return *v ? strtol(v, NULL, 10) : -1;
}

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static int read_file(const char *path, char *buf, size_t size)
{
	size_t len = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while (len + 1 < size && (n = read(fd, buf + len, size - 1 - len)) > 0)
		len += (size_t) n;
	buf[len] = '\0';
	close(fd);
	return (int) len;
}

/* Value of "Key:" in /proc/PID/status, or "" */
static void status_field(const char *pid, const char *key, char *out, size_t size)
{
	char path[64], buf[8192], *p;
	size_t klen = strlen(key);

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%s/status", pid);
	if (read_file(path, buf, sizeof(buf)) < 0)
		return;
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, key, klen) == 0 && p[klen] == ':') {
			char *v = p + klen + 1, *e;

			v += strspn(v, " \t");
			e = strchr(v, '\n');
			snprintf(out, size, "%.*s", e ? (int) (e - v) : (int) strlen(v), v);
			return;
		}
	}
}

static void ns_link(const char *pid, const char *ns, char *out, size_t size)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%s/ns/%s", pid, ns);
	n = readlink(path, out, size - 1);
	if (n < 0)
		snprintf(out, size, "error:%s", errname(errno));
	else
		out[n] = '\0';
}

/* argv of a process, NULs turned into spaces; 0 if unreadable */
static int cmdline(const char *pid, char *out, size_t size)
{
	char path[64];
	int n, i;

	snprintf(path, sizeof(path), "/proc/%s/cmdline", pid);
	n = read_file(path, out, size - 1);
	if (n <= 0)
		return 0;
	for (i = 0; i < n; i++)
		if (out[i] == '\0')
			out[i] = ' ';
	if (out[n - 1] != ' ')
		out[n++] = ' ', out[n] = '\0';
	return n;
}

static int is_pid(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

static int pid_exists(long pid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%ld", pid);
	return access(path, F_OK) == 0;
}

/* Field 22 (starttime) of /proc/PID/stat, or 0 */
static unsigned long long start_time(long pid)
{
	char path[64], buf[1024], *p;
	unsigned long long v = 0;
	int i;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if (read_file(path, buf, sizeof(buf)) <= 0 || !(p = strrchr(buf, ')')))
		return 0;
	for (i = 0; i < 20 && p; i++)
		p = strchr(p + 1, ' ');
	if (p)
		v = strtoull(p + 1, NULL, 10);
	return v;
}

/* Does the file hold the host's token (i.e. did we read the real thing)? */
static int file_has_token(const char *path, int *err)
{
	char buf[4096];
	int n = read_file(path, buf, sizeof(buf));

	*err = n < 0 ? -n : 0;
	return n > 0 && *conf("token") && strstr(buf, conf("token")) != NULL;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------ */
/* verdicts (written by the attempt child into a pipe)                 */

static int g_out = -1;

static void say(const char *verdict, const char *fmt, ...)
{
	char line[1400];
	int n, i;
	va_list ap;

	n = snprintf(line, sizeof(line), "%s ", verdict);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t) n - 1, fmt, ap);
	va_end(ap);
	if (n > (int) sizeof(line) - 2)
		n = (int) sizeof(line) - 2;
	for (i = 0; i < n; i++)
		if (line[i] == '\n')
			line[i] = ' ';
	line[n++] = '\n';
	if (write(g_out, line, (size_t) n) < 0) {
		/* the parent reports the missing verdict */
	}
}

#define BLOCKED(...) say("blocked", __VA_ARGS__)
#define ESCAPED(...) say("ESCAPED", __VA_ARGS__)
#define UNJUDGED(...) say("ERROR", __VA_ARGS__)

/* Several sub-attempts, one verdict: escaped if any succeeded. */
struct acc {
	char buf[1200];
	size_t len;
	int escaped;
};

static void acc_add(struct acc *a, int escaped, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (a->len && a->len < sizeof(a->buf) - 2)
		a->buf[a->len++] = ';', a->buf[a->len++] = ' ';
	va_start(ap, fmt);
	n = vsnprintf(a->buf + a->len, sizeof(a->buf) - a->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		a->len += (size_t) n;
	if (a->len >= sizeof(a->buf))
		a->len = sizeof(a->buf) - 1;
	a->escaped |= escaped;
}

/* r < 0: blocked with errno; else escaped. */
static void acc_fail(struct acc *a, long r, const char *what)
{
	if (r < 0)
		acc_add(a, 0, "%s: %s", what, errname(errno));
	else
		acc_add(a, 1, "%s: SUCCEEDED", what);
}

static void acc_say(struct acc *a)
{
	a->buf[a->len] = '\0';
	if (a->escaped)
		ESCAPED("%s", a->buf);
	else
		BLOCKED("%s", a->buf);
}

static void expect_fail(long r, const char *what)
{
	struct acc a = { .len = 0 };

	acc_fail(&a, r, what);
	acc_say(&a);
}

/* open for writing (never writes): success is an escape */
static void acc_open_w(struct acc *a, const char *path)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd >= 0)
		close(fd);
	acc_fail(a, fd, path);
}

/* open for reading: success is an escape */
static void acc_open_r(struct acc *a, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd >= 0)
		close(fd);
	acc_fail(a, fd, path);
}

/* A host file must not be readable; with the token in it, it IS the host's. */
static void acc_host_file(struct acc *a, const char *path)
{
	int err;

	if (!*path) {
		acc_add(a, 0, "(no path configured)");
		return;
	}
	if (file_has_token(path, &err))
		acc_add(a, 1, "%s: READ (holds the host's token)", path);
	else if (err)
		acc_add(a, 0, "%s: %s", path, errname(err));
	else
		acc_add(a, 1, "%s: readable (no token, but it must not exist here)", path);
}

static int connect_unix(const char *path, int abstract)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;
	int fd, r, e;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (abstract) {
		strncpy(sa.sun_path + 1, path, sizeof(sa.sun_path) - 2);
		len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path));
	} else {
		strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
		len = sizeof(sa);
	}
	r = connect(fd, (struct sockaddr *) &sa, len);
	e = errno;
	close(fd);
	errno = e;
	return r;
}

/* TCP connect with a 2 s limit; 0 on success, -1 with errno */
static int connect_tcp(int family, const char *addr, long port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct pollfd pf;
	int fd, r, e = 0;
	socklen_t elen = sizeof(e);

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *) &ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t) port);
		if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1)
			return errno = EINVAL, -1;
		len = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t) port);
		if (inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1)
			return errno = EINVAL, -1;
		len = sizeof(*s6);
	}
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	r = connect(fd, (struct sockaddr *) &ss, len);
	if (r < 0 && errno == EINPROGRESS) {
		pf.fd = fd;
		pf.events = POLLOUT;
		if (poll(&pf, 1, 2000) <= 0) {
			e = ETIMEDOUT;
		} else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0) {
			e = errno;
		}
		r = e ? -1 : 0;
	} else if (r < 0) {
		e = errno;
	}
	close(fd);
	errno = e;
	return r;
}

/* ------------------------------------------------------------------ */
/* nested user namespace: root inside, nothing outside                 */

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), e;
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, s, strlen(s));
	e = n < 0 ? errno : 0;
	close(fd);
	return -e;
}

/* unshare(CLONE_NEWUSER) and map ourselves to root. 0, or -errno. */
static int become_nested_root(void)
{
	char map[64];
	uid_t uid = geteuid();
	gid_t gid = getegid();
	int r;

	if (unshare(CLONE_NEWUSER) < 0)
		return -errno;
	if ((r = write_str("/proc/self/setgroups", "deny")) < 0)
		return r;
	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned) uid);
	if ((r = write_str("/proc/self/uid_map", map)) < 0)
		return r;
	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned) gid);
	if ((r = write_str("/proc/self/gid_map", map)) < 0)
		return r;
	return 0;
}

/* For the nested attempts: say why there is nothing to try (no userns at
 * all means Chromium's sandbox is broken, which check:browser_* reports). */
#define NESTED_OR_RETURN()                                                   \
	do {                                                                 \
		int nr_ = become_nested_root();                              \
		if (nr_ < 0) {                                               \
			BLOCKED("no nested root to start from (%s)", errname(-nr_)); \
			return;                                              \
		}                                                            \
	} while (0)

/* ------------------------------------------------------------------ */
/* the attempts: host files                                            */

static void a_host_etc_canary(void)
{
	struct acc a = { .len = 0 };

	/* The /etc pukaipu-run saw (the test's copy of the host's /etc, with a
	 * canary in it), by its name and by its real path on the host. */
	acc_host_file(&a, "/etc/pukaipu-escape-canary");
	acc_host_file(&a, conf("etc_canary_host"));
	acc_say(&a);
}

static void a_host_shadow(void)
{
	struct acc a = { .len = 0 };

	acc_open_r(&a, "/etc/shadow");
	acc_open_r(&a, "/etc/gshadow");
	acc_host_file(&a, conf("etc_shadow_host"));
	acc_say(&a);
}

static void a_host_root_home(void)
{
	struct acc a = { .len = 0 };
	DIR *d = opendir("/root");

	if (d)
		closedir(d);
	acc_fail(&a, d ? 0 : -1, "opendir /root");
	acc_host_file(&a, "/root/.bash_history");
	acc_say(&a);
}

static void a_host_canary_file(void)
{
	struct acc a = { .len = 0 };

	/* World-readable on the host, in world-readable directories: only the
	 * mount namespace keeps it out. */
	acc_host_file(&a, conf("host_canary"));
	acc_say(&a);
}

static void a_host_state_server_key(void)
{
	struct acc a = { .len = 0 };

	acc_host_file(&a, conf("state_server_key"));
	acc_open_r(&a, conf("state_dir"));
	acc_say(&a);
}

static void a_alice_home_host_path(void)
{
	struct acc a = { .len = 0 };

	/* alice's home is 0755 and her secret 0644 for this test: no
	 * permission stands in the way, only the mount namespace. */
	acc_host_file(&a, conf("alice_secret_host"));
	acc_say(&a);
}

static void a_alice_home_by_name(void)
{
	struct acc a = { .len = 0 };

	acc_host_file(&a, "/home/alice/secret");
	acc_host_file(&a, "/data/home/../alice/secret");
	acc_host_file(&a, "/data/alice/secret");
	acc_say(&a);
}

static void a_alice_tls_key(void)
{
	struct acc a = { .len = 0 };

	acc_open_r(&a, conf("alice_tls_key_host"));
	acc_open_r(&a, conf("alice_state_key_host"));
	acc_say(&a);
}

/* Through every process's root and cwd: /proc/PID/root/<host path>. */
static void a_proc_root_paths(void)
{
	struct acc a = { .len = 0 };
	const char *paths[] = { conf("host_canary"), conf("alice_secret_host"), conf("etc_canary_host"),
				"/etc/pukaipu-escape-canary" };
	struct dirent *de;
	int tried = 0, found = 0;
	size_t i;
	DIR *d = opendir("/proc");

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

/* ------------------------------------------------------------------ */
/* host processes, PID 1, signals, ptrace                              */

static void a_host_processes_visible(void)
{
	struct dirent *de;
	int n = 0, hits = 0;
	char buf[8192], who[256] = "";
	DIR *d = opendir("/proc");

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

static void a_proc1_root(void)
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

static void a_proc1_mem(void)
{
	struct acc a = { .len = 0 };

	acc_open_r(&a, "/proc/1/mem");
	acc_open_w(&a, "/proc/1/mem");
	acc_say(&a);
}

static void a_proc1_fds(void)
{
	DIR *d = opendir("/proc/1/fd");

	if (!d) {
		BLOCKED("opendir /proc/1/fd: %s (the reaper is not dumpable)", errname(errno));
		return;
	}
	closedir(d);
	ESCAPED("the reaper's fds are listable");
}

static void a_signal_supervisor(void)
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

static void a_signal_host_same_uid(void)
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

static void a_signal_broadcast(void)
{
	const char *hit = conf("sentinel_hit");
	int r = kill(-1, SIGCONT), e = errno;

	sleep_ms(500);
	if (*hit && access(hit, F_OK) == 0)
		ESCAPED("kill(-1, SIGCONT) reached the host sentinel (%s exists)", hit);
	else
		BLOCKED("kill(-1, SIGCONT): %s, the host sentinel (same uid) got nothing", r < 0 ? errname(e) : "sent in the namespace");
}

static void a_kill_pid1(void)
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

static void a_reaper_pidfd(void)
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

static void a_ptrace_pid1(void)
{
	expect_fail(ptrace(PTRACE_SEIZE, 1, NULL, NULL), "ptrace(SEIZE, 1)");
}

static void a_ptrace_sibling(void)
{
	/* PID 2 is xpra. SEIZE does not stop it; we detach by exiting. */
	expect_fail(ptrace(PTRACE_SEIZE, 2, NULL, NULL), "ptrace(SEIZE, 2 = xpra)");
}

static void a_process_vm_readv(void)
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

/* ------------------------------------------------------------------ */
/* mounts                                                              */

static void a_mount_tmpfs(void)
{
	const char *t = "/data/home/.escape-mnt";

	mkdir(t, 0700);
	expect_fail(mount("tmpfs", t, "tmpfs", 0, NULL), "mount tmpfs on ~/.escape-mnt");
}

static void a_remount_root_rw(void)
{
	struct acc a = { .len = 0 };

	acc_fail(&a, mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL), "remount / read-write");
	acc_fail(&a, mount(NULL, "/usr", NULL, MS_REMOUNT | MS_BIND, NULL), "remount /usr read-write");
	acc_say(&a);
}

static void a_umount_masked(void)
{
	/* Would uncover what is masked; nothing else. */
	expect_fail(umount2("/proc/kcore", MNT_DETACH), "umount2 /proc/kcore");
}

static void a_open_tree(void)
{
	long fd = syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLONE | AT_RECURSIVE);

	if (fd >= 0)
		close((int) fd);
	expect_fail(fd, "open_tree(/, CLONE|RECURSIVE)");
}

static void a_move_mount(void)
{
	/* The capability check comes before the (bogus) fd is looked at. */
	expect_fail(syscall(SYS_move_mount, -1, "", AT_FDCWD, "/tmp", MOVE_MOUNT_F_EMPTY_PATH),
		    "move_mount(-> /tmp)");
}

static void a_fsopen(void)
{
	long fd = syscall(SYS_fsopen, "tmpfs", 0);

	if (fd >= 0)
		close((int) fd);
	expect_fail(fd, "fsopen(tmpfs)");
}

static void a_fspick(void)
{
	long fd = syscall(SYS_fspick, AT_FDCWD, "/", 0);

	if (fd >= 0)
		close((int) fd);
	expect_fail(fd, "fspick(/)");
}

static void a_mount_setattr(void)
{
	struct mount_attr_compat attr = { .attr_clr = MOUNT_ATTR_RDONLY };

	expect_fail(syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &attr, sizeof(attr)),
		    "mount_setattr(/, clear RDONLY)");
}

static void a_pivot_root(void)
{
	/* Non-existent paths: the permission check comes first. */
	expect_fail(syscall(SYS_pivot_root, "/nonexistent-new", "/nonexistent-old"), "pivot_root");
}

static void a_unshare_mntns(void)
{
	expect_fail(unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)");
}

static void a_unshare_other_ns(void)
{
	struct acc a = { .len = 0 };

	acc_fail(&a, unshare(CLONE_NEWIPC), "NEWIPC");
	acc_fail(&a, unshare(CLONE_NEWUTS), "NEWUTS");
	acc_fail(&a, unshare(CLONE_NEWCGROUP), "NEWCGROUP");
	acc_fail(&a, unshare(CLONE_NEWTIME), "NEWTIME");
	acc_say(&a);
}

static void a_setns(void)
{
	struct acc a = { .len = 0 };
	const char *ns[] = { "mnt", "net", "pid", "user", "uts", "ipc", "cgroup" };

	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		char p[64];
		int fd, r;

		snprintf(p, sizeof(p), "/proc/self/ns/%s", ns[i]);
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			acc_add(&a, 0, "open %s: %s", p, errname(errno));
			continue;
		}
		r = setns(fd, 0);
		acc_fail(&a, r, ns[i]);
		close(fd);
	}
	acc_say(&a);
}

static void a_write_rootfs(void)
{
	struct acc a = { .len = 0 };
	int fd;

	acc_open_w(&a, "/usr/lib/pukaipu/xpra-session");
	acc_open_w(&a, "/etc/passwd");
	fd = open("/usr/.escape", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd >= 0) {
		close(fd);
		unlink("/usr/.escape");
	}
	acc_fail(&a, fd, "create /usr/.escape");
	acc_say(&a);
}

static void a_sethostname(void)
{
	expect_fail(sethostname("escaped", 7), "sethostname");
}

/* ------------------------------------------------------------------ */
/* devices                                                             */

static void a_mknod_block(void)
{
	struct acc a = { .len = 0 };
	const char *p = "/tmp/.escape-sda";
	int r = mknod(p, S_IFBLK | 0600, makedev(8, 0));

	acc_fail(&a, r, "mknod /tmp b 8:0");
	if (r == 0)
		unlink(p);
	r = mknod("/data/home/.escape-sda", S_IFBLK | 0600, makedev(8, 0));
	acc_fail(&a, r, "mknod ~ b 8:0");
	if (r == 0)
		unlink("/data/home/.escape-sda");
	acc_say(&a);
}

static void a_mknod_char_mem(void)
{
	const char *p = "/dev/shm/.escape-mem";
	int r = mknod(p, S_IFCHR | 0600, makedev(1, 1));

	if (r == 0)
		unlink(p);
	expect_fail(r, "mknod /dev/shm c 1:1 (mem)");
}

static void a_dev_disks(void)
{
	struct acc a = { .len = 0 };
	const char *nodes[] = { "/dev/sda", "/dev/vda", "/dev/xvda", "/dev/nvme0n1", "/dev/loop0",
				"/dev/loop-control", "/dev/mapper/control", "/dev/dm-0", "/dev/sg0" };
	struct dirent *de;
	DIR *d;

	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		int fd = open(nodes[i], O_RDONLY | O_CLOEXEC | O_NONBLOCK);

		if (fd >= 0) {
			close(fd);
			acc_add(&a, 1, "%s: OPENED", nodes[i]);
		} else if (errno != ENOENT) {
			acc_add(&a, 0, "%s: %s", nodes[i], errname(errno));
		}
	}
	/* Any block device anywhere in /dev? */
	d = opendir("/dev");
	while (d && (de = readdir(d))) {
		char p[300];
		struct stat st;

		snprintf(p, sizeof(p), "/dev/%s", de->d_name);
		if (lstat(p, &st) == 0 && S_ISBLK(st.st_mode))
			acc_add(&a, 1, "block device %s in /dev", p);
	}
	if (d)
		closedir(d);
	if (!a.len)
		acc_add(&a, 0, "no disk nodes (%zu names: ENOENT), no block device in /dev", sizeof(nodes) / sizeof(nodes[0]));
	acc_say(&a);
}

static void a_dev_mem(void)
{
	struct acc a = { .len = 0 };

	acc_open_r(&a, "/dev/mem");
	acc_open_r(&a, "/dev/kmem");
	acc_open_r(&a, "/dev/port");
	acc_say(&a);
}

static void a_dev_kmsg(void)
{
	struct acc a = { .len = 0 };
	char buf[64];

	acc_open_w(&a, "/dev/kmsg");
	acc_fail(&a, klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, sizeof(buf)), "syslog(READ_ALL)");
	acc_say(&a);
}

static void a_dev_userfaultfd(void)
{
	struct acc a = { .len = 0 };

	acc_open_r(&a, "/dev/userfaultfd");
	acc_fail(&a, syscall(SYS_userfaultfd, O_CLOEXEC), "userfaultfd()");
	acc_say(&a);
}

/* ------------------------------------------------------------------ */
/* kernel facilities: keyrings, bpf, perf, modules, kexec, io_uring    */

static void a_keyctl(void)
{
	expect_fail(syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -4 /* USER_KEYRING */, 0), "keyctl(GET_KEYRING_ID)");
}

static void a_add_key(void)
{
	expect_fail(syscall(SYS_add_key, "user", "escape", "x", 1, -2 /* PROCESS_KEYRING */), "add_key");
}

static void a_request_key(void)
{
	expect_fail(syscall(SYS_request_key, "user", "escape", NULL, 0), "request_key");
}

static void a_bpf(void)
{
	struct bpf_insn prog[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr attr;
	long fd;

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insn_cnt = 2;
	attr.insns = (uint64_t) (uintptr_t) prog;
	attr.license = (uint64_t) (uintptr_t) "GPL";
	fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
	if (fd >= 0)
		close((int) fd);
	expect_fail(fd, "bpf(PROG_LOAD socket filter)");
}

static void a_perf_event_open(void)
{
	struct perf_event_attr attr;
	long fd;

	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.exclude_kernel = 1;
	attr.exclude_hv = 1;
	fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
	if (fd >= 0)
		close((int) fd);
	expect_fail(fd, "perf_event_open(self, sw clock)");
}

static void a_init_module(void)
{
	static char image[64];

	expect_fail(syscall(SYS_init_module, image, sizeof(image), ""), "init_module");
}

static void a_finit_module(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	expect_fail(syscall(SYS_finit_module, fd, "", 0), "finit_module(/dev/null)");
}

static void a_delete_module(void)
{
	expect_fail(syscall(SYS_delete_module, "pukaipu_escape_none", O_NONBLOCK), "delete_module");
}

static void a_kexec(void)
{
	struct acc a = { .len = 0 };

	/* Never nr_segments 0 or KEXEC_FILE_UNLOAD: those unload with CAP_SYS_BOOT. */
	acc_fail(&a, syscall(SYS_kexec_load, 0, 1000, NULL, 0), "kexec_load");
	acc_fail(&a, syscall(SYS_kexec_file_load, -1, -1, 0, "", 0), "kexec_file_load");
	acc_say(&a);
}

static void a_io_uring(void)
{
	char params[120];
	long fd;

	memset(params, 0, sizeof(params));
	fd = syscall(SYS_io_uring_setup, 1, params);
	if (fd >= 0)
		close((int) fd);
	expect_fail(fd, "io_uring_setup");
}

static void a_clone3(void)
{
	uint64_t args[11];
	long r;

	memset(args, 0, sizeof(args));
	args[4] = SIGCHLD; /* exit_signal */
	r = syscall(SYS_clone3, args, 88);
	if (r == 0)
		_exit(0);
	if (r > 0) {
		waitpid((pid_t) r, NULL, 0);
		ESCAPED("clone3 created a process (its flags are not filterable)");
		return;
	}
	if (errno == ENOSYS)
		BLOCKED("clone3: ENOSYS (libc falls back to clone, whose flags are filtered)");
	else
		BLOCKED("clone3: %s", errname(errno));
}

static void a_ioperm(void)
{
	struct acc a = { .len = 0 };

	acc_fail(&a, syscall(SYS_iopl, 3), "iopl(3)");
	acc_fail(&a, syscall(SYS_ioperm, 0x80, 1, 1), "ioperm(0x80)");
	acc_say(&a);
}

static void a_reboot(void)
{
	/* A bogus command: EINVAL after the CAP_SYS_BOOT check if allowed. */
	expect_fail(syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, 0x12345678, NULL), "reboot");
}

static void a_clock_settime(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	expect_fail(clock_settime(CLOCK_REALTIME, &now), "clock_settime(now)");
}

static void a_acct_swapon(void)
{
	struct acc a = { .len = 0 };

	acc_fail(&a, acct("/data/home/.escape-acct"), "acct");
	acc_fail(&a, swapon("/data/home/.escape-swap", 0), "swapon");
	acc_say(&a);
}

static void a_seccomp_stack_allow(void)
{
	struct sock_filter allow[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
	struct sock_fprog prog = { 1, allow };
	long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
	struct acc a = { .len = 0 };

	acc_add(&a, 0, "stacked an allow-all filter: %s", r < 0 ? errname(errno) : "ok");
	acc_fail(&a, syscall(SYS_keyctl, 0, -4, 0), "then keyctl");
	acc_fail(&a, unshare(CLONE_NEWNS), "then unshare(NEWNS)");
	acc_say(&a);
}

static void a_personality(void)
{
	/* READ_IMPLIES_EXEC | ADDR_NO_RANDOMIZE */
	expect_fail(syscall(SYS_personality, 0x0400000 | 0x0040000), "personality(no ASLR, RIE)");
}

/* ------------------------------------------------------------------ */
/* terminals, foreign ABIs                                             */

/* A pty of our own that is our controlling terminal: with TIOCSTI
 * allowed, we could type into it. */
static int own_ctty(void)
{
	int m, s;

	if (setsid() < 0)
		return -1;
	m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return -1;
	{
		int unlock = 0;

		ioctl(m, TIOCSPTLCK, &unlock);
	}
	s = ioctl(m, TIOCGPTPEER, O_RDWR | O_CLOEXEC);
	if (s < 0)
		return -1;
	ioctl(s, TIOCSCTTY, 0);
	return s;
}

static void a_tiocsti(void)
{
	struct acc a = { .len = 0 };
	char c = 'x';
	int s = own_ctty(), fd;

	if (s < 0) {
		acc_add(&a, 0, "no pty: %s", errname(errno));
	} else {
		acc_fail(&a, ioctl(s, TIOCSTI, &c), "TIOCSTI on own ctty");
		acc_fail(&a, syscall(SYS_ioctl, s, 0xffffffff00000000UL | (unsigned long) TIOCSTI, &c),
			 "TIOCSTI with high bits");
	}
	for (fd = 0; fd < 3; fd++)
		if (isatty(fd))
			acc_fail(&a, ioctl(fd, TIOCSTI, &c), "TIOCSTI on stdio");
	acc_say(&a);
}

static void a_tioclinux(void)
{
	struct acc a = { .len = 0 };
	char sub = 6; /* TIOCL_GETSHIFTSTATE: harmless */
	int s = own_ctty();

	if (s < 0)
		acc_add(&a, 0, "no pty: %s", errname(errno));
	else
		acc_fail(&a, ioctl(s, TIOCLINUX, &sub), "TIOCLINUX on own ctty");
	acc_say(&a);
}

static void a_x32(void)
{
	long r = raw_syscall0(X32_SYSCALL_BIT | SYS_getpid);

	if (r >= 0)
		ESCAPED("x32 getpid returned %ld: the x32 ABI is reachable past the filter", r);
	else
		BLOCKED("x32 getpid: %s", errname((int) -r));
}

static void a_i386_getpid(void)
{
	long r = int80_syscall5(I386_NR_getpid, 0, 0, 0, 0, 0);

	if (r >= 0)
		ESCAPED("int 0x80 getpid returned %ld: the i386 ABI is reachable past the filter", r);
	else if (r == -EPERM || r == -ENOSYS)
		BLOCKED("int 0x80 getpid: %s", errname((int) -r));
	else
		ESCAPED("int 0x80 getpid reached the kernel (%s)", errname((int) -r));
}

static void a_i386_mount(void)
{
	/* Bogus pointers: EFAULT would mean the call got past the filter. */
	long r = int80_syscall5(I386_NR_mount, 1, 1, 1, 0, 1);

	if (r == -EPERM || r == -ENOSYS)
		BLOCKED("int 0x80 mount: %s", errname((int) -r));
	else
		ESCAPED("int 0x80 mount reached the kernel (%s)", r < 0 ? errname((int) -r) : "ok");
}

/* ------------------------------------------------------------------ */
/* privileges: setuid, file capabilities, capset                       */

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

static void a_rootfs_setuid_files(void)
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

static void a_setuid_root_in_home(void)
{
	run_privileged(conf("suid_root"), "a root-owned setuid binary in the home");
}

static void a_setgid_root_in_home(void)
{
	run_privileged(conf("sgid_root"), "a root-owned setgid binary in the home");
}

static void a_filecap_in_home(void)
{
	run_privileged(conf("filecap"), "a binary with file capabilities in the home");
}

static void a_setuid0(void)
{
	struct acc a = { .len = 0 };

	acc_fail(&a, setuid(0), "setuid(0)");
	acc_fail(&a, setresgid(0, 0, 0), "setresgid(0)");
	acc_fail(&a, setgroups(0, NULL), "setgroups");
	acc_say(&a);
}

static void a_capset_raise(void)
{
	struct { uint32_t version; int pid; } hdr = { 0x20080522, 0 };
	struct { uint32_t eff, prm, inh; } data[2] = { { ~0u, ~0u, ~0u }, { ~0u, ~0u, ~0u } };

	expect_fail(syscall(SYS_capset, &hdr, data), "capset(all)");
}

static void a_rlimit_core_raise(void)
{
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };

	expect_fail(setrlimit(RLIMIT_CORE, &rl), "raise RLIMIT_CORE hard limit");
}

static void a_core_dump(void)
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

static void a_oom_score_adj(void)
{
	int r = write_str("/proc/self/oom_score_adj", "-1000");

	if (r < 0)
		errno = -r;
	expect_fail(r, "oom_score_adj = -1000");
}

/* ------------------------------------------------------------------ */
/* nested user namespace                                               */

static void a_nested_mount(void)
{
	struct acc a = { .len = 0 };

	NESTED_OR_RETURN();
	acc_fail(&a, mount("tmpfs", "/tmp", "tmpfs", 0, NULL), "mount tmpfs /tmp");
	acc_fail(&a, mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL), "remount / rw");
	acc_fail(&a, mount("proc", "/tmp", "proc", 0, NULL), "mount proc");
	acc_say(&a);
}

static void a_nested_mntns(void)
{
	NESTED_OR_RETURN();
	expect_fail(unshare(CLONE_NEWNS), "nested root: unshare(CLONE_NEWNS)");
}

static void a_nested_chown_rootfs(void)
{
	struct acc a = { .len = 0 };

	NESTED_OR_RETURN();
	acc_fail(&a, chown("/usr/bin/env", 0, 0), "chown /usr/bin/env");
	acc_fail(&a, chmod("/usr/bin/env", 04755), "chmod u+s /usr/bin/env");
	acc_fail(&a, lchown("/etc/passwd", 0, 0), "chown /etc/passwd");
	acc_say(&a);
}

static void a_nested_write_rootfs(void)
{
	struct acc a = { .len = 0 };

	NESTED_OR_RETURN();
	acc_open_w(&a, "/usr/lib/pukaipu/browser");
	acc_open_w(&a, "/run/pukaipu/tls/server.key");
	acc_say(&a);
}

static void a_nested_proc_sys(void)
{
	struct acc a = { .len = 0 };

	NESTED_OR_RETURN();
	acc_open_w(&a, "/proc/sys/kernel/core_pattern");
	acc_open_w(&a, "/proc/sys/net/ipv4/ip_forward");
	acc_open_w(&a, "/proc/sysrq-trigger");
	acc_say(&a);
}

static void a_nested_setns(void)
{
	struct acc a = { .len = 0 };
	const char *ns[] = { "mnt", "net", "pid", "user", "uts", "ipc", "cgroup" };
	int fds[7];

	/* The container's own namespaces, opened before becoming nested
	 * root: the closest thing to "the host" a process here can name. */
	for (size_t i = 0; i < 7; i++) {
		char p[64];

		snprintf(p, sizeof(p), "/proc/self/ns/%s", ns[i]);
		fds[i] = open(p, O_RDONLY | O_CLOEXEC);
	}
	NESTED_OR_RETURN();
	for (size_t i = 0; i < 7; i++) {
		if (fds[i] < 0)
			continue;
		acc_fail(&a, setns(fds[i], 0), ns[i]);
	}
	acc_say(&a);
}

static void a_nested_sethostname(void)
{
	NESTED_OR_RETURN();
	expect_fail(sethostname("escaped", 7), "nested root: sethostname (container's UTS ns)");
}

static void a_nested_mknod(void)
{
	int r;

	NESTED_OR_RETURN();
	r = mknod("/tmp/.escape-nested-sda", S_IFBLK | 0600, makedev(8, 0));
	if (r == 0)
		unlink("/tmp/.escape-nested-sda");
	expect_fail(r, "nested root: mknod b 8:0");
}

static void a_nested_dac_override(void)
{
	struct acc a = { .len = 0 };

	NESTED_OR_RETURN();
	/* Root-owned 0600 in the home: its owner is not mapped in here. */
	acc_open_r(&a, conf("root_only"));
	acc_fail(&a, chown(conf("root_only"), 0, 0), "chown root_only");
	acc_say(&a);
}

static void a_nested_map_host_root(void)
{
	struct acc a = { .len = 0 };
	int r;

	if (unshare(CLONE_NEWUSER) < 0) {
		BLOCKED("unshare(CLONE_NEWUSER): %s", errname(errno));
		return;
	}
	write_str("/proc/self/setgroups", "deny");
	r = write_str("/proc/self/uid_map", "0 0 1\n");
	if (r < 0)
		errno = -r;
	acc_fail(&a, r, "uid_map '0 0 1'");
	r = write_str("/proc/self/gid_map", "0 0 1\n");
	if (r < 0)
		errno = -r;
	acc_fail(&a, r, "gid_map '0 0 1'");
	acc_say(&a);
}

static void a_nested_cgroup_release_agent(void)
{
	struct acc a = { .len = 0 };
	const char *d = "/tmp/.escape-cg";

	NESTED_OR_RETURN();
	mkdir(d, 0700);
	acc_fail(&a, mount("cgroup", d, "cgroup", 0, "memory"), "mount cgroup v1 (memory)");
	acc_fail(&a, mount("cgroup", d, "cgroup", 0, "none,name=escape"), "mount cgroup v1 (named)");
	acc_fail(&a, mount("cgroup2", d, "cgroup2", 0, NULL), "mount cgroup2");
	acc_open_w(&a, "/tmp/.escape-cg/release_agent");
	acc_say(&a);
}

static void a_nested_chroot_breakout(void)
{
	struct stat before, after;
	const char *jail = "/tmp/.escape-jail";
	int err;

	stat("/", &before);
	NESTED_OR_RETURN();
	mkdir(jail, 0755);
	if (chroot(jail) < 0) {
		BLOCKED("nested root: chroot: %s", errname(errno));
		return;
	}
	/* The classic: the cwd stays outside the new root; walk up from it. */
	for (int i = 0; i < 64; i++)
		if (chdir("..") < 0)
			break;
	if (chroot(".") < 0) {
		BLOCKED("chroot(.) after the walk: %s", errname(errno));
		return;
	}
	stat("/", &after);
	if (file_has_token(conf("host_canary"), &err) || file_has_token(conf("alice_secret_host"), &err))
		ESCAPED("the chroot walk reached host files");
	else if (after.st_dev != before.st_dev || after.st_ino != before.st_ino)
		ESCAPED("the chroot walk ended above the container's root");
	else
		BLOCKED("the chroot walk ends at the container's own root (pivot_root detached the host's)");
}

static void a_chroot_unprivileged(void)
{
	expect_fail(chroot("/tmp"), "chroot(/tmp) as the user");
}

/* ------------------------------------------------------------------ */
/* cgroups, /sys, /proc                                                */

static void a_cgroup_v1_mount(void)
{
	const char *d = "/tmp/.escape-cg1";

	mkdir(d, 0700);
	expect_fail(mount("cgroup", d, "cgroup", 0, "memory"), "mount cgroup v1 (then write release_agent)");
}

static void a_cgroup_sysfs_write(void)
{
	struct acc a = { .len = 0 };
	const char *agents[] = { "/sys/fs/cgroup/release_agent", "/sys/fs/cgroup/memory/release_agent",
				 "/sys/fs/cgroup/systemd/release_agent", "/sys/fs/cgroup/cgroup.procs",
				 "/sys/fs/cgroup/unified/cgroup.procs" };

	for (size_t i = 0; i < sizeof(agents) / sizeof(agents[0]); i++)
		acc_open_w(&a, agents[i]);
	acc_fail(&a, mkdir("/sys/fs/cgroup/escape", 0755), "mkdir /sys/fs/cgroup/escape");
	acc_say(&a);
}

static void a_write_proc_sys(void)
{
	struct acc a = { .len = 0 };

	acc_open_w(&a, "/proc/sys/kernel/core_pattern");
	acc_open_w(&a, "/proc/sys/kernel/modprobe");
	acc_open_w(&a, "/proc/sys/vm/drop_caches");
	acc_say(&a);
}

static void a_write_sys(void)
{
	struct acc a = { .len = 0 };

	acc_open_w(&a, "/sys/kernel/uevent_helper");
	acc_open_w(&a, "/sys/kernel/mm/transparent_hugepage/enabled");
	acc_open_w(&a, "/sys/power/state");
	acc_say(&a);
}

static void a_sysrq_trigger(void)
{
	struct acc a = { .len = 0 };

	acc_open_w(&a, "/proc/sysrq-trigger"); /* opened, never written */
	acc_say(&a);
}

static void a_proc_kcore(void)
{
	char buf[16];
	int n = read_file("/proc/kcore", buf, sizeof(buf));

	if (n > 0)
		ESCAPED("/proc/kcore: read %d bytes", n);
	else
		BLOCKED("/proc/kcore: %s", n < 0 ? errname(-n) : "masked (empty)");
}

/* ------------------------------------------------------------------ */
/* other instances, the host's network and IPC                         */

static void a_alice_x_abstract(void)
{
	char name[64];

	snprintf(name, sizeof(name), "/tmp/.X11-unix/X%s", conf("alice_display"));
	expect_fail(connect_unix(name, 1), "connect @/tmp/.X11-unix/X<alice> (abstract)");
}

static void a_alice_x_path(void)
{
	char name[64];

	snprintf(name, sizeof(name), "/tmp/.X11-unix/X%s", conf("alice_display"));
	expect_fail(connect_unix(name, 0), "connect /tmp/.X11-unix/X<alice>");
}

static void a_alice_x_tcp(void)
{
	expect_fail(connect_tcp(AF_INET, "127.0.0.1", 6000 + conf_long("alice_display")), "connect 127.0.0.1:6000+N");
}

static void a_alice_tls_port(void)
{
	expect_fail(connect_tcp(AF_INET, "127.0.0.1", conf_long("alice_port")), "connect 127.0.0.1:<alice's port>");
}

static void a_host_loopback_tcp(void)
{
	struct acc a = { .len = 0 };

	acc_fail(&a, connect_tcp(AF_INET, "127.0.0.1", conf_long("host_tcp_port")), "127.0.0.1:<host service>");
	acc_fail(&a, connect_tcp(AF_INET6, "::1", conf_long("host_tcp6_port")), "[::1]:<host service>");
	acc_say(&a);
}

static void a_host_other_address(void)
{
	const char *ip = *conf("host_ip") ? conf("host_ip") : "192.0.2.1";
	char what[96];

	snprintf(what, sizeof(what), "%s:<host service>", ip);
	expect_fail(connect_tcp(AF_INET, ip, conf_long("host_tcp_port")), what);
}

static void a_host_abstract_socket(void)
{
	expect_fail(connect_unix(conf("host_abstract"), 1), "connect @<host abstract socket>");
}

static void a_host_unix_sockets(void)
{
	struct acc a = { .len = 0 };
	const char *paths[] = { conf("host_unix"), "/run/dbus/system_bus_socket", "/run/systemd/private",
				"/run/systemd/notify", "/run/systemd/journal/stdout", "/var/run/docker.sock" };

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (*paths[i])
			acc_fail(&a, connect_unix(paths[i], 0), paths[i]);
	acc_say(&a);
}

static void a_vsock(void)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0)
		close(fd);
	expect_fail(fd, "socket(AF_VSOCK) (the hypervisor)");
}

static void a_raw_sockets(void)
{
	struct acc a = { .len = 0 };
	int fd;

	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		close(fd);
	acc_fail(&a, fd, "AF_PACKET");
	fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	if (fd >= 0)
		close(fd);
	acc_fail(&a, fd, "AF_INET raw");
	acc_say(&a);
}

static void a_host_sysv_ipc(void)
{
	long key = conf_long("sysv_key");
	char buf[16384];
	int id;

	if (key <= 0) {
		UNJUDGED("no sysv_key in the configuration");
		return;
	}
	id = shmget((key_t) key, 0, 0);
	if (id >= 0) {
		ESCAPED("the host's SysV shm segment (key %ld) is visible: id %d", key, id);
		return;
	}
	read_file("/proc/sysvipc/shm", buf, sizeof(buf));
	BLOCKED("shmget(host key %ld): %s (own IPC namespace)", key, errname(errno));
}

/* ------------------------------------------------------------------ */
/* the instance's TLS key, fds, handles, environment                   */

static void a_tls_key_write(void)
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

static void a_held_directories(void)
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

static void list_exec_fds(void)
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

static void a_exec_fds(void)
{
	if (g_exec_fds_extra)
		ESCAPED("the probe inherited fds beyond stdio at exec: %s", g_exec_fds);
	else
		BLOCKED("the probe got only stdio at exec: %s", g_exec_fds);
}

static void a_open_by_handle_forged(void)
{
	/* "shocker": an ext4-style handle of inode 2 (a file system root). */
	struct { unsigned int bytes; int type; uint32_t ino, gen; } fh = { 8, 1, 2, 0 };
	int mfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	long fd = syscall(SYS_open_by_handle_at, mfd, &fh, O_RDONLY);

	if (fd >= 0)
		close((int) fd);
	expect_fail(fd, "open_by_handle_at(forged inode 2)");
}

static void a_name_to_handle_then_open(void)
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

static void a_host_env_leak(void)
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

/* ------------------------------------------------------------------ */
/* outliving the instance                                              */

/* Two processes that try to stay when the instance stops: a daemon
 * (double fork + setsid) and the init of a nested PID namespace. The host
 * judges (outlive_instance): nothing with the token in its argv may be
 * left once pukaipu-run has exited. */
static void a_lingerers(void)
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

/* ------------------------------------------------------------------ */
/* the battery                                                         */

struct attempt {
	const char *name;
	void (*fn)(void);
};

#define A(n) { #n, a_##n }
static const struct attempt attempts[] = {
	/* host files and other users' homes */
	A(host_etc_canary), A(host_shadow), A(host_root_home), A(host_canary_file), A(host_state_server_key),
	A(alice_home_host_path), A(alice_home_by_name), A(alice_tls_key), A(proc_root_paths),
	/* host processes, PID 1, signals, ptrace */
	A(host_processes_visible), A(proc1_root), A(proc1_mem), A(proc1_fds), A(signal_supervisor),
	A(signal_host_same_uid), A(signal_broadcast), A(kill_pid1), A(reaper_pidfd), A(ptrace_pid1),
	A(ptrace_sibling), A(process_vm_readv),
	/* mounts, the new mount API, namespaces */
	A(mount_tmpfs), A(remount_root_rw), A(umount_masked), A(open_tree), A(move_mount), A(fsopen), A(fspick),
	A(mount_setattr), A(pivot_root), A(unshare_mntns), A(unshare_other_ns), A(setns), A(write_rootfs),
	A(sethostname), A(chroot_unprivileged),
	/* devices */
	A(mknod_block), A(mknod_char_mem), A(dev_disks), A(dev_mem), A(dev_kmsg), A(dev_userfaultfd),
	/* kernel facilities */
	A(keyctl), A(add_key), A(request_key), A(bpf), A(perf_event_open), A(init_module), A(finit_module),
	A(delete_module), A(kexec), A(io_uring), A(clone3), A(ioperm), A(reboot), A(clock_settime), A(acct_swapon),
	A(seccomp_stack_allow), A(personality),
	/* terminals and foreign ABIs */
	A(tiocsti), A(tioclinux), A(x32), A(i386_getpid), A(i386_mount),
	/* privileges */
	A(rootfs_setuid_files), A(setuid_root_in_home), A(setgid_root_in_home), A(filecap_in_home), A(setuid0),
	A(capset_raise), A(rlimit_core_raise), A(core_dump), A(oom_score_adj),
	/* a nested user namespace: root in there, nothing outside */
	A(nested_mount), A(nested_mntns), A(nested_chown_rootfs), A(nested_write_rootfs), A(nested_proc_sys),
	A(nested_setns), A(nested_sethostname), A(nested_mknod), A(nested_dac_override), A(nested_map_host_root),
	A(nested_cgroup_release_agent), A(nested_chroot_breakout),
	/* cgroups, /sys, /proc */
	A(cgroup_v1_mount), A(cgroup_sysfs_write), A(write_proc_sys), A(write_sys), A(sysrq_trigger), A(proc_kcore),
	/* other instances, the host's network and IPC */
	A(alice_x_abstract), A(alice_x_path), A(alice_x_tcp), A(alice_tls_port), A(host_loopback_tcp),
	A(host_other_address), A(host_abstract_socket), A(host_unix_sockets), A(vsock), A(raw_sockets),
	A(host_sysv_ipc),
	/* the instance's TLS key, fds, handles, environment */
	A(tls_key_write), A(held_directories), A(exec_fds), A(open_by_handle_forged), A(name_to_handle_then_open),
	A(host_env_leak),
};

/* Run after the battery; they report info, not a verdict. */
static const struct attempt setups[] = { { "lingerers", a_lingerers } };
#undef A

static int g_report = -1;
static int g_blocked, g_escaped, g_errors;

static void emit(const char *fmt, ...)
{
	char line[1600];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n > (int) sizeof(line) - 2)
		n = (int) sizeof(line) - 2;
	if (n > 0 && line[n - 1] != '\n')
		line[n++] = '\n';
	if (write(g_report, line, (size_t) n) < 0 || write(1, line, (size_t) n) < 0) {
		/* best effort: the host reads the report file */
	}
}

static void run_attempt(const struct attempt *a)
{
	char text[1500];
	size_t len = 0;
	int pfd[2], status = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0) {
		emit("%s=ERROR pipe: %s", a->name, errname(errno));
		g_errors++;
		return;
	}
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		g_out = pfd[1];
		alarm(ATTEMPT_TIMEOUT_S);
		a->fn();
		_exit(0);
	}
	close(pfd[1]);
	while (len < sizeof(text) - 1 && (n = read(pfd[0], text + len, sizeof(text) - 1 - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		len += (size_t) n;
	}
	text[len] = '\0';
	close(pfd[0]);
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	text[strcspn(text, "\n")] = '\0';
	if (!*text) {
		if (pid > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) {
			snprintf(text, sizeof(text), "blocked killed by SIGSYS (seccomp)");
		} else {
			snprintf(text, sizeof(text), "ERROR no verdict (%s %d)",
				 pid < 0 ? "fork failed" : WIFSIGNALED(status) ? "signal" : "exit",
				 pid < 0 ? errno : WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		}
	}
	if (strncmp(text, "info ", 5) == 0) {
		emit("info:%s=%s", a->name, text + 5);
		return;
	}
	if (strncmp(text, "blocked ", 8) == 0)
		g_blocked++;
	else if (strncmp(text, "ESCAPED ", 8) == 0)
		g_escaped++;
	else
		g_errors++;
	emit("%s=%s", a->name, text);
}

/* ------------------------------------------------------------------ */
/* the browser's own sandbox, seen from here                           */

static int browser_sandbox(const char *label, int quiet)
{
	char own_user[128], own_pid[128], own_net[128], own_filters[32];
	char buf[16384], detail[600] = "";
	int renderers = 0, good = 0, no_sandbox = 0;
	struct dirent *de;
	DIR *d;

	ns_link("self", "user", own_user, sizeof(own_user));
	ns_link("self", "pid", own_pid, sizeof(own_pid));
	ns_link("self", "net", own_net, sizeof(own_net));
	status_field("self", "Seccomp_filters", own_filters, sizeof(own_filters));
	d = opendir("/proc");
	while (d && (de = readdir(d))) {
		char u[128], p[128], nt[128], sc[16], sf[16], nspid[64];
		int ok;

		if (!is_pid(de->d_name) || !cmdline(de->d_name, buf, sizeof(buf)))
			continue;
		if (strstr(buf, "--no-sandbox "))
			no_sandbox++;
		if (!strstr(buf, "--type=renderer "))
			continue;
		renderers++;
		ns_link(de->d_name, "user", u, sizeof(u));
		ns_link(de->d_name, "pid", p, sizeof(p));
		ns_link(de->d_name, "net", nt, sizeof(nt));
		status_field(de->d_name, "Seccomp", sc, sizeof(sc));
		status_field(de->d_name, "Seccomp_filters", sf, sizeof(sf));
		status_field(de->d_name, "NSpid", nspid, sizeof(nspid));
		ok = strncmp(u, "user:[", 6) == 0 && strcmp(u, own_user) != 0 && strncmp(p, "pid:[", 5) == 0 &&
		     strcmp(p, own_pid) != 0 && strncmp(nt, "net:[", 5) == 0 && strcmp(nt, own_net) != 0 &&
		     strchr(nspid, '\t') != NULL && strcmp(sc, "2") == 0 && atoi(sf) > atoi(own_filters);
		good += ok;
		if (strlen(detail) < sizeof(detail) - 200)
			snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail),
				 " [pid %s: own userns %s, pidns %s, netns %s, NSpid '%s', Seccomp %s, filters %s]",
				 de->d_name, strcmp(u, own_user) ? "yes" : "NO", strcmp(p, own_pid) ? "yes" : "NO",
				 strcmp(nt, own_net) ? "yes" : "NO", nspid, sc, sf);
	}
	if (d)
		closedir(d);
	if (quiet)
		return renderers;
	emit("check:browser_sandbox_%s=%s renderers=%d sandboxed=%d no_sandbox_flags=%d own_filters=%s%s", label,
	     renderers > 0 && good == renderers && !no_sandbox ? "ok" : "FAILED", renderers, good, no_sandbox,
	     own_filters, detail);
	return renderers;
}

static void self_info(void)
{
	char uid[64], nnp[8], sc[8], sf[8], cap[32], bnd[32];

	status_field("self", "Uid", uid, sizeof(uid));
	status_field("self", "NoNewPrivs", nnp, sizeof(nnp));
	status_field("self", "Seccomp", sc, sizeof(sc));
	status_field("self", "Seccomp_filters", sf, sizeof(sf));
	status_field("self", "CapEff", cap, sizeof(cap));
	status_field("self", "CapBnd", bnd, sizeof(bnd));
	for (char *c = uid; *c; c++)
		if (*c == '\t')
			*c = ',';
	emit("check:confined=%s pid=%d uid=%s NoNewPrivs=%s Seccomp=%s Seccomp_filters=%s CapEff=%s CapBnd=%s",
	     strcmp(nnp, "1") == 0 && strcmp(sc, "2") == 0 && strcmp(cap, "0000000000000000") == 0 &&
	     strcmp(bnd, "0000000000000000") == 0 ? "ok" : "FAILED",
	     (int) getpid(), uid, nnp, sc, sf, cap, bnd);
	{
		char want[32];

		snprintf(want, sizeof(want), "%s,", conf("uid"));
		emit("check:runs_as_the_user=%s uid=%s expected=%s", strncmp(uid, want, strlen(want)) == 0 ? "ok" : "FAILED",
		     uid, conf("uid"));
	}
	/* The way the X attempts connect must work on our own display. */
	{
		char own[64];
		const char *disp = getenv("DISPLAY");

		snprintf(own, sizeof(own), "/tmp/.X11-unix/X%s", disp && disp[0] == ':' ? disp + 1 : "100");
		int r = connect_unix(own, 1);

		emit("check:own_x_display_reachable=%s connect @%s: %s", r == 0 ? "ok" : "FAILED", own,
		     r == 0 ? "ok" : errname(errno));
	}
}

/* The methods the attempts use work where they are allowed to. */
static void controls(void)
{
	int err, fd;

	emit("check:token_readable_in_home=%s the reader finds the token in /data/home/escape.conf",
	     file_has_token("/data/home/escape.conf", &err) ? "ok" : "FAILED");
	/* Not an attempt: the other processes here are the same user in the
	 * same instance (xpra, the browser), no boundary lies between them. */
	fd = open("/proc/2/mem", O_RDONLY | O_CLOEXEC);
	emit("info:sibling_proc_mem=%s /proc/2/mem (xpra, same uid, same instance: not a boundary; "
	     "the ptrace syscall itself is filtered)", fd >= 0 ? "openable" : errname(errno));
	if (fd >= 0)
		close(fd);
}

static int cmd_battery(const char *conf_path, const char *out_path)
{
	char tmp[PATH_MAX];
	struct timespec t0, t1;
	int waited = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* The configuration comes from the host once the instance started. */
	while (read_file(conf_path, g_conf, sizeof(g_conf)) <= 0 || !strstr(g_conf, "\nend=1")) {
		if (waited++ > 600) {
			fprintf(stderr, "escape: no configuration at %s after 60 s\n", conf_path);
			return 1;
		}
		sleep_ms(100);
	}
	snprintf(tmp, sizeof(tmp), "%s.partial", out_path);
	g_report = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (g_report < 0) {
		fprintf(stderr, "escape: open %s: %s\n", tmp, strerror(errno));
		return 1;
	}
	/* The attack happens while the browser runs, its sandbox on. */
	waited = 0;
	while (browser_sandbox("", 1) == 0 && waited++ < 900)
		sleep_ms(100);
	sleep_ms(1000); /* renderers started at the last moment settle */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	emit("info:waited_for_browser_s=%.1f", (double) (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	self_info();
	controls();
	browser_sandbox("before", 0);

	for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++)
		run_attempt(&attempts[i]);

	browser_sandbox("after", 0);
	for (size_t i = 0; i < sizeof(setups) / sizeof(setups[0]); i++)
		run_attempt(&setups[i]);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	emit("summary: attempts=%zu blocked=%d escaped=%d errors=%d seconds=%.1f",
	     sizeof(attempts) / sizeof(attempts[0]), g_blocked, g_escaped, g_errors,
	     (double) (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	close(g_report);
	if (rename(tmp, out_path) < 0) {
		fprintf(stderr, "escape: rename %s: %s\n", out_path, strerror(errno));
		return 1;
	}
	return 0;
}

static int cmd_ids(void)
{
	char cap[32];

	status_field("self", "CapEff", cap, sizeof(cap));
	printf("euid=%u egid=%u capeff=%s\n", (unsigned) geteuid(), (unsigned) getegid(), *cap ? cap : "ffff");
	return 0;
}

int main(int argc, char **argv)
{
	list_exec_fds(); /* first: before anything opens one */
	signal(SIGPIPE, SIG_IGN);
	if (argc == 4 && strcmp(argv[1], "battery") == 0)
		return cmd_battery(argv[2], argv[3]);
	if (argc == 2 && strcmp(argv[1], "ids") == 0)
		return cmd_ids();
	if (argc == 3 && strcmp(argv[1], "linger") == 0) {
		sleep(600);
		return 0;
	}
	fprintf(stderr, "usage: escape battery CONF OUT | escape ids | escape linger TOKEN\n");
	return 2;
}
