#include "config.h"

#include <cstdlib>
#include <regex>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "sandbox/json_fields.h"
#include "build_config.h"

namespace pukaipu {

using json = nlohmann::json;
using namespace jsonf;

Paths Paths::fromEnvironment()
{
	auto env = [](const char* name, std::string def) {
		const char* v = std::getenv(name);
		return v && *v ? std::string(v) : def;
	};
	Paths p;
	p.configFile = env("PUKAIPU_CONFIG", std::string(PUKAIPU_SYSCONFDIR) + "/pukaipu.json");
	p.stateDir = env("PUKAIPU_STATE_DIR", PUKAIPU_STATEDIR);
	p.runDir = env("PUKAIPU_RUN_DIR", "/run/pukaipu");
	return p;
}

std::string Paths::hostCaDir() const
{
	auto slash = configFile.rfind('/');
	return (slash == std::string::npos ? std::string(".") : configFile.substr(0, slash)) + "/ca";
}

bool validUserName(const std::string& name)
{
	static const std::regex re("[a-z_][a-z0-9_-]{0,31}");
	return std::regex_match(name, re) && name.back() != '-';
}

namespace {

Result<IdRange> getRange(const json& j, const std::string& path, uint32_t max)
{
	if (!j.is_array() || j.size() != 2)
		return fail("%s: expected [first, last]", path.c_str());
	TRY(a, getU32(j[0], idx(path, 0)));
	TRY(b, getU32(j[1], idx(path, 1)));
	if (*a > *b || *b > max)
		return fail("%s: [%u, %u] is not a valid range (at most %u)", path.c_str(), *a, *b, max);
	return IdRange { *a, *b };
}

Result<std::vector<std::string>> getCommand(const json& j, const std::string& path)
{
	TRY(v, getStrings(j, path));
	if (v->empty() || (*v)[0].empty() || (*v)[0][0] != '/')
		return fail("%s: expected a command with an absolute path", path.c_str());
	return v;
}

Result<std::string> getOneOf(const json& j, const std::string& path, std::initializer_list<const char*> allowed)
{
	TRY(s, getString(j, path));
	for (const char* a : allowed)
		if (*s == a)
			return s;
	std::string list;
	for (const char* a : allowed)
		list += std::string(list.empty() ? "" : ", ") + a;
	return fail("%s: '%s' is not one of: %s", path.c_str(), s->c_str(), list.c_str());
}

} // namespace

Result<GlobalConfig> parseGlobalConfig(const json& j)
{
	GlobalConfig c;
	c.seccompProfile = std::string(PUKAIPU_DATADIR) + "/seccomp/default.json";
	TRYV(onlyKeys(j, "", { "rootfs", "uidRange", "portRange", "listenAddress", "apparmor", "seccompProfile",
			       "session", "shmSize", "network", "certificateDays", "graceSeconds" }));
	if (j.contains("rootfs")) {
		TRY(v, getString(j["rootfs"], "rootfs"));
		if (v->empty() || (*v)[0] != '/')
			return fail("rootfs: '%s' is not an absolute path", v->c_str());
		c.rootfs = *v;
	}
	if (j.contains("uidRange")) {
		TRY(r, getRange(j["uidRange"], "uidRange", 0xfffffffe));
		if (r->first < 1000)
			return fail("uidRange: starts at %u, inside the system range (below 1000)", r->first);
		c.uids = *r;
	}
	if (j.contains("portRange")) {
		TRY(r, getRange(j["portRange"], "portRange", 65535));
		if (r->first < 1024)
			return fail("portRange: starts at %u, a privileged port", r->first);
		c.ports = *r;
	}
	if (j.contains("listenAddress")) {
		TRY(v, getString(j["listenAddress"], "listenAddress"));
		c.listenAddress = *v;
	}
	if (j.contains("apparmor")) {
		const json& a = j["apparmor"];
		TRYV(onlyKeys(a, "apparmor", { "policy", "profile" }));
		if (a.contains("policy")) {
			TRY(v, getOneOf(a["policy"], "apparmor.policy", { "required", "optional" }));
			c.apparmorPolicy = *v;
		}
		if (a.contains("profile")) {
			TRY(v, getString(a["profile"], "apparmor.profile"));
			c.apparmorProfile = *v;
		}
	}
	if (j.contains("seccompProfile")) {
		TRY(v, getString(j["seccompProfile"], "seccompProfile"));
		c.seccompProfile = *v; // "" = no seccomp filter (only for debugging)
	}
	if (j.contains("session")) {
		const json& s = j["session"];
		TRYV(onlyKeys(s, "session", { "command", "shell" }));
		if (s.contains("command")) {
			TRY(v, getCommand(s["command"], "session.command"));
			c.sessionCommand = *v;
		}
		if (s.contains("shell")) {
			TRY(v, getCommand(s["shell"], "session.shell"));
			c.shellCommand = *v;
		}
	}
	if (j.contains("shmSize")) {
		TRY(v, getString(j["shmSize"], "shmSize"));
		static const std::regex re("[0-9]+[kmg]?|[0-9]+%");
		if (!std::regex_match(*v, re))
			return fail("shmSize: '%s' is not a tmpfs size (e.g. 1g, 512m, 50%%)", v->c_str());
		c.shmSize = *v;
	}
	if (j.contains("network")) {
		const json& n = j["network"];
		TRYV(onlyKeys(n, "network", { "mode", "allowHostNetwork", "allowedCidrs", "dns" }));
		if (n.contains("mode")) {
			TRY(v, getOneOf(n["mode"], "network.mode", { "egress", "none" }));
			c.networkMode = *v;
		}
		if (n.contains("allowHostNetwork")) {
			TRY(v, getBool(n["allowHostNetwork"], "network.allowHostNetwork"));
			c.allowHostNetwork = *v;
		}
		if (n.contains("allowedCidrs")) {
			TRY(v, getStrings(n["allowedCidrs"], "network.allowedCidrs"));
			c.allowedCidrs = *v;
		}
		if (n.contains("dns")) {
			TRY(v, getStrings(n["dns"], "network.dns"));
			c.dns = *v;
		}
	}
	if (j.contains("certificateDays")) {
		TRY(v, getU32(j["certificateDays"], "certificateDays"));
		if (*v < 1 || *v > 3650)
			return fail("certificateDays: %u is outside 1..3650", *v);
		c.certDays = *v;
	}
	if (j.contains("graceSeconds")) {
		TRY(v, getU32(j["graceSeconds"], "graceSeconds"));
		c.graceSeconds = (int)std::min<uint32_t>(*v, 3600);
	}
	return c;
}

Result<GlobalConfig> loadGlobalConfig(const Paths& paths)
{
	struct stat st;
	if (stat(paths.configFile.c_str(), &st) < 0 && errno == ENOENT)
		return parseGlobalConfig(json::object());
	TRY(j, readFile(paths.configFile));
	auto c = parseGlobalConfig(*j);
	if (!c)
		return fail("%s: %s", paths.configFile.c_str(), c.error().message().c_str());
	return c;
}

json toJson(const GlobalConfig& c)
{
	return json {
		{ "rootfs", c.rootfs },
		{ "uidRange", { c.uids.first, c.uids.last } },
		{ "portRange", { c.ports.first, c.ports.last } },
		{ "listenAddress", c.listenAddress },
		{ "apparmor", { { "policy", c.apparmorPolicy }, { "profile", c.apparmorProfile } } },
		{ "seccompProfile", c.seccompProfile },
		{ "session", { { "command", c.sessionCommand }, { "shell", c.shellCommand } } },
		{ "shmSize", c.shmSize },
		{ "network",
		  { { "mode", c.networkMode },
		    { "allowHostNetwork", c.allowHostNetwork },
		    { "allowedCidrs", c.allowedCidrs },
		    { "dns", c.dns } } },
		{ "certificateDays", c.certDays },
		{ "graceSeconds", c.graceSeconds },
	};
}

Result<InstanceConfig> parseInstanceConfig(const json& j)
{
	InstanceConfig c;
	TRYV(onlyKeys(j, "", { "user", "uid", "gid", "port", "fqdn", "extraNames", "network", "created", "createdUser" }));
	for (const char* key : { "user", "uid", "gid", "port", "fqdn" })
		if (!j.contains(key))
			return fail("%s: missing", key);
	TRY(user, getString(j["user"], "user"));
	if (!validUserName(*user))
		return fail("user: '%s' is not a valid user name", user->c_str());
	c.user = *user;
	TRY(uid, getU32(j["uid"], "uid"));
	TRY(gid, getU32(j["gid"], "gid"));
	TRY(port, getU32(j["port"], "port"));
	if (*port == 0 || *port > 65535)
		return fail("port: %u is not a port", *port);
	c.uid = *uid;
	c.gid = *gid;
	c.port = (uint16_t)*port;
	TRY(fqdn, getString(j["fqdn"], "fqdn"));
	c.fqdn = *fqdn;
	if (j.contains("extraNames")) {
		TRY(v, getStrings(j["extraNames"], "extraNames"));
		c.extraNames = *v;
	}
	if (j.contains("network")) {
		TRY(v, getOneOf(j["network"], "network", { "egress", "none" }));
		c.network = *v;
	}
	if (j.contains("created")) {
		TRY(v, getString(j["created"], "created"));
		c.created = *v;
	}
	if (j.contains("createdUser")) {
		TRY(v, getBool(j["createdUser"], "createdUser"));
		c.createdUser = *v;
	}
	return c;
}

Result<InstanceConfig> loadInstanceConfig(const Paths& paths, const std::string& user)
{
	if (!validUserName(user))
		return fail("'%s' is not a valid user name", user.c_str());
	std::string file = paths.instanceDir(user) + "/instance.json";
	struct stat st;
	if (stat(file.c_str(), &st) < 0 && errno == ENOENT)
		return fail("no instance '%s' (create it with: pukaipu create %s --fqdn HOST)", user.c_str(),
			    user.c_str());
	TRY(j, readFile(file));
	auto c = parseInstanceConfig(*j);
	if (!c)
		return fail("%s: %s", file.c_str(), c.error().message().c_str());
	if (c->user != user)
		return fail("%s: user: '%s' does not match the instance name '%s'", file.c_str(), c->user.c_str(),
			    user.c_str());
	return c;
}

json toJson(const InstanceConfig& c)
{
	json j {
		{ "user", c.user }, { "uid", c.uid }, { "gid", c.gid }, { "port", c.port }, { "fqdn", c.fqdn },
		{ "extraNames", c.extraNames }, { "created", c.created }, { "createdUser", c.createdUser },
	};
	if (!c.network.empty())
		j["network"] = c.network;
	return j;
}

} // namespace pukaipu
