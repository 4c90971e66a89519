// The front door's runtime commands (launcher/front_runtime.h): what a
// renew sends to the running HAProxy, and in which order.
#include <doctest/doctest.h>

#include "launcher/front_runtime.h"

using namespace pukaipu::front;

namespace {

Changes renewOf(const std::string& user, const std::string& name)
{
	Changes c;
	c["haproxy.cfg"] = { "cfg", "cfg" };
	c["crt-list"] = { "list", "list" };
	c["backends.map"] = { name + " " + user + "\n", name + " " + user + "\n" };
	c["serials.map"] = { name + " 0A\nother.test 0B\n", name + " 0C\nother.test 0B\n" };
	c[user + "-client-ca.crt"] = { "-----BEGIN CERTIFICATE-----\nOLD\n-----END CERTIFICATE-----\n",
				       "-----BEGIN CERTIFICATE-----\r\nNEW\r\n\r\n-----END CERTIFICATE-----\n" };
	c[user + ".pem"] = { "PEM", "PEM" };
	return c;
}

} // namespace

TEST_CASE("a renew: serial map, then the client CA, then the instance's sessions are cut")
{
	auto cmds = runtimeCommands("/f", renewOf("john", "john.example.org"));
	REQUIRE(cmds);
	REQUIRE(cmds->size() == 4);
	// Security order: the map refuses the old certificate first, the CA
	// then refuses its handshakes, and only then are open sessions cut (a
	// session opened in between is already refused by the map).
	CHECK((*cmds)[0] == "set map /f/serials.map john.example.org 0C");
	CHECK((*cmds)[1] == "set ssl ca-file /f/john-client-ca.crt <<\n-----BEGIN CERTIFICATE-----\nNEW\n-----END CERTIFICATE-----\n\n");
	CHECK((*cmds)[2] == "commit ssl ca-file /f/john-client-ca.crt");
	CHECK((*cmds)[3] == "shutdown sessions server john/s");
}

TEST_CASE("a server certificate goes first, and cuts its instance's sessions")
{
	Changes c;
	c["bob.pem"] = { "A", "B" };
	auto cmds = runtimeCommands("/f", c);
	REQUIRE(cmds);
	REQUIRE(cmds->size() == 3);
	CHECK((*cmds)[0] == "set ssl cert /f/bob.pem <<\nB\n\n");
	CHECK((*cmds)[1] == "commit ssl cert /f/bob.pem");
	CHECK((*cmds)[2] == "shutdown sessions server bob/s");
}

TEST_CASE("maps: add, set and delete keys")
{
	Changes c;
	c["origins.map"] = { "a x\nb y\n", "b z\nc w\n" };
	auto cmds = runtimeCommands("/f", c);
	REQUIRE(cmds);
	CHECK(*cmds == std::vector<std::string> { "set map /f/origins.map b z", "add map /f/origins.map c w",
						  "del map /f/origins.map a" });
}

TEST_CASE("a new or removed instance, or a changed haproxy.cfg or crt-list, needs a reload")
{
	Changes added;
	added["new.pem"] = { std::nullopt, "PEM" };
	CHECK_FALSE(runtimeCommands("/f", added));
	Changes gone;
	gone["old-client-ca.crt"] = { "CA", std::nullopt };
	CHECK_FALSE(runtimeCommands("/f", gone));
	for (const char* f : { "haproxy.cfg", "crt-list", "default.pem" }) {
		Changes c;
		c[f] = { "a", "b" };
		CHECK_FALSE(runtimeCommands("/f", c));
	}
	Changes same = renewOf("x", "x.test");
	for (auto& [name, ch] : same)
		ch.after = ch.before;
	auto none = runtimeCommands("/f", same);
	REQUIRE(none);
	CHECK(none->empty());
}

TEST_CASE("parseMap reads key value lines")
{
	auto m = parseMap("a.test https://a.test:8443\nbad\n\nb.test 0F\n");
	CHECK(m.size() == 2);
	CHECK(m["a.test"] == "https://a.test:8443");
	CHECK(m["b.test"] == "0F");
}
