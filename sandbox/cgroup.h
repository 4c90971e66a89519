// cgroup: a container's memory, task and CPU limits, in a cgroup of its own.
//
// One module for every caller: `pukaipu-run USER` (an instance's limits when
// its systemd unit does not apply them), `--bundle DIR` (the spec's
// linux.resources) and, later, the OCI runtime modes (linux.cgroupsPath).
//
// Where the controllers live is read from /proc/self/mountinfo, as runc
// does: a controller that has a cgroup v1 hierarchy of its own (a hybrid
// host such as this project's test machine) is used there; otherwise it
// must be in cgroup2's cgroup.controllers (a unified host, Debian 12's
// default). One container uses one version: a mix is refused. A limit that
// was asked for and has no controller, no file, or cannot be written is an
// error, never ignored.
//
// The life of a container's cgroup (sandbox/stages.cc runs the steps):
//   planCgroup (prepare, pure)   where, which files, which values
//   Cgroup::create (run)         mkdir, controllers enabled (v2), limits written
//   clone3                       the child is born inside: CLONE_INTO_CGROUP
//                                (v2), or the parent enters first and leaves
//                                after (v1), so the child runs no instruction
//                                and makes no cgroup namespace outside it
//   Cgroup::remove               after the container is gone: rmdir, no leak
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"

namespace pukaipu {

// What to enforce; unset = no limit of that kind (and no controller needed).
struct CgroupLimits {
	std::optional<uint64_t> memoryMax;     // bytes
	std::optional<uint64_t> memorySwapMax; // memory + swap, bytes (OCI memory.swap), >= memoryMax
	std::optional<uint64_t> pidsMax;       // tasks (processes and threads)
	std::optional<uint64_t> cpuQuotaUs;    // CPU time per period; needs cpuPeriodUs
	std::optional<uint64_t> cpuPeriodUs;   // 1000 .. 1000000
	std::optional<uint64_t> cpuShares;     // v1 cpu.shares 2..262144 (v2: converted to cpu.weight)
	bool empty() const
	{
		return !memoryMax && !memorySwapMax && !pidsMax && !cpuQuotaUs && !cpuPeriodUs && !cpuShares;
	}
	friend bool operator==(const CgroupLimits&, const CgroupLimits&) = default;
};

// The cgroup file systems this process sees. Pure data, from mountinfo.
struct CgroupLayout {
	std::string unified;     // cgroup2 mount point; empty: none
	std::string unifiedRoot; // the cgroup that mount shows as its root ("/" outside a cgroup namespace)
	struct V1 {
		std::string mountPoint;
		std::string root;
	};
	std::map<std::string, V1> v1; // controller ("memory", "pids", "cpu", ...) → its hierarchy
};

// Parses /proc/self/mountinfo text. Pure.
[[nodiscard]] CgroupLayout parseCgroupMounts(std::string_view mountinfo);
// Parses /proc/self/cgroup text: controller → path; the v2 line ("0::/x")
// under the key "". A v1 line for "cpu,cpuacct" gives both names. Pure.
[[nodiscard]] std::map<std::string, std::string> parseProcCgroup(std::string_view text);

// What Cgroup::create does, decided in prepare(). Paths are absolute host paths.
struct CgroupPlan {
	bool v2 = false;
	std::vector<std::string> leaves; // the container's cgroup: one (v2) or one per v1 hierarchy
	// v2: directories above the leaf, top down, each with the controllers to
	// enable in its cgroup.subtree_control ("+memory +pids").
	std::vector<std::pair<std::string, std::string>> enable;
	std::vector<std::string> makeParents; // directories made on the way (kept: shared)
	std::vector<std::pair<std::string, std::string>> writes; // file, value, in this order
	std::vector<std::string> ownCgroups; // v1: the cgroup.procs the parent returns to
	bool empty() const { return leaves.empty(); }
};

// Pure: the plan for `limits` in cgroup `path`. A relative path is below
// this process's own cgroup (per hierarchy in v1), an absolute one below the
// hierarchy's root (runc's rule). An empty path: "pukaipu-NAME" below our own
// cgroup in v1; in v2 "/pukaipu/NAME" (v2's no-internal-process rule: our
// own cgroup holds us, so no controller can be enabled below it).
// `v2Controllers` is the root's cgroup.controllers; `hasFile` tells whether a
// file that a limit needs exists (memsw, swap.max), so the plan stays pure.
[[nodiscard]] Result<CgroupPlan> planCgroup(const CgroupLayout& layout, const std::map<std::string, std::string>& own,
					    const std::string& v2Controllers, const CgroupLimits& limits,
					    const std::string& path, const std::string& name,
					    bool (*hasFile)(const std::string& path));

// The same, reading this host's /proc/self/mountinfo, /proc/self/cgroup and
// cgroup.controllers. Empty limits: an empty plan (no cgroup at all).
[[nodiscard]] Result<CgroupPlan> planCgroupHere(const CgroupLimits& limits, const std::string& path,
						const std::string& name);

// Checks that this process's own cgroup already enforces `limits` (at most
// as much as asked): for a launcher that its service manager put in a
// cgroup with the limits (pukaipu@USER.service with its drop-in).
[[nodiscard]] Result<void> checkOwnCgroupEnforces(const CgroupLimits& limits);

// rmdir LEAVES, last first; waits up to `waitMs` for the kernel to let go
// of the last exited tasks (EBUSY). Removes each from LEAVES once gone.
[[nodiscard]] Result<void> removeCgroupLeaves(std::vector<std::string>& leaves, int waitMs);

class Cgroup {
public:
	Cgroup() = default;
	// mkdir (parents kept, an empty stale leaf replaced, and the empty
	// leaves of launchers that were killed removed), controllers enabled,
	// limits written. On failure nothing is left.
	[[nodiscard]] static Result<Cgroup> create(const CgroupPlan& plan);
	Cgroup(Cgroup&&) = default;
	Cgroup& operator=(Cgroup&&) = default;
	~Cgroup() { (void)remove(0); }

	// v2: the leaf for clone3's CLONE_INTO_CGROUP; -1 in v1 or without a cgroup.
	int cloneFd() const { return plan_.v2 ? leafFd_.get() : -1; }
	// v1: move this (single-threaded) process into the leaves before clone3,
	// and back to its own cgroups right after. No-ops otherwise.
	[[nodiscard]] Result<void> enterSelf() const;
	[[nodiscard]] Result<void> leaveSelf() const;
	// rmdir the leaves; waits up to `waitMs` for the kernel to let go of
	// the last exited tasks (EBUSY). Idempotent.
	[[nodiscard]] Result<void> remove(int waitMs = 2000);
	bool active() const { return !plan_.empty(); }
	// OCI create: the container outlives this object. Returns the leaves
	// (for the record; removeCgroupLeaves at delete) and forgets them.
	[[nodiscard]] std::vector<std::string> release();

private:
	CgroupPlan plan_;
	UniqueFd leafFd_;
};

} // namespace pukaipu
