// mounts: the mount plan (pure, built in the parent) and its child half.
//
// The plan is a table so tests can read it: every spec mount becomes one
// MountPlan with its mount(2) flags and data already split out. The child
// executes the table before pivot_root, while host paths (bind sources, the
// host's /dev nodes) are still reachable, resolving every destination inside
// the rootfs with openat2(RESOLVE_IN_ROOT) so a symlink in the rootfs cannot
// point a mount at the host.
#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "spec.h"

namespace pukaipu {

struct MountPlan {
	std::string destination;
	// bind, tmpfs, proc, sysfs, devpts, mqueue, cgroup2; or "file": a file
	// pukaipu-run generates (resolv.conf), `content` put read-only over the
	// rootfs's existing file at `destination` (see mountInChild).
	std::string type;
	std::string source;
	unsigned long flags = 0;       // MS_NOSUID, MS_RDONLY, ... (MS_BIND|MS_REC for binds)
	unsigned long propagation = 0; // MS_SLAVE / MS_PRIVATE (| MS_REC), 0 = inherit
	std::string data;              // filesystem options: "mode=755,size=65536k"
	bool populateDev = false;      // a tmpfs at /dev: fill it from kDevNodes afterwards
	bool devTty = false;           // ... and /dev/tty, only for a process.terminal
	// A bind mount whose source someone other than root chose (pukaipu's
	// mount grants): the child opens the source as the container's user,
	// refuses it when it resolves onto, into or over one of `forbidden`, or
	// when the user could not read it, and then mounts that very fd, so a
	// path swapped after the check cannot redirect the mount. Never
	// recursive. Copied from MountSpec::guarded (guardBind()).
	bool guarded = false;
	std::vector<std::string> forbidden; // canonical host paths, absolute
	// A guarded source with a known identity is opened without following
	// any symlink and mounted only while it is still that file.
	FileIdentity identity;
	std::string content;                // type "file" only
};

// Marks the one bind mount at `destination` as guarded (MountSpec::guarded),
// checked with `forbidden` in the child. Fails unless exactly one bind mount
// has that destination.
[[nodiscard]] Result<void> guardBind(Spec& spec, const std::string& destination,
				     const std::vector<std::string>& forbidden, FileIdentity identity = {});

// The plan row for a generated read-only file over the rootfs's file at
// `destination` (which must exist there: nothing is created in the rootfs).
[[nodiscard]] MountPlan generatedFile(const std::string& destination, std::string content);

// Host device nodes bind-mounted into a tmpfs /dev (a userns cannot mknod).
// /dev/tty (kDevTty) only when the spec asks for a terminal: the host's
// /dev/tty is whatever terminal the opener controls, and a payload without
// a terminal of its own must not reach the one pukaipu-run was started from.
inline constexpr const char* kDevNodes[] = { "null", "zero", "full", "random", "urandom" };
inline constexpr const char* kDevTty = "tty";

struct DevSymlink {
	const char* name;
	const char* target;
};
inline constexpr DevSymlink kDevSymlinks[] = {
	{ "fd", "/proc/self/fd" },
	{ "stdin", "/proc/self/fd/0" },
	{ "stdout", "/proc/self/fd/1" },
	{ "stderr", "/proc/self/fd/2" },
	{ "ptmx", "pts/ptmx" },
};

// Pure. Splits options into flags and data; refuses what the kernel would
// misread or what would weaken isolation (shared propagation, unknown flags
// for bind mounts). Options that cannot work in our user namespace (devpts
// gid= of an unmapped group) are dropped with a warning appended to `warnings`.
[[nodiscard]] Result<std::vector<MountPlan>> planMounts(const Spec& spec, std::vector<std::string>& warnings);

// --- child half: runs after clone3 in the new mount namespace --------------

// Mounts one plan entry under rootFd. rootFd is an O_PATH fd of the (bound)
// rootfs; destinations are resolved inside it.
[[nodiscard]] Result<void> mountInChild(int rootFd, const MountPlan& m) noexcept;

// maskedPaths: a read-only empty tmpfs over directories, /dev/null over files;
// a path that does not exist is skipped (as runc and crun do).
[[nodiscard]] Result<void> maskPathInChild(int rootFd, const std::string& path) noexcept;

// readonlyPaths: bind the path onto itself, then remount it read-only.
[[nodiscard]] Result<void> readonlyPathInChild(int rootFd, const std::string& path) noexcept;

// Remounts an existing mount (given by an fd of its root) read-only, keeping
// the flags the kernel locked when the mount was copied into our namespace.
[[nodiscard]] Result<void> remountReadonly(int mountFd, const char* what) noexcept;
// The same with any per-mount flags (MS_RDONLY, MS_NOSUID, MS_NODEV, ...).
[[nodiscard]] Result<void> remountWith(int mountFd, unsigned long flags, const char* what) noexcept;

// Pure. Which entry of `forbidden` makes the canonical host path `path`
// unfit for a guarded bind: `path` is that entry, lies inside it, or
// contains it (component-wise: "/etcetera" is not inside "/etc"). The entry
// "/" refuses only "/" itself. Returns nullptr when nothing refuses it.
[[nodiscard]] const char* refusedByPrefix(const char* path, const std::vector<std::string>& forbidden) noexcept;

// Opens the source of a guarded bind with the caller's credentials (the
// child runs as the container's user here) and checks it: where it really
// leads (readlink of /proc/self/fd/N) is not refused by `forbidden`, it is a
// directory or a regular file, and the caller may read it (and search it, for
// a directory). Returns the O_PATH fd to mount. Also used by `pukaipu grant`
// (in a child that took the user's credentials) to check at grant time.
// With a known `identity` (at a start: what `pukaipu grant` recorded), the
// source is opened without following any symlink on the way
// (RESOLVE_NO_SYMLINKS) and must still be that file (st_dev, st_ino).
[[nodiscard]] Result<UniqueFd> openGuardedSource(const char* source, const std::vector<std::string>& forbidden,
						 FileIdentity identity = {}) noexcept;

// Opens `path` inside rootFd (RESOLVE_IN_ROOT). Used by stages too.
[[nodiscard]] Result<UniqueFd> openInRoot(int rootFd, const char* path, int flags) noexcept;

// Is `path` inside rootFd (resolved as openInRoot does) a regular file
// (executable, with wantExec) or, with wantDir, a directory? The rootfs is
// only looked at, never written.
[[nodiscard]] bool existsInRoot(int rootFd, const char* path, bool wantDir, bool wantExec = false) noexcept;

} // namespace pukaipu
