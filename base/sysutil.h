// sysutil: small helpers several parts of pukaipu need (clock, time stamps, directories).
#pragma once

#include <string>
#include <sys/types.h>

#include "base/error.h"

namespace pukaipu {

// CLOCK_MONOTONIC in milliseconds (deadlines: the supervisor's grace, the
// reaper's drain). Async-signal-safe: the reaper calls it after clone3.
[[nodiscard]] long long monotonicMs() noexcept;

// Creates `path` and every missing parent with `mode` (an existing one is
// left as it is). For pukaipu's own root-owned directories (/var/lib/pukaipu,
// /etc/systemd/system/...): the components are followed as they are, so it
// must never be given a path below a directory a user can write.
[[nodiscard]] Result<void> makeDirs(const std::string& path, mode_t mode);

// Now, UTC, as 2026-11-23T18:02:52Z (instance.json's timestamps).
[[nodiscard]] std::string nowIso();

} // namespace pukaipu
