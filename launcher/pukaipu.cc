// pukaipu: provisions and inspects instances. `pukaipu-run USER` runs them.
//
//   pukaipu create USER --fqdn HOST [--port N] [--uid N] [--extra-name NAME]...
//   pukaipu list [--json] | show USER [--json] | remove USER [--purge-home]
//   pukaipu cert renew USER
//   pukaipu set USER [--memory SIZE] [--cpus N] [--tasks N] [--idle-timeout DURATION]
//   pukaipu grant|revoke USER KIND VALUE | grants USER [--json] | attach USER
//   pukaipu restart USER [--when-idle]
//   pukaipu front reload|status|sni-map | ca rotate | migrate
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <cerrno>
#include <csignal>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "build_config.h"
#include "base/file_io.h"
#include "certs/certs.h"
#include "cmd_grants.h"
#include "config.h"
#include "front.h"
#include "host_ca.h"
#include "instance.h"
#include "migrate.h"
#include "names.h"
#include "provision.h"
#include "systemd/dropins.h"
#include "base/json_fields.h"
#include "base/process.h"

using namespace pukaipu;
using json = nlohmann::json;

namespace {

int report(const Error& e)
{
	std::fprintf(stderr, "pukaipu: %s\n", e.message().c_str());
	return 1;
}

// The exit status of a command that printed its own result.
int done(const Result<void>& r)
{
	return r ? 0 : report(r.error());
}

// The exit status of a command whose result is text to print as it is.
int printed(const Result<std::string>& r)
{
	if (!r)
		return report(r.error());
	std::printf("%s", r->c_str());
	return 0;
}

// The desktop runs (its pukaipu-run's record names a live pukaipu-run).
bool running(const Paths& p, const std::string& user)
{
	return !liveLaunchers(RuntimePaths::forUser(p, user), true).empty();
}

void warnAll(const std::vector<std::string>& warnings)
{
	for (const auto& w : warnings)
		std::fprintf(stderr, "pukaipu: warning: %s\n", w.c_str());
}

// The front door follows create, remove, cert renew and set; its failure
// does not undo them.
// Returns whether it is up to date.
bool refreshFront(const Paths& p, const GlobalConfig& g)
{
	auto r = front::refresh(p, g);
	if (!r)
		std::fprintf(stderr, "pukaipu: warning: front door not updated: %s\n", r.error().message().c_str());
	else if (!r->empty())
		std::fprintf(stderr, "pukaipu: note: %s\n", r->c_str());
	return r.has_value();
}

// "none" (no limit; 0 once parsed) or what `v` accepts. Literally 0 is
// still v's to refuse.
CLI::Validator noneOr(const CLI::Validator& v)
{
	return CLI::Validator(
		[v](std::string& s) {
			if (s != "none")
				return v(s);
			s = "0";
			return std::string();
		},
		v.get_description() + " or none");
}

// Limits and the idle timeout from the command line ("none" removes a limit,
// "default" makes the idle timeout follow the global idleSeconds again).
// Numbers are parsed and range-checked by CLI11; a bad one is a usage error
// naming the option.
struct LimitArgs {
	std::string memory, idle;
	double cpus = 0;     // 0: none
	uint32_t tasks = 0;  // 0: none
	CLI::Option* cpusOption = nullptr;
	CLI::Option* tasksOption = nullptr;
	bool none() const // any limit given as "none"
	{
		return memory == "none" || (cpusOption->count() && cpus == 0) || (tasksOption->count() && tasks == 0);
	}
};

void addLimitOptions(CLI::App* cmd, LimitArgs& a, bool forSet)
{
	const char* none = forSet ? "; 'none' removes it" : "";
	cmd->add_option("--memory", a.memory, std::string("MemoryMax= of the instance's unit, e.g. 2G, 512M, 25%") + none);
	a.cpusOption = cmd->add_option("--cpus", a.cpus, std::string("CPUs the instance may use, e.g. 1.5 (CPUQuota=150%)") + none)
			       ->transform(noneOr(CLI::Range(kMinCpus, kMaxCpus)));
	a.tasksOption = cmd->add_option("--tasks", a.tasks, std::string("TasksMax= (processes and threads), e.g. 2048") + none)
				->transform(noneOr(CLI::Range(kMinTasks, kMaxTasks)));
	cmd->add_option("--idle-timeout", a.idle,
			std::string("stop the session after this long without a client (90s, 30m, 2h; 0 = never)") +
				(forSet ? "; 'default' follows idleSeconds of pukaipu.json" : ""));
}

Result<SetRequest> parseLimitArgs(const LimitArgs& a)
{
	SetRequest r;
	if (!a.memory.empty()) {
		if (a.memory == "none")
			r.memory = "";
		else {
			TRY(v, checkMemoryLimit(a.memory, "--memory"));
			r.memory = *v;
		}
	}
	// The model's checks have the last word (CLI::Range lets "nan" through);
	// 0 means no limit.
	auto zeroOrChecked = [](auto v, auto check, const char* option) -> decltype(check(v, option)) {
		if (v == 0)
			return 0;
		return check(v, option);
	};
	if (a.cpusOption->count()) {
		TRY(v, zeroOrChecked(a.cpus, checkCpuLimit, "--cpus"));
		r.cpus = *v;
	}
	if (a.tasksOption->count()) {
		TRY(v, zeroOrChecked(a.tasks, checkTasksLimit, "--tasks"));
		r.tasks = *v;
	}
	if (!a.idle.empty()) {
		if (a.idle == "default")
			r.idleSeconds = std::optional<uint32_t>();
		else {
			TRY(v, parseDuration(a.idle, "--idle-timeout"));
			r.idleSeconds = std::optional<uint32_t>(*v);
		}
	}
	return r;
}

json describe(const Paths& p, const InstanceConfig& i)
{
	json j = i;
	const RuntimePaths rt = RuntimePaths::forUser(p, i.user);
	const auto live = liveLaunchers(rt, true);
	j["state"] = live.empty() ? "stopped" : "running";
	// The generation the desktop runs (its record), and whether `current` moved on.
	if (!live.empty()) {
		const std::string path = recordedGeneration(rt.dir, live[0]);
		const auto slash = path.rfind('/');
		if (slash != std::string::npos && slash > 0) {
			const std::string base = path.substr(0, slash), gen = path.substr(slash + 1);
			Behind b = behindCurrent(base, gen);
			if (!b.current.empty()) {
				j["generation"] = gen;
				j["behind"] = b.behind;
				if (b.behind) {
					j["currentGeneration"] = b.current;
					j["behindSeconds"] = b.seconds;
				}
			}
		}
	}
	const std::string certDir = p.instanceDir(i.user) + "/certs";
	for (const char* which : { "client", "server" }) {
		auto pem = readFileLimited(certDir + "/" + which + ".crt");
		if (!pem)
			continue;
		auto info = certs::inspect(*pem);
		if (info)
			j[std::string(which) + "CertExpires"] = certs::formatTime(info->notAfter);
	}
	j["clientP12"] = certDir + "/client.p12";
	return j;
}

// `pukaipu restart USER [--when-idle]`. At once: systemctl restart under
// systemd, else SIGTERM to the desktop's pukaipu-run (the socket, or whoever
// started it, starts the next one). --when-idle: a request file the
// desktop's pukaipu-run acts on when no client is attached (generation.h).
Result<void> cmdRestart(const Paths& p, const std::string& user, bool whenIdle)
{
	TRYV(loadInstanceConfig(p, user));
	const RuntimePaths rt = RuntimePaths::forUser(p, user);
	const auto live = liveLaunchers(rt, true);
	if (live.empty()) {
		std::printf("%s is not running: its next start uses the current rootfs generation\n", user.c_str());
		return {};
	}
	if (whenIdle) {
		TRYV(writeFileAtomic(restartRequest(rt.dir), "", 0644));
		std::printf("%s restarts when no client is attached (pukaipu-run pid %d checks every "
			    "rootfsUpdate.checkSeconds)\n", user.c_str(), (int)live[0]);
		return {};
	}
	if (units::manageSystemd(p)) {
		auto r = runProgram({ "systemctl", "restart", units::serviceName(user) }, true);
		if (!r || r->status != 0)
			return fail("systemctl restart %s failed%s%s", units::serviceName(user).c_str(), r ? ": " : "",
				    r ? r->output.c_str() : "");
		std::printf("restarted %s\n", units::serviceName(user).c_str());
		return {};
	}
	if (kill(live[0], SIGTERM) < 0)
		return failErrno(errno, "signal pukaipu-run pid %d", (int)live[0]);
	std::printf("stopped %s's desktop (pukaipu-run pid %d); its socket or supervisor starts the next one\n",
		    user.c_str(), (int)live[0]);
	return {};
}

Result<void> cmdRotateCa(const Paths& p, const GlobalConfig& g)
{
	TRY(r, rotateHostCa(p, g));
	refreshFront(p, g);
	std::printf("new host CA: %s (it may sign names in", r->caPath.c_str());
	for (const auto& d : permittedDomains(g))
		std::printf(" %s", d.c_str());
	std::printf(", and no IP address)\n");
	for (const auto& u : r->reissued)
		std::printf("%s: new server certificate from the new host CA\n", u.c_str());
	for (const auto& u : r->external)
		std::printf("%s: server certificate from another CA, kept\n", u.c_str());
	for (const auto& c : r->clients)
		std::printf("%s: new client certificate %s, passphrase (shown once, never stored): %s\n", c.user.c_str(),
			    c.p12Path.c_str(), c.passphrase.c_str());
	std::printf("older client certificates open nothing any more. Each user must now: remove the old pukaipu host CA "
		    "from the browser, import %s as a trusted CA, and import the new client.p12\n", r->caPath.c_str());
	return {};
}

Result<void> cmdMigrate(const Paths& p, const GlobalConfig& g)
{
	TRY(r, migrate(p, g));
	for (const auto& c : r->changes)
		std::printf("%s\n", c.c_str());
	if (r->dropInsRemoved && units::manageSystemd(p))
		if (auto d = units::daemonReload(); !d)
			warnAll({ d.error().message() + " (run systemctl daemon-reload yourself)" });
	// The front door serves them from now on: write its configuration (and
	// reload it when it runs).
	if (!r->urls.empty() || !r->frontWasSetUp) {
		if (auto f = front::generate(p, g); !f)
			warnAll({ "front door not set up: " + f.error().message() + " (then: pukaipu front reload)" });
		else
			refreshFront(p, g);
	}
	for (const auto& u : r->urls)
		std::printf("%s\n", u.c_str());
	if (r->urls.empty() && r->changes.empty())
		std::printf("nothing to migrate\n");
	else if (!front::runningPid(p))
		std::printf("start the front door: pukaipu front reload\n");
	if (auto problem = hostCaProblem(p, g))
		warnAll({ *problem });
	return {};
}

} // namespace

int main(int argc, char** argv)
{
	CLI::App app { "pukaipu: create and manage per-user remote browser desktops (instances).\n"
		       "Each instance is a Unix user with an Xpra desktop served over TLS that only that\n"
		       "user's client certificate opens. Start one with: systemctl start pukaipu@USER\n"
		       "(or run pukaipu-run USER). See pukaipu(8).\n" };
	app.name("pukaipu");
	app.require_subcommand(1);
	Paths paths = Paths::fromEnvironment();
	app.add_option("--config", paths.configFile, "global configuration (env PUKAIPU_CONFIG)")->capture_default_str();
	app.add_option("--state-dir", paths.stateDir, "instances and certificates (env PUKAIPU_STATE_DIR)")
		->capture_default_str();
	app.add_flag_callback("--version", [] {
		std::printf("pukaipu %s\n", PUKAIPU_VERSION);
		std::exit(0);
	}, "print the version and exit");

	CreateRequest req;
	uint16_t port = 0;
	uint32_t uid = 0;
	auto* create = app.add_subcommand("create", "create an instance (idempotent: an existing one is left as it is)");
	create->add_option("USER", req.user, "user name (created if missing, with a uid from the range)")->required();
	create->add_option("--fqdn", req.fqdn, "host name users open in the browser (in the server certificate; "
					       "default: USER.DOMAIN, domain from pukaipu.json)");
	auto* portOption = create->add_option("--port", port, "the instance's port, for the front door (default: the lowest free one in the range)")
				   ->check(CLI::Range(1, 65535));
	auto* uidOption = create->add_option("--uid", uid, "uid for a new user (default: the lowest free one in the range)")
				  ->check(CLI::Range(0u, 0xfffffffeu));
	create->add_option("--extra-name", req.extraNames, "another DNS name of the instance (no IP address; a name "
							   "belongs to one instance only)");
	create->add_option("--server-cert", req.serverCertFile, "an externally issued server certificate (PEM, leaf first)");
	create->add_option("--server-key", req.serverKeyFile, "its private key (PEM)");
	create->add_option("--network", req.network, "egress (default) or none")->check(CLI::IsMember({ "egress", "none" }));
	LimitArgs createLimits, setLimits;
	addLimitOptions(create, createLimits, false);

	bool asJson = false, purge = false;
	std::string user;
	auto* list = app.add_subcommand("list", "list instances: user, uid, port, state, certificate expiry");
	list->add_flag("--json", asJson, "machine-readable output");
	auto* show = app.add_subcommand("show", "show one instance");
	show->add_option("USER", user)->required();
	show->add_flag("--json", asJson, "machine-readable output");
	auto* remove = app.add_subcommand("remove", "remove an instance (its home stays unless --purge-home)");
	remove->add_option("USER", user)->required();
	remove->add_flag("--purge-home", purge, "also delete the home and the user (only users pukaipu created)");
	auto* cert = app.add_subcommand("cert", "certificates");
	cert->require_subcommand(1);
	auto* renew = cert->add_subcommand("renew", "new client CA, certificate and passphrase; the front door refuses older certificates at once and closes their sessions");
	renew->add_option("USER", user)->required();
	auto* set = app.add_subcommand("set", "change an instance's limits or idle timeout and rewrite its systemd drop-ins\n"
					      "(they apply from the next start: systemctl restart pukaipu@USER)");
	set->add_option("USER", user)->required();
	addLimitOptions(set, setLimits, true);

	bool whenIdle = false;
	auto* restartCmd = app.add_subcommand("restart", "restart the instance's desktop, e.g. on a new rootfs generation;\n"
						     "--when-idle: at the next moment no client is attached");
	restartCmd->add_option("USER", user)->required();
	restartCmd->add_flag("--when-idle", whenIdle, "wait until no client is attached (pukaipu-run checks every\n"
						      "rootfsUpdate.checkSeconds)");

	// Grants and local attach (cmd_grants.h).
	std::string kind, value;
	std::vector<std::string> xpraOptions;
	auto* grantCmd = app.add_subcommand("grant", "grant an instance an extra permission, from its next start:\n"
						    "mount HOST:CONTAINER[:ro|:rw], network egress|none, clipboard\n"
						    "both|to-browser|from-browser|off, downloads|printing|audio|gpu on|off");
	auto* revokeCmd = app.add_subcommand("revoke", "take a grant back (from the instance's next start)");
	for (auto* cmd : { grantCmd, revokeCmd }) {
		cmd->add_option("USER", user)->required();
		cmd->add_option("KIND", kind, "mount, network, clipboard, downloads, printing, audio or gpu")->required();
		cmd->add_option("VALUE", value)->required();
	}
	auto* grantsCmd = app.add_subcommand("grants", "list an instance's grants (defaults included)");
	grantsCmd->add_option("USER", user)->required();
	grantsCmd->add_flag("--json", asJson, "machine-readable output");
	auto* attachCmd = app.add_subcommand("attach", "as USER on this host: open the desktop with the local xpra\n"
						      "client over its Unix socket (no TLS; mmap)");
	attachCmd->add_option("USER", user)->required();
	attachCmd->add_option("XPRA_OPTIONS", xpraOptions, "more options for `xpra attach` (after --)");

	auto* frontCmd = app.add_subcommand("front", "the front door (HAProxy: TLS, client certificates, one name per instance)");
	frontCmd->require_subcommand(1);
	auto* frontReload = frontCmd->add_subcommand("reload", "write the HAProxy configuration (checked with haproxy -c) and start or reload it");
	auto* frontStatus = frontCmd->add_subcommand("status", "whether the front door's HAProxy runs, and with which configuration");
	auto* frontSniMap = frontCmd->add_subcommand("sni-map", "NAME HOST:PORT per instance, for a TCP-mode HAProxy on another host");

	auto* caCmd = app.add_subcommand("ca", "the host CA, which users trust for the instances' server certificates");
	caCmd->require_subcommand(1);
	auto* caRotate = caCmd->add_subcommand("rotate", "replace the host CA by one with name constraints (the domains of "
							 "pukaipu.json, no IP address), re-issue the server certificates it signed and every "
							 "client certificate, refresh the front door");
	auto* migrateCmd = app.add_subcommand("migrate", "move instances made before the front door over to it (idempotent; "
							 "prints each old URL and the new one)");

	if (auto done = parseCommandLine(app, argc, argv, "pukaipu", 2))
		return *done;
	// attach runs as the user and needs no configuration.
	if (attachCmd->parsed())
		return report(execAttach(paths, user, xpraOptions));

	auto global = loadGlobalConfig(paths);
	if (!global)
		return report(global.error());
	bool mutating = create->parsed() || remove->parsed() || renew->parsed() || set->parsed() ||
			grantCmd->parsed() || revokeCmd->parsed() || frontReload->parsed() || restartCmd->parsed() ||
			caRotate->parsed() || migrateCmd->parsed();
	if (mutating && geteuid() != 0)
		return report(makeError(0, "must run as root"));

	if (restartCmd->parsed())
		return done(cmdRestart(paths, user, whenIdle));

	// Each command that changes something takes the provisioning lock itself.
	if (grantCmd->parsed())
		return done(cmdChangeGrant(paths, *global, GrantOp::Grant, user, kind, value));
	if (revokeCmd->parsed())
		return done(cmdChangeGrant(paths, *global, GrantOp::Revoke, user, kind, value));
	if (grantsCmd->parsed())
		return done(cmdListGrants(paths, *global, user, asJson));

	if (frontReload->parsed())
		return printed(front::reload(paths, *global).transform([](std::string s) { return s + "\n"; }));
	if (frontStatus->parsed()) {
		std::printf("%s", front::status(paths).c_str());
		return front::runningPid(paths) ? 0 : 3;
	}
	if (frontSniMap->parsed())
		return printed(front::sniMap(paths, *global));
	if (caRotate->parsed())
		return done(cmdRotateCa(paths, *global));
	if (migrateCmd->parsed())
		return done(cmdMigrate(paths, *global));

	if (create->parsed()) {
		if (req.fqdn.empty())
			req.fqdn = req.user + "." + global->domain;
		if (portOption->count())
			req.port = port;
		if (uidOption->count())
			req.uid = uid;
		auto limits = parseLimitArgs(createLimits);
		if (!limits)
			return report(limits.error());
		if (createLimits.none())
			return report(makeError(0, "create: 'none' is the default; leave the option out"));
		req.limits.memory = limits->memory.value_or("");
		req.limits.cpus = limits->cpus.value_or(0);
		req.limits.tasks = limits->tasks.value_or(0);
		if (limits->idleSeconds)
			req.idleSeconds = *limits->idleSeconds;
		auto r = createInstance(paths, *global, req);
		if (!r)
			return report(r.error());
		warnAll(r->warnings);
		if (!r->created) {
			std::printf("instance '%s' exists (uid %u, port %u); nothing changed\n", r->instance.user.c_str(),
				    r->instance.uid, r->instance.port);
			return 0;
		}
		refreshFront(paths, *global);
		std::printf("created instance '%s': uid %u, port %u\n", r->instance.user.c_str(), r->instance.uid,
			    r->instance.port);
		std::printf("its address, through the front door: %s/\n",
			    front::originOf(front::instanceName(r->instance), global->frontPort).c_str());
		std::printf("client certificate: %s\n", r->p12Path.c_str());
		std::printf("passphrase (shown once, never stored): %s\n", r->passphrase.c_str());
		std::printf("start it with: systemctl enable --now pukaipu@%s.socket   (or: pukaipu-run %s)\n",
			    r->instance.user.c_str(), r->instance.user.c_str());
		return 0;
	}
	if (renew->parsed()) {
		auto r = renewClientCert(paths, *global, user);
		if (!r)
			return report(r.error());
		bool upToDate = refreshFront(paths, *global);
		std::printf("renewed the client certificate of '%s': %s\n", user.c_str(), r->p12Path.c_str());
		std::printf("passphrase (shown once, never stored): %s\n", r->passphrase.c_str());
		if (upToDate && front::runningPid(paths))
			std::printf("the front door refuses older certificates of '%s' from now on; its open sessions were "
				    "closed\n", user.c_str());
		else if (upToDate)
			std::printf("older certificates of '%s' are refused once the front door runs\n", user.c_str());
		return 0;
	}
	if (remove->parsed()) {
		auto r = removeInstance(paths, user, purge);
		if (!r)
			return report(r.error());
		warnAll(r->warnings);
		refreshFront(paths, *global);
		std::printf("removed instance '%s'%s\n", user.c_str(), purge ? " and its home" : " (home kept)");
		if (!r->hostNetwork.empty())
			std::printf("%s\n", r->hostNetwork.c_str());
		return 0;
	}
	if (set->parsed()) {
		auto change = parseLimitArgs(setLimits);
		if (!change)
			return report(change.error());
		auto r = setInstance(paths, user, *change);
		if (!r)
			return report(r.error());
		warnAll(r->warnings);
		if (r->changed)
			refreshFront(paths, *global);
		std::printf("%s instance '%s'\n", r->changed ? "changed" : "unchanged", user.c_str());
		if (r->changed && running(paths, user))
			std::printf("it is running: a new idle timeout applies from its next start; for the limits, "
				    "systemctl restart pukaipu@%s (or systemctl set-property)\n", user.c_str());
		return 0;
	}
	if (show->parsed()) {
		auto inst = loadInstanceConfig(paths, user);
		if (!inst)
			return report(inst.error());
		json j = describe(paths, *inst);
		if (auto problem = hostCaProblem(paths, *global))
			warnAll({ *problem });
		if (asJson) {
			std::printf("%s\n", j.dump(2).c_str());
			return 0;
		}
		for (const auto& [k, v] : j.items())
			std::printf("%-20s %s\n", (k + ":").c_str(), v.is_string() ? v.get<std::string>().c_str() : v.dump().c_str());
		return 0;
	}
	if (list->parsed()) {
		auto all = listInstances(paths);
		if (!all)
			return report(all.error());
		json arr = json::array();
		for (const auto& i : *all)
			arr.push_back(describe(paths, i));
		if (asJson) {
			std::printf("%s\n", arr.dump(2).c_str());
			return 0;
		}
		std::printf("%-16s %6s %6s %-8s %-24s %-28s %s\n", "USER", "UID", "PORT", "STATE", "CLIENT CERT EXPIRES",
			    "GENERATION", "FQDN");
		for (const auto& j : arr) {
			std::string gen = j.value("generation", std::string("-"));
			if (j.value("behind", false))
				gen += " (behind " + std::to_string(j.value("behindSeconds", (int64_t)0) / 86400) + "d)";
			std::printf("%-16s %6u %6u %-8s %-24s %-28s %s\n", j["user"].get<std::string>().c_str(),
				    j["uid"].get<unsigned>(), j["port"].get<unsigned>(), j["state"].get<std::string>().c_str(),
				    j.value("clientCertExpires", std::string("?")).c_str(), gen.c_str(),
				    j["fqdn"].get<std::string>().c_str());
		}
		return 0;
	}
	return 0;
}
