/*
 * Terminals and foreign ABIs: type into a controlling terminal (TIOCSTI,
 * TIOCLINUX) and reach the kernel past the filter through the x32 and i386
 * system call entry points.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "escape.h"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

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

void a_tiocsti(void)
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

void a_tioclinux(void)
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

void a_x32(void)
{
	long r = raw_syscall0(X32_SYSCALL_BIT | SYS_getpid);

	if (r >= 0)
		ESCAPED("x32 getpid returned %ld: the x32 ABI is reachable past the filter", r);
	else
		BLOCKED("x32 getpid: %s", errname((int) -r));
}

void a_i386_getpid(void)
{
	long r = int80_syscall5(I386_NR_getpid, 0, 0, 0, 0, 0);

	if (r >= 0)
		ESCAPED("int 0x80 getpid returned %ld: the i386 ABI is reachable past the filter", r);
	else if (r == -EPERM || r == -ENOSYS)
		BLOCKED("int 0x80 getpid: %s", errname((int) -r));
	else
		ESCAPED("int 0x80 getpid reached the kernel (%s)", errname((int) -r));
}

void a_i386_mount(void)
{
	/* Bogus pointers: EFAULT would mean the call got past the filter. */
	long r = int80_syscall5(I386_NR_mount, 1, 1, 1, 0, 1);

	if (r == -EPERM || r == -ENOSYS)
		BLOCKED("int 0x80 mount: %s", errname((int) -r));
	else
		ESCAPED("int 0x80 mount reached the kernel (%s)", r < 0 ? errname((int) -r) : "ok");
}
