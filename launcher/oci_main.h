// oci_main: pukaipu-run as an OCI runtime, with the command line that
// podman (through conmon) and containerd's runc shim (go-runc) call:
//
//   pukaipu-run [--root DIR] [--log FILE] [--log-format text|json]
//               [--systemd-cgroup] [--debug] COMMAND ...
//   create [--bundle DIR] [--pid-file F] [--console-socket S]
//          [--preserve-fds N] [--no-new-keyring] ID
//   start ID | state ID | kill [--all] ID [SIGNAL] | delete [--force] ID
//   run [--bundle DIR] [--pid-file F] [--console-socket S] [--detach]
//       [--preserve-fds N] [--no-new-keyring] ID
//   list [--format table|json] [-q] | features
//
// The container never runs as host root: the same spec rules, prepare()
// and run() as `pukaipu-run --bundle`. See pukaipu-run(8), OCI RUNTIME.
#pragma once

namespace pukaipu::oci {

// The runtime's command words. `pukaipu-run NAME` with one of them is the
// runtime, so `pukaipu create` refuses them as instance names.
inline constexpr const char* kCommands[] = { "create", "start", "state", "kill", "delete", "run",
					     "list", "features", "exec", "ps", "pause", "resume",
					     "update", "events", "checkpoint", "restore", "spec" };

// True when argv names a runtime command (create, start, ...) as its first
// word that is not an option or an option's value; `pukaipu-run USER` and
// `pukaipu-run --bundle DIR` are not.
[[nodiscard]] bool isRuntimeInvocation(int argc, char** argv);

// Runs it. Errors: one line on stderr, and in --log in --log-format; exit 1.
[[nodiscard]] int runtimeMain(int argc, char** argv);

} // namespace pukaipu::oci
