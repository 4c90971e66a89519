// caps: the child's last privileged act is to give up every capability.
#pragma once

#include "base/error.h"

namespace pukaipu {

// Clears effective, permitted, inheritable, bounding and ambient sets with
// libcap-ng, then re-reads them from the kernel and aborts if any bit is left
// (a drop that silently failed must never reach execve).
[[nodiscard]] Result<void> dropAllCapabilities() noexcept;

// True if the calling thread still has any capability in any set.
[[nodiscard]] bool hasAnyCapability() noexcept;

} // namespace pukaipu
