/* write_str: the one way the in-container probes (tests/probe, tests/escape)
 * write a short string to a /proc or /sys file. 0, or -errno. */
#ifndef PUKAIPU_TESTS_WRITE_STR_H
#define PUKAIPU_TESTS_WRITE_STR_H

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static inline int write_str(const char *path, const char *s)
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

#endif
