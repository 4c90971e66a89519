#include "config.h"

#include <cstdlib>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "base/json_fields.h"
#include "base/net_literal.h"
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
	p.systemdDir = env("PUKAIPU_SYSTEMD_DIR", "/etc/systemd/system");
	p.systemdDirIsDefault = p.systemdDir == "/etc/systemd/system";
	auto slash = p.configFile.rfind('/');
	p.frontDir = env("PUKAIPU_FRONT_DIR",
			 (slash == std::string::npos ? std::string(".") : p.configFile.substr(0, slash)) + "/front");
	return p;
}

std::string Paths::hostCaDir() const
{
	auto slash = configFile.rfind('/');
	return (slash == std::string::npos ? std::string(".") : configFile.substr(0, slash)) + "/ca";
}

// A DNS name of LDH labels (no wildcards); never an IP literal.
bool validHostName(const std::string& s)
{
	if (isIpLiteral(s))
		return false;
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

bool validUserName(const std::string& name)
{
	// [a-z_][a-z0-9_-]{0,31}, not ending in '-'
	if (name.empty() || name.size() > 32 || name.back() == '-')
		return false;
	for (size_t i = 0; i < name.size(); i++) {
		char c = name[i];
		bool ok = (c >= 'a' && c <= 'z') || c == '_' || (i > 0 && ((c >= '0' && c <= '9') || c == '-'));
		if (!ok)
			return false;
	}
	return true;
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

Result<std::string> checkMemoryLimit(const std::string& v, const std::string& what)
{
	// What MemoryMax= takes, minus "infinity" (that is: no limit): 1 to 16
	// digits without a leading 0 and an optional K, M, G or T; or 1..100%.
	std::string u = v;
	if (!u.empty() && u.back() >= 'a' && u.back() <= 'z')
		u.back() = (char)(u.back() - 'a' + 'A');
	size_t digits = u.find_first_not_of("0123456789");
	std::string rest = digits == std::string::npos ? "" : u.substr(digits);
	std::string num = u.substr(0, digits);
	bool ok = !num.empty() && num[0] != '0';
	if (ok && rest == "%")
		ok = num.size() <= 3 && std::stoul(num) <= 100;
	else
		ok = ok && num.size() <= 16 && (rest.empty() || (rest.size() == 1 && std::string("KMGT").find(rest) != std::string::npos));
	if (!ok)
		return fail("%s: '%s' is not a memory size (e.g. 2G, 512M, 25%%)", what.c_str(), v.c_str());
	return u;
}

Result<double> checkCpuLimit(double v, const std::string& what)
{
	if (!(v >= kMinCpus && v <= kMaxCpus))
		return fail("%s: %g is not a number of CPUs between %g and %g", what.c_str(), v, kMinCpus, kMaxCpus);
	return v;
}

Limits effectiveLimits(const GlobalConfig& g, const InstanceConfig& i)
{
	Limits l = i.limits;
	if (l.memory.empty() && g.memoryMax != "infinity")
		l.memory = g.memoryMax;
	if (l.tasks == 0)
		l.tasks = g.tasksMax; // 0: none
	return l;
}

Result<uint64_t> memoryBytes(const std::string& v, uint64_t physical)
{
	TRY(u, checkMemoryLimit(v, "memory limit"));
	uint64_t n = std::stoull(*u);
	const char unit = u->back();
	if (unit == '%')
		return physical / 100 * n;
	const int shift = unit == 'K' ? 10 : unit == 'M' ? 20 : unit == 'G' ? 30 : unit == 'T' ? 40 : 0;
	if (shift && n > (UINT64_MAX >> shift))
		return fail("memory limit '%s': too large", v.c_str());
	return n << shift;
}

Result<uint32_t> checkTasksLimit(uint64_t v, const std::string& what)
{
	if (v < kMinTasks || v > kMaxTasks)
		return fail("%s: %llu is not between %u and %u", what.c_str(), (unsigned long long)v, kMinTasks, kMaxTasks);
	return (uint32_t)v;
}

Result<uint32_t> parseDuration(const std::string& v, const std::string& what)
{
	// 1 to 7 digits and an optional unit: s, m or h.
	size_t digits = v.find_first_not_of("0123456789");
	std::string num = v.substr(0, digits);
	std::string unitText = digits == std::string::npos ? "" : v.substr(digits);
	if (num.empty() || num.size() > 7 || !(unitText.empty() || unitText == "s" || unitText == "m" || unitText == "h"))
		return fail("%s: '%s' is not a duration (e.g. 90s, 30m, 2h; 0 = never)", what.c_str(), v.c_str());
	uint64_t n = std::stoull(num);
	uint64_t unit = unitText == "h" ? 3600 : unitText == "m" ? 60 : 1;
	if (n * unit > 7 * 86400)
		return fail("%s: '%s' is more than 7 days", what.c_str(), v.c_str());
	return (uint32_t)(n * unit);
}

namespace {

// Getters of single fields (optionalField), each with its own check; errors
// name the field's path.

Result<std::string> getAbsolutePath(const json& j, const std::string& path)
{
	TRY(v, getString(j, path));
	if (v->empty() || (*v)[0] != '/')
		return fail("%s: '%s' is not an absolute path", path.c_str(), v->c_str());
	return v;
}

Result<IdRange> getUidRange(const json& j, const std::string& path)
{
	TRY(r, getRange(j, path, 0xfffffffe));
	if (r->first < 1000)
		return fail("%s: starts at %u, inside the system range (below 1000)", path.c_str(), r->first);
	return r;
}

Result<IdRange> getPortRange(const json& j, const std::string& path)
{
	TRY(r, getRange(j, path, 65535));
	if (r->first < 1024)
		return fail("%s: starts at %u, a privileged port", path.c_str(), r->first);
	return r;
}

Result<std::string> getListenAddress(const json& j, const std::string& path)
{
	TRY(v, getString(j, path));
	if (!isIpLiteral(*v))
		return fail("%s: '%s' is not an IPv4 or IPv6 address", path.c_str(), v->c_str());
	return v;
}

Result<std::string> getDomain(const json& j, const std::string& path)
{
	TRY(v, getString(j, path));
	if (!validHostName(*v))
		return fail("%s: '%s' is not a DNS name", path.c_str(), v->c_str());
	return v;
}

Result<std::vector<std::string>> getDomains(const json& j, const std::string& path)
{
	TRY(v, getStrings(j, path));
	for (const auto& d : *v)
		if (!validHostName(d))
			return fail("%s: '%s' is not a DNS name", path.c_str(), d.c_str());
	return v;
}

// A number within lo..hi.
Result<uint32_t> getU32Within(const json& j, const std::string& path, uint32_t lo, uint32_t hi)
{
	TRY(v, getU32(j, path));
	if (*v < lo || *v > hi)
		return fail("%s: %u is outside %u..%u", path.c_str(), *v, lo, hi);
	return v;
}

Result<uint16_t> getFrontPort(const json& j, const std::string& path)
{
	TRY(v, getU32Within(j, path, 1, 65535));
	return (uint16_t)*v;
}

// frontProxyFrom: addresses or CIDR ranges (IP or IP/LEN), each checked.
Result<std::vector<std::string>> getProxyFrom(const json& j, const std::string& path)
{
	TRY(v, getStrings(j, path));
	for (const auto& s : *v) {
		size_t slash = s.find('/');
		auto ip = parseIpLiteral(s.substr(0, slash));
		bool ok = ip.has_value();
		if (ok && slash != std::string::npos) {
			const std::string len = s.substr(slash + 1);
			unsigned max = ip->family == AF_INET ? 32 : 128;
			ok = !len.empty() && len.size() <= 3 && len.find_first_not_of("0123456789") == std::string::npos &&
			     (unsigned)std::stoul(len) <= max;
		}
		if (!ok)
			return fail("%s: '%s' is not an IP address or CIDR range (e.g. 192.0.2.1 or 10.0.0.0/8)", path.c_str(),
				    s.c_str());
	}
	return v;
}

Result<std::string> getAppArmorPolicy(const json& j, const std::string& path)
{
	return getOneOf(j, path, { "required", "optional" });
}

Result<std::string> getNetworkMode(const json& j, const std::string& path)
{
	return getOneOf(j, path, { "egress", "none" });
}

Result<std::string> getShmSize(const json& j, const std::string& path)
{
	TRY(v, getString(j, path));
	// A tmpfs size: digits, then nothing, k, m, g or %.
	size_t digits = v->find_first_not_of("0123456789");
	bool ok = digits != 0 && (digits == std::string::npos ||
				  (digits == v->size() - 1 && std::string("kmg%").find(v->back()) != std::string::npos));
	if (!ok)
		return fail("%s: '%s' is not a tmpfs size (e.g. 1g, 512m, 50%%)", path.c_str(), v->c_str());
	return v;
}

Result<uint32_t> getCertDays(const json& j, const std::string& path)
{
	return getU32Within(j, path, 1, 3650);
}

Result<int> getGraceSeconds(const json& j, const std::string& path)
{
	TRY(v, getU32(j, path));
	return (int)std::min<uint32_t>(*v, 3600);
}

Result<uint32_t> getIdleSeconds(const json& j, const std::string& path)
{
	TRY(v, getU32(j, path));
	if (*v > 7 * 86400)
		return fail("%s: %u is more than 7 days", path.c_str(), *v);
	return v;
}

Result<uint32_t> getStaleDays(const json& j, const std::string& path)
{
	return getU32Within(j, path, 0, 3650);
}

Result<uint32_t> getCheckSeconds(const json& j, const std::string& path)
{
	return getU32Within(j, path, 1, 86400);
}

Result<std::string> getMemoryLimit(const json& j, const std::string& path)
{
	TRY(s, getString(j, path));
	return checkMemoryLimit(*s, path);
}

Result<double> getCpuLimit(const json& j, const std::string& path)
{
	if (!j.is_number())
		return fail("%s: expected a number", path.c_str());
	return checkCpuLimit(j.get<double>(), path);
}

Result<uint32_t> getTasksLimit(const json& j, const std::string& path)
{
	TRY(n, getU64(j, path));
	return checkTasksLimit(*n, path);
}

} // namespace

Result<GlobalConfig> parseGlobalConfig(const json& j)
{
	GlobalConfig c;
	c.seccompProfile = std::string(PUKAIPU_DATADIR) + "/seccomp/default.json";
	TRYV(onlyKeys(j, "", { "rootfs", "uidRange", "portRange", "listenAddress", "apparmor", "seccompProfile",
			       "session", "shmSize", "tmpSize", "runtimeDirSize", "memoryMax", "tasksMax", "network", "certificateDays", "graceSeconds",
			       "idleSeconds", "domain", "extraDomains", "frontPort", "frontProxyFrom", "rootfsUpdate" }));
	TRYV(optionalField(j, "rootfs", "", c.rootfs, getAbsolutePath));
	TRYV(optionalField(j, "uidRange", "", c.uids, getUidRange));
	TRYV(optionalField(j, "portRange", "", c.ports, getPortRange));
	TRYV(optionalField(j, "listenAddress", "", c.listenAddress, getListenAddress));
	TRYV(optionalField(j, "domain", "", c.domain, getDomain));
	TRYV(optionalField(j, "extraDomains", "", c.extraDomains, getDomains));
	TRYV(optionalField(j, "frontPort", "", c.frontPort, getFrontPort));
	TRYV(optionalField(j, "frontProxyFrom", "", c.frontProxyFrom, getProxyFrom));
	TRYV(optionalSection(j, "apparmor", "", c, field("policy", &GlobalConfig::apparmorPolicy, getAppArmorPolicy),
			     field("profile", &GlobalConfig::apparmorProfile, getString)));
	// "" = no seccomp filter (only for debugging)
	TRYV(optionalField(j, "seccompProfile", "", c.seccompProfile, getString));
	TRYV(optionalSection(j, "session", "", c, field("command", &GlobalConfig::sessionCommand, getCommand),
			     field("shell", &GlobalConfig::shellCommand, getCommand)));
	TRYV(optionalField(j, "shmSize", "", c.shmSize, getShmSize));
	TRYV(optionalField(j, "tmpSize", "", c.tmpSize, getShmSize));
	TRYV(optionalField(j, "runtimeDirSize", "", c.runtimeDirSize, getShmSize));
	// "infinity" and 0: no default limit (a host whose cgroups cannot enforce one).
	TRYV(optionalField(j, "memoryMax", "", c.memoryMax, [](const json& v, const std::string& path) {
		return v == "infinity" ? Result<std::string>("infinity") : getMemoryLimit(v, path);
	}));
	TRYV(optionalField(j, "tasksMax", "", c.tasksMax, [](const json& v, const std::string& path) {
		return v == 0 ? Result<uint32_t>(0) : getTasksLimit(v, path);
	}));
	TRYV(optionalSection(j, "network", "", c, field("mode", &GlobalConfig::networkMode, getNetworkMode),
			     field("allowHostNetwork", &GlobalConfig::allowHostNetwork, getBool),
			     field("allowedCidrs", &GlobalConfig::allowedCidrs, getStrings),
			     field("dns", &GlobalConfig::dns, getStrings)));
	TRYV(optionalField(j, "certificateDays", "", c.certDays, getCertDays));
	TRYV(optionalField(j, "graceSeconds", "", c.graceSeconds, getGraceSeconds));
	TRYV(optionalField(j, "idleSeconds", "", c.idleSeconds, getIdleSeconds));
	TRYV(optionalSection(j, "rootfsUpdate", "", c, field("staleDays", &GlobalConfig::staleDays, getStaleDays),
			     field("checkSeconds", &GlobalConfig::swapCheckSeconds, getCheckSeconds)));
	return c;
}

Result<GlobalConfig> loadGlobalConfig(const Paths& paths)
{
	struct stat st;
	if (stat(paths.configFile.c_str(), &st) < 0 && errno == ENOENT)
		return parseGlobalConfig(json::object());
	TRY(j, readFile(paths.configFile));
	TRY_CTX(c, parseGlobalConfig(*j), "%s", paths.configFile.c_str());
	return c;
}

void to_json(json& j, const IdRange& r)
{
	j = json::array({ r.first, r.last });
}

void to_json(json& j, const GlobalConfig& c)
{
	j = json {
		{ "rootfs", c.rootfs },
		{ "uidRange", c.uids },
		{ "portRange", c.ports },
		{ "listenAddress", c.listenAddress },
		{ "domain", c.domain },
		{ "extraDomains", c.extraDomains },
		{ "frontPort", c.frontPort },
		{ "frontProxyFrom", c.frontProxyFrom },
		{ "apparmor", { { "policy", c.apparmorPolicy }, { "profile", c.apparmorProfile } } },
		{ "seccompProfile", c.seccompProfile },
		{ "session", { { "command", c.sessionCommand }, { "shell", c.shellCommand } } },
		{ "shmSize", c.shmSize },
		{ "tmpSize", c.tmpSize },
		{ "runtimeDirSize", c.runtimeDirSize },
		{ "memoryMax", c.memoryMax },
		{ "tasksMax", c.tasksMax },
		{ "network",
		  { { "mode", c.networkMode },
		    { "allowHostNetwork", c.allowHostNetwork },
		    { "allowedCidrs", c.allowedCidrs },
		    { "dns", c.dns } } },
		{ "certificateDays", c.certDays },
		{ "graceSeconds", c.graceSeconds },
		{ "idleSeconds", c.idleSeconds },
		{ "rootfsUpdate", { { "staleDays", c.staleDays }, { "checkSeconds", c.swapCheckSeconds } } },
	};
}

Result<InstanceConfig> parseInstanceConfig(const json& j)
{
	InstanceConfig c;
	TRYV(onlyKeys(j, "", { "user", "uid", "gid", "port", "fqdn", "extraNames", "network", "created", "createdUser",
			       "idleSeconds", "limits", "grants" }));
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
	TRYV(optionalField(j, "extraNames", "", c.extraNames, getStrings));
	TRYV(optionalField(j, "network", "", c.network, getNetworkMode));
	TRYV(optionalField(j, "created", "", c.created, getString));
	TRYV(optionalField(j, "createdUser", "", c.createdUser, getBool));
	TRYV(optionalField(j, "idleSeconds", "", c.idleSeconds, getIdleSeconds));
	TRYV(optionalField(j, "grants", "", c.grants, parseGrants));
	TRYV(optionalSection(j, "limits", "", c.limits, field("memory", &Limits::memory, getMemoryLimit),
			     field("cpus", &Limits::cpus, getCpuLimit), field("tasks", &Limits::tasks, getTasksLimit)));
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
	TRY_CTX(c, parseInstanceConfig(*j), "%s", file.c_str());
	if (c->user != user)
		return fail("%s: user: '%s' does not match the instance name '%s'", file.c_str(), c->user.c_str(),
			    user.c_str());
	return c;
}

void to_json(json& j, const Limits& l)
{
	j = json::object();
	if (!l.memory.empty())
		j["memory"] = l.memory;
	if (l.cpus > 0)
		j["cpus"] = l.cpus;
	if (l.tasks > 0)
		j["tasks"] = l.tasks;
}

void to_json(json& j, const InstanceConfig& c)
{
	j = json {
		{ "user", c.user }, { "uid", c.uid }, { "gid", c.gid }, { "port", c.port }, { "fqdn", c.fqdn },
		{ "extraNames", c.extraNames }, { "created", c.created }, { "createdUser", c.createdUser },
	};
	if (!c.network.empty())
		j["network"] = c.network;
	if (c.idleSeconds)
		j["idleSeconds"] = *c.idleSeconds;
	if (!c.limits.empty())
		j["limits"] = c.limits;
	if (json gr = c.grants; !gr.empty())
		j["grants"] = gr;
}

} // namespace pukaipu
