/*
 * probe — test helper that runs INSIDE a pukaipu container.
 *
 * It reports facts about its own environment as "key=value" lines on
 * stdout so integration tests can assert on them.  It is linked
 * statically (no NSS, no dlopen) so it runs in a rootfs that contains
 * nothing but busybox and this binary.
 *
 * Build:  gcc -std=gnu11 -static -O2 -Wall -Wextra -Wshadow -Wformat=2 \
 *             -Werror -o probe probe.c
 *
 * Subcommands (see usage()):
 *   status | syscalls | fds | write PATH | read PATH | ls DIR |
 *   exit N | sleep SECONDS | kill-self [SIGNUM] | exec PATH [ARGS...] |
 *   spawn-orphans N | signal-parent
 *
 * Conventions:
 *   - results are "ok" or an errno NAME ("EPERM", "ENOSYS", ...; unknown
 *     numbers print as "E<n>"), or "SIG<NAME>" when an attempt that runs
 *     in a forked child was killed by a signal;
 *   - every syscall attempt uses harmless arguments (bad pointers, bad
 *     fds, invalid flags) so that "allowed by seccomp" and "denied" differ
 *     only in the errno, in the spirit of bubblewrap's tests/try-syscall.c.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "write_str.h"
#include "x86_64_compat.h"


/* An address the kernel cannot copy from: syscalls fail with EFAULT. */
#define WRONG_POINTER ((void *) 1)
/* Per-attempt watchdog for the forked children of "probe syscalls". */
#define ATTEMPT_TIMEOUT_S 5

/* ------------------------------------------------------------------ */
/* errno / signal names                                                */

struct errname { int num; const char *name; };
#define E(x) { x, #x }
static const struct errname errnames[] = {
	E(EPERM), E(ENOENT), E(ESRCH), E(EINTR), E(EIO), E(ENXIO), E(E2BIG),
	E(ENOEXEC), E(EBADF), E(ECHILD), E(EAGAIN), E(ENOMEM), E(EACCES),
	E(EFAULT), E(ENOTBLK), E(EBUSY), E(EEXIST), E(EXDEV), E(ENODEV),
	E(ENOTDIR), E(EISDIR), E(EINVAL), E(ENFILE), E(EMFILE), E(ENOTTY),
	E(ETXTBSY), E(EFBIG), E(ENOSPC), E(ESPIPE), E(EROFS), E(EMLINK),
	E(EPIPE), E(EDOM), E(ERANGE), E(EDEADLK), E(ENAMETOOLONG), E(ENOLCK),
	E(ENOSYS), E(ENOTEMPTY), E(ELOOP), E(ENOMSG), E(EIDRM), E(ENOSTR),
	E(ENODATA), E(ETIME), E(ENOSR), E(ENOLINK), E(EPROTO), E(EBADMSG),
	E(EOVERFLOW), E(EILSEQ), E(EUSERS), E(ENOTSOCK), E(EDESTADDRREQ),
	E(EMSGSIZE), E(EPROTOTYPE), E(ENOPROTOOPT), E(EPROTONOSUPPORT),
	E(ESOCKTNOSUPPORT), E(EOPNOTSUPP), E(EPFNOSUPPORT), E(EAFNOSUPPORT),
	E(EADDRINUSE), E(EADDRNOTAVAIL), E(ENETDOWN), E(ENETUNREACH),
	E(ENETRESET), E(ECONNABORTED), E(ECONNRESET), E(ENOBUFS), E(EISCONN),
	E(ENOTCONN), E(ESHUTDOWN), E(ETIMEDOUT), E(ECONNREFUSED), E(EHOSTDOWN),
	E(EHOSTUNREACH), E(EALREADY), E(EINPROGRESS), E(ESTALE), E(EDQUOT),
	E(ECANCELED), E(ENOKEY), E(EKEYEXPIRED), E(EKEYREVOKED),
	E(EKEYREJECTED), E(EOWNERDEAD), E(ENOTRECOVERABLE), E(ERFKILL),
	E(EHWPOISON), E(ENOMEDIUM), E(EMEDIUMTYPE), E(EREMOTEIO),
	/* kernel-internal values that occasionally leak to user space */
	{ 512, "ERESTARTSYS" }, { 513, "ERESTARTNOINTR" },
	{ 514, "ERESTARTNOHAND" }, { 515, "ENOIOCTLCMD" },
	{ 516, "ERESTART_RESTARTBLOCK" }, { 517, "EPROBE_DEFER" },
	{ 518, "EOPENSTALE" }, { 519, "ENOPARAM" }, { 524, "ENOTSUPP" },
};
#undef E

static const char *errname(int e)
{
	static char buf[2][16];
	static int slot;
	size_t i;

	if (e == 0)
		return "ok";
	for (i = 0; i < sizeof(errnames) / sizeof(errnames[0]); i++)
		if (errnames[i].num == e)
			return errnames[i].name;
	slot ^= 1;
	snprintf(buf[slot], sizeof(buf[slot]), "E%d", e);
	return buf[slot];
}

struct signame { int num; const char *name; };
#define S(x) { x, #x }
static const struct signame signames[] = {
	S(SIGHUP), S(SIGINT), S(SIGQUIT), S(SIGILL), S(SIGTRAP), S(SIGABRT),
	S(SIGBUS), S(SIGFPE), S(SIGKILL), S(SIGUSR1), S(SIGSEGV), S(SIGUSR2),
	S(SIGPIPE), S(SIGALRM), S(SIGTERM), S(SIGSTKFLT), S(SIGCHLD),
	S(SIGCONT), S(SIGSTOP), S(SIGTSTP), S(SIGTTIN), S(SIGTTOU), S(SIGURG),
	S(SIGXCPU), S(SIGXFSZ), S(SIGVTALRM), S(SIGPROF), S(SIGWINCH),
	S(SIGIO), S(SIGPWR), S(SIGSYS),
};
#undef S

static const char *signame(int sig)
{
	static char buf[16];
	size_t i;

	for (i = 0; i < sizeof(signames) / sizeof(signames[0]); i++)
		if (signames[i].num == sig)
			return signames[i].name;
	snprintf(buf, sizeof(buf), "SIG%d", sig);
	return buf;
}

/* "ok" if r >= 0, else the errno name of the current errno. */
static const char *res(long r)
{
	return r < 0 ? errname(errno) : "ok";
}

/* Same for raw syscalls that return -errno. */
static const char *rawres(long r)
{
	return (r < 0 && r >= -4095) ? errname((int) -r) : "ok";
}

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static int parse_long(const char *s, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	return (errno || end == s || *end) ? -1 : 0;
}

/* Read a small file into buf (NUL-terminated); returns 0 or -errno. */
static int read_small(const char *path, char *buf, size_t size)
{
	ssize_t n;
	size_t len = 0;
	int fd, e;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (len + 1 < size) {
		n = read(fd, buf + len, size - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			e = errno;
			close(fd);
			return -e;
		}
		if (n == 0)
			break;
		len += (size_t) n;
	}
	buf[len] = '\0';
	close(fd);
	return 0;
}

static void chomp(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *) a, y = *(const int *) b;

	return (x > y) - (x < y);
}

/* Print "fds=0,1,2" for this process (excluding the dir fd itself). */
static void print_fds(void)
{
	int fds[4096];
	size_t n = 0, i;
	struct dirent *de;
	DIR *d;
	int self;

	d = opendir("/proc/self/fd");
	if (!d) {
		printf("fds=%s\n", errname(errno));
		return;
	}
	self = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		long v;

		if (de->d_name[0] == '.')
			continue;
		if (parse_long(de->d_name, &v) < 0 || v == self)
			continue;
		if (n < sizeof(fds) / sizeof(fds[0]))
			fds[n++] = (int) v;
	}
	closedir(d);
	qsort(fds, n, sizeof(fds[0]), cmp_int);
	printf("fds=");
	for (i = 0; i < n; i++)
		printf("%s%d", i ? "," : "", fds[i]);
	printf("\n");
}

/* ------------------------------------------------------------------ */
/* probe status                                                        */

static void print_proc_status_keys(void)
{
	static const char *const keys[] = {
		"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
		"NoNewPrivs", "Seccomp", "Seccomp_filters",
	};
	char line[512];
	FILE *f;
	size_t i;

	f = fopen("/proc/self/status", "re");
	if (!f) {
		printf("proc_status=%s\n", errname(errno));
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':'), *v;

		if (!colon)
			continue;
		*colon = '\0';
		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			if (strcmp(line, keys[i]) != 0)
				continue;
			v = colon + 1;
			v += strspn(v, " \t");
			chomp(v);
			printf("%s=%s\n", keys[i], v);
		}
	}
	fclose(f);
}

static void print_procs(void)
{
	struct dirent *de;
	long n = 0, v;
	DIR *d;

	d = opendir("/proc");
	if (!d) {
		printf("procs=%s\n", errname(errno));
		return;
	}
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] >= '1' && de->d_name[0] <= '9' &&
		    parse_long(de->d_name, &v) == 0)
			n++;
	closedir(d);
	printf("procs=%ld\n", n);
}

static void print_apparmor(void)
{
	/* With LSM stacking the AppArmor-specific file is authoritative. */
	static const char *const paths[] = {
		"/proc/self/attr/apparmor/current", "/proc/self/attr/current",
	};
	char buf[512];
	size_t i;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		if (read_small(paths[i], buf, sizeof(buf)) < 0)
			continue;
		chomp(buf);
		if (buf[0] == '\0')
			continue;
		printf("apparmor=%s\n", buf);
		return;
	}
	printf("apparmor=none\n");
}

static int cmd_status(void)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	gid_t groups[NGROUPS_MAX];
	char buf[PATH_MAX];
	struct utsname un;
	int n, i, r;

	/* First, before anything else could leave an fd behind. */
	print_fds();

	if (getresuid(&ru, &eu, &su) == 0)
		printf("uid=%u,%u,%u\n", (unsigned) ru, (unsigned) eu, (unsigned) su);
	else
		printf("uid=%s\n", errname(errno));
	if (getresgid(&rg, &eg, &sg) == 0)
		printf("gid=%u,%u,%u\n", (unsigned) rg, (unsigned) eg, (unsigned) sg);
	else
		printf("gid=%s\n", errname(errno));

	n = getgroups(NGROUPS_MAX, groups);
	printf("groups=");
	if (n < 0)
		printf("%s", errname(errno));
	for (i = 0; i < n; i++)
		printf("%s%u", i ? "," : "", (unsigned) groups[i]);
	printf("\n");

	print_proc_status_keys();

	printf("pid=%d\n", (int) getpid());
	printf("ppid=%d\n", (int) getppid());

	if (uname(&un) == 0)
		printf("hostname=%s\n", un.nodename);
	else
		printf("hostname=%s\n", errname(errno));

	r = read_small("/proc/1/comm", buf, sizeof(buf));
	if (r == 0)
		chomp(buf);
	printf("pid1_comm=%s\n", r == 0 ? buf : errname(-r));

	print_procs();

	if (getcwd(buf, sizeof(buf)))
		printf("cwd=%s\n", buf);
	else
		printf("cwd=%s\n", errname(errno));

	print_apparmor();
	return 0;
}

/* ------------------------------------------------------------------ */
/* probe syscalls                                                      */

static int g_out = -1;		/* result pipe inside an attempt child */

static void report(const char *key, const char *val)
{
	char line[256];
	int len;

	len = snprintf(line, sizeof(line), "%s=%s\n", key, val);
	if (len < 0)
		return;
	if ((size_t) len >= sizeof(line))
		len = (int) sizeof(line) - 1;
	if (write(g_out, line, (size_t) len) < 0) {
		/* nothing sensible to do */
	}
}

static int open_notty(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd;
}

static void t_mount(void)
{
	/* EFAULT while copying the fstype if allowed. */
	report("mount", res(mount(WRONG_POINTER, WRONG_POINTER, WRONG_POINTER,
				  0, WRONG_POINTER)));
}

static void t_umount2(void)
{
	/* EFAULT on the path lookup if allowed. */
	report("umount2", res(umount2(WRONG_POINTER, 0)));
}

static void t_pivot_root(void)
{
	/* Capability check comes first: EPERM without CAP_SYS_ADMIN. */
	report("pivot_root", res(syscall(SYS_pivot_root, WRONG_POINTER,
					 WRONG_POINTER)));
}

static void t_keyctl(void)
{
	/* Unknown command: EOPNOTSUPP if allowed. */
	report("keyctl", res(syscall(SYS_keyctl, 0x7fff, 0, 0, 0, 0)));
}

static void t_add_key(void)
{
	report("add_key", res(syscall(SYS_add_key, WRONG_POINTER,
				      WRONG_POINTER, NULL, 0, 0)));
}

static void t_request_key(void)
{
	report("request_key", res(syscall(SYS_request_key, WRONG_POINTER,
					  WRONG_POINTER, NULL, 0)));
}

static void t_bpf(void)
{
	/* BPF_MAP_CREATE with an unreadable attr: EFAULT if allowed. */
	report("bpf", res(syscall(SYS_bpf, 0, WRONG_POINTER, 8)));
}

static void t_perf_event_open(void)
{
	report("perf_event_open", res(syscall(SYS_perf_event_open,
					      WRONG_POINTER, 0, -1, -1, 0)));
}

static void t_userfaultfd(void)
{
	/* UFFD_USER_MODE_ONLY passes the sysctl gate; bit 1 is invalid. */
	report("userfaultfd", res(syscall(SYS_userfaultfd, 0x1 | 0x2)));
}

static void t_io_uring_setup(void)
{
	report("io_uring_setup", res(syscall(SYS_io_uring_setup, 1,
					     WRONG_POINTER)));
}

static void t_open_tree(void)
{
	report("open_tree", res(syscall(SYS_open_tree, AT_FDCWD,
					WRONG_POINTER, 0)));
}

static void t_move_mount(void)
{
	report("move_mount", res(syscall(SYS_move_mount, -1, WRONG_POINTER,
					 -1, WRONG_POINTER, 0)));
}

static void t_fsopen(void)
{
	report("fsopen", res(syscall(SYS_fsopen, WRONG_POINTER, 0)));
}

static void t_fsmount(void)
{
	report("fsmount", res(syscall(SYS_fsmount, -1, 0, 0)));
}

static void t_fspick(void)
{
	report("fspick", res(syscall(SYS_fspick, -1, WRONG_POINTER, 0)));
}

static void t_mount_setattr(void)
{
	/* usize 0 is rejected with EINVAL before the capability check. */
	report("mount_setattr", res(syscall(SYS_mount_setattr, -1,
					    WRONG_POINTER, 0, WRONG_POINTER, 0)));
}

static void t_ptrace(void)
{
	/*
	 * PTRACE_SEIZE goes through exactly the same permission check as
	 * PTRACE_ATTACH (ptrace_attach() -> __ptrace_may_access()) but does
	 * not send SIGSTOP, so on success pid 1 is never stopped; the
	 * tracee is detached automatically when this child exits.
	 */
	report("ptrace", res(ptrace(PTRACE_SEIZE, 1, NULL, NULL)));
}

static void t_ptrace_traceme(void)
{
	report("ptrace_traceme", res(ptrace(PTRACE_TRACEME, 0, NULL, NULL)));
}

static void t_process_vm_readv(void)
{
	char c;
	struct iovec local = { .iov_base = &c, .iov_len = 1 };
	struct iovec remote = { .iov_base = WRONG_POINTER, .iov_len = 1 };

	/* Our own mm, unmapped remote address: EFAULT if allowed. */
	report("process_vm_readv", res(syscall(SYS_process_vm_readv, getpid(),
					       &local, 1, &remote, 1, 0)));
}

static void t_kexec_load(void)
{
	/*
	 * Never nr_segments == 0: that would UNLOAD a loaded kexec image when
	 * run with CAP_SYS_BOOT.  Too many segments gives EINVAL after the
	 * permission checks instead (EPERM without CAP_SYS_BOOT).
	 */
	report("kexec_load", res(syscall(SYS_kexec_load, 0, 1000, NULL, 0)));
}

static void t_init_module(void)
{
	report("init_module", res(syscall(SYS_init_module, WRONG_POINTER, 0,
					  WRONG_POINTER)));
}

static void t_delete_module(void)
{
	report("delete_module", res(syscall(SYS_delete_module, WRONG_POINTER,
					    0)));
}

static void t_clone3(void)
{
	/* size 0 < CLONE_ARGS_SIZE_VER0: EINVAL if allowed. */
	report("clone3", res(syscall(SYS_clone3, NULL, 0)));
}

static void t_tiocsti(void)
{
	char c = 'x';
	int fd = open_notty();

	report("tiocsti", fd < 0 ? errname(errno) : res(ioctl(fd, TIOCSTI, &c)));
	report("tiocsti_hibits", fd < 0 ? errname(errno) :
	       res(syscall(SYS_ioctl, fd, 0xffffffff00000000UL |
			   (unsigned long) TIOCSTI, &c)));
}

static void t_tioclinux(void)
{
	char c = 0;
	int fd = open_notty();

	report("tioclinux", fd < 0 ? errname(errno) :
	       res(ioctl(fd, TIOCLINUX, &c)));
}

static void t_x32(void)
{
	report("x32", rawres(raw_syscall0(X32_SYSCALL_BIT | SYS_getpid)));
}

static void t_int80(void)
{
	report("int80", rawres(int80_syscall5(I386_NR_getpid, 0, 0, 0, 0, 0)));
}

static void t_nested_userns(void)
{
	uid_t uid = geteuid();
	gid_t gid = getegid();
	char map[64];
	int r;

	if (unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET) < 0) {
		report("nested_userns", errname(errno));
		report("nested_uidmap", "skipped");
		report("nested_chroot", "skipped");
		report("nested_mntns", "skipped");
		report("nested_mount", "skipped");
		return;
	}
	report("nested_userns", "ok");

	r = write_str("/proc/self/setgroups", "deny");
	if (r == 0) {
		snprintf(map, sizeof(map), "0 %u 1\n", (unsigned) uid);
		r = write_str("/proc/self/uid_map", map);
	}
	if (r == 0) {
		snprintf(map, sizeof(map), "0 %u 1\n", (unsigned) gid);
		r = write_str("/proc/self/gid_map", map);
	}
	report("nested_uidmap", errname(-r));

	report("nested_chroot", res(chroot("/")));

	/* A mount needs a mount namespace owned by the new user namespace. */
	if (unshare(CLONE_NEWNS) < 0) {
		report("nested_mntns", errname(errno));
		report("nested_mount", "skipped");
		return;
	}
	report("nested_mntns", "ok");
	report("nested_mount", res(mount("none", "/tmp", "tmpfs", 0, NULL)));
}

static void t_setuid0(void)
{
	report("setuid0", res(setuid(0)));
}

static void t_unshare_mntns(void)
{
	report("unshare_mntns", res(unshare(CLONE_NEWNS)));
}

static void t_chroot(void)
{
	report("chroot", res(chroot("/")));
}

struct attempt {
	const char *name;
	void (*fn)(void);
	const char *const *extra;	/* further keys the attempt reports */
};

static const char *const tiocsti_extra[] = { "tiocsti_hibits", NULL };
static const char *const nested_extra[] = {
	"nested_uidmap", "nested_chroot", "nested_mntns", "nested_mount", NULL,
};

static const struct attempt attempts[] = {
	{ "mount", t_mount, NULL },
	{ "umount2", t_umount2, NULL },
	{ "pivot_root", t_pivot_root, NULL },
	{ "keyctl", t_keyctl, NULL },
	{ "add_key", t_add_key, NULL },
	{ "request_key", t_request_key, NULL },
	{ "bpf", t_bpf, NULL },
	{ "perf_event_open", t_perf_event_open, NULL },
	{ "userfaultfd", t_userfaultfd, NULL },
	{ "io_uring_setup", t_io_uring_setup, NULL },
	{ "open_tree", t_open_tree, NULL },
	{ "move_mount", t_move_mount, NULL },
	{ "fsopen", t_fsopen, NULL },
	{ "fsmount", t_fsmount, NULL },
	{ "fspick", t_fspick, NULL },
	{ "mount_setattr", t_mount_setattr, NULL },
	{ "ptrace", t_ptrace, NULL },
	{ "ptrace_traceme", t_ptrace_traceme, NULL },
	{ "process_vm_readv", t_process_vm_readv, NULL },
	{ "kexec_load", t_kexec_load, NULL },
	{ "init_module", t_init_module, NULL },
	{ "delete_module", t_delete_module, NULL },
	{ "clone3", t_clone3, NULL },
	{ "tiocsti", t_tiocsti, tiocsti_extra },
	{ "tioclinux", t_tioclinux, NULL },
	{ "x32", t_x32, NULL },
	{ "int80", t_int80, NULL },
	{ "nested_userns", t_nested_userns, nested_extra },
	{ "setuid0", t_setuid0, NULL },
	{ "unshare_mntns", t_unshare_mntns, NULL },
	{ "chroot", t_chroot, NULL },
};

/* Does the report text contain a line starting with "key="? */
static int has_key(const char *text, const char *key)
{
	size_t klen = strlen(key);
	const char *p = text;

	while (*p) {
		if (strncmp(p, key, klen) == 0 && p[klen] == '=')
			return 1;
		p = strchr(p, '\n');
		if (!p)
			break;
		p++;
	}
	return 0;
}

static void run_attempt(const struct attempt *a)
{
	char text[4096];
	size_t len = 0;
	const char *missing;
	int pfd[2], status = 0;
	ssize_t n;
	pid_t pid;
	size_t i;

	fflush(stdout);
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		printf("%s=%s\n", a->name, errname(errno));
		return;
	}
	pid = fork();
	if (pid < 0) {
		printf("%s=%s\n", a->name, errname(errno));
		close(pfd[0]);
		close(pfd[1]);
		return;
	}
	if (pid == 0) {
		close(pfd[0]);
		g_out = pfd[1];
		signal(SIGALRM, SIG_DFL);
		alarm(ATTEMPT_TIMEOUT_S);
		a->fn();
		_exit(0);
	}
	close(pfd[1]);
	for (;;) {
		n = read(pfd[0], text + len, sizeof(text) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t) n;
		if (len == sizeof(text) - 1)
			break;
	}
	text[len] = '\0';
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;

	fputs(text, stdout);
	if (WIFSIGNALED(status))
		missing = signame(WTERMSIG(status));
	else
		missing = "noreport";
	if (!has_key(text, a->name))
		printf("%s=%s\n", a->name, missing);
	for (i = 0; a->extra && a->extra[i]; i++)
		if (!has_key(text, a->extra[i]))
			printf("%s=%s\n", a->extra[i], missing);
}

static int cmd_syscalls(void)
{
	size_t i;

	for (i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++)
		run_attempt(&attempts[i]);
	return 0;
}

/* ------------------------------------------------------------------ */
/* file system helpers                                                 */

static int cmd_write(const char *path)
{
	int fd, e;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0) {
		e = write(fd, "x", 1) == 1 ? 0 : errno;
		if (close(fd) < 0 && !e)
			e = errno;
		if (unlink(path) < 0)
			printf("unlink=%s\n", errname(errno));
		printf("write=%s\n", errname(e));
		return e ? 1 : 0;
	}
	if (errno != EEXIST) {
		printf("write=%s\n", errname(errno));
		return 1;
	}
	/* Existing file: check writability without modifying the content. */
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0) {
		printf("write=%s\n", errname(errno));
		return 1;
	}
	e = write(fd, "", 0) < 0 ? errno : 0;
	close(fd);
	printf("write=%s\n", errname(e));
	return e ? 1 : 0;
}

static int cmd_read(const char *path)
{
	char c;
	int fd, e;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		printf("read=%s\n", errname(errno));
		return 1;
	}
	e = read(fd, &c, 1) < 0 ? errno : 0;
	close(fd);
	printf("read=%s\n", errname(e));
	return e ? 1 : 0;
}

static int filter_dots(const struct dirent *de)
{
	return strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
}

static int cmd_ls(const char *dir)
{
	struct dirent **list;
	int n, i;

	n = scandir(dir, &list, filter_dots, alphasort);
	if (n < 0) {
		printf("ls=%s\n", errname(errno));
		return 1;
	}
	for (i = 0; i < n; i++) {
		printf("%s\n", list[i]->d_name);
		free(list[i]);
	}
	free(list);
	return 0;
}

/* ------------------------------------------------------------------ */
/* process helpers                                                     */

static int cmd_sleep(const char *arg)
{
	struct timespec ts;
	char *end;
	double s;

	errno = 0;
	s = strtod(arg, &end);
	if (errno || end == arg || *end || s < 0 || s > 1e9) {
		fprintf(stderr, "probe: bad duration '%s'\n", arg);
		return 2;
	}
	ts.tv_sec = (time_t) s;
	ts.tv_nsec = (long) ((s - (double) ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return 0;
}

/* A desktop's stand-in: accepts connections on the socket-activated fd 3,
 * one at a time, and keeps each until the client closes it. */
static int cmd_serve_fd3(void)
{
	char buf[256];

	for (;;) {
		int c = accept(3, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			perror("probe: accept on fd 3");
			return 1;
		}
		while (read(c, buf, sizeof(buf)) > 0)
			;
		close(c);
	}
}

static int cmd_kill_self(int sig)
{
	sigset_t set;

	fflush(stdout);
	signal(sig, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	if (raise(sig) != 0) {
		printf("kill_self=%s\n", errname(errno));
		return 1;
	}
	/* Still alive: the signal's default action is not fatal (or we are
	 * PID 1 of a namespace, where the kernel drops it). */
	printf("kill_self=survived\n");
	return 1;
}

static int cmd_exec(char **argv)
{
	fflush(stdout);
	execv(argv[0], argv);
	printf("exec=%s\n", errname(errno));
	return 127;
}

static int cmd_spawn_orphans(long n)
{
	int pfd[2], status;
	char text[4096];
	size_t len = 0;
	ssize_t r;
	long i, spawned = 0;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0) {
		printf("spawned=%s\n", errname(errno));
		return 1;
	}
	fflush(stdout);
	for (i = 0; i < n; i++) {
		pid = fork();
		if (pid < 0)
			break;
		if (pid == 0) {
			close(pfd[0]);
			pid = fork();
			if (pid == 0) {
				struct timespec ts = { 0, 200 * 1000 * 1000 };
				char line[32];
				int l;

				l = snprintf(line, sizeof(line), "%d\n",
					     (int) getpid());
				if (l > 0 && write(pfd[1], line, (size_t) l) < 0) {
					/* ignore */
				}
				close(pfd[1]);
				while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
					;
				_exit(0);
			}
			_exit(pid < 0 ? 1 : 0);
		}
		if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		    WEXITSTATUS(status) == 0)
			spawned++;
	}
	close(pfd[1]);
	/* Each grandchild writes its pid and closes its end at once. */
	for (;;) {
		r = read(pfd[0], text + len, sizeof(text) - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t) r;
		if (len == sizeof(text) - 1)
			break;
	}
	close(pfd[0]);
	text[len] = '\0';
	while (len > 0 && text[len - 1] == '\n')
		text[--len] = '\0';
	for (i = 0; text[i]; i++)
		if (text[i] == '\n')
			text[i] = ',';
	printf("spawned=%ld\n", spawned);
	printf("orphan_pids=%s\n", text);
	return spawned == n ? 0 : 1;
}

static int cmd_signal_parent(void)
{
	pid_t ppid = getppid();

	printf("pid=%d\n", (int) getpid());
	printf("ppid=%d\n", (int) ppid);
	fflush(stdout);
	/* kill(0, ...) would hit our own process group: never do that. */
	if (ppid <= 0)
		printf("kill_ppid=noparent\n");
	else
		printf("kill_ppid=%s\n", res(kill(ppid, SIGKILL)));
	fflush(stdout);
	printf("kill_pid1=%s\n", res(kill(1, SIGKILL)));
	fflush(stdout);
	return 0;
}

/* ------------------------------------------------------------------ */

static int usage(void)
{
	fprintf(stderr,
		"usage: probe status | syscalls | fds\n"
		"       probe write PATH | read PATH | ls DIR\n"
		"       probe exit N | sleep SECONDS | kill-self [SIGNUM]\n"
		"       probe exec PATH [ARGS...] | spawn-orphans N | signal-parent\n"
		"       probe serve-fd3\n");
	return 2;
}

static int dispatch(int argc, char **argv)
{
	const char *cmd;
	long v;

	if (argc < 2)
		return usage();
	cmd = argv[1];

	if (argc == 2 && strcmp(cmd, "status") == 0)
		return cmd_status();
	if (argc == 2 && strcmp(cmd, "syscalls") == 0)
		return cmd_syscalls();
	if (argc == 2 && strcmp(cmd, "fds") == 0) {
		print_fds();
		return 0;
	}
	if (argc == 3 && strcmp(cmd, "write") == 0)
		return cmd_write(argv[2]);
	if (argc == 3 && strcmp(cmd, "read") == 0)
		return cmd_read(argv[2]);
	if (argc == 3 && strcmp(cmd, "ls") == 0)
		return cmd_ls(argv[2]);
	if (argc == 3 && strcmp(cmd, "exit") == 0) {
		if (parse_long(argv[2], &v) < 0)
			return usage();
		fflush(stdout);
		_exit((int) (v & 0xff));
	}
	if (argc == 3 && strcmp(cmd, "sleep") == 0)
		return cmd_sleep(argv[2]);
	if ((argc == 2 || argc == 3) && strcmp(cmd, "kill-self") == 0) {
		v = SIGKILL;
		if (argc == 3 && (parse_long(argv[2], &v) < 0 || v < 1 ||
				  v > SIGRTMAX))
			return usage();
		return cmd_kill_self((int) v);
	}
	if (argc >= 3 && strcmp(cmd, "exec") == 0)
		return cmd_exec(argv + 2);
	if (argc == 3 && strcmp(cmd, "spawn-orphans") == 0) {
		if (parse_long(argv[2], &v) < 0 || v < 0 || v > 1000)
			return usage();
		return cmd_spawn_orphans(v);
	}
	if (argc == 2 && strcmp(cmd, "signal-parent") == 0)
		return cmd_signal_parent();
	if (argc == 2 && strcmp(cmd, "serve-fd3") == 0)
		return cmd_serve_fd3();
	return usage();
}

int main(int argc, char **argv)
{
	int rc = dispatch(argc, argv);

	if (fflush(stdout) != 0 && rc == 0)
		rc = 1;
	return rc;
}
