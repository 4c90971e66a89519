// generation: which rootfs generation an instance runs (rootfs-builder(8)).
//
// The configured rootfs (pukaipu.json "rootfs", default
// /var/lib/pukaipu/rootfs/default) is either a rootfs tree (the layout
// before generations) or a directory of generations with a `current`
// symlink that rootfs-builder moves atomically. pukaipu-run resolves
// `current` ONCE per start and runs that generation's directory, so a build
// that moves `current` later never changes a running instance's files. It
// records the resolved directory in RUN_DIR/USER/rootfs-PID before the
// rootfs is opened; rootfs-builder never removes a generation a live record
// names.
#pragma once

#include <cstdint>
#include <string>

#include "base/error.h"

namespace pukaipu {

struct RootfsGeneration {
	std::string path;       // what the container runs: BASE/GEN, or the configured tree itself
	std::string generation; // GEN; empty for a single rootfs tree (no `current`)
	std::string base;       // the configured rootfs
};

// Resolves BASE/current once (refusing a target that is not a plain name).
[[nodiscard]] Result<RootfsGeneration> resolveRootfs(const std::string& configured);

// RUN_DIR/USER/rootfs-PID, the record of one pukaipu-run.
[[nodiscard]] std::string generationRecord(const std::string& runUserDir, pid_t launcher);
// The generation directory a live pukaipu-run's record names (the desktop's
// when `launcher` is its PID); empty when there is none.
[[nodiscard]] std::string recordedGeneration(const std::string& runUserDir, pid_t launcher);

// How far `running` (a generation directory) is behind BASE/current.
struct Behind {
	bool behind = false;       // current names another generation
	std::string current;       // the generation current names
	int64_t seconds = 0;       // since `running` stopped being current
};
[[nodiscard]] Behind behindCurrent(const std::string& base, const std::string& runningGeneration);

// Is a client connected to the desktop's listening socket? Counts the
// accepted (connected, not listening) Unix sockets bound to `socketPath` in
// this network namespace's /proc/net/unix: the front door's connections to
// the desktop, accepted by xpra in the container but created in the
// namespace of the connecting HAProxy, the host's.
[[nodiscard]] int clientConnections(const std::string& socketPath);

// RUN_DIR/USER/restart-when-idle: written by `pukaipu restart USER
// --when-idle`, consumed by the desktop's pukaipu-run.
[[nodiscard]] std::string restartRequest(const std::string& runUserDir);

// Why a desktop on `generation` should restart now; "" keeps it running.
// Never while a client is attached. Otherwise: when asked (restart
// --when-idle); when its generation is behind and the instance scales to
// zero (idleSeconds > 0: without a client it is idle); when its generation
// has been behind for staleDays. Pure (unit-tested).
[[nodiscard]] std::string swapReason(const std::string& generation, const Behind& b, int clients,
				     uint32_t idleSeconds, uint32_t staleDays, bool requested);

// pukaipu-run's exit status after such a restart (EX_TEMPFAIL): "start me
// again, on the current generation". pukaipu@.service restarts it with
// RestartForceExitStatus=75, whether it was started by its socket or enabled
// on its own; a stop from outside (SIGTERM of `systemctl stop`) still exits
// 143 and stays stopped.
inline constexpr int kExitRestartOnCurrent = 75;

} // namespace pukaipu
