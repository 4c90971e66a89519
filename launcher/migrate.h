// migrate: instances made before the front door move over to it.
//
// Before the front door (up to pukaipu 0.x, commit 273a2a0 and earlier) each
// instance had its own TCP port (instance.json `port`, the socket drop-in
// pukaipu@USER.socket.d/50-pukaipu-listen.conf with ListenStream=ADDR:PORT),
// TLS ended in xpra inside the sandbox (RUN_DIR/USER/tls/ with a copy of
// server.key owned by the user, mounted into the sandbox), names could be IP
// addresses (`--extra-name 127.0.0.1`), and two instances could share a name.
//
// `pukaipu migrate` (the .deb's postinst runs it on upgrade) converts that
// state, under the provisioning lock, after checking every instance first (a
// file it cannot read, an IP fqdn with a server certificate from elsewhere,
// or a name two instances share: one line, nothing changed):
//  - IP extra names leave instance.json (the front door routes by TLS server
//    name, and browsers send none for an IP); an IP fqdn becomes USER.DOMAIN
//    with a new server certificate from the host CA for it;
//  - the TCP socket drop-in goes (pukaipu@.socket listens on the desktop's
//    Unix socket), and so does RUN_DIR/USER/tls (the key the sandbox could
//    read); the instance's certificates and keys stay in the state directory
//    (server.key 0600 root, certs/ 0700), where only root and the front
//    door's configuration read them;
//  - it reports, per instance, the old URL and the new one.
// Idempotent: a second run finds nothing to do and changes nothing.
#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "config.h"

namespace pukaipu {

struct MigrateResult {
	std::vector<std::string> urls;     // "USER: https://OLD/ -> https://NEW/"
	std::vector<std::string> changes;  // what was done, one line each
	bool frontWasSetUp = true;         // haproxy.cfg existed before
	bool dropInsRemoved = false;       // systemd needs a daemon-reload
};

[[nodiscard]] Result<MigrateResult> migrate(const Paths& p, const GlobalConfig& g);

} // namespace pukaipu
