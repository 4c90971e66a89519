#include "cmd_grants.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <pwd.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "base/file_io.h"
#include "base/process.h"
#include "base/sysutil.h"
#include "base/unique_fd.h"
#include "provision.h"
#include "sandbox/mounts.h"

namespace pukaipu {

using json = nlohmann::json;

namespace {

// The user's home as root sees it, symlinks resolved ("" if none).
std::string homeOf(uint32_t uid)
{
	struct passwd* pw = getpwuid(uid);
	if (!pw || !pw->pw_dir)
		return "";
	char* real = realpath(pw->pw_dir, nullptr);
	std::string out = real ? real : "";
	std::free(real);
	return out;
}

// Who asked: the real uid, and what sudo and the login session say.
std::string whoAsked()
{
	std::string who;
	uid_t uid = getuid();
	struct passwd* pw = getpwuid(uid);
	who = (pw ? std::string(pw->pw_name) : std::string("?")) + " (uid " + std::to_string(uid);
	if (const char* s = std::getenv("SUDO_USER"); s && *s)
		who += ", sudo from " + std::string(s);
	if (const char* l = getlogin(); l && *l)
		who += ", login " + std::string(l);
	return who + ")";
}

void audit(const std::string& line)
{
	std::fprintf(stderr, "pukaipu: %s\n", line.c_str());
	openlog("pukaipu", LOG_PID, LOG_AUTHPRIV);
	syslog(LOG_NOTICE, "%s", line.c_str());
	closelog();
}

} // namespace

Result<void> checkHostPathAsUser(MountGrant& m, uint32_t uid, uint32_t gid, const std::string& home,
				 const std::vector<std::string>& forbidden)
{
	// As inside the container: the user's ids, no supplementary groups. The
	// child answers "DEV INO RESOLVED" for the fd it opened.
	const std::string what = "grant '" + m.host + "': the check";
	TRY(found, runAsUser(uid, gid, what, [&]() -> Result<std::string> {
		TRY(fd, openGuardedSource(m.host.c_str(), forbidden));
		struct stat st;
		char real[PATH_MAX];
		const std::string link = "/proc/self/fd/" + std::to_string(fd->get());
		ssize_t n = readlink(link.c_str(), real, sizeof(real) - 1);
		if (fstat(fd->get(), &st) < 0 || n <= 0)
			return failErrno(errno, "grant '%s'", m.host.c_str());
		return std::to_string(st.st_dev) + " " + std::to_string(st.st_ino) + " " + std::string(real, (size_t)n);
	}));
	unsigned long long dev = 0, ino = 0;
	int used = 0;
	if (std::sscanf(found->c_str(), "%llu %llu %n", &dev, &ino, &used) != 2 || used <= 0)
		return fail("grant '%s': the check answered '%s'", m.host.c_str(), found->c_str());
	m.resolved = found->substr((size_t)used);
	m.dev = dev;
	m.ino = ino;
	// Every ancestor, as root would see it: one the user may write (or
	// owns, and so may chmod) would let the user put something else there.
	for (size_t slash = m.resolved.find('/', 1); slash != std::string::npos;
	     slash = m.resolved.find('/', slash + 1)) {
		const std::string dir = m.resolved.substr(0, slash);
		struct stat st;
		if (stat(dir.c_str(), &st) < 0)
			return failErrno(errno, "grant '%s': '%s'", m.host.c_str(), dir.c_str());
		const bool changeable = st.st_uid == uid || (st.st_mode & S_IWOTH) ||
					(st.st_gid == gid && (st.st_mode & S_IWGRP));
		const bool inHome = !home.empty() && (dir == home || startsWithDir(dir, home));
		if (changeable && !inHome)
			return fail("grant '%s'%s: refused, the user can change its folder '%s' (and so swap what is "
				    "granted); grant a folder whose parents only root can change, or one inside the home",
				    m.host.c_str(), m.resolved == m.host ? "" : (" (resolves to '" + m.resolved + "')").c_str(),
				    dir.c_str());
	}
	return {};
}

Result<GrantResult> changeGrants(const Paths& p, const GlobalConfig& g, const std::string& user, GrantOp op,
				 const std::string& kind, const std::string& value)
{
	TRY(lock, lockState(p));
	TRY(inst, loadInstanceConfig(p, user));
	InstanceConfig next = *inst;
	// network is the instance's own setting; everything else is in its grants.
	TRY(change, kind == "network" ? applyNetworkGrant(next.network, op, value)
				      : applyGrant(next.grants, op, kind, value));
	GrantResult res;
	res.change = *change;
	if (!change->changed)
		return res;
	if (op == GrantOp::Grant) {
		GrantFacts facts = probeGrantFacts(g.rootfs);
		if (kind == "mount") {
			TRY(parsed, parseMountGrant(value));
			const MountGrant& m = *parsed;
			UniqueFd root(open(g.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
			std::string mroot = mountRootOf(m.container);
			if (!root || !existsInRoot(root.get(), mroot.c_str(), true))
				return fail("mount: the rootfs '%s' has no '%s' to hold the mount point; use another of /mnt, "
					    "/media, /srv",
					    g.rootfs.c_str(), mroot.c_str());
			// Record what the path is now, in the grant just added.
			auto it = std::find(next.grants.mounts.begin(), next.grants.mounts.end(), m);
			if (it == next.grants.mounts.end())
				die("a mount grant just added is missing");
			std::string home = homeOf(next.uid);
			TRYV(checkHostPathAsUser(*it, next.uid, next.gid, home, forbiddenHostPaths(p, next.uid)));
		} else if (kind == "gpu" && next.grants.gpu) {
			if (facts.renderNodes.empty())
				return fail("gpu: this host has no GPU render nodes (/dev/dri/renderD*)");
			for (const auto& n : facts.renderNodes) {
				struct stat st;
				if (stat(n.c_str(), &st) == 0 && (st.st_mode & 06) != 06)
					res.warnings.push_back(n + " is not readable and writable by everyone (mode " +
							       std::to_string((st.st_mode >> 6 & 7) * 100 + (st.st_mode >> 3 & 7) * 10 +
									      (st.st_mode & 7)) +
							       "): inside, the user has no supplementary groups to open it with");
			}
		} else if (kind == "audio" && next.grants.audio) {
			if (!facts.audio) {
				std::string missing;
				for (const auto& m : facts.audioMissing)
					missing += (missing.empty() ? "" : ", ") + m;
				return fail("audio: the rootfs '%s' lacks %s; add them to its manifest and rebuild it",
					    g.rootfs.c_str(), missing.c_str());
			}
		} else if (kind == "downloads" || kind == "printing") {
			if (facts.policyPlaceholders.empty())
				res.warnings.push_back(std::string("the rootfs has no browser policy placeholder (") +
						       kPolicyPlaceholders[0] + "): only xpra's side of " + kind + " changes");
			if (kind == "printing" && next.grants.printing && !facts.cups)
				res.warnings.push_back("the rootfs has no CUPS (/usr/sbin/lpadmin; packages cups-client and "
						       "python3-cups): xpra cannot forward print jobs, the browser can still "
						       "print to PDF");
		}
	}
	TRYV(writeFileAtomic(p.instanceDir(user) + "/instance.json", json(next).dump(2) + "\n", 0644));
	return res;
}

json describeGrants(const GlobalConfig& g, const InstanceConfig& inst)
{
	const Grants& gr = inst.grants;
	json mounts = json::array();
	for (const auto& m : gr.mounts)
		mounts.push_back(m);
	auto item = [](const std::string& v, bool isDefault) { return json { { "value", v }, { "default", isDefault } }; };
	return json {
		{ "user", inst.user },
		{ "network", item(inst.network.empty() ? g.networkMode : inst.network, inst.network.empty()) },
		{ "clipboard", item(gr.clipboard, gr.clipboard == "off") },
		{ "downloads", item(onOff(gr.downloads), !gr.downloads) },
		{ "printing", item(onOff(gr.printing), !gr.printing) },
		{ "audio", item(onOff(gr.audio), !gr.audio) },
		{ "gpu", item(onOff(gr.gpu), !gr.gpu) },
		{ "mounts", mounts },
	};
}

std::string formatGrantsTable(const json& d)
{
	std::string out;
	char line[4200];
	std::snprintf(line, sizeof(line), "%-10s %s\n", "KIND", "VALUE");
	out += line;
	for (const char* k : { "network", "clipboard", "downloads", "printing", "audio", "gpu" }) {
		std::snprintf(line, sizeof(line), "%-10s %s%s\n", k, d[k]["value"].get<std::string>().c_str(),
			      d[k]["default"].get<bool>() ? " (default)" : "");
		out += line;
	}
	for (const auto& m : d["mounts"]) {
		std::snprintf(line, sizeof(line), "%-10s %s:%s:%s\n", "mount", m["host"].get<std::string>().c_str(),
			      m["container"].get<std::string>().c_str(), m["mode"].get<std::string>().c_str());
		out += line;
	}
	return out;
}

Result<void> cmdChangeGrant(const Paths& p, const GlobalConfig& g, GrantOp op, const std::string& user,
			    const std::string& kind, const std::string& value)
{
	const char* verb = op == GrantOp::Grant ? "grant" : "revoke";
	auto r = changeGrants(p, g, user, op, kind, value);
	if (!r)
		return failErrno(r.error().errno_, "%s %s %s %s: %s; nothing changed", verb, user.c_str(), kind.c_str(),
				 value.c_str(), r.error().what);
	for (const auto& w : r->warnings)
		std::fprintf(stderr, "pukaipu: warning: %s\n", w.c_str());
	if (!r->change.changed) {
		std::printf("unchanged: '%s' %s %s %s\n", user.c_str(),
			    op == GrantOp::Grant ? "already has" : "does not have", kind.c_str(), value.c_str());
		return {};
	}
	audit(std::string(verb) + " " + user + " " + kind + " " + value + " (" + r->change.what + ") by " + whoAsked() +
	      " at " + nowIso());
	std::printf("%s '%s' %s %s; it takes effect at the instance's next start\n",
		    op == GrantOp::Grant ? "granted" : "revoked", user.c_str(), kind.c_str(), value.c_str());
	return {};
}

Result<void> cmdListGrants(const Paths& p, const GlobalConfig& g, const std::string& user, bool asJson)
{
	TRY(inst, loadInstanceConfig(p, user));
	json d = describeGrants(g, *inst);
	std::fputs(asJson ? (d.dump(2) + "\n").c_str() : formatGrantsTable(d).c_str(), stdout);
	return {};
}

// What /proc/PID/status says of a process: PPid, the real uid, NSpid.
struct ProcFacts {
	pid_t ppid = -1;
	long uid = -1;
	std::vector<long> nsPids; // from this /proc's namespace down to the process's own
};

static ProcFacts procFacts(pid_t pid)
{
	ProcFacts f;
	auto text = readFileLimited("/proc/" + std::to_string(pid) + "/status", 64 << 10);
	if (!text)
		return f;
	std::istringstream in(*text);
	for (std::string line; std::getline(in, line);) {
		std::istringstream l(line);
		std::string key;
		l >> key;
		if (key == "PPid:")
			l >> f.ppid;
		else if (key == "Uid:")
			l >> f.uid;
		else if (key == "NSpid:")
			for (long n; l >> n;)
				f.nsPids.push_back(n);
	}
	return f;
}

// Is the server listening behind pathFd (an O_PATH fd of the attach socket)
// this instance's xpra? The attach directory is the user's and bound into the
// desktop, so any process of the desktop (same uid) can put its own socket
// there; a fake server would get what the owner's client gives a server (the
// clipboard whatever the grants say, files, the user's trust in its windows).
// xpra is PID 2 of the container (xpra-session is exec'd there), one PID
// namespace below the desktop's pukaipu-run, a root process whose PID is in
// RUN_DIR/USER/pid (RuntimePaths::desktopRecord; RUN_DIR/USER is root's, so
// nobody else writes it). No other process of the desktop is PID 2 of that
// namespace while xpra lives, a namespace it makes below is one level deeper,
// and a --shell's PID 2 descends from another pukaipu-run (shell-PID.pid).
static Result<pid_t> attachServer(int pathFd, const std::string& runUserDir)
{
	std::string via = "/proc/self/fd/" + std::to_string(pathFd);
	UniqueFd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	sockaddr_un a {};
	a.sun_family = AF_UNIX;
	std::snprintf(a.sun_path, sizeof a.sun_path, "%s", via.c_str());
	if (!s || connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
		return failErrno(errno, "connect");
	ucred cr {};
	socklen_t len = sizeof cr;
	if (getsockopt(s.get(), SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return failErrno(errno, "SO_PEERCRED");
	pid_t launcher = -1;
	const std::string record = runUserDir + "/pid";
	struct stat st;
	if (lstat(record.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0)
		if (auto text = readFileLimited(record, 64))
			launcher = pid_t(std::atoi(text->c_str()));
	ProcFacts server = procFacts(cr.pid);
	if (launcher > 1 && server.nsPids.size() >= 2 && server.nsPids.back() == 2) {
		pid_t up = server.ppid;
		for (int depth = 0; depth < 4 && up > 1; depth++) {
			ProcFacts f = procFacts(up);
			if (up == launcher)
				if (f.uid == 0 && f.nsPids.size() + 1 == server.nsPids.size())
					return pid_t(cr.pid);
			up = f.ppid;
		}
	}
	return fail("its server (pid %d) is not this desktop's xpra", int(cr.pid));
}

Error execAttach(const Paths& p, const std::string& user, const std::vector<std::string>& extra)
{
	if (!validUserName(user))
		return makeError(0, "'%s' is not a valid user name", user.c_str());
	const std::string dir = attachDirFor(p.runDir + "/" + user);
	const std::string sock = dir + "/socket";
	struct passwd* pw = getpwnam(user.c_str());
	uid_t me = getuid();
	// Not root either: the server on that socket runs inside the sandbox
	// (the untrusted side), and root's client would take its clipboard, its
	// windows' requests and an mmap file in a directory the user controls
	// with root's rights. The user's own client has nothing more to lose.
	if (me == 0)
		return makeError(0, "attach to '%s': not as root (the desktop is the sandboxed side); as the user: "
				    "runuser -u %s -- pukaipu attach %s",
				 user.c_str(), user.c_str(), user.c_str());
	if (!pw || pw->pw_uid != me)
		return makeError(EACCES, "attach to '%s': only %s can open that desktop", user.c_str(), user.c_str());
	struct stat st;
	if (stat(sock.c_str(), &st) < 0) {
		if (errno == EACCES)
			return makeError(EACCES, "attach to '%s': only %s can open that desktop", user.c_str(),
					 user.c_str());
		if (errno == ENOENT)
			return makeError(0, "attach to '%s': it is not running (no socket at '%s'; start it with: "
					    "systemctl start pukaipu@%s)",
					 user.c_str(), sock.c_str(), user.c_str());
		return makeError(errno, "attach to '%s': '%s'", user.c_str(), sock.c_str());
	}
	if (!S_ISSOCK(st.st_mode))
		return makeError(0, "attach to '%s': '%s' is not a socket", user.c_str(), sock.c_str());
	if (access(sock.c_str(), R_OK | W_OK) < 0)
		return makeError(errno, "attach to '%s': only %s can open that desktop", user.c_str(),
				 user.c_str());
	// Order (the desktop can swap the socket at any moment): (1) pin the
	// socket's inode with an O_PATH fd, (2) check the server behind that
	// inode, (3) give the client that same inode (/proc/self/fd/N, kept open
	// across exec), never the path again. A swap after (1) reaches nobody.
	int pinned = open(sock.c_str(), O_PATH | O_NOFOLLOW);
	struct stat pst;
	if (pinned < 0 || fstat(pinned, &pst) < 0 || !S_ISSOCK(pst.st_mode))
		return makeError(0, "attach to '%s': '%s' is not a socket", user.c_str(), sock.c_str());
	if (auto server = attachServer(pinned, p.runDir + "/" + user); !server)
		return server.error().wrap("attach to '%s': not connecting to '%s'", user.c_str(), sock.c_str());
	// The mmap file goes into the shared directory (same path inside).
	setenv("XPRA_MMAP_DIR", dir.c_str(), 1);
	std::vector<std::string> args = { "xpra", "attach", "socket:///proc/self/fd/" + std::to_string(pinned),
					   "--mmap=yes", "--open-files=no", "--open-url=no" };
	args.insert(args.end(), extra.begin(), extra.end());
	std::vector<char*> argv;
	for (auto& a : args)
		argv.push_back(a.data());
	argv.push_back(nullptr);
	execvp("xpra", argv.data());
	return makeError(errno, "run the local xpra client (install the package xpra)");
}

} // namespace pukaipu
