// process: running a program, and a forked helper's switch to a user. For
// pukaipu's tools (useradd, systemctl, ...) and forked helpers; never used by
// the container's own start (see sandbox/stages.cc).
#pragma once

#include <functional>
#include <string>
#include <sys/types.h>
#include <vector>

#include "base/error.h"

namespace pukaipu {

// For a forked helper of root's (never the launcher itself): drops to
// uid/gid with no supplementary groups, in the order that works (groups
// and gid while still root, the uid last: after it nothing can be changed
// back), then re-reads all three and fails unless they are what was asked.
[[nodiscard]] Result<void> becomeUser(uid_t uid, gid_t gid);

// Runs `body` in a forked child that first drops to uid/gid (becomeUser),
// and returns what it returned: its text, or its Error as the child made it
// (errno kept; sent back over a pipe). For root's helpers that must act with
// a user's rights (a symlink the user planted then leads only where the user
// could go anyway). A child that ends without an answer: "WHAT as uid N
// failed (status S)".
[[nodiscard]] Result<std::string> runAsUser(uid_t uid, gid_t gid, const std::string& what,
					    const std::function<Result<std::string>()>& body);

// Where runProgram looks for a program named without a '/': a fixed list,
// never the caller's PATH (root's environment is not ours to trust).
inline constexpr const char* kSystemPath = "/usr/sbin:/usr/bin:/sbin:/bin";

struct ProgramResult {
	int status = 0;     // the exit code, or 128 + the signal that ended it
	std::string output; // stderr (and stdout when asked), trailing blanks cut
};

// Runs argv (no shell) with stdin from /dev/null, the environment
// PATH=kSystemPath LC_ALL=C only, and its stderr (and stdout with
// captureStdout; else stdout goes to /dev/null) captured, up to 4 KiB. An
// Error only when it could not run at all; its exit status is the caller's
// to judge.
[[nodiscard]] Result<ProgramResult> runProgram(const std::vector<std::string>& argv, bool captureStdout);

} // namespace pukaipu
