#include "front.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <map>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/file_io.h"
#include "base/net_literal.h"
#include "base/process.h"
#include "certs/certs.h"
#include "listen.h"
#include "names.h"
#include "provision.h"
#include "systemd/dropins.h"

namespace pukaipu::front {

namespace {

std::string pidFile(const Paths& p)
{
	return p.runDir + "/front.pid";
}

std::string logFile(const Paths& p)
{
	return p.runDir + "/front.log";
}

// Starts the master-worker HAProxy detached from us: its own session,
// stdin /dev/null, stdout and stderr appended to RUN_DIR/front.log (the
// configuration logs to stdout), pid in RUN_DIR/front.pid.
Result<pid_t> start(const Paths& p)
{
	TRYV(ensureRootDir(p.runDir, 0755));
	unlink(pidFile(p).c_str());
	UniqueFd log(open(logFile(p).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640));
	if (!log)
		return failErrno(errno, "open '%s'", logFile(p).c_str());
	UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
	if (!null)
		return failErrno(errno, "open /dev/null");
	const std::string cfg = p.frontDir + "/haproxy.cfg", pid = pidFile(p), haproxy = haproxyBinary();
	if (access(haproxy.c_str(), X_OK) < 0)
		return fail("haproxy not found at %s: install Debian's haproxy package", haproxy.c_str());
	// Where this start's lines begin in the log: a failure quotes them.
	struct stat logSt;
	const off_t logStart = fstat(log.get(), &logSt) == 0 ? logSt.st_size : 0;
	// The master CLI: root only (mode 600), in RUN_DIR, which no sandbox sees.
	const std::string cli = masterSocket(p) + ",mode,600";
	pid_t child = fork();
	if (child < 0)
		return failErrno(errno, "fork");
	if (child == 0) {
		setsid();
		dup2(null.get(), 0);
		dup2(log.get(), 1);
		dup2(log.get(), 2);
		const char* env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", nullptr };
		const char* args[] = { "haproxy", "-W", "-S", cli.c_str(), "-p", pid.c_str(), "-f", cfg.c_str(), nullptr };
		execve(haproxy.c_str(), const_cast<char**>(args), const_cast<char**>(env));
		_exit(127);
	}
	// The master writes its pid file once the configuration is loaded and
	// the ports are bound; it exits when that fails.
	for (int i = 0; i < 200; i++) {
		pid_t master = runningPid(p);
		if (master > 0)
			return master;
		int status;
		if (waitpid(child, &status, WNOHANG) == child) {
			// Its first ALERT says why (a port in use, say).
			std::string said;
			if (auto text = readFileLimited(logFile(p), 8 << 20); text && (size_t)logStart < text->size())
				said = firstAlert(text->substr((size_t)logStart));
			return fail("haproxy exited at start (status %d)%s%s (log: %s)",
				    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), said.empty() ? "" : ": ",
				    said.c_str(), logFile(p).c_str());
		}
		struct timespec ts { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, nullptr);
	}
	return fail("haproxy did not write %s within 10 s: see %s", pidFile(p).c_str(), logFile(p).c_str());
}

} // namespace

pid_t runningPid(const Paths& p)
{
	auto text = readFileLimited(pidFile(p), 64);
	if (!text)
		return 0;
	char* end = nullptr;
	long pid = std::strtol(text->c_str(), &end, 10);
	if (pid <= 1 || end == text->c_str())
		return 0;
	char exe[4096];
	ssize_t n = readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), exe, sizeof(exe) - 1);
	if (n <= 0)
		return 0;
	exe[n] = 0;
	std::string e(exe);
	if (e.ends_with(" (deleted)"))
		e.resize(e.size() - 10);
	return e.ends_with("/haproxy") ? (pid_t)pid : 0;
}

Result<std::string> reload(const Paths& p, const GlobalConfig& g)
{
	TRYV(generate(p, g));
	// With systemd, pukaipu-front.service runs HAProxy (see its unit file
	// for why a unit of its own): reload it, or start and enable it.
	if (units::manageFrontUnit(p)) {
		if (units::unitActive(units::kFrontUnit)) {
			TRYV(units::systemctlRun({ "reload", units::kFrontUnit }));
			return std::string("reloaded ") + units::kFrontUnit + " (systemctl reload) with " + p.frontDir +
			       "/haproxy.cfg";
		}
		TRYV(units::systemctlRun({ "enable", "--now", units::kFrontUnit }));
		return std::string("started and enabled ") + units::kFrontUnit + " with " + p.frontDir + "/haproxy.cfg on " +
		       hostPort(g.listenAddress, g.frontPort) + "; log: journalctl -u " + units::kFrontUnit;
	}
	if (pid_t pid = runningPid(p)) {
		if (kill(pid, SIGUSR2) < 0)
			return failErrno(errno, "signal haproxy (pid %d) to reload", (int)pid);
		return "reloaded haproxy (master pid " + std::to_string(pid) + ") with " + p.frontDir + "/haproxy.cfg";
	}
	TRY(pid, start(p));
	return "started haproxy (master pid " + std::to_string(*pid) + ") with " + p.frontDir + "/haproxy.cfg on " +
	       hostPort(g.listenAddress, g.frontPort) + "; log: " + logFile(p) + "; stop: kill $(cat " + pidFile(p) + ")";
}

std::string masterSocket(const Paths& p)
{
	return p.runDir + "/front-master.sock";
}

Result<std::string> refresh(const Paths& p, const GlobalConfig& g)
{
	struct stat st;
	// Under systemd the unit runs HAProxy (its master still writes
	// RUN_DIR/front.pid and listens on the master socket).
	const bool unit = units::manageFrontUnit(p);
	const bool running = unit ? units::unitActive(units::kFrontUnit) : runningPid(p) != 0;
	if (!running && stat((p.frontDir + "/haproxy.cfg").c_str(), &st) < 0)
		return std::string();
	// The files first (checked, atomic): a restart or a reload gives the
	// same state as the runtime commands below.
	TRY(changes, generate(p, g));
	bool changed = false;
	for (const auto& [name, ch] : *changes)
		changed = changed || ch.changed();
	if (!running || !changed)
		return std::string();
	std::string note;
	if (auto commands = runtimeCommands(p.frontDir, *changes)) {
		auto applied = applyRuntime(masterSocket(p), *commands);
		if (applied)
			return std::string();
		// A reload reads the same files; sessions already open on the old
		// worker end at hard-stop-after.
		note = "front door: runtime API unavailable (" + applied.error().message() +
		       "); reloaded HAProxy instead, open sessions end within 5 minutes";
	}
	if (unit) {
		TRYV(units::systemctlRun({ "reload", units::kFrontUnit }));
		return note;
	}
	const pid_t pid = runningPid(p);
	if (kill(pid, SIGUSR2) < 0)
		return failErrno(errno, "signal haproxy (pid %d) to reload", (int)pid);
	return note;
}

std::string status(const Paths& p)
{
	std::string out;
	struct stat st;
	const std::string cfg = p.frontDir + "/haproxy.cfg";
	out += "config: " + cfg + (stat(cfg.c_str(), &st) == 0 ? "" : " (not written yet: pukaipu front reload)") + "\n";
	if (units::manageFrontUnit(p))
		out += std::string("unit: ") + units::kFrontUnit + (units::unitActive(units::kFrontUnit) ? " active" : " not active") + "\n";
	if (pid_t pid = runningPid(p)) {
		out += "haproxy: running, master pid " + std::to_string(pid) + " (" + pidFile(p) + "), log " + logFile(p) + "\n";
		auto w = workers(masterSocket(p));
		out += w ? "runtime API: " + masterSocket(p) + ", " + std::to_string(w->size()) + " worker(s)\n"
			 : "runtime API: unavailable (" + w.error().message() + "): changes reload HAProxy\n";
	} else
		out += "haproxy: not running (no live haproxy in " + pidFile(p) + ")\n";
	return out;
}

Result<std::string> sniMap(const Paths& p, const GlobalConfig& g)
{
	TRY(all, listInstances(p));
	std::string host = g.listenAddress;
	if (host == "0.0.0.0" || host == "::") {
		char name[256] = "localhost";
		gethostname(name, sizeof(name) - 1);
		host = name;
	}
	std::string out;
	for (const auto& inst : *all)
		for (const auto& name : namesOf(inst))
			if (!isIpLiteral(name))
				out += name + " " + hostPort(host, g.frontPort) + "\n";
	return out;
}

} // namespace pukaipu::front
