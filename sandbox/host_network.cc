// host_network: what egress changes on the host, and its undoing — the host
// table (its rule text is hostRules in network_policy.cc), net.ipv4.ip_forward
// and the record of the host's forwarding before it. See network.h.
#include "network.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <sys/file.h>
#include <unistd.h>

#include "nft.h"
#include "base/file_io.h"
#include "base/sysutil.h"

namespace pukaipu {

namespace {

constexpr const char* kIpForward = "/proc/sys/net/ipv4/ip_forward";

std::optional<bool> readSysctlBool(const std::string& path)
{
	auto v = readFileLimited(path, 64);
	if (!v || v->empty() || ((*v)[0] != '0' && (*v)[0] != '1'))
		return std::nullopt;
	return (*v)[0] == '1';
}

std::string confPath(const std::string& ifname)
{
	return "/proc/sys/net/ipv4/conf/" + ifname + "/forwarding";
}

// Every interface's forwarding now (pk-* and the pseudo-entries excluded).
Result<ForwardingRecord> recordForwarding()
{
	ForwardingRecord r;
	r.defaultOn = readSysctlBool(confPath("default")).value_or(false);
	std::unique_ptr<DIR, int (*)(DIR*)> d(opendir("/proc/sys/net/ipv4/conf"), closedir);
	if (!d)
		return failErrno(errno, "network: open /proc/sys/net/ipv4/conf");
	while (dirent* e = readdir(d.get())) {
		std::string n = e->d_name;
		if (n == "." || n == ".." || n == "all" || n == "default" || slotOfIfname(n))
			continue;
		if (!safeIfname(n))
			return fail("network: interface '%s': pukaipu records each interface's forwarding in an nftables "
				    "map and writes only names of letters, digits and _.-+; rename it",
				    n.c_str());
		auto on = readSysctlBool(confPath(n));
		if (on)
			r.links.emplace_back(n, *on);
	}
	std::sort(r.links.begin(), r.links.end());
	return r;
}

struct HostTable {
	std::optional<ForwardingRecord> before;
	std::vector<uint32_t> linkChains; // ifindexes with a chain link-N
};

// What pukaipu reads back from its own table.
Result<HostTable> readHostTable(const nlohmann::json& j)
{
	HostTable t;
	try {
		for (const auto& o : j.at("nftables")) {
			if (o.contains("chain")) {
				std::string n = o["chain"].at("name");
				if (n.rfind("link-", 0) == 0)
					t.linkChains.push_back((uint32_t)std::stoul(n.substr(5)));
			}
			if (o.contains("map") && o["map"].at("name") == "forwarding_before") {
				const auto& m = o["map"];
				auto dflt = defaultFromComment(m.value("comment", std::string()));
				if (!dflt)
					return fail("network: the host table's map forwarding_before has no comment pukaipu wrote");
				ForwardingRecord r;
				r.defaultOn = *dflt;
				if (m.contains("elem"))
					for (const auto& e : m["elem"])
						r.links.emplace_back(e.at(0).get<std::string>(), e.at(1).contains("accept"));
				t.before = std::move(r);
			}
		}
	} catch (const std::exception& e) { // nlohmann's, or stoul's on a chain "link-x"
		return fail("network: the host table inet %s is not as pukaipu writes it: %s", kTableName, e.what());
	}
	return t;
}

// pk-* links that exist in this netns.
std::vector<std::string> pkLinks()
{
	std::vector<std::string> out;
	if (auto* list = if_nameindex()) {
		for (auto* i = list; i->if_index; i++)
			if (slotOfIfname(i->if_name))
				out.emplace_back(i->if_name);
		if_freenameindex(list);
	}
	return out;
}

} // namespace

Result<void> writeSysctl(const char* path, const char* value)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return failErrno(errno, "network: open '%s'", path);
	UniqueFd f(fd);
	char cur[8] {};
	if (read(fd, cur, sizeof(cur) - 1) > 0 && cur[0] == value[0])
		return {};
	if (pwrite(fd, value, strlen(value), 0) < 0)
		return failErrno(errno, "network: write '%s'", path);
	return {};
}

Result<UniqueFd> lockHostNetwork(const std::string& lockPath)
{
	auto dir = lockPath.substr(0, lockPath.rfind('/'));
	if (!dir.empty()) {
		if (auto made = makeDirs(dir, 0755); !made)
			return failErrno(made.error().errno_, "network: %s", made.error().what);
	}
	UniqueFd lock(open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
	if (!lock)
		return failErrno(errno, "network: open '%s'", lockPath.c_str());
	if (flock(lock.get(), LOCK_EX) < 0)
		return failErrno(errno, "network: lock '%s'", lockPath.c_str());
	return lock;
}

Result<void> setUpHostTable(Ipv4Net pool, const std::vector<uint32_t>& live, const std::string& more)
{
	TRY(listed, listNftTable(kTableName));
	HostTable t;
	if (*listed) {
		TRY(read, readHostTable(**listed));
		t = std::move(*read);
	}
	std::vector<uint32_t> stale;
	for (uint32_t idx : t.linkChains)
		if (std::find(live.begin(), live.end(), idx) == live.end())
			stale.push_back(idx);
	// The record is taken once, before the first write of ip_forward, and
	// kept by every later start (the table is never deleted but by
	// removeHostNetwork).
	if (!t.before && !readSysctlBool(kIpForward).value_or(false)) {
		TRY(rec, recordForwarding());
		t.before = std::move(*rec);
	}
	// Order: the table (with the rule that keeps the host's own forwarding
	// policy between its other interfaces) before ip_forward = 1, so the
	// host never routes for them, not even for a moment.
	TRYV(applyNft(hostRules(pool, t.before, stale) + more, "host table"));
	return writeSysctl(kIpForward, "1");
}

Result<HostNetworkRemoval> removeHostNetwork(const std::string& lockPath)
{
	HostNetworkRemoval out;
	TRY(lock, lockHostNetwork(lockPath));
	if (auto links = pkLinks(); !links.empty()) {
		out.note = "kept the host table inet " + std::string(kTableName) + " and ip_forward: container link " +
			   links[0] + (links.size() > 1 ? " and more" : "") + " still exists (pukaipu-run --bundle?)";
		return out;
	}
	TRY(listed, listNftTable(kTableName));
	if (!*listed)
		return out;
	TRY(t, readHostTable(**listed));
	// Order: forwarding back first, then the table: deleted first, the
	// host would route between its other interfaces for a moment.
	if (!t->before) {
		out.note = "net.ipv4.ip_forward left as it is: it was on before pukaipu's first container";
	} else if (!readSysctlBool(kIpForward).value_or(false)) {
		out.note = "net.ipv4.ip_forward is already off";
	} else {
		// Writing "all" sets every interface and the default; then the
		// recorded differences. An interface that is gone is skipped.
		TRYV(writeSysctl(kIpForward, "0"));
		TRYV(writeSysctl(confPath("default").c_str(), t->before->defaultOn ? "1" : "0"));
		for (const auto& [name, on] : t->before->links) {
			auto r = writeSysctl(confPath(name).c_str(), on ? "1" : "0");
			if (!r && r.error().errno_ != ENOENT)
				return failWith(r.error());
		}
		out.note = "net.ipv4.ip_forward back to 0, each interface's forwarding as before";
	}
	TRYV(applyNft(std::string("delete table inet ") + kTableName, "delete the host table"));
	out.removed = true;
	return out;
}

} // namespace pukaipu
