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
#include "launcher/names.h"

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

TEST_CASE("pukaipu.json: every optional key is read, checked and named in errors by its path")
{
	auto c = parseGlobalConfig(json::parse(R"({
		"rootfs": "/srv/rootfs", "uidRange": [5000, 5100], "portRange": [20000, 20099],
		"apparmor": {"policy": "optional", "profile": "p"}, "seccompProfile": "",
		"session": {"command": ["/bin/s"], "shell": ["/bin/sh", "-l"]}, "shmSize": "50%",
		"network": {"mode": "none", "allowHostNetwork": true, "allowedCidrs": ["10.0.0.0/8"], "dns": ["192.0.2.53"]},
		"certificateDays": 90, "graceSeconds": 99999, "idleSeconds": 600,
		"rootfsUpdate": {"staleDays": 3, "checkSeconds": 5}})"));
	REQUIRE_MESSAGE(c, c.error().message());
	CHECK(c->rootfs == "/srv/rootfs");
	CHECK(c->uids.first == 5000);
	CHECK(c->uids.last == 5100);
	CHECK(c->ports.first == 20000);
	CHECK(c->apparmorPolicy == "optional");
	CHECK(c->apparmorProfile == "p");
	CHECK(c->seccompProfile.empty());
	CHECK(c->sessionCommand == std::vector<std::string> { "/bin/s" });
	CHECK(c->shellCommand == std::vector<std::string> { "/bin/sh", "-l" });
	CHECK(c->shmSize == "50%");
	CHECK(c->networkMode == "none");
	CHECK(c->allowHostNetwork);
	CHECK(c->allowedCidrs == std::vector<std::string> { "10.0.0.0/8" });
	CHECK(c->dns == std::vector<std::string> { "192.0.2.53" });
	CHECK(c->certDays == 90);
	CHECK(c->graceSeconds == 3600); // capped
	CHECK(c->idleSeconds == 600);
	CHECK(c->staleDays == 3);
	CHECK(c->swapCheckSeconds == 5);

	json back = *c;
	CHECK(back["uidRange"] == json::array({ 5000, 5100 }));
	CHECK(back["network"]["dns"] == json::array({ "192.0.2.53" }));
	auto again = parseGlobalConfig(back);
	REQUIRE(again);
	CHECK(json(*again) == back);

	CHECK(globalError(R"({"rootfs": "rel"})") == "rootfs: 'rel' is not an absolute path");
	CHECK(globalError(R"({"uidRange": [10, 20]})") == "uidRange: starts at 10, inside the system range (below 1000)");
	CHECK(globalError(R"({"portRange": [80, 90]})") == "portRange: starts at 80, a privileged port");
	CHECK(globalError(R"({"portRange": [2000, 70000]})") ==
	      "portRange: [2000, 70000] is not a valid range (at most 65535)");
	CHECK(globalError(R"({"apparmor": {"policy": "maybe"}})") ==
	      "apparmor.policy: 'maybe' is not one of: required, optional");
	CHECK(globalError(R"({"apparmor": {"profile": 1}})") == "apparmor.profile: expected a string, got 1");
	CHECK(globalError(R"({"session": {"shell": ["sh"]}})") ==
	      "session.shell: expected a command with an absolute path");
	CHECK(globalError(R"({"shmSize": "1x"})") == "shmSize: '1x' is not a tmpfs size (e.g. 1g, 512m, 50%)");
	CHECK(globalError(R"({"network": {"allowHostNetwork": "yes"}})") ==
	      "network.allowHostNetwork: expected true or false, got string");
	CHECK(globalError(R"({"network": {"dns": [1]}})") == "network.dns[0]: expected a string, got 1");
	CHECK(globalError(R"({"certificateDays": 0})") == "certificateDays: 0 is outside 1..3650");
	CHECK(globalError(R"({"idleSeconds": 604801})") == "idleSeconds: 604801 is more than 7 days");
	CHECK(globalError(R"({"rootfsUpdate": {"checkSeconds": 0}})") == "rootfsUpdate.checkSeconds: 0 is outside 1..86400");
	CHECK(globalError(R"({"rootfsUpdate": {"staleDay": 1}})").find("staleDay") != std::string::npos);
	CHECK(globalError(R"({"graceSeconds": -1})") == "graceSeconds: expected a non-negative integer, got -1");
}

TEST_CASE("instance.json: optional keys round-trip, defaults are left out, errors name the key")
{
	const json minimal = json::parse(R"({"user": "john", "uid": 3001, "gid": 3001, "port": 14501,
		"fqdn": "john.example.test", "extraNames": [], "created": "", "createdUser": false})");
	auto m = parseInstanceConfig(minimal);
	REQUIRE(m);
	CHECK(json(*m) == minimal);

	const json full = json::parse(R"({"user": "john", "uid": 3001, "gid": 3002, "port": 14501,
		"fqdn": "john.example.test", "extraNames": ["a.test", "192.0.2.1"], "network": "none",
		"created": "2026-01-01T00:00:00Z", "createdUser": true, "idleSeconds": 0,
		"limits": {"memory": "2G", "cpus": 1.5, "tasks": 2048}, "grants": {"clipboard": "both", "gpu": "on"}})");
	auto f = parseInstanceConfig(full);
	REQUIRE_MESSAGE(f, f.error().message());
	CHECK(f->idleSeconds == std::optional<uint32_t>(0));
	CHECK(f->limits.cpus == 1.5);
	CHECK(f->grants.gpu);
	CHECK(json(*f) == full);

	auto bad = [&](const char* key, json value) {
		json j = minimal;
		j[key] = std::move(value);
		auto r = parseInstanceConfig(j);
		REQUIRE_FALSE(r);
		return r.error().message();
	};
	CHECK(bad("network", "host") == "network: 'host' is not one of: egress, none");
	CHECK(bad("createdUser", 1) == "createdUser: expected true or false, got 1");
	CHECK(bad("idleSeconds", 8 * 86400) == "idleSeconds: 691200 is more than 7 days");
	CHECK(bad("limits", { { "memory", "2X" } }) == "limits.memory: '2X' is not a memory size (e.g. 2G, 512M, 25%)");
	CHECK(bad("limits", { { "cpus", "1" } }) == "limits.cpus: expected a number");
	CHECK(bad("limits", { { "tasks", 3 } }) == "limits.tasks: 3 is not between 16 and 4194304");
	CHECK(bad("grants", { { "gpu", "yes" } }) == "grants.gpu: 'yes' is not one of: on, off");
}

TEST_CASE("frontProxyFrom: IP addresses and CIDR ranges only")
{
	auto c = parseGlobalConfig(json::parse(R"({"frontProxyFrom": ["192.0.2.1", "10.0.0.0/8", "2001:db8::/32"]})"));
	REQUIRE(c);
	CHECK(c->frontProxyFrom == std::vector<std::string> { "192.0.2.1", "10.0.0.0/8", "2001:db8::/32" });
	CHECK(parseGlobalConfig(json::parse("{}"))->frontProxyFrom.empty());
	for (const char* bad : { R"({"frontProxyFrom": ["router.example"]})", R"({"frontProxyFrom": ["10.0.0.0/33"]})",
				 R"({"frontProxyFrom": ["10.0.0.0/"]})", R"({"frontProxyFrom": ["::/129"]})",
				 R"({"frontProxyFrom": ["10.0.0.1/8x"]})" })
		CHECK(globalError(bad).find("is not an IP address or CIDR range") != std::string::npos);
	CHECK(globalError(R"({"frontProxyFrom": "10.0.0.1"})").find("frontProxyFrom") != std::string::npos);
}

TEST_CASE("instance names: DNS only (no IP, no wildcard), one instance per name, within the CA's domains")
{
	CHECK(checkInstanceName("john.example.org", "--fqdn"));
	for (const char* bad : { "127.0.0.1", "::1", "2001:db8::7", "[::1]", "*.example.org", "a..b", "-a.b", "a b" }) {
		CAPTURE(bad);
		auto r = checkInstanceName(bad, "--fqdn");
		REQUIRE_FALSE(r);
		CHECK(r.error().message().rfind(std::string("--fqdn '") + bad + "'", 0) == 0);
	}
	CHECK(checkInstanceName("127.0.0.1", "--extra-name").error().message().find("an IP address") != std::string::npos);
	InstanceConfig a, b;
	a.user = "alice";
	a.fqdn = "Alice.Example.Org";
	a.extraNames = { "alt.example.org" };
	b.user = "bob";
	b.fqdn = "bob.example.org";
	std::vector<InstanceConfig> all { a, b };
	CHECK(namesOf(a) == std::vector<std::string> { "alice.example.org", "alt.example.org" });
	CHECK(checkNamesFree(all, "carol", { "carol.example.org" }));
	CHECK(checkNamesFree(all, "alice", { "alice.example.org" })); // its own names
	auto dup = checkNamesFree(all, "carol", { "c.example.org", "ALT.example.org" });
	REQUIRE_FALSE(dup);
	CHECK(dup.error().message() == "name 'ALT.example.org' already belongs to instance 'alice'; a name opens one "
				       "instance only");
	GlobalConfig g;
	g.domain = "Example.Org";
	g.extraDomains = { "other.test" };
	auto d = permittedDomains(g);
	CHECK(d == std::vector<std::string> { "example.org", "other.test" });
	CHECK(withinDomains("example.org", d));
	CHECK(withinDomains("A.B.Example.ORG", d));
	CHECK(withinDomains("x.other.test", d));
	CHECK_FALSE(withinDomains("xexample.org", d));
	CHECK_FALSE(withinDomains("example.org.evil.test", d));
	CHECK_FALSE(withinDomains("org", d));
	CHECK(globalError(R"({"extraDomains": ["ok.test", "10.0.0.1"]})") == "extraDomains: '10.0.0.1' is not a DNS name");
	CHECK(globalError(R"({"domain": "::1"})") == "domain: '::1' is not a DNS name");
}
