#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>
#include <type_traits>

#include <doctest/doctest.h>

#include "base/error.h"
#include "base/unique_fd.h"

using namespace pukaipu;

TEST_CASE("error formats as one line: what, then strerror")
{
	Error e = makeError(ENOENT, "mount '%s' on '%s'", "/x", "/data/home");
	CHECK(e.message() == "mount '/x' on '/data/home': No such file or directory");
	CHECK(makeError(0, "no errno here").message() == "no errno here");
}

TEST_CASE("error is trivially copyable and truncates long context safely")
{
	static_assert(std::is_trivially_copyable_v<Error>);
	std::string longPath(2000, 'a');
	Error e = makeError(EPERM, "open '%s'", longPath.c_str());
	CHECK(strnlen(e.what, sizeof(e.what)) == sizeof(e.what) - 1);
	CHECK(e.message().find("Operation not permitted") != std::string::npos);
}

TEST_CASE("fail() and failErrno() carry into Result")
{
	Result<int> r = failErrno(EACCES, "step %d", 3);
	REQUIRE_FALSE(r);
	CHECK(r.error().errno_ == EACCES);
	CHECK(r.error().message() == "step 3: Permission denied");
}

TEST_CASE("UniqueFd owns, moves and releases")
{
	int p[2];
	REQUIRE(pipe2(p, O_CLOEXEC) == 0);
	{
		UniqueFd a(p[0]);
		UniqueFd b(std::move(a));
		CHECK_FALSE(a.valid());
		CHECK(b.get() == p[0]);
	}
	CHECK(fcntl(p[0], F_GETFD) == -1); // closed by b
	UniqueFd c(p[1]);
	int raw = c.release();
	CHECK(fcntl(raw, F_GETFD) >= 0); // released, still open
	close(raw);
}
