/* x86_64 syscall numbers and constants that older libc headers may lack,
 * shared by the in-container probes (tests/probe/probe.c and the escape
 * battery in tests/escape/). Each is the kernel's own value; a header that
 * has it wins. */
#pragma once

#if !defined(__x86_64__) || defined(__ILP32__)
#error "the test probes are x86_64-only (x32 / int $0x80 attempts)"
#endif

#include <sys/ioctl.h>
#include <sys/syscall.h>

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_fspick
#define SYS_fspick 433
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif

/* Set in the syscall number, an x32 call; i386 numbers for int $0x80. */
#define X32_SYSCALL_BIT 0x40000000L
#define I386_NR_getpid 20L
#define I386_NR_mount 21L

/* A syscall with a number the libc wrapper would not pass as is (x32). */
static inline long raw_syscall0(long nr)
{
	long ret;

	__asm__ volatile ("syscall" : "=a" (ret) : "a" (nr) : "rcx", "r11", "memory");
	return ret;
}

/* The i386 entry point, from a 64-bit process. */
static inline long int80_syscall5(long nr, long a, long b, long c, long d, long e)
{
	long ret;

	__asm__ volatile ("int $0x80"
			  : "=a" (ret)
			  : "a" (nr), "b" (a), "c" (b), "d" (c), "S" (d), "D" (e)
			  : "r8", "r9", "r10", "r11", "memory");
	return ret;
}
