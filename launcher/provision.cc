#include "provision.h"
#include "oci_main.h"

#include "sandbox/network.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>

#include <nlohmann/json.hpp>

#include "base/file_io.h"
#include "certs/certs.h"
#include "base/net_literal.h"
#include "base/sysutil.h"
#include "host_ca.h"
#include "instance.h"
#include "names.h"
#include "systemd/dropins.h"
#include "unix_user.h"

namespace pukaipu {

using json = nlohmann::json;

namespace {

std::string modeString(mode_t m)
{
	char b[8];
	std::snprintf(b, sizeof(b), "%04o", (unsigned)m);
	return b;
}

bool sameRequest(const InstanceConfig& have, const CreateRequest& r)
{
	return have.fqdn == r.fqdn && (!r.port || *r.port == have.port) && (!r.uid || *r.uid == have.uid) &&
	       (r.extraNames.empty() || r.extraNames == have.extraNames) &&
	       (r.network.empty() || r.network == have.network || (have.network.empty() && r.network.empty())) &&
	       (r.limits.empty() || (r.limits.memory == have.limits.memory && r.limits.cpus == have.limits.cpus &&
				     r.limits.tasks == have.limits.tasks)) &&
	       (!r.idleSeconds || r.idleSeconds == have.idleSeconds) && r.serverCertFile.empty();
}

// After drop-ins changed: make the running systemd see them. Only for the
// real /etc/systemd/system and only where systemd is PID 1; a failure is a
// warning (the files are in place; `systemctl daemon-reload` fixes it).
void reloadSystemd(const Paths& p, std::vector<std::string>& warnings)
{
	if (!units::manageSystemd(p))
		return;
	if (auto r = units::daemonReload(); !r)
		warnings.push_back(r.error().message() + " (the drop-ins are written; run it yourself)");
}

} // namespace

// A new client CA, client certificate and client.p12 for `user`. The CA key
// is not kept: no one can sign another certificate for this instance, and
// renewal replaces the CA, which invalidates every older certificate.
Result<std::string> writeClientCerts(const std::string& certDir, const std::string& user)
{
	TRY(ca, certs::createCa("pukaipu client CA for " + user, certs::kCaDays));
	TRY(client, certs::issueClientCert(*ca, user, certs::kClientDays));
	TRY(pass, certs::randomPassphrase());
	TRY(p12, certs::toPkcs12(*client, ca->cert.get(), *pass, "pukaipu " + user));
	TRY(caPem, certs::certToPem(ca->cert.get()));
	TRY(clientPem, certs::certToPem(client->cert.get()));
	TRYV(writeFileAtomic(certDir + "/client.p12", *p12, 0600));
	TRYV(writeFileAtomic(certDir + "/client.crt", *clientPem, 0644));
	TRYV(writeFileAtomic(certDir + "/client-ca.crt", *caPem, 0644));
	return std::move(*pass);
}

Result<UniqueFd> lockState(const Paths& p)
{
	// The state directory and any missing parents (a fresh host may not have
	// /var/lib yet in a minimal image; tests point it at a new tree).
	TRYV(makeDirs(p.stateDir, 0755));
	TRYV(ensureRootDir(p.instancesDir(), 0755));
	UniqueFd fd(open(p.lockFile().c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
	if (!fd)
		return failErrno(errno, "open '%s'", p.lockFile().c_str());
	while (flock(fd.get(), LOCK_EX) < 0)
		if (errno != EINTR)
			return failErrno(errno, "lock '%s'", p.lockFile().c_str());
	return fd;
}

Result<std::vector<InstanceConfig>> listInstances(const Paths& p)
{
	std::vector<InstanceConfig> out;
	DIR* d = opendir(p.instancesDir().c_str());
	if (!d)
		return errno == ENOENT ? Result<std::vector<InstanceConfig>>(out)
				       : failErrno(errno, "read '%s'", p.instancesDir().c_str());
	std::vector<std::string> names;
	while (struct dirent* e = readdir(d))
		if (e->d_name[0] != '.')
			names.push_back(e->d_name);
	closedir(d);
	std::sort(names.begin(), names.end());
	for (const auto& n : names) {
		struct stat st;
		if (stat((p.instanceDir(n) + "/instance.json").c_str(), &st) < 0)
			continue; // a create that did not finish
		TRY(inst, loadInstanceConfig(p, n));
		out.push_back(std::move(*inst));
	}
	return out;
}

namespace {
// TCP ports with a listening socket in this network namespace, on any
// address, from /proc/net/tcp and tcp6 ("sl local_address rem_address st",
// addresses as HEXADDR:HEXPORT, st 0A = LISTEN). A port someone else holds
// would make the instance's first start fail with EADDRINUSE.
Result<std::set<uint16_t>> listeningTcpPorts()
{
	std::set<uint16_t> out;
	for (const char* file : { "/proc/net/tcp", "/proc/net/tcp6" }) {
		if (access(file, F_OK) < 0 && errno == ENOENT)
			continue; // no IPv6 in this kernel
		TRY(text, readFileLimited(file, 64u << 20));
		std::size_t pos = text->find('\n'); // header
		while (pos != std::string::npos && pos + 1 < text->size()) {
			std::size_t end = text->find('\n', pos + 1);
			std::string line = text->substr(pos + 1, end == std::string::npos ? std::string::npos : end - pos - 1);
			pos = end;
			char local[128], remote[128];
			unsigned st = 0;
			if (std::sscanf(line.c_str(), " %*u: %127s %127s %x", local, remote, &st) != 3 || st != 0x0A)
				continue;
			const char* colon = std::strrchr(local, ':');
			if (colon)
				out.insert((uint16_t)std::strtoul(colon + 1, nullptr, 16));
		}
	}
	return out;
}

// --- the steps of createInstance --------------------------------------------------

std::vector<std::string> requestNames(const CreateRequest& r)
{
	std::vector<std::string> out { lowerName(r.fqdn) };
	for (const auto& n : r.extraNames)
		out.push_back(lowerName(n));
	return out;
}

std::string joinNames(const std::vector<std::string>& v)
{
	std::string out;
	for (const auto& s : v)
		out += (out.empty() ? "" : ", ") + s;
	return out;
}

// Everything that can be checked without the lock and without looking at the
// host: names, ranges, the options that go together.
Result<void> checkRequest(const GlobalConfig& g, const CreateRequest& r)
{
	if (!validUserName(r.user))
		return fail("user name '%s' is not valid (lower-case letters, digits, '_' and '-'; at most 32; "
			    "starting with a letter or '_')",
			    r.user.c_str());
	if (r.user == "root")
		return fail("user 'root': refusing to make an instance for root");
	// `pukaipu-run NAME` must stay an instance, not an OCI runtime command.
	for (const char* word : oci::kCommands)
		if (r.user == word)
			return fail("user name '%s': taken by pukaipu-run's OCI runtime commands; choose another",
				    r.user.c_str());
	if (r.fqdn.empty())
		return fail("--fqdn: missing (the name users will open in their browser)");
	TRYV(checkInstanceName(r.fqdn, "--fqdn"));
	for (const auto& n : r.extraNames)
		TRYV(checkInstanceName(n, "--extra-name"));
	if (r.serverCertFile.empty() != r.serverKeyFile.empty())
		return fail("--server-cert and --server-key go together");
	if (r.port && !g.ports.contains(*r.port))
		return fail("--port %u: outside the configured range %u-%u", *r.port, g.ports.first, g.ports.last);
	if (r.uid && !g.uids.contains(*r.uid))
		return fail("--uid %u: outside the configured range %u-%u", *r.uid, g.uids.first, g.uids.last);
	// The host CA signs only within its permitted domains (nameConstraints):
	// a certificate it issued for another name would be refused by browsers.
	if (r.serverCertFile.empty()) {
		const auto domains = permittedDomains(g);
		for (const auto& n : requestNames(r))
			if (!withinDomains(n, domains))
				return fail("name '%s' is outside the domains the host CA signs for (%s): set \"domain\" or "
					    "\"extraDomains\" in pukaipu.json and run pukaipu ca rotate, or bring --server-cert",
					    n.c_str(), joinNames(domains).c_str());
	}
	return {};
}

// create for an instance that exists: the same request changes nothing,
// another is refused.
Result<CreateResult> existingInstance(const Paths& p, const CreateRequest& r)
{
	TRY(have, loadInstanceConfig(p, r.user));
	if (!sameRequest(*have, r))
		return fail("instance '%s' already exists (fqdn %s, port %u, uid %u); nothing changed — "
			    "remove it first to change it",
			    r.user.c_str(), have->fqdn.c_str(), have->port, have->uid);
	CreateResult res;
	res.instance = std::move(*have);
	return res;
}

// The requested port, or the lowest of the range that no instance has and
// nothing on this host listens on.
Result<uint16_t> allocatePort(const GlobalConfig& g, const CreateRequest& r, const std::vector<InstanceConfig>& all)
{
	auto portUsed = [&](uint32_t port) {
		return std::any_of(all.begin(), all.end(), [&](const InstanceConfig& i) { return i.port == port; });
	};
	TRY(listening, listeningTcpPorts());
	if (r.port) {
		if (portUsed(*r.port))
			return fail("--port %u: already used by another instance", *r.port);
		if (listening->contains(*r.port))
			return fail("--port %u: a program on this host already listens on it", *r.port);
		return *r.port;
	}
	for (uint32_t port = g.ports.first; port <= g.ports.last; port++)
		if (!portUsed(port) && !listening->contains((uint16_t)port))
			return (uint16_t)port;
	return fail("no free port left in the range %u-%u", g.ports.first, g.ports.last);
}

Result<void> checkUidUnused(const std::vector<InstanceConfig>& all, uint32_t uid)
{
	for (const auto& other : all)
		if (other.uid == uid)
			return fail("uid %u is already used by instance '%s'", uid, other.user.c_str());
	return {};
}

// An externally issued server certificate (PEM chain) and its key, read and
// checked before the first change; none without --server-cert.
struct ServerCertFiles {
	std::string crt, key;
};
Result<std::optional<ServerCertFiles>> readExternalServerCert(const CreateRequest& r)
{
	if (r.serverCertFile.empty())
		return std::nullopt;
	TRY(c, readFileLimited(r.serverCertFile));
	TRY(k, readFileLimited(r.serverKeyFile));
	TRY_CTX(check, certs::checkExternalServerCert(*c, *k, r.fqdn), "--server-cert");
	return ServerCertFiles { std::move(*c), std::move(*k) };
}

// server.key and server.crt: the external ones, or a certificate for the
// fqdn and extra names issued by the host CA (with the CA in the chain).
Result<void> writeServerCert(const Paths& p, const GlobalConfig& g, const std::string& certDir,
			     const CreateRequest& r, const std::optional<ServerCertFiles>& external)
{
	if (external) {
		TRYV(writeFileAtomic(certDir + "/server.key", external->key, 0600));
		return writeFileAtomic(certDir + "/server.crt", external->crt, 0644);
	}
	TRY(ca, hostCa(p, g));
	int days = (int)std::min<uint32_t>(g.certDays, certs::kMaxServerDays);
	TRY(server, certs::issueServerCert(*ca, r.fqdn, r.extraNames, {}, days));
	TRY(keyPem, certs::keyToPem(server->key.get()));
	TRY(leafPem, certs::certToPem(server->cert.get()));
	TRY(caPem, certs::certToPem(ca->cert.get()));
	TRYV(writeFileAtomic(certDir + "/server.key", *keyPem, 0600));
	return writeFileAtomic(certDir + "/server.crt", *leafPem + *caPem, 0644); // full chain
}

// The unit's drop-in (limits) before instance.json: a crash in between
// leaves a drop-in that the next create rewrites, never an instance without
// its limits. instance.json last: now the instance exists.
Result<void> writeInstanceState(const Paths& p, const GlobalConfig& g, const InstanceConfig& inst)
{
	TRYV(units::writeDropIns(p, g, inst));
	return writeFileAtomic(p.instanceDir(inst.user) + "/instance.json", json(inst).dump(2) + "\n", 0644);
}

} // namespace

Result<CreateResult> createInstance(const Paths& p, const GlobalConfig& g, const CreateRequest& r)
{
	// --- validate everything before the first change ---
	TRYV(checkRequest(g, r));
	TRY(lock, lockState(p));
	const std::string dir = p.instanceDir(r.user);
	struct stat st;
	if (stat((dir + "/instance.json").c_str(), &st) == 0)
		return existingInstance(p, r);

	InstanceConfig inst;
	inst.user = r.user;
	inst.fqdn = r.fqdn;
	inst.network = r.network;
	inst.limits = r.limits;
	inst.idleSeconds = r.idleSeconds;
	inst.extraNames = r.extraNames;
	TRY(user, planUser(g, r.user, r.uid));
	inst.uid = user->uid;
	inst.gid = user->gid;
	inst.createdUser = user->createdUser;
	TRY(all, listInstances(p));
	TRY(port, allocatePort(g, r, *all));
	inst.port = *port;
	TRYV(checkUidUnused(*all, inst.uid));
	// Under the lock, against every instance: a name opens one instance only.
	TRYV(checkNamesFree(*all, r.user, requestNames(r)));
	TRY(external, readExternalServerCert(r));

	// --- changes, in an order where a crash leaves no half instance ---
	TRY(home, ensureUser(r.user, *user));
	TRY(skipped, prepareHome(*home, r.user, inst.uid, inst.gid));
	TRYV(ensureRootDir(dir, 0700));
	const std::string certDir = dir + "/certs";
	TRYV(ensureRootDir(certDir, 0700));
	TRYV(writeServerCert(p, g, certDir, r, *external));
	TRY(pass, writeClientCerts(certDir, r.user));
	inst.created = nowIso();
	TRYV(writeInstanceState(p, g, inst));

	CreateResult res;
	struct stat hs;
	if (!user->add && stat(home->c_str(), &hs) == 0 && (hs.st_mode & 077))
		res.warnings.push_back("home " + *home + " of the adopted user '" + r.user + "' is open to others (mode " +
				       modeString(hs.st_mode & 07777) + "): it holds the browser's profile; chmod 700 it");
	for (const auto& rel : *skipped)
		res.warnings.push_back("~/" + rel + " in " + *home + " was not created: something that is not a directory "
				       "(a symlink?) is in the way");
	reloadSystemd(p, res.warnings);
	res.created = true;
	res.instance = inst;
	res.p12Path = certDir + "/client.p12";
	res.passphrase = *pass;
	return res;
}

Result<RenewResult> renewClientCert(const Paths& p, const GlobalConfig& g, const std::string& user)
{
	(void)g;
	TRY(lock, lockState(p));
	TRY(inst, loadInstanceConfig(p, user));
	const std::string certDir = p.instanceDir(user) + "/certs";
	TRY(pass, writeClientCerts(certDir, user));
	return RenewResult { certDir + "/client.p12", *pass };
}

namespace {
// Removes a directory tree, never following symlinks (each level is opened
// with O_NOFOLLOW relative to its parent's fd). The run dir holds the user's
// attach directory, where the user can nest directories at will: past
// kMaxDepth levels (one open fd each) it stops with an error, not EMFILE.
constexpr int kMaxDepth = 64;
Result<void> removeTree(int parentFd, const char* name, int depth = 0)
{
	if (depth > kMaxDepth)
		return fail("remove '%s': nested deeper than %d directories", name, kMaxDepth);
	UniqueFd fd(openat(parentFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
	if (!fd) {
		if (errno == ENOENT)
			return {};
		if (errno == ENOTDIR || errno == ELOOP)
			return unlinkat(parentFd, name, 0) == 0 ? Result<void>() : failErrno(errno, "remove '%s'", name);
		return failErrno(errno, "open '%s'", name);
	}
	DIR* d = fdopendir(fd.get());
	if (!d)
		return failErrno(errno, "read '%s'", name);
	(void)fd.release(); // closedir closes it
	std::vector<std::pair<std::string, bool>> entries;
	while (struct dirent* e = readdir(d))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			// DT_UNKNOWN (some filesystems): removeTree finds out, and
			// unlinks what is not a directory.
			entries.emplace_back(e->d_name, e->d_type == DT_DIR || e->d_type == DT_UNKNOWN);
	// As much as can go goes; the first failure is what is reported.
	Result<void> first;
	for (const auto& [n, isDir] : entries) {
		Result<void> r;
		if (isDir)
			r = removeTree(dirfd(d), n.c_str(), depth + 1);
		else if (unlinkat(dirfd(d), n.c_str(), 0) < 0 && errno != ENOENT)
			r = failErrno(errno, "remove '%s/%s'", name, n.c_str());
		if (!r && first)
			first = r;
	}
	closedir(d);
	if (!first)
		return first;
	if (unlinkat(parentFd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return failErrno(errno, "remove '%s'", name);
	return {};
}
} // namespace

Result<RemoveResult> removeInstance(const Paths& p, const std::string& user, bool purgeHome)
{
	TRY(lock, lockState(p));
	TRY(inst, loadInstanceConfig(p, user));
	if (purgeHome && !inst->createdUser)
		return fail("user '%s' was not created by pukaipu: its home stays (remove it yourself); nothing changed",
			    user.c_str());
	// Under the lock, so no start slips in between: not while any
	// pukaipu-run of the instance runs (the desktop or a --shell).
	if (auto live = liveLaunchers(RuntimePaths::forUser(p, user), false); !live.empty())
		return fail("instance '%s' is running (pukaipu-run pid %d%s); stop it first (systemctl stop pukaipu@%s, "
			    "or end the shell); nothing changed",
			    user.c_str(), (int)live[0], live.size() > 1 ? " and more" : "", user.c_str());
	// An enabled socket without its drop-in would fail at the next boot.
	if (units::manageSystemd(p)) {
		auto busy = units::busyUnits(user);
		if (!busy.empty()) {
			std::string list;
			for (const auto& b : busy)
				list += (list.empty() ? "" : ", ") + b;
			return fail("%s; stop and disable them first: systemctl disable --now %s %s; nothing changed",
				    list.c_str(), units::socketName(user).c_str(), units::serviceName(user).c_str());
		}
	}
	UniqueFd instances(open(p.instancesDir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (!instances)
		return failErrno(errno, "open '%s'", p.instancesDir().c_str());
	// instance.json first: from here on the instance no longer exists.
	std::string file = p.instanceDir(user) + "/instance.json";
	if (unlink(file.c_str()) < 0)
		return failErrno(errno, "remove '%s'", file.c_str());
	TRYV(removeTree(instances.get(), user.c_str()));
	TRYV(units::removeDropIns(p, user));
	RemoveResult out;
	std::vector<std::string>& warnings = out.warnings;
	// The last instance: egress's host table and ip_forward go (still under
	// the state lock, so no create slips in; a start of pukaipu-run --bundle
	// meanwhile keeps them, see removeHostNetwork). A failure is a warning:
	// the instance is gone already.
	if (auto left = listInstances(p); left && left->empty()) {
		if (auto net = removeHostNetwork(NetworkOptions {}.lockPath); !net)
			warnings.push_back(net.error().message() + " (egress's host table stays)");
		else if (net->removed)
			out.hostNetwork = "removed the host table inet pukaipu (the last instance is gone)" +
					  (net->note.empty() ? std::string() : "; " + net->note);
		else
			out.hostNetwork = net->note;
	}
	// The run dir last, and only a warning: it is a tmpfs (gone at the next
	// boot), and the user's attach directory in it is the user's to fill.
	UniqueFd run(open(p.runDir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (run) {
		if (auto r = removeTree(run.get(), user.c_str()); !r)
			warnings.push_back(r.error().message() + " (in " + p.runDir + "; it goes at the next boot)");
	}
	reloadSystemd(p, warnings);
	if (purgeHome)
		TRYV(deleteUser(user));
	return out;
}

Result<SetResult> setInstance(const Paths& p, const std::string& user, const SetRequest& r)
{
	TRY(lock, lockState(p));
	TRY(global, loadGlobalConfig(p));
	TRY(inst, loadInstanceConfig(p, user));
	InstanceConfig next = *inst;
	if (r.memory)
		next.limits.memory = *r.memory;
	if (r.cpus)
		next.limits.cpus = *r.cpus;
	if (r.tasks)
		next.limits.tasks = *r.tasks;
	if (r.idleSeconds)
		next.idleSeconds = *r.idleSeconds;
	SetResult res;
	res.changed = json(next) != json(*inst);
	TRYV(units::writeDropIns(p, *global, next));
	if (res.changed)
		TRYV(writeFileAtomic(p.instanceDir(user) + "/instance.json", json(next).dump(2) + "\n", 0644));
	reloadSystemd(p, res.warnings);
	res.instance = std::move(next);
	return res;
}

} // namespace pukaipu
