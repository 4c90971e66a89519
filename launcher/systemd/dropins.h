// dropins: the per-instance systemd drop-in that `pukaipu create/set`
// write and `pukaipu remove` deletes, next to the packaged templates
// pukaipu@.service and pukaipu@.socket:
//
//   SYSTEMD_DIR/pukaipu@USER.service.d/50-pukaipu-limits.conf  MemoryMax= CPUQuota= TasksMax=
//
// The socket needs none: pukaipu@.socket listens on /run/pukaipu/%i/desktop.sock.
// Earlier versions wrote SYSTEMD_DIR/pukaipu@USER.socket.d/50-pukaipu-listen.conf
// (ListenStream=ADDR:PORT, a TCP port); create/set/remove delete it.
//
// SYSTEMD_DIR is /etc/systemd/system (PUKAIPU_SYSTEMD_DIR for tests). The
// content is a pure function of the configuration (render*), so tests and
// `systemd-analyze verify` can check exactly what is written. Files are
// written atomically; a later drop-in of the admin's own (e.g. 60-*.conf)
// overrides ours.
#pragma once

#include <string>
#include <vector>

#include "../config.h"
#include "base/error.h"

namespace pukaipu::units {

inline constexpr const char* kOldListenDropIn = "50-pukaipu-listen.conf"; // removed when found
inline constexpr const char* kLimitsDropIn = "50-pukaipu-limits.conf";

[[nodiscard]] std::string serviceName(const std::string& user); // pukaipu@USER.service
[[nodiscard]] std::string socketName(const std::string& user);  // pukaipu@USER.socket

// The limits that apply to `inst` (its own, else g's defaults) as
// MemoryMax=/CPUQuota=/TasksMax=; "" when there are none (then the file is removed).
[[nodiscard]] std::string renderLimitsDropIn(const GlobalConfig& g, const InstanceConfig& inst);

// Writes (or removes) the limits drop-in of `inst`; removes an old listen drop-in.
[[nodiscard]] Result<void> writeDropIns(const Paths& p, const GlobalConfig& g, const InstanceConfig& inst);
// Removes the drop-ins and their directories when they end up empty.
[[nodiscard]] Result<void> removeDropIns(const Paths& p, const std::string& user);

// sd_booted(): systemd is the running init (/run/systemd/system exists).
[[nodiscard]] bool systemdRunning();
// True when pukaipu should talk to the running systemd: it runs, and the
// drop-ins go to the real /etc/systemd/system (not a test's directory).
[[nodiscard]] bool manageSystemd(const Paths& p);
// `systemctl daemon-reload`; the error carries systemctl's message.
[[nodiscard]] Result<void> daemonReload();
// Names of the instance's units that are active or enabled ("" entries
// skipped); `systemctl is-active` / `is-enabled` per unit.
[[nodiscard]] std::vector<std::string> busyUnits(const std::string& user);

// The front door's unit (launcher/systemd/pukaipu-front.service.in): HAProxy
// with FRONT_DIR/haproxy.cfg. pukaipu drives it when systemd runs and the
// front dir is the one the unit reads (not a test's PUKAIPU_FRONT_DIR).
inline constexpr const char* kFrontUnit = "pukaipu-front.service";
[[nodiscard]] bool manageFrontUnit(const Paths& p);
[[nodiscard]] bool unitActive(const std::string& unit);
// `systemctl ARGS...`; the error carries systemctl's message.
[[nodiscard]] Result<void> systemctlRun(const std::vector<std::string>& args);

} // namespace pukaipu::units
