#include "oci_main.h"

#include <algorithm>
#include <cerrno>
#include <dirent.h>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "build_config.h"
#include "base/file_io.h"
#include "base/sysutil.h"
#include "cli.h"
#include "oci_state.h"
#include "sandbox/cgroup.h"
#include "sandbox/stages.h"

namespace pukaipu::oci {

namespace {

constexpr int kStartTimeoutMs = 10000; // start: the payload answers at once, or is gone
constexpr int kDeleteWaitMs = 10000;   // delete --force: SIGKILL is quick, a D-state is not

// What the old command line and the runtime's global options take a value
// for, so that isRuntimeInvocation skips the value.
const char* const kValued[] = { "--root", "--log", "--log-format", "--criu", "--bundle", "--config", "--state-dir",
				"--apparmor", "--seccomp-cache", "--preserve-fds", "--grace", "--network",
				"--network-allow", "--dns", "--network-pool" };

struct Global {
	std::string root = kDefaultRoot;
	std::string log;
	std::string logFormat = "text";
	bool systemdCgroup = false;
	bool debug = false;
};

// The one place errors leave: stderr, and the --log file in its format
// (go-runc and conmon read the last error line from there).
int report(const Global& g, const std::string& msg)
{
	std::fprintf(stderr, "pukaipu-run: %s\n", msg.c_str());
	if (!g.log.empty()) {
		std::string line;
		if (g.logFormat == "json")
			line = nlohmann::json({ { "level", "error" }, { "msg", msg }, { "time", nowIso() } }).dump();
		else
			line = "time=\"" + nowIso() + "\" level=error msg=" + nlohmann::json(msg).dump();
		if (FILE* f = std::fopen(g.log.c_str(), "ae")) {
			std::fprintf(f, "%s\n", line.c_str());
			std::fclose(f);
		}
	}
	return 1;
}

struct CreateArgs {
	std::string id, bundle, pidFile, consoleSocket;
	int preserveFds = 0;
	bool noNewKeyring = false;
	bool detach = false; // run only
};

Result<std::string> absoluteBundle(const std::string& b)
{
	char real[PATH_MAX];
	const std::string dir = b.empty() ? "." : b;
	if (!realpath(dir.c_str(), real))
		return failErrno(errno, "--bundle '%s'", dir.c_str());
	return std::string(real);
}

Result<UniqueFd> connectConsole(const std::string& path)
{
	struct sockaddr_un sa {};
	sa.sun_family = AF_UNIX;
	if (path.size() >= sizeof(sa.sun_path))
		return fail("--console-socket '%s': path too long", path.c_str());
	std::memcpy(sa.sun_path, path.c_str(), path.size());
	UniqueFd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	if (!s)
		return failErrno(errno, "--console-socket: socket");
	if (connect(s.get(), (struct sockaddr*)&sa, sizeof(sa)) < 0)
		return failErrno(errno, "--console-socket '%s'", path.c_str());
	return s;
}

// Opens PID as a pidfd and checks that it is still the recorded process.
Result<UniqueFd> openInit(const Record& r)
{
	UniqueFd fd((int)syscall(SYS_pidfd_open, r.pid, 0));
	if (!fd || liveStartTime(r.pid) != r.pidStart)
		return fail("container '%s' is not running", r.id.c_str());
	return fd;
}

// Waits until the process behind PIDFD has exited.
bool waitGone(int pidfd, int timeoutMs)
{
	struct pollfd p { pidfd, POLLIN, 0 };
	int n;
	do
		n = poll(&p, 1, timeoutMs);
	while (n < 0 && errno == EINTR);
	return n > 0;
}

// Common to create and run: the spec and the options for the sandbox.
Result<Prepared> prepareBundle(const CreateArgs& a, RunOptions& opts, Record& rec)
{
	TRY(bundle, absoluteBundle(a.bundle));
	TRYV_CTX(checkTrustedPath(*bundle), "bundle");
	TRY(spec, loadBundle(*bundle));
	rec.bundle = *bundle;
	rec.rootfs = spec->rootPath;
	rec.annotations = spec->annotations;
	if (spec->process.terminal && a.consoleSocket.empty() && (a.detach || !isatty(0)))
		return fail("process.terminal is true: give --console-socket (where the pty master goes)");
	if (!spec->process.terminal && !a.consoleSocket.empty())
		return fail("--console-socket: process.terminal is false, there is no pty to send");
	std::string cache = std::string(PUKAIPU_CACHEDIR) + "/seccomp";
	if (const char* env = std::getenv("PUKAIPU_SECCOMP_CACHE"))
		cache = env;
	opts.seccompCacheDir = cache;
	opts.preserveFds = a.preserveFds;
	opts.apparmorPolicy = AppArmorPolicy::Required;
	opts.cgroupName = "oci-" + a.id; // linux.resources, when the spec has any
	return prepare(std::move(*spec), opts);
}

Result<void> startCreated(const Store& store, const std::string& id)
{
	TRY(lock, store.lock(id));
	TRY(rec, store.read(id));
	const Status st = store.status(*rec);
	if (st != Status::Created)
		return fail("container '%s' is %s, not created: cannot start it", id.c_str(), statusName(st));
	TRY(pidfd, openInit(*rec));
	// Opening for reading (non-blocking: never wait for a writer that is
	// gone) lets the payload's blocked open for writing return; it then
	// writes one byte and goes on to seccomp and its execve.
	UniqueFd fifo(open(store.fifo(id).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
	if (!fifo)
		return failErrno(errno, "open '%s'", store.fifo(id).c_str());
	struct pollfd p[2] = { { fifo.get(), POLLIN, 0 }, { pidfd->get(), POLLIN, 0 } };
	const long long deadline = monotonicMs() + kStartTimeoutMs;
	for (;;) {
		const long long left = deadline - monotonicMs();
		if (left <= 0)
			return fail("container '%s': the payload did not answer the start within %d s", id.c_str(),
				    kStartTimeoutMs / 1000);
		int n = poll(p, 2, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return failErrno(errno, "poll");
		if (p[0].revents & POLLIN) {
			char c = 0;
			if (read(fifo.get(), &c, 1) == 1 && c == '0')
				break;
		}
		if (p[1].revents & POLLIN)
			return fail("container '%s' exited before it started", id.c_str());
	}
	if (unlink(store.fifo(id).c_str()) < 0)
		return failErrno(errno, "remove '%s'", store.fifo(id).c_str());
	return {};
}

int cmdCreate(const Global& g, const CreateArgs& a, bool startToo)
{
	if (geteuid() != 0)
		return report(g, "must run as root (it creates the namespaces and maps the container's ids)");
	Store store(g.root);
	if (auto r = store.claim(a.id); !r)
		return report(g, r.error().message());
	// From here the directory is ours: any failure removes it again.
	auto undo = [&](const Error& e) {
		(void)store.remove(a.id);
		return report(g, e.message());
	};
	Record rec;
	rec.id = a.id;
	rec.created = nowIso();
	RunOptions opts;
	opts.detach = true;
	auto prepared = prepareBundle(a, opts, rec);
	if (!prepared)
		return undo(prepared.error());
	for (const auto& w : prepared->warnings)
		std::fprintf(stderr, "pukaipu-run: warning: %s\n", w.c_str());
	UniqueFd console;
	if (!a.consoleSocket.empty()) {
		auto c = connectConsole(a.consoleSocket);
		if (!c)
			return undo(c.error());
		console = std::move(*c);
		opts.consoleSocketFd = console.get();
	}
	if (auto r = store.makeFifo(a.id); !r)
		return undo(r.error());
	UniqueFd gate(open(store.fifo(a.id).c_str(), O_PATH | O_CLOEXEC));
	if (!gate)
		return undo(makeError(errno, "open '%s'", store.fifo(a.id).c_str()));
	opts.startGateFd = gate.get();
	Outcome o = run(*prepared, opts);
	if (o.error)
		return undo(*o.error);
	rec.pid = o.initPid;
	rec.cgroups = o.cgroupLeaves;
	auto start = liveStartTime(rec.pid);
	if (!start)
		return undo(makeError(ESRCH, "container '%s' exited while it was created", a.id.c_str()));
	rec.pidStart = *start;
	// The init is still our unreaped child here, so its pid cannot have
	// been reused: kill() by pid is safe.
	if (auto r = store.write(rec); !r) {
		kill(rec.pid, SIGKILL);
		return undo(r.error());
	}
	if (!a.pidFile.empty()) {
		if (auto r = writeFileAtomic(a.pidFile, std::to_string(rec.pid), 0644); !r) {
			kill(rec.pid, SIGKILL);
			return undo(r.error().wrap("--pid-file"));
		}
	}
	if (startToo) {
		if (auto r = startCreated(store, a.id); !r)
			return report(g, r.error().message());
	}
	return 0;
}

// run without --detach: the container is pukaipu-run's child, supervised as
// `--bundle` is (signals forwarded, exit status passed on); its record
// exists while it runs, so that state and kill work, and goes at the end.
int cmdRunForeground(const Global& g, const CreateArgs& a)
{
	if (geteuid() != 0)
		return report(g, "must run as root (it creates the namespaces and maps the container's ids)");
	Store store(g.root);
	if (auto r = store.claim(a.id); !r)
		return report(g, r.error().message());
	Record rec;
	rec.id = a.id;
	rec.created = nowIso();
	RunOptions opts;
	auto prepared = prepareBundle(a, opts, rec);
	if (!prepared) {
		(void)store.remove(a.id);
		return report(g, prepared.error().message());
	}
	struct Ctx {
		const Store* store;
		Record* rec;
		const std::string* pidFile;
	} ctx { &store, &rec, &a.pidFile };
	opts.onStartedCtx = &ctx;
	opts.onStarted = [](void* p, pid_t pid) {
		auto* c = static_cast<Ctx*>(p);
		c->rec->pid = pid;
		c->rec->pidStart = liveStartTime(pid).value_or("");
		if (auto r = c->store->write(*c->rec); !r)
			std::fprintf(stderr, "pukaipu-run: warning: %s\n", r.error().message().c_str());
		if (!c->pidFile->empty())
			if (auto r = writeFileAtomic(*c->pidFile, std::to_string(pid), 0644); !r)
				std::fprintf(stderr, "pukaipu-run: warning: --pid-file: %s\n", r.error().message().c_str());
	};
	Outcome o = run(*prepared, opts);
	(void)store.remove(a.id);
	if (o.error)
		report(g, o.error->message());
	return o.status;
}

int cmdState(const Global& g, const std::string& id)
{
	Store store(g.root);
	auto rec = store.read(id);
	if (!rec)
		return report(g, rec.error().message());
	std::printf("%s\n", stateJson(*rec, store.status(*rec)).c_str());
	return 0;
}

Result<void> signalAll(const Record& rec, int sig)
{
	// Every process in the container's pid namespace (the init's own).
	struct stat initNs;
	if (stat(("/proc/" + std::to_string(rec.pid) + "/ns/pid").c_str(), &initNs) < 0)
		return failErrno(errno, "container '%s'", rec.id.c_str());
	// /proc read without exceptions (a directory_iterator throws on error).
	DIR* proc = opendir("/proc");
	if (!proc)
		return failErrno(errno, "open /proc");
	std::vector<pid_t> pids;
	while (auto* e = readdir(proc)) {
		const std::string n = e->d_name;
		if (!n.empty() && std::all_of(n.begin(), n.end(), ::isdigit))
			pids.push_back((pid_t)std::stol(n));
	}
	closedir(proc);
	for (pid_t p : pids) {
		UniqueFd fd((int)syscall(SYS_pidfd_open, p, 0));
		struct stat ns;
		if (!fd || stat(("/proc/" + std::to_string(p) + "/ns/pid").c_str(), &ns) < 0)
			continue;
		if (ns.st_ino == initNs.st_ino && ns.st_dev == initNs.st_dev)
			(void)syscall(SYS_pidfd_send_signal, fd.get(), sig, nullptr, 0);
	}
	return {};
}

int cmdKill(const Global& g, const std::string& id, const std::string& signal, bool all)
{
	auto sig = parseSignal(signal);
	if (!sig)
		return report(g, sig.error().message());
	Store store(g.root);
	auto rec = store.read(id);
	if (!rec)
		return report(g, rec.error().message());
	auto pidfd = openInit(*rec);
	if (!pidfd)
		return report(g, pidfd.error().message());
	if (all && *sig != SIGKILL) {
		if (auto r = signalAll(*rec, *sig); !r)
			return report(g, r.error().message());
		return 0;
	}
	// SIGKILL to the init ends its whole pid namespace.
	if (syscall(SYS_pidfd_send_signal, pidfd->get(), *sig, nullptr, 0) < 0)
		return report(g, makeError(errno, "kill container '%s'", id.c_str()).message());
	return 0;
}

int cmdDelete(const Global& g, const std::string& id, bool force)
{
	Store store(g.root);
	auto lock = store.lock(id);
	if (!lock)
		return report(g, lock.error().message());
	auto rec = store.read(id);
	if (!rec) {
		// A create that died half-way left a directory without a record.
		struct stat st;
		if (stat((store.dir(id) + "/state.json").c_str(), &st) < 0 && errno == ENOENT) {
			if (auto r = store.remove(id); !r)
				return report(g, r.error().message());
			return 0;
		}
		return report(g, rec.error().message());
	}
	const Status st = store.status(*rec);
	if (st == Status::Running && !force)
		return report(g, "container '" + id + "' is running: stop it first, or delete --force");
	if (st != Status::Stopped) {
		auto pidfd = openInit(*rec);
		if (pidfd) {
			(void)syscall(SYS_pidfd_send_signal, pidfd->get(), SIGKILL, nullptr, 0);
			if (!waitGone(pidfd->get(), kDeleteWaitMs))
				return report(g, "container '" + id + "' did not exit within 10 s of SIGKILL; try again");
		}
	}
	// The container is gone: its cgroup can go (the kernel may take a
	// moment to let go of the last tasks).
	if (auto r = removeCgroupLeaves(rec->cgroups, 2000); !r)
		return report(g, r.error().message());
	if (auto r = store.remove(id); !r)
		return report(g, r.error().message());
	return 0;
}

int cmdList(const Global& g, const std::string& format, bool quiet)
{
	Store store(g.root);
	auto ids = store.ids();
	if (!ids)
		return report(g, ids.error().message());
	nlohmann::json arr = nlohmann::json::array();
	if (!quiet && format == "table")
		std::printf("%-24s %-8s %-8s %-40s %s\n", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
	for (const auto& id : *ids) {
		auto rec = store.read(id);
		if (!rec)
			continue; // being created or deleted right now
		const Status st = store.status(*rec);
		if (quiet)
			std::printf("%s\n", id.c_str());
		else if (format == "json")
			arr.push_back(nlohmann::json::parse(stateJson(*rec, st)));
		else
			std::printf("%-24s %-8d %-8s %-40s %s\n", id.c_str(), st == Status::Stopped ? 0 : rec->pid,
				    statusName(st), rec->bundle.c_str(), rec->created.c_str());
	}
	if (!quiet && format == "json")
		std::printf("%s\n", arr.dump().c_str());
	return 0;
}

// What this runtime supports (the runtime spec's features.md document).
int cmdFeatures()
{
	nlohmann::json f = {
		{ "ociVersionMin", "1.0.0" },
		{ "ociVersionMax", "1.2.0" },
		{ "hooks", nlohmann::json::array() },
		{ "mountOptions", { "bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
				    "relatime", "norelatime", "strictatime", "nostrictatime", "private", "rprivate",
				    "slave", "rslave", "shared", "rshared", "mode", "size", "newinstance",
				    "ptmxmode", "gid" } },
		{ "linux",
		  { { "namespaces", { "user", "mount", "pid", "ipc", "uts", "network", "cgroup" } },
		    { "capabilities", nlohmann::json::array() },
		    { "cgroup", { { "v1", false }, { "v2", false }, { "systemd", false }, { "systemdUser", false } } },
		    { "seccomp", { { "enabled", true } } },
		    { "apparmor", { { "enabled", true } } },
		    { "selinux", { { "enabled", false } } } } },
		{ "annotations", { { "io.github.pukaipu.version", PUKAIPU_VERSION } } },
	};
	std::printf("%s\n", f.dump(2).c_str());
	return 0;
}

} // namespace

bool isRuntimeInvocation(int argc, char** argv)
{
	for (int i = 1; i < argc; i++) {
		std::string a = argv[i];
		if (a == "--")
			return false;
		if (a.rfind("-", 0) == 0) {
			if (a.find('=') == std::string::npos)
				for (const char* v : kValued)
					if (a == v) {
						i++;
						break;
					}
			continue;
		}
		for (const char* c : kCommands)
			if (a == c)
				return true;
		return false;
	}
	return false;
}

int runtimeMain(int argc, char** argv)
{
	CLI::App app { "pukaipu-run as an OCI runtime (for podman/conmon, containerd's runc shim, and\n"
		       "runc's command line): every container in its own user namespace, never as host root.\n" };
	app.name("pukaipu-run");
	app.require_subcommand(1);
	Global g;
	app.add_option("--root", g.root, "state directory (0700, root's)")->capture_default_str();
	app.add_option("--log", g.log, "also append errors to this file");
	app.add_option("--log-format", g.logFormat, "text or json")->check(CLI::IsMember({ "text", "json" }));
	app.add_flag("--systemd-cgroup", g.systemdCgroup, "cgroups through systemd (refused: not supported yet)");
	app.add_flag("--debug", g.debug, "accepted; pukaipu-run logs only errors");

	CreateArgs ca;
	auto addCreateOptions = [&](CLI::App* c) {
		c->add_option("ID", ca.id, "container id")->required();
		c->add_option("--bundle,-b", ca.bundle, "the bundle directory (default: the current one)");
		c->add_option("--pid-file", ca.pidFile, "write the container's init pid here");
		c->add_option("--console-socket", ca.consoleSocket,
			      "Unix socket that receives the pty master (process.terminal)");
		c->add_option("--preserve-fds", ca.preserveFds, "pass fds 3..3+N-1 to the payload (0-64)")
			->check(CLI::Range(0, 64));
		c->add_flag("--no-new-keyring", ca.noNewKeyring, "accepted: the container never gets a keyring of its own");
	};
	auto* create = app.add_subcommand("create", "set up a container; its process waits for start");
	addCreateOptions(create);
	auto* runCmd = app.add_subcommand("run", "create and start; without --detach, wait for it and pass its exit status on");
	addCreateOptions(runCmd);
	runCmd->add_flag("--detach,-d", ca.detach, "return once started");
	std::string id, signal = "SIGTERM", format = "table";
	bool all = false, force = false, quiet = false;
	auto* start = app.add_subcommand("start", "start a created container");
	start->add_option("ID", id, "container id")->required();
	auto* state = app.add_subcommand("state", "print the OCI state of a container as JSON");
	state->add_option("ID", id, "container id")->required();
	auto* kill = app.add_subcommand("kill", "send a signal (default SIGTERM) to the container's init");
	kill->add_option("ID", id, "container id")->required();
	kill->add_option("SIGNAL", signal, "name (TERM, SIGTERM) or number");
	kill->add_flag("--all,-a", all, "to every process of the container");
	auto* del = app.add_subcommand("delete", "remove a stopped (or created) container");
	del->add_option("ID", id, "container id")->required();
	del->add_flag("--force,-f", force, "SIGKILL a running container first");
	auto* list = app.add_subcommand("list", "the containers under --root");
	list->add_option("--format,-f", format, "table or json")->check(CLI::IsMember({ "table", "json" }));
	list->add_flag("--quiet,-q", quiet, "ids only");
	auto* features = app.add_subcommand("features", "what this runtime supports, as JSON");
	const auto implemented = app.get_subcommands([](const CLI::App*) { return true; });
	for (const char* c : kCommands)
		if (std::none_of(implemented.begin(), implemented.end(), [&](const CLI::App* s) { return s->get_name() == c; }))
			app.add_subcommand(c, "not implemented")->allow_extras();

	if (auto done = parseCommandLine(app, argc, argv, "pukaipu-run", 1))
		return *done;
	if (g.systemdCgroup)
		return report(g, "--systemd-cgroup: not supported yet (pukaipu-run makes no cgroup of its own yet)");
	if (create->parsed())
		return cmdCreate(g, ca, false);
	if (runCmd->parsed())
		return ca.detach ? cmdCreate(g, ca, true) : cmdRunForeground(g, ca);
	if (start->parsed()) {
		if (auto r = startCreated(Store(g.root), id); !r)
			return report(g, r.error().message());
		return 0;
	}
	if (state->parsed())
		return cmdState(g, id);
	if (kill->parsed())
		return cmdKill(g, id, signal, all);
	if (del->parsed())
		return cmdDelete(g, id, force);
	if (list->parsed())
		return cmdList(g, format, quiet);
	if (features->parsed())
		return cmdFeatures();
	return report(g, std::string(app.get_subcommands().front()->get_name()) + ": not implemented by pukaipu-run");
}

} // namespace pukaipu::oci
