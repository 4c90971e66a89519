// pukaipu-run: thin command line over the sandbox library. Parses options,
// loads the bundle, and prints any error exactly once, as one line.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "config.h"
#include "sandbox/stages.h"

using namespace pukaipu;

namespace {

int report(const Error& e, int status)
{
	std::fprintf(stderr, "pukaipu-run: %s\n", e.message().c_str());
	return status;
}

} // namespace

int main(int argc, char** argv)
{
	CLI::App app { "pukaipu-run: run a command in a hardened namespace container (user, mount, pid, ipc,\n"
		       "uts, net and cgroup namespaces; no capabilities; no_new_privs; seccomp; AppArmor).\n" };
	app.name("pukaipu-run");
	std::string bundle;
	std::string apparmor = "required";
	std::string cacheDir = std::string(PUKAIPU_CACHEDIR) + "/seccomp";
	if (const char* env = std::getenv("PUKAIPU_SECCOMP_CACHE"))
		cacheDir = env;
	bool noCache = false;
	int preserveFds = 0;
	int grace = 10;
	app.add_option("--bundle", bundle, "OCI bundle directory holding config.json (see pukaipu-run(8))")
		->required();
	app.add_option("--apparmor", apparmor,
		       "when process.apparmorProfile is set and AppArmor is off or the profile is not loaded:\n"
		       "'required' refuses to start, 'optional' warns and runs unconfined")
		->capture_default_str();
	app.add_option("--seccomp-cache", cacheDir, "directory for compiled seccomp filters (env PUKAIPU_SECCOMP_CACHE)")
		->capture_default_str();
	app.add_flag("--no-seccomp-cache", noCache, "always compile the seccomp profile");
	app.add_option("--preserve-fds", preserveFds, "pass fds 3..3+N-1 to the payload")->capture_default_str();
	app.add_option("--grace", grace, "seconds between forwarding SIGTERM and SIGKILL")->capture_default_str();
	app.add_flag_callback("--version", [] {
		std::printf("pukaipu-run %s\n", PUKAIPU_VERSION);
		std::exit(0);
	}, "print the version and exit");
	app.footer("Exit status: the payload's exit code, or 128+N if it was killed by signal N;\n"
		   "125 if pukaipu-run failed before the payload ran; 126 if the payload could not be\n"
		   "executed; 127 if it was not found.");
	try {
		app.parse(argc, argv);
	} catch (const CLI::ParseError& e) {
		if (e.get_exit_code() == 0)
			return app.exit(e);
		std::fprintf(stderr, "pukaipu-run: %s (see --help)\n", e.what());
		return kExitSetupFailed;
	}

	if (geteuid() != 0)
		return report(makeError(0, "must run as root (it creates the namespaces and maps the user's ids)"),
			      kExitSetupFailed);

	RunOptions opts;
	auto policy = parseAppArmorPolicy(apparmor);
	if (!policy)
		return report(makeError(0, "--apparmor: %s", policy.error().what), kExitSetupFailed);
	opts.apparmorPolicy = *policy;
	opts.seccompCacheDir = noCache ? "" : cacheDir;
	opts.preserveFds = preserveFds;
	if (grace < 0)
		return report(makeError(0, "--grace %d: expected 0 or more seconds", grace), kExitSetupFailed);
	opts.graceSeconds = grace;

	// The bundle is trusted as root: nobody but root may be able to change it.
	if (auto r = checkTrustedPath(bundle); !r)
		return report(makeError(r.error().errno_, "bundle: %s", r.error().what), kExitSetupFailed);
	auto spec = loadBundle(bundle);
	if (!spec)
		return report(spec.error(), kExitSetupFailed);
	auto prepared = prepare(std::move(*spec), opts);
	if (!prepared)
		return report(prepared.error(), kExitSetupFailed);
	for (const auto& w : prepared->warnings)
		std::fprintf(stderr, "pukaipu-run: warning: %s\n", w.c_str());

	Outcome o = run(*prepared, opts);
	if (o.error)
		return report(*o.error, o.status);
	return o.status;
}
