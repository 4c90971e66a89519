// Unit tests for sandbox/seccomp: JSON → profile (errors name their JSON
// path), profile → BPF, the BPF cache, and — in fork()ed children only —
// what an installed filter lets through and what it refuses. Syscalls are
// made with harmless bad arguments, so "allowed" and "denied" differ only by
// the errno (bubblewrap's try-syscall idea).
#include <doctest/doctest.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "sandbox/seccomp_profile.h"

using nlohmann::json;
using namespace pukaipu;

namespace {

const std::string kProfiles = std::string(PUKAIPU_SOURCE_ROOT) + "/profiles/seccomp/";

std::string parseError(const char* text)
{
	auto r = parseSeccomp(json::parse(text), "linux.seccomp");
	REQUIRE_MESSAGE(!r, text);
	return r.error().message();
}

SeccompProfile mustLoad(const std::string& path)
{
	auto p = loadSeccompFile(path);
	REQUIRE_MESSAGE(p, (p ? "" : p.error().message()));
	return *p;
}

SeccompProgram mustCompile(const SeccompProfile& p)
{
	auto prog = compileSeccomp(p);
	REQUIRE_MESSAGE(prog, (prog ? "" : prog.error().message()));
	return *prog;
}

bool sameBpf(const std::vector<sock_filter>& a, const std::vector<sock_filter>& b)
{
	return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(sock_filter)) == 0;
}

bool anyContains(const std::vector<std::string>& v, const std::string& needle)
{
	for (const std::string& s : v)
		if (s.find(needle) != std::string::npos)
			return true;
	return false;
}

struct TempDir {
	std::string path;
	TempDir()
	{
		char tmpl[] = "/tmp/pukaipu-seccomp-test-XXXXXX";
		REQUIRE(::mkdtemp(tmpl) != nullptr);
		path = tmpl;
	}
	~TempDir() { std::filesystem::remove_all(path); }
};

// Installs `prog` in a fork()ed child (with no_new_privs, as the sandbox
// does) and runs `body` there; returns the child's wait status. The body
// returns 0, or the number of the first check that failed.
int inFilteredChild(const SeccompProgram& prog, int (*body)())
{
	pid_t pid = ::fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			::_exit(200);
		if (!installSeccomp(prog))
			::_exit(201);
		// A raw exit_group: _exit() would run a sanitizer's exit hooks,
		// which need syscalls a test profile may deny.
		::syscall(SYS_exit_group, body());
	}
	int status = 0;
	REQUIRE(::waitpid(pid, &status, 0) == pid);
	return status;
}

// errno of `rc`, or 0 when the call succeeded.
int errnoOf(long rc)
{
	return rc < 0 ? errno : 0;
}

} // namespace

TEST_CASE("seccomp: parse accepts a full OCI profile")
{
	auto p = parseSeccomp(json::parse(R"({
		"comment": "accepted and ignored",
		"defaultAction": "SCMP_ACT_ERRNO",
		"defaultErrnoRet": 38,
		"architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
		"flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
		"syscalls": [
			{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "io"},
			{"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
				{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]},
			{"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": [
				{"index": 1, "value": 4294967295, "valueTwo": 21522, "op": "SCMP_CMP_MASKED_EQ"},
				{"index": 5, "value": 18446744073709551615, "op": "SCMP_CMP_NE"}]},
			{"names": ["ptrace"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
			{"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS", "args": null}
		]
	})"),
				"linux.seccomp");
	REQUIRE_MESSAGE(p, (p ? "" : p.error().message()));
	CHECK(p->defaultAction == "SCMP_ACT_ERRNO");
	CHECK(p->defaultErrnoRet == 38u);
	CHECK(p->architectures == std::vector<std::string> { "SCMP_ARCH_X86_64", "SCMP_ARCH_X86" });
	CHECK(p->flags.size() == 2);
	REQUIRE(p->syscalls.size() == 5);
	CHECK(p->syscalls[0].names == std::vector<std::string> { "read", "write" });
	CHECK(!p->syscalls[0].errnoRet);
	CHECK(p->syscalls[1].args[0].value == 2114060288u);
	CHECK(p->syscalls[1].args[0].valueTwo == 0u);
	const SeccompRule& ioctl = p->syscalls[2];
	CHECK(ioctl.errnoRet == 1u);
	REQUIRE(ioctl.args.size() == 2);
	CHECK(ioctl.args[0].index == 1);
	CHECK(ioctl.args[0].value == 0xffffffffu);
	CHECK(ioctl.args[0].valueTwo == 0x5412u);
	CHECK(ioctl.args[0].op == "SCMP_CMP_MASKED_EQ");
	CHECK(ioctl.args[1].value == UINT64_MAX);
	CHECK(p->syscalls[3].errnoRet == 7u);
	CHECK(p->syscalls[4].args.empty());
}

TEST_CASE("seccomp: parse names the JSON path of every bad field")
{
	struct Case {
		const char* json;
		const char* message;
	};
	const Case cases[] = {
		{ R"([])", "linux.seccomp: expected an object, got array" },
		{ R"({})", "linux.seccomp.defaultAction: missing" },
		{ R"({"defaultAction": 1})", "linux.seccomp.defaultAction: expected a string, got 1" },
		{ R"({"defaultAction": "SCMP_ACT_NOPE"})", "linux.seccomp.defaultAction: unknown action 'SCMP_ACT_NOPE'" },
		{ R"({"defaultAction": "SCMP_ACT_NOTIFY"})", "linux.seccomp.defaultAction: unknown action" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "foo": 1})", "linux.seccomp.foo: field not supported by pukaipu" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1})",
		  "linux.seccomp.defaultErrnoRet: errnoRet is only valid with SCMP_ACT_ERRNO" },
		{ R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1})",
		  "linux.seccomp.defaultErrnoRet: expected a non-negative integer, got -1" },
		{ R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 4096})",
		  "linux.seccomp.defaultErrnoRet: errno out of range" },
		{ R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 4294967296})",
		  "linux.seccomp.defaultErrnoRet: 4294967296 is out of range (max 4294967295)" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "comment": 3})", "linux.seccomp.comment: expected a string" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": "SCMP_ARCH_X86_64"})",
		  "linux.seccomp.architectures: expected an array of strings, got string" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]})",
		  "linux.seccomp.architectures[1]: unknown architecture 'SCMP_ARCH_Z80'" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]})",
		  "linux.seccomp.flags[0]: unknown or unsupported flag 'SECCOMP_FILTER_FLAG_NEW_LISTENER'" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "flags": [1]})", "linux.seccomp.flags[0]: expected a string, got 1" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "archMap": []})",
		  "linux.seccomp.archMap: Docker's 'archMap' is not supported" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x"})",
		  "linux.seccomp.listenerPath: seccomp notify is not supported" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}})",
		  "linux.seccomp.syscalls: expected an array, got object" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [7]})",
		  "linux.seccomp.syscalls[0]: expected an object, got 7" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]})",
		  "linux.seccomp.syscalls[0].names: missing" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]})",
		  "linux.seccomp.syscalls[0].action: missing" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]})",
		  "linux.seccomp.syscalls[0].names: must not be empty" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": null, "action": "SCMP_ACT_ALLOW"}]})",
		  "linux.seccomp.syscalls[0].names: must not be empty" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read", 2], "action": "SCMP_ACT_ALLOW"}]})",
		  "linux.seccomp.syscalls[0].names[1]: expected a string, got 2" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "comment": []}]})",
		  "linux.seccomp.syscalls[0].comment: expected a string, got array" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "read", "action": "SCMP_ACT_ALLOW"}]})",
		  "linux.seccomp.syscalls[0].name: field not supported by pukaipu" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
			{"names": ["read"], "action": "SCMP_ACT_ERRNO"},
			{"names": ["write"], "action": "SCMP_ACT_FOO"}]})",
		  "linux.seccomp.syscalls[1].action: unknown action 'SCMP_ACT_FOO'" },
		{ R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]})",
		  "linux.seccomp.syscalls[0].errnoRet: errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5000}]})",
		  "linux.seccomp.syscalls[0].errnoRet: errno out of range" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": "1"}]})",
		  "linux.seccomp.syscalls[0].errnoRet: expected a non-negative integer, got string" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {}}]})",
		  "linux.seccomp.syscalls[0].includes: Docker's 'includes' is not supported" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "excludes": {}}]})",
		  "linux.seccomp.syscalls[0].excludes: Docker's 'excludes' is not supported" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": {}}]})",
		  "linux.seccomp.syscalls[0].args: expected an array, got object" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
			{"names": ["a"], "action": "SCMP_ACT_ERRNO"}, {"names": ["b"], "action": "SCMP_ACT_ERRNO"},
			{"names": ["c"], "action": "SCMP_ACT_ERRNO"},
			{"names": ["d"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_FOO"}]}]})",
		  "linux.seccomp.syscalls[3].args[0].op: unknown operator 'SCMP_CMP_FOO'" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
			"args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]})",
		  "linux.seccomp.syscalls[0].args[0].index: 6 is out of range (max 5)" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
			"args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]})",
		  "linux.seccomp.syscalls[0].args[0].value: expected a non-negative integer, got -1" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
			"args": [{"index": 0, "value": 1, "valueTwo": 1.5, "op": "SCMP_CMP_EQ"}]}]})",
		  "linux.seccomp.syscalls[0].args[0].valueTwo: expected a non-negative integer, got 1.5" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
			"args": [{"index": 0, "value": 1}]}]})",
		  "linux.seccomp.syscalls[0].args[0].op: missing" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
			"args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ", "foo": 0}]}]})",
		  "linux.seccomp.syscalls[0].args[0].foo: field not supported by pukaipu" },
		{ R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
			"args": [{"index": 2, "value": 1, "op": "SCMP_CMP_GT"}, {"index": 2, "value": 9, "op": "SCMP_CMP_LT"}]}]})",
		  "linux.seccomp.syscalls[0].args[1].index: argument compared twice in one rule" },
	};
	for (const Case& c : cases) {
		CAPTURE(c.json);
		std::string msg = parseError(c.json);
		CHECK_MESSAGE(msg.find(c.message) != std::string::npos, msg);
	}
}

TEST_CASE("seccomp: loadSeccompFile names the file")
{
	TempDir tmp;
	std::string missing = tmp.path + "/missing.json";
	auto r = loadSeccompFile(missing);
	REQUIRE(!r);
	CHECK(r.error().errno_ == ENOENT);
	CHECK(r.error().message().find(missing) != std::string::npos);

	std::string broken = tmp.path + "/broken.json";
	std::ofstream(broken) << "{\"defaultAction\": ";
	r = loadSeccompFile(broken);
	REQUIRE(!r);
	CHECK(r.error().message().find(broken + "': invalid JSON: ") != std::string::npos);

	std::string bad = tmp.path + "/bad.json";
	std::ofstream(bad) << R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": "ALLOW"}]})";
	r = loadSeccompFile(bad);
	REQUIRE(!r);
	CHECK(r.error().message() == bad + ": syscalls[0].action: unknown action 'ALLOW'");

	// The file name stands for the top-level object, and is not a key.
	std::ofstream(bad) << "[]";
	r = loadSeccompFile(bad);
	REQUIRE(!r);
	CHECK(r.error().message() == bad + ": expected an object, got array");
	std::ofstream(bad) << R"({"defaultAction": "SCMP_ACT_ALLOW", "foo": 1})";
	r = loadSeccompFile(bad);
	REQUIRE(!r);
	CHECK(r.error().message() == bad + ": foo: field not supported by pukaipu");

	r = loadSeccompFile(tmp.path);
	REQUIRE(!r);
	CHECK(r.error().message().find("not a regular file") != std::string::npos);
}

TEST_CASE("seccomp: the shipped profiles compile without warnings")
{
	for (const char* name : { "default.json", "log.json" }) {
		CAPTURE(name);
		SeccompProfile p = mustLoad(kProfiles + name);
		SeccompProgram prog = mustCompile(p);
		CHECK(prog.warnings.empty());
		CHECK(!prog.bpf.empty());
		CHECK(prog.bpf.size() <= BPF_MAXINSNS);
		CHECK(prog.flags == 0);
		CHECK(p.architectures == std::vector<std::string> { "SCMP_ARCH_X86_64" });
	}
	// log.json is default.json with only the default action changed.
	SeccompProfile def = mustLoad(kProfiles + "default.json");
	SeccompProfile log = mustLoad(kProfiles + "log.json");
	CHECK(def.defaultAction == "SCMP_ACT_ERRNO");
	CHECK(def.defaultErrnoRet == 1u);
	CHECK(log.defaultAction == "SCMP_ACT_LOG");
	CHECK(!log.defaultErrnoRet);
	CHECK(log.syscalls.size() == def.syscalls.size());
}

TEST_CASE("seccomp: compile reports unknown syscalls and refuses contradictions")
{
	SeccompProfile p;
	p.defaultAction = "SCMP_ACT_ERRNO";
	p.syscalls.push_back({ { "getpid", "no_such_syscall_42" }, "SCMP_ACT_ALLOW", std::nullopt, {} });
	SeccompProgram prog = mustCompile(p);
	REQUIRE(prog.warnings.size() == 1);
	CHECK(prog.warnings[0].find("syscalls[0]: 'no_such_syscall_42' is not known to libseccomp") != std::string::npos);

	p.flags = { "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW" };
	CHECK(mustCompile(p).flags == (SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_SPEC_ALLOW));

	// Built in code, so the parser's checks did not run.
	SeccompProfile bad = p;
	bad.syscalls.push_back({ { "getpid" }, "SCMP_ACT_ERRNO", 5u, {} });
	auto r = compileSeccomp(bad);
	REQUIRE(!r);
	CHECK(r.error().message() == "seccomp: syscalls[0] and syscalls[1] give 'getpid' different actions");

	bad = p;
	bad.syscalls.push_back({ { "read" }, "SCMP_ACT_ALLOW", std::nullopt, { { 0, 1, 0, "SCMP_CMP_FOO" } } });
	r = compileSeccomp(bad);
	REQUIRE(!r);
	CHECK(r.error().message() == "seccomp: syscalls[1].args[0]: unknown operator");

	bad = p;
	bad.defaultAction = "SCMP_ACT_ALLOW";
	bad.defaultErrnoRet = 1;
	CHECK(!compileSeccomp(bad));
}

TEST_CASE("seccomp: cache hit, corruption detected and rebuilt")
{
	TempDir tmp;
	std::string cache = tmp.path + "/cache/seccomp"; // missing: created 0700
	SeccompProfile p = mustLoad(kProfiles + "default.json");
	std::vector<sock_filter> fresh = mustCompile(p).bpf;

	auto first = loadOrCompileSeccomp(p, cache);
	REQUIRE_MESSAGE(first, (first ? "" : first.error().message()));
	CHECK(first->warnings.empty());
	CHECK(sameBpf(first->bpf, fresh));
	struct stat st;
	REQUIRE(::stat(cache.c_str(), &st) == 0);
	CHECK((st.st_mode & 07777) == 0700);

	std::vector<std::filesystem::path> entries;
	for (const auto& e : std::filesystem::directory_iterator(cache))
		entries.push_back(e.path());
	REQUIRE(entries.size() == 1); // no temporary files left behind
	std::string entry = entries[0].string();
	CHECK(entries[0].extension() == ".bpf");
	struct stat before;
	REQUIRE(::stat(entry.c_str(), &before) == 0);

	SUBCASE("a second call reads the entry")
	{
		auto second = loadOrCompileSeccomp(p, cache);
		REQUIRE(second);
		CHECK(second->warnings.empty());
		CHECK(sameBpf(second->bpf, fresh));
		struct stat after;
		REQUIRE(::stat(entry.c_str(), &after) == 0);
		CHECK(after.st_ino == before.st_ino); // not rewritten
		CHECK(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
	}

	SUBCASE("a different profile gets its own entry")
	{
		SeccompProfile other = p;
		other.syscalls[0].names.pop_back(); // the last allowed name
		auto r = loadOrCompileSeccomp(other, cache);
		REQUIRE(r);
		CHECK(!sameBpf(r->bpf, fresh));
		CHECK(std::distance(std::filesystem::directory_iterator(cache), {}) == 2);
	}

	// Each corruption must be noticed, and the rebuilt entry must be good.
	auto corruptAndCheck = [&](auto&& corrupt) {
		corrupt();
		auto r = loadOrCompileSeccomp(p, cache);
		REQUIRE(r);
		CHECK(sameBpf(r->bpf, fresh));
		CHECK(anyContains(r->warnings, "rebuilt it"));
		auto again = loadOrCompileSeccomp(p, cache);
		REQUIRE(again);
		CHECK(again->warnings.empty());
		CHECK(sameBpf(again->bpf, fresh));
	};
	auto flipByteAt = [&](off_t offset) {
		int fd = ::open(entry.c_str(), O_RDWR | O_CLOEXEC);
		REQUIRE(fd >= 0);
		unsigned char c = 0;
		REQUIRE(::pread(fd, &c, 1, offset) == 1);
		c ^= 0x01;
		REQUIRE(::pwrite(fd, &c, 1, offset) == 1);
		::close(fd);
	};
	SUBCASE("flipped BPF byte") { corruptAndCheck([&] { flipByteAt(before.st_size - 3); }); }
	SUBCASE("flipped checksum byte") { corruptAndCheck([&] { flipByteAt(60); }); }
	SUBCASE("flipped magic") { corruptAndCheck([&] { flipByteAt(0); }); }
	SUBCASE("truncated") { corruptAndCheck([&] { REQUIRE(::truncate(entry.c_str(), before.st_size - 8) == 0); }); }
	SUBCASE("truncated to the header") { corruptAndCheck([&] { REQUIRE(::truncate(entry.c_str(), 30) == 0); }); }
	SUBCASE("empty") { corruptAndCheck([&] { REQUIRE(::truncate(entry.c_str(), 0) == 0); }); }
	SUBCASE("grown") { corruptAndCheck([&] { std::ofstream(entry, std::ios::app) << "12345678"; }); }
}

TEST_CASE("seccomp: an untrusted or empty cache dir is not used")
{
	TempDir tmp;
	SeccompProfile p = mustLoad(kProfiles + "default.json");
	std::vector<sock_filter> fresh = mustCompile(p).bpf;

	std::string shared = tmp.path + "/shared";
	REQUIRE(::mkdir(shared.c_str(), 0700) == 0);
	REQUIRE(::chmod(shared.c_str(), 0770) == 0);
	auto r = loadOrCompileSeccomp(p, shared);
	REQUIRE(r);
	CHECK(sameBpf(r->bpf, fresh));
	CHECK(anyContains(r->warnings, "group- or other-writable, not using it"));
	CHECK(std::filesystem::is_empty(shared));

	std::string link = tmp.path + "/link";
	REQUIRE(::symlink(shared.c_str(), link.c_str()) == 0);
	REQUIRE(::chmod(shared.c_str(), 0700) == 0);
	r = loadOrCompileSeccomp(p, link);
	REQUIRE(r);
	CHECK(anyContains(r->warnings, "not using it"));
	CHECK(std::filesystem::is_empty(shared));

	r = loadOrCompileSeccomp(p, "");
	REQUIRE(r);
	CHECK(r->warnings.empty());
	CHECK(sameBpf(r->bpf, fresh));
}

namespace {

// Checks under default.json; returns the number of the first failing check.
int defaultProfileChecks()
{
	int p[2];
	if (::pipe2(p, O_CLOEXEC) < 0)
		return 1;
	char c = 'x';
	int n = 0;
	// Allowed: plain syscalls, other ioctls, fork, chroot.
	if (::getpid() <= 0)
		return 2;
	if (::ioctl(p[0], FIONREAD, &n) != 0)
		return 3;
	if (errnoOf(::ioctl(p[0], TCGETS, &n)) != ENOTTY)
		return 4;
	if (errnoOf(::chroot("/nonexistent-pukaipu")) != ENOENT)
		return 5;
	pid_t pid = ::fork();
	if (pid == 0)
		::_exit(0);
	if (pid < 0 || ::waitpid(pid, nullptr, 0) != pid)
		return 6;
	// Namespaces: Chromium's three allowed, others denied (0x1 makes the
	// flags invalid, so an allowed call fails with EINVAL and changes nothing).
	if (errnoOf(::unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | 0x1)) != EINVAL)
		return 7;
	if (errnoOf(::unshare(CLONE_NEWUSER | CLONE_NEWCGROUP | 0x1)) != EPERM)
		return 25;
	if (errnoOf(::unshare(CLONE_NEWNS | 0x1)) != EPERM)
		return 8;
	if (errnoOf(::unshare(CLONE_NEWUTS | 0x1)) != EPERM)
		return 9;
	if (errnoOf(::syscall(SYS_clone3, nullptr, 0)) != ENOSYS)
		return 10;
	// Terminal injection, also with upper bits set that the kernel ignores.
	if (errnoOf(::ioctl(p[0], TIOCSTI, &c)) != EPERM)
		return 11;
	if (errnoOf(::syscall(SYS_ioctl, p[0], 0xabcd00005412UL, &c)) != EPERM)
		return 12;
	if (errnoOf(::ioctl(p[0], TIOCLINUX, &c)) != EPERM)
		return 13;
	// AF_VSOCK, also disguised with upper bits.
	if (errnoOf(::syscall(SYS_socket, 40UL, SOCK_STREAM, 0)) != EPERM)
		return 14;
	if (errnoOf(::syscall(SYS_socket, 0x100000028UL, SOCK_STREAM, 0)) != EPERM)
		return 15;
	int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return 16;
	::close(s);
	// AF_PACKET, and netlink but for ROUTE and KOBJECT_UEVENT.
	if (errnoOf(::syscall(SYS_socket, 17UL, SOCK_RAW, 0)) != EPERM)
		return 27;
	if (errnoOf(::syscall(SYS_socket, 0x100000011UL, SOCK_RAW, 0)) != EPERM)
		return 28;
	for (int proto : { 0, 15 }) {
		s = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, proto);
		if (s < 0)
			return 29;
		::close(s);
	}
	for (unsigned long proto : { 1UL, 4UL, 9UL, 12UL, 13UL, 14UL, 16UL, 21UL, 0x10000000CUL, 0xffffffffffffffffUL })
		if (errnoOf(::syscall(SYS_socket, 16UL, SOCK_RAW, proto)) != EPERM)
			return 30;
	// Explicit denials and the default action.
	if (errnoOf(::mount("none", "/nonexistent-pukaipu", "tmpfs", 0, nullptr)) != EPERM)
		return 17;
	if (errnoOf(::syscall(SYS_bpf, -1, nullptr, 0)) != EPERM)
		return 18;
	if (errnoOf(::syscall(SYS_keyctl, -1, 0, 0, 0, 0)) != EPERM)
		return 19;
	if (errnoOf(::syscall(SYS_ptrace, 3 /* PTRACE_PEEKUSER */, 0x7fffffff, 0, 0)) != EPERM)
		return 20;
	if (errnoOf(::syscall(SYS_io_uring_setup, 0, nullptr)) != EPERM)
		return 21;
	if (errnoOf(::syscall(SYS_setns, -1, 0)) != EPERM)
		return 22;
	if (::personality(0xffffffff) < 0)
		return 23;
	if (errnoOf(::personality(6 /* PER_BSD */)) != EPERM)
		return 24;
	return 0;
}

} // namespace

TEST_CASE("seccomp: default.json installed in a child")
{
	SeccompProgram prog = mustCompile(mustLoad(kProfiles + "default.json"));
	int status = inFilteredChild(prog, defaultProfileChecks);
	REQUIRE(WIFEXITED(status));
	CHECK_MESSAGE(WEXITSTATUS(status) == 0, "first failing check in the child: " << WEXITSTATUS(status));

	// The parent is unaffected.
	int p[2];
	REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
	char c = 'x';
	CHECK(errnoOf(::ioctl(p[0], TIOCSTI, &c)) == ENOTTY);
	CHECK(errnoOf(::syscall(SYS_clone3, nullptr, 0)) == EINVAL);
	::close(p[0]);
	::close(p[1]);
}

TEST_CASE("seccomp: non-native ABIs are killed")
{
	SeccompProgram prog = mustCompile(mustLoad(kProfiles + "default.json"));
	int status = inFilteredChild(prog, [] {
		(void)::syscall(0x40000000 | SYS_getpid); // x32
		return 0;
	});
	CHECK(WIFSIGNALED(status));
	CHECK(WTERMSIG(status) == SIGSYS);

	status = inFilteredChild(prog, [] {
		long ret = 20; // i386 getpid
		__asm__ volatile("int $0x80" : "+a"(ret) : : "memory", "r8", "r9", "r10", "r11");
		return 0;
	});
	REQUIRE(WIFSIGNALED(status));
	if (WTERMSIG(status) == SIGSEGV)
		MESSAGE("skipped the i386 check: this kernel has no IA32 emulation (int 0x80 faults)");
	else
		CHECK(WTERMSIG(status) == SIGSYS);
}

TEST_CASE("seccomp: log.json keeps the explicit denials")
{
	SeccompProgram prog = mustCompile(mustLoad(kProfiles + "log.json"));
	int status = inFilteredChild(prog, [] {
		// Logged and allowed: setns(-1) reaches the kernel and fails on the fd.
		if (errnoOf(::syscall(SYS_setns, -1, 0)) != EBADF)
			return 1;
		if (errnoOf(::mount("none", "/nonexistent-pukaipu", "tmpfs", 0, nullptr)) != EPERM)
			return 2;
		if (errnoOf(::syscall(SYS_clone3, nullptr, 0)) != ENOSYS)
			return 3;
		int p[2];
		char c = 'x';
		if (::pipe2(p, O_CLOEXEC) < 0 || errnoOf(::ioctl(p[0], TIOCSTI, &c)) != EPERM)
			return 4;
		return 0;
	});
	REQUIRE(WIFEXITED(status));
	CHECK_MESSAGE(WEXITSTATUS(status) == 0, "first failing check in the child: " << WEXITSTATUS(status));
}

TEST_CASE("seccomp: a syscall's argument rules win over its unconditional rule")
{
	// libseccomp alone drops argument rules next to an unconditional rule
	// for the same syscall; compileSeccomp runs them first instead.
	SeccompProfile p;
	p.defaultAction = "SCMP_ACT_ERRNO";
	p.syscalls = {
		{ { "exit_group", "exit", "rt_sigreturn" }, "SCMP_ACT_ALLOW", std::nullopt, {} },
		{ { "getppid" }, "SCMP_ACT_ALLOW", std::nullopt, {} },
		{ { "getppid" }, "SCMP_ACT_ERRNO", EIO, { { 0, 7, 0, "SCMP_CMP_EQ" } } },
		{ { "getpgid" }, "SCMP_ACT_ERRNO", ENXIO, {} },
		{ { "getpgid" }, "SCMP_ACT_ALLOW", std::nullopt, { { 0, 0, 0, "SCMP_CMP_EQ" } } },
	};
	SeccompProgram prog = mustCompile(p);
	int status = inFilteredChild(prog, [] {
		if (::syscall(SYS_getppid, 0) <= 0)
			return 1;
		if (errnoOf(::syscall(SYS_getppid, 7)) != EIO)
			return 2;
		if (::syscall(SYS_getpgid, 0) <= 0)
			return 3;
		if (errnoOf(::syscall(SYS_getpgid, 1)) != ENXIO)
			return 4;
		if (errnoOf(::syscall(SYS_getpid)) != EPERM) // the default
			return 5;
		return 0;
	});
	REQUIRE(WIFEXITED(status));
	CHECK_MESSAGE(WEXITSTATUS(status) == 0, "first failing check in the child: " << WEXITSTATUS(status));
}

TEST_CASE("seccomp: installSeccomp refuses an empty program")
{
	SeccompProgram empty;
	auto r = installSeccomp(empty);
	REQUIRE(!r);
	CHECK(r.error().errno_ == EINVAL);
}
