// The front door's files: the HAProxy configuration pukaipu writes from
// its state, checked with `haproxy -c` before it replaces the running one.
#include "front.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file_io.h"
#include "base/net_literal.h"
#include "base/process.h"
#include "certs/certs.h"
#include "listen.h"
#include "names.h"
#include "provision.h"

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
	# No session cache, so no resumption at all (TLS 1.2 session ids, TLS
	# 1.3 stateful tickets): OpenSSL resumes a TLS 1.2 session made for one
	# instance under another's SNI, and a resumed session keeps the client
	# certificate it was made with, also after a renew. Every connection
	# makes a full handshake with its certificate (tests: test_front.py).
	tune.ssl.cachesize 0
	# 64 KiB buffers instead of 16: a desktop's WebSocket is a bulk stream;
	# bench/front measured HAProxy's CPU for 1280 MiB at 1.94 s with 16 KiB
	# and 1.35 s with 64 KiB. Costs 128 KiB per open connection (a few per
	# desktop).
	tune.bufsize 65536
	# cert renew and set reach the running workers through the master CLI
	# (front_runtime.h) and drop nobody. create and remove reload: the old
	# worker keeps serving the desktops that are open (WebSockets live up
	# to `timeout tunnel`, 8 h) and would pile up with every reload. After
	# 5 minutes it is stopped: long enough for a page load or a file
	# transfer to finish, short enough that a busy day of creates leaves a
	# handful of old workers, not hundreds; the HTML5 client reconnects by
	# itself to the new worker. And a worker that has outlived 3 reloads
	# is stopped at once.
	hard-stop-after 5m
	mworker-max-reloads 3

defaults
	mode http
	log global
	# The access log (stdout: RUN_DIR/front.log, or the journal under
	# systemd): time, client address (the PROXY header's for an SNI router
	# in frontProxyFrom), instance, client certificate serial, status, bytes.
	log-format "time=%trg client=%ci:%cp instance=%[var(txn.sni)] serial=%[ssl_c_serial,hex] status=%ST bytes_out=%B bytes_in=%U backend=%b duration_ms=%Ta request=%{+Q}r"
	timeout connect 5s
	# An idle client connection (no request, no WebSocket) ends after this;
	# an open WebSocket is a tunnel and lives `timeout tunnel`.
	timeout client @TIMEOUT_CLIENT@
	timeout server 30s
	timeout tunnel 8h
	timeout http-request 10s

frontend desktops
	bind @BIND@ ssl crt-list @DIR@/crt-list ssl-min-ver TLSv1.2 alpn http/1.1
@PROXY@	# The instance is the one whose certificate and client CA the handshake
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

// `timeout client`: 30 s. PUKAIPU_FRONT_TEST_TIMEOUT_CLIENT (seconds) is for
// the tests only, which make it short to show that an idle WebSocket
// outlives it (pukaipu(8), ENVIRONMENT).
Result<std::string> timeoutClient()
{
	const char* v = getenv("PUKAIPU_FRONT_TEST_TIMEOUT_CLIENT");
	if (!v)
		return std::string("30s");
	std::string s(v);
	if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos || std::stoul(s) == 0)
		return fail("PUKAIPU_FRONT_TEST_TIMEOUT_CLIENT: '%s' is not a number of seconds", v);
	return s + "s";
}

// The frontend's PROXY protocol rule: only frontProxyFrom may, and then
// must, start a connection with a PROXY header (v1 or v2); the access log
// and every rule then see the address it carries.
std::string proxyRule(const GlobalConfig& g)
{
	if (g.frontProxyFrom.empty())
		return "";
	std::string from;
	for (const auto& a : g.frontProxyFrom)
		from += " " + a;
	return "\t# An SNI router in front of several hosts (frontProxyFrom) sends the client's address.\n"
	       "\ttcp-request connection expect-proxy layer4 if { src" +
	       from + " }\n";
}

Result<Plan> plan(const Paths& p, const GlobalConfig& g, const std::string& dir)
{
	TRY(all, listInstances(p));
	TRY(timeout, timeoutClient());
	Plan out;
	std::string cfg = replaceAll(replaceAll(kConfig, "@DIR@", dir), "@BIND@", hostPort(g.listenAddress, g.frontPort));
	cfg = replaceAll(replaceAll(cfg, "@TIMEOUT_CLIENT@", *timeout), "@PROXY@", proxyRule(g));
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
		crtList += dir + "/" + inst.user + ".pem [ca-file " + dir + "/" + inst.user + "-client-ca.crt verify required]";
		for (const auto& name : namesOf(inst)) {
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
std::vector<std::string> staleFiles(const std::string& dir, const Plan& plan)
{
	std::vector<std::string> stale;
	DIR* d = opendir(dir.c_str());
	if (!d)
		return stale;
	while (dirent* e = readdir(d)) {
		std::string n = e->d_name;
		bool ours = (n.size() > 4 && n.ends_with(".pem") && n != "default.pem") || n.ends_with("-client-ca.crt");
		if (ours && !plan.files.contains(n))
			stale.push_back(n);
	}
	closedir(d);
	return stale;
}


} // namespace

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

std::string haproxyBinary()
{
	if (const char* env = std::getenv("PUKAIPU_HAPROXY"))
		return env; // tests: another binary, or none
	for (const char* path : { "/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy" })
		if (access(path, X_OK) == 0)
			return path;
	return "/usr/sbin/haproxy";
}

std::string instanceName(const InstanceConfig& inst)
{
	return lowerName(inst.fqdn);
}

std::string hostPort(const std::string& address, uint16_t port)
{
	auto ip = parseIpLiteral(address);
	bool v6 = ip && ip->family == AF_INET6;
	return (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
}

std::string originOf(const std::string& name, uint16_t port)
{
	return port == 443 ? "https://" + name : "https://" + name + ":" + std::to_string(port);
}

Result<Changes> generate(const Paths& p, const GlobalConfig& g)
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
		const std::string haproxy = haproxyBinary();
		if (access(haproxy.c_str(), X_OK) < 0)
			return fail("haproxy not found at %s: install Debian's haproxy package", haproxy.c_str());
		TRY(res, runProgram({ haproxy, "-c", "-f", tmp + "/haproxy.cfg" }, true));
		if (res->status == 127)
			return fail("haproxy not found at %s: install Debian's haproxy package", haproxy.c_str());
		if (res->status != 0)
			return fail("haproxy -c refused the new configuration, the old one stays: %s",
				    replaceAll(firstAlert(res->output), tmp + "/", dir + "/").c_str());
		return {};
	}();
	removeTree(tmp);
	TRYV(checked);

	TRY(final, plan(p, g, dir));
	// What the running HAProxy was given: the files as they are now.
	Changes changes;
	auto stale = staleFiles(dir, *final);
	for (const auto& [name, f] : final->files)
		changes[name].after = f.data;
	for (const auto& name : stale)
		changes[name].after = std::nullopt;
	for (auto& [name, ch] : changes)
		if (auto old = readFileLimited(dir + "/" + name))
			ch.before = *old;
	// Instance files before the lists that name them, haproxy.cfg last.
	File cfg = final->files["haproxy.cfg"];
	final->files.erase("haproxy.cfg");
	TRYV(writePlan(dir, *final, *gid));
	for (const auto& n : stale)
		unlink((dir + "/" + n).c_str());
	TRYV(writeFileAtomic(dir + "/haproxy.cfg", cfg.data, cfg.mode));
	return changes;
}

} // namespace pukaipu::front
