/*
 * escape.h — what the escape battery's files share (main.c says what the
 * battery is): the helpers in common.c and the attempts, one file per family.
 * An attempt runs in its own child and reports one verdict through say().
 *
 * The attempts are alike on purpose: each is one small story, read on its
 * own (open, try, say the verdict), so `duplicates` lists them as pairs of
 * the same shape; folding them into a table of callbacks would hide what
 * each one tries.
 */
#pragma once

#include <stddef.h>

#include "write_str.h"
#include "x86_64_compat.h"

/* ---- common.c: errno names, the host's configuration --------------- */

const char *errname(int e);

/* Written by the host side, read by cmd_battery() (main.c); "KEY=VALUE" lines. */
extern char g_conf[8192];
const char *conf(const char *key); /* "" when missing */
long conf_long(const char *key);   /* -1 when missing */

/* ---- common.c: small helpers --------------------------------------- */

int read_file(const char *path, char *buf, size_t size); /* length, or -errno */
void status_field(const char *pid, const char *key, char *out, size_t size);
void ns_link(const char *pid, const char *ns, char *out, size_t size);
int cmdline(const char *pid, char *out, size_t size);
int is_pid(const char *s);
int pid_exists(long pid);
unsigned long long start_time(long pid);
int file_has_token(const char *path, int *err);
void sleep_ms(long ms);

/* ---- common.c: verdicts (written by the attempt child into a pipe) - */

extern int g_out; /* the pipe, set by the runner in the child */
void say(const char *verdict, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define BLOCKED(...) say("blocked", __VA_ARGS__)
#define ESCAPED(...) say("ESCAPED", __VA_ARGS__)
#define UNJUDGED(...) say("ERROR", __VA_ARGS__)

/* Several sub-attempts, one verdict: escaped if any succeeded. */
struct acc {
	char buf[1200];
	size_t len;
	int escaped;
};

void acc_add(struct acc *a, int escaped, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void acc_fail(struct acc *a, long r, const char *what); /* r < 0: blocked with errno; else escaped */
void acc_say(struct acc *a);
void expect_fail(long r, const char *what);
void acc_open_w(struct acc *a, const char *path);
void acc_open_r(struct acc *a, const char *path);
void acc_host_file(struct acc *a, const char *path);

int connect_unix(const char *path, int abstract);
int connect_tcp(int family, const char *addr, long port); /* 2 s limit; 0, or -1 with errno */

/* ---- the attempts, per family, in the order main.c runs them ------- */

/* files.c: host files and other users' homes */
void a_host_etc_canary(void), a_host_shadow(void), a_host_root_home(void), a_host_canary_file(void),
	a_host_state_server_key(void), a_alice_home_host_path(void), a_alice_home_by_name(void),
	a_alice_tls_key(void), a_proc_root_paths(void);

/* processes.c: host processes, PID 1, signals, ptrace */
void a_host_processes_visible(void), a_proc1_root(void), a_proc1_mem(void), a_proc1_fds(void),
	a_signal_supervisor(void), a_signal_host_same_uid(void), a_signal_broadcast(void), a_kill_pid1(void),
	a_reaper_pidfd(void), a_ptrace_pid1(void), a_ptrace_sibling(void), a_process_vm_readv(void);

/* mounts.c: mounts, the new mount API, namespaces */
void a_mount_tmpfs(void), a_remount_root_rw(void), a_umount_masked(void), a_open_tree(void), a_move_mount(void),
	a_fsopen(void), a_fspick(void), a_mount_setattr(void), a_pivot_root(void), a_unshare_mntns(void),
	a_unshare_other_ns(void), a_setns(void), a_write_rootfs(void), a_sethostname(void),
	a_chroot_unprivileged(void);

/* devices.c */
void a_mknod_block(void), a_mknod_char_mem(void), a_dev_disks(void), a_dev_mem(void), a_dev_kmsg(void),
	a_dev_userfaultfd(void);

/* kernel.c: keyrings, bpf, perf, modules, kexec, io_uring, ... */
void a_keyctl(void), a_add_key(void), a_request_key(void), a_bpf(void), a_perf_event_open(void),
	a_init_module(void), a_finit_module(void), a_delete_module(void), a_kexec(void), a_io_uring(void),
	a_clone3(void), a_ioperm(void), a_reboot(void), a_clock_settime(void), a_acct_swapon(void),
	a_seccomp_stack_allow(void), a_personality(void);

/* terminals.c: terminals, foreign ABIs */
void a_tiocsti(void), a_tioclinux(void), a_x32(void), a_i386_getpid(void), a_i386_mount(void);

/* privileges.c: setuid, file capabilities, capset */
void a_rootfs_setuid_files(void), a_setuid_root_in_home(void), a_setgid_root_in_home(void),
	a_filecap_in_home(void), a_setuid0(void), a_capset_raise(void), a_rlimit_core_raise(void),
	a_core_dump(void), a_oom_score_adj(void);

/* nested.c: a nested user namespace, root in there, nothing outside */
void a_nested_mount(void), a_nested_mntns(void), a_nested_chown_rootfs(void), a_nested_write_rootfs(void),
	a_nested_proc_sys(void), a_nested_setns(void), a_nested_sethostname(void), a_nested_mknod(void),
	a_nested_dac_override(void), a_nested_map_host_root(void), a_nested_cgroup_release_agent(void),
	a_nested_chroot_breakout(void), a_nested_nf_tables(void), a_nested_packet_raw(void),
	a_nested_tc(void), a_nested_time_cgroup_ns(void), a_nested_keyctl(void);

/* cgroups.c: cgroups, /sys, /proc */
void a_cgroup_v1_mount(void), a_cgroup_sysfs_write(void), a_write_proc_sys(void), a_write_sys(void),
	a_sysrq_trigger(void), a_proc_kcore(void);

/* network.c: other instances, the host's network and IPC */
void a_alice_x_abstract(void), a_alice_x_path(void), a_alice_x_tcp(void), a_alice_tls_port(void),
	a_alice_desktop_socket(void), a_host_loopback_tcp(void), a_host_other_address(void),
	a_host_abstract_socket(void), a_host_unix_sockets(void), a_vsock(void), a_raw_sockets(void),
	a_host_sysv_ipc(void);

/* instance.c: the instance's TLS key, fds, handles, environment */
void a_tls_key_write(void), a_held_directories(void), a_exec_fds(void), a_open_by_handle_forged(void),
	a_name_to_handle_then_open(void), a_host_env_leak(void);
void list_exec_fds(void); /* main() calls it first, before anything opens an fd */

/* outlive.c: outliving the instance (run after the battery; info, not a verdict) */
void a_lingerers(void);
