#include "dropins.h"

#include <cerrno>
#include <cmath>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/file_io.h"
#include "build_config.h"
#include "base/json_fields.h"
#include "base/process.h"
#include "base/sysutil.h"

namespace pukaipu::units {

namespace {

constexpr const char* kHeader =
	"# Written by pukaipu (pukaipu create / pukaipu set) from the instance's\n"
	"# instance.json; it is rewritten on every change. Change it with\n"
	"# `pukaipu set`, or override it in a drop-in that sorts after this one.\n";

std::string dropInDir(const Paths& p, const std::string& unit)
{
	return p.systemdDir + "/" + unit + ".d";
}

Result<void> ensureDir(const std::string& path)
{
	// Parents too: a host without systemd yet has no /etc/systemd/system.
	TRYV(makeDirs(path, 0755));
	struct stat st;
	if (lstat(path.c_str(), &st) < 0)
		return failErrno(errno, "stat '%s'", path.c_str());
	if (!S_ISDIR(st.st_mode))
		return fail("'%s' is not a directory", path.c_str());
	return {};
}

Result<void> writeOrRemove(const std::string& dir, const std::string& name, const std::string& content)
{
	const std::string path = dir + "/" + name;
	if (content.empty()) {
		if (unlink(path.c_str()) < 0 && errno != ENOENT)
			return failErrno(errno, "remove '%s'", path.c_str());
		if (rmdir(dir.c_str()) < 0 && errno != ENOENT && errno != ENOTEMPTY && errno != EEXIST)
			return failErrno(errno, "remove '%s'", dir.c_str());
		return {};
	}
	TRYV(ensureDir(dir));
	return writeFileAtomic(path, content, 0644);
}

// Runs systemctl ARGS with stdout/stderr captured; returns the exit status
// (or -1 when it could not run) and fills `out` with what it printed.
int systemctl(const std::vector<std::string>& args, std::string& out)
{
	std::vector<std::string> argv { "systemctl" };
	argv.insert(argv.end(), args.begin(), args.end());
	auto r = runProgram(argv, true);
	if (!r)
		return -1;
	out = std::move(r->output);
	return r->status;
}

} // namespace

std::string serviceName(const std::string& user)
{
	return "pukaipu@" + user + ".service";
}

std::string socketName(const std::string& user)
{
	return "pukaipu@" + user + ".socket";
}

std::string renderLimitsDropIn(const GlobalConfig& g, const InstanceConfig& inst)
{
	// The limits that apply, global defaults included: pukaipu-run checks
	// that its unit's cgroup enforces them (instance.cc, limitsFromOwnCgroup).
	const Limits l = effectiveLimits(g, inst);
	if (l.empty())
		return "";
	std::string s = std::string(kHeader) + "[Service]\n";
	if (!l.memory.empty())
		s += "MemoryMax=" + l.memory + "\n";
	if (l.cpus > 0)
		s += "CPUQuota=" + std::to_string(std::max<long long>(1, std::llround(l.cpus * 100))) + "%\n";
	if (l.tasks > 0)
		s += "TasksMax=" + std::to_string(l.tasks) + "\n";
	return s;
}

Result<void> writeDropIns(const Paths& p, const GlobalConfig& g, const InstanceConfig& inst)
{
	TRYV(ensureDir(p.systemdDir));
	// A TCP ListenStream= from an earlier version would replace the
	// template's Unix socket, and pukaipu-run refuses a TCP socket.
	TRYV(writeOrRemove(dropInDir(p, socketName(inst.user)), kOldListenDropIn, ""));
	TRYV(writeOrRemove(dropInDir(p, serviceName(inst.user)), kLimitsDropIn, renderLimitsDropIn(g, inst)));
	return {};
}

Result<void> removeDropIns(const Paths& p, const std::string& user)
{
	TRYV(writeOrRemove(dropInDir(p, socketName(user)), kOldListenDropIn, ""));
	TRYV(writeOrRemove(dropInDir(p, serviceName(user)), kLimitsDropIn, ""));
	return {};
}

bool systemdRunning()
{
	struct stat st;
	return lstat("/run/systemd/system", &st) == 0 && S_ISDIR(st.st_mode);
}

bool manageSystemd(const Paths& p)
{
	return p.systemdDirIsDefault && systemdRunning();
}

Result<void> systemctlRun(const std::vector<std::string>& args)
{
	std::string out, cmd;
	for (const auto& a : args)
		cmd += (cmd.empty() ? "" : " ") + a;
	if (systemctl(args, out) != 0) {
		while (!out.empty() && out.back() == '\n')
			out.pop_back();
		return fail("systemctl %s failed%s%s", cmd.c_str(), out.empty() ? "" : ": ", out.c_str());
	}
	return {};
}

Result<void> daemonReload()
{
	return systemctlRun({ "daemon-reload" });
}

bool manageFrontUnit(const Paths& p)
{
	return systemdRunning() && p.frontDir == std::string(PUKAIPU_SYSCONFDIR) + "/front";
}

bool unitActive(const std::string& unit)
{
	std::string out;
	return systemctl({ "is-active", "--quiet", unit }, out) == 0;
}

std::vector<std::string> busyUnits(const std::string& user)
{
	std::vector<std::string> busy;
	for (const auto& unit : { socketName(user), serviceName(user) }) {
		std::string out;
		if (systemctl({ "is-active", "--quiet", unit }, out) == 0)
			busy.push_back(unit + " (active)");
		else if (out.clear(), systemctl({ "is-enabled", unit }, out) == 0 &&
			 (out == "enabled" || out == "enabled-runtime"))
			busy.push_back(unit + " (enabled)");
	}
	return busy;
}

} // namespace pukaipu::units
