// oci_state: what pukaipu-run keeps about a container between the calls of
// an OCI engine (create, start, state, kill, delete), under --root.
//
//   ROOT/                 0700 root (default /run/pukaipu-run)
//   ROOT/ID/              0700; made with mkdir, so two creates of one ID
//                         cannot both win
//   ROOT/ID/state.json    the record (atomic writes): pid, its start time,
//                         bundle, created, annotations
//   ROOT/ID/exec.fifo     0622 while the container is "created": the
//                         payload waits to open it for writing, `start`
//                         opens it for reading
//
// The status is never stored: it is read from /proc each time. A pid whose
// start time differs from the record's is another process: "stopped".
#pragma once

#include <csignal>
#include <map>
#include <optional>
#include <string>
#include <vector>
#include <sys/types.h>

#include "base/error.h"
#include "base/unique_fd.h"

namespace pukaipu::oci {

inline constexpr const char* kDefaultRoot = "/run/pukaipu-run";

struct Record {
	std::string id;
	pid_t pid = 0;                 // the container's init, a host pid
	std::string pidStart;          // field 22 of /proc/PID/stat when it was recorded
	std::string bundle;            // absolute
	std::string rootfs;            // the spec's root.path, absolute
	std::string created;           // RFC 3339
	std::map<std::string, std::string> annotations;
	std::vector<std::string> cgroups; // the container's cgroup leaves, removed by delete
};

enum class Status { Creating, Created, Running, Stopped };
[[nodiscard]] const char* statusName(Status s);

// Container ids: 1-1024 characters of [A-Za-z0-9_.+-], not "." or "..".
[[nodiscard]] Result<void> checkId(const std::string& id);

// The start time of PID (field 22 of /proc/PID/stat); nullopt when it is
// gone or a zombie (a zombie has stopped, whoever has yet to reap it).
[[nodiscard]] std::optional<std::string> liveStartTime(pid_t pid);

class Store {
public:
	explicit Store(std::string root) : root_(std::move(root)) {}
	const std::string& root() const { return root_; }
	std::string dir(const std::string& id) const { return root_ + "/" + id; }
	std::string fifo(const std::string& id) const { return dir(id) + "/exec.fifo"; }

	// create: ROOT (made 0700 if missing, refused if others can change it)
	// and ROOT/ID, which must not exist yet. Then the exec fifo.
	[[nodiscard]] Result<void> claim(const std::string& id);
	[[nodiscard]] Result<void> makeFifo(const std::string& id);
	// An exclusive flock on ROOT/ID for one command; the fd holds it.
	[[nodiscard]] Result<UniqueFd> lock(const std::string& id) const;
	[[nodiscard]] Result<void> write(const Record& r) const;
	// "container 'ID' does not exist" when it does not.
	[[nodiscard]] Result<Record> read(const std::string& id) const;
	[[nodiscard]] Status status(const Record& r) const;
	// Removes ROOT/ID and what is in it (the fifo, the record).
	[[nodiscard]] Result<void> remove(const std::string& id) const;
	[[nodiscard]] Result<std::vector<std::string>> ids() const;

private:
	std::string root_;
};

// "TERM", "SIGTERM", "15", "term": the signal number; an error names the input.
[[nodiscard]] Result<int> parseSignal(const std::string& s);

// The OCI state document (`state ID`): ociVersion, id, status, pid, bundle,
// annotations, plus created, as runc prints it.
[[nodiscard]] std::string stateJson(const Record& r, Status s);

} // namespace pukaipu::oci
