// sysutil: runProgram's contract (fixed PATH, captured output, exit status), runAsUser,
// makeDirs, monotonicMs.
#include <doctest/doctest.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include "base/process.h"
#include "base/sysutil.h"

using namespace pukaipu;

TEST_CASE("runProgram: exit status and captured stderr")
{
	auto ok = runProgram({ "true" }, false);
	REQUIRE(ok);
	CHECK(ok->status == 0);
	auto three = runProgram({ "sh", "-c", "echo out; echo err >&2; exit 3" }, false);
	REQUIRE(three);
	CHECK(three->status == 3);
	CHECK(three->output == "err"); // stdout went to /dev/null
	auto both = runProgram({ "sh", "-c", "echo out; echo err >&2" }, true);
	REQUIRE(both);
	CHECK(both->output == "out\nerr");
	auto killed = runProgram({ "sh", "-c", "kill -TERM $$" }, false);
	REQUIRE(killed);
	CHECK(killed->status == 128 + 15);
}

TEST_CASE("runProgram: programs come from the fixed system PATH, never the caller's")
{
	char dir[] = "/tmp/pukaipu-sysutil-XXXXXX";
	REQUIRE(mkdtemp(dir));
	const std::string fake = std::string(dir) + "/pukaipu-no-such-tool";
	FILE* f = fopen(fake.c_str(), "w");
	REQUIRE(f);
	fputs("#!/bin/sh\nexit 0\n", f);
	fclose(f);
	chmod(fake.c_str(), 0755);
	const char* old = getenv("PATH");
	const std::string saved = old ? old : "";
	setenv("PATH", dir, 1);
	auto r = runProgram({ "pukaipu-no-such-tool" }, false);
	setenv("PATH", saved.c_str(), 1);
	REQUIRE_FALSE(r);
	CHECK(r.error().errno_ == ENOENT);
	CHECK(r.error().message().find("not found in /usr/sbin:/usr/bin:/sbin:/bin") != std::string::npos);
	// The environment it gets is PATH and LC_ALL only.
	auto env = runProgram({ "sh", "-c", "env | sort" }, true);
	REQUIRE(env);
	CHECK(env->output.find("LC_ALL=C\n") != std::string::npos);
	CHECK(env->output.find("PATH=/usr/sbin:/usr/bin:/sbin:/bin") != std::string::npos);
	CHECK(env->output.find("HOME=") == std::string::npos);
	unlink(fake.c_str());
	rmdir(dir);
}

TEST_CASE("makeDirs creates the missing parents; monotonicMs moves forward")
{
	char dir[] = "/tmp/pukaipu-sysutil-XXXXXX";
	REQUIRE(mkdtemp(dir));
	const std::string deep = std::string(dir) + "/a/b/c";
	REQUIRE(makeDirs(deep, 0700));
	struct stat st;
	REQUIRE(stat(deep.c_str(), &st) == 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK(makeDirs(deep, 0700)); // existing: fine
	const std::string file = std::string(dir) + "/f";
	FILE* f = fopen(file.c_str(), "w");
	REQUIRE(f);
	fclose(f);
	auto r = makeDirs(file + "/x", 0700);
	REQUIRE_FALSE(r);
	CHECK(r.error().errno_ == ENOTDIR);
	long long t0 = monotonicMs();
	usleep(20000);
	CHECK(monotonicMs() - t0 >= 20);
	CHECK(system((std::string("rm -rf ") + dir).c_str()) == 0);
}

TEST_CASE("runAsUser: the body runs with the user's ids; its text or its Error (errno kept) comes back")
{
	if (geteuid() != 0) {
		MESSAGE("skipped: runAsUser needs root to change ids");
		return;
	}
	auto ids = runAsUser(65534, 65534, "ids", []() -> Result<std::string> {
		return std::to_string(getuid()) + " " + std::to_string(getgid()) + " " + std::to_string(getgroups(0, nullptr));
	});
	REQUIRE_MESSAGE(ids, ids.error().message());
	CHECK(*ids == "65534 65534 0");
	auto err = runAsUser(65534, 65534, "err", []() -> Result<std::string> { return failErrno(EACCES, "open 'x'"); });
	REQUIRE_FALSE(err);
	CHECK(err.error().errno_ == EACCES);
	CHECK(err.error().message() == "open 'x': Permission denied");
	auto died = runAsUser(65534, 65534, "the helper", []() -> Result<std::string> { _exit(3); });
	REQUIRE_FALSE(died);
	CHECK(died.error().message() == "the helper as uid 65534 failed (status 768)");
}
