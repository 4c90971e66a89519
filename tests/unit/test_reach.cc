// reach: may the container's user search every directory on the way to its
// rootfs and bind sources (maySearch by the mode bits; checkSearchable on a
// real tree, naming the directory that blocks).
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox/reach.h"

using namespace pukaipu;

TEST_CASE("maySearch: the first class that matches decides, as in the kernel")
{
	// others
	CHECK(maySearch(0755, 0, 0, 3999, 3999, false));
	CHECK(maySearch(0711, 0, 0, 3999, 3999, false));
	CHECK_FALSE(maySearch(0700, 0, 0, 3999, 3999, false));
	CHECK_FALSE(maySearch(0750, 0, 0, 3999, 3999, false));
	// the group
	CHECK(maySearch(0710, 0, 3999, 3999, 3999, false));
	CHECK_FALSE(maySearch(0701, 0, 3999, 3999, 3999, false)); // group class matched: others' x does not count
	// the owner
	CHECK(maySearch(0100, 3999, 0, 3999, 3999, false));
	CHECK_FALSE(maySearch(0011, 3999, 3999, 3999, 3999, false)); // owner class matched, no x there
	// owner and group mapped in the container: CAP_DAC_READ_SEARCH there
	CHECK(maySearch(0000, 3999, 3999, 3999, 3999, true));
}

namespace {
Spec specOf(uint32_t id)
{
	Spec s;
	s.process.uid = s.process.gid = id;
	s.uidMappings = { { id, id, 1 } };
	s.gidMappings = { { id, id, 1 } };
	return s;
}
} // namespace

TEST_CASE("checkSearchable names the directory that blocks, and the ids")
{
	char tmpl[] = "/tmp/pukaipu-unit-reach-XXXXXX"; // mkdtemp: 0700, ours
	REQUIRE(mkdtemp(tmpl));
	const std::string d = tmpl;
	const std::string pub = d + "/pub", root = pub + "/rootfs";
	REQUIRE(mkdir(pub.c_str(), 0755) == 0);
	REQUIRE(mkdir(root.c_str(), 0755) == 0);
	REQUIRE(chmod(root.c_str(), 0755) == 0); // whatever the umask
	const Spec s = specOf(geteuid() == 3999 ? 3998 : 3999);
	const unsigned id = s.process.uid;

	auto r = checkSearchable("root.path '" + root + "'", root, false, s);
	REQUIRE_FALSE(r);
	char want[512];
	std::snprintf(want, sizeof(want), "root.path '%s': uid %u (gid %u) cannot search '%s' (mode 0700, owner %u:%u)",
		      root.c_str(), id, id, d.c_str(), (unsigned)geteuid(), (unsigned)getegid());
	CHECK(r.error().message() == want);
	CHECK(r.error().errno_ == 0);

	// Owner and group mapped into the container: the child may pass.
	Spec mapped = s;
	mapped.uidMappings.push_back({ 0, (uint32_t)geteuid(), 1 });
	mapped.gidMappings.push_back({ 0, (uint32_t)getegid(), 1 });
	CHECK(checkSearchable("x", root, false, mapped));

	REQUIRE(chmod(d.c_str(), 0711) == 0);
	CHECK(checkSearchable("x", root, false, s));
	CHECK(checkSearchable("x", root + "//", false, s));

	// The path itself: searched for a rootfs, not for a bind source.
	REQUIRE(chmod(root.c_str(), 0700) == 0);
	r = checkSearchable("x", root, false, s);
	REQUIRE_FALSE(r);
	CHECK(r.error().message().find("cannot search '" + root + "' (mode 0700") != std::string::npos);
	CHECK(checkSearchable("x", root, true, s));

	// Missing, or not a directory: not ours to report.
	CHECK(checkSearchable("x", d + "/missing/rootfs", false, s));
	CHECK(checkSearchable("x", "/dev/null/x", false, s));

	// Unmapped ids (the spec parser refuses them) are not judged here.
	Spec unmapped = s;
	unmapped.uidMappings.clear();
	REQUIRE(chmod(d.c_str(), 0700) == 0);
	CHECK(checkSearchable("x", root, false, unmapped));

	rmdir(root.c_str());
	rmdir(pub.c_str());
	rmdir(d.c_str());
}
