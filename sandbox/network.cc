// network: the effectful half of network.h — files on the host, libnl-route-3
// for links, addresses and routes, libnftables for the two tables, and the
// child's resolv.conf mount. The pure half is network_policy.cc.
#include "network.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/openat2.h>
#include <memory>
#include <net/if.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>

#include "mounts.h"
#include "nft.h"
#include "base/file_io.h"
#include "base/handle.h"
#include "base/sysutil.h"
#include "base/unique_fd.h"

namespace pukaipu {

namespace {

// --- owners for library handles ---------------------------------------------

using NlSock = Handle<nl_sock, nl_socket_free>;
using NlLink = Handle<rtnl_link, rtnl_link_put>;
using NlAddr = Handle<nl_addr, nl_addr_put>;

Result<void> nlCheck(int err, const char* what, const std::string& obj)
{
	if (err >= 0)
		return {};
	return fail("network: %s '%s': %s", what, obj.c_str(), nl_geterror(err));
}

Result<NlSock> routeSocket()
{
	NlSock s(nl_socket_alloc());
	if (!s)
		return failErrno(ENOMEM, "network: netlink socket");
	if (int e = nl_connect(s.get(), NETLINK_ROUTE); e < 0)
		return fail("network: netlink connect: %s", nl_geterror(e));
	return s;
}

NlAddr ipv4Addr(uint32_t addr, int prefix)
{
	uint32_t be = htonl(addr);
	NlAddr a(nl_addr_build(AF_INET, &be, sizeof(be)));
	if (a)
		nl_addr_set_prefixlen(a.get(), prefix);
	return a;
}

Result<int> ifindexOf(nl_sock* sk, const std::string& name)
{
	rtnl_link* raw = nullptr;
	TRYV(nlCheck(rtnl_link_get_kernel(sk, 0, name.c_str(), &raw), "find link", name));
	NlLink l(raw);
	return rtnl_link_get_ifindex(l.get());
}

// IPv6 off on this link (no fe80::, no ff00::/8 route, incoming IPv6
// dropped by the kernel), an IPv4 /31, then up. Order matters: the kernel
// configures IPv6 when the link goes up. Runs in the link's netns: /proc/sys/net
// shows the namespace of the process that opens it.
Result<void> configureLink(nl_sock* sk, const std::string& name, uint32_t addr)
{
	rtnl_link* raw = nullptr;
	TRYV(nlCheck(rtnl_link_get_kernel(sk, 0, name.c_str(), &raw), "find link", name));
	NlLink orig(raw);
	std::string v6 = "/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6";
	if (auto r = writeSysctl(v6.c_str(), "1"); !r && r.error().errno_ != ENOENT) // ENOENT: no IPv6 at all
		return r;

	Handle<rtnl_addr, rtnl_addr_put> a(rtnl_addr_alloc());
	NlAddr local = ipv4Addr(addr, 31);
	if (!a || !local)
		return failErrno(ENOMEM, "network: address for '%s'", name.c_str());
	rtnl_addr_set_ifindex(a.get(), rtnl_link_get_ifindex(orig.get()));
	rtnl_addr_set_family(a.get(), AF_INET);
	if (auto r = nlCheck(rtnl_addr_set_local(a.get(), local.get()), "set address on", name); !r)
		return r;
	rtnl_addr_set_prefixlen(a.get(), 31);
	if (auto r = nlCheck(rtnl_addr_add(sk, a.get(), NLM_F_CREATE | NLM_F_EXCL), "add address to", name); !r)
		return r;

	NlLink up(rtnl_link_alloc());
	if (!up)
		return failErrno(ENOMEM, "network: link '%s'", name.c_str());
	rtnl_link_set_flags(up.get(), IFF_UP);
	return nlCheck(rtnl_link_change(sk, orig.get(), up.get(), 0), "bring up", name);
}

Result<void> addDefaultRoute(nl_sock* sk, int ifindex, uint32_t gateway)
{
	Handle<rtnl_route, rtnl_route_put> r(rtnl_route_alloc());
	NlAddr dst = ipv4Addr(0, 0);
	NlAddr gw = ipv4Addr(gateway, 32);
	rtnl_nexthop* nh = rtnl_route_nh_alloc();
	if (!r || !dst || !gw || !nh) {
		if (nh)
			rtnl_route_nh_free(nh);
		return failErrno(ENOMEM, "network: default route");
	}
	rtnl_route_set_family(r.get(), AF_INET);
	rtnl_route_set_table(r.get(), RT_TABLE_MAIN);
	rtnl_route_set_protocol(r.get(), RTPROT_STATIC);
	rtnl_route_set_scope(r.get(), RT_SCOPE_UNIVERSE);
	if (auto e = nlCheck(rtnl_route_set_dst(r.get(), dst.get()), "route", "default"); !e)
		return e;
	rtnl_route_nh_set_ifindex(nh, ifindex);
	rtnl_route_nh_set_gateway(nh, gw.get());
	rtnl_route_add_nexthop(r.get(), nh); // the route owns nh now
	return nlCheck(rtnl_route_add(sk, r.get(), NLM_F_CREATE | NLM_F_EXCL), "add default route via",
		       formatIpv4(gateway));
}

// Slots in use by the host ends "pk-N" that exist right now. The pool is
// host-wide (the host table names it): an end with an address outside
// `pool` means containers of another pool are running, and rewriting the
// table for ours would cut them off, so that is refused.
struct UsedSlots {
	std::vector<uint32_t> slots;
	std::vector<uint32_t> ifindexes; // of their host ends
};

Result<UsedSlots> usedSlots(nl_sock* sk, Ipv4Net pool)
{
	nl_cache* raw = nullptr;
	if (int e = rtnl_link_alloc_cache(sk, AF_UNSPEC, &raw); e < 0)
		return fail("network: list links: %s", nl_geterror(e));
	Handle<nl_cache, nl_cache_free> links(raw);
	std::vector<uint32_t> used;
	std::vector<int> ends;
	for (nl_object* o = nl_cache_get_first(links.get()); o; o = nl_cache_get_next(o)) {
		const char* name = rtnl_link_get_name((rtnl_link*)o);
		if (auto slot = name ? slotOfIfname(name) : std::nullopt) {
			used.push_back(*slot);
			ends.push_back(rtnl_link_get_ifindex((rtnl_link*)o));
		}
	}
	UsedSlots out { used, std::vector<uint32_t>(ends.begin(), ends.end()) };
	if (ends.empty())
		return out;
	raw = nullptr;
	if (int e = rtnl_addr_alloc_cache(sk, &raw); e < 0)
		return fail("network: list addresses: %s", nl_geterror(e));
	Handle<nl_cache, nl_cache_free> addrs(raw);
	for (nl_object* o = nl_cache_get_first(addrs.get()); o; o = nl_cache_get_next(o)) {
		auto* a = (rtnl_addr*)o;
		nl_addr* local = rtnl_addr_get_local(a);
		if (rtnl_addr_get_family(a) != AF_INET || !local || nl_addr_get_len(local) != 4 ||
		    std::find(ends.begin(), ends.end(), rtnl_addr_get_ifindex(a)) == ends.end())
			continue;
		uint32_t be;
		std::memcpy(&be, nl_addr_get_binary_addr(local), 4);
		if (!contains(pool, ntohl(be)))
			return fail("network: a running container has %s, outside the pool %s; the pool is host-wide, "
				    "so every container must use the same --network-pool",
				    formatIpv4(ntohl(be)).c_str(), formatIpv4Net(pool).c_str());
	}
	return out;
}

// Creates the pair: host end "pk-N" here, "eth0" directly in the child's
// netns. EEXIST means another start took slot N between our listing and
// our create (or a dying namespace still holds it): take the next one.
Result<uint32_t> createVeth(nl_sock* sk, Ipv4Net pool, int childNs, std::vector<uint32_t> used)
{
	uint32_t from = 0;
	for (int attempt = 0; attempt < 64; attempt++) {
		auto slot = firstFreeSlot(used, slotCount(pool), from);
		if (!slot)
			return failErrno(EADDRINUSE, "network: every slot of the pool %s is taken",
					 formatIpv4Net(pool).c_str());
		std::string name = slotIfname(*slot);
		Handle<rtnl_link, rtnl_link_veth_release> veth(rtnl_link_veth_alloc());
		if (!veth)
			return failErrno(ENOMEM, "network: veth");
		rtnl_link_set_name(veth.get(), name.c_str());
		NlLink peer(rtnl_link_veth_get_peer(veth.get()));
		rtnl_link_set_name(peer.get(), kContainerIf);
		rtnl_link_set_ns_fd(peer.get(), childNs);
		int e = rtnl_link_add(sk, veth.get(), NLM_F_CREATE | NLM_F_EXCL);
		if (e == -NLE_EXIST) {
			used.push_back(*slot);
			from = *slot + 1;
			continue;
		}
		TRYV(nlCheck(e, "create veth", name));
		return *slot;
	}
	return failErrno(EADDRINUSE, "network: no free slot in the pool %s after 64 tries",
			 formatIpv4Net(pool).c_str());
}

// Runs fn with this (single-threaded) process in the netns `target`; every
// socket fn opens stays bound to that netns. Coming back cannot fail for
// host root; if it did, staying in the container's netns would be a bug.
template <typename Fn>
Result<void> inNetns(int target, int home, Fn&& fn)
{
	if (setns(target, CLONE_NEWNET) < 0)
		return failErrno(errno, "network: enter the container's network namespace");
	Result<void> r = fn();
	if (setns(home, CLONE_NEWNET) < 0)
		die("cannot return to the host network namespace");
	return r;
}

bool isHostAddress(uint32_t addr)
{
	struct ifaddrs* list = nullptr;
	if (getifaddrs(&list) < 0)
		return false;
	bool found = false;
	for (auto* i = list; i; i = i->ifa_next)
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
		    ntohl(((sockaddr_in*)i->ifa_addr)->sin_addr.s_addr) == addr)
			found = true;
	freeifaddrs(list);
	return found;
}

// Up to 1 MiB of a small system file (the bounded reader); nullopt when it
// cannot be read (a read error is not taken for a short file).
std::optional<std::string> readSmallFile(const char* path)
{
	auto r = readFileLimited(path, 1 << 20);
	if (!r)
		return std::nullopt;
	return std::move(*r);
}

// Does the rootfs have a regular /etc/resolv.conf (symlinks followed inside
// the rootfs) for the child to mount over? The rootfs is never written.
bool rootfsHasResolvConf(const std::string& root)
{
	UniqueFd r(open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
	return r && existsInRoot(r.get(), "/etc/resolv.conf", false);
}

} // namespace

Result<std::optional<std::string>> prepareNetwork(const Spec& spec, NetworkOptions& net,
						   std::vector<std::string>& warnings)
{
	if (net.mode == NetworkMode::Host) {
		if (!net.allowHost)
			return fail("--network host: refused; a container on the host's network reaches host "
				    "services and other instances (see --allow-host-network)");
		return fail("--network host: not supported even with --allow-host-network: pukaipu-run always "
			    "gives the container its own network namespace (clone3 with CLONE_NEWNET); use "
			    "--network egress");
	}
	if (net.mode != NetworkMode::Egress)
		return std::nullopt;
	if (net.nameservers.empty()) {
		auto etc = readSmallFile("/etc/resolv.conf");
		auto sd = readSmallFile("/run/systemd/resolve/resolv.conf");
		std::optional<std::string_view> sdView;
		if (sd)
			sdView = *sd;
		TRY(ns, chooseNameservers(etc ? *etc : std::string(), sdView, warnings));
		net.nameservers = std::move(*ns);
	}
	TRYV(normalizeNetworkOptions(net));
	for (uint32_t ns : net.nameservers)
		if (isHostAddress(ns))
			return fail("nameserver %s: an address of this host, and containers reach no host port; "
				    "give a resolver elsewhere with --dns",
				    formatIpv4(ns).c_str());
	if (net.nameservers.size() > 3)
		warnings.push_back("more than 3 nameservers: the container's resolv.conf keeps the first 3");

	bool specMounts = false;
	for (const auto& m : spec.mounts)
		specMounts = specMounts || m.destination == "/etc/resolv.conf";
	if (specMounts)
		return std::nullopt; // the spec's own resolv.conf wins
	if (!rootfsHasResolvConf(spec.rootPath)) {
		warnings.push_back("the rootfs has no /etc/resolv.conf file to mount over: DNS is not configured "
				   "in the container");
		return std::nullopt;
	}
	return formatResolvConf(net.nameservers);
}

bool forwardingWillBeEnabled(const NetworkOptions& net)
{
	if (net.mode != NetworkMode::Egress)
		return false;
	auto v = readSmallFile("/proc/sys/net/ipv4/ip_forward");
	return !v || v->empty() || (*v)[0] != '1';
}

Result<int> networkFromParent(pid_t child, const NetworkOptions& net)
{
	if (net.mode != NetworkMode::Egress)
		return 0;
	char path[64];
	std::snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)child);
	UniqueFd childNs(open(path, O_RDONLY | O_CLOEXEC));
	if (!childNs)
		return failErrno(errno, "network: open '%s'", path);
	UniqueFd hostNs(open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
	if (!hostNs)
		return failErrno(errno, "network: open /proc/self/ns/net");

	// 1. Under a lock, so concurrent starts neither rewrite the host table
	//    under each other's pool check nor keep colliding on slots (EEXIST
	//    would still be handled without it).
	TRY(lock, lockHostNetwork(net.lockPath));
	TRY(sk, routeSocket());
	TRY(used, usedSlots(sk->get(), net.pool));

	// 2. A slot and the veth pair (the host end stays down, with no
	//    address: nothing crosses it yet).
	TRY(slot, createVeth(sk->get(), net.pool, childNs.get(), std::move(used->slots)));
	const SlotAddresses addrs = slotAddresses(net.pool, *slot);
	TRY(ifindex, ifindexOf(sk->get(), slotIfname(*slot)));

	// 3. One transaction: the host table (generic rules, the record of the
	//    host's forwarding, the chains of the links that exist) and this
	//    link's exceptions; then ip_forward (host_network.cc). Then the host
	//    end gets its address (which the next start's pool check sees) and
	//    goes up.
	used->ifindexes.push_back((uint32_t)*ifindex);
	TRYV(setUpHostTable(net.pool, used->ifindexes, linkRules((uint32_t)*ifindex, net)));
	if (auto r = configureLink(sk->get(), slotIfname(*slot), addrs.host); !r)
		return failWith(r.error());
	lock->reset();

	// 4. Inside: the container's own table first, so eth0 never carries a
	//    packet unfiltered; then address, link up, default route.
	TRYV(inNetns(childNs.get(), hostNs.get(), [&]() -> Result<void> {
		if (auto r = applyNft(containerRules(net), "container table"); !r)
			return r;
		TRY(in, routeSocket());
		if (auto r = configureLink(in->get(), kContainerIf, addrs.container); !r)
			return r;
		TRY(idx, ifindexOf(in->get(), kContainerIf));
		return addDefaultRoute(in->get(), *idx, addrs.host);
	}));
	return *ifindex;
}

void releaseLink(const NetworkOptions& net, int ifindex) noexcept
{
	if (net.mode != NetworkMode::Egress || ifindex <= 0)
		return;
	// The ifindex is this container's alone (the kernel does not hand it out
	// again soon), so no other container's chain can be deleted here. Best
	// effort: with the table gone the script fails, and that is fine.
	auto lock = lockHostNetwork(net.lockPath);
	if (lock)
		(void)applyNft(dropLinkRules((uint32_t)ifindex), "release link");
}

} // namespace pukaipu
