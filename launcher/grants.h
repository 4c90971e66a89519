// grants: opt-in permissions of one instance, and its local attach socket.
//
// Maximum isolation is the default; every extra access is granted by root
// with `pukaipu grant USER KIND VALUE`, kept in instance.json ("grants"),
// takes effect at the instance's next start and is logged. The kinds:
//
//   mount HOST:CONTAINER[:ro|:rw]  an extra bind mount (read-only unless :rw)
//   network egress|none            the instance's `network` (default: global)
//   clipboard both|to-browser|from-browser|off   default off
//   downloads on|off               browser downloads + xpra file transfer; off
//   printing on|off                xpra printing + the browser's; off
//   audio on|off                   speaker forwarding (PulseAudio); off
//   gpu on|off                     the host's /dev/dri render nodes; off
//
// Mount grants are checked twice with the same code (openGuardedSource in
// sandbox/mounts.h): at grant time, in a child that took the user's
// credentials, and at every start by the container's child, which mounts the
// very fd it checked (RunOptions::guardedDestinations). Container paths of
// mount grants live under /mnt, /media or /srv, where pukaipu-run puts an
// empty tmpfs so the mount points can be made.
//
// The pure parts (parsing, validation, the spec's mounts and environment) are
// unit-tested; the host probes are separate (GrantFacts).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/unique_fd.h"

namespace pukaipu {

struct Paths;
struct GlobalConfig;
struct InstanceConfig;

struct MountGrant {
	std::string host;      // absolute, normalized (no "." or ".." or "//")
	std::string container; // absolute, normalized, under kGrantMountRoots
	bool readOnly = true;
	bool operator==(const MountGrant&) const = default;
};

struct Grants {
	std::vector<MountGrant> mounts; // sorted by container path
	std::string clipboard = "off";  // both | to-browser | from-browser | off
	bool downloads = false;
	bool printing = false;
	bool audio = false;
	bool gpu = false;
	bool operator==(const Grants&) const = default;
};

// Where mount grants may appear inside the container. Everything else is
// refused: the rootfs's system directories (/, /bin, /boot, /dev, /etc,
// /lib*, /opt, /proc, /root, /run, /sbin, /sys, /tmp, /usr, /var) and the
// home (/data, /data/home and below).
inline constexpr const char* kGrantMountRoots[] = { "/mnt", "/media", "/srv" };

// Host paths no mount grant may be, lie inside, or contain, besides the
// instance-specific ones (state dir, run dir, other users' homes; see
// forbiddenHostPaths).
inline constexpr const char* kForbiddenHostPaths[] = { "/",   "/boot", "/dev",     "/etc", "/proc",
						       "/root", "/run", "/sys", "/tmp", "/var/tmp" };

// --- pure --------------------------------------------------------------------

// "grants" of instance.json; `path` names it in errors.
[[nodiscard]] Result<Grants> parseGrants(const nlohmann::json& j, const std::string& path);
// Only what differs from the defaults (an empty object for none); for
// nlohmann's `json j = grants;` (found by ADL).
void to_json(nlohmann::json& j, const MountGrant& m); // {host, container, mode}
void to_json(nlohmann::json& j, const Grants& g);

// An absolute path without ".", "..", empty components, a trailing '/',
// control characters or ':'. Returns it unchanged or an error naming `what`.
[[nodiscard]] Result<std::string> checkGrantPath(const std::string& p, const std::string& what);
// HOST:CONTAINER[:ro|:rw] (syntax and the container path; not the host).
[[nodiscard]] Result<MountGrant> parseMountGrant(const std::string& value);
[[nodiscard]] std::string formatMountGrant(const MountGrant& m); // "HOST:CONTAINER:ro"
// The container path is under one of kGrantMountRoots (not the root itself).
[[nodiscard]] Result<void> checkContainerPath(const std::string& p);

enum class GrantOp { Grant, Revoke };

struct GrantChange {
	bool changed = false;
	std::string what; // "clipboard: off -> both", "mount +/srv/a:/mnt/a:ro"
};

// Applies one grant/revoke to `inst` (network is inst.network). Unknown
// kinds or values: an error listing the valid ones, `inst` untouched.
// Revoking a value that is not granted changes nothing (changed = false).
[[nodiscard]] Result<GrantChange> applyGrant(InstanceConfig& inst, GrantOp op, const std::string& kind,
					     const std::string& value);

// What the host and the rootfs offer, probed once per start (and by grant).
struct GrantFacts {
	std::vector<std::string> renderNodes;        // host /dev/dri/renderD*, sorted
	std::vector<std::string> policyPlaceholders; // container paths of the browser policy placeholders
	bool audio = false;                          // the rootfs has PulseAudio and GStreamer for xpra
	std::vector<std::string> audioMissing;       // what it lacks, for messages
	bool cups = false;                           // the rootfs has lpadmin (xpra's printer forwarding)
};

// The browser policy placeholders pukaipu-run binds its generated policy over.
inline constexpr const char* kPolicyPlaceholders[] = {
	"/etc/chromium/policies/managed/pukaipu-grants.json",
	"/etc/brave/policies/managed/pukaipu-grants.json",
};

// What grants (and local attach) add to a spec. `runDir` is RUN_DIR/USER.
struct GrantEffect {
	nlohmann::json mounts;                    // OCI mounts, appended after the instance's own
	std::vector<std::string> env;             // "NAME=value", desktop sessions only
	std::vector<std::string> guarded;         // destinations of mount grants
	std::vector<std::string> warnings;        // grants that cannot apply on this host, ...
	std::string attachDir;                    // host = container path of the attach dir, or ""
	std::string policyFile;                   // host path of the generated browser policy, or ""
};
[[nodiscard]] GrantEffect grantEffect(const InstanceConfig& inst, const GrantFacts& facts, const std::string& runDir,
				      bool desktop);

// The managed browser policy for these grants (DownloadRestrictions, PrintingEnabled).
[[nodiscard]] std::string browserPolicy(const Grants& g);

// The xpra-session environment for these grants.
[[nodiscard]] std::vector<std::string> grantEnv(const Grants& g);

// --- host ----------------------------------------------------------------------

[[nodiscard]] GrantFacts probeGrantFacts(const std::string& rootfs, const std::string& driDir = "/dev/dri");

// kForbiddenHostPaths + the state, run and configuration directories + every
// other user's home (uid >= 1000, not nobody) — each also in its canonical
// form (realpath), deduplicated.
[[nodiscard]] std::vector<std::string> forbiddenHostPaths(const Paths& p, uint32_t ownUid);

// The grant-time check of a mount grant's host path: openGuardedSource in a
// child with the user's uid/gid and no supplementary groups (as inside).
[[nodiscard]] Result<void> checkHostPathAsUser(const std::string& host, uint32_t uid, uint32_t gid,
					       const std::vector<std::string>& forbidden);

// `pukaipu grant/revoke`: loads the instance, applies and checks the change,
// writes instance.json atomically and logs it (stderr + syslog: who, what,
// when). The caller holds the provisioning lock (lockState).
struct GrantResult {
	GrantChange change;
	std::vector<std::string> warnings;
};
[[nodiscard]] Result<GrantResult> changeGrants(const Paths& p, const GlobalConfig& g, const std::string& user,
					       GrantOp op, const std::string& kind, const std::string& value);

// `pukaipu grants USER [--json]`: the effective grants (defaults included).
[[nodiscard]] nlohmann::json describeGrants(const GlobalConfig& g, const InstanceConfig& inst);
[[nodiscard]] std::string formatGrantsTable(const nlohmann::json& described);

// Writes what grantEffect() refers to, for this start, in RUN_DIR/USER: the
// attach directory (owned by the user, 0700) and the browser policy (root, 0644).
[[nodiscard]] Result<void> writeGrantRuntimeFiles(const InstanceConfig& inst, const std::string& runDir);

// `pukaipu attach USER [-- XPRA_OPTIONS...]`: checks that the caller may
// open the instance's attach socket, then execs the local xpra client on it
// (mmap through the shared directory). Returns only on failure.
[[nodiscard]] Error execAttach(const Paths& p, const std::string& user, const std::vector<std::string>& extra);

// The subcommands grant, revoke, grants and attach of pukaipu(8). Prints
// results, warnings and errors (one line); grant and revoke take `lock`
// (lockState) and log every change (who, what, when) to stderr and syslog.
struct GrantCommand {
	enum Which { None, Grant, Revoke, List, Attach } which = None;
	std::string user, kind, value;
	bool json = false;               // grants --json
	std::vector<std::string> extra;  // attach: options for the xpra client
};
[[nodiscard]] int runGrantCommand(const Paths& p, const GrantCommand& c, Result<UniqueFd> (*lock)(const Paths&));

} // namespace pukaipu
