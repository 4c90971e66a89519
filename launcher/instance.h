// instance: from pukaipu's configuration to an OCI spec for one user's
// sandbox. composeSpec() is pure, so `pukaipu-run USER --print-spec` shows
// exactly what runs (the launcher parses its own output with parseSpec).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "config.h"
#include "base/error.h"

namespace pukaipu {

struct UserInfo {
	std::string name;
	uint32_t uid = 0;
	uint32_t gid = 0;
	std::string home; // on the host
	std::string gecos;
};

// The host's view of the user, checked against the instance: same uid/gid,
// uid inside the configured range, a real home directory owned by the user.
[[nodiscard]] Result<UserInfo> checkInstanceUser(const GlobalConfig& g, const InstanceConfig& inst);

enum class SessionKind {
	Desktop, // xpra (or session.command), socket-activated on fd 3
	Shell,   // session.shell with a terminal, for debugging
};

// Host paths of what pukaipu-run generates per start under RUN_DIR/USER.
struct RuntimePaths {
	std::string dir;    // /run/pukaipu/USER            root 0755
	std::string passwd; // .../passwd                     root 0644
	std::string group;  // .../group                      root 0644
	std::string tls;    // .../tls (server.crt, server.key owned by the user 0400, client-ca.crt)
	static RuntimePaths forUser(const Paths& p, const std::string& user);
};

// Container paths the session relies on (documented in pukaipu-run(8)).
inline constexpr const char* kContainerHome = "/data/home";
inline constexpr const char* kContainerTls = "/run/pukaipu/tls";

// `grants` is grantEffect() for this start, computed once by the caller
// (it looks into the rootfs, so composeSpec itself touches nothing).
[[nodiscard]] Result<nlohmann::json> composeSpec(const GlobalConfig& g, const InstanceConfig& inst,
						 const UserInfo& user, const RuntimePaths& rt, SessionKind kind,
						 const std::string& term, const GrantEffect& grants);

// Writes passwd, group and the TLS copies for this start (atomically; the
// key is re-created owned by the user, 0400, so xpra can read it inside).
[[nodiscard]] Result<void> writeRuntimeFiles(const Paths& p, const InstanceConfig& inst, const UserInfo& user,
					     const RuntimePaths& rt);

} // namespace pukaipu
