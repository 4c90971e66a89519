// net_literal: the one test of "is this an IP address literal", for host
// names (certificates: an IP SAN or a DNS SAN), listenAddress and the
// listening socket. inet_pton's syntax: dotted quad without leading zeros,
// or IPv6 text (with an embedded IPv4 tail); no brackets, no zone, no port.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <sys/socket.h>

namespace pukaipu {

struct IpLiteral {
	int family = AF_INET;       // AF_INET or AF_INET6
	unsigned char bytes[16] {}; // network order; 4 used for AF_INET
	[[nodiscard]] std::size_t size() const { return family == AF_INET ? 4 : 16; }
};

// The address, or nullopt when `s` is not an IPv4 or IPv6 literal.
[[nodiscard]] std::optional<IpLiteral> parseIpLiteral(const std::string& s);
[[nodiscard]] bool isIpLiteral(const std::string& s);

} // namespace pukaipu
