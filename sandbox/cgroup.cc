#include "cgroup.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sstream>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/file_io.h"

namespace pukaipu {

namespace {

constexpr const char* kControllers[] = { "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls",
					  "blkio", "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc" };

std::vector<std::string> split(std::string_view s, char sep)
{
	std::vector<std::string> out;
	size_t a = 0;
	for (size_t b; (b = s.find(sep, a)) != std::string_view::npos; a = b + 1)
		out.emplace_back(s.substr(a, b - a));
	out.emplace_back(s.substr(a));
	return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s)
{
	std::string out;
	for (size_t i = 0; i < s.size(); i++) {
		if (s[i] == '\\' && i + 3 < s.size() && std::isdigit((unsigned char)s[i + 1])) {
			out += (char)std::stoi(s.substr(i + 1, 3), nullptr, 8);
			i += 3;
		} else {
			out += s[i];
		}
	}
	return out;
}

// The directory of cgroup `cg` (as /proc/self/cgroup names it) in a mount
// whose root is `root`.
Result<std::string> dirOf(const std::string& mountPoint, const std::string& root, const std::string& cg)
{
	if (root == "/")
		return cg == "/" ? mountPoint : mountPoint + cg;
	if (cg == root)
		return mountPoint;
	if (cg.rfind(root + "/", 0) == 0)
		return mountPoint + cg.substr(root.size());
	return fail("cgroup '%s' is not below the root '%s' of the mount on '%s'", cg.c_str(), root.c_str(),
		    mountPoint.c_str());
}

Result<void> checkPath(const std::string& path)
{
	if (path.empty() || path == "/")
		return fail("cgroup path '%s': names no cgroup of its own", path.c_str());
	for (const auto& part : split(path[0] == '/' ? path.substr(1) : path, '/'))
		if (part.empty() || part == "." || part == "..")
			return fail("cgroup path '%s': empty, '.' or '..' component", path.c_str());
	return {};
}

Result<void> checkLimits(const CgroupLimits& l)
{
	if (l.memorySwapMax && !l.memoryMax)
		return fail("memory.swap needs memory.limit (it is memory plus swap)");
	if (l.memorySwapMax && *l.memorySwapMax < *l.memoryMax)
		return fail("memory.swap %llu is below memory.limit %llu (it is memory plus swap)",
			    (unsigned long long)*l.memorySwapMax, (unsigned long long)*l.memoryMax);
	if (l.pidsMax && *l.pidsMax == 0)
		return fail("pids.limit 0: would not even allow the container's first process");
	if (l.cpuQuotaUs && !l.cpuPeriodUs)
		return fail("cpu.quota needs cpu.period");
	if (l.cpuPeriodUs && (*l.cpuPeriodUs < 1000 || *l.cpuPeriodUs > 1000000))
		return fail("cpu.period %llu: expected 1000..1000000 microseconds", (unsigned long long)*l.cpuPeriodUs);
	if (l.cpuQuotaUs && *l.cpuQuotaUs < 1000)
		return fail("cpu.quota %llu: expected at least 1000 microseconds", (unsigned long long)*l.cpuQuotaUs);
	if (l.cpuShares && (*l.cpuShares < 2 || *l.cpuShares > 262144))
		return fail("cpu.shares %llu: expected 2..262144", (unsigned long long)*l.cpuShares);
	return {};
}

std::vector<std::string> neededControllers(const CgroupLimits& l)
{
	std::vector<std::string> c;
	if (l.memoryMax || l.memorySwapMax)
		c.push_back("memory");
	if (l.pidsMax)
		c.push_back("pids");
	if (l.cpuQuotaUs || l.cpuPeriodUs || l.cpuShares)
		c.push_back("cpu");
	return c;
}

std::string num(uint64_t v)
{
	return std::to_string(v);
}

Result<void> writeFile(const std::string& file, const std::string& value)
{
	UniqueFd fd(open(file.c_str(), O_WRONLY | O_CLOEXEC));
	if (!fd)
		return failErrno(errno, "cgroup: open '%s'", file.c_str());
	if (write(fd.get(), value.data(), value.size()) != (ssize_t)value.size())
		return failErrno(errno, "cgroup: write '%s' to '%s'", value.c_str(), file.c_str());
	return {};
}

bool fileExists(const std::string& path)
{
	return access(path.c_str(), F_OK) == 0;
}

// A limit file's value: "max" (or v1's huge "unlimited") as UINT64_MAX.
std::optional<uint64_t> readLimit(const std::string& file)
{
	auto text = readFileLimited(file, 256);
	if (!text)
		return std::nullopt;
	if (text->rfind("max", 0) == 0)
		return UINT64_MAX;
	char* end = nullptr;
	errno = 0;
	long long v = std::strtoll(text->c_str(), &end, 10);
	if (errno || end == text->c_str())
		return std::nullopt;
	// v1 says "unlimited" with a huge number (PAGE_COUNTER_MAX pages).
	return v < 0 || v >= (1LL << 62) ? UINT64_MAX : (uint64_t)v;
}

struct Here {
	CgroupLayout layout;
	std::map<std::string, std::string> own;
	std::string v2Controllers;
};

Result<Here> readHere()
{
	Here h;
	TRY_CTX(mi, readFileLimited("/proc/self/mountinfo", 4 << 20), "cgroup");
	TRY_CTX(cg, readFileLimited("/proc/self/cgroup", 64 << 10), "cgroup");
	h.layout = parseCgroupMounts(*mi);
	h.own = parseProcCgroup(*cg);
	if (!h.layout.unified.empty())
		if (auto c = readFileLimited(h.layout.unified + "/cgroup.controllers", 4096))
			h.v2Controllers = *c;
	return h;
}

// Empty cgroups that a killed launcher left in `dir`: named by
// planCgroup's default ("pukaipu-NAME-PID", or "NAME-PID" below /pukaipu)
// for a PID that is no pukaipu-run any more. rmdir only removes a cgroup
// without processes or children, so a live container's is never touched.
void removeStaleSiblings(const std::string& dir)
{
	UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	DIR* d = fd ? fdopendir(fd.release()) : nullptr;
	if (!d)
		return;
	const bool underOurs = dir.size() >= 8 && dir.compare(dir.size() - 8, 8, "/pukaipu") == 0;
	while (struct dirent* e = readdir(d)) {
		const std::string n = e->d_name;
		const size_t dash = n.rfind('-');
		if (e->d_type != DT_DIR || dash == std::string::npos || dash + 1 == n.size() ||
		    n.find_first_not_of("0123456789", dash + 1) != std::string::npos ||
		    (!underOurs && n.rfind("pukaipu-", 0) != 0))
			continue;
		char exe[4096];
		const std::string link = "/proc/" + n.substr(dash + 1) + "/exe";
		const ssize_t len = readlink(link.c_str(), exe, sizeof(exe) - 1);
		if (len > 0 && std::string_view(exe, (size_t)len).ends_with("/pukaipu-run"))
			continue;
		(void)unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
	}
	closedir(d);
}

} // namespace

CgroupLayout parseCgroupMounts(std::string_view mountinfo)
{
	CgroupLayout l;
	for (const auto& line : split(mountinfo, '\n')) {
		auto f = split(line, ' ');
		auto dash = std::find(f.begin(), f.end(), "-");
		if (f.size() < 6 || dash == f.end() || f.end() - dash < 4)
			continue;
		const std::string root = unescape(f[3]), point = unescape(f[4]);
		const std::string& type = dash[1];
		if (type == "cgroup2") {
			if (l.unified.empty())
				l.unified = point, l.unifiedRoot = root;
		} else if (type == "cgroup") {
			for (const auto& opt : split(dash[3], ','))
				if (std::find(std::begin(kControllers), std::end(kControllers), opt) != std::end(kControllers))
					l.v1.try_emplace(opt, CgroupLayout::V1 { point, root });
		}
	}
	return l;
}

std::map<std::string, std::string> parseProcCgroup(std::string_view text)
{
	std::map<std::string, std::string> out;
	for (const auto& line : split(text, '\n')) {
		auto a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
		if (b == std::string::npos)
			continue;
		const std::string ctrls = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
		if (line.substr(0, a) == "0" && ctrls.empty())
			out[""] = path;
		else
			for (const auto& c : split(ctrls, ','))
				out[c] = path;
	}
	return out;
}

Result<CgroupPlan> planCgroup(const CgroupLayout& layout, const std::map<std::string, std::string>& own,
			      const std::string& v2Controllers, const CgroupLimits& limits, const std::string& path,
			      const std::string& name, bool (*hasFile)(const std::string&))
{
	CgroupPlan p;
	TRYV(checkLimits(limits));
	const auto need = neededControllers(limits);
	if (need.empty())
		return p;
	const auto v2Has = split(v2Controllers.substr(0, v2Controllers.find('\n')), ' ');
	auto inV1 = [&](const std::string& c) { return layout.v1.count(c) > 0; };
	auto inV2 = [&](const std::string& c) {
		return !layout.unified.empty() && std::find(v2Has.begin(), v2Has.end(), c) != v2Has.end();
	};
	if (std::all_of(need.begin(), need.end(), inV1))
		p.v2 = false;
	else if (std::all_of(need.begin(), need.end(), inV2))
		p.v2 = true;
	else {
		for (const auto& c : need)
			if (!inV1(c) && !inV2(c))
				return fail("cannot enforce the %s limit: this host has no '%s' cgroup controller "
					    "(no cgroup v1 hierarchy, and not in cgroup2's cgroup.controllers)",
					    c.c_str(), c.c_str());
		for (const auto& c : need)
			if (!inV1(c))
				return fail("cannot enforce the limits together: the '%s' controller is on cgroup v2, "
					    "others on v1", c.c_str());
	}
	const std::string where = !path.empty() ? path : p.v2 ? "/pukaipu/" + name : "pukaipu-" + name;
	TRYV(checkPath(where));
	const bool absolute = where[0] == '/';
	const std::string rel = absolute ? where : "/" + where;

	// The directory `where` is relative to, and the leaf, for one hierarchy.
	auto place = [&](const std::string& point, const std::string& root, const std::string& key)
		-> Result<std::pair<std::string, std::string>> {
		auto it = own.find(key);
		if (it == own.end())
			return fail("cannot place the cgroup: /proc/self/cgroup has no line for '%s'",
				    key.empty() ? "cgroup2" : key.c_str());
		TRY(ownDir, dirOf(point, root, it->second));
		if (!p.v2)
			p.ownCgroups.push_back(*ownDir + "/cgroup.procs");
		std::string base = absolute ? point : *ownDir;
		return std::make_pair(base, base + rel);
	};
	auto parentsOf = [&](const std::string& base, const std::string& leaf) {
		std::vector<std::string> dirs;
		for (size_t at = leaf.find('/', base.size() + 1); at != std::string::npos; at = leaf.find('/', at + 1))
			dirs.push_back(leaf.substr(0, at));
		return dirs;
	};
	auto write = [&](const std::string& leaf, const char* file, const std::string& v) {
		p.writes.emplace_back(leaf + "/" + file, v);
	};
	if (p.v2) {
		TRY(bl, place(layout.unified, layout.unifiedRoot, ""));
		const auto& [base, leaf] = *bl;
		std::string ctrls;
		for (const auto& c : need)
			ctrls += (ctrls.empty() ? "+" : " +") + c;
		p.enable.emplace_back(base, ctrls);
		for (const auto& d : parentsOf(base, leaf)) {
			p.makeParents.push_back(d);
			p.enable.emplace_back(d, ctrls);
		}
		p.leaves.push_back(leaf);
		if (limits.memoryMax)
			write(leaf, "memory.max", num(*limits.memoryMax));
		if (limits.memorySwapMax)
			write(leaf, "memory.swap.max", num(*limits.memorySwapMax - *limits.memoryMax));
		if (limits.pidsMax)
			write(leaf, "pids.max", num(*limits.pidsMax));
		if (limits.cpuQuotaUs || limits.cpuPeriodUs)
			write(leaf, "cpu.max", (limits.cpuQuotaUs ? num(*limits.cpuQuotaUs) : "max") + " " +
						       num(*limits.cpuPeriodUs));
		if (limits.cpuShares) // runc's conversion of shares [2, 262144] to weight [1, 10000]
			write(leaf, "cpu.weight", num(1 + ((*limits.cpuShares - 2) * 9999) / 262142));
		return p;
	}
	for (const auto& c : need) {
		const auto& h = layout.v1.at(c);
		TRY(bl, place(h.mountPoint, h.root, c));
		const auto& [base, leaf] = *bl;
		if (std::find(p.leaves.begin(), p.leaves.end(), leaf) == p.leaves.end()) {
			for (const auto& d : parentsOf(base, leaf))
				p.makeParents.push_back(d);
			p.leaves.push_back(leaf);
		}
		auto needFile = [&](const char* file, const char* what) -> Result<void> {
			if (!hasFile(base + "/" + file))
				return fail("cannot enforce %s: no %s in '%s'", what, file, base.c_str());
			return {};
		};
		if (c == "memory") {
			if (limits.memoryMax)
				write(leaf, "memory.limit_in_bytes", num(*limits.memoryMax));
			if (limits.memorySwapMax) {
				TRYV(needFile("memory.memsw.limit_in_bytes", "memory.swap (swap accounting is off)"));
				write(leaf, "memory.memsw.limit_in_bytes", num(*limits.memorySwapMax));
			}
		} else if (c == "pids") {
			write(leaf, "pids.max", num(*limits.pidsMax));
		} else {
			if (limits.cpuPeriodUs) {
				TRYV(needFile("cpu.cfs_period_us", "the cpu quota (no CFS bandwidth control)"));
				write(leaf, "cpu.cfs_period_us", num(*limits.cpuPeriodUs));
			}
			if (limits.cpuQuotaUs)
				write(leaf, "cpu.cfs_quota_us", num(*limits.cpuQuotaUs));
			if (limits.cpuShares) {
				TRYV(needFile("cpu.shares", "cpu.shares"));
				write(leaf, "cpu.shares", num(*limits.cpuShares));
			}
		}
	}
	return p;
}

Result<CgroupPlan> planCgroupHere(const CgroupLimits& limits, const std::string& path, const std::string& name)
{
	if (limits.empty())
		return CgroupPlan {};
	TRY(h, readHere());
	return planCgroup(h->layout, h->own, h->v2Controllers, limits, path, name, fileExists);
}

Result<void> checkOwnCgroupEnforces(const CgroupLimits& limits)
{
	TRYV(checkLimits(limits));
	TRY(h, readHere());
	// Our own cgroup's directory for controller c (v1 first, as planCgroup).
	auto ownDir = [&](const std::string& c) -> Result<std::string> {
		auto v1 = h->layout.v1.find(c);
		const bool isV1 = v1 != h->layout.v1.end();
		auto it = h->own.find(isV1 ? c : "");
		if (it == h->own.end() || (!isV1 && h->layout.unified.empty()))
			return fail("cannot check the %s limit: no '%s' cgroup controller here", c.c_str(), c.c_str());
		return isV1 ? dirOf(v1->second.mountPoint, v1->second.root, it->second)
			    : dirOf(h->layout.unified, h->layout.unifiedRoot, it->second);
	};
	auto atMost = [&](const std::string& c, const char* v1File, const char* v2File, uint64_t want,
			  const char* what) -> Result<void> {
		TRY(dir, ownDir(c));
		const bool isV1 = h->layout.v1.count(c) > 0;
		const std::string file = *dir + "/" + (isV1 ? v1File : v2File);
		auto have = readLimit(file);
		if (!have || *have > want)
			return fail("%s of %llu is not enforced: pukaipu-run's own cgroup ('%s') allows %s", what,
				    (unsigned long long)want, dir->c_str(),
				    !have ? "an unknown amount" : *have == UINT64_MAX ? "any" : num(*have).c_str());
		return {};
	};
	if (limits.memoryMax)
		TRYV(atMost("memory", "memory.limit_in_bytes", "memory.max", *limits.memoryMax, "the memory limit"));
	if (limits.pidsMax)
		TRYV(atMost("pids", "pids.max", "pids.max", *limits.pidsMax, "the task limit"));
	if (limits.cpuQuotaUs) {
		// Compared per second of wall time: quota/period.
		TRY(dir, ownDir("cpu"));
		uint64_t q = UINT64_MAX, per = 100000;
		if (h->layout.v1.count("cpu")) {
			q = readLimit(*dir + "/cpu.cfs_quota_us").value_or(UINT64_MAX);
			per = readLimit(*dir + "/cpu.cfs_period_us").value_or(100000);
		} else if (auto t = readFileLimited(*dir + "/cpu.max", 256)) {
			std::istringstream in(*t);
			std::string a, b;
			in >> a >> b;
			q = a == "max" ? UINT64_MAX : std::strtoull(a.c_str(), nullptr, 10);
			per = std::strtoull(b.c_str(), nullptr, 10);
		}
		if (q == UINT64_MAX || per == 0 || (long double)q / per > (long double)*limits.cpuQuotaUs / *limits.cpuPeriodUs)
			return fail("the cpu quota is not enforced: pukaipu-run's own cgroup ('%s') allows more", dir->c_str());
	}
	if (limits.memorySwapMax || limits.cpuShares)
		return fail("memory.swap and cpu.shares cannot be checked on pukaipu-run's own cgroup");
	return {};
}

Result<Cgroup> Cgroup::create(const CgroupPlan& plan)
{
	Cgroup cg;
	if (plan.empty())
		return cg;
	for (const auto& d : plan.makeParents)
		if (mkdir(d.c_str(), 0755) < 0 && errno != EEXIST)
			return failErrno(errno, "cgroup: create '%s'", d.c_str());
	for (const auto& leaf : plan.leaves) {
		removeStaleSiblings(leaf.substr(0, leaf.rfind('/')));
		if (mkdir(leaf.c_str(), 0755) < 0) {
			// A leaf left by a launcher that was killed: empty, so rmdir
			// works; one that still holds processes is someone else's.
			if (errno != EEXIST || rmdir(leaf.c_str()) < 0 || mkdir(leaf.c_str(), 0755) < 0)
				return failErrno(errno, "cgroup: create '%s'", leaf.c_str());
		}
		cg.plan_.leaves.push_back(leaf); // from here remove() undoes it
	}
	cg.plan_ = plan;
	for (const auto& [dir, ctrls] : plan.enable) {
		auto r = writeFile(dir + "/cgroup.subtree_control", ctrls);
		if (!r && r.error().errno_ == EBUSY)
			return fail("cgroup v2: cannot enable %s below '%s': it holds processes (the "
				    "no-internal-process rule); use an absolute cgroup path", ctrls.c_str(), dir.c_str());
		TRYV(r);
	}
	for (const auto& [file, value] : plan.writes)
		TRYV(writeFile(file, value));
	if (plan.v2) {
		cg.leafFd_ = UniqueFd(open(plan.leaves[0].c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		if (!cg.leafFd_)
			return failErrno(errno, "cgroup: open '%s'", plan.leaves[0].c_str());
	}
	return cg;
}

Result<void> Cgroup::enterSelf() const
{
	if (plan_.v2)
		return {};
	for (const auto& leaf : plan_.leaves)
		TRYV(writeFile(leaf + "/cgroup.procs", "0"));
	return {};
}

Result<void> Cgroup::leaveSelf() const
{
	if (plan_.v2)
		return {};
	for (const auto& procs : plan_.ownCgroups)
		TRYV(writeFile(procs, "0"));
	return {};
}

Result<void> removeCgroupLeaves(std::vector<std::string>& leaves, int waitMs)
{
	for (int waited = 0; !leaves.empty();) {
		const std::string& leaf = leaves.back();
		if (rmdir(leaf.c_str()) == 0 || errno == ENOENT) {
			leaves.pop_back();
			continue;
		}
		if (errno != EBUSY || waited >= waitMs)
			return failErrno(errno, "cgroup: remove '%s'", leaf.c_str());
		struct timespec ts { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, nullptr);
		waited += 10;
	}
	return {};
}

Result<void> Cgroup::remove(int waitMs)
{
	leafFd_.reset();
	TRYV(removeCgroupLeaves(plan_.leaves, waitMs));
	plan_ = CgroupPlan {};
	return {};
}

std::vector<std::string> Cgroup::release()
{
	leafFd_.reset();
	std::vector<std::string> leaves = std::move(plan_.leaves);
	plan_ = CgroupPlan {};
	return leaves;
}

} // namespace pukaipu
