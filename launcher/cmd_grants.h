// cmd_grants: the subcommands grant, revoke, grants and attach of
// pukaipu(8), dispatched by pukaipu.cc. Each prints its result and warnings;
// errors are returned for pukaipu.cc to print once.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "config.h"
#include "grants.h"

namespace pukaipu {

// The grant-time check of a mount grant's host path: openGuardedSource in a
// child with the user's uid/gid and no supplementary groups (as inside).
// Fills `m`'s resolved path and identity from what the child opened, then
// refuses a path with an ancestor that the user may change (write, or own)
// unless that ancestor is `home`, the user's own home, or inside it: there
// the recorded identity is what stops a swap.
[[nodiscard]] Result<void> checkHostPathAsUser(MountGrant& m, uint32_t uid, uint32_t gid, const std::string& home,
					       const std::vector<std::string>& forbidden);

// `pukaipu grant/revoke`: under the provisioning lock (lockState), loads the
// instance, applies and checks the change and writes instance.json
// atomically.
struct GrantResult {
	GrantChange change;
	std::vector<std::string> warnings;
};
[[nodiscard]] Result<GrantResult> changeGrants(const Paths& p, const GlobalConfig& g, const std::string& user,
					       GrantOp op, const std::string& kind, const std::string& value);

// `pukaipu grants USER [--json]`: the effective grants (defaults included).
[[nodiscard]] nlohmann::json describeGrants(const GlobalConfig& g, const InstanceConfig& inst);
[[nodiscard]] std::string formatGrantsTable(const nlohmann::json& described);

// `pukaipu grant|revoke USER KIND VALUE` (root): changeGrants, then the
// outcome on stdout and the change logged (who, what, when) to stderr and
// syslog. An error says "nothing changed".
[[nodiscard]] Result<void> cmdChangeGrant(const Paths& p, const GlobalConfig& g, GrantOp op, const std::string& user,
					  const std::string& kind, const std::string& value);
// `pukaipu grants USER [--json]`.
[[nodiscard]] Result<void> cmdListGrants(const Paths& p, const GlobalConfig& g, const std::string& user, bool asJson);

// `pukaipu attach USER [-- XPRA_OPTIONS...]`: checks that the caller may
// open the instance's attach socket, then execs the local xpra client on it
// (mmap through the shared directory). Returns only on failure.
[[nodiscard]] Error execAttach(const Paths& p, const std::string& user, const std::vector<std::string>& extra);

} // namespace pukaipu
