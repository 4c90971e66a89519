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
#include "base/error.h"
#include "base/unique_fd.h"

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
	Limits limits;                       // systemd drop-in of pukaipu@USER.service
	std::optional<uint32_t> idleSeconds; // unset = global idleSeconds
};

struct CreateResult {
	bool created = false;   // false: it existed and nothing changed
	InstanceConfig instance;
	std::string p12Path;
	std::string passphrase; // shown once; stored nowhere
	std::vector<std::string> warnings; // e.g. systemctl daemon-reload failed
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
// Refused while systemd runs pukaipu@USER.socket/.service or has them
// enabled (their drop-ins go with the instance). The last instance takes
// egress's changes to the host with it (removeHostNetwork in sandbox/network.h:
// the host table inet pukaipu, net.ipv4.ip_forward), not an idle stop.
struct RemoveResult {
	std::vector<std::string> warnings;
	std::string hostNetwork; // what happened to egress's host changes, or empty
};
[[nodiscard]] Result<RemoveResult> removeInstance(const Paths& p, const std::string& user, bool purgeHome);

// `pukaipu set`: changes limits and the idle timeout of an existing
// instance, then rewrites its systemd drop-ins (always, even with nothing to
// change: that is how an instance made by an earlier version loses its old
// TCP listen drop-in).
struct SetRequest {
	std::optional<std::string> memory;                 // "" = no limit
	std::optional<double> cpus;                        // 0 = no limit
	std::optional<uint32_t> tasks;                     // 0 = no limit
	std::optional<std::optional<uint32_t>> idleSeconds; // inner nullopt = back to the global default
};
struct SetResult {
	InstanceConfig instance;
	bool changed = false; // instance.json changed
	std::vector<std::string> warnings;
};
[[nodiscard]] Result<SetResult> setInstance(const Paths& p, const std::string& user, const SetRequest& r);

[[nodiscard]] Result<std::vector<InstanceConfig>> listInstances(const Paths& p);

// A new client CA, client certificate and client.p12 in certDir; returns
// the passphrase. The client CA's key is not kept.
[[nodiscard]] Result<std::string> writeClientCerts(const std::string& certDir, const std::string& user);

} // namespace pukaipu
