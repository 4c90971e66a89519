// The order of a container's start. Read this file top to bottom: each step
// says why it is where it is. The parent runs as host root; the child starts
// in fresh user, mount, pid, ipc, uts, net and cgroup namespaces.
//
// The whole order, in one list (a test, tests/test_structure.py, checks that
// the step comments below appear in this order):
//
// launcher (launcher/main.cc; for an instance launcher/instance.cc first
// composes ONE value, Spec + RunOptions):
//   L1 parse the command line; L2 load the configuration and the instance,
//   check the user; L3 compose the spec (grants' guarded binds marked on it);
//   L4 root-only host files (passwd, group, the instance's runtime dir);
//   L5 the listening socket at fd 3 (a desktop); then prepare() and run().
// prepare(), parent, before any namespace exists (nothing touched yet):
//   R1 root checked → R2 mount plan + network (resolv.conf becomes a row)
//   → R3 AppArmor decided → R4 seccomp compiled → R5 passed fds exist →
//   R6 cgroup planned (a limit this host cannot enforce is refused here).
// run(), parent:
//   P1 no supplementary groups → P2 sync socket at a fixed fd → P3 block the
//   forwarded signals → single-threaded check → P4 the cgroup made, limits
//   written → clone3(PIDFD|NEWUSER|NEWNS|NEWPID|NEWNET|NEWIPC|NEWUTS|
//   NEWCGROUP) born inside it (v2 CLONE_INTO_CGROUP; v1: the parent enters
//   before and leaves after), so the child runs no instruction and makes no
//   cgroup namespace outside its limits → P5 setgroups deny → gid_map →
//   uid_map → P6 rlimits → P7 network (veth, nftables) → release the child →
//   P8 wait for exec (or a pty master, or the child's error) → P9 supervise
//   → P10 remove the cgroup once the container is gone.
// child:
//   0 parent-death signal (not for OCI create: the container outlives us)
//   → 1 wait for the id maps → 2 become the user's
//   uid/gid (caps kept for now) → 3 / rslave → 4 bind the rootfs onto itself
//   → 5 the mount plan while host paths are reachable (/dev table, guarded
//   binds, generated files) → 6 masked and read-only paths → 7 root
//   read-only, nosuid, nodev → 8 pivot_root(".", ".") + detach the old root →
//   9 loopback, hostname → 10 stdio: a pty, or (isolateStdio) /dev/null, the
//   relay pipe and setsid → 11 drop every capability, verify →
//   12 no_new_privs → 13 fork: this process stays PID 1 (the reaper) →
//   14 signals, setsid/pty, cwd → 15 AppArmor on exec → 16 close stray fds,
//   then (OCI create) wait at the start gate until `start` → 17 seccomp last
//   → 18 execve.
//   The reaper branch of 13 skips 14-16 and 18: it keeps the launcher's
//   signal mask (it forwards and reaps), stays in the launcher's cwd (the new
//   root), is not confined by AppArmor (it execs nothing), and holds only the
//   fds it inherited; it installs the same seccomp filter (17) as the payload.
//
// Why the child becomes the user at step 2 and not after the mounts (as
// bubblewrap and STYLE.md's first list have it): host root is not mapped,
// so the switch keeps our namespace capabilities, and every host path the
// mounts reach (bind sources, grants) is then looked up with the user's own
// permissions; proc and the masked paths are rows of the plan and steps 5-6,
// done before pivot_root while the old root is still attached.
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
#include "cgroup.h"
#include "reach.h"
#include "reaper.h"
#include "supervisor.h"
#include "stage_steps.h"
#include "sync.h"

namespace pukaipu {

namespace {

constexpr int kSyncFd = 1000;  // moved above any fd the payload may be given
constexpr int kOutputFd = 1001; // the write end of the output relay (isolateStdio), likewise
constexpr int kGateFd = 1002;   // OCI create: an O_PATH fd of the exec fifo, likewise

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

struct ChildArgs {
	const Prepared* p;
	const RunOptions* opts;
	char* const* argv;
	char* const* envp;
	const sigset_t* origMask;
	int outputFd; // kOutputFd with isolateStdio, else -1
};

[[noreturn]] void childMain(const ChildArgs& a) noexcept
{
	const Spec& s = a.p->spec;
	const int sync = kSyncFd;

	// 0. If the launcher dies (even by SIGKILL), so does the container.
	//    Nothing to report to yet (the parent reads after step 1): die.
	//    Not for OCI create (detach): there pukaipu-run exits on purpose
	//    and the engine that called it owns the container.
	if (!a.opts->detach && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
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
	// make sure the parent did not die in between (it waits for us in
	// both modes until the exec, or the start gate).
	if (!a.opts->detach)
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
	UniqueFd rootFdOwner(open(s.rootPath.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
	const int rootFd = rootFdOwner.get();
	CHILD_SYS(rootFd, "open rootfs '%s'", s.rootPath.c_str());

	// 5. The mount plan, in its order, while host paths (bind sources, the
	//    host's /dev nodes) are still reachable. Destinations resolve inside
	//    the rootfs only. Guarded binds (a user's mount grants) are resolved
	//    and checked here, as the user (step 2), and the checked fd is what
	//    gets mounted: no window between check and mount. Generated files
	//    (resolv.conf) come last, over the rootfs's own file.
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
	rootFdOwner.reset();

	// 9. Loopback up (egress, if any, is wired by the parent; its
	//    resolv.conf was a row of step 5); hostname.
	CHILD_TRY(loopbackUp());
	if (!s.hostname.empty())
		CHILD_SYS(sethostname(s.hostname.c_str(), s.hostname.size()), "sethostname '%s'",
			  s.hostname.c_str());

	// 10. stdio. A terminal from the container's own devpts (the master goes
	//     to the parent); or, with isolateStdio, nothing of the launcher's:
	//     /dev/null in, the relay pipe out, and a session of our own, for the
	//     reaper as for the payload (before the fork), so no process in here
	//     holds or controls the terminal pukaipu-run was started from.
	UniqueFd ptySlave;
	if (s.process.terminal) {
		auto master = openContainerPty(&ptySlave);
		if (!master)
			childFail(sync, MsgKind::SetupError, master.error());
		SyncMsg m;
		m.kind = MsgKind::PtyMaster;
		CHILD_TRY(sendMsg(sync, m, master->get()));
	} else if (a.outputFd >= 0) {
		UniqueFd devNull(open("/dev/null", O_RDWR | O_CLOEXEC));
		CHILD_SYS(devNull.get(), "open /dev/null");
		CHILD_SYS(dup2(devNull.get(), 0), "stdin from /dev/null");
		CHILD_SYS(dup2(a.outputFd, 1), "stdout to the relay");
		CHILD_SYS(dup2(a.outputFd, 2), "stderr to the relay");
		CHILD_SYS(setsid(), "setsid");
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
		UniqueFd(sync).reset(); // the reaper reports nothing: its end of the sync socket goes now
		if (a.outputFd >= 0)
			UniqueFd(a.outputFd).reset(); // it writes to its fds 1 and 2 (the relay) only
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
	CHILD_SYS(syscall(SYS_close_range, kSyncFd + 1, kGateFd - 1, 0), "close stray fds"); // kOutputFd too
	CHILD_SYS(syscall(SYS_close_range, kGateFd + 1, ~0U, 0), "close stray fds");
	//     OCI create: everything is set up but seccomp and the exec. Tell
	//     the parent (it writes the pid file and exits), then wait at the
	//     gate until `start` opens the fifo for reading. The gate closes
	//     before seccomp, so the payload gets nothing of it.
	if (a.opts->detach)
		CHILD_TRY(waitAtStartGate(sync, kGateFd));

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
	// R1. The root: a directory that only root can change.
	struct stat st;
	if (stat(spec.rootPath.c_str(), &st) < 0)
		return failErrno(errno, "root.path '%s'", spec.rootPath.c_str());
	if (!S_ISDIR(st.st_mode))
		return fail("root.path '%s': not a directory", spec.rootPath.c_str());
	if (opts.checkTrustedPaths)
		TRYV_CTX(checkTrustedPath(spec.rootPath), "root.path");

	// R2. The mount plan: the spec's mounts (guarded binds included, marked
	//     by guardBind), then the network's generated resolv.conf.
	TRY(plan, planMounts(spec, p.warnings));
	p.mounts = std::move(*plan);
	//     The child looks up the rootfs and the bind sources as the user
	//     (step 2): a directory on the way the user may not search is named
	//     here, not there.
	TRYV(checkReach(spec, p.mounts));
	p.network = opts.network;
	TRY(resolvConf, prepareNetwork(spec, p.network, p.warnings));
	if (*resolvConf)
		p.mounts.push_back(generatedFile("/etc/resolv.conf", std::move(**resolvConf)));
	if (forwardingWillBeEnabled(p.network))
		p.notes.push_back("turning on net.ipv4.ip_forward (host-wide; `pukaipu remove` of the last instance turns it off)");

	// R3. AppArmor, for the profile the spec names: with policy 'optional' a
	//     profile that cannot apply is a warning and the payload runs
	//     unconfined; with 'required' it is an error. (An instance's spec
	//     names a profile only when composeInstance found that it applies.)
	std::string aaWarning;
	TRY(aa, checkAppArmor(spec.process.apparmorProfile, opts.apparmorPolicy, aaWarning));
	p.applyAppArmor = *aa;
	if (!aaWarning.empty())
		p.warnings.push_back(aaWarning);

	// R4. seccomp, compiled here, in the parent: libseccomp allocates
	//     freely, and a broken profile should fail before any namespace exists.
	if (spec.seccomp) {
		TRY(prog, loadOrCompileSeccomp(*spec.seccomp, opts.seccompCacheDir));
		for (const auto& w : prog->warnings)
			p.warnings.push_back(w);
		p.seccomp = std::move(*prog);
	}

	// R5. The fds passed to the payload must exist now.
	if (opts.preserveFds < 0 || opts.preserveFds > 64)
		return fail("--preserve-fds %d: expected 0..64", opts.preserveFds);
	for (int fd = 3; fd < 3 + opts.preserveFds; fd++)
		if (fcntl(fd, F_GETFD) < 0)
			return failErrno(errno, "--preserve-fds: fd %d", fd);

	// R6. The cgroup, planned: a limit this host cannot enforce is refused
	//     here, before any namespace or cgroup exists.
	if (opts.limitsFromOwnCgroup) {
		TRYV_CTX(checkOwnCgroupEnforces(spec.resources), "linux.resources");
	} else {
		TRY_CTX(cg, planCgroupHere(spec.resources, opts.cgroupPath, opts.cgroupName), "linux.resources");
		p.cgroup = std::move(*cg);
	}
	p.spec = std::move(spec);
	return p;
}

Outcome run(const Prepared& p, const RunOptions& opts)
{
	const Spec& s = p.spec;
	auto setupError = [](const Error& e) { return Outcome { kExitSetupFailed, e, 0, {} }; };

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
	UniqueFd childSockLow(sv[1]);
	UniqueFd childSock(fcntl(sv[1], F_DUPFD_CLOEXEC, kSyncFd));
	const int dupErr = errno;
	childSockLow.reset();
	if (!childSock) // EINVAL: RLIMIT_NOFILE is at most kSyncFd
		return setupError(makeError(dupErr, "sync socket: move to fd %d", kSyncFd));
	if (childSock.get() != kSyncFd)
		return setupError(makeError(EBUSY, "sync socket: fd %d is taken", kSyncFd));
	//     OCI create: the exec fifo's O_PATH fd goes to kGateFd (the parent
	//     closes its copy after the clone).
	UniqueFd gate;
	if (opts.detach) {
		gate = UniqueFd(opts.startGateFd >= 0 ? fcntl(opts.startGateFd, F_DUPFD_CLOEXEC, kGateFd) : -1);
		if (gate.get() != kGateFd)
			return setupError(makeError(gate ? EBUSY : errno, "start gate: move to fd %d", kGateFd));
	}
	//     The output relay (isolateStdio): the child's end goes to kOutputFd.
	UniqueFd outputRead, outputWrite;
	if (opts.isolateStdio) {
		int pf[2];
		if (pipe2(pf, O_CLOEXEC) < 0)
			return setupError(makeError(errno, "output relay: pipe"));
		outputRead = UniqueFd(pf[0]);
		UniqueFd low(pf[1]);
		outputWrite = UniqueFd(fcntl(pf[1], F_DUPFD_CLOEXEC, kOutputFd));
		if (outputWrite.get() != kOutputFd)
			return setupError(makeError(outputWrite ? EBUSY : errno, "output relay: move to fd %d", kOutputFd));
	}

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

	// P4. The cgroup with its limits first, then clone3 into every namespace
	//     at once, the child born inside the cgroup: so it never runs an
	//     instruction outside its limits, and its cgroup namespace is rooted
	//     at its own cgroup. v2: CLONE_INTO_CGROUP. v1 has no such flag: this
	//     (single-threaded) process enters the cgroup for the clone and
	//     leaves right after. CLONE_PIDFD gives a handle that cannot be
	//     confused with a recycled pid. The cgroup is removed when `cg` goes.
	auto cg = Cgroup::create(p.cgroup);
	if (!cg)
		return setupError(cg.error());
	if (auto r = cg->enterSelf(); !r)
		return (void)cg->leaveSelf(), setupError(r.error());
	int pidfd = -1;
	struct clone_args ca {};
	ca.flags = CLONE_PIDFD | CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
		   CLONE_NEWUTS | CLONE_NEWCGROUP | (cg->cloneFd() >= 0 ? CLONE_INTO_CGROUP : 0);
	ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
	ca.exit_signal = SIGCHLD;
	ca.cgroup = (uint64_t)(cg->cloneFd() >= 0 ? cg->cloneFd() : 0);
	long pid = syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid < 0) {
		Outcome o = setupError(makeError(errno, "clone3"));
		return (void)cg->leaveSelf(), o;
	}
	if (pid == 0) {
		// The child keeps only its end: when the launcher dies, its end
		// closes and step 1 (and the check after step 2) see EOF.
		parentSock.reset();
		ChildArgs a { &p, &opts, argv.data(), envp.data(), &origMask, outputWrite ? kOutputFd : -1 };
		childMain(a);
	}
	UniqueFd pidFd(pidfd);
	// The parent keeps only its end, so that EOF on it means the child is
	// gone or has exec'd (kSyncFd is close-on-exec): P8 relies on that.
	childSock.reset();
	outputWrite.reset(); // only the container writes: EOF once it is gone
	gate.reset();

	auto abortChild = [&](const Error& e) {
		syscall(SYS_pidfd_send_signal, pidFd.get(), SIGKILL, nullptr, 0);
		siginfo_t si;
		waitid((idtype_t)P_PIDFD, (id_t)pidFd.get(), &si, WEXITED);
		return setupError(e);
	};
	if (auto r = cg->leaveSelf(); !r) // v1: back to our own cgroup, the child stays
		return abortChild(r.error());

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
	auto link = networkFromParent((pid_t)pid, p.network);
	if (!link)
		return abortChild(link.error());

	//     Release the child.
	SyncMsg go;
	go.kind = MsgKind::Go;
	if (auto r = sendMsg(parentSock.get(), go); !r)
		return abortChild(r.error());

	// P8. Until EOF: a pty master, or the child's error; with detach, until
	//     the payload waits at the start gate.
	UniqueFd ptyMaster;
	bool atGate = false;
	while (!atGate) {
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
		if (m.kind == MsgKind::AtGate && opts.detach) {
			atGate = true;
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

	if (opts.detach) {
		// OCI create: the engine owns the container from here. The pty
		// master goes to its console socket; signals go back to normal.
		if (!atGate)
			return abortChild(makeError(EPROTO, "the payload exec'd without waiting at the start gate"));
		if (ptyMaster) {
			if (auto r = sendFd(opts.consoleSocketFd, ptyMaster.get()); !r)
				return abortChild(r.error().wrap("--console-socket"));
		}
		sigprocmask(SIG_SETMASK, &origMask, nullptr);
		// The container keeps its cgroup and link; `delete` removes them.
		return Outcome { 0, std::nullopt, (pid_t)pid, cg->release() };
	}
	if (opts.onStarted)
		opts.onStarted(opts.onStartedCtx, (pid_t)pid);

	// P9. Supervise until PID 1 of the container exits.
	int status = supervise(pidFd.get(), sigFd.get(), std::move(ptyMaster), std::move(outputRead), opts.graceSeconds);
	releaseLink(p.network, *link); // its exceptions on the host: the container is gone
	sigprocmask(SIG_SETMASK, &origMask, nullptr);
	// P10. The container is gone (its PID 1 reaped, so every process of its
	//      PID namespace): its cgroup goes too, nothing is left behind.
	if (auto r = cg->remove(); !r)
		return Outcome { status, r.error(), 0, {} };
	return Outcome { status, std::nullopt, 0, {} };
}

} // namespace pukaipu
