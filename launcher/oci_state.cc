#include "oci_state.h"

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/file_io.h"
#include "base/json_fields.h"
#include "base/sysutil.h"

namespace pukaipu::oci {

using nlohmann::json;

const char* statusName(Status s)
{
	switch (s) {
	case Status::Creating: return "creating";
	case Status::Created: return "created";
	case Status::Running: return "running";
	case Status::Stopped: return "stopped";
	}
	return "unknown";
}

Result<void> checkId(const std::string& id)
{
	if (id.empty())
		return fail("container id: empty");
	if (id.size() > 1024)
		return fail("container id: longer than 1024 characters");
	if (id == "." || id == "..")
		return fail("container id '%s': not allowed", id.c_str());
	for (char c : id) {
		const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
				c == '_' || c == '.' || c == '+' || c == '-';
		if (!ok)
			return fail("container id '%s': only letters, digits and _.+- are allowed", id.c_str());
	}
	return {};
}

std::optional<std::string> liveStartTime(pid_t pid)
{
	if (pid <= 0)
		return std::nullopt;
	auto stat = readFileLimited("/proc/" + std::to_string(pid) + "/stat", 4096);
	if (!stat)
		return std::nullopt;
	// "PID (COMM) STATE ..." where COMM may hold spaces and parentheses.
	auto close = stat->rfind(')');
	if (close == std::string::npos)
		return std::nullopt;
	std::vector<std::string> f;
	size_t i = close + 2;
	while (i < stat->size()) {
		size_t j = stat->find(' ', i);
		if (j == std::string::npos)
			j = stat->size();
		f.push_back(stat->substr(i, j - i));
		i = j + 1;
	}
	// f[0] is field 3 (state), so field 22 is f[19].
	if (f.size() < 20 || f[0] == "Z" || f[0] == "X")
		return std::nullopt;
	return f[19];
}

Result<void> Store::claim(const std::string& id)
{
	TRYV(checkId(id));
	// Engines name a root below directories that may not exist yet
	// (containerd: /run/containerd/runc/NAMESPACE); runc makes them too.
	if (auto slash = root_.rfind('/'); slash != std::string::npos && slash > 0)
		TRYV_CTX(makeDirs(root_.substr(0, slash), 0711), "--root");
	TRYV_CTX(ensureRootDir(root_, 0700), "--root");
	if (mkdir(dir(id).c_str(), 0700) < 0) {
		if (errno == EEXIST)
			return fail("container '%s' already exists", id.c_str());
		return failErrno(errno, "mkdir '%s'", dir(id).c_str());
	}
	return {};
}

Result<void> Store::makeFifo(const std::string& id)
{
	// 0622: the container's user, whoever it is, can open it for writing
	// through the fd it holds (its directory stays 0700 root).
	if (mkfifo(fifo(id).c_str(), 0622) < 0)
		return failErrno(errno, "mkfifo '%s'", fifo(id).c_str());
	if (chmod(fifo(id).c_str(), 0622) < 0) // whatever the umask
		return failErrno(errno, "chmod '%s'", fifo(id).c_str());
	return {};
}

Result<UniqueFd> Store::lock(const std::string& id) const
{
	TRYV(checkId(id));
	UniqueFd fd(open(dir(id).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (!fd) {
		if (errno == ENOENT)
			return fail("container '%s' does not exist", id.c_str());
		return failErrno(errno, "open '%s'", dir(id).c_str());
	}
	int r;
	do
		r = flock(fd.get(), LOCK_EX);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return failErrno(errno, "lock '%s'", dir(id).c_str());
	return fd;
}

Result<void> Store::write(const Record& r) const
{
	json j = { { "id", r.id }, { "pid", r.pid }, { "pidStart", r.pidStart }, { "bundle", r.bundle },
		   { "rootfs", r.rootfs }, { "created", r.created }, { "annotations", r.annotations },
		   { "cgroups", r.cgroups } };
	return writeFileAtomic(dir(r.id) + "/state.json", j.dump() + "\n", 0600);
}

Result<Record> Store::read(const std::string& id) const
{
	TRYV(checkId(id));
	const std::string path = dir(id) + "/state.json";
	struct stat st;
	if (stat(dir(id).c_str(), &st) < 0 && errno == ENOENT)
		return fail("container '%s' does not exist", id.c_str());
	TRY(j, jsonf::readFile(path));
	Record r;
	static const json kNull;
	auto at = [&](const char* k) -> const json& { return j->contains(k) ? (*j)[k] : kNull; };
	TRY(rid, jsonf::getString(at("id"), path + ": id"));
	TRY(pid, jsonf::getU32(at("pid"), path + ": pid"));
	TRY(start, jsonf::getString(at("pidStart"), path + ": pidStart"));
	TRY(bundle, jsonf::getString(at("bundle"), path + ": bundle"));
	TRY(rootfs, jsonf::getString(at("rootfs"), path + ": rootfs"));
	TRY(created, jsonf::getString(at("created"), path + ": created"));
	if (*rid != id)
		return fail("%s: names container '%s'", path.c_str(), rid->c_str());
	r.id = *rid;
	r.pid = (pid_t)*pid;
	r.pidStart = *start;
	r.bundle = *bundle;
	r.rootfs = *rootfs;
	r.created = *created;
	if (j->contains("cgroups")) {
		TRY(cgroups, jsonf::getStrings((*j)["cgroups"], path + ": cgroups"));
		r.cgroups = *cgroups;
	}
	if (j->contains("annotations") && (*j)["annotations"].is_object())
		for (const auto& [k, v] : (*j)["annotations"].items())
			if (v.is_string())
				r.annotations[k] = v.get<std::string>();
	return r;
}

Status Store::status(const Record& r) const
{
	auto start = liveStartTime(r.pid);
	if (!start || *start != r.pidStart)
		return Status::Stopped;
	struct stat st;
	if (lstat(fifo(r.id).c_str(), &st) == 0)
		return Status::Created;
	return Status::Running;
}

Result<void> Store::remove(const std::string& id) const
{
	TRYV(checkId(id));
	for (const char* name : { "/exec.fifo", "/state.json" })
		if (unlink((dir(id) + name).c_str()) < 0 && errno != ENOENT)
			return failErrno(errno, "remove '%s%s'", dir(id).c_str(), name);
	if (rmdir(dir(id).c_str()) < 0 && errno != ENOENT)
		return failErrno(errno, "remove '%s'", dir(id).c_str());
	return {};
}

Result<std::vector<std::string>> Store::ids() const
{
	std::vector<std::string> out;
	DIR* d = opendir(root_.c_str());
	if (!d) {
		if (errno == ENOENT)
			return out;
		return failErrno(errno, "open '%s'", root_.c_str());
	}
	while (auto* e = readdir(d)) {
		std::string n = e->d_name;
		if (n != "." && n != ".." && checkId(n))
			out.push_back(n);
	}
	closedir(d);
	std::sort(out.begin(), out.end());
	return out;
}

Result<int> parseSignal(const std::string& in)
{
	if (in.empty())
		return fail("signal: empty");
	if (std::all_of(in.begin(), in.end(), [](char c) { return c >= '0' && c <= '9'; })) {
		if (in.size() > 2 || std::stoi(in) < 1 || std::stoi(in) >= NSIG)
			return fail("signal '%s': expected 1..%d", in.c_str(), NSIG - 1);
		return std::stoi(in);
	}
	std::string name;
	for (char c : in)
		name += (char)std::toupper((unsigned char)c);
	if (name.rfind("SIG", 0) == 0)
		name = name.substr(3);
	for (int s = 1; s < SIGRTMIN; s++) {
		const char* abbrev = sigabbrev_np(s);
		if (abbrev && name == abbrev)
			return s;
	}
	return fail("signal '%s': unknown", in.c_str());
}

std::string stateJson(const Record& r, Status s)
{
	json j = { { "ociVersion", "1.0.2" }, { "id", r.id }, { "status", statusName(s) },
		   { "pid", s == Status::Stopped ? 0 : r.pid }, { "bundle", r.bundle },
		   { "rootfs", r.rootfs }, { "created", r.created }, { "owner", "root" } };
	j["annotations"] = r.annotations;
	return j.dump(2);
}

} // namespace pukaipu::oci
