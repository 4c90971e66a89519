#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include <doctest/doctest.h>
#include <nftables/libnftables.h>

#include "sandbox/network.h"

using namespace pukaipu;

namespace {

Ipv4Net net(const char* s)
{
	auto n = parseIpv4Net(s);
	REQUIRE_MESSAGE(n, s);
	return *n;
}

bool has(const std::string& hay, const std::string& needle)
{
	return hay.find(needle) != std::string::npos;
}

} // namespace

TEST_CASE("network mode names")
{
	CHECK(*parseNetworkMode("none") == NetworkMode::None);
	CHECK(*parseNetworkMode("egress") == NetworkMode::Egress);
	CHECK(*parseNetworkMode("host") == NetworkMode::Host);
	CHECK_FALSE(parseNetworkMode("bridge"));
	CHECK_FALSE(parseNetworkMode(""));
}

TEST_CASE("IPv4 CIDR parsing: strict, with helpful errors")
{
	CHECK(net("10.0.0.0/8") == Ipv4Net { 0x0A000000u, 8 });
	CHECK(net("192.0.2.7") == Ipv4Net { 0xC0000207u, 32 });
	CHECK(net("0.0.0.0/0") == Ipv4Net { 0, 0 });
	CHECK(formatIpv4Net(net("172.16.0.0/12")) == "172.16.0.0/12");

	auto hostBits = parseIpv4Net("10.0.0.1/8");
	REQUIRE_FALSE(hostBits);
	CHECK(has(hostBits.error().what, "did you mean 10.0.0.0/8"));
	auto v6 = parseIpv4Net("fc00::/7");
	REQUIRE_FALSE(v6);
	CHECK(has(v6.error().what, "IPv6 is blocked"));
	for (const char* bad : { "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8x", "10.0.0", "", "a.b.c.d/8",
				 "1.2.3.4/08 " })
		CHECK_MESSAGE(!parseIpv4Net(bad), bad);
}

TEST_CASE("CIDR containment and overlap")
{
	CHECK(contains(net("10.0.0.0/8"), 0x0AE90001u));
	CHECK_FALSE(contains(net("10.0.0.0/8"), 0x0B000000u));
	CHECK(contains(net("0.0.0.0/0"), 0xFFFFFFFFu));
	CHECK(overlaps(net("10.0.0.0/8"), net("10.233.0.0/16")));
	CHECK(overlaps(net("10.233.0.0/16"), net("10.0.0.0/8")));
	CHECK_FALSE(overlaps(net("10.0.0.0/8"), net("11.0.0.0/8")));
}

TEST_CASE("slots: a /31 each, named pk-N, lowest free first")
{
	Ipv4Net pool = net("10.233.0.0/16");
	CHECK(slotCount(pool) == 32768);
	CHECK(slotCount(net("10.0.0.0/30")) == 2);
	auto a = slotAddresses(pool, 0);
	CHECK(formatIpv4(a.host) == "10.233.0.0");
	CHECK(formatIpv4(a.container) == "10.233.0.1");
	auto b = slotAddresses(pool, 200);
	CHECK(formatIpv4(b.host) == "10.233.1.144");
	CHECK(formatIpv4(b.container) == "10.233.1.145");
	auto last = slotAddresses(pool, slotCount(pool) - 1);
	CHECK(formatIpv4(last.container) == "10.233.255.255");

	CHECK(slotIfname(12) == "pk-12");
	CHECK(slotIfname(32767).size() < 16); // IFNAMSIZ
	CHECK(*slotOfIfname("pk-12") == 12);
	CHECK(*slotOfIfname("pk-0") == 0);
	CHECK_FALSE(slotOfIfname("pk-"));
	CHECK_FALSE(slotOfIfname("pk-01"));
	CHECK_FALSE(slotOfIfname("pk-1a"));
	CHECK_FALSE(slotOfIfname("eth0"));
	CHECK_FALSE(slotOfIfname("pk-99999999999"));

	CHECK(*firstFreeSlot({}, 4) == 0);
	CHECK(*firstFreeSlot({ 0, 1, 3 }, 4) == 2);
	CHECK(*firstFreeSlot({ 3, 1, 0, 7 }, 8) == 2);
	CHECK(*firstFreeSlot({ 0, 1, 2 }, 8, 1) == 3);
	CHECK_FALSE(firstFreeSlot({ 0, 1 }, 2));
	CHECK_FALSE(firstFreeSlot({ 0, 1, 1, 0 }, 2)); // duplicates from a racing listing
	// Two starts that see the same links and collide get distinct slots:
	// the loser retries from the slot after the one it lost.
	auto first = firstFreeSlot({ 0 }, 8);
	auto retry = firstFreeSlot({ 0, *first }, 8, *first + 1);
	CHECK(*first == 1);
	CHECK(*retry == 2);
}

TEST_CASE("options: pool must be private, nameservers reachable, allowlist without overlap")
{
	NetworkOptions o;
	o.mode = NetworkMode::Egress;
	o.allow = { net("10.99.0.0/24"), net("10.0.0.0/8"), net("192.168.1.0/24"), net("10.1.2.3") };
	o.nameservers = { 0x0A0A0A0Au, 0x0A0A0A0Au, 0xC6336435u };
	REQUIRE(normalizeNetworkOptions(o));
	REQUIRE(o.allow.size() == 2);
	CHECK(o.allow[0] == net("10.0.0.0/8"));
	CHECK(o.allow[1] == net("192.168.1.0/24"));
	CHECK(o.nameservers == std::vector<uint32_t> { 0x0A0A0A0Au, 0xC6336435u });
	NetworkOptions order;
	order.nameservers = { 0xC6336435u, 0x0A0A0A0Au, 0xC6336435u };
	REQUIRE(normalizeNetworkOptions(order));
	CHECK(order.nameservers == std::vector<uint32_t> { 0xC6336435u, 0x0A0A0A0Au }); // first asked first

	NetworkOptions bad;
	bad.pool = net("198.51.100.0/24");
	CHECK_FALSE(normalizeNetworkOptions(bad));
	bad.pool = net("10.0.0.0/31");
	CHECK_FALSE(normalizeNetworkOptions(bad));
	bad.pool = net("10.233.0.0/16");
	bad.nameservers = { 0x0AE90005u }; // in the pool
	CHECK_FALSE(normalizeNetworkOptions(bad));
	bad.nameservers = { 0xA9FEA9FEu }; // 169.254.169.254
	CHECK_FALSE(normalizeNetworkOptions(bad));
	bad.nameservers = { 0x7F000035u }; // 127.0.0.53
	CHECK_FALSE(normalizeNetworkOptions(bad));
}

TEST_CASE("resolv.conf: nameserver lines only, loopback skipped, systemd-resolved upstreams as fallback")
{
	auto list = parseResolvConfNameservers("# comment\nsearch example.org\nnameserver 192.0.2.53 # x\n"
					       "nameserver\t2001:db8::53\n  nameserver 198.51.100.1\r\nnameservers 1.1.1.1\n"
					       "nameserver\n");
	REQUIRE(list.size() == 3);
	CHECK(list[0] == "192.0.2.53");
	CHECK(list[1] == "2001:db8::53");
	CHECK(list[2] == "198.51.100.1");

	std::vector<std::string> w;
	auto direct = chooseNameservers("nameserver 10.255.255.53\n", std::nullopt, w);
	REQUIRE(direct);
	CHECK(*direct == std::vector<uint32_t> { 0x0AFFFF35u });

	w.clear();
	auto stub = chooseNameservers("nameserver 127.0.0.53\noptions edns0\n", "nameserver 192.0.2.1\nnameserver fd00::1\n", w);
	REQUIRE(stub);
	CHECK(*stub == std::vector<uint32_t> { 0xC0000201u });
	REQUIRE(w.size() == 1);
	CHECK(has(w[0], "IPv6"));

	w.clear();
	auto none = chooseNameservers("nameserver 127.0.0.53\n", std::nullopt, w);
	REQUIRE_FALSE(none);
	CHECK(has(none.error().what, "only loopback"));
	CHECK(has(none.error().what, "--dns"));
	CHECK_FALSE(chooseNameservers("", "nameserver 127.0.0.1\n", w));

	std::string text = formatResolvConf({ 0x0A000001u, 0x0A000002u, 0x0A000003u, 0x0A000004u });
	CHECK(has(text, "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"));
	CHECK_FALSE(has(text, "10.0.0.4"));
}

TEST_CASE("rule text: generic host table, per-container policy")
{
	std::string h = hostRules(net("10.233.0.0/16"), std::nullopt, {});
	auto at = [&](const std::string& text, const char* s) {
		auto p = text.find(s);
		REQUIRE_MESSAGE(p != std::string::npos, s);
		return p;
	};
	// The table is never deleted by a start: its base chains are replaced.
	CHECK_FALSE(has(h, "delete table"));
	CHECK(has(h, "add chain inet pukaipu forward\ndelete chain inet pukaipu forward\n"));
	CHECK(has(h, "add chain inet pukaipu prerouting\ndelete chain inet pukaipu prerouting\n"));
	CHECK(has(h, "add map inet pukaipu links { type iface_index : verdict; }"));
	CHECK(has(h, "iifname \"pk-*\" drop"));
	CHECK(has(h, "iifname \"pk-*\" oifname \"pk-*\" drop"));
	CHECK(has(h, "iifname \"pk-*\" meta nfproto ipv6 drop"));
	CHECK(has(h, "169.254.0.0/16"));
	CHECK(has(h, "oifname != \"pk-*\" ip saddr 10.233.0.0/16 masquerade"));
	CHECK_FALSE(has(h, "pk-0")); // nothing per container in the generic part
	// Before any DNAT (priority dstnat is -100): nothing addressed to the host.
	CHECK(has(h, "type filter hook prerouting priority raw - 10;"));
	CHECK(has(h, "iifname \"pk-*\" fib daddr type { local, broadcast, multicast } drop"));
	// Forward: never-ranges, then the link's exceptions, then private drops.
	const char* priv = "{ 10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12, 192.168.0.0/16 }";
	CHECK(at(h, "224.0.0.0/3 } drop") < at(h, "iif vmap @links"));
	CHECK(has(h, std::string("ip daddr ") + priv + " iif vmap @links"));
	CHECK(at(h, "iif vmap @links") < at(h, (std::string("ip daddr ") + priv + " drop").c_str()));
	// Without a record (ip_forward was on before): no rule for other traffic.
	CHECK_FALSE(has(h, "map forwarding_before {"));
	CHECK_FALSE(has(h, "@forwarding_before"));
	CHECK_FALSE(has(h, "iifname != \"pk-*\" oifname != \"pk-*\""));

	ForwardingRecord rec;
	rec.links = { { "eth0", false }, { "wg0", true } };
	std::string r = hostRules(net("10.233.0.0/16"), rec, { 7, 12 });
	CHECK(has(r, "elements = { \"eth0\" : drop, \"wg0\" : accept }"));
	CHECK(has(r, "comment \"net.ipv4.ip_forward was 0, conf.default.forwarding was 0\""));
	CHECK(at(r, "oifname != \"pk-*\" meta nfproto ipv4 iifname vmap @forwarding_before") <
	      at(r, "iifname != \"pk-*\" oifname != \"pk-*\" meta nfproto ipv4 drop"));
	CHECK(has(r, "delete element inet pukaipu links { 7 }\ndelete chain inet pukaipu link-7\n"));
	CHECK(has(r, "delete chain inet pukaipu link-12\n"));
	rec.defaultOn = true; // new interfaces forwarded: only the recorded "drop" ones stop
	std::string r1 = hostRules(net("10.233.0.0/16"), rec, {});
	CHECK(has(r1, "iifname vmap @forwarding_before"));
	CHECK_FALSE(has(r1, "iifname != \"pk-*\" oifname != \"pk-*\" meta nfproto ipv4 drop"));
	CHECK(defaultFromComment(forwardingComment(rec)) == std::optional<bool>(true));
	rec.defaultOn = false;
	CHECK(defaultFromComment(forwardingComment(rec)) == std::optional<bool>(false));
	CHECK_FALSE(defaultFromComment("something else"));
	CHECK(safeIfname("eth0.100"));
	CHECK(safeIfname("wg-vpn_1"));
	CHECK_FALSE(safeIfname("a\"b"));
	CHECK_FALSE(safeIfname("a b"));
	CHECK_FALSE(safeIfname(""));

	NetworkOptions lo;
	lo.mode = NetworkMode::Egress;
	lo.nameservers = { 0x0AFFFF35u };
	lo.allow = { net("10.99.0.0/24") };
	std::string l = linkRules(17, lo);
	CHECK(has(l, "add chain inet pukaipu link-17\nflush chain inet pukaipu link-17\n"));
	CHECK(has(l, "link-17 ip daddr { 10.255.255.53/32 } udp dport 53 accept"));
	CHECK(has(l, "link-17 ip daddr { 10.255.255.53/32 } tcp dport 53 accept"));
	CHECK(has(l, "link-17 ip daddr { 10.99.0.0/24 } accept"));
	CHECK(at(l, "flush chain") < at(l, "add element inet pukaipu links { 17 : jump link-17 }"));
	CHECK(has(dropLinkRules(17), "delete element inet pukaipu links { 17 }\ndelete chain inet pukaipu link-17"));

	NetworkOptions o;
	o.mode = NetworkMode::Egress;
	o.nameservers = { 0x0AFFFF35u };
	o.allow = { net("10.99.0.0/24") };
	std::string c = containerRules(o);
	auto pos = [&](const char* s) {
		auto p = c.find(s);
		REQUIRE_MESSAGE(p != std::string::npos, s);
		return p;
	};
	// Order is the policy: loopback, then never (incl. the pool), then DNS,
	// then the allowlist, then the private ranges.
	CHECK(pos("oifname \"lo\" accept") < pos("meta nfproto ipv6 reject"));
	CHECK(pos("meta nfproto ipv6 reject") < pos("10.233.0.0/16, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/3 } reject"));
	CHECK(pos("169.254.0.0/16") < pos("{ 10.255.255.53/32 } udp dport 53 accept"));
	CHECK(pos("udp dport 53 accept") < pos("{ 10.99.0.0/24 } accept"));
	CHECK(pos("{ 10.99.0.0/24 } accept") < pos("{ 10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12, 192.168.0.0/16 } reject"));
	CHECK(has(c, "policy drop;\n\t\tiifname \"lo\" accept\n\t\tct state established,related accept"));

	NetworkOptions bare;
	bare.mode = NetworkMode::Egress;
	std::string b = containerRules(bare);
	CHECK_FALSE(has(b, "dport 53"));
	CHECK_FALSE(has(b, "{  }"));
}

TEST_CASE("rule text parses in libnftables (dry run, nothing committed)")
{
	if (geteuid() != 0) {
		MESSAGE("skipped: libnftables needs root to read the ruleset even in a dry run");
		return;
	}
	NetworkOptions o;
	o.mode = NetworkMode::Egress;
	o.nameservers = { 0x0AFFFF35u, 0xC6336435u };
	o.allow = { net("10.99.0.0/24"), net("192.168.7.0/24") };
	ForwardingRecord rec;
	rec.links = { { "eth0", false }, { "wg0", true } };
	for (const std::string& script : { hostRules(o.pool, std::nullopt, {}), hostRules(o.pool, rec, {}),
					   hostRules(o.pool, rec, {}) + linkRules(5, o),
					   containerRules(o), containerRules(NetworkOptions {}) }) {
		std::unique_ptr<nft_ctx, void (*)(nft_ctx*)> ctx(nft_ctx_new(NFT_CTX_DEFAULT), nft_ctx_free);
		REQUIRE(ctx);
		nft_ctx_set_dry_run(ctx.get(), true);
		nft_ctx_buffer_output(ctx.get());
		nft_ctx_buffer_error(ctx.get());
		int rc = nft_run_cmd_from_buffer(ctx.get(), script.c_str());
		CHECK_MESSAGE(rc == 0, nft_ctx_get_error_buffer(ctx.get()), "\n", script);
	}
}
