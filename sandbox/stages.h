// stages: the ONE place that writes down the order of a container's start.
//
//   prepare()  parent, unprivileged work first: validate paths, plan mounts,
//              check AppArmor, compile seccomp — everything that allocates.
//   run()      parent: clone3 → id maps → rlimits → release the child →
//              supervise; child: see the numbered list in stages.cc.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "apparmor.h"
#include "base/error.h"
#include "mounts.h"
#include "network.h"
#include "seccomp_profile.h"
#include "spec.h"

namespace pukaipu {

struct RunOptions {
	AppArmorPolicy apparmorPolicy = AppArmorPolicy::Required;
	std::string seccompCacheDir;  // empty: no cache
	int preserveFds = 0;          // fds 3 .. 3+N-1 are passed to the payload
	int graceSeconds = 10;        // SIGTERM → SIGKILL after this long
	bool checkTrustedPaths = true;
	// Called once the payload's execve succeeded, before supervising (the
	// launcher sends systemd READY=1 here). Runs in the parent; may be empty.
	void (*onStarted)(void* ctx, pid_t containerInit) = nullptr;
	void* onStartedCtx = nullptr;
	NetworkOptions network;       // none (loopback only) unless egress; see network.h
	// Bind mounts (by destination) whose source a user chose: prepare()
	// marks them guarded (MountPlan::guarded) with guardedForbidden, so the
	// child resolves and checks the source as the user and mounts the fd it
	// checked. Kept out of the spec: --print-spec stays a plain OCI spec.
	std::vector<std::string> guardedDestinations;
	std::vector<std::string> guardedForbidden; // canonical host paths
};

struct Prepared {
	Spec spec;
	std::vector<MountPlan> mounts;
	std::optional<SeccompProgram> seccomp;
	bool applyAppArmor = false;
	std::vector<std::string> warnings;
};

// Documented exit statuses of pukaipu-run (man pukaipu-run(8), EXIT STATUS).
inline constexpr int kExitSetupFailed = 125; // bad spec, or a step before exec failed
inline constexpr int kExitCannotExec = 126;  // payload found but not executable
inline constexpr int kExitNotFound = 127;    // payload not found

struct Outcome {
	int status = 0;              // pukaipu-run's exit status
	std::optional<Error> error;  // printed once by the launcher
};

[[nodiscard]] Result<Prepared> prepare(Spec spec, const RunOptions& opts);

// Runs the container and waits for it. Never returns an Error for the
// payload's own failure: that is just its exit status.
[[nodiscard]] Outcome run(const Prepared& p, const RunOptions& opts);

} // namespace pukaipu
