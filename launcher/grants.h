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
// credentials, which also records where the path led and that file's
// identity; and at every start by the container's child, which opens the
// recorded path without following symlinks, insists on the same identity,
// and mounts the very fd it checked (MountSpec::guarded, guardBind). A path
// with an ancestor the user can write is refused at grant time (the user's
// own home excepted: there the identity check stops a swap). Container paths of
// mount grants live under /mnt, /media or /srv, where pukaipu-run puts an
// empty tmpfs so the mount points can be made.
//
// The pure parts (parsing, validation, the spec's mounts and environment) are
// unit-tested; the host probes are separate (GrantFacts). The model is in
// grants.cc, the effect at a start (grantEffect, GrantFacts, the runtime
// files) in grant_effect.cc, the subcommands in cmd_grants.h.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace pukaipu {

struct Paths;
struct GlobalConfig;
struct InstanceConfig;

struct MountGrant {
	std::string host;      // absolute, normalized (no "." or ".." or "//")
	std::string container; // absolute, normalized, under kGrantMountRoots
	bool readOnly = true;
	// What `pukaipu grant` found at `host`: where it led (no symlink left)
	// and that file's st_dev/st_ino. A start mounts `resolved` only while it
	// is still that file, reached without any symlink. Empty: granted by an
	// older pukaipu, refused at start until granted again.
	std::string resolved;
	uint64_t dev = 0;
	uint64_t ino = 0;
	// The same grant: same paths and mode (the identity is what was found).
	bool operator==(const MountGrant& o) const
	{
		return host == o.host && container == o.container && readOnly == o.readOnly;
	}
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

// Applies one grant/revoke of any kind but network to `g`. Unknown kinds
// or values: an error listing the valid ones, `g` untouched. Revoking a
// value that is not granted changes nothing (changed = false).
[[nodiscard]] Result<GrantChange> applyGrant(Grants& g, GrantOp op, const std::string& kind,
					     const std::string& value);
// The kind network: the instance's own `network` ("" = the global
// default, which a revoke returns to).
[[nodiscard]] Result<GrantChange> applyNetworkGrant(std::string& network, GrantOp op, const std::string& value);

// `path` lies inside `dir` (component-wise, not `dir` itself).
[[nodiscard]] bool startsWithDir(const std::string& path, const std::string& dir);
// The one of kGrantMountRoots a container path lies inside, or "".
[[nodiscard]] std::string mountRootOf(const std::string& container);
// "on" or "off": how grants and their environment spell a switch.
[[nodiscard]] std::string onOff(bool v);

// What the host and the rootfs offer, probed once per start (and by grant).
struct GrantFacts {
	std::vector<std::string> renderNodes;        // host /dev/dri/renderD*, sorted
	std::vector<std::string> policyPlaceholders; // container paths of the browser policy placeholders
	bool audio = false;                          // the rootfs has PulseAudio and GStreamer for xpra
	std::vector<std::string> audioMissing;       // what it lacks, for messages
	bool cups = false;                           // the rootfs has lpadmin (xpra's printer forwarding)
	bool xpra = false;                           // the rootfs has /usr/bin/xpra (the xpra guard goes over it)
};

// The browser policy placeholders pukaipu-run binds its generated policy over.
inline constexpr const char* kPolicyPlaceholders[] = {
	"/etc/chromium/policies/managed/pukaipu-grants.json",
	"/etc/brave/policies/managed/pukaipu-grants.json",
};

// Where the xpra guard (launcher/xpra_guard.py) goes in a desktop: over the
// rootfs's xpra, so the session's `exec xpra ...` runs xpra behind it.
inline constexpr const char* kXpraPath = "/usr/bin/xpra";

// What grants (and local attach, and the xpra guard) add to a spec. `runDir`
// is RUN_DIR/USER.
struct GrantEffect {
	nlohmann::json mounts;                    // OCI mounts, appended after the instance's own
	std::vector<std::string> env;             // "NAME=value", desktop sessions only
	std::vector<std::string> guarded;         // destinations of mount grants
	std::vector<std::string> warnings;        // grants that cannot apply on this host, ...
	std::string attachDir;                    // host = container path of the attach dir, or ""
	std::string policyFile;                   // host path of the generated browser policy, or ""
	std::string xpraGuard;                    // host path of the xpra guard bound over kXpraPath, or ""
};
[[nodiscard]] GrantEffect grantEffect(const InstanceConfig& inst, const GrantFacts& facts, const std::string& runDir,
				      bool desktop);
// Where, in RUN_DIR/USER, the attach directory and the browser policy are.
[[nodiscard]] std::string attachDirFor(const std::string& runDir);
[[nodiscard]] std::string policyFileFor(const std::string& runDir);
[[nodiscard]] std::string xpraGuardFileFor(const std::string& runDir);

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

// Writes what grantEffect() refers to, for this start, in RUN_DIR/USER: the
// attach directory (owned by the user, 0700), the browser policy (root, 0644)
// and the xpra guard (root, 0755).
[[nodiscard]] Result<void> writeGrantRuntimeFiles(const InstanceConfig& inst, const std::string& runDir);

} // namespace pukaipu
