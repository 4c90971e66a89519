/*
 * cgroups, /sys, /proc: mount cgroup v1 and write release_agent, write
 * cgroupfs, /proc/sys, /sys and /proc/sysrq-trigger, read /proc/kcore.
 */

#define _GNU_SOURCE
#include <sys/mount.h>
#include <sys/stat.h>

#include "escape.h"

void a_cgroup_v1_mount(void)
{
	const char *d = "/tmp/.escape-cg1";

	mkdir(d, 0700);
	expect_fail(mount("cgroup", d, "cgroup", 0, "memory"), "mount cgroup v1 (then write release_agent)");
}

void a_cgroup_sysfs_write(void)
{
	struct acc a = { .len = 0 };
	const char *agents[] = { "/sys/fs/cgroup/release_agent", "/sys/fs/cgroup/memory/release_agent",
				 "/sys/fs/cgroup/systemd/release_agent", "/sys/fs/cgroup/cgroup.procs",
				 "/sys/fs/cgroup/unified/cgroup.procs" };

	for (size_t i = 0; i < sizeof(agents) / sizeof(agents[0]); i++)
		acc_open_w(&a, agents[i]);
	acc_fail(&a, mkdir("/sys/fs/cgroup/escape", 0755), "mkdir /sys/fs/cgroup/escape");
	acc_say(&a);
}

void a_write_proc_sys(void)
{
	struct acc a = { .len = 0 };

	acc_open_w(&a, "/proc/sys/kernel/core_pattern");
	acc_open_w(&a, "/proc/sys/kernel/modprobe");
	acc_open_w(&a, "/proc/sys/vm/drop_caches");
	acc_say(&a);
}

void a_write_sys(void)
{
	struct acc a = { .len = 0 };

	acc_open_w(&a, "/sys/kernel/uevent_helper");
	acc_open_w(&a, "/sys/kernel/mm/transparent_hugepage/enabled");
	acc_open_w(&a, "/sys/power/state");
	acc_say(&a);
}

void a_sysrq_trigger(void)
{
	struct acc a = { .len = 0 };

	acc_open_w(&a, "/proc/sysrq-trigger"); /* opened, never written */
	acc_say(&a);
}

void a_proc_kcore(void)
{
	char buf[16];
	int n = read_file("/proc/kcore", buf, sizeof(buf));

	if (n > 0)
		ESCAPED("/proc/kcore: read %d bytes", n);
	else
		BLOCKED("/proc/kcore: %s", n < 0 ? errname(-n) : "masked (empty)");
}
