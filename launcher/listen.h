// listen: the instance's TLS port, as fd 3 for the sandbox.
#pragma once

#include <cstdint>
#include <string>

#include "base/error.h"

namespace pukaipu {

// Makes fd 3 the listening socket: inherited from systemd socket activation
// (LISTEN_FDS=1 and LISTEN_PID = our pid) when present, otherwise a TCP
// socket bound here, in the host network namespace, on address:port. Either
// way the container never binds a host address itself. Returns a one-line
// description for logs ("inherited from systemd" / "bound 0.0.0.0:14501").
[[nodiscard]] Result<std::string> prepareListenSocket(const std::string& address, uint16_t port);

} // namespace pukaipu
