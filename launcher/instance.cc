#include "instance.h"

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <dirent.h>
#include <optional>
#include <string_view>
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file_io.h"
#include "base/unique_fd.h"
#include "grants.h"
#include "sandbox/cgroup.h"
#include "sandbox/mounts.h"
#include "sandbox/seccomp_profile.h"

namespace pukaipu {

using json = nlohmann::json;

RuntimePaths RuntimePaths::forUser(const Paths& p, const std::string& user)
{
	RuntimePaths r;
	r.dir = p.runDir + "/" + user;
	r.passwd = r.dir + "/passwd";
	r.group = r.dir + "/group";
	r.socket = r.dir + "/desktop.sock";
	return r;
}

namespace {

// PID from a record, if that process is a pukaipu-run now.
std::optional<pid_t> liveLauncher(const std::string& record)
{
	auto text = readFileLimited(record, 64);
	if (!text)
		return std::nullopt;
	char* end = nullptr;
	long pid = std::strtol(text->c_str(), &end, 10);
	if (pid <= 0 || pid > INT32_MAX || (*end != '\n' && *end != '\0'))
		return std::nullopt;
	char exe[4096];
	const std::string link = "/proc/" + std::to_string(pid) + "/exe";
	ssize_t n = readlink(link.c_str(), exe, sizeof(exe) - 1);
	if (n <= 0)
		return std::nullopt;
	std::string_view target(exe, (size_t)n);
	constexpr std::string_view name = "/pukaipu-run";
	if (target.size() < name.size() || target.substr(target.size() - name.size()) != name)
		return std::nullopt;
	return (pid_t)pid;
}

} // namespace

std::vector<pid_t> liveLaunchers(const RuntimePaths& rt, bool desktopOnly)
{
	std::vector<pid_t> out;
	if (auto pid = liveLauncher(rt.desktopRecord()))
		out.push_back(*pid);
	if (desktopOnly)
		return out;
	UniqueFd dirFd(open(rt.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	DIR* d = dirFd ? fdopendir(dirFd.release()) : nullptr;
	if (!d)
		return out;
	while (struct dirent* e = readdir(d)) {
		std::string_view n(e->d_name);
		if (n.rfind("shell-", 0) == 0 && n.size() > 10 && n.substr(n.size() - 4) == ".pid")
			if (auto pid = liveLauncher(rt.dir + "/" + e->d_name))
				out.push_back(*pid);
	}
	closedir(d);
	return out;
}

Result<UserInfo> checkInstanceUser(const GlobalConfig& g, const InstanceConfig& inst)
{
	struct passwd pw, *res = nullptr;
	char buf[4096];
	int rc = getpwnam_r(inst.user.c_str(), &pw, buf, sizeof(buf), &res);
	if (rc != 0 || !res)
		return failErrno(rc, "user '%s': not found on this host", inst.user.c_str());
	UserInfo u { pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, pw.pw_gecos ? pw.pw_gecos : "" };
	if (u.uid != inst.uid || u.gid != inst.gid)
		return fail("user '%s': uid/gid %u/%u on this host, but the instance was created for %u/%u",
			    u.name.c_str(), u.uid, u.gid, inst.uid, inst.gid);
	if (!g.uids.contains(u.uid))
		return fail("user '%s': uid %u is outside the configured range %u-%u", u.name.c_str(), u.uid,
			    g.uids.first, g.uids.last);
	struct stat st;
	// lstat: the home itself must be a directory, not a symlink to one.
	if (lstat(u.home.c_str(), &st) < 0)
		return failErrno(errno, "home of '%s' ('%s')", u.name.c_str(), u.home.c_str());
	if (!S_ISDIR(st.st_mode) || st.st_uid != u.uid)
		return fail("home of '%s' ('%s') must be a directory owned by uid %u", u.name.c_str(), u.home.c_str(),
			    u.uid);
	return u;
}

json composeSpec(const GlobalConfig& g, const InstanceConfig& inst, const UserInfo& u, const RuntimePaths& rt,
		 SessionKind kind, const std::string& term, const GrantEffect& grants, const json& seccomp)
{
	const std::string uid = std::to_string(u.uid);
	const std::string runUser = "/run/user/" + uid;
	json env = json::array({
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + std::string(kContainerHome),
		"USER=" + u.name,
		"LOGNAME=" + u.name,
		"LANG=C.UTF-8",
		"XDG_RUNTIME_DIR=" + runUser,
		"XDG_CONFIG_HOME=" + std::string(kContainerHome) + "/.config",
		"XDG_CACHE_HOME=" + std::string(kContainerHome) + "/.cache",
		"PUKAIPU_INSTANCE=" + u.name,
		"PUKAIPU_FQDN=" + inst.fqdn,
	});
	json args;
	if (kind == SessionKind::Desktop) {
		args = g.sessionCommand;
		// The listening socket is fd 3, a Unix socket of the host that
		// only the front door reaches: xpra serves plain HTTP/WebSocket on
		// it. The payload is always PID 2 in its PID namespace (PID 1 is
		// pukaipu-run's reaper), and xpra accepts socket activation only
		// when LISTEN_PID is its own PID.
		env.push_back("LISTEN_FDS=1");
		env.push_back("LISTEN_PID=2");
		env.push_back("XPRA_SD_SOCKET_TYPE=unix-domain");
		if (uint32_t idle = effectiveIdleSeconds(g, inst); idle > 0) // scale to zero: xpra --server-idle-timeout
			env.push_back("PUKAIPU_IDLE_TIMEOUT=" + std::to_string(idle));
	} else {
		args = g.shellCommand;
		env.push_back("TERM=" + (term.empty() ? std::string("xterm-256color") : term));
		env.push_back("SHELL=" + g.shellCommand[0]);
	}

	auto tmpfs = [](const std::string& dest, const std::string& opts) {
		json o = json::array({ "nosuid", "nodev" });
		for (size_t a = 0, b; a < opts.size(); a = b + 1) {
			b = opts.find(',', a);
			if (b == std::string::npos)
				b = opts.size();
			o.push_back(opts.substr(a, b - a));
		}
		return json { { "destination", dest }, { "type", "tmpfs" }, { "source", "tmpfs" }, { "options", o } };
	};
	auto bind = [](const std::string& src, const std::string& dest, bool ro) {
		return json { { "destination", dest },
			      { "type", "bind" },
			      { "source", src },
			      { "options", json::array({ "rbind", ro ? "ro" : "rw", "nosuid", "nodev" }) } };
	};

	// Order matters: a mount point must exist before something is mounted
	// on it, and tmpfs mounts come before what is mounted inside them.
	json mounts = json::array({
		{ { "destination", "/proc" }, { "type", "proc" }, { "source", "proc" },
		  { "options", { "nosuid", "nodev", "noexec" } } },
		tmpfs("/dev", "noexec,strictatime,mode=755,size=64k"),
		{ { "destination", "/dev/pts" }, { "type", "devpts" }, { "source", "devpts" },
		  { "options", { "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620" } } },
		tmpfs("/dev/shm", "noexec,mode=1777,size=" + g.shmSize),
		{ { "destination", "/dev/mqueue" }, { "type", "mqueue" }, { "source", "mqueue" },
		  { "options", { "nosuid", "nodev", "noexec" } } },
		{ { "destination", "/sys" }, { "type", "sysfs" }, { "source", "sysfs" },
		  { "options", { "nosuid", "nodev", "noexec", "ro" } } },
		tmpfs("/tmp", "mode=1777,size=" + g.tmpSize),
		// Xvfb as a user cannot create /tmp/.X11-unix; without it, X listens
		// only on the abstract socket, reachable from the whole netns.
		tmpfs("/tmp/.X11-unix", "mode=1777,size=1m"),
		tmpfs("/run", "noexec,mode=755,size=16m"),
		tmpfs(runUser, "mode=700,size=" + g.runtimeDirSize),
		bind(u.home, kContainerHome, false),
		bind(rt.passwd, "/etc/passwd", true),
		bind(rt.group, "/etc/group", true),
	});
	// Grants (grants.h) and local attach: after everything above, so the
	// tmpfs mounts they go into exist. Mount grants are guarded at start
	// (composeInstance marks them with guardBind on the parsed spec).
	for (const auto& m : grants.mounts)
		mounts.push_back(m);
	for (const auto& e : grants.env)
		env.push_back(e);

	json spec = {
		{ "ociVersion", "1.0.2" },
		{ "process",
		  {
			  { "terminal", kind == SessionKind::Shell },
			  { "user", { { "uid", u.uid }, { "gid", u.gid } } },
			  { "args", args },
			  { "env", env },
			  { "cwd", kContainerHome },
			  // No core dumps into the home. LimitNOFILE= comes from the
			  // unit; memory, CPU and tasks: linux.resources (composeInstance).
			  { "rlimits", json::array({ { { "type", "RLIMIT_CORE" }, { "soft", 0 }, { "hard", 0 } } }) },
			  { "noNewPrivileges", true },
		  } },
		{ "root", { { "path", g.rootfs }, { "readonly", true } } },
		{ "hostname", "pukaipu-" + u.name },
		{ "mounts", mounts },
		{ "linux",
		  {
			  { "namespaces", json::array({ { { "type", "user" } }, { { "type", "mount" } }, { { "type", "pid" } },
							{ { "type", "ipc" } }, { { "type", "uts" } },
							{ { "type", "network" } }, { { "type", "cgroup" } } }) },
			  { "uidMappings", json::array({ { { "containerID", u.uid }, { "hostID", u.uid }, { "size", 1 } } }) },
			  { "gidMappings", json::array({ { { "containerID", u.gid }, { "hostID", u.gid }, { "size", 1 } } }) },
			  { "maskedPaths",
			    { "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
			      "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
			      "/sys/kernel/debug", "/sys/kernel/security" } },
			  { "readonlyPaths", { "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger" } },
		  } },
	};
	if (!g.apparmorProfile.empty())
		spec["process"]["apparmorProfile"] = g.apparmorProfile;
	if (!seccomp.is_null())
		spec["linux"]["seccomp"] = seccomp;
	return spec;
}

Result<NetworkOptions> networkOptionsFrom(const std::string& mode, bool allowHost, const std::string& pool,
					  const std::vector<std::string>& allow, const std::vector<std::string>& dns)
{
	NetworkOptions net;
	TRY_CTX(m, parseNetworkMode(mode), "--network");
	net.mode = *m;
	net.allowHost = allowHost;
	if (!pool.empty()) {
		TRY_CTX(p, parseIpv4Net(pool), "--network-pool");
		net.pool = *p;
	}
	for (const auto& a : allow) {
		TRY_CTX(n, parseIpv4Net(a), "--network-allow");
		net.allow.push_back(*n);
	}
	for (const auto& d : dns) {
		TRY_CTX(a, parseIpv4(d), "--dns");
		net.nameservers.push_back(*a);
	}
	if (net.mode != NetworkMode::Egress && (!pool.empty() || !allow.empty() || !dns.empty()))
		return fail("--network-pool, --network-allow and --dns need --network egress");
	return net;
}

namespace {

// linux.resources for an instance's limits (systemd syntax: "25%" is of the RAM).
Result<json> instanceResources(const Limits& l)
{
	json r = json::object();
	if (!l.memory.empty()) {
		TRY(bytes, memoryBytes(l.memory, (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE)));
		r["memory"] = { { "limit", *bytes } };
	}
	if (l.tasks > 0)
		r["pids"] = { { "limit", l.tasks } };
	if (l.cpus > 0)
		r["cpu"] = { { "quota", std::max<long long>(1000, std::llround(l.cpus * 100000)) }, { "period", 100000 } };
	return r;
}

bool inUnitCgroup(const std::string& user)
{
	auto text = readFileLimited("/proc/self/cgroup", 64 << 10);
	if (!text)
		return false;
	const std::string unit = "/pukaipu@" + user + ".service";
	for (const auto& [ctrl, path] : parseProcCgroup(*text))
		if ((ctrl.empty() || ctrl == "name=systemd") && path.size() >= unit.size() &&
		    path.compare(path.size() - unit.size(), unit.size(), unit) == 0)
			return true;
	return false;
}

} // namespace

Result<InstanceStart> composeInstance(const Paths& paths, const InstanceRequest& req)
{
	InstanceStart s;
	TRY(global, loadGlobalConfig(paths));
	TRY(inst, loadInstanceConfig(paths, req.user));
	TRY(who, checkInstanceUser(*global, *inst));
	s.inst = std::move(*inst);
	s.user = std::move(*who);
	s.rt = RuntimePaths::forUser(paths, req.user);
	// `current` is resolved here, once: everything below (grant facts, the
	// spec's root.path) sees the same generation, whatever a build does meanwhile.
	TRY(gen, resolveRootfs(global->rootfs));
	s.rootfs = std::move(*gen);
	global->rootfs = s.rootfs.path;

	TRY_CTX(policy, parseAppArmorPolicy(req.apparmorPolicy.empty() ? global->apparmorPolicy : req.apparmorPolicy),
		"--apparmor");
	s.opts.apparmorPolicy = *policy;
	// AppArmor is decided here, once for this start: with policy 'optional'
	// on a host where the profile cannot apply, the spec leaves it out (and
	// says so once), so --print-spec shows what really runs and that spec
	// runs unchanged under crun. prepare() then finds no profile to decide on.
	std::string aaWarning;
	TRY(aa, checkAppArmor(global->apparmorProfile, s.opts.apparmorPolicy, aaWarning));
	if (!*aa)
		global->apparmorProfile.clear();
	if (!aaWarning.empty())
		s.warnings.push_back(aaWarning);
	s.opts.graceSeconds = req.graceSeconds >= 0 ? req.graceSeconds : global->graceSeconds;
	s.opts.seccompCacheDir = req.seccompCacheDir;
	// The instance's network: its own mode, else the global default.
	TRY_CTX(net,
		networkOptionsFrom(s.inst.network.empty() ? global->networkMode : s.inst.network,
				   global->allowHostNetwork, "", global->allowedCidrs, global->dns),
		"configuration: network");
	s.opts.network = std::move(*net);
	const bool desktop = req.kind == SessionKind::Desktop;
	s.opts.preserveFds = desktop ? 1 : 0; // the listening socket, fd 3
	s.opts.isolateStdio = desktop;        // the shell has its own pty

	// Grants: what cannot apply here is a warning; mount grants become
	// guarded binds (checked and mounted through one fd by the child, as
	// the user).
	GrantEffect ge = grantEffect(s.inst, probeGrantFacts(global->rootfs), s.rt.dir, desktop);
	s.warnings.insert(s.warnings.end(), ge.warnings.begin(), ge.warnings.end());
	json seccomp;
	if (!global->seccompProfile.empty()) {
		TRY(profile, readSeccompFile(global->seccompProfile)); // "seccomp profile: ..." names the file
		seccomp = std::move(*profile);
	}
	s.specJson = composeSpec(*global, s.inst, s.user, s.rt, req.kind, req.term, ge, seccomp);
	// Memory, CPU and task limits as the spec's linux.resources (what
	// --print-spec shows; crun would apply them the same way).
	TRY(resources, instanceResources(effectiveLimits(*global, s.inst)));
	if (!resources->empty())
		s.specJson["linux"]["resources"] = std::move(*resources);
	// Who enforces them. pukaipu@USER.service gets them from its drop-in
	// (MemoryMax=, CPUQuota=, TasksMax=; systemd's own cgroup for the unit),
	// and under cgroup v2 pukaipu-run could not make a child cgroup with
	// controllers there anyway (the service's cgroup holds pukaipu-run:
	// the no-internal-process rule). So when /proc/self/cgroup names that
	// unit, the sandbox only checks that the unit's cgroup enforces at
	// most these limits (a stale drop-in is refused, never trusted);
	// anywhere else pukaipu-run makes a cgroup of the session's own.
	// Only systemd or root can put a process into a cgroup of that name,
	// and the check reads the limits, so a misnamed cgroup cannot pass.
	s.opts.limitsFromOwnCgroup = inUnitCgroup(req.user);
	s.opts.cgroupName = req.user + "-" + std::to_string(getpid());
	// The composed spec goes through the same parser as any bundle.
	TRY(spec, parseSpec(s.specJson, "/"));
	const auto forbidden = forbiddenHostPaths(paths, s.user.uid);
	for (const auto& m : s.inst.grants.mounts) {
		if (m.resolved.empty() || (m.dev == 0 && m.ino == 0))
			return fail("grant '%s:%s' was made by an older pukaipu and has no recorded identity; grant it "
				    "again: pukaipu revoke %s mount %s && pukaipu grant %s mount %s",
				    m.host.c_str(), m.container.c_str(), req.user.c_str(), m.container.c_str(),
				    req.user.c_str(), formatMountGrant(m).c_str());
		TRYV(guardBind(*spec, m.container, forbidden, FileIdentity { m.dev, m.ino }));
	}
	s.spec = std::move(*spec);
	s.global = std::move(*global);
	return s;
}

namespace {

std::string passwdFile(const UserInfo& u)
{
	// Only what the session needs: root (for tools that look it up), the
	// user with HOME=/data/home, and nobody (what unmapped ids show as).
	return "root:x:0:0:root:/root:/usr/sbin/nologin\n" + u.name + ":x:" + std::to_string(u.uid) + ":" +
	       std::to_string(u.gid) + ":" + u.gecos + ":" + kContainerHome +
	       ":/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
}

std::string groupFile(const UserInfo& u)
{
	return "root:x:0:\n" + u.name + ":x:" + std::to_string(u.gid) + ":\nnogroup:x:65534:\n";
}

} // namespace

// Earlier versions put copies of the instance's certificates here for xpra,
// the key owned by the user. TLS ends at the front door now: no copy of a
// private key may stay where the user can read it.
Result<void> removeOldTlsCopies(const std::string& runUserDir)
{
	const std::string dir = runUserDir + "/tls";
	for (const char* name : { "server.key", "server.crt", "client-ca.crt" })
		if (unlink((dir + "/" + name).c_str()) < 0 && errno != ENOENT)
			return failErrno(errno, "remove '%s/%s'", dir.c_str(), name);
	if (rmdir(dir.c_str()) < 0 && errno != ENOENT)
		return failErrno(errno, "remove '%s'", dir.c_str());
	return {};
}

Result<void> writeRuntimeFiles(const Paths& p, const InstanceConfig& inst, const UserInfo& u, const RuntimePaths& rt)
{
	TRYV(ensureRootDir(p.runDir, 0755));
	TRYV(ensureRootDir(rt.dir, 0755));
	TRYV(removeOldTlsCopies(rt.dir));
	TRYV(writeFileAtomic(rt.passwd, passwdFile(u), 0644));
	TRYV(writeFileAtomic(rt.group, groupFile(u), 0644));
	TRYV(writeGrantRuntimeFiles(inst, rt.dir)); // browser policy, attach directory
	return {};
}

} // namespace pukaipu
