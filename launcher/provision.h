// provision: what `pukaipu create/remove/cert renew` do to the host.
//
// Every change happens under one lock (flock on STATE/.lock), so two
// concurrent runs never pick the same uid or port. Everything is validated
// before the first change; every file is written atomically; instance.json is
// written last, so an instance exists only once it is complete.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "sandbox/error.h"
#include "sandbox/unique_fd.h"

namespace pukaipu {

struct CreateRequest {
	std::string user;
	std::string fqdn;
	std::optional<uint16_t> port;
	std::optional<uint32_t> uid;
	std::vector<std::string> extraNames; // DNS names or IP literals
	std::string serverCertFile;          // externally issued, with serverKeyFile
	std::string serverKeyFile;
	std::string network;                 // "" = global default
};

struct CreateResult {
	bool created = false;   // false: it existed and nothing changed
	InstanceConfig instance;
	std::string p12Path;
	std::string passphrase; // shown once; stored nowhere
};

// Holds the provisioning lock while alive.
[[nodiscard]] Result<UniqueFd> lockState(const Paths& p);

[[nodiscard]] Result<CreateResult> createInstance(const Paths& p, const GlobalConfig& g, const CreateRequest& r);

struct RenewResult {
	std::string p12Path;
	std::string passphrase;
};
[[nodiscard]] Result<RenewResult> renewClientCert(const Paths& p, const GlobalConfig& g, const std::string& user);

// Removes the instance's state; the Unix user and home stay unless purgeHome
// (then the home goes; the user account is removed if pukaipu created it).
[[nodiscard]] Result<void> removeInstance(const Paths& p, const std::string& user, bool purgeHome);

[[nodiscard]] Result<std::vector<InstanceConfig>> listInstances(const Paths& p);

// The uid/gid pukaipu would give a new user: the lowest free in the range.
[[nodiscard]] Result<uint32_t> pickUid(const GlobalConfig& g);

} // namespace pukaipu
