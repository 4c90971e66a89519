// notify: systemd's readiness protocol without libsystemd (sd_notify(3)):
// one datagram to $NOTIFY_SOCKET. A no-op when not started by systemd.
#pragma once

#include <string>

namespace pukaipu {

// Sends `state` (e.g. "READY=1\nSTATUS=..."); returns false if it could not.
bool notifySystemd(const std::string& state);

} // namespace pukaipu
