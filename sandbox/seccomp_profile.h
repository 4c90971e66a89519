// seccomp: OCI/Docker JSON profiles → libseccomp → raw BPF.
//
// Split in three so the privileged path stays small:
//   parseSeccomp()   pure: JSON → SeccompProfile (unit-tested, names JSON paths in errors)
//   compileSeccomp() parent, before clone3: libseccomp builds and exports the BPF;
//                    loadOrCompileSeccomp() caches that BPF on disk (root-only dir)
//   installSeccomp() child, last step before execve: one seccomp(2) call, no allocation
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <linux/filter.h>
#include <nlohmann/json_fwd.hpp>

#include "base/error.h"

namespace pukaipu {

struct SeccompArg {
	unsigned index = 0;     // 0..5
	uint64_t value = 0;
	uint64_t valueTwo = 0;
	std::string op;         // SCMP_CMP_NE|LT|LE|EQ|GE|GT|MASKED_EQ
};

struct SeccompRule {
	std::vector<std::string> names;
	std::string action;             // SCMP_ACT_ALLOW|ERRNO|KILL|KILL_PROCESS|KILL_THREAD|TRAP|LOG|TRACE
	std::optional<uint32_t> errnoRet;
	std::vector<SeccompArg> args;
};

struct SeccompProfile {
	std::string defaultAction;
	std::optional<uint32_t> defaultErrnoRet;
	std::vector<std::string> architectures; // SCMP_ARCH_*; empty = native only
	std::vector<std::string> flags;         // SECCOMP_FILTER_FLAG_*
	std::vector<SeccompRule> syscalls;
};

// `where` is the JSON path of `j` used in error messages, e.g. "linux.seccomp"
// or the profile file name. Unknown or mistyped fields are errors naming their path.
[[nodiscard]] Result<SeccompProfile> parseSeccomp(const nlohmann::json& j, const std::string& where);

// Profile files (Docker/OCI JSON) are read through the bounded reader: a
// regular file of at most kMaxProfileBytes; errors name the file.
inline constexpr std::size_t kMaxProfileBytes = 4 << 20;
// Reads and parses a profile file.
[[nodiscard]] Result<SeccompProfile> loadSeccompFile(const std::string& path);
// Reads a profile file and checks every field as loadSeccompFile does, but
// returns the JSON itself: for a spec that embeds it (linux.seccomp).
[[nodiscard]] Result<nlohmann::json> readSeccompFile(const std::string& path);

struct SeccompProgram {
	std::vector<sock_filter> bpf;
	unsigned flags = 0;                // for seccomp(SECCOMP_SET_MODE_FILTER, flags, ...)
	std::vector<std::string> warnings; // e.g. syscall names this libseccomp does not know
};

// Builds the filter with libseccomp and exports it as BPF. Non-native ABIs
// (x32, i386) are killed unless the profile lists their architecture.
[[nodiscard]] Result<SeccompProgram> compileSeccomp(const SeccompProfile& p);

// Like compileSeccomp, but reuses a cached BPF keyed by
// FNV-1a of (canonical profile, libseccomp version, native arch); an entry
// holds its whole key and is used only on an exact match (seccomp_cache.cc).
// cacheDir is created 0700 root; a corrupt entry is detected and rebuilt.
// An empty cacheDir disables the cache.
[[nodiscard]] Result<SeccompProgram> loadOrCompileSeccomp(const SeccompProfile& p,
							  const std::string& cacheDir);

// Child side: installs the filter. No allocation. Requires no_new_privs.
[[nodiscard]] Result<void> installSeccomp(const SeccompProgram& prog) noexcept;

} // namespace pukaipu
