// cgroup: where each controller lives (mountinfo, /proc/self/cgroup) and
// what planCgroup makes of a container's limits, for a hybrid host (v1
// controllers, as on this project's test machine) and a unified one
// (Debian 12's default).
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "sandbox/cgroup.h"

using namespace pukaipu;

namespace {

// This project's test machine: v1 controllers, cpu and cpuacct apart, an
// empty cgroup2 at /sys/fs/cgroup/unified.
const char* kHybrid =
	"31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
	"32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
	"33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
	"35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
	"39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
	"40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
	"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
const char* kHybridSelf = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/ab12\n1:cpu:/\n0::/\n";

// Debian 12 with systemd: only cgroup2, on /sys/fs/cgroup.
const char* kUnified =
	"25 1 0:22 / / rw - ext4 /dev/sda1 rw\n"
	"30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
	"rw,nsdelegate,memory_recursiveprot\n";
const char* kUnifiedSelf = "0::/user.slice/user-0.slice/session-3.scope\n";

bool always(const std::string&)
{
	return true;
}
bool never(const std::string&)
{
	return false;
}

CgroupLimits memPids()
{
	CgroupLimits l;
	l.memoryMax = 64ull << 20;
	l.pidsMax = 32;
	return l;
}

bool has(const std::vector<std::pair<std::string, std::string>>& w, const std::string& file, const std::string& v)
{
	return std::find(w.begin(), w.end(), std::make_pair(file, v)) != w.end();
}

} // namespace

TEST_CASE("cgroup: mountinfo of a hybrid host: each v1 controller at its own mount")
{
	auto l = parseCgroupMounts(kHybrid);
	CHECK(l.unified == "/sys/fs/cgroup/unified");
	CHECK(l.v1.at("memory").mountPoint == "/sys/fs/cgroup/memory");
	CHECK(l.v1.at("cpu").mountPoint == "/sys/fs/cgroup/cpu");
	CHECK(l.v1.at("cpuacct").mountPoint == "/sys/fs/cgroup/cpuacct");
	CHECK(l.v1.at("pids").root == "/");
	CHECK(l.v1.count("name=systemd") == 0);
	CHECK(l.v1.count("xattr") == 0);
	// A joint mount gives both names; an escaped mount point is unescaped.
	auto j = parseCgroupMounts("1 0 0:1 / /cg/cpu\\054cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
				   "2 0 0:2 /in/ns /cg/mem\\040x rw - cgroup cgroup rw,memory\n");
	CHECK(j.v1.at("cpu").mountPoint == "/cg/cpu,cpuacct");
	CHECK(j.v1.at("cpuacct").mountPoint == "/cg/cpu,cpuacct");
	CHECK(j.v1.at("memory").mountPoint == "/cg/mem x");
	CHECK(j.v1.at("memory").root == "/in/ns");
	CHECK(j.unified.empty());
}

TEST_CASE("cgroup: /proc/self/cgroup lines")
{
	auto own = parseProcCgroup("4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/d/e\n1:name=systemd:/sys\n");
	CHECK(own.at("memory") == "/a/b");
	CHECK(own.at("cpu") == "/c");
	CHECK(own.at("cpuacct") == "/c");
	CHECK(own.at("") == "/d/e");
	CHECK(own.at("name=systemd") == "/sys");
}

TEST_CASE("cgroup: hybrid host: v1, below our own cgroup in each hierarchy, parent enters and leaves")
{
	auto p = planCgroup(parseCgroupMounts(kHybrid), parseProcCgroup(kHybridSelf), "", memPids(), "", "bundle-7",
			    always);
	REQUIRE(p);
	CHECK_FALSE(p->v2);
	CHECK(p->leaves == std::vector<std::string> { "/sys/fs/cgroup/memory/process_api/ab12/pukaipu-bundle-7",
						      "/sys/fs/cgroup/pids/pukaipu-bundle-7" });
	CHECK(has(p->writes, p->leaves[0] + "/memory.limit_in_bytes", "67108864"));
	CHECK(has(p->writes, p->leaves[1] + "/pids.max", "32"));
	CHECK(p->ownCgroups == std::vector<std::string> { "/sys/fs/cgroup/memory/process_api/ab12/cgroup.procs",
							  "/sys/fs/cgroup/pids/cgroup.procs" });
	CHECK(p->enable.empty());
	// An absolute path is below the hierarchy's root; parents are made.
	auto a = planCgroup(parseCgroupMounts(kHybrid), parseProcCgroup(kHybridSelf), "", memPids(), "/x/y", "n", always);
	REQUIRE(a);
	CHECK(a->leaves[0] == "/sys/fs/cgroup/memory/x/y");
	CHECK(a->makeParents == std::vector<std::string> { "/sys/fs/cgroup/memory/x", "/sys/fs/cgroup/pids/x" });
}

TEST_CASE("cgroup: hybrid host: cpu quota, period first; swap needs swap accounting")
{
	CgroupLimits l;
	l.cpuQuotaUs = 50000;
	l.cpuPeriodUs = 100000;
	l.cpuShares = 512;
	auto p = planCgroup(parseCgroupMounts(kHybrid), parseProcCgroup(kHybridSelf), "", l, "", "n", always);
	REQUIRE(p);
	REQUIRE(p->writes.size() == 3);
	CHECK(p->writes[0].first == "/sys/fs/cgroup/cpu/pukaipu-n/cpu.cfs_period_us");
	CHECK(p->writes[1] == std::make_pair(std::string("/sys/fs/cgroup/cpu/pukaipu-n/cpu.cfs_quota_us"),
					    std::string("50000")));
	CgroupLimits s = memPids();
	s.memorySwapMax = 128ull << 20;
	auto off = planCgroup(parseCgroupMounts(kHybrid), parseProcCgroup(kHybridSelf), "", s, "", "n", never);
	REQUIRE_FALSE(off);
	CHECK(off.error().message().find("swap accounting is off") != std::string::npos);
	auto on = planCgroup(parseCgroupMounts(kHybrid), parseProcCgroup(kHybridSelf), "", s, "", "n", always);
	REQUIRE(on);
	CHECK(has(on->writes, on->leaves[0] + "/memory.memsw.limit_in_bytes", "134217728"));
}

TEST_CASE("cgroup: unified host: v2 below /pukaipu, controllers enabled top down, clone into the leaf")
{
	CgroupLimits l = memPids();
	l.memorySwapMax = 96ull << 20;
	l.cpuQuotaUs = 150000;
	l.cpuPeriodUs = 100000;
	l.cpuShares = 1024;
	auto p = planCgroup(parseCgroupMounts(kUnified), parseProcCgroup(kUnifiedSelf), "cpuset cpu io memory pids\n", l,
			    "", "john-42", never);
	REQUIRE(p);
	CHECK(p->v2);
	CHECK(p->leaves == std::vector<std::string> { "/sys/fs/cgroup/pukaipu/john-42" });
	CHECK(p->makeParents == std::vector<std::string> { "/sys/fs/cgroup/pukaipu" });
	REQUIRE(p->enable.size() == 2);
	CHECK(p->enable[0] == std::make_pair(std::string("/sys/fs/cgroup"), std::string("+memory +pids +cpu")));
	CHECK(p->enable[1].first == "/sys/fs/cgroup/pukaipu");
	const std::string leaf = p->leaves[0];
	CHECK(has(p->writes, leaf + "/memory.max", "67108864"));
	CHECK(has(p->writes, leaf + "/memory.swap.max", "33554432")); // swap alone: 96 - 64 MiB
	CHECK(has(p->writes, leaf + "/pids.max", "32"));
	CHECK(has(p->writes, leaf + "/cpu.max", "150000 100000"));
	CHECK(has(p->writes, leaf + "/cpu.weight", "39")); // runc: 1 + (1024-2)*9999/262142
	CHECK(p->ownCgroups.empty());
	// A relative path is below our own cgroup (it must then have no processes).
	auto r = planCgroup(parseCgroupMounts(kUnified), parseProcCgroup(kUnifiedSelf), "memory pids", memPids(), "sub",
			    "n", never);
	REQUIRE(r);
	CHECK(r->leaves[0] == "/sys/fs/cgroup/user.slice/user-0.slice/session-3.scope/sub");
}

TEST_CASE("cgroup: a limit this host cannot enforce is refused")
{
	// No pids controller anywhere: cgroup2 has none enabled.
	auto none = planCgroup(parseCgroupMounts(kUnified), parseProcCgroup(kUnifiedSelf), "memory", memPids(), "", "n",
			       always);
	REQUIRE_FALSE(none);
	CHECK(none.error().message().find("no 'pids' cgroup controller") != std::string::npos);
	// Split between v1 (memory) and v2 (pids): refused, one container uses one version.
	auto mixed = planCgroup(parseCgroupMounts("35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
						  "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"),
				parseProcCgroup(kHybridSelf), "pids", memPids(), "", "n", always);
	REQUIRE_FALSE(mixed);
	CHECK(mixed.error().message().find("'pids' controller is on cgroup v2, others on v1") != std::string::npos);
	CgroupLimits bad;
	bad.cpuPeriodUs = 10;
	CHECK_FALSE(planCgroup(parseCgroupMounts(kHybrid), parseProcCgroup(kHybridSelf), "", bad, "", "n", always));
	CgroupLimits swapOnly;
	swapOnly.memorySwapMax = 1 << 30;
	CHECK_FALSE(planCgroup(parseCgroupMounts(kHybrid), parseProcCgroup(kHybridSelf), "", swapOnly, "", "n", always));
	for (const char* path : { "../up", "/a/../b", "a//b", "/" })
		CHECK_FALSE(planCgroup(parseCgroupMounts(kHybrid), parseProcCgroup(kHybridSelf), "", memPids(), path, "n",
				       always));
	// No limits: no cgroup at all.
	auto empty = planCgroup(parseCgroupMounts(kHybrid), parseProcCgroup(kHybridSelf), "", CgroupLimits {}, "", "n",
				never);
	REQUIRE(empty);
	CHECK(empty->empty());
}
