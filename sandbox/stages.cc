// The order of a container's start. Read this file top to bottom: each step
// says why it is where it is. The parent runs as host root; the child starts
// in fresh user, mount, pid, ipc, uts, net and cgroup namespaces.
#include "stages.h"

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caps.h"
#include "reach.h"
#include "reaper.h"
#include "supervisor.h"
#include "sync.h"

namespace pukaipu {

namespace {

constexpr int kSyncFd = 1000; // moved above any fd the payload may be given

// --- small parent helpers --------------------------------------------------

Result<void> writeProcFile(pid_t pid, const char* name, const std::string& data)
{
	char path[64];
	std::snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return failErrno(errno, "open '%s'", path);
	UniqueFd f(fd);
	const ssize_t n = write(fd, data.data(), data.size());
	if (n < 0)
		return failErrno(errno, "write '%s'", path);
	if ((size_t)n != data.size()) // id maps must be written in one write()
		return fail("write '%s': short write (%zd of %zu bytes)", path, n, data.size());
	return {};
}

Result<void> assertSingleThreaded()
{
	// clone3 copies only the calling thread; a lock held by another thread
	// would stay locked forever in the child. Checked, not assumed.
	struct stat st;
	if (stat("/proc/self/task", &st) < 0)
		return failErrno(errno, "stat /proc/self/task");
	if (st.st_nlink != 3)
		return fail("pukaipu-run must be single-threaded before clone3 (found %lu threads)",
			    (unsigned long)st.st_nlink - 2);
	return {};
}

// --- the child half ----------------------------------------------------------

[[noreturn]] void childFail(int sync, MsgKind kind, const Error& e) noexcept
{
	SyncMsg m;
	m.kind = kind;
	m.error = e;
	(void)sendMsg(sync, m);
	_exit(kExitSetupFailed);
}

#define CHILD_TRY(expr) \
	do { \
		auto r_ = (expr); \
		if (!r_) \
			childFail(kSyncFd, MsgKind::SetupError, r_.error()); \
	} while (0)
#define CHILD_SYS(call, ...) \
	do { \
		if ((call) < 0) \
			childFail(kSyncFd, MsgKind::SetupError, makeError(errno, __VA_ARGS__)); \
	} while (0)

Result<void> loopbackUp() noexcept
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return failErrno(errno, "network: socket");
	UniqueFd sock(s);
	struct ifreq ifr {};
	std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return failErrno(errno, "network: get flags of lo");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		return failErrno(errno, "network: bring lo up");
	return {};
}

// Finds args[0] on the spec's PATH and execs it. Returns only on failure,
// with the errno that explains best (ENOENT unless a candidate existed).
int execPayload(const Spec& s, char* const* argv, char* const* envp) noexcept
{
	const char* file = argv[0];
	if (std::strchr(file, '/')) {
		execve(file, argv, envp);
		return errno;
	}
	const char* path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (const auto& e : s.process.env)
		if (e.rfind("PATH=", 0) == 0)
			path = e.c_str() + 5;
	int best = ENOENT;
	for (const char* p = path;; p++) {
		const char* end = std::strchr(p, ':');
		size_t len = end ? (size_t)(end - p) : std::strlen(p);
		char cand[PATH_MAX];
		if (std::snprintf(cand, sizeof(cand), "%.*s/%s", (int)len, len ? p : ".", file) < (int)sizeof(cand)) {
			execve(cand, argv, envp);
			if (errno != ENOENT && errno != ENOTDIR)
				best = errno;
		}
		if (!end)
			break;
		p = end;
	}
	return best;
}

struct ChildArgs {
	const Prepared* p;
	const RunOptions* opts;
	char* const* argv;
	char* const* envp;
	const sigset_t* origMask;
};

[[noreturn]] void childMain(const ChildArgs& a) noexcept
{
	const Spec& s = a.p->spec;
	const int sync = kSyncFd;

	// 0. If the launcher dies (even by SIGKILL), so does the container.
	//    Nothing to report to yet (the parent reads after step 1): die.
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		die("PR_SET_PDEATHSIG");

	// 1. Wait until the parent has written setgroups=deny, gid_map, uid_map.
	{
		SyncMsg go;
		auto r = recvMsg(sync, go, nullptr);
		if (!r || !*r || go.kind != MsgKind::Go)
			_exit(kExitSetupFailed); // parent gone or failed: it reports
	}

	// 2. Become the spec's user now, before any mount work. Host root is not
	//    mapped in this namespace, so the kernel does not clear our
	//    capabilities on this switch (they are dropped explicitly in step 11),
	//    and from here every file we create (mount points in our tmpfs) is
	//    owned by a mapped id, while host paths are looked up with the
	//    user's own permissions. Supplementary groups were cleared by the
	//    parent (setgroups is denied in here).
	//    The gid first: it is the uid that carries the right to change it.
	CHILD_SYS(setresgid(s.process.gid, s.process.gid, s.process.gid), "setresgid %u", s.process.gid);
	CHILD_SYS(setresuid(s.process.uid, s.process.uid, s.process.uid), "setresuid %u", s.process.uid);
	// A credential change clears the parent-death signal: set it again, then
	// make sure the parent did not die in between.
	CHILD_SYS(prctl(PR_SET_PDEATHSIG, SIGKILL), "PR_SET_PDEATHSIG");
	{
		struct pollfd pf { sync, POLLRDHUP, 0 };
		if (poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP)))
			_exit(kExitSetupFailed);
	}
	if (getgroups(0, nullptr) != 0)
		die("supplementary groups survived into the container");

	// 3. Nothing we mount may propagate back to the host; host unmounts
	//    (e.g. of /home) still propagate in.
	CHILD_SYS(mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr), "make / a slave mount");

	// 4. The rootfs must be a mount point for pivot_root: bind it onto itself.
	CHILD_SYS(mount(s.rootPath.c_str(), s.rootPath.c_str(), nullptr, MS_BIND | MS_REC, nullptr),
		  "bind rootfs '%s'", s.rootPath.c_str());
	int rootFd = open(s.rootPath.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
	CHILD_SYS(rootFd, "open rootfs '%s'", s.rootPath.c_str());

	// 5. Mounts from the spec, in its order, while host paths (bind sources,
	//    the host's /dev nodes) are still reachable. Destinations resolve
	//    inside the rootfs only. Guarded binds (a user's mount grants) are
	//    resolved and checked here, as the user (step 2), and the checked
	//    fd is what gets mounted: no window between check and mount.
	for (const auto& m : a.p->mounts)
		CHILD_TRY(mountInChild(rootFd, m));

	// 6. Masked and read-only paths: after the mounts (they mostly live in
	//    /proc and /sys), before the root becomes read-only.
	for (const auto& m : s.maskedPaths)
		CHILD_TRY(maskPathInChild(rootFd, m));
	for (const auto& m : s.readonlyPaths)
		CHILD_TRY(readonlyPathInChild(rootFd, m));

	// 7. Root read-only last among the mounts: creating mount points above
	//    needed it writable where it is a tmpfs; the rootfs itself is never written.
	//    The root is also nosuid and nodev whatever the spec says: no_new_privs
	//    already neuters setuid files, this is the second layer.
	CHILD_TRY(remountWith(rootFd, MS_NOSUID | MS_NODEV | (s.rootReadonly ? MS_RDONLY : 0), "/"));

	// 8. pivot_root, never chroot: the kernel refuses new user namespaces to
	//    a chrooted process, and Chromium's sandbox needs them. Stacking the
	//    old root under the new one and detaching it leaves no host path.
	CHILD_SYS(fchdir(rootFd), "chdir to rootfs");
	CHILD_SYS(syscall(SYS_pivot_root, ".", "."), "pivot_root");
	CHILD_SYS(umount2(".", MNT_DETACH), "detach the old root");
	CHILD_SYS(chdir("/"), "chdir /");
	close(rootFd);

	// 9. Loopback up (egress, if any, is wired by the parent); hostname.
	//    With egress, the generated resolv.conf goes over /etc/resolv.conf
	//    (needs CAP_SYS_ADMIN in our userns, which step 11 drops).
	CHILD_TRY(loopbackUp());
	CHILD_TRY(networkInChild(a.opts->network));
	if (!s.hostname.empty())
		CHILD_SYS(sethostname(s.hostname.c_str(), s.hostname.size()), "sethostname '%s'",
			  s.hostname.c_str());

	// 10. A terminal from the container's own devpts; the master goes to the parent.
	UniqueFd ptySlave;
	if (s.process.terminal) {
		auto master = openContainerPty(&ptySlave);
		if (!master)
			childFail(sync, MsgKind::SetupError, master.error());
		SyncMsg m;
		m.kind = MsgKind::PtyMaster;
		CHILD_TRY(sendMsg(sync, m, master->get()));
	}

	// 11. Give up every capability, in every set, and check it.
	//     (rlimits were set by the parent with prlimit: raising a hard limit
	//     needs CAP_SYS_RESOURCE in the host namespace, which only it has.)
	CHILD_TRY(dropAllCapabilities());

	// 12. no_new_privs: no setuid bit or file capability can give anything
	//     back, and it lets an unprivileged process install seccomp.
	CHILD_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs");
	PUKAIPU_CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);

	// 13. Fork the payload; this process stays as PID 1, the reaper.
	pid_t payload = fork();
	CHILD_SYS(payload, "fork the payload");
	if (payload > 0) {
		close(sync);
		ptySlave.reset();
		// The reaper gets the same filter: it never needs more than the payload.
		if (a.p->seccomp && !installSeccomp(*a.p->seccomp))
			_exit(kExitSetupFailed);
		reapUntilPayloadExits(payload);
	}

	// --- the payload ---
	// 14. Default signal handling and the launcher's original signal mask.
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigprocmask(SIG_SETMASK, a.origMask, nullptr);
	if (ptySlave) {
		CHILD_SYS(setsid(), "setsid");
		CHILD_SYS(ioctl(ptySlave.get(), TIOCSCTTY, 0), "make the pty the controlling terminal");
		for (int fd = 0; fd < 3; fd++)
			CHILD_SYS(dup2(ptySlave.get(), fd), "dup2 pty");
		ptySlave.reset();
	}
	CHILD_SYS(chdir(s.process.cwd.c_str()), "chdir to process.cwd '%s'", s.process.cwd.c_str());

	// 15. AppArmor applies at the execve below.
	if (a.p->applyAppArmor)
		CHILD_TRY(changeProfileOnExec(s.process.apparmorProfile.c_str()));

	// 16. Close every fd except 0-2 and the ones passed in. The sync socket
	//     is kept until execve (O_CLOEXEC) so an exec failure can be reported.
	unsigned first = 3u + (unsigned)a.opts->preserveFds;
	for (int fd = 3; fd < (int)first; fd++)
		CHILD_SYS(fcntl(fd, F_SETFD, 0), "pass fd %d", fd);
	CHILD_SYS(syscall(SYS_close_range, first, kSyncFd - 1, 0), "close stray fds");
	CHILD_SYS(syscall(SYS_close_range, kSyncFd + 1, ~0U, 0), "close stray fds");

	// 17. seccomp last: everything above may use syscalls the filter denies.
	if (a.p->seccomp)
		CHILD_TRY(installSeccomp(*a.p->seccomp));

	// 18. exec. On failure tell the parent why (not a silent 127).
	int err = execPayload(s, a.argv, a.envp);
	SyncMsg m;
	m.kind = MsgKind::ExecError;
	m.error = makeError(err, "exec '%s'", s.process.args[0].c_str());
	(void)sendMsg(sync, m);
	_exit(err == ENOENT ? kExitNotFound : kExitCannotExec);
}

} // namespace

Result<Prepared> prepare(Spec spec, const RunOptions& opts)
{
	Prepared p;
	p.warnings = spec.warnings;
	struct stat st;
	if (stat(spec.rootPath.c_str(), &st) < 0)
		return failErrno(errno, "root.path '%s'", spec.rootPath.c_str());
	if (!S_ISDIR(st.st_mode))
		return fail("root.path '%s': not a directory", spec.rootPath.c_str());
	if (opts.checkTrustedPaths) {
		auto r = checkTrustedPath(spec.rootPath);
		if (!r)
			return fail("root.path: %s", r.error().message().c_str());
	}
	auto plan = planMounts(spec, p.warnings);
	if (!plan)
		return tl::unexpected(plan.error());
	p.mounts = std::move(*plan);
	for (const auto& dest : opts.guardedDestinations) {
		size_t found = 0;
		for (auto& m : p.mounts) {
			if (m.destination != dest)
				continue;
			if (!(m.flags & MS_BIND))
				return fail("guarded mount '%s': not a bind mount", dest.c_str());
			m.guarded = true;
			m.flags &= ~(unsigned long)MS_REC; // never recursive: see MountPlan::guarded
			m.forbidden = opts.guardedForbidden;
			found++;
		}
		if (found != 1)
			return fail("guarded mount '%s': %zu bind mounts with that destination, expected 1", dest.c_str(),
				    found);
	}
	// The child looks up the rootfs and the bind sources as the user (step 2):
	// a directory on the way the user may not search is named here, not there.
	if (auto r = checkReach(spec, p.mounts); !r)
		return tl::unexpected(r.error());

	std::string aaWarning;
	auto aa = checkAppArmor(spec.process.apparmorProfile, opts.apparmorPolicy, aaWarning);
	if (!aa)
		return tl::unexpected(aa.error());
	p.applyAppArmor = *aa;
	if (!aaWarning.empty())
		p.warnings.push_back(aaWarning);

	// Compiled here, in the parent: libseccomp allocates freely, and a
	// broken profile should fail before any namespace exists.
	if (spec.seccomp) {
		auto prog = loadOrCompileSeccomp(*spec.seccomp, opts.seccompCacheDir);
		if (!prog)
			return tl::unexpected(prog.error());
		for (const auto& w : prog->warnings)
			p.warnings.push_back(w);
		p.seccomp = std::move(*prog);
	}
	if (opts.preserveFds < 0 || opts.preserveFds > 64)
		return fail("--preserve-fds %d: expected 0..64", opts.preserveFds);
	for (int fd = 3; fd < 3 + opts.preserveFds; fd++)
		if (fcntl(fd, F_GETFD) < 0)
			return failErrno(errno, "--preserve-fds: fd %d", fd);
	p.spec = std::move(spec);
	return p;
}

Outcome run(const Prepared& p, const RunOptions& opts)
{
	const Spec& s = p.spec;
	auto setupError = [](const Error& e) { return Outcome { kExitSetupFailed, e }; };

	// argv/envp as C arrays, built before clone3.
	std::vector<char*> argv, envp;
	for (const auto& a : s.process.args)
		argv.push_back(const_cast<char*>(a.c_str()));
	argv.push_back(nullptr);
	for (const auto& e : s.process.env)
		envp.push_back(const_cast<char*>(e.c_str()));
	envp.push_back(nullptr);

	// P1. No supplementary groups to inherit: inside, setgroups is denied.
	if (setgroups(0, nullptr) < 0)
		return setupError(makeError(errno, "setgroups"));

	// P2. The sync socket, at a fixed high fd so the payload's fds stay 0..N.
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return setupError(makeError(errno, "socketpair"));
	UniqueFd parentSock(sv[0]);
	UniqueFd childSock(fcntl(sv[1], F_DUPFD_CLOEXEC, kSyncFd));
	const int dupErr = errno;
	close(sv[1]);
	if (!childSock) // EINVAL: RLIMIT_NOFILE is at most kSyncFd
		return setupError(makeError(dupErr, "sync socket: move to fd %d", kSyncFd));
	if (childSock.get() != kSyncFd)
		return setupError(makeError(EBUSY, "sync socket: fd %d is taken", kSyncFd));

	// P3. Block the signals we forward before clone3, so none is lost between
	//     the clone and the supervisor; the child inherits the mask (the
	//     reaper relies on it, the payload restores origMask).
	sigset_t fwd, origMask;
	forwardedSignals(&fwd);
	if (sigprocmask(SIG_BLOCK, &fwd, &origMask) < 0)
		return setupError(makeError(errno, "sigprocmask"));
	UniqueFd sigFd(signalfd(-1, &fwd, SFD_CLOEXEC));
	if (!sigFd)
		return setupError(makeError(errno, "signalfd"));

	if (auto r = assertSingleThreaded(); !r)
		return setupError(r.error());

	// P4. clone3 into every namespace at once; CLONE_PIDFD gives a handle that
	//     cannot be confused with a recycled pid.
	int pidfd = -1;
	struct clone_args ca {};
	ca.flags = CLONE_PIDFD | CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
		   CLONE_NEWUTS | CLONE_NEWCGROUP;
	ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
	ca.exit_signal = SIGCHLD;
	long pid = syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid < 0)
		return setupError(makeError(errno, "clone3"));
	if (pid == 0) {
		// The child keeps only its end: when the launcher dies, its end
		// closes and step 1 (and the check after step 2) see EOF.
		parentSock.reset();
		ChildArgs a { &p, &opts, argv.data(), envp.data(), &origMask };
		childMain(a);
	}
	UniqueFd pidFd(pidfd);
	// The parent keeps only its end, so that EOF on it means the child is
	// gone or has exec'd (kSyncFd is close-on-exec): P8 relies on that.
	childSock.reset();

	auto abortChild = [&](const Error& e) {
		syscall(SYS_pidfd_send_signal, pidFd.get(), SIGKILL, nullptr, 0);
		siginfo_t si;
		waitid((idtype_t)P_PIDFD, (id_t)pidFd.get(), &si, WEXITED);
		return setupError(e);
	};

	// P5. setgroups=deny before gid_map (the kernel requires that order for
	//     unprivileged writers; we keep it so the container can never call
	//     setgroups), then gid_map, then uid_map.
	if (auto r = writeProcFile((pid_t)pid, "setgroups", "deny"); !r)
		return abortChild(r.error());
	if (auto r = writeProcFile((pid_t)pid, "gid_map", formatIdMap(s.gidMappings)); !r)
		return abortChild(r.error());
	if (auto r = writeProcFile((pid_t)pid, "uid_map", formatIdMap(s.uidMappings)); !r)
		return abortChild(r.error());

	// P6. rlimits, from here: only host root may raise a hard limit.
	for (const auto& rl : s.process.rlimits) {
		struct rlimit lim { (rlim_t)rl.soft, (rlim_t)rl.hard };
		if (prlimit((pid_t)pid, (__rlimit_resource)rl.resource, &lim, nullptr) < 0)
			return abortChild(makeError(errno, "set %s to %llu/%llu", rl.name.c_str(),
						    (unsigned long long)rl.soft, (unsigned long long)rl.hard));
	}

	// P7. Network, while the child still waits: veth pair into its netns,
	//     addresses, routes, nftables (network.h). Nothing to undo on
	//     failure: the veth dies with the child's namespace.
	if (auto r = networkFromParent((pid_t)pid, opts.network); !r)
		return abortChild(r.error());

	//     Release the child.
	SyncMsg go;
	go.kind = MsgKind::Go;
	if (auto r = sendMsg(parentSock.get(), go); !r)
		return abortChild(r.error());

	// P8. Until EOF: a pty master, or the child's error.
	UniqueFd ptyMaster;
	for (;;) {
		SyncMsg m;
		UniqueFd fd;
		auto r = recvMsg(parentSock.get(), m, &fd);
		if (!r)
			return abortChild(r.error());
		if (!*r)
			break; // the payload's execve succeeded
		if (m.kind == MsgKind::PtyMaster && fd) {
			ptyMaster = std::move(fd);
			continue;
		}
		if (m.kind == MsgKind::SetupError || m.kind == MsgKind::ExecError) {
			Outcome o = abortChild(m.error);
			if (m.kind == MsgKind::ExecError)
				o.status = m.error.errno_ == ENOENT ? kExitNotFound : kExitCannotExec;
			return o;
		}
		return abortChild(makeError(EPROTO, "sync: unexpected message %u", (unsigned)m.kind));
	}

	if (opts.onStarted)
		opts.onStarted(opts.onStartedCtx, (pid_t)pid);

	// P9. Supervise until PID 1 of the container exits.
	int status = supervise(pidFd.get(), sigFd.get(), std::move(ptyMaster), opts.graceSeconds);
	sigprocmask(SIG_SETMASK, &origMask, nullptr);
	return Outcome { status, std::nullopt };
}

} // namespace pukaipu
