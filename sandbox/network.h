// network: the container's network namespace — loopback only, or egress for
// browsing with no lateral access.
//
// Egress is a veth pair per container plus nftables, built with the field's
// libraries (libnl-route-3, libnftables), never by shelling out:
//
//   host netns                                   container netns
//   pk-N  10.233.x.2n/31  <──── veth ────>  eth0 10.233.x.2n+1/31, default via pk-N
//   table inet pukaipu (ONE, generic)             table inet pukaipu (per container)
//     input:   iifname "pk-*" drop                  output: lo ok; IPv6, link-local,
//     forward: pk→pk drop, nothing new in,                  multicast, the pool → reject;
//              IPv6 drop, anti-spoof,                        DNS to the nameservers ok;
//              link-local/loopback/multicast drop            allowlist ok; private → reject
//     postrouting: pool → masquerade                input:  only replies
//
// Nothing on the host is per container: the host table's rules are keyed on
// the interface prefix "pk-", and the veth pair dies with the container's
// namespace. So SIGKILL of pukaipu-run leaves nothing behind; the host table
// stays (it is static, rewritten atomically by each start). The policy that
// can differ between containers (allowlist, nameservers) lives in the
// container's own namespace, where no process of the container holds
// CAP_NET_ADMIN (all capabilities are dropped, host root is not mapped, and
// a nested user namespace gets no power over a netns it did not create).
//
// IPv6 is blocked, not routed: IPv6 is off on both veth ends (disable_ipv6:
// no address, not even fe80::, no route, incoming IPv6 dropped by the kernel)
// and both tables drop IPv6 from containers as well. Routing it would need net.ipv6.conf.all.forwarding=1,
// which makes the kernel ignore router advertisements on a host configured by
// SLAAC (its own IPv6 default route can vanish). Browsers fall back to IPv4
// at once: connect() to an IPv6 address fails with ENETUNREACH.
//
// Addresses: slot N of the pool (default 10.233.0.0/16, a /31 per slot) is
// taken by creating the host end "pk-N" (creation is atomic: EEXIST means
// taken, try the next). A crash frees the slot when the namespace dies, so a
// stale address can never block a start.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include "base/error.h"
#include "spec.h"

namespace pukaipu {

enum class NetworkMode {
	None,   // loopback only (the netns clone3 always creates)
	Egress, // veth + NAT, see above
	Host,   // the host's network: always refused (see prepareNetwork)
};

[[nodiscard]] Result<NetworkMode> parseNetworkMode(std::string_view s);

// An IPv4 network, host byte order. "10.0.0.0/8"; a bare address is a /32.
struct Ipv4Net {
	uint32_t addr = 0;
	int prefix = 32;
	friend bool operator==(const Ipv4Net&, const Ipv4Net&) = default;
};

// Pure. Refuses host bits set ("10.0.0.1/8"), IPv6 (containers have none:
// the message says so) and anything that is not dotted-quad/prefix.
[[nodiscard]] Result<Ipv4Net> parseIpv4Net(std::string_view s);
[[nodiscard]] Result<uint32_t> parseIpv4(std::string_view s);
[[nodiscard]] std::string formatIpv4(uint32_t addr);
[[nodiscard]] std::string formatIpv4Net(Ipv4Net n);
[[nodiscard]] bool contains(Ipv4Net outer, uint32_t addr);
[[nodiscard]] bool overlaps(Ipv4Net a, Ipv4Net b);

struct NetworkOptions {
	NetworkMode mode = NetworkMode::None;
	bool allowHost = false;           // --allow-host-network (host mode still refused)
	Ipv4Net pool { 0x0AE90000u, 16 }; // 10.233.0.0/16; one /31 per container
	std::vector<Ipv4Net> allow;       // private destinations let through
	std::vector<uint32_t> nameservers; // empty: the host's (prepareNetwork fills it)
	std::string lockPath = "/run/pukaipu/network.lock";
};

// --- pure parts (unit-tested) ---------------------------------------------

inline constexpr const char* kHostIfPrefix = "pk-";
inline constexpr const char* kContainerIf = "eth0";
inline constexpr const char* kTableName = "pukaipu";

// Number of /31 slots in the pool.
[[nodiscard]] uint32_t slotCount(Ipv4Net pool);

struct SlotAddresses {
	uint32_t host;      // the host end, the container's gateway
	uint32_t container; // eth0 inside
};
[[nodiscard]] SlotAddresses slotAddresses(Ipv4Net pool, uint32_t slot);
[[nodiscard]] std::string slotIfname(uint32_t slot);            // "pk-12"
[[nodiscard]] std::optional<uint32_t> slotOfIfname(std::string_view name);

// Lowest slot < count not in `used`; nullopt when the pool is full.
[[nodiscard]] std::optional<uint32_t> firstFreeSlot(const std::vector<uint32_t>& used, uint32_t count,
						    uint32_t from = 0);

// Pool, allowlist and nameservers must make sense together: the pool is
// private and clear of link-local/loopback/multicast, nameservers are not in
// the pool or those ranges. Also drops allowlist entries covered by another
// (nftables refuses overlapping set elements) and duplicate nameservers.
[[nodiscard]] Result<void> normalizeNetworkOptions(NetworkOptions& net);

// "nameserver" entries of a resolv.conf, IPv4 and IPv6, in order.
[[nodiscard]] std::vector<std::string> parseResolvConfNameservers(std::string_view text);

// The host's resolvers as the container can use them: loopback ones are
// skipped (127.0.0.53 is the host's own stub), then systemd-resolved's
// upstream list is tried; IPv6 ones are skipped (containers have none).
// `systemdText` is /run/systemd/resolve/resolv.conf, nullopt if absent.
[[nodiscard]] Result<std::vector<uint32_t>> chooseNameservers(std::string_view etcText,
							      std::optional<std::string_view> systemdText,
							      std::vector<std::string>& warnings);

[[nodiscard]] std::string formatResolvConf(const std::vector<uint32_t>& nameservers);

// nftables scripts, each one atomic transaction that replaces the table.
[[nodiscard]] std::string hostRules(Ipv4Net pool);
[[nodiscard]] std::string containerRules(const NetworkOptions& net);

// --- effectful parts --------------------------------------------------------

// Parent, called by prepare(): refuses host mode (pukaipu-run always creates
// a network namespace, so it cannot share the host's), validates the options,
// fills nameservers from the host when none were given (a host address is
// refused: containers reach no host port). Returns the container's
// resolv.conf, which prepare() turns into a row of the mount plan, when the
// rootfs has an /etc/resolv.conf to mount over and the spec mounts none;
// nullopt otherwise.
[[nodiscard]] Result<std::optional<std::string>> prepareNetwork(const Spec& spec, NetworkOptions& net,
								std::vector<std::string>& warnings);

// True when egress will turn on net.ipv4.ip_forward (host-wide; left on).
[[nodiscard]] bool forwardingWillBeEnabled(const NetworkOptions& net);

// Parent, after the id maps and before the child is released: host table,
// ip_forward, veth pair into the child's netns, addresses, routes, the
// container's own table. A failure needs no undo: the caller kills the
// child, and its namespace takes the veth pair with it.
// In the child, in its new network namespace: bring lo up.
[[nodiscard]] Result<void> loopbackUp() noexcept;

[[nodiscard]] Result<void> networkFromParent(pid_t child, const NetworkOptions& net);

} // namespace pukaipu
