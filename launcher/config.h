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

#include "grants.h"
#include "base/error.h"

namespace pukaipu {

// Where pukaipu keeps things. Tests point these elsewhere through
// PUKAIPU_CONFIG, PUKAIPU_STATE_DIR and PUKAIPU_RUN_DIR (or the --config /
// --state-dir options), so they never touch the real ones.
struct Paths {
	std::string configFile; // /etc/pukaipu/pukaipu.json
	std::string stateDir;   // /var/lib/pukaipu
	std::string runDir;     // /run/pukaipu
	// Where `pukaipu create/set/remove` keep the units' drop-ins
	// (pukaipu@USER.service.d/, pukaipu@USER.socket.d/); PUKAIPU_SYSTEMD_DIR.
	std::string systemdDir; // /etc/systemd/system
	bool systemdDirIsDefault = true; // false: redirected, never `systemctl daemon-reload`
	// The front door's HAProxy files (launcher/front.h); PUKAIPU_FRONT_DIR,
	// default: next to the config file (/etc/pukaipu/front).
	std::string frontDir;

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
	std::string listenAddress = "0.0.0.0"; // the front door's bind address
	std::string domain = "localhost";      // an instance's name: USER.domain (unless --fqdn)
	// More domains the host CA may sign names in (its nameConstraints
	// permit domain and these; launcher/names.h).
	std::vector<std::string> extraDomains;
	uint16_t frontPort = 443;              // the front door's port
	// Addresses (IP or CIDR) whose connections to the front door start with
	// a PROXY protocol header (v1 or v2): an SNI router in front of several
	// hosts. Empty: nobody may send one.
	std::vector<std::string> frontProxyFrom;
	std::string apparmorPolicy = "required"; // or "optional"
	std::string apparmorProfile = "pukaipu-session";
	std::string seccompProfile;              // default: DATADIR/seccomp/default.json
	std::vector<std::string> sessionCommand { "/usr/lib/pukaipu/xpra-session" };
	std::vector<std::string> shellCommand { "/bin/bash", "-l" };
	std::string shmSize = "1g";              // /dev/shm: Chromium needs a large one
	// The session's other tmpfs mounts, bounded so that filling them stops
	// there and not at the host's memory: /tmp, and /run/user/UID
	// (XDG_RUNTIME_DIR, xpra's sockets, the X authority).
	std::string tmpSize = "512m";
	std::string runtimeDirSize = "64m";
	// Default limits of every instance (an instance's own --memory/--tasks
	// win): systemd's MemoryMax=/TasksMax= syntax. Applied by the unit's
	// drop-in, or by pukaipu-run itself in a cgroup when it runs outside
	// pukaipu@USER.service. "infinity" / 0: none. Measured: see pukaipu.json(5).
	std::string memoryMax = "4G";
	uint32_t tasksMax = 4096;
	std::string networkMode = "egress";      // default for new instances: egress | none
	bool allowHostNetwork = false;
	std::vector<std::string> allowedCidrs;   // private ranges an instance may reach
	std::vector<std::string> dns;            // nameservers for instances; empty: the host's
	uint32_t certDays = 825;
	int graceSeconds = 10;
	// Scale to zero: the session exits after this many seconds without a
	// client (0 = never); instances may override it. Only useful with
	// pukaipu@USER.socket, which listens again once the session is gone.
	uint32_t idleSeconds = 0;
	// Rootfs generations (rootfs-builder(8)): a desktop whose generation
	// has been behind `current` for staleDays restarts at the next moment
	// without a client (with idleSeconds > 0: at once when it has none);
	// pukaipu-run checks every checkSeconds.
	uint32_t staleDays = 7;
	uint32_t swapCheckSeconds = 60;
};

// Per-instance resource limits, applied by systemd from a drop-in of
// pukaipu@USER.service (MemoryMax=, CPUQuota=, TasksMax=), or by pukaipu-run
// in a cgroup of the session's own outside the unit. Empty/0 = the global
// default (memoryMax, tasksMax; none for cpus).
struct Limits {
	std::string memory; // "2G", "512M", "25%" (systemd's MemoryMax= syntax, K/M/G/T = 1024)
	double cpus = 0;    // 1.5 → CPUQuota=150%
	uint32_t tasks = 0; // TasksMax=
	bool empty() const { return memory.empty() && cpus == 0 && tasks == 0; }
};

struct InstanceConfig {
	std::string user;
	uint32_t uid = 0;
	uint32_t gid = 0;
	uint16_t port = 0;
	std::string fqdn;
	std::vector<std::string> extraNames; // more DNS names (earlier versions also allowed IPs)
	std::string network;                 // "" = the global default
	std::string created;                 // ISO 8601, UTC
	bool createdUser = false;            // pukaipu made the Unix user (remove may delete it)
	std::optional<uint32_t> idleSeconds; // unset = the global idleSeconds
	Limits limits;
	Grants grants;                       // opt-in permissions (grants.h); default: none
};

// The idle timeout that applies to an instance (0 = none).
[[nodiscard]] inline uint32_t effectiveIdleSeconds(const GlobalConfig& g, const InstanceConfig& i)
{
	return i.idleSeconds.value_or(g.idleSeconds);
}

// The limits that apply: the instance's, else the global defaults.
[[nodiscard]] Limits effectiveLimits(const GlobalConfig& g, const InstanceConfig& i);
// A checked memory limit ("2G", "25%" of `physical` bytes) in bytes.
[[nodiscard]] Result<uint64_t> memoryBytes(const std::string& v, uint64_t physical);

// The bounds of the limits, for the checkers below and the command line's.
inline constexpr double kMinCpus = 0.01, kMaxCpus = 1024;
inline constexpr uint32_t kMinTasks = 16, kMaxTasks = 4194304;

// Checkers shared by the JSON parser and the command line; each returns the
// normalized value or an error naming `what`.
[[nodiscard]] Result<std::string> checkMemoryLimit(const std::string& v, const std::string& what);
[[nodiscard]] Result<double> checkCpuLimit(double v, const std::string& what);
[[nodiscard]] Result<uint32_t> checkTasksLimit(uint64_t v, const std::string& what);
// "90", "90s", "30m", "2h" → seconds (at most 7 days); "0" = never.
[[nodiscard]] Result<uint32_t> parseDuration(const std::string& v, const std::string& what);

[[nodiscard]] Result<GlobalConfig> parseGlobalConfig(const nlohmann::json& j);
[[nodiscard]] Result<GlobalConfig> loadGlobalConfig(const Paths& paths);

[[nodiscard]] Result<InstanceConfig> parseInstanceConfig(const nlohmann::json& j);
// A DNS name of LDH labels (no wildcards, never an IP literal).
[[nodiscard]] bool validHostName(const std::string& s);
[[nodiscard]] Result<InstanceConfig> loadInstanceConfig(const Paths& paths, const std::string& user);

// What the parsers read, for nlohmann's `json j = config;` (found by ADL).
// An instance's defaults (no network, limits, idle timeout or grants) are
// left out; the global configuration is written whole.
void to_json(nlohmann::json& j, const IdRange& r); // [first, last]
void to_json(nlohmann::json& j, const GlobalConfig& c);
void to_json(nlohmann::json& j, const Limits& l);
void to_json(nlohmann::json& j, const InstanceConfig& c);

// A valid Unix user name for pukaipu: [a-z_][a-z0-9_-]{0,31}, not ending in
// '-' (and so never '.', '/', or anything a path could abuse).
[[nodiscard]] bool validUserName(const std::string& name);

} // namespace pukaipu
