// stages: the ONE place that writes down the order of a container's start
// (the whole list is at the top of stages.cc).
//
//   prepare()  parent, before any namespace exists: validate the root, plan
//              the mounts (guarded binds and generated files are rows of the
//              plan), prepare the network, decide AppArmor, compile seccomp,
//              plan the cgroup: everything that allocates or can fail on bad
//              input.
//   run()      parent: cgroup → clone3 into it → id maps → rlimits → network
//              → release the child → supervise → remove the cgroup; child:
//              see the numbered list in stages.cc.
//
// The launcher hands over ONE value: a Spec plus RunOptions. Nothing else
// travels between the two, and nothing is decided in both.
#pragma once

#include <optional>
#include <sys/types.h>
#include <string>
#include <vector>

#include "apparmor.h"
#include "cgroup.h"
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
	// The payload keeps nothing of pukaipu-run's stdio: stdin is /dev/null,
	// stdout and stderr go through a pipe that the supervisor relays line by
	// line (control characters escaped, see relayLine), and the container
	// gets a session of its own. For `pukaipu-run USER`'s desktop; bundles
	// and the OCI modes pass stdio through untouched, as runc and crun do.
	bool isolateStdio = false;
	// OCI `create`: the container outlives pukaipu-run. No parent-death
	// signal and no supervisor: the caller (conmon, containerd's shim) owns
	// and waits for the container's init. The payload stops before its
	// execve until `start` opens the exec fifo for reading (startGateFd:
	// an O_PATH fd of it, reopened for writing through /proc/self/fd), and
	// run() returns as soon as it waits there, with Outcome::initPid.
	bool detach = false;
	int startGateFd = -1;
	// With process.terminal and detach: where the pty master goes
	// (SCM_RIGHTS over this connected Unix socket, as runc's --console-socket).
	int consoleSocketFd = -1;
	// The spec's linux.resources go into a cgroup of the container's own
	// (cgroup.h): cgroupPath, or when empty a default named after
	// cgroupName. With limitsFromOwnCgroup no cgroup is made: pukaipu-run's
	// own cgroup must already enforce them (prepare() checks), as
	// pukaipu@USER.service does with its drop-in.
	std::string cgroupPath;
	std::string cgroupName;
	bool limitsFromOwnCgroup = false;
};

struct Prepared {
	Spec spec;
	std::vector<MountPlan> mounts;   // the spec's, then generated files (resolv.conf)
	NetworkOptions network;          // as prepareNetwork completed it
	std::optional<SeccompProgram> seccomp;
	bool applyAppArmor = false;      // the spec's profile applies (R3)
	CgroupPlan cgroup;               // empty: no cgroup of its own (R6)
	std::vector<std::string> warnings;
	std::vector<std::string> notes;  // host-wide changes the start makes (ip_forward)
};

// Documented exit statuses of pukaipu-run (man pukaipu-run(8), EXIT STATUS).
inline constexpr int kExitSetupFailed = 125; // bad spec, or a step before exec failed
inline constexpr int kExitCannotExec = 126;  // payload found but not executable
inline constexpr int kExitNotFound = 127;    // payload not found

struct Outcome {
	int status = 0;              // pukaipu-run's exit status
	std::optional<Error> error;  // printed once by the launcher
	pid_t initPid = 0;           // detach: the container's init (host pid), waiting at the gate
	std::vector<std::string> cgroupLeaves; // detach: its cgroup, for whoever deletes it
};

[[nodiscard]] Result<Prepared> prepare(Spec spec, const RunOptions& opts);

// Runs the container and waits for it. Never returns an Error for the
// payload's own failure: that is just its exit status.
[[nodiscard]] Outcome run(const Prepared& p, const RunOptions& opts);

} // namespace pukaipu
