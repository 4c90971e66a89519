/*
 * The helpers every family and the runner share: errno names, the
 * configuration the host wrote, /proc readers, the verdict pipe (say, the
 * acc accumulator) and socket connects.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "escape.h"

/* ------------------------------------------------------------------ */
/* errno names                                                         */

const char *errname(int e)
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

char g_conf[8192];

const char *conf(const char *key)
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

long conf_long(const char *key)
{
	const char *v = conf(key);

	return *v ? strtol(v, NULL, 10) : -1;
}

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

int read_file(const char *path, char *buf, size_t size)
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
void status_field(const char *pid, const char *key, char *out, size_t size)
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

void ns_link(const char *pid, const char *ns, char *out, size_t size)
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
int cmdline(const char *pid, char *out, size_t size)
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

int is_pid(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

int pid_exists(long pid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%ld", pid);
	return access(path, F_OK) == 0;
}

/* Field 22 (starttime) of /proc/PID/stat, or 0 */
unsigned long long start_time(long pid)
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
int file_has_token(const char *path, int *err)
{
	char buf[4096];
	int n = read_file(path, buf, sizeof(buf));

	*err = n < 0 ? -n : 0;
	return n > 0 && *conf("token") && strstr(buf, conf("token")) != NULL;
}

void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------ */
/* verdicts (written by the attempt child into a pipe)                 */

int g_out = -1;

void say(const char *verdict, const char *fmt, ...)
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

void acc_add(struct acc *a, int escaped, const char *fmt, ...)
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
void acc_fail(struct acc *a, long r, const char *what)
{
	if (r < 0)
		acc_add(a, 0, "%s: %s", what, errname(errno));
	else
		acc_add(a, 1, "%s: SUCCEEDED", what);
}

void acc_say(struct acc *a)
{
	a->buf[a->len] = '\0';
	if (a->escaped)
		ESCAPED("%s", a->buf);
	else
		BLOCKED("%s", a->buf);
}

void expect_fail(long r, const char *what)
{
	struct acc a = { .len = 0 };

	acc_fail(&a, r, what);
	acc_say(&a);
}

/* open for writing (never writes): success is an escape */
void acc_open_w(struct acc *a, const char *path)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd >= 0)
		close(fd);
	acc_fail(a, fd, path);
}

/* open for reading: success is an escape */
void acc_open_r(struct acc *a, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd >= 0)
		close(fd);
	acc_fail(a, fd, path);
}

/* A host file must not be readable; with the token in it, it IS the host's. */
void acc_host_file(struct acc *a, const char *path)
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

int connect_unix(const char *path, int abstract)
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
int connect_tcp(int family, const char *addr, long port)
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
