// spec: the subset of the OCI runtime spec (1.0.x) that pukaipu runs.
//
// parseSpec() is pure (no system calls) so every rule is unit-tested. It
// accepts what `runc spec` writes once a user namespace is added, refuses
// anything pukaipu does not implement with the JSON path of the field, and
// turns what it deliberately does differently into warnings ("..., ignoring").
#pragma once

#include <cstdint>
#include <optional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/error.h"
#include "cgroup.h"
#include "seccomp_profile.h"

namespace pukaipu {

struct IdMapping {
	uint32_t containerId = 0;
	uint32_t hostId = 0;
	uint32_t size = 0;
};

// A file as it was when someone decided to trust it: st_dev and st_ino.
struct FileIdentity {
	uint64_t dev = 0;
	uint64_t ino = 0;
	bool known() const { return dev != 0 || ino != 0; }
	friend bool operator==(const FileIdentity&, const FileIdentity&) = default;
};

struct MountSpec {
	std::string destination;          // absolute, inside the container
	std::string type;                 // bind, tmpfs, proc, sysfs, devpts, mqueue, cgroup
	std::string source;
	std::vector<std::string> options; // as written in the spec
	// Never read from JSON (a spec stays plain OCI): set with guardBind()
	// (mounts.h) on a bind whose source a user chose. See MountPlan::guarded.
	bool guarded = false;
	std::vector<std::string> forbidden; // canonical host paths, absolute
	FileIdentity identity;              // what the source must still be (guarded)
};

struct RlimitSpec {
	int resource = 0; // RLIMIT_*
	std::string name; // "RLIMIT_NOFILE", for messages
	uint64_t soft = 0;
	uint64_t hard = 0;
};

struct Spec {
	std::string ociVersion;
	std::string rootPath; // absolute (made absolute against the bundle)
	bool rootReadonly = false;
	std::string hostname;
	std::map<std::string, std::string> annotations; // kept for the OCI state

	struct Process {
		bool terminal = false;
		uint32_t uid = 0;
		uint32_t gid = 0;
		std::vector<std::string> args;
		std::vector<std::string> env;
		std::string cwd = "/";
		std::vector<RlimitSpec> rlimits;
		std::string apparmorProfile;
	} process;

	std::vector<MountSpec> mounts;
	std::vector<IdMapping> uidMappings;
	std::vector<IdMapping> gidMappings;
	std::optional<SeccompProfile> seccomp;
	std::vector<std::string> maskedPaths;
	std::vector<std::string> readonlyPaths;
	CgroupLimits resources; // linux.resources memory, pids, cpu (cgroup.h)

	std::vector<std::string> warnings; // non-fatal, printed once by the launcher
};

// `bundleDir` resolves a relative root.path; `j` is the parsed config.json.
[[nodiscard]] Result<Spec> parseSpec(const nlohmann::json& j, const std::string& bundleDir);

// Reads DIR/config.json and parses it; errors name the file.
[[nodiscard]] Result<Spec> loadBundle(const std::string& bundleDir);

// Checks a host path pukaipu trusts as root (bundle, rootfs): it and every
// ancestor must be owned by root and not writable by group or others (sticky
// directories such as /tmp excepted), so no other user can swap what we run.
[[nodiscard]] Result<void> checkTrustedPath(const std::string& path);

// "uid_map" file contents: "C H S\n" per mapping. Pure.
[[nodiscard]] std::string formatIdMap(const std::vector<IdMapping>& maps);

// Maps a container id to the host id, or nullopt if unmapped. Pure.
[[nodiscard]] std::optional<uint32_t> mapToHost(const std::vector<IdMapping>& maps, uint32_t id);

} // namespace pukaipu
