// instance: from pukaipu's configuration to the ONE value pukaipu-run hands
// the sandbox for one user's session: the OCI spec plus RunOptions
// (composeInstance). composeSpec() is pure, so `pukaipu-run USER
// --print-spec` shows exactly what runs (the launcher parses its own output
// with parseSpec, as any bundle).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "config.h"
#include "generation.h"
#include "sandbox/stages.h"

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
	std::string socket; // .../desktop.sock, the desktop's listening socket (listen.h)
	static RuntimePaths forUser(const Paths& p, const std::string& user);
	// What runs: one record per pukaipu-run of the instance, holding its
	// PID. The desktop's is `pid` (pukaipu list shows it as running); each
	// --shell has its own, so that one ending never removes another's.
	std::string desktopRecord() const { return dir + "/pid"; }
	std::string shellRecord(pid_t launcher) const { return dir + "/shell-" + std::to_string(launcher) + ".pid"; }
};

// Earlier versions (before the front door) copied the instance's server
// certificate, key and client CA into RUN_DIR/USER/tls, mounted into the
// sandbox for xpra, the key readable by the user. Removes that directory.
[[nodiscard]] Result<void> removeOldTlsCopies(const std::string& runUserDir);

// The PIDs of the instance's pukaipu-run processes that still run, from
// their records in `rt.dir` (a record whose PID is gone, or is no longer a
// pukaipu-run, counts for nothing). desktopOnly: just the desktop's.
[[nodiscard]] std::vector<pid_t> liveLaunchers(const RuntimePaths& rt, bool desktopOnly);

// Container paths the session relies on (documented in pukaipu-run(8)).
inline constexpr const char* kContainerHome = "/data/home";

// Pure. `grants` is grantEffect() for this start and `seccomp` the profile
// as readSeccompFile() checked it (null: none), both read by the caller, so
// composeSpec itself touches nothing.
[[nodiscard]] nlohmann::json composeSpec(const GlobalConfig& g, const InstanceConfig& inst, const UserInfo& user,
					 const RuntimePaths& rt, SessionKind kind, const std::string& term,
					 const GrantEffect& grants, const nlohmann::json& seccomp);

// The network options of a bundle's command line (--network ...) or of an
// instance's configuration, checked (prepareNetwork checks them again).
[[nodiscard]] Result<NetworkOptions> networkOptionsFrom(const std::string& mode, bool allowHost,
							const std::string& pool,
							const std::vector<std::string>& allow,
							const std::vector<std::string>& dns);

// What `pukaipu-run USER` was asked on its command line.
struct InstanceRequest {
	std::string user;
	SessionKind kind = SessionKind::Desktop;
	std::string term;            // $TERM, for a shell
	std::string apparmorPolicy;  // --apparmor; empty: the configuration's apparmor.policy
	int graceSeconds = -1;       // --grace; -1: the configuration's
	std::string seccompCacheDir; // empty: no cache
};

// The one hand-off from the launcher to the sandbox for an instance: spec
// and RunOptions go to prepare() as they are. The rest says what the
// launcher itself sets up on the host first (runtime files, the socket).
struct InstanceStart {
	nlohmann::json specJson; // exactly what runs: --print-spec prints it
	Spec spec;               // parsed from specJson; mount grants marked guarded (guardBind)
	RunOptions opts;         // network, AppArmor policy, grace; a desktop gets fd 3 (preserveFds 1)
	std::vector<std::string> warnings; // grants that cannot apply on this host
	InstanceConfig inst;
	UserInfo user;
	RuntimePaths rt; // rt.socket: the desktop's listening socket (fd 3)
	RootfsGeneration rootfs; // `current` resolved once: the spec's root.path
	GlobalConfig global;     // as this start used it (rootfs: the generation's directory)
};

// Loads the configuration and the instance, checks the user, and composes
// the start. Reads files (configuration, the seccomp profile, what the rootfs
// offers for grants); writes nothing.
[[nodiscard]] Result<InstanceStart> composeInstance(const Paths& paths, const InstanceRequest& req);

// Writes passwd, group and the grants' files for this start (atomically).
// No certificate and no key: TLS ends at the front door, outside.
[[nodiscard]] Result<void> writeRuntimeFiles(const Paths& p, const InstanceConfig& inst, const UserInfo& user,
					     const RuntimePaths& rt);

} // namespace pukaipu
