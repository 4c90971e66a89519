// host_ca: the CA users trust (/etc/pukaipu/ca), which signs the instances'
// server certificates. Made with nameConstraints (certs::NameConstraints):
// it may sign names in pukaipu.json's `domain` and `extraDomains` only, and no
// IP address. So a user who imports it trusts it for those names and nothing
// else: its key cannot vouch for their bank, nor for an IP address.
//
// `pukaipu ca rotate` replaces it: a new CA (written first as ca.crt.new and
// ca.key.new, the pending CA), new server certificates for every instance
// whose certificate the old (or pending) CA signed, new client certificates
// for every instance, then the pending CA takes the old one's place (key
// first). A rotation that stopped half way is finished by running it again.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "certs/certs.h"
#include "config.h"

namespace pukaipu {

// Loads the host CA, or makes it (with nameConstraints) when there is none.
[[nodiscard]] Result<certs::Ca> hostCa(const Paths& p, const GlobalConfig& g);

// Why the existing host CA should be rotated (no nameConstraints, IPs not
// excluded, a configured domain not permitted); nullopt when it is fine or
// when there is none yet.
[[nodiscard]] std::optional<std::string> hostCaProblem(const Paths& p, const GlobalConfig& g);

struct RotatedClient {
	std::string user, p12Path, passphrase;
};
struct RotateResult {
	std::string caPath;
	std::vector<std::string> reissued;   // instances with a new server certificate
	std::vector<std::string> external;   // server certificate from elsewhere: kept
	std::vector<RotatedClient> clients;  // every instance: a new client.p12
};
// Under the provisioning lock. Every instance is checked before the first
// change (names within the domains, no IP names: migrate first).
[[nodiscard]] Result<RotateResult> rotateHostCa(const Paths& p, const GlobalConfig& g);

} // namespace pukaipu
