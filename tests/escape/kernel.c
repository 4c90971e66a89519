/*
 * Kernel facilities: keyrings, bpf, perf, modules, kexec, io_uring, clone3,
 * port I/O, reboot, the clock, acct/swapon, a stacked seccomp filter and
 * personality flags. All must be refused by the filter or by the kernel.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/seccomp.h>
#include <sys/swap.h>
#include <sys/wait.h>

#include "escape.h"

void a_keyctl(void)
{
	expect_fail(syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -4 /* USER_KEYRING */, 0), "keyctl(GET_KEYRING_ID)");
}

void a_add_key(void)
{
	expect_fail(syscall(SYS_add_key, "user", "escape", "x", 1, -2 /* PROCESS_KEYRING */), "add_key");
}

void a_request_key(void)
{
	expect_fail(syscall(SYS_request_key, "user", "escape", NULL, 0), "request_key");
}

void a_bpf(void)
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

void a_perf_event_open(void)
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

void a_init_module(void)
{
	static char image[64];

	expect_fail(syscall(SYS_init_module, image, sizeof(image), ""), "init_module");
}

void a_finit_module(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	expect_fail(syscall(SYS_finit_module, fd, "", 0), "finit_module(/dev/null)");
}

void a_delete_module(void)
{
	expect_fail(syscall(SYS_delete_module, "pukaipu_escape_none", O_NONBLOCK), "delete_module");
}

void a_kexec(void)
{
	struct acc a = { .len = 0 };

	/* Never nr_segments 0 or KEXEC_FILE_UNLOAD: those unload with CAP_SYS_BOOT. */
	acc_fail(&a, syscall(SYS_kexec_load, 0, 1000, NULL, 0), "kexec_load");
	acc_fail(&a, syscall(SYS_kexec_file_load, -1, -1, 0, "", 0), "kexec_file_load");
	acc_say(&a);
}

void a_io_uring(void)
{
	char params[120];
	long fd;

	memset(params, 0, sizeof(params));
	fd = syscall(SYS_io_uring_setup, 1, params);
	if (fd >= 0)
		close((int) fd);
	expect_fail(fd, "io_uring_setup");
}

void a_clone3(void)
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

void a_ioperm(void)
{
	struct acc a = { .len = 0 };

	acc_fail(&a, syscall(SYS_iopl, 3), "iopl(3)");
	acc_fail(&a, syscall(SYS_ioperm, 0x80, 1, 1), "ioperm(0x80)");
	acc_say(&a);
}

void a_reboot(void)
{
	/* A bogus command: EINVAL after the CAP_SYS_BOOT check if allowed. */
	expect_fail(syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, 0x12345678, NULL), "reboot");
}

void a_clock_settime(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	expect_fail(clock_settime(CLOCK_REALTIME, &now), "clock_settime(now)");
}

void a_acct_swapon(void)
{
	struct acc a = { .len = 0 };

	acc_fail(&a, acct("/data/home/.escape-acct"), "acct");
	acc_fail(&a, swapon("/data/home/.escape-swap", 0), "swapon");
	acc_say(&a);
}

void a_seccomp_stack_allow(void)
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

void a_personality(void)
{
	/* READ_IMPLIES_EXEC | ADDR_NO_RANDOMIZE */
	expect_fail(syscall(SYS_personality, 0x0400000 | 0x0040000), "personality(no ASLR, RIE)");
}
