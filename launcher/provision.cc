#include "provision.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>

#include <nlohmann/json.hpp>

#include "base/file_io.h"
#include "certs/certs.h"
#include "base/json_fields.h"
#include "base/process.h"
#include "base/sysutil.h"
#include "systemd/dropins.h"

extern char** environ;

namespace pukaipu {

namespace {

// The home layout a session expects, created as the user (see makeHomeLayout).
constexpr const char* kHomeDirs[] = { ".config", ".config/qtile", ".config/kitty", ".cache", "Downloads",
				      "brave-profile" };


// Runs a system tool (useradd, groupadd, userdel); its stderr goes into the
// error message when it fails.
Result<void> runTool(const std::vector<std::string>& argv)
{
	TRY(r, runProgram(argv, false));
	if (r->status == 0)
		return {};
	std::replace(r->output.begin(), r->output.end(), '\n', ' ');
	return fail("%s failed (status %d)%s%s", argv[0].c_str(), r->status, r->output.empty() ? "" : ": ",
		    r->output.c_str());
}

bool uidTaken(uint32_t uid)
{
	return getpwuid(uid) != nullptr || getgrgid(uid) != nullptr;
}

bool isIpLiteral(const std::string& s)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// A DNS name of LDH labels (no wildcards), or an IP address literal.
bool validHostName(const std::string& s)
{
	if (isIpLiteral(s))
		return true;
	if (s.empty() || s.size() > 253)
		return false;
	size_t start = 0;
	for (size_t i = 0; i <= s.size(); i++) {
		if (i < s.size() && s[i] != '.') {
			char c = s[i];
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
				return false;
			continue;
		}
		size_t len = i - start; // one label: 1..63 characters, no '-' at either end
		if (len == 0 || len > 63 || s[start] == '-' || s[i - 1] == '-')
			return false;
		start = i + 1;
	}
	return true;
}

// Creates the session's directories in the user's home AS THE USER, in a
// child process: a symlink the user planted (~/.config -> /etc) then leads
// only where the user could write anyway, and root never writes into a
// directory the user controls. Components that are symlinks are skipped.
Result<std::vector<std::string>> makeHomeLayout(const std::string& home, uint32_t uid, uint32_t gid)
{
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return failErrno(errno, "pipe");
	pid_t pid = fork();
	if (pid < 0)
		return failErrno(errno, "fork");
	if (pid == 0) {
		close(pipefd[0]);
		if (!becomeUser(uid, gid))
			_exit(100);
		umask(077);
		int homeFd = open(home.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (homeFd < 0)
			_exit(101);
		for (const char* rel : kHomeDirs) {
			// Walk component by component, never following a symlink.
			std::string path(rel);
			int cur = dup(homeFd);
			bool ok = true;
			for (size_t a = 0; ok && a < path.size();) {
				size_t b = path.find('/', a);
				if (b == std::string::npos)
					b = path.size();
				std::string comp = path.substr(a, b - a);
				if (mkdirat(cur, comp.c_str(), 0700) < 0 && errno != EEXIST)
					ok = false;
				int next = ok ? openat(cur, comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
				close(cur);
				cur = next;
				ok = ok && cur >= 0;
				a = b + 1;
			}
			if (cur >= 0)
				close(cur);
			if (!ok) {
				std::string line = std::string(rel) + "\n";
				(void)!write(pipefd[1], line.data(), line.size());
			}
		}
		_exit(0);
	}
	close(pipefd[1]);
	std::string skipped;
	char buf[256];
	ssize_t n;
	while ((n = read(pipefd[0], buf, sizeof(buf))) > 0)
		skipped.append(buf, (size_t)n);
	close(pipefd[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return fail("create the home layout in '%s' as uid %u (status %d)", home.c_str(), uid,
			    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	std::vector<std::string> out;
	for (size_t a = 0; a < skipped.size();) {
		size_t b = skipped.find('\n', a);
		out.push_back(skipped.substr(a, b - a));
		a = b + 1;
	}
	return out;
}

Result<certs::Ca> hostCa(const Paths& p)
{
	const std::string dir = p.hostCaDir();
	const std::string crt = dir + "/ca.crt", key = dir + "/ca.key";
	struct stat st;
	if (stat(crt.c_str(), &st) == 0)
		return certs::loadCa(crt, key);
	TRYV(makeDirs(dir.substr(0, dir.rfind('/')), 0755));
	TRYV(ensureRootDir(dir, 0755));
	char host[256] = "localhost";
	gethostname(host, sizeof(host) - 1);
	// A CN holds at most 64 characters: keep the host name's first label.
	std::string label(host);
	label = label.substr(0, std::min<size_t>(label.find('.'), 40));
	TRY(ca, certs::createCa("pukaipu host CA (" + label + ")", certs::kCaDays));
	TRY(keyPem, certs::keyToPem(ca->key.get()));
	TRY(crtPem, certs::certToPem(ca->cert.get()));
	TRYV(writeFileAtomic(key, *keyPem, 0600)); // key first: a cert without its key would be useless
	TRYV(writeFileAtomic(crt, *crtPem, 0644));
	return std::move(*ca);
}

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

Result<uint32_t> pickUid(const GlobalConfig& g)
{
	for (uint32_t u = g.uids.first; u <= g.uids.last; u++)
		if (!uidTaken(u))
			return u;
	return fail("no free uid left in the range %u-%u", g.uids.first, g.uids.last);
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
		auto text = readFileLimited(file, 64u << 20);
		if (!text) {
			if (text.error().errno_ == ENOENT)
				continue; // no IPv6 in this kernel
			return tl::unexpected(text.error());
		}
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
} // namespace

namespace {
// The GECOS comment of the users `pukaipu create` makes: how a later run
// recognises its own.
const std::string kUserComment = "pukaipu instance";

// A missing home (an adopted user's): created and handed over through fds,
// inside a parent only root can write. In a parent the user could write, the
// new directory could be swapped for a symlink (to /etc/shadow, say) between
// mkdir and a chown by name; so such a parent is refused.
Result<void> createHome(const std::string& home, uid_t uid, gid_t gid)
{
	const auto slash = home.rfind('/');
	const std::string parent = slash == 0 ? "/" : home.substr(0, slash), name = home.substr(slash + 1);
	if (slash == std::string::npos || name.empty() || name == "." || name == "..")
		return fail("home '%s': not an absolute path to a directory", home.c_str());
	UniqueFd pfd(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	struct stat st;
	if (!pfd || fstat(pfd.get(), &st) < 0)
		return failErrno(errno, "home '%s': parent '%s'", home.c_str(), parent.c_str());
	if (st.st_uid != 0 || (st.st_mode & 022))
		return fail("home '%s' is missing and its parent '%s' is writable by others than root; "
			    "create the home yourself",
			    home.c_str(), parent.c_str());
	if (mkdirat(pfd.get(), name.c_str(), 0700) < 0)
		return failErrno(errno, "create home '%s'", home.c_str());
	UniqueFd fd(openat(pfd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
	if (!fd || fchown(fd.get(), uid, gid) < 0 || fchmod(fd.get(), 0700) < 0)
		return failErrno(errno, "create home '%s'", home.c_str());
	return {};
}
} // namespace

Result<CreateResult> createInstance(const Paths& p, const GlobalConfig& g, const CreateRequest& r)
{
	// --- validate everything before the first change ---
	if (!validUserName(r.user))
		return fail("user name '%s' is not valid (lower-case letters, digits, '_' and '-'; at most 32; "
			    "starting with a letter or '_')",
			    r.user.c_str());
	if (r.user == "root")
		return fail("user 'root': refusing to make an instance for root");
	if (r.fqdn.empty())
		return fail("--fqdn: missing (the name users will open in their browser)");
	if (!validHostName(r.fqdn))
		return fail("--fqdn '%s': not a DNS name or IP address", r.fqdn.c_str());
	for (const auto& n : r.extraNames)
		if (!validHostName(n))
			return fail("--extra-name '%s': not a DNS name or IP address", n.c_str());
	if (r.serverCertFile.empty() != r.serverKeyFile.empty())
		return fail("--server-cert and --server-key go together");
	if (r.port && !g.ports.contains(*r.port))
		return fail("--port %u: outside the configured range %u-%u", *r.port, g.ports.first, g.ports.last);
	if (r.uid && !g.uids.contains(*r.uid))
		return fail("--uid %u: outside the configured range %u-%u", *r.uid, g.uids.first, g.uids.last);

	TRY(lock, lockState(p));
	const std::string dir = p.instanceDir(r.user);
	struct stat st;
	if (stat((dir + "/instance.json").c_str(), &st) == 0) {
		TRY(have, loadInstanceConfig(p, r.user));
		if (!sameRequest(*have, r))
			return fail("instance '%s' already exists (fqdn %s, port %u, uid %u); nothing changed — "
				    "remove it first to change it",
				    r.user.c_str(), have->fqdn.c_str(), have->port, have->uid);
		CreateResult res;
		res.instance = std::move(*have);
		return res;
	}

	InstanceConfig inst;
	inst.user = r.user;
	inst.fqdn = r.fqdn;
	inst.network = r.network;
	inst.limits = r.limits;
	inst.idleSeconds = r.idleSeconds;
	std::vector<std::string> dnsNames, ips;
	for (const auto& n : r.extraNames)
		(isIpLiteral(n) ? ips : dnsNames).push_back(n);
	inst.extraNames = r.extraNames;

	errno = 0;
	struct passwd* pw = getpwnam(r.user.c_str());
	if (pw) {
		if (pw->pw_uid == 0)
			return fail("user '%s' has uid 0: refusing", r.user.c_str());
		if (!g.uids.contains(pw->pw_uid))
			return fail("user '%s' exists with uid %u, outside the instance range %u-%u: refusing to adopt it",
				    r.user.c_str(), pw->pw_uid, g.uids.first, g.uids.last);
		if (r.uid && *r.uid != pw->pw_uid)
			return fail("user '%s' exists with uid %u, not %u", r.user.c_str(), pw->pw_uid, *r.uid);
		inst.uid = pw->pw_uid;
		inst.gid = pw->pw_gid;
		// A user with our comment is one a `create` made and then failed
		// (or crashed) after useradd: still ours, so that `remove
		// --purge-home` can take it away again.
		inst.createdUser = pw->pw_gecos && kUserComment == pw->pw_gecos;
	} else {
		if (r.uid && uidTaken(*r.uid))
			return fail("--uid %u: already used by another user or group", *r.uid);
		if (r.uid) {
			inst.uid = *r.uid;
		} else {
			TRY(u, pickUid(g));
			inst.uid = *u;
		}
		inst.gid = inst.uid;
		inst.createdUser = true;
	}
	const bool addUser = !pw;

	TRY(all, listInstances(p));
	auto portUsed = [&](uint32_t port) {
		return std::any_of(all->begin(), all->end(), [&](const InstanceConfig& i) { return i.port == port; });
	};
	TRY(listening, listeningTcpPorts());
	if (r.port) {
		if (portUsed(*r.port))
			return fail("--port %u: already used by another instance", *r.port);
		if (listening->contains(*r.port))
			return fail("--port %u: a program on this host already listens on it", *r.port);
		inst.port = *r.port;
	} else {
		for (uint32_t port = g.ports.first; port <= g.ports.last && !inst.port; port++)
			if (!portUsed(port) && !listening->contains((uint16_t)port))
				inst.port = (uint16_t)port;
		if (!inst.port)
			return fail("no free port left in the range %u-%u", g.ports.first, g.ports.last);
	}
	for (const auto& other : *all)
		if (other.uid == inst.uid)
			return fail("uid %u is already used by instance '%s'", inst.uid, other.user.c_str());

	std::string extCrt, extKey;
	if (!r.serverCertFile.empty()) {
		TRY(c, readFileLimited(r.serverCertFile));
		TRY(k, readFileLimited(r.serverKeyFile));
		auto check = certs::checkExternalServerCert(*c, *k, r.fqdn);
		if (!check)
			return fail("--server-cert: %s", check.error().message().c_str());
		extCrt = *c;
		extKey = *k;
	}

	// --- changes, in an order where a crash leaves no half instance ---
	if (addUser) {
		const std::string id = std::to_string(inst.uid);
		TRYV(runTool({ "groupadd", "--gid", id, r.user }));
		if (auto added = runTool({ "useradd", "--uid", id, "--gid", id, "--home-dir", "/home/" + r.user,
					   "--create-home", "--shell", "/usr/sbin/nologin", "--comment", kUserComment,
					   r.user });
		    !added) {
			// Not a group without its user: it would hold the id and the
			// name, and the next create would fail at groupadd.
			(void)runTool({ "groupdel", r.user });
			return tl::unexpected(added.error());
		}
		pw = getpwnam(r.user.c_str());
		if (!pw || pw->pw_uid != inst.uid)
			return fail("useradd did not create '%s' with uid %u", r.user.c_str(), inst.uid);
	}
	const std::string home = pw->pw_dir;
	if (lstat(home.c_str(), &st) < 0) {
		if (errno != ENOENT)
			return failErrno(errno, "home '%s'", home.c_str());
		TRYV(createHome(home, inst.uid, inst.gid));
	} else if (!S_ISDIR(st.st_mode) || st.st_uid != inst.uid) {
		return fail("home '%s' must be a directory owned by '%s'", home.c_str(), r.user.c_str());
	}
	TRY(skipped, makeHomeLayout(home, inst.uid, inst.gid));

	TRYV(ensureRootDir(dir, 0700));
	const std::string certDir = dir + "/certs";
	TRYV(ensureRootDir(certDir, 0700));
	if (!extCrt.empty()) {
		TRYV(writeFileAtomic(certDir + "/server.key", extKey, 0600));
		TRYV(writeFileAtomic(certDir + "/server.crt", extCrt, 0644));
	} else {
		TRY(ca, hostCa(p));
		int days = (int)std::min<uint32_t>(g.certDays, certs::kMaxServerDays);
		TRY(server, certs::issueServerCert(*ca, r.fqdn, dnsNames, ips, days));
		TRY(keyPem, certs::keyToPem(server->key.get()));
		TRY(leafPem, certs::certToPem(server->cert.get()));
		TRY(caPem, certs::certToPem(ca->cert.get()));
		TRYV(writeFileAtomic(certDir + "/server.key", *keyPem, 0600));
		TRYV(writeFileAtomic(certDir + "/server.crt", *leafPem + *caPem, 0644)); // full chain
	}
	TRY(pass, writeClientCerts(certDir, r.user));
	inst.created = nowIso();
	// The unit's drop-in (limits) before instance.json: a crash in between
	// leaves a drop-in that the next create rewrites, never an instance
	// without its limits.
	TRYV(units::writeDropIns(p, inst));
	TRYV(writeFileAtomic(dir + "/instance.json", toJson(inst).dump(2) + "\n", 0644)); // last: now it exists

	CreateResult res;
	for (const auto& rel : *skipped)
		res.warnings.push_back("~/" + rel + " in " + home + " was not created: something that is not a directory "
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
	int fd = openat(parentFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return {};
		if (errno == ENOTDIR || errno == ELOOP)
			return unlinkat(parentFd, name, 0) == 0 ? Result<void>() : failErrno(errno, "remove '%s'", name);
		return failErrno(errno, "open '%s'", name);
	}
	DIR* d = fdopendir(fd);
	if (!d) {
		close(fd);
		return failErrno(errno, "read '%s'", name);
	}
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

Result<std::vector<std::string>> removeInstance(const Paths& p, const std::string& user, bool purgeHome)
{
	TRY(lock, lockState(p));
	TRY(inst, loadInstanceConfig(p, user));
	if (purgeHome && !inst->createdUser)
		return fail("user '%s' was not created by pukaipu: its home stays (remove it yourself); nothing changed",
			    user.c_str());
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
	std::string json = p.instanceDir(user) + "/instance.json";
	if (unlink(json.c_str()) < 0)
		return failErrno(errno, "remove '%s'", json.c_str());
	TRYV(removeTree(instances.get(), user.c_str()));
	TRYV(units::removeDropIns(p, user));
	std::vector<std::string> warnings;
	// The run dir last, and only a warning: it is a tmpfs (gone at the next
	// boot), and the user's attach directory in it is the user's to fill.
	UniqueFd run(open(p.runDir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (run) {
		if (auto r = removeTree(run.get(), user.c_str()); !r)
			warnings.push_back(r.error().message() + " (in " + p.runDir + "; it goes at the next boot)");
	}
	reloadSystemd(p, warnings);
	if (purgeHome)
		TRYV(runTool({ "userdel", "--remove", user }));
	return warnings;
}

Result<SetResult> setInstance(const Paths& p, const std::string& user, const SetRequest& r)
{
	TRY(lock, lockState(p));
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
	res.changed = toJson(next) != toJson(*inst);
	TRYV(units::writeDropIns(p, next));
	if (res.changed)
		TRYV(writeFileAtomic(p.instanceDir(user) + "/instance.json", toJson(next).dump(2) + "\n", 0644));
	reloadSystemd(p, res.warnings);
	res.instance = std::move(next);
	return res;
}

} // namespace pukaipu
