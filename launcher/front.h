// The front door: the HAProxy that terminates TLS for every instance.
//
// From pukaipu.json (listenAddress, frontPort, domain) and the instances'
// state, `pukaipu front reload` writes Paths::frontDir:
//   haproxy.cfg       one frontend on listenAddress:frontPort, a backend
//                     `unix@RUN_DIR/USER/desktop.sock` per instance
//   crt-list          per instance: its server certificate, [ca-file its
//                     client CA, verify required] and its name; first a
//                     default line whose CA signed nothing
//   backends.map, origins.map, serials.map   name -> backend, Origin, the
//                     current client certificate's serial (ssl_c_serial,hex)
//   USER.pem (0640 root:haproxy), USER-client-ca.crt, default.pem, nobody-ca.crt
// and then starts HAProxy (master-worker, pid in RUN_DIR/front.pid, log in
// RUN_DIR/front.log) or makes the running one reload (SIGUSR2).
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

#include "base/error.h"
#include "config.h"

namespace pukaipu::front {

// The name an instance is opened with (its fqdn; USER.domain by default).
[[nodiscard]] std::string instanceName(const InstanceConfig& inst);

// https://NAME, with :PORT unless the port is 443.
[[nodiscard]] std::string originOf(const std::string& name, uint16_t port);

// Writes the files; the new configuration replaces the old one only when
// `haproxy -c` accepts it (else the old files stay and the error says why).
[[nodiscard]] Result<void> generate(const Paths& p, const GlobalConfig& g);

// The master's pid when the front door's HAProxy runs (RUN_DIR/front.pid
// names a live haproxy), else 0.
[[nodiscard]] pid_t runningPid(const Paths& p);

// generate(), then start HAProxy or make it reload. Returns what happened.
[[nodiscard]] Result<std::string> reload(const Paths& p, const GlobalConfig& g);

// After create, remove, cert renew: generate() and reload only if it runs.
// Nothing when the front door was never set up (no haproxy.cfg yet).
[[nodiscard]] Result<void> refresh(const Paths& p, const GlobalConfig& g);

// `pukaipu front status`: one line per fact.
[[nodiscard]] std::string status(const Paths& p);

// `NAME HOST:PORT` per instance, for a TCP-mode HAProxy elsewhere that
// routes by SNI to this host's front door.
[[nodiscard]] Result<std::string> sniMap(const Paths& p, const GlobalConfig& g);

} // namespace pukaipu::front
