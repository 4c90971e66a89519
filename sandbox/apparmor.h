// apparmor: policy check in the parent, aa_change_onexec in the child.
#pragma once

#include <string>

#include "base/error.h"

namespace pukaipu {

enum class AppArmorPolicy {
	Required, // refuse to start unless AppArmor is enabled and the profile loaded
	Optional, // warn once and run unconfined
};

// Parent, before clone3. Returns whether the child should call
// aa_change_onexec(profile); `warning` is set for the Optional fallback.
[[nodiscard]] Result<bool> checkAppArmor(const std::string& profile, AppArmorPolicy policy,
					 std::string& warning);

// Child: confine the next execve with `profile`.
[[nodiscard]] Result<void> changeProfileOnExec(const char* profile) noexcept;

// Parses "required" / "optional".
[[nodiscard]] Result<AppArmorPolicy> parseAppArmorPolicy(const std::string& s);

} // namespace pukaipu
