// The front door's runtime API: changes that reach the running HAProxy
// without a reload, so no open desktop is dropped (launcher/front.h).
//
// `pukaipu front reload` starts HAProxy with a master CLI on
// RUN_DIR/front-master.sock (root, 0600; the sandboxes have their own /run
// and never see it). Through it every worker, the current one and those
// still draining after a reload, gets the same commands (`@!PID command`).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

#include "base/error.h"

namespace pukaipu::front {

// One file of the front dir before and after a generate() (nullopt: absent).
struct Change {
	std::optional<std::string> before, after;
	[[nodiscard]] bool changed() const { return before != after; }
};
// Every file of the front dir that existed before or exists after.
using Changes = std::map<std::string, Change>;

// "key value" lines of a HAProxy map file.
[[nodiscard]] std::map<std::string, std::string> parseMap(const std::string& text);

// The runtime API commands that bring HAProxy, running with the files of
// `dir` as they were before, to what they are after; nullopt when only a
// reload can (haproxy.cfg, crt-list or the default certificate changed, or
// an instance's files came or went). Empty when nothing changed.
[[nodiscard]] std::optional<std::vector<std::string>> runtimeCommands(const std::string& dir, const Changes& c);

// One command on a HAProxy CLI socket; returns its answer.
[[nodiscard]] Result<std::string> cliCommand(const std::string& socket, const std::string& command);

// The workers (current first, then old ones) listed by the master's `show proc`.
[[nodiscard]] Result<std::vector<pid_t>> workers(const std::string& masterSocket);

// Sends `commands` in order to every worker through the master CLI; the
// first refused command is the error.
[[nodiscard]] Result<void> applyRuntime(const std::string& masterSocket, const std::vector<std::string>& commands);

} // namespace pukaipu::front
