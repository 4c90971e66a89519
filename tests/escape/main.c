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
 *
 * The attempts live in one file per family (files.c, processes.c, mounts.c,
 * devices.c, kernel.c, terminals.c, privileges.c, nested.c, cgroups.c,
 * network.c, instance.c, outlive.c), the helpers they share in common.c,
 * their declarations in escape.h; this file is the runner.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include "escape.h"

#define ATTEMPT_TIMEOUT_S 10

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
	A(nested_cgroup_release_agent), A(nested_chroot_breakout), A(nested_nf_tables),
	A(nested_packet_raw), A(nested_tc), A(nested_time_cgroup_ns), A(nested_keyctl),
	/* cgroups, /sys, /proc */
	A(cgroup_v1_mount), A(cgroup_sysfs_write), A(write_proc_sys), A(write_sys), A(sysrq_trigger), A(proc_kcore),
	/* other instances, the host's network and IPC */
	A(alice_x_abstract), A(alice_x_path), A(alice_x_tcp), A(alice_tls_port), A(alice_desktop_socket),
	A(host_loopback_tcp), A(host_other_address), A(host_abstract_socket), A(host_unix_sockets), A(vsock),
	A(raw_sockets), A(host_sysv_ipc),
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
