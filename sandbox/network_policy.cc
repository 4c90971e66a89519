// network_policy: the pure half of network.h — addresses, slots, resolv.conf
// and the nftables rule text. No system calls here, so unit tests read it all.
#include "network.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <charconv>
#include <cstdio>

namespace pukaipu {

namespace {

// Destinations no container ever reaches, whatever the allowlist says.
// 224.0.0.0/3 is multicast, reserved and broadcast.
constexpr Ipv4Net kNever[] = {
	{ 0x00000000u, 8 },  // 0.0.0.0/8 "this network"
	{ 0x7F000000u, 8 },  // 127.0.0.0/8 loopback (the container's own lo is allowed first)
	{ 0xA9FE0000u, 16 }, // 169.254.0.0/16 link-local, cloud metadata
	{ 0xE0000000u, 3 },  // multicast, 240/4, broadcast
};

// Private ranges: refused unless allowlisted.
constexpr Ipv4Net kPrivate[] = {
	{ 0x0A000000u, 8 },  // 10.0.0.0/8
	{ 0x64400000u, 10 }, // 100.64.0.0/10 carrier-grade NAT
	{ 0xAC100000u, 12 }, // 172.16.0.0/12
	{ 0xC0A80000u, 16 }, // 192.168.0.0/16
};

uint32_t maskOf(int prefix)
{
	return prefix == 0 ? 0u : ~0u << (32 - prefix);
}

std::string setOf(const std::vector<Ipv4Net>& nets)
{
	std::string s = "{ ";
	for (size_t i = 0; i < nets.size(); i++)
		s += (i ? ", " : "") + formatIpv4Net(nets[i]);
	return s + " }";
}

std::string setOf(const std::vector<uint32_t>& addrs)
{
	std::vector<Ipv4Net> nets;
	for (uint32_t a : addrs)
		nets.push_back({ a, 32 });
	return setOf(nets);
}

std::string_view trim(std::string_view s)
{
	while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
		s.remove_prefix(1);
	while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
		s.remove_suffix(1);
	return s;
}

} // namespace

Result<NetworkMode> parseNetworkMode(std::string_view s)
{
	if (s == "none")
		return NetworkMode::None;
	if (s == "egress")
		return NetworkMode::Egress;
	if (s == "host")
		return NetworkMode::Host;
	return fail("network mode '%.*s': expected none, egress or host", (int)s.size(), s.data());
}

Result<uint32_t> parseIpv4(std::string_view s)
{
	char buf[INET6_ADDRSTRLEN + 1];
	if (s.size() >= sizeof(buf))
		return fail("'%.*s': not an IPv4 address", (int)std::min<size_t>(s.size(), 64), s.data());
	std::copy(s.begin(), s.end(), buf);
	buf[s.size()] = '\0';
	struct in_addr a;
	if (inet_pton(AF_INET, buf, &a) == 1)
		return ntohl(a.s_addr);
	struct in6_addr a6;
	if (inet_pton(AF_INET6, buf, &a6) == 1)
		return fail("'%s': IPv6 is blocked for containers (they get no IPv6 address or route)", buf);
	return fail("'%s': not an IPv4 address", buf);
}

Result<Ipv4Net> parseIpv4Net(std::string_view s)
{
	auto slash = s.find('/');
	TRY(addr, parseIpv4(s.substr(0, slash)));
	Ipv4Net n { *addr, 32 };
	if (slash != std::string_view::npos) {
		std::string_view p = s.substr(slash + 1);
		int v = -1;
		auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
		if (p.empty() || ec != std::errc() || end != p.data() + p.size() || v < 0 || v > 32)
			return fail("'%.*s': prefix length must be 0..32", (int)s.size(), s.data());
		n.prefix = v;
	}
	if (n.addr & ~maskOf(n.prefix))
		return fail("'%.*s': host bits set (did you mean %s?)", (int)s.size(), s.data(),
			    formatIpv4Net({ n.addr & maskOf(n.prefix), n.prefix }).c_str());
	return n;
}

std::string formatIpv4(uint32_t addr)
{
	char buf[16];
	std::snprintf(buf, sizeof(buf), "%u.%u.%u.%u", addr >> 24, (addr >> 16) & 255, (addr >> 8) & 255, addr & 255);
	return buf;
}

std::string formatIpv4Net(Ipv4Net n)
{
	return formatIpv4(n.addr) + "/" + std::to_string(n.prefix);
}

bool contains(Ipv4Net outer, uint32_t addr)
{
	return (addr & maskOf(outer.prefix)) == outer.addr;
}

bool overlaps(Ipv4Net a, Ipv4Net b)
{
	int p = std::min(a.prefix, b.prefix);
	return (a.addr & maskOf(p)) == (b.addr & maskOf(p));
}

uint32_t slotCount(Ipv4Net pool)
{
	return pool.prefix >= 31 ? 0 : 1u << (31 - pool.prefix);
}

SlotAddresses slotAddresses(Ipv4Net pool, uint32_t slot)
{
	uint32_t base = pool.addr + 2 * slot;
	return { base, base + 1 };
}

std::string slotIfname(uint32_t slot)
{
	return std::string(kHostIfPrefix) + std::to_string(slot);
}

std::optional<uint32_t> slotOfIfname(std::string_view name)
{
	std::string_view pre = kHostIfPrefix;
	if (name.substr(0, pre.size()) != pre)
		return std::nullopt;
	std::string_view num = name.substr(pre.size());
	uint32_t v = 0;
	auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
	if (num.empty() || ec != std::errc() || end != num.data() + num.size() || (num.size() > 1 && num[0] == '0'))
		return std::nullopt;
	return v;
}

std::optional<uint32_t> firstFreeSlot(const std::vector<uint32_t>& used, uint32_t count, uint32_t from)
{
	std::vector<uint32_t> u = used;
	std::sort(u.begin(), u.end());
	uint32_t s = from;
	for (uint32_t x : u) {
		if (x < s)
			continue;
		if (x > s)
			break;
		s++;
	}
	if (s >= count)
		return std::nullopt;
	return s;
}

Result<void> normalizeNetworkOptions(NetworkOptions& net)
{
	const Ipv4Net pool = net.pool;
	if (pool.prefix < 8 || pool.prefix > 30)
		return fail("network pool %s: prefix must be /8../30 (a /31 per container)",
			    formatIpv4Net(pool).c_str());
	bool isPrivate = false;
	for (const auto& p : kPrivate)
		isPrivate = isPrivate || (pool.prefix >= p.prefix && contains(p, pool.addr));
	if (!isPrivate)
		return fail("network pool %s: must lie inside 10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12 or "
			    "192.168.0.0/16",
			    formatIpv4Net(pool).c_str());

	// Duplicates out, order kept: the first nameserver is the one asked first.
	std::vector<uint32_t> seen;
	for (uint32_t ns : net.nameservers)
		if (std::find(seen.begin(), seen.end(), ns) == seen.end())
			seen.push_back(ns);
	net.nameservers = std::move(seen);
	for (uint32_t ns : net.nameservers) {
		if (contains(pool, ns))
			return fail("nameserver %s: inside the container pool %s", formatIpv4(ns).c_str(),
				    formatIpv4Net(pool).c_str());
		for (const auto& n : kNever)
			if (contains(n, ns))
				return fail("nameserver %s: a container cannot reach %s", formatIpv4(ns).c_str(),
					    formatIpv4Net(n).c_str());
	}

	// Keep only allowlist entries not covered by another (CIDRs nest or are
	// disjoint, so this leaves no overlap for nftables to refuse).
	std::vector<Ipv4Net> a = net.allow;
	std::sort(a.begin(), a.end(), [](Ipv4Net x, Ipv4Net y) {
		return x.prefix != y.prefix ? x.prefix < y.prefix : x.addr < y.addr;
	});
	std::vector<Ipv4Net> kept;
	for (const auto& n : a) {
		bool covered = false;
		for (const auto& k : kept)
			covered = covered || overlaps(k, n);
		if (!covered)
			kept.push_back(n);
	}
	std::sort(kept.begin(), kept.end(), [](Ipv4Net x, Ipv4Net y) { return x.addr < y.addr; });
	net.allow = std::move(kept);
	return {};
}

std::vector<std::string> parseResolvConfNameservers(std::string_view text)
{
	std::vector<std::string> out;
	while (!text.empty()) {
		auto nl = text.find('\n');
		std::string_view line = trim(text.substr(0, nl));
		text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
		if (line.substr(0, 10) != "nameserver" || line.size() < 11 || (line[10] != ' ' && line[10] != '\t'))
			continue;
		std::string_view v = trim(line.substr(10));
		auto end = v.find_first_of(" \t#;");
		v = v.substr(0, end);
		// An IPv6 link-local scope ("fe80::1%eth0") is kept as written.
		if (!v.empty())
			out.emplace_back(v);
	}
	return out;
}

Result<std::vector<uint32_t>> chooseNameservers(std::string_view etcText, std::optional<std::string_view> systemdText,
						std::vector<std::string>& warnings)
{
	auto pick = [&](std::string_view text, const char* file, bool& sawLoopback) {
		std::vector<uint32_t> out;
		for (const auto& s : parseResolvConfNameservers(text)) {
			auto a = parseIpv4(s);
			if (!a) {
				if (s.find(':') != std::string::npos)
					warnings.push_back(std::string(file) + ": nameserver " + s +
							   " is IPv6 and containers have no IPv6, ignoring");
				continue;
			}
			if (contains({ 0x7F000000u, 8 }, *a)) {
				sawLoopback = true;
				continue;
			}
			out.push_back(*a);
		}
		return out;
	};
	bool loopback = false;
	auto ns = pick(etcText, "/etc/resolv.conf", loopback);
	if (!ns.empty())
		return ns;
	if (systemdText) {
		bool ignored = false;
		ns = pick(*systemdText, "/run/systemd/resolve/resolv.conf", ignored);
		if (!ns.empty())
			return ns;
	}
	return fail("no nameserver a container can reach: /etc/resolv.conf lists %s and "
		    "/run/systemd/resolve/resolv.conf %s; give one with --dns",
		    loopback ? "only loopback resolvers" : "no IPv4 nameserver",
		    systemdText ? "has none either" : "does not exist");
}

std::string formatResolvConf(const std::vector<uint32_t>& nameservers)
{
	std::string s = "# written by pukaipu-run: this container's resolvers\n";
	for (size_t i = 0; i < nameservers.size() && i < 3; i++) // glibc reads at most 3
		s += "nameserver " + formatIpv4(nameservers[i]) + "\n";
	return s;
}

bool safeIfname(std::string_view name)
{
	if (name.empty() || name.size() > 15)
		return false;
	for (char c : name)
		if (!std::isalnum((unsigned char)c) && c != '_' && c != '.' && c != '-' && c != '+')
			return false;
	return true;
}

std::string forwardingComment(const ForwardingRecord& r)
{
	return std::string("net.ipv4.ip_forward was 0, conf.default.forwarding was ") + (r.defaultOn ? "1" : "0");
}

std::optional<bool> defaultFromComment(std::string_view comment)
{
	std::string_view pre = "net.ipv4.ip_forward was 0, conf.default.forwarding was ";
	if (comment.substr(0, pre.size()) != pre || comment.size() != pre.size() + 1)
		return std::nullopt;
	char c = comment.back();
	if (c != '0' && c != '1')
		return std::nullopt;
	return c == '1';
}

std::string linkChain(uint32_t ifindex)
{
	return "link-" + std::to_string(ifindex);
}

std::string hostRules(Ipv4Net pool, const std::optional<ForwardingRecord>& before, const std::vector<uint32_t>& stale)
{
	// One transaction. The table is never deleted here (the per-link chains
	// and the record of the host's forwarding live in it): its base chains
	// and the record are replaced, per-link chains of links that are gone
	// are deleted. Running containers never see a chain missing: nftables
	// switches to the new ruleset at the end of the transaction.
	const char* t = "inet pukaipu";
	std::string s = std::string("add table ") + t + "\n";
	for (const char* c : { "prerouting", "input", "forward", "postrouting" })
		s += std::string("add chain ") + t + " " + c + "\ndelete chain " + t + " " + c + "\n";
	s += std::string("add map ") + t + " forwarding_before { type ifname : verdict; }\n";
	s += std::string("delete map ") + t + " forwarding_before\n";
	s += std::string("add map ") + t + " links { type iface_index : verdict; }\n";
	for (uint32_t idx : stale) {
		std::string c = linkChain(idx), n = std::to_string(idx);
		s += std::string("add chain ") + t + " " + c + "\n";
		s += std::string("add element ") + t + " links { " + n + " : jump " + c + " }\n";
		s += std::string("delete element ") + t + " links { " + n + " }\n";
		s += std::string("delete chain ") + t + " " + c + "\n";
	}

	std::string never;
	for (size_t i = 0; i < std::size(kNever); i++)
		never += (i ? ", " : "") + formatIpv4Net(kNever[i]);
	std::vector<Ipv4Net> priv(std::begin(kPrivate), std::end(kPrivate));
	std::string p = formatIpv4Net(pool);
	s += "table inet pukaipu {\n";
	if (before) {
		s += "\tmap forwarding_before {\n"
		     "\t\ttype ifname : verdict\n"
		     "\t\tcomment \"" + forwardingComment(*before) + "\"\n";
		std::string elems;
		for (const auto& [name, on] : before->links)
			elems += (elems.empty() ? "" : ", ") + ("\"" + name + "\" : ") + (on ? "accept" : "drop");
		if (!elems.empty())
			s += "\t\telements = { " + elems + " }\n";
		s += "\t}\n";
	}
	s += "\tchain prerouting {\n"
	     "\t\ttype filter hook prerouting priority raw - 10; policy accept;\n"
	     "\t\tiifname \"pk-*\" fib daddr type { local, broadcast, multicast } drop "
	     "comment \"before any DNAT: nothing addressed to the host, whatever a NAT rule would make of it\"\n"
	     "\t}\n"
	     "\tchain input {\n"
	     "\t\ttype filter hook input priority filter - 10; policy accept;\n"
	     "\t\tiifname \"pk-*\" drop comment \"containers reach no host address or port\"\n"
	     "\t}\n"
	     "\tchain forward {\n"
	     "\t\ttype filter hook forward priority filter - 10; policy accept;\n"
	     "\t\tiifname \"pk-*\" oifname \"pk-*\" drop comment \"no container reaches another\"\n"
	     "\t\toifname \"pk-*\" ct state established,related accept\n"
	     "\t\toifname \"pk-*\" drop comment \"nothing new reaches a container\"\n"
	     "\t\tiifname \"pk-*\" meta nfproto ipv6 drop comment \"containers have no IPv6\"\n"
	     "\t\tiifname \"pk-*\" fib saddr . iif oif missing drop comment \"anti-spoofing\"\n"
	     "\t\tiifname \"pk-*\" ip saddr != " + p + " drop comment \"anti-spoofing\"\n"
	     "\t\tiifname \"pk-*\" ip daddr { " + never + " } drop comment \"loopback, link-local, multicast: never\"\n"
	     "\t\tiifname \"pk-*\" ip daddr " + setOf(priv) + " iif vmap @links "
	     "comment \"this link's exceptions: its DNS resolvers, its allowlist\"\n"
	     "\t\tiifname \"pk-*\" ip daddr " + setOf(priv) + " drop comment \"private ranges\"\n";
	if (before) {
		// The host's own forwarding between its other interfaces, as it was
		// before pukaipu turned net.ipv4.ip_forward on (which turns on
		// forwarding for every interface).
		// IPv4 only: ip_forward is IPv4's; IPv6 forwarding is untouched.
		s += "\t\tiifname != \"pk-*\" oifname != \"pk-*\" meta nfproto ipv4 iifname vmap @forwarding_before\n";
		if (!before->defaultOn)
			s += "\t\tiifname != \"pk-*\" oifname != \"pk-*\" meta nfproto ipv4 drop "
			     "comment \"the host did not forward before pukaipu turned ip_forward on\"\n";
	}
	s += "\t}\n"
	     "\tchain postrouting {\n"
	     "\t\ttype nat hook postrouting priority srcnat - 10; policy accept;\n"
	     "\t\toifname != \"pk-*\" ip saddr " + p + " masquerade\n"
	     "\t}\n"
	     "}\n";
	return s;
}

std::string linkRules(uint32_t ifindex, const NetworkOptions& net)
{
	// The same exceptions as the container's own table (containerRules),
	// checked again on the host after any DNAT. flush: a chain of this
	// ifindex left by a killed start is replaced, not extended.
	std::string c = "inet pukaipu " + linkChain(ifindex);
	std::string s = "add chain " + c + "\nflush chain " + c + "\n";
	if (!net.nameservers.empty()) {
		s += "add rule " + c + " ip daddr " + setOf(net.nameservers) + " udp dport 53 accept\n";
		s += "add rule " + c + " ip daddr " + setOf(net.nameservers) + " tcp dport 53 accept\n";
	}
	if (!net.allow.empty())
		s += "add rule " + c + " ip daddr " + setOf(net.allow) + " accept\n";
	s += "add element inet pukaipu links { " + std::to_string(ifindex) + " : jump " + linkChain(ifindex) + " }\n";
	return s;
}

std::string dropLinkRules(uint32_t ifindex)
{
	std::string c = linkChain(ifindex), n = std::to_string(ifindex);
	return "add chain inet pukaipu " + c + "\n" + "add element inet pukaipu links { " + n + " : jump " + c + " }\n" +
	       "delete element inet pukaipu links { " + n + " }\n" + "delete chain inet pukaipu " + c + "\n";
}

std::string containerRules(const NetworkOptions& net)
{
	std::vector<Ipv4Net> never(std::begin(kNever), std::end(kNever));
	never.push_back(net.pool);
	std::sort(never.begin(), never.end(), [](Ipv4Net x, Ipv4Net y) { return x.addr < y.addr; });
	std::vector<Ipv4Net> priv(std::begin(kPrivate), std::end(kPrivate));
	const char* reject = "reject with icmpx type admin-prohibited";
	std::string s = "table inet pukaipu\n"
			"delete table inet pukaipu\n"
			"table inet pukaipu {\n"
			"\tchain output {\n"
			"\t\ttype filter hook output priority filter; policy accept;\n"
			"\t\toifname \"lo\" accept\n";
	s += std::string("\t\tmeta nfproto ipv6 ") + reject + "\n";
	s += "\t\tip daddr " + setOf(never) + " " + reject + "\n";
	if (!net.nameservers.empty()) {
		s += "\t\tip daddr " + setOf(net.nameservers) + " udp dport 53 accept\n";
		s += "\t\tip daddr " + setOf(net.nameservers) + " tcp dport 53 accept\n";
	}
	if (!net.allow.empty())
		s += "\t\tip daddr " + setOf(net.allow) + " accept\n";
	s += "\t\tip daddr " + setOf(priv) + " " + reject + "\n";
	s += "\t}\n"
	     "\tchain input {\n"
	     "\t\ttype filter hook input priority filter; policy drop;\n"
	     "\t\tiifname \"lo\" accept\n"
	     "\t\tct state established,related accept\n"
	     "\t}\n"
	     "}\n";
	return s;
}

} // namespace pukaipu
