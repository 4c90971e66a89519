#include "base/net_literal.h"

#include <arpa/inet.h>

namespace pukaipu {

std::optional<IpLiteral> parseIpLiteral(const std::string& s)
{
	IpLiteral ip;
	for (int family : { AF_INET, AF_INET6 }) {
		if (inet_pton(family, s.c_str(), ip.bytes) == 1) {
			ip.family = family;
			return ip;
		}
	}
	return std::nullopt;
}

bool isIpLiteral(const std::string& s)
{
	return parseIpLiteral(s).has_value();
}

} // namespace pukaipu
