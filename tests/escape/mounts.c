/*
 * Mounts, the new mount API, namespaces: mount, remount, unmount, move and
 * pick mounts, pivot_root, chroot, unshare or join namespaces, write the
 * read-only rootfs, rename the host.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "escape.h"

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

struct mount_attr_compat { uint64_t attr_set, attr_clr, propagation, userns_fd; };

void a_mount_tmpfs(void)
{
	const char *t = "/data/home/.escape-mnt";

	mkdir(t, 0700);
	expect_fail(mount("tmpfs", t, "tmpfs", 0, NULL), "mount tmpfs on ~/.escape-mnt");
}

void a_remount_root_rw(void)
{
	struct acc a = { .len = 0 };

	acc_fail(&a, mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL), "remount / read-write");
	acc_fail(&a, mount(NULL, "/usr", NULL, MS_REMOUNT | MS_BIND, NULL), "remount /usr read-write");
	acc_say(&a);
}

void a_umount_masked(void)
{
	/* Would uncover what is masked; nothing else. */
	expect_fail(umount2("/proc/kcore", MNT_DETACH), "umount2 /proc/kcore");
}

void a_open_tree(void)
{
	long fd = syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLONE | AT_RECURSIVE);

	if (fd >= 0)
		close((int) fd);
	expect_fail(fd, "open_tree(/, CLONE|RECURSIVE)");
}

void a_move_mount(void)
{
	/* The capability check comes before the (bogus) fd is looked at. */
	expect_fail(syscall(SYS_move_mount, -1, "", AT_FDCWD, "/tmp", MOVE_MOUNT_F_EMPTY_PATH),
		    "move_mount(-> /tmp)");
}

void a_fsopen(void)
{
	long fd = syscall(SYS_fsopen, "tmpfs", 0);

	if (fd >= 0)
		close((int) fd);
	expect_fail(fd, "fsopen(tmpfs)");
}

void a_fspick(void)
{
	long fd = syscall(SYS_fspick, AT_FDCWD, "/", 0);

	if (fd >= 0)
		close((int) fd);
	expect_fail(fd, "fspick(/)");
}

void a_mount_setattr(void)
{
	struct mount_attr_compat attr = { .attr_clr = MOUNT_ATTR_RDONLY };

	expect_fail(syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &attr, sizeof(attr)),
		    "mount_setattr(/, clear RDONLY)");
}

void a_pivot_root(void)
{
	/* Non-existent paths: the permission check comes first. */
	expect_fail(syscall(SYS_pivot_root, "/nonexistent-new", "/nonexistent-old"), "pivot_root");
}

void a_unshare_mntns(void)
{
	expect_fail(unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)");
}

void a_unshare_other_ns(void)
{
	struct acc a = { .len = 0 };

	acc_fail(&a, unshare(CLONE_NEWIPC), "NEWIPC");
	acc_fail(&a, unshare(CLONE_NEWUTS), "NEWUTS");
	acc_fail(&a, unshare(CLONE_NEWCGROUP), "NEWCGROUP");
	acc_fail(&a, unshare(CLONE_NEWTIME), "NEWTIME");
	acc_say(&a);
}

void a_setns(void)
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

void a_write_rootfs(void)
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

void a_sethostname(void)
{
	expect_fail(sethostname("escaped", 7), "sethostname");
}

void a_chroot_unprivileged(void)
{
	expect_fail(chroot("/tmp"), "chroot(/tmp) as the user");
}
