/*
 * Devices: make device nodes, open disks, /dev/mem, /dev/kmsg and
 * userfaultfd, read the kernel log.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/klog.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "escape.h"

void a_mknod_block(void)
{
	struct acc a = { .len = 0 };
	const char *p = "/tmp/.escape-sda";
	int r = mknod(p, S_IFBLK | 0600, makedev(8, 0));

	acc_fail(&a, r, "mknod /tmp b 8:0");
	if (r == 0)
		unlink(p);
	r = mknod("/data/home/.escape-sda", S_IFBLK | 0600, makedev(8, 0));
	acc_fail(&a, r, "mknod ~ b 8:0");
	if (r == 0)
		unlink("/data/home/.escape-sda");
	acc_say(&a);
}

void a_mknod_char_mem(void)
{
	const char *p = "/dev/shm/.escape-mem";
	int r = mknod(p, S_IFCHR | 0600, makedev(1, 1));

	if (r == 0)
		unlink(p);
	expect_fail(r, "mknod /dev/shm c 1:1 (mem)");
}

void a_dev_disks(void)
{
	struct acc a = { .len = 0 };
	const char *nodes[] = { "/dev/sda", "/dev/vda", "/dev/xvda", "/dev/nvme0n1", "/dev/loop0",
				"/dev/loop-control", "/dev/mapper/control", "/dev/dm-0", "/dev/sg0" };
	struct dirent *de;
	DIR *d;

	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		int fd = open(nodes[i], O_RDONLY | O_CLOEXEC | O_NONBLOCK);

		if (fd >= 0) {
			close(fd);
			acc_add(&a, 1, "%s: OPENED", nodes[i]);
		} else if (errno != ENOENT) {
			acc_add(&a, 0, "%s: %s", nodes[i], errname(errno));
		}
	}
	/* Any block device anywhere in /dev? */
	d = opendir("/dev");
	while (d && (de = readdir(d))) {
		char p[300];
		struct stat st;

		snprintf(p, sizeof(p), "/dev/%s", de->d_name);
		if (lstat(p, &st) == 0 && S_ISBLK(st.st_mode))
			acc_add(&a, 1, "block device %s in /dev", p);
	}
	if (d)
		closedir(d);
	if (!a.len)
		acc_add(&a, 0, "no disk nodes (%zu names: ENOENT), no block device in /dev", sizeof(nodes) / sizeof(nodes[0]));
	acc_say(&a);
}

void a_dev_mem(void)
{
	struct acc a = { .len = 0 };

	acc_open_r(&a, "/dev/mem");
	acc_open_r(&a, "/dev/kmem");
	acc_open_r(&a, "/dev/port");
	acc_say(&a);
}

void a_dev_kmsg(void)
{
	struct acc a = { .len = 0 };
	char buf[64];

	acc_open_w(&a, "/dev/kmsg");
	acc_fail(&a, klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, sizeof(buf)), "syslog(READ_ALL)");
	acc_say(&a);
}

void a_dev_userfaultfd(void)
{
	struct acc a = { .len = 0 };

	acc_open_r(&a, "/dev/userfaultfd");
	acc_fail(&a, syscall(SYS_userfaultfd, O_CLOEXEC), "userfaultfd()");
	acc_say(&a);
}
