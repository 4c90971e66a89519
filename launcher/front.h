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
// and then starts HAProxy (master-worker, pid in RUN_DIR/front.pid, log and
// access log in RUN_DIR/front.log, master CLI on RUN_DIR/front-master.sock)
// or makes the running one reload (SIGUSR2). A change that needs no new
// backend (cert renew) reaches the running workers through the master CLI
// instead (front_runtime.h): nobody is dropped.
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

#include "base/error.h"
#include "config.h"
#include "front_runtime.h"

namespace pukaipu::front {

// The name an instance is opened with (its fqdn; USER.domain by default).
[[nodiscard]] std::string instanceName(const InstanceConfig& inst);

// https://NAME, with :PORT unless the port is 443.
[[nodiscard]] std::string originOf(const std::string& name, uint16_t port);

// ADDRESS:PORT, with [ADDRESS] for IPv6.
[[nodiscard]] std::string hostPort(const std::string& address, uint16_t port);

// Writes the files; the new configuration replaces the old one only when
// `haproxy -c` accepts it (else the old files stay and the error says why).
// Returns each file's contents before and after.
[[nodiscard]] Result<Changes> generate(const Paths& p, const GlobalConfig& g);

// RUN_DIR/front-master.sock: the master CLI (`haproxy -S`, root only).
[[nodiscard]] std::string masterSocket(const Paths& p);

// The master's pid when the front door's HAProxy runs (RUN_DIR/front.pid
// names a live haproxy), else 0.
[[nodiscard]] pid_t runningPid(const Paths& p);

// generate(), then start HAProxy or make it reload. Returns what happened.
[[nodiscard]] Result<std::string> reload(const Paths& p, const GlobalConfig& g);

// After create, remove, cert renew, set: generate(), and when HAProxy runs
// and a file changed, bring it up to date: through the runtime API when no
// backend came or went, else (or when that fails) by a reload. Nothing when
// the front door was never set up (no haproxy.cfg yet). Returns one line
// for the administrator when the runtime API could not be used ("" else).
[[nodiscard]] Result<std::string> refresh(const Paths& p, const GlobalConfig& g);

// `pukaipu front status`: one line per fact.
[[nodiscard]] std::string status(const Paths& p);

// `NAME HOST:PORT` per instance, for a TCP-mode HAProxy elsewhere that
// routes by SNI to this host's front door.
[[nodiscard]] Result<std::string> sniMap(const Paths& p, const GlobalConfig& g);

// The haproxy program: PUKAIPU_HAPROXY when set (tests), else the first of
// /usr/sbin, /usr/local/sbin, /usr/bin that exists.
[[nodiscard]] std::string haproxyBinary();
// The first line of haproxy's complaint in OUT, without its "[ALERT] (pid) :"
// prefix.
[[nodiscard]] std::string firstAlert(const std::string& out);

} // namespace pukaipu::front
