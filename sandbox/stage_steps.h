// stage_steps: the small steps of a container's start (stages.cc says when
// each one runs, and why).
#pragma once

#include <string>
#include <sys/types.h>

#include "base/error.h"
#include "spec.h"

namespace pukaipu {

// Parent: one write() of DATA to /proc/PID/NAME (id maps need one write).
[[nodiscard]] Result<void> writeProcFile(pid_t pid, const char* name, const std::string& data);
// Parent, before clone3: only one thread may exist.
[[nodiscard]] Result<void> assertSingleThreaded();

// Child: loopback up.
[[nodiscard]] Result<void> loopbackUp() noexcept;
// Child: finds args[0] on the spec's PATH and execs it. Returns only on
// failure, with the errno that explains best.
[[nodiscard]] int execPayload(const Spec& s, char* const* argv, char* const* envp) noexcept;
// Child, OCI create: tells the parent (AtGate over SYNC), then waits until
// `start` opens the exec fifo whose O_PATH fd is GATEFD.
[[nodiscard]] Result<void> waitAtStartGate(int sync, int gateFd) noexcept;

} // namespace pukaipu
