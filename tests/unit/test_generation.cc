// Rootfs generations (launcher/generation.h): resolving `current` once, and
// when a desktop on an older generation restarts (swapReason).
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include <doctest/doctest.h>

#include "launcher/generation.h"

using namespace pukaipu;
namespace fs = std::filesystem;

TEST_CASE("swapReason: never with a client; asked, behind with idleSeconds, or behind for staleDays without one")
{
	Behind current;
	Behind behind { true, "G2", 3 * 86400 };
	CHECK(swapReason("G1", current, 0, 0, 7, false).empty());
	CHECK(swapReason("G1", behind, 1, 600, 0, true).empty()); // a client: never, whatever else holds
	CHECK(swapReason("G1", behind, 0, 0, 7, false).empty());  // 3 days behind, staleDays 7, no idle timeout
	CHECK(swapReason("G1", behind, 0, 0, 3, false) ==
	      "generation G1 is behind current (G2) for 3 days (rootfsUpdate.staleDays 3) and no client is attached");
	CHECK(swapReason("G1", behind, 0, 600, 7, false) == "generation G1 is behind current (G2) and no client is attached");
	CHECK(swapReason("G1", current, 0, 0, 7, true).find("pukaipu restart --when-idle") != std::string::npos);
}

TEST_CASE("resolveRootfs: a single tree as it is; `current` resolved to a generation beside it, nothing else")
{
	const fs::path dir = fs::temp_directory_path() / ("pukaipu-gen-" + std::to_string(getpid()));
	fs::remove_all(dir);
	fs::create_directories(dir / "usr");
	auto plain = resolveRootfs(dir.string());
	REQUIRE(plain);
	CHECK(plain->path == dir.string());
	CHECK(plain->generation.empty());
	fs::create_directories(dir / "20261207T120000Z");
	fs::create_directory_symlink("20261207T120000Z", dir / "current");
	auto gen = resolveRootfs(dir.string());
	REQUIRE(gen);
	CHECK(gen->path == (dir / "20261207T120000Z").string());
	CHECK(gen->generation == "20261207T120000Z");
	fs::remove(dir / "current");
	fs::create_directory_symlink("/etc", dir / "current");
	auto bad = resolveRootfs(dir.string());
	REQUIRE(!bad);
	CHECK(bad.error().message().find("not to a generation beside it") != std::string::npos);
	fs::remove_all(dir);
}
