#include <sys/mount.h>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "sandbox/mounts.h"
#include "runc_spec.h"

using namespace pukaipu;
using json = nlohmann::json;

namespace {
std::vector<MountPlan> planOf(const json& j, std::vector<std::string>& warnings)
{
	auto s = parseSpec(j, "/b");
	REQUIRE(s);
	auto p = planMounts(*s, warnings);
	REQUIRE_MESSAGE(p, (p ? "" : p.error().message()));
	return *p;
}
} // namespace

TEST_CASE("runc's default mounts become a readable table")
{
	std::vector<std::string> w;
	auto plan = planOf(runcSpecEdited(), w);
	REQUIRE(plan.size() == 7);
	CHECK(plan[0].type == "proc");
	CHECK(plan[0].flags == (MS_NOSUID | MS_NODEV));
	CHECK(plan[1].destination == "/dev");
	CHECK(plan[1].populateDev);
	CHECK(plan[1].data == "mode=755,size=65536k");
	CHECK(plan[1].flags == (MS_NOSUID | MS_NODEV | MS_STRICTATIME));
	// devpts gid=5 names a group outside the user namespace: dropped, and said.
	CHECK(plan[2].data == "newinstance,ptmxmode=0666,mode=0620");
	CHECK(plan[2].flags == (MS_NOSUID | MS_NOEXEC)); // never nodev: ptys are device nodes
	REQUIRE(w.size() == 1);
	CHECK(w[0] == "mounts[2].options: 'gid=5' names a group outside the user namespace, ignoring");
	CHECK(plan[5].type == "sysfs");
	CHECK((plan[5].flags & MS_RDONLY));
	CHECK(plan[6].type == "cgroup2");
}

TEST_CASE("bind mounts: flags, recursion, propagation; hardened by default")
{
	auto j = runcSpecEdited();
	j["mounts"] = json::parse(R"([
		{"destination":"/data/home","type":"bind","source":"/home/john","options":["rbind","rw","rslave"]},
		{"destination":"/etc/resolv.conf","source":"/etc/resolv.conf","options":["bind","ro"]},
		{"destination":"/opt","type":"bind","source":"/opt","options":["bind","suid","dev"]}
	])");
	std::vector<std::string> w;
	auto plan = planOf(j, w);
	CHECK(plan[0].flags == (MS_BIND | MS_REC | MS_NOSUID | MS_NODEV));
	CHECK(plan[0].propagation == (MS_SLAVE | MS_REC));
	CHECK(plan[1].type == "bind");
	CHECK(plan[1].flags == (MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV));
	CHECK(plan[2].flags == MS_BIND);
	CHECK(w.empty());
}

TEST_CASE("mount options that would weaken isolation or be misread are refused")
{
	struct Case {
		const char* opts;
		const char* expect;
	};
	const Case cases[] = {
		{ R"(["rbind","rshared"])", "mounts[0].options[1]: 'rshared' propagation not supported" },
		{ R"(["rbind","mode=755"])", "mounts[0].options[1]: option 'mode=755' not supported for bind mounts" },
	};
	for (const auto& c : cases) {
		auto j = runcSpecEdited();
		j["mounts"] = json::array({ { { "destination", "/x" }, { "type", "bind" }, { "source", "/x" },
					      { "options", json::parse(c.opts) } } });
		auto s = parseSpec(j, "/b");
		REQUIRE(s);
		std::vector<std::string> w;
		auto p = planMounts(*s, w);
		REQUIRE_FALSE(p);
		CHECK(p.error().message() == c.expect);
	}
	auto j = runcSpecEdited();
	j["mounts"] = json::parse(R"([{"destination":"/x","type":"tmpfs","source":"tmpfs","options":["bind"]}])");
	auto s = parseSpec(j, "/b");
	REQUIRE(s);
	std::vector<std::string> w;
	CHECK_FALSE(planMounts(*s, w));
	j["mounts"] = json::parse(R"([{"destination":"/x","type":"bind","source":"relative"}])");
	auto bad = parseSpec(j, "/b");
	REQUIRE_FALSE(bad);
	CHECK(bad.error().message().find("mounts[0].source: a bind mount needs an absolute host path") == 0);
}

TEST_CASE("the /dev table holds exactly the safe nodes")
{
	std::vector<std::string> nodes(std::begin(kDevNodes), std::end(kDevNodes));
	CHECK(nodes == std::vector<std::string> { "null", "zero", "full", "random", "urandom" });
	CHECK(std::string(kDevTty) == "tty");
}

TEST_CASE("/dev/tty only for a process.terminal")
{
	std::vector<std::string> w;
	Spec s;
	s.mounts.push_back({ "/dev", "tmpfs", "tmpfs", { "mode=755" }, false, {}, {} });
	auto plan = planMounts(s, w);
	REQUIRE(plan);
	CHECK((*plan)[0].populateDev);
	CHECK_FALSE((*plan)[0].devTty);
	s.process.terminal = true;
	plan = planMounts(s, w);
	REQUIRE(plan);
	CHECK((*plan)[0].devTty);
}
