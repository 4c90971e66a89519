// pukaipu-run: thin command line over the sandbox library.
//
//   pukaipu-run USER [--shell] [--print-spec]   an instance (pukaipu create USER)
//   pukaipu-run --bundle DIR                    any OCI bundle
//   pukaipu-run [--root DIR ...] create|start|state|kill|delete|run|...
//                                               the OCI runtime (oci_main.h)
//
// Parses options, composes or loads the spec, and prints any error exactly
// once, as one line.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <csignal>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "build_config.h"
#include "base/file_io.h"
#include "cli.h"
#include "config.h"
#include "generation.h"
#include "grants.h"
#include "instance.h"
#include "listen.h"
#include "notify.h"
#include "oci_main.h"
#include "sandbox/stages.h"

using namespace pukaipu;

namespace {

int report(const Error& e, int status)
{
	std::fprintf(stderr, "pukaipu-run: %s\n", e.message().c_str());
	return status;
}

void warn(const std::string& w)
{
	std::fprintf(stderr, "pukaipu-run: warning: %s\n", w.c_str());
}

struct DesktopWatch {
	bool active = false;
	std::string user, runUserDir, socket;
	RootfsGeneration rootfs;
	uint32_t idleSeconds = 0, staleDays = 7, checkSeconds = 60;
};

// Set by watchDesktop before its SIGTERM: the session ends because of a swap,
// so pukaipu-run exits kExitRestartOnCurrent instead of 143.
std::atomic<bool> swapRestart { false };

[[noreturn]] void watchDesktop(DesktopWatch w)
{
	const std::string request = restartRequest(w.runUserDir);
	for (;;) {
		sleep(w.checkSeconds);
		struct stat st;
		const bool requested = lstat(request.c_str(), &st) == 0;
		const Behind b = w.rootfs.generation.empty() ? Behind {} : behindCurrent(w.rootfs.base, w.rootfs.generation);
		std::string why = swapReason(w.rootfs.generation, b, clientConnections(w.socket), w.idleSeconds,
					     w.staleDays, requested);
		if (why.empty())
			continue;
		unlink(request.c_str());
		std::fprintf(stderr, "pukaipu-run: %s: restarting on the current rootfs generation: %s\n", w.user.c_str(),
			     why.c_str());
		// The flag before the signal: the supervisor reads it only after the
		// session it stops has ended.
		swapRestart = true;
		kill(getpid(), SIGTERM); // the supervisor's signalfd: the same graceful stop as systemctl stop
		for (;;)
			pause();
	}
}

} // namespace

int main(int argc, char** argv)
{
	// pukaipu-run [GLOBAL OPTIONS] create|start|state|kill|delete|run|... :
	// the OCI runtime's command line (oci_main.h).
	if (oci::isRuntimeInvocation(argc, argv))
		return oci::runtimeMain(argc, argv);
	CLI::App app { "pukaipu-run: run a user's pukaipu instance, or any OCI bundle, in a hardened\n"
		       "container (user, mount, pid, ipc, uts, net and cgroup namespaces; no capabilities;\n"
		       "no_new_privs; seccomp; AppArmor; memory, task and CPU limits in a cgroup of its own).\n"
		       "Run as root, usually by pukaipu@USER.service.\n" };
	app.name("pukaipu-run");
	std::string user, bundle;
	bool shell = false, printSpec = false;
	std::string apparmor;
	std::string cacheDir = std::string(PUKAIPU_CACHEDIR) + "/seccomp";
	if (const char* env = std::getenv("PUKAIPU_SECCOMP_CACHE"))
		cacheDir = env;
	bool noCache = false;
	int preserveFds = 0;
	int grace = -1;
	Paths paths = Paths::fromEnvironment();
	std::string network = "none", networkPool;
	bool allowHostNetwork = false;
	std::vector<std::string> networkAllow, dns;

	app.add_option("USER", user, "the instance to run (see pukaipu(8) create)");
	auto* bundleOpt = app.add_option("--bundle", bundle, "run the OCI bundle in DIR (config.json) instead of an instance");
	app.add_flag("--shell", shell, "an interactive shell in the instance's sandbox instead of its desktop");
	app.add_flag("--print-spec", printSpec, "print the instance's OCI spec (config.json) and exit");
	app.add_option("--config", paths.configFile, "global configuration (env PUKAIPU_CONFIG)")->capture_default_str();
	app.add_option("--state-dir", paths.stateDir, "instances and certificates (env PUKAIPU_STATE_DIR)")
		->capture_default_str();
	app.add_option("--apparmor", apparmor,
		       "when an AppArmor profile is asked for and AppArmor is off or the profile is not\n"
		       "loaded: 'required' refuses to start, 'optional' warns and runs unconfined\n"
		       "(default: the configuration's apparmor.policy; 'required' for bundles)");
	app.add_option("--seccomp-cache", cacheDir, "directory for compiled seccomp filters (env PUKAIPU_SECCOMP_CACHE)")
		->capture_default_str();
	app.add_flag("--no-seccomp-cache", noCache, "always compile the seccomp profile");
	app.add_option("--preserve-fds", preserveFds, "bundles: pass fds 3..3+N-1 to the payload (0-64)")
		->check(CLI::Range(0, 64));
	app.add_option("--grace", grace, "seconds between forwarding SIGTERM and SIGKILL, 0-3600 (default 10)")
		->check(CLI::Range(0, 3600));
	auto* networkOpt = app.add_option("--network", network,
		       "'none': loopback only; 'egress': a veth pair with NAT out, no host ports, no other\n"
		       "containers, no link-local or private ranges, no IPv6 (turns on net.ipv4.ip_forward);\n"
		       "'host': refused (see pukaipu-run(8))")
		->capture_default_str();
	auto* netOpts = app.add_option_group("network", "bundles only; instances take these from the configuration");
	netOpts->add_option(networkOpt);
	netOpts->add_flag("--allow-host-network", allowHostNetwork, "still refused: the container always gets its own netns");
	netOpts->add_option("--network-allow", networkAllow, "egress: also reach this private IPv4 CIDR (repeatable)");
	netOpts->add_option("--dns", dns, "egress: nameserver for the container (repeatable; default: the host's)");
	netOpts->add_option("--network-pool", networkPool, "egress: IPv4 pool, a /31 per container (default 10.233.0.0/16)");
	app.add_flag_callback("--version", [] {
		// runc's form: engines (podman info) read the first line.
		std::printf("pukaipu-run version %s\nspec: 1.0.2\n", PUKAIPU_VERSION);
		std::exit(0);
	}, "print the version and exit");
	app.footer("Exit status: the payload's exit code, or 128+N if it was killed by signal N;\n"
		   "125 if pukaipu-run failed before the payload ran; 126 if the payload could not be\n"
		   "executed; 127 if it was not found; 75 if a desktop stopped itself to move to the\n"
		   "current rootfs generation (start it again). See pukaipu-run(8).\n\n"
		   "As an OCI runtime (podman --runtime, containerd's runc shim):\n"
		   "  pukaipu-run [--root DIR] [--log FILE] [--log-format text|json] COMMAND ...\n"
		   "  with COMMAND create, start, state, kill, delete, run, list or features\n"
		   "  (pukaipu-run COMMAND --help; pukaipu-run(8), OCI RUNTIME).");
	if (auto done = parseCommandLine(app, argc, argv, "pukaipu-run", kExitSetupFailed))
		return *done;
	if (user.empty() == bundle.empty())
		return report(makeError(0, "give either USER or --bundle DIR (see --help)"), kExitSetupFailed);
	if (!bundle.empty() && (shell || printSpec))
		return report(makeError(0, "--shell and --print-spec are for instances, not --bundle"), kExitSetupFailed);
	if (!user.empty() && *bundleOpt)
		return report(makeError(0, "give either USER or --bundle DIR"), kExitSetupFailed);

	if (!user.empty() && (netOpts->count_all() > 0))
		return report(makeError(0, "network options are for --bundle; an instance takes its network from "
					   "the configuration (network.* in pukaipu.json, --network of pukaipu create)"),
			      kExitSetupFailed);

	// L2-L3. ONE value for the sandbox: the spec and its RunOptions.
	std::string genRecord; // RUN_DIR/USER/rootfs-PID (generation.h)
	DesktopWatch desktopWatch;
	Spec spec;
	RunOptions opts;
	if (!bundle.empty()) {
		if (geteuid() != 0)
			return report(makeError(0, "must run as root (it creates the namespaces and maps the user's ids)"),
				      kExitSetupFailed);
		auto net = networkOptionsFrom(network, allowHostNetwork, networkPool, networkAllow, dns);
		if (!net)
			return report(net.error(), kExitSetupFailed);
		opts.network = std::move(*net);
		auto policy = parseAppArmorPolicy(apparmor.empty() ? "required" : apparmor);
		if (!policy)
			return report(policy.error().wrap("--apparmor"), kExitSetupFailed);
		opts.apparmorPolicy = *policy;
		opts.graceSeconds = grace >= 0 ? grace : 10;
		opts.seccompCacheDir = noCache ? "" : cacheDir;
		opts.preserveFds = preserveFds;
		opts.cgroupName = "bundle-" + std::to_string(getpid()); // linux.resources
		// The bundle is trusted as root: nobody but root may be able to change it.
		if (auto r = checkTrustedPath(bundle); !r)
			return report(r.error().wrap("bundle"), kExitSetupFailed);
		auto loaded = loadBundle(bundle);
		if (!loaded)
			return report(loaded.error(), kExitSetupFailed);
		spec = std::move(*loaded);
	} else {
		const char* term = std::getenv("TERM");
		InstanceRequest req { user, shell ? SessionKind::Shell : SessionKind::Desktop, term ? term : "",
				      apparmor, grace, noCache ? "" : cacheDir };
		auto start = composeInstance(paths, req);
		if (!start)
			return report(start.error(), kExitSetupFailed);
		for (const auto& w : start->warnings)
			warn(w);
		if (printSpec) {
			std::printf("%s\n", start->specJson.dump(2).c_str());
			return 0;
		}
		if (geteuid() != 0)
			return report(makeError(0, "must run as root (it creates the namespaces and maps the user's ids)"),
				      kExitSetupFailed);
		// L4. Root-only host files for this start (passwd, group, grants' files).
		if (auto r = writeRuntimeFiles(paths, start->inst, start->user, start->rt); !r)
			return report(r.error(), kExitSetupFailed);
		// L5. A desktop's listening socket at fd 3 (RunOptions passes fd 3):
		// RUN_DIR/USER/desktop.sock, for the front door.
		if (start->opts.preserveFds == 1) {
			auto sock = prepareListenSocket(start->rt.socket);
			if (!sock)
				return report(sock.error(), kExitSetupFailed);
			if (!sock->warning.empty())
				warn(sock->warning);
			std::fprintf(stderr, "pukaipu-run: %s: listening socket %s\n", user.c_str(), sock->how.c_str());
		}
		// L6. The generation this start pinned, recorded BEFORE prepare()
		// opens the rootfs: rootfs-builder removes no generation a live
		// record names (test_rootfs_generations.py).
		genRecord = generationRecord(start->rt.dir, getpid());
		if (auto r = writeFileAtomic(genRecord, start->rootfs.path + "\n", 0644); !r)
			return report(r.error(), kExitSetupFailed);
		if (!start->rootfs.generation.empty())
			std::fprintf(stderr, "pukaipu-run: %s: rootfs generation %s\n", user.c_str(),
				     start->rootfs.generation.c_str());
		if (!shell) {
			desktopWatch = DesktopWatch { true, user, start->rt.dir, start->rt.socket, start->rootfs,
						      effectiveIdleSeconds(start->global, start->inst), start->global.staleDays,
						      start->global.swapCheckSeconds };
		}
		spec = std::move(start->spec);
		opts = std::move(start->opts);
	}
	auto prepared = prepare(std::move(spec), opts);
	if (!prepared) {
		if (!genRecord.empty())
			unlink(genRecord.c_str());
		return report(prepared.error(), kExitSetupFailed);
	}
	for (const auto& w : prepared->warnings)
		warn(w);
	for (const auto& n : prepared->notes)
		std::fprintf(stderr, "pukaipu-run: note: %s\n", n.c_str());

	// systemd (Type=notify): ready once the payload is exec'd. For an
	// instance, the pid file lets `pukaipu list` tell running from stopped.
	struct Started {
		std::string pidFile;
		std::string who;
		DesktopWatch* watch = nullptr;
	} started { user.empty() ? ""
		    : shell ? RuntimePaths::forUser(paths, user).shellRecord(getpid())
			    : RuntimePaths::forUser(paths, user).desktopRecord(),
		    user.empty() ? bundle : user };
	// The desktop moves to a newer rootfs generation when no client is
	// attached (generation.h, swapReason): a thread started once the payload
	// runs (no fork or clone follows) asks the supervisor to stop the
	// session with SIGTERM, as `systemctl stop` would, and pukaipu-run exits
	// kExitRestartOnCurrent; systemd then starts the next session on `current`.
	if (desktopWatch.active)
		started.watch = &desktopWatch;
	opts.onStartedCtx = &started;
	opts.onStarted = [](void* ctx, pid_t) {
		auto* st = static_cast<Started*>(ctx);
		if (!st->pidFile.empty()) {
			// `pukaipu list/remove` read it to tell a running instance.
			if (auto w = writeFileAtomic(st->pidFile, std::to_string(getpid()) + "\n", 0644); !w)
				warn(w.error().message() + " (pukaipu list will show this instance as stopped)");
		}
		notifySystemd("READY=1\nSTATUS=running " + st->who);
		if (st->watch)
			std::thread(watchDesktop, *st->watch).detach();
	};
	Outcome o = run(*prepared, opts);
	if (!started.pidFile.empty())
		unlink(started.pidFile.c_str());
	if (!genRecord.empty())
		unlink(genRecord.c_str());
	notifySystemd("STOPPING=1");
	if (o.error)
		return report(*o.error, o.status);
	if (swapRestart)
		return kExitRestartOnCurrent;
	return o.status;
}
