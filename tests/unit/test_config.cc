// Configuration: pukaipu.json and instance.json parse strictly (every error
// names the file or key), round-trip through toJson; IP literals.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "base/net_literal.h"
#include "launcher/config.h"

using namespace pukaipu;
using json = nlohmann::json;

namespace {

std::string globalError(const char* text)
{
	auto c = parseGlobalConfig(json::parse(text));
	REQUIRE_FALSE(c);
	return c.error().message();
}

} // namespace

TEST_CASE("isIpLiteral: inet_pton's IPv4 and IPv6 text, nothing else")
{
	for (const char* ok : { "0.0.0.0", "127.0.0.1", "192.0.2.7", "::", "::1", "2001:db8::1", "::ffff:192.0.2.7" })
		CHECK_MESSAGE(isIpLiteral(ok), ok);
	for (const char* bad : { "", "localhost", "example.org", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4",
				 "1.2.3.4 ", " ::1", "[::1]", "::1%lo", "1.2.3.4:80", "2001:db8::g" })
		CHECK_FALSE_MESSAGE(isIpLiteral(bad), bad);
	auto v4 = parseIpLiteral("192.0.2.7");
	REQUIRE(v4);
	CHECK(v4->family == AF_INET);
	CHECK(v4->size() == 4);
	CHECK(v4->bytes[0] == 192);
	CHECK(v4->bytes[3] == 7);
	auto v6 = parseIpLiteral("::1");
	REQUIRE(v6);
	CHECK(v6->family == AF_INET6);
	CHECK(v6->size() == 16);
	CHECK(v6->bytes[15] == 1);
}

TEST_CASE("pukaipu.json: listenAddress must be an IP address; the error names the file and the key")
{
	CHECK(parseGlobalConfig(json::parse(R"({"listenAddress": "::"})"))->listenAddress == "::");
	CHECK(parseGlobalConfig(json::parse(R"({"listenAddress": "127.0.0.1"})"))->listenAddress == "127.0.0.1");
	CHECK(globalError(R"({"listenAddress": "localhost"})") ==
	      "listenAddress: 'localhost' is not an IPv4 or IPv6 address");
	CHECK(globalError(R"({"listenAddress": "[::1]"})") == "listenAddress: '[::1]' is not an IPv4 or IPv6 address");
	CHECK(globalError(R"({"listenAddress": 7})") == "listenAddress: expected a string, got 7");

	char tmpl[] = "/tmp/pukaipu-config-test-XXXXXX";
	REQUIRE(mkdtemp(tmpl) != nullptr);
	const std::string dir = tmpl;
	Paths p;
	p.configFile = dir + "/pukaipu.json";
	std::ofstream(p.configFile) << R"({"listenAddress": "0.0.0.0:14500"})";
	auto c = loadGlobalConfig(p);
	std::filesystem::remove_all(dir);
	REQUIRE_FALSE(c);
	CHECK(c.error().message() == p.configFile + ": listenAddress: '0.0.0.0:14500' is not an IPv4 or IPv6 address");
}
