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

// The verified configuration (tests/e2e drive it): TLS 1.2 or newer, no
// session tickets, http/1.1 only; the instance is the SNI's, Host must say
// the same (421), a foreign Origin is refused (403), and only the current
// client certificate of that instance passes (403).
constexpr const char* kConfig = R"(# Written by `pukaipu front reload`; edits are overwritten.
global
	log stdout format raw local0 info
	# The group that may connect to the desktop sockets (root:haproxy 0660).
	user haproxy
	group haproxy
	ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets

defaults
	mode http
	log global
	option httplog
	timeout connect 5s
	timeout client 30s
	timeout server 30s
	timeout tunnel 8h
	timeout http-request 10s

frontend desktops
	bind @BIND@ ssl crt-list @DIR@/crt-list ssl-min-ver TLSv1.2 alpn http/1.1
	# The instance is the one whose certificate and client CA the handshake
	# used: ssl_fc_sni (for a resumed session, the SNI of the session).
	http-request set-var(txn.sni) ssl_fc_sni,lower
	# Host must name the same instance (421 Misdirected Request).
	http-request set-var(txn.host) req.hdr(host),field(1,:),lower
	http-request return status 421 content-type text/plain string "Host is not the TLS server name" unless { var(txn.host),strcmp(txn.sni) eq 0 }
	# A browser's Origin, when there is one, must be the instance's own page.
	http-request set-var(txn.origin) var(txn.sni),map(@DIR@/origins.map)
	http-request deny deny_status 403 if { req.hdr(origin) -m found } !{ req.hdr(origin),strcmp(txn.origin) eq 0 }
	# Only the instance's current client certificate.
	http-request set-var(txn.serial) var(txn.sni),map(@DIR@/serials.map)
	http-request deny deny_status 403 unless { ssl_c_serial,hex,strcmp(txn.serial) eq 0 }
	use_backend %[var(txn.sni),map(@DIR@/backends.map)]
	default_backend nobody

backend nobody
	http-request deny deny_status 421
)";

std::string replaceAll(std::string s, const std::string& from, const std::string& to)
{
	for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
		s.replace(at, from.size(), to);
	return s;
}

std::string hostPort(const std::string& address, uint16_t port)
{
	auto ip = parseIpLiteral(address);
	bool v6 = ip && ip->family == AF_INET6;
	return (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
}

struct File {
	std::string data;
	mode_t mode = 0644;
	bool secret = false; // 0640 root:haproxy
};

// Every file of the front dir, with `dir` as the directory the
// configuration names (the temporary one while it is checked).
struct Plan {
	std::map<std::string, File> files;
};

// The default certificate and a CA that signed nothing, made once: a
// handshake without a known SNI gets this line and no client passes it.
Result<void> ensureDefaults(const std::string& dir)
{
	struct stat st;
	if (stat((dir + "/default.pem").c_str(), &st) == 0 && stat((dir + "/nobody-ca.crt").c_str(), &st) == 0)
		return {};
	TRY(nobody, certs::createCa("pukaipu front door: signs nothing", 3650));
	TRY(nobodyPem, certs::certToPem(nobody->cert.get()));
	TRY(def, certs::createCa("invalid", 3650));
	TRY(defCrt, certs::certToPem(def->cert.get()));
	TRY(defKey, certs::keyToPem(def->key.get()));
	TRY(gid, frontDoorGid());
	FileOwner owner { 0, *gid };
	TRYV(writeFileAtomic(dir + "/nobody-ca.crt", *nobodyPem, 0644));
	return writeFileAtomic(dir + "/default.pem", *defCrt + *defKey, *gid == (gid_t)-1 ? 0600 : 0640, owner);
}

Result<Plan> plan(const Paths& p, const GlobalConfig& g, const std::string& dir)
{
	TRY(all, listInstances(p));
	Plan out;
	std::string cfg = replaceAll(replaceAll(kConfig, "@DIR@", dir), "@BIND@", hostPort(g.listenAddress, g.frontPort));
	std::string crtList = dir + "/default.pem [ca-file " + dir + "/nobody-ca.crt verify required]\n";
	std::string backends, origins, serials;
	for (const auto& inst : *all) {
		const std::string certDir = p.instanceDir(inst.user) + "/certs";
		TRY_CTX(crt, readFileLimited(certDir + "/server.crt"), "instance '%s'", inst.user.c_str());
		TRY_CTX(key, readFileLimited(certDir + "/server.key"), "instance '%s'", inst.user.c_str());
		TRY_CTX(ca, readFileLimited(certDir + "/client-ca.crt"), "instance '%s'", inst.user.c_str());
		TRY_CTX(client, readFileLimited(certDir + "/client.crt"), "instance '%s'", inst.user.c_str());
		TRY_CTX(info, certs::inspect(*client), "instance '%s': client.crt", inst.user.c_str());
		out.files[inst.user + ".pem"] = { *crt + *key, 0640, true };
		out.files[inst.user + "-client-ca.crt"] = { *ca, 0644, false };
		// Its fqdn and extra names, exactly (names.h: no IP, no wildcard,
		// each name one instance's only).
		const auto names = namesOf(inst);
		crtList += dir + "/" + inst.user + ".pem [ca-file " + dir + "/" + inst.user + "-client-ca.crt verify required]";
		for (const auto& name : names) {
			if (isIpLiteral(name))
				continue; // an instance from before the name rules: pukaipu migrate drops it
			crtList += " " + name;
			backends += name + " " + inst.user + "\n";
			origins += name + " " + originOf(name, g.frontPort) + "\n";
			serials += name + " " + info->serialHex + "\n";
		}
		crtList += "\n";
		cfg += "\nbackend " + inst.user + "\n\tserver s unix@" + p.runDir + "/" + inst.user + "/desktop.sock\n";
	}
	out.files["haproxy.cfg"] = { cfg, 0644, false };
	out.files["crt-list"] = { crtList, 0644, false };
	out.files["backends.map"] = { backends, 0644, false };
	out.files["origins.map"] = { origins, 0644, false };
	out.files["serials.map"] = { serials, 0644, false };
	return out;
}

Result<void> writePlan(const std::string& dir, const Plan& plan, gid_t gid)
{
	for (const auto& [name, f] : plan.files) {
		FileOwner owner;
		mode_t mode = f.mode;
		if (f.secret) {
			owner = { 0, gid };
			if (gid == (gid_t)-1)
				mode = 0600;
		}
		TRYV(writeFileAtomic(dir + "/" + name, f.data, mode, owner));
	}
	return {};
}

Result<void> copyFile(const std::string& from, const std::string& to, mode_t mode, FileOwner owner)
{
	TRY(data, readFileLimited(from));
	return writeFileAtomic(to, *data, mode, owner);
}

void removeTree(const std::string& dir)
{
	if (DIR* d = opendir(dir.c_str())) {
		while (dirent* e = readdir(d))
			if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, ".."))
				unlink((dir + "/" + e->d_name).c_str());
		closedir(d);
	}
	rmdir(dir.c_str());
}

// Instance files (USER.pem, USER-client-ca.crt) of instances that are gone.
void removeStale(const std::string& dir, const Plan& plan)
{
	DIR* d = opendir(dir.c_str());
	if (!d)
		return;
	std::vector<std::string> stale;
	while (dirent* e = readdir(d)) {
		std::string n = e->d_name;
		bool ours = (n.size() > 4 && n.ends_with(".pem") && n != "default.pem") || n.ends_with("-client-ca.crt");
		if (ours && !plan.files.contains(n))
			stale.push_back(n);
	}
	closedir(d);
	for (const auto& n : stale)
		unlink((dir + "/" + n).c_str());
}

std::string pidFile(const Paths& p)
{
	return p.runDir + "/front.pid";
}

std::string logFile(const Paths& p)
{
	return p.runDir + "/front.log";
}

// The first line of haproxy's complaint, without its "[ALERT] (pid) :" prefix.
std::string firstAlert(const std::string& out)
{
	std::string line;
	size_t start = 0;
	while (start < out.size()) {
		size_t end = out.find('\n', start);
		std::string l = out.substr(start, end == std::string::npos ? std::string::npos : end - start);
		if (l.find("ALERT") != std::string::npos) {
			line = l;
			break;
		}
		if (line.empty() || l.find("NOTICE") == std::string::npos)
			line = l;
		if (end == std::string::npos)
			break;
		start = end + 1;
	}
	size_t colon = line.find(" : ");
	if (line.rfind("[", 0) == 0 && colon != std::string::npos)
		line = line.substr(colon + 3);
	return line;
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
	const std::string cfg = p.frontDir + "/haproxy.cfg", pid = pidFile(p);
	pid_t child = fork();
	if (child < 0)
		return failErrno(errno, "fork");
	if (child == 0) {
		setsid();
		dup2(null.get(), 0);
		dup2(log.get(), 1);
		dup2(log.get(), 2);
		const char* env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", nullptr };
		for (const char* dir : { "/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy" }) {
			const char* args[] = { "haproxy", "-W", "-p", pid.c_str(), "-f", cfg.c_str(), nullptr };
			execve(dir, const_cast<char**>(args), const_cast<char**>(env));
		}
		_exit(127);
	}
	// The master writes its pid file once the configuration is loaded and
	// the ports are bound; it exits when that fails.
	for (int i = 0; i < 200; i++) {
		pid_t master = runningPid(p);
		if (master > 0)
			return master;
		int status;
		if (waitpid(child, &status, WNOHANG) == child)
			return fail("haproxy exited at start (status %d): see %s", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
				    logFile(p).c_str());
		struct timespec ts { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, nullptr);
	}
	return fail("haproxy did not write %s within 10 s: see %s", pidFile(p).c_str(), logFile(p).c_str());
}

} // namespace

std::string instanceName(const InstanceConfig& inst)
{
	return lowerName(inst.fqdn);
}

std::string originOf(const std::string& name, uint16_t port)
{
	return port == 443 ? "https://" + name : "https://" + name + ":" + std::to_string(port);
}

Result<void> generate(const Paths& p, const GlobalConfig& g)
{
	// Under the provisioning lock: the instances and their certificates do
	// not change while they are read, and two reloads do not interleave.
	TRY(lock, lockState(p));
	TRY(gid, frontDoorGid());
	const std::string dir = p.frontDir;
	const std::string parent = dir.substr(0, dir.rfind('/'));
	struct stat st;
	if (!parent.empty() && stat(parent.c_str(), &st) < 0)
		return failErrno(errno, "front dir's parent '%s'", parent.c_str());
	TRYV(ensureRootDir(dir, 0755));
	TRYV(ensureDefaults(dir));

	// Checked in a scratch copy first: the running HAProxy reads the real
	// files on reload, so they change only to something it accepts.
	const std::string tmp = dir + "/.new";
	removeTree(tmp);
	if (mkdir(tmp.c_str(), 0700) < 0)
		return failErrno(errno, "mkdir '%s'", tmp.c_str());
	auto checked = [&]() -> Result<void> {
		TRY(trial, plan(p, g, tmp));
		TRYV(writePlan(tmp, *trial, *gid));
		TRYV(copyFile(dir + "/default.pem", tmp + "/default.pem", 0600, {}));
		TRYV(copyFile(dir + "/nobody-ca.crt", tmp + "/nobody-ca.crt", 0644, {}));
		// Not -q: its first ALERT line is the error.
		TRY(res, runProgram({ "haproxy", "-c", "-f", tmp + "/haproxy.cfg" }, true));
		if (res->status == 127)
			return fail("haproxy not found (install the haproxy package)");
		if (res->status != 0)
			return fail("haproxy -c refused the new configuration, the old one stays: %s",
				    replaceAll(firstAlert(res->output), tmp + "/", dir + "/").c_str());
		return {};
	}();
	removeTree(tmp);
	TRYV(checked);

	TRY(final, plan(p, g, dir));
	// Instance files before the lists that name them, haproxy.cfg last.
	File cfg = final->files["haproxy.cfg"];
	final->files.erase("haproxy.cfg");
	TRYV(writePlan(dir, *final, *gid));
	removeStale(dir, *final);
	return writeFileAtomic(dir + "/haproxy.cfg", cfg.data, cfg.mode);
}

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

Result<void> refresh(const Paths& p, const GlobalConfig& g)
{
	struct stat st;
	if (units::manageFrontUnit(p)) {
		if (stat((p.frontDir + "/haproxy.cfg").c_str(), &st) < 0 && !units::unitActive(units::kFrontUnit))
			return {};
		TRYV(generate(p, g));
		if (units::unitActive(units::kFrontUnit))
			return units::systemctlRun({ "reload", units::kFrontUnit });
		return {};
	}
	pid_t pid = runningPid(p);
	if (!pid && stat((p.frontDir + "/haproxy.cfg").c_str(), &st) < 0)
		return {};
	TRYV(generate(p, g));
	if (pid && kill(pid, SIGUSR2) < 0)
		return failErrno(errno, "signal haproxy (pid %d) to reload", (int)pid);
	return {};
}

std::string status(const Paths& p)
{
	std::string out;
	struct stat st;
	const std::string cfg = p.frontDir + "/haproxy.cfg";
	out += "config: " + cfg + (stat(cfg.c_str(), &st) == 0 ? "" : " (not written yet: pukaipu front reload)") + "\n";
	if (units::manageFrontUnit(p))
		out += std::string("unit: ") + units::kFrontUnit + (units::unitActive(units::kFrontUnit) ? " active" : " not active") + "\n";
	if (pid_t pid = runningPid(p))
		out += "haproxy: running, master pid " + std::to_string(pid) + " (" + pidFile(p) + "), log " + logFile(p) + "\n";
	else
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
