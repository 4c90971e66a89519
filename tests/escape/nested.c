/*
 * A nested user namespace: root in there, nothing outside. From it, mount,
 * chown and write the rootfs, write /proc/sys, join the container's
 * namespaces, map the host's root, mount cgroups and walk out of a chroot;
 * and the network stack: nf_tables, tc, AF_PACKET, raw sockets, time and
 * cgroup namespaces, keyrings.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include "escape.h"

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

void a_nested_mount(void)
{
	struct acc a = { .len = 0 };

	NESTED_OR_RETURN();
	acc_fail(&a, mount("tmpfs", "/tmp", "tmpfs", 0, NULL), "mount tmpfs /tmp");
	acc_fail(&a, mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL), "remount / rw");
	acc_fail(&a, mount("proc", "/tmp", "proc", 0, NULL), "mount proc");
	acc_say(&a);
}

void a_nested_mntns(void)
{
	NESTED_OR_RETURN();
	expect_fail(unshare(CLONE_NEWNS), "nested root: unshare(CLONE_NEWNS)");
}

void a_nested_chown_rootfs(void)
{
	struct acc a = { .len = 0 };

	NESTED_OR_RETURN();
	acc_fail(&a, chown("/usr/bin/env", 0, 0), "chown /usr/bin/env");
	acc_fail(&a, chmod("/usr/bin/env", 04755), "chmod u+s /usr/bin/env");
	acc_fail(&a, lchown("/etc/passwd", 0, 0), "chown /etc/passwd");
	acc_say(&a);
}

void a_nested_write_rootfs(void)
{
	struct acc a = { .len = 0 };

	NESTED_OR_RETURN();
	acc_open_w(&a, "/usr/lib/pukaipu/browser");
	acc_open_w(&a, "/run/pukaipu/tls/server.key");
	acc_say(&a);
}

void a_nested_proc_sys(void)
{
	struct acc a = { .len = 0 };

	NESTED_OR_RETURN();
	acc_open_w(&a, "/proc/sys/kernel/core_pattern");
	acc_open_w(&a, "/proc/sys/net/ipv4/ip_forward");
	acc_open_w(&a, "/proc/sysrq-trigger");
	acc_say(&a);
}

void a_nested_setns(void)
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

void a_nested_sethostname(void)
{
	NESTED_OR_RETURN();
	expect_fail(sethostname("escaped", 7), "nested root: sethostname (container's UTS ns)");
}

void a_nested_mknod(void)
{
	int r;

	NESTED_OR_RETURN();
	r = mknod("/tmp/.escape-nested-sda", S_IFBLK | 0600, makedev(8, 0));
	if (r == 0)
		unlink("/tmp/.escape-nested-sda");
	expect_fail(r, "nested root: mknod b 8:0");
}

void a_nested_dac_override(void)
{
	struct acc a = { .len = 0 };

	NESTED_OR_RETURN();
	/* Root-owned 0600 in the home: its owner is not mapped in here. */
	acc_open_r(&a, conf("root_only"));
	acc_fail(&a, chown(conf("root_only"), 0, 0), "chown root_only");
	acc_say(&a);
}

void a_nested_map_host_root(void)
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

void a_nested_cgroup_release_agent(void)
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

void a_nested_chroot_breakout(void)
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

/* --- the kernel's network attack surface from a nested namespace --------- */

/* The confirmed attack: nested root with a network namespace of its own
 * (Chromium's sandbox needs nested user+pid+net namespaces, so the kernel
 * grants that) opens netfilter (nf_tables) and generic netlink there. The
 * profile refuses those netlink protocols whatever the namespace. */
void a_nested_nf_tables(void)
{
	struct acc a = { .len = 0 };
	int fd;

	NESTED_OR_RETURN();
	if (unshare(CLONE_NEWNET) < 0) {
		BLOCKED("nested root: no network namespace of its own (%s)", errname(errno));
		return;
	}
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (fd >= 0)
		close(fd);
	acc_fail(&a, fd, "socket(AF_NETLINK, NETLINK_NETFILTER)");
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (fd >= 0)
		close(fd);
	acc_fail(&a, fd, "socket(AF_NETLINK, NETLINK_GENERIC)");
	acc_say(&a);
}

/* Raw IP in the container's network namespace (the kernel: nested root
 * has no CAP_NET_RAW there), then AF_PACKET in a namespace of its own (the
 * profile refuses the family). */
void a_nested_packet_raw(void)
{
	struct acc a = { .len = 0 };
	int fd;

	NESTED_OR_RETURN();
	fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	if (fd >= 0)
		close(fd);
	acc_fail(&a, fd, "nested root: socket(AF_INET, SOCK_RAW) in the container's netns");
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		close(fd);
	acc_fail(&a, fd, "nested root: socket(AF_PACKET) in the container's netns");
	if (unshare(CLONE_NEWNET) == 0) {
		fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
		if (fd >= 0)
			close(fd);
		acc_fail(&a, fd, "nested root: socket(AF_PACKET) in its own netns");
	}
	acc_say(&a);
}

/* tc: a qdisc on lo, sent over NETLINK_ROUTE (which the desktop may open).
 * The container's netns belongs to the container's user namespace, so nested
 * root has no CAP_NET_ADMIN over it: the kernel answers EPERM in the ack. */
void a_nested_tc(void)
{
	struct {
		struct nlmsghdr n;
		struct tcmsg t;
		char attrs[64];
	} req;
	char ack[256];
	struct rtattr *kind;
	int fd, r = -EPERM;

	NESTED_OR_RETURN();
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0) {
		BLOCKED("nested root: tc qdisc add dev lo (%s)", errname(errno));
		return;
	}
	memset(&req, 0, sizeof(req));
	req.n.nlmsg_type = RTM_NEWQDISC;
	req.n.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
	req.t.tcm_family = AF_UNSPEC;
	req.t.tcm_ifindex = 1; /* lo */
	req.t.tcm_parent = TC_H_ROOT;
	kind = (struct rtattr *)req.attrs;
	kind->rta_type = TCA_KIND;
	kind->rta_len = RTA_LENGTH(sizeof("pfifo"));
	memcpy(RTA_DATA(kind), "pfifo", sizeof("pfifo"));
	req.n.nlmsg_len = NLMSG_LENGTH(sizeof(req.t)) + RTA_ALIGN(kind->rta_len);
	if (send(fd, &req, req.n.nlmsg_len, 0) < 0) {
		r = -errno;
	} else {
		ssize_t n = recv(fd, ack, sizeof(ack), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)ack;

		if (n >= (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) && h->nlmsg_type == NLMSG_ERROR)
			r = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
		else
			r = -EPROTO;
	}
	close(fd);
	if (r == 0)
		ESCAPED("nested root: tc qdisc add dev lo succeeded");
	else
		BLOCKED("nested root: tc qdisc add dev lo (%s)", errname(-r));
}

/* Time and cgroup namespaces: neither is needed by the desktop. */
void a_nested_time_cgroup_ns(void)
{
	struct acc a = { .len = 0 };

	NESTED_OR_RETURN();
	acc_fail(&a, unshare(0x80 /* CLONE_NEWTIME */), "nested root: unshare(CLONE_NEWTIME)");
	acc_fail(&a, unshare(CLONE_NEWCGROUP), "nested root: unshare(CLONE_NEWCGROUP)");
	acc_say(&a);
}

/* Keyrings are refused by the profile, in the nest as outside. */
void a_nested_keyctl(void)
{
	NESTED_OR_RETURN();
	expect_fail(syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 1, 0, 0),
		    "nested root: keyctl(KEYCTL_GET_KEYRING_ID, session, create)");
}
