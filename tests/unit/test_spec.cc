#include <string>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "runc_spec.h"
#include "sandbox/spec.h"

using namespace pukaipu;
using json = nlohmann::json;

namespace {
// Parses and expects an error whose message contains `needle`.
std::string errorOf(const json& j)
{
	auto r = parseSpec(j, "/b");
	REQUIRE_FALSE(r);
	return r.error().message();
}
} // namespace

TEST_CASE("accepts an edited `runc spec`")
{
	auto r = parseSpec(runcSpecEdited(), "/srv/bundle");
	REQUIRE_MESSAGE(r, (r ? "" : r.error().message()));
	CHECK(r->rootPath == "/srv/bundle/rootfs");
	CHECK(r->rootReadonly);
	CHECK(r->process.terminal);
	CHECK(r->process.uid == 3999);
	CHECK(r->process.args == std::vector<std::string> { "sh" });
	CHECK(r->mounts.size() == 7);
	CHECK(r->uidMappings.size() == 1);
	CHECK(r->maskedPaths.size() == 10);
	CHECK(r->process.rlimits.size() == 1);
	CHECK(r->process.rlimits[0].name == "RLIMIT_NOFILE");
	// The runc default capabilities are not granted, and that is said.
	REQUIRE(r->warnings.size() == 1);
	CHECK(r->warnings[0].find("process.capabilities") == 0);
}

TEST_CASE("ociVersion: 1.0.x, 1.1.x and 1.2.x are read, other forms are refused")
{
	for (const char* v : { "1.0.0", "1.0.2-dev", "1.1.0", "1.2.0", "1.2.1-rc.1" }) {
		auto j = runcSpecEdited();
		j["ociVersion"] = v;
		auto r = parseSpec(j, "/b");
		INFO(v);
		CHECK_MESSAGE(r, (r ? "" : r.error().message()));
	}
	for (const char* v : { "1.3.0", "1.0", "1.0.", "1.1.x", "1.0.2-", "1.0.2 ", "01.0.0", "1.0.2-dev!", "" }) {
		auto j = runcSpecEdited();
		j["ociVersion"] = v;
		INFO(v);
		CHECK(errorOf(j) == std::string("ociVersion: '") + v + "' not supported (pukaipu reads 1.0.x to 1.2.x)");
	}
	// A 1.1 field is still refused by name: the version adds nothing unchecked.
	auto j = runcSpecEdited();
	j["ociVersion"] = "1.1.0";
	j["linux"]["timeOffsets"] = json::object();
	CHECK(errorOf(j) == "linux.timeOffsets: field not supported by pukaipu");
}

TEST_CASE("absolute root.path is kept")
{
	auto j = runcSpecEdited();
	j["root"]["path"] = "/var/lib/pukaipu/rootfs/default";
	auto r = parseSpec(j, "/b");
	REQUIRE(r);
	CHECK(r->rootPath == "/var/lib/pukaipu/rootfs/default");
}

TEST_CASE("refuses a spec without a user namespace")
{
	auto j = runcSpecEdited();
	j["linux"]["namespaces"] = json::parse(R"([{"type":"pid"},{"type":"mount"}])");
	CHECK(errorOf(j).find("no user namespace") != std::string::npos);
}

TEST_CASE("refuses mapping host root, for uid and gid")
{
	auto j = runcSpecEdited();
	j["linux"]["uidMappings"][0]["hostID"] = 0;
	CHECK(errorOf(j) == "linux.uidMappings[0]: maps host uid 0 (root); pukaipu never maps host root");
	j = runcSpecEdited();
	j["linux"]["gidMappings"] = json::parse(R"([{"containerID":0,"hostID":0,"size":4000}])");
	CHECK(errorOf(j).find("linux.gidMappings[0]: maps host gid 0") == 0);
}

TEST_CASE("refuses missing mappings and an unmapped process user")
{
	auto j = runcSpecEdited();
	j["linux"].erase("uidMappings");
	CHECK(errorOf(j).find("linux.uidMappings: missing") == 0);
	j = runcSpecEdited();
	j["process"]["user"]["uid"] = 0;
	CHECK(errorOf(j) == "process.user.uid: 0 is not mapped by linux.uidMappings");
	j = runcSpecEdited();
	j["linux"]["uidMappings"].push_back({ { "containerID", 3999 }, { "hostID", 5000 }, { "size", 1 } });
	CHECK(errorOf(j) == "linux.uidMappings[1]: overlaps an earlier mapping");
}

TEST_CASE("each unsupported field is named by its JSON path")
{
	struct Case {
		const char* pointer;
		json value;
		const char* expect;
	};
	const Case cases[] = {
		{ "/hooks", json::object(), "hooks: field not supported by pukaipu" },
		{ "/process/selinuxLabel", "x", "process.selinuxLabel: field not supported by pukaipu" },
		{ "/linux/sysctl", json::object(), "linux.sysctl: field not supported by pukaipu" },
		{ "/linux/resources/blockIO", json::object(), "linux.resources.blockIO: field not supported by pukaipu" },
		{ "/linux/resources/memory/kernel", 1, "linux.resources.memory.kernel: field not supported by pukaipu" },
		{ "/linux/resources/cpu/cpus", "0-1", "linux.resources.cpu.cpus: field not supported by pukaipu" },
		{ "/linux/resources/pids/limit", 0, "linux.resources.pids.limit: expected a positive integer" },
		{ "/linux/resources/memory/limit", -2, "linux.resources.memory.limit: expected a positive integer" },
		{ "/linux/resources/memory/limit", 4096, "linux.resources.memory.limit: 4096 bytes is below 4 MiB" },
		{ "/linux/namespaces/0/path", "/proc/1/ns/pid", "linux.namespaces[0].path: joining an existing namespace is not supported" },
		{ "/mounts/0/uidMappings", json::array(), "mounts[0].uidMappings: field not supported by pukaipu" },
		{ "/process/user/additionalGids", json::parse("[5]"), "process.user.additionalGids: not supported" },
		{ "/linux/resources/devices/0/allow", true, "linux.resources.devices[0]: allowing devices is not supported" },
	};
	for (const auto& c : cases) {
		auto j = runcSpecEdited();
		j[json::json_pointer(c.pointer)] = c.value;
		INFO(c.pointer);
		CHECK(errorOf(j).find(c.expect) == 0);
	}
}

TEST_CASE("wrong types and invalid values are errors with their path")
{
	struct Case {
		const char* pointer;
		json value;
		const char* expect;
	};
	const Case cases[] = {
		{ "/ociVersion", "2.0.0", "ociVersion: '2.0.0' not supported" },
		{ "/ociVersion", 1, "ociVersion: expected a string, got 1" },
		{ "/process/terminal", "yes", "process.terminal: expected true or false, got string" },
		{ "/process/args", json::array(), "process.args: must name the program" },
		{ "/process/args", "sh", "process.args: expected an array of strings" },
		{ "/process/env/1", "NOEQUALS", "process.env[1]: 'NOEQUALS' is not NAME=VALUE" },
		{ "/process/cwd", "relative", "process.cwd: 'relative' is not an absolute path" },
		{ "/process/user/uid", -1, "process.user.uid: expected a non-negative integer, got -1" },
		{ "/process/user/uid", 4294967296, "process.user.uid: 4294967296 is out of range (max 4294967295)" },
		{ "/process/user", json::array(), "process.user: expected an object, got array" },
		{ "/process/rlimits/0/type", "RLIMIT_BOGUS", "process.rlimits[0].type: unknown rlimit 'RLIMIT_BOGUS'" },
		{ "/process/rlimits/0/soft", 2048, "process.rlimits[0]: soft limit 2048 is above the hard limit 1024" },
		{ "/root/path", "", "root.path: empty" },
		{ "/root/path", 5, "root.path: expected a string, got 5" },
		{ "/mounts/0/type", "overlay", "mounts[0].type: mount type 'overlay' not supported" },
		{ "/mounts/0/destination", "proc", "mounts[0].destination: 'proc' is not an absolute path" },
		{ "/mounts/0/destination", "/a/../etc", "mounts[0].destination: '/a/../etc' must not contain" },
		{ "/linux/namespaces/0/type", "time", "linux.namespaces[0].type: unknown namespace 'time'" },
		{ "/linux/namespaces/1/type", "pid", "linux.namespaces[1].type: namespace 'pid' listed twice" },
		{ "/linux/uidMappings/0/size", 0, "linux.uidMappings[0].size: must be at least 1" },
		{ "/linux/maskedPaths/0", "x", "linux.maskedPaths[0]: 'x' is not an absolute path" },
		{ "/hostname", std::string(65, 'h'), "hostname: longer than 64 characters" },
	};
	for (const auto& c : cases) {
		auto j = runcSpecEdited();
		j[json::json_pointer(c.pointer)] = c.value;
		INFO(c.pointer);
		CHECK(errorOf(j).find(c.expect) == 0);
	}
}

TEST_CASE("missing required parts")
{
	for (const char* key : { "root", "process", "linux", "ociVersion" }) {
		auto j = runcSpecEdited();
		j.erase(key);
		INFO(key);
		CHECK(errorOf(j).find(std::string(key) + ": missing") == 0);
	}
	auto j = runcSpecEdited();
	j["root"].erase("path");
	CHECK(errorOf(j) == "root.path: missing");
}

TEST_CASE("id map file format and lookup")
{
	std::vector<IdMapping> m { { 0, 100000, 1000 }, { 3999, 3999, 1 } };
	CHECK(formatIdMap(m) == "0 100000 1000\n3999 3999 1\n");
	CHECK(mapToHost(m, 5) == 100005u);
	CHECK(mapToHost(m, 3999) == 3999u);
	CHECK_FALSE(mapToHost(m, 1000));
	CHECK_FALSE(mapToHost(m, 4000));
}

TEST_CASE("seccomp in the spec is parsed, errors keep the linux.seccomp path")
{
	auto j = runcSpecEdited();
	j["linux"]["seccomp"] = json::parse(R"({"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["getpid"],"action":"SCMP_ACT_BOGUS"}]})");
	CHECK(errorOf(j).find("linux.seccomp.syscalls[0].action") == 0);
	j["linux"]["seccomp"]["syscalls"][0]["action"] = "SCMP_ACT_ALLOW";
	auto r = parseSpec(j, "/b");
	REQUIRE(r);
	REQUIRE(r->seccomp);
	CHECK(r->seccomp->syscalls.size() == 1);
}

TEST_CASE("linux.resources: memory, pids and cpu become cgroup limits; -1 is none")
{
	auto j = runcSpecEdited();
	j["linux"]["resources"]["memory"] = { { "limit", 64 << 20 }, { "swap", 128 << 20 } };
	j["linux"]["resources"]["pids"] = { { "limit", -1 } };
	j["linux"]["resources"]["cpu"] = { { "quota", 50000 }, { "shares", 512 } };
	auto r = parseSpec(j, "/b");
	REQUIRE_MESSAGE(r, (r ? "" : r.error().message()));
	CHECK(r->resources.memoryMax == (64u << 20));
	CHECK(r->resources.memorySwapMax == (128u << 20));
	CHECK_FALSE(r->resources.pidsMax);
	CHECK(r->resources.cpuQuotaUs == 50000u);
	CHECK(r->resources.cpuPeriodUs == 100000u); // the kernel's default, as runc
	CHECK(r->resources.cpuShares == 512u);
	// `runc spec`'s devices rule alone: no limits, no cgroup.
	auto plain = parseSpec(runcSpecEdited(), "/b");
	REQUIRE(plain);
	CHECK(plain->resources.empty());
}
