// config: /etc/pukaipu/pukaipu.json (global) and
// /var/lib/pukaipu/instances/USER/instance.json (one per instance).
//
// Both parsers are strict: an unknown key or a wrong type is an error naming
// its JSON path. Defaults are documented in pukaipu.json(5) and are what
// `pukaipu config --defaults` would print; a missing global file means "all
// defaults".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "sandbox/error.h"

namespace pukaipu {

// Where pukaipu keeps things. Tests point these elsewhere through
// PUKAIPU_CONFIG, PUKAIPU_STATE_DIR and PUKAIPU_RUN_DIR (or the --config /
// --state-dir options), so they never touch the real ones.
struct Paths {
	std::string configFile; // /etc/pukaipu/pukaipu.json
	std::string stateDir;   // /var/lib/pukaipu
	std::string runDir;     // /run/pukaipu

	static Paths fromEnvironment();
	std::string instancesDir() const { return stateDir + "/instances"; }
	std::string instanceDir(const std::string& user) const { return instancesDir() + "/" + user; }
	std::string hostCaDir() const; // next to the config file: /etc/pukaipu/ca
	std::string lockFile() const { return stateDir + "/.lock"; }
};

struct IdRange {
	uint32_t first = 0;
	uint32_t last = 0;
	bool contains(uint32_t v) const { return v >= first && v <= last; }
};

struct GlobalConfig {
	std::string rootfs = "/var/lib/pukaipu/rootfs/default";
	IdRange uids { 3000, 4000 };
	IdRange ports { 14500, 14999 };
	std::string listenAddress = "0.0.0.0";
	std::string apparmorPolicy = "required"; // or "optional"
	std::string apparmorProfile = "pukaipu-session";
	std::string seccompProfile;              // default: DATADIR/seccomp/default.json
	std::vector<std::string> sessionCommand { "/usr/lib/pukaipu/xpra-session" };
	std::vector<std::string> shellCommand { "/bin/bash", "-l" };
	std::string shmSize = "1g";              // /dev/shm: Chromium needs a large one
	std::string networkMode = "egress";      // default for new instances: egress | none
	bool allowHostNetwork = false;
	std::vector<std::string> allowedCidrs;   // private ranges an instance may reach
	std::vector<std::string> dns;            // nameservers for instances; empty: the host's
	uint32_t certDays = 825;
	int graceSeconds = 10;
};

struct InstanceConfig {
	std::string user;
	uint32_t uid = 0;
	uint32_t gid = 0;
	uint16_t port = 0;
	std::string fqdn;
	std::vector<std::string> extraNames; // more DNS names / IPs in the server certificate
	std::string network;                 // "" = the global default
	std::string created;                 // ISO 8601, UTC
	bool createdUser = false;            // pukaipu made the Unix user (remove may delete it)
};

[[nodiscard]] Result<GlobalConfig> parseGlobalConfig(const nlohmann::json& j);
[[nodiscard]] Result<GlobalConfig> loadGlobalConfig(const Paths& paths);
[[nodiscard]] nlohmann::json toJson(const GlobalConfig& c);

[[nodiscard]] Result<InstanceConfig> parseInstanceConfig(const nlohmann::json& j);
[[nodiscard]] Result<InstanceConfig> loadInstanceConfig(const Paths& paths, const std::string& user);
[[nodiscard]] nlohmann::json toJson(const InstanceConfig& c);

// A valid Unix user name for pukaipu: [a-z_][a-z0-9_-]{0,31}, not ending in
// '-' (and so never '.', '/', or anything a path could abuse).
[[nodiscard]] bool validUserName(const std::string& name);

} // namespace pukaipu
