#include "spec.h"

#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/json_fields.h"

namespace pukaipu {

using json = nlohmann::json;
using namespace jsonf;

namespace {

// An absolute path without "." or ".." components (the container side of a
// mount, cwd, masked paths): what it names must not depend on how it is walked.
Result<void> checkContainerPath(const std::string& p, const std::string& path)
{
	if (p.empty() || p[0] != '/')
		return fail("%s: '%s' is not an absolute path", path.c_str(), p.c_str());
	std::stringstream ss(p);
	std::string part;
	while (std::getline(ss, part, '/'))
		if (part == "." || part == "..")
			return fail("%s: '%s' must not contain '.' or '..'", path.c_str(), p.c_str());
	return {};
}


// 1.0.N, 1.1.N or 1.2.N, optionally with a pre-release suffix ("1.0.2-dev").
// 1.1 and 1.2 only add fields (process.scheduler, linux.timeOffsets, idmapped
// mounts, ...); every key is checked against what pukaipu implements, so a
// field from a newer version is refused by name, never silently ignored.
bool ociVersionSupported(const std::string& v)
{
	if (v.size() < 5 || v[0] != '1' || v[1] != '.' || v[2] < '0' || v[2] > '2' || v[3] != '.')
		return false;
	size_t i = 4;
	while (i < v.size() && v[i] >= '0' && v[i] <= '9')
		i++;
	if (i == 4 || i - 4 > 4)
		return false;
	if (i == v.size())
		return true;
	if (v[i] != '-' || i + 1 == v.size())
		return false;
	return std::all_of(v.begin() + i + 1, v.end(), [](char c) {
		return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '-';
	});
}

struct RlimitName {
	const char* name;
	int resource;
};
constexpr RlimitName kRlimits[] = {
	{ "RLIMIT_AS", RLIMIT_AS },           { "RLIMIT_CORE", RLIMIT_CORE },
	{ "RLIMIT_CPU", RLIMIT_CPU },         { "RLIMIT_DATA", RLIMIT_DATA },
	{ "RLIMIT_FSIZE", RLIMIT_FSIZE },     { "RLIMIT_LOCKS", RLIMIT_LOCKS },
	{ "RLIMIT_MEMLOCK", RLIMIT_MEMLOCK }, { "RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE },
	{ "RLIMIT_NICE", RLIMIT_NICE },       { "RLIMIT_NOFILE", RLIMIT_NOFILE },
	{ "RLIMIT_NPROC", RLIMIT_NPROC },     { "RLIMIT_RSS", RLIMIT_RSS },
	{ "RLIMIT_RTPRIO", RLIMIT_RTPRIO },   { "RLIMIT_RTTIME", RLIMIT_RTTIME },
	{ "RLIMIT_SIGPENDING", RLIMIT_SIGPENDING }, { "RLIMIT_STACK", RLIMIT_STACK },
};

Result<std::vector<IdMapping>> parseMappings(const json& j, const std::string& path, const char* kind)
{
	if (!j.is_array() || j.empty())
		return fail("%s: expected a non-empty array of mappings", path.c_str());
	std::vector<IdMapping> out;
	for (size_t i = 0; i < j.size(); i++) {
		std::string p = idx(path, i);
		TRYV(keys(j[i], p, { "containerID", "hostID", "size" }, { "containerID", "hostID", "size" }));
		TRY(c, getU32(j[i]["containerID"], sub(p, "containerID")));
		TRY(h, getU32(j[i]["hostID"], sub(p, "hostID")));
		TRY(s, getU32(j[i]["size"], sub(p, "size")));
		if (*s == 0)
			return fail("%s.size: must be at least 1", p.c_str());
		if (uint64_t(*c) + *s - 1 > 0xfffffffeULL || uint64_t(*h) + *s - 1 > 0xfffffffeULL)
			return fail("%s: range overflows the %s space", p.c_str(), kind);
		// The whole point of the user namespace: host root is never inside it.
		if (*h == 0)
			return fail("%s: maps host %s 0 (root); pukaipu never maps host root", p.c_str(), kind);
		for (const auto& m : out) {
			bool hostOverlap = *h < m.hostId + m.size && m.hostId < *h + *s;
			bool contOverlap = *c < m.containerId + m.size && m.containerId < *c + *s;
			if (hostOverlap || contOverlap)
				return fail("%s: overlaps an earlier mapping", p.c_str());
		}
		out.push_back({ *c, *h, *s });
	}
	if (out.size() > 340)
		return fail("%s: more than 340 mappings", path.c_str());
	return out;
}

Result<void> parseProcess(const json& j, Spec& s)
{
	const std::string P = "process";
	TRYV(onlyKeys(j, P, { "terminal", "user", "args", "env", "cwd", "capabilities", "rlimits",
			     "noNewPrivileges", "apparmorProfile", "consoleSize" }));
	auto& pr = s.process;
	if (j.contains("terminal")) {
		TRY(t, getBool(j["terminal"], "process.terminal"));
		pr.terminal = *t;
	}
	if (j.contains("consoleSize")) {
		// Accepted for runc compatibility; the size is copied from the caller's terminal.
		TRYV(onlyKeys(j["consoleSize"], "process.consoleSize", { "height", "width" }));
	}
	if (!j.contains("user"))
		return fail("process.user: missing (pukaipu needs the uid and gid to run as)");
	const json& u = j["user"];
	TRYV(keys(u, "process.user", { "uid", "gid", "additionalGids", "umask" }, { "uid", "gid" }));
	TRY(uid, getU32(u["uid"], "process.user.uid"));
	TRY(gid, getU32(u["gid"], "process.user.gid"));
	pr.uid = *uid;
	pr.gid = *gid;
	if (u.contains("additionalGids")) {
		if (!u["additionalGids"].is_array())
			return fail("process.user.additionalGids: expected an array");
		if (!u["additionalGids"].empty())
			return fail("process.user.additionalGids: not supported; the process runs with no supplementary groups");
	}
	if (u.contains("umask"))
		return fail("process.user.umask: not supported");

	if (!j.contains("args"))
		return fail("process.args: missing");
	TRY(args, getStrings(j["args"], "process.args"));
	if (args->empty())
		return fail("process.args: must name the program to run");
	pr.args = std::move(*args);
	if (j.contains("env")) {
		TRY(env, getStrings(j["env"], "process.env"));
		for (size_t i = 0; i < env->size(); i++)
			if ((*env)[i].find('=') == std::string::npos || (*env)[i][0] == '=')
				return fail("process.env[%zu]: '%s' is not NAME=VALUE", i, (*env)[i].c_str());
		pr.env = std::move(*env);
	}
	if (j.contains("cwd")) {
		TRY(cwd, getString(j["cwd"], "process.cwd"));
		TRYV(checkContainerPath(*cwd, "process.cwd"));
		pr.cwd = *cwd;
	}
	if (j.contains("capabilities")) {
		const json& c = j["capabilities"];
		TRYV(onlyKeys(c, "process.capabilities",
			      { "bounding", "effective", "inheritable", "permitted", "ambient" }));
		bool any = false;
		for (const auto& [k, v] : c.items()) {
			TRY(list, getStrings(v, "process.capabilities." + k));
			any = any || !list->empty();
		}
		if (any)
			s.warnings.push_back("process.capabilities: pukaipu grants no capabilities, ignoring");
	}
	if (j.contains("rlimits")) {
		auto rlimit = [&pr](const json& r, const std::string& p) -> Result<RlimitSpec> {
			TRYV(keys(r, p, { "type", "soft", "hard" }, { "type", "soft", "hard" }));
			TRY(type, getString(r["type"], sub(p, "type")));
			TRY(soft, getU64(r["soft"], sub(p, "soft")));
			TRY(hard, getU64(r["hard"], sub(p, "hard")));
			auto it = std::find_if(std::begin(kRlimits), std::end(kRlimits),
					       [&](const RlimitName& n) { return *type == n.name; });
			if (it == std::end(kRlimits))
				return fail("%s.type: unknown rlimit '%s'", p.c_str(), type->c_str());
			if (*soft > *hard)
				return fail("%s: soft limit %llu is above the hard limit %llu", p.c_str(),
					    (unsigned long long)*soft, (unsigned long long)*hard);
			for (const auto& prev : pr.rlimits)
				if (prev.resource == it->resource)
					return fail("%s.type: '%s' given twice", p.c_str(), type->c_str());
			pr.rlimits.push_back({ it->resource, it->name, *soft, *hard }); // seen by the next one
			return pr.rlimits.back();
		};
		TRY(all, getArrayOf(j["rlimits"], "process.rlimits", rlimit));
		pr.rlimits = std::move(*all);
	}
	if (j.contains("noNewPrivileges")) {
		TRY(nnp, getBool(j["noNewPrivileges"], "process.noNewPrivileges"));
		if (!*nnp)
			s.warnings.push_back("process.noNewPrivileges: pukaipu always sets no_new_privs, ignoring false");
	}
	if (j.contains("apparmorProfile")) {
		TRY(aa, getString(j["apparmorProfile"], "process.apparmorProfile"));
		pr.apparmorProfile = *aa;
	}
	return {};
}

Result<void> parseMounts(const json& j, Spec& s)
{
	if (!j.is_array())
		return fail("mounts: expected an array");
	for (size_t i = 0; i < j.size(); i++) {
		std::string p = idx("mounts", i);
		TRYV(onlyKeys(j[i], p, { "destination", "type", "source", "options" }));
		MountSpec m;
		if (!j[i].contains("destination"))
			return fail("%s.destination: missing", p.c_str());
		TRY(d, getString(j[i]["destination"], sub(p, "destination")));
		TRYV(checkContainerPath(*d, sub(p, "destination")));
		m.destination = *d;
		if (j[i].contains("type")) {
			TRY(t, getString(j[i]["type"], sub(p, "type")));
			m.type = *t;
		}
		if (j[i].contains("source")) {
			TRY(src, getString(j[i]["source"], sub(p, "source")));
			m.source = *src;
		}
		if (j[i].contains("options")) {
			TRY(o, getStrings(j[i]["options"], sub(p, "options")));
			m.options = std::move(*o);
		}
		bool bind = std::any_of(m.options.begin(), m.options.end(),
					[](const std::string& o) { return o == "bind" || o == "rbind"; });
		if (bind && (m.type.empty() || m.type == "none"))
			m.type = "bind";
		static const char* const kTypes[] = { "bind", "tmpfs", "proc", "sysfs", "devpts", "mqueue", "cgroup" };
		if (std::none_of(std::begin(kTypes), std::end(kTypes), [&](const char* t) { return m.type == t; }))
			return fail("%s.type: mount type '%s' not supported", p.c_str(), m.type.c_str());
		if (m.type == "bind" && (m.source.empty() || m.source[0] != '/'))
			return fail("%s.source: a bind mount needs an absolute host path, got '%s'", p.c_str(),
				    m.source.c_str());
		s.mounts.push_back(std::move(m));
	}
	return {};
}

// linux.resources: memory.limit/swap, pids.limit, cpu.quota/period/shares
// become a cgroup of the container's own (cgroup.h); a device rule may only
// deny (pukaipu's /dev holds null, zero, full, random, urandom and tty
// only). Anything else is refused: a limit that is asked for is enforced.
// -1 means "no limit", as in runc.
Result<void> parseResources(const json& r, CgroupLimits& out)
{
	TRYV(onlyKeys(r, "linux.resources", { "devices", "memory", "pids", "cpu" }));
	if (r.contains("devices")) {
		auto deny = [](const json& d, const std::string& p) -> Result<bool> {
			TRYV(keys(d, p, { "allow", "access", "type", "major", "minor" }, { "allow" }));
			TRY(allow, getBool(d["allow"], sub(p, "allow")));
			if (*allow)
				return fail("%s: allowing devices is not supported", p.c_str());
			return true;
		};
		TRYV(getArrayOf(r["devices"], "linux.resources.devices", deny));
	}
	// A limit in bytes or a count: a positive integer, or -1 (none).
	auto limit = [](const json& o, const char* key, const std::string& p) -> Result<std::optional<uint64_t>> {
		if (!o.contains(key))
			return std::optional<uint64_t> {};
		const json& v = o[key];
		if (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() == -1)
			return std::optional<uint64_t> {};
		const bool positive = v.is_number_unsigned() ? v.get<uint64_t>() - 1 < (uint64_t)INT64_MAX
				      : v.is_number_integer() && v.get<int64_t>() > 0;
		if (!positive)
			return fail("%s: expected a positive integer, or -1 for no limit", sub(p, key).c_str());
		return std::optional<uint64_t> { v.get<uint64_t>() };
	};
	if (r.contains("memory")) {
		const std::string p = "linux.resources.memory";
		TRYV(onlyKeys(r["memory"], p, { "limit", "swap" }));
		TRY(l, limit(r["memory"], "limit", p));
		TRY(sw, limit(r["memory"], "swap", p));
		out.memoryMax = *l;
		out.memorySwapMax = *sw;
		if (out.memoryMax && *out.memoryMax < (4u << 20))
			return fail("%s.limit: %llu bytes is below 4 MiB, too little to start a container", p.c_str(),
				    (unsigned long long)*out.memoryMax);
	}
	if (r.contains("pids")) {
		TRYV(keys(r["pids"], "linux.resources.pids", { "limit" }, { "limit" }));
		TRY(l, limit(r["pids"], "limit", "linux.resources.pids"));
		out.pidsMax = *l;
	}
	if (r.contains("cpu")) {
		const std::string p = "linux.resources.cpu";
		TRYV(onlyKeys(r["cpu"], p, { "quota", "period", "shares" }));
		TRY(q, limit(r["cpu"], "quota", p));
		TRY(per, limit(r["cpu"], "period", p));
		TRY(sh, limit(r["cpu"], "shares", p));
		out.cpuQuotaUs = *q;
		out.cpuPeriodUs = *per;
		out.cpuShares = *sh;
		if (out.cpuQuotaUs && !out.cpuPeriodUs)
			out.cpuPeriodUs = 100000; // the kernel's default period, as runc
	}
	return {};
}

Result<void> parseLinux(const json& j, Spec& s)
{
	TRYV(onlyKeys(j, "linux", { "namespaces", "uidMappings", "gidMappings", "seccomp", "maskedPaths",
				    "readonlyPaths", "resources" }));
	if (!j.contains("namespaces"))
		return fail("linux.namespaces: missing; pukaipu needs at least {\"type\": \"user\"}");
	const json& ns = j["namespaces"];
	if (!ns.is_array())
		return fail("linux.namespaces: expected an array");
	static const char* const kNs[] = { "user", "mount", "pid", "ipc", "uts", "network", "cgroup" };
	std::vector<std::string> seen;
	for (size_t i = 0; i < ns.size(); i++) {
		std::string p = idx("linux.namespaces", i);
		TRYV(onlyKeys(ns[i], p, { "type", "path" }));
		if (!ns[i].contains("type"))
			return fail("%s.type: missing", p.c_str());
		TRY(t, getString(ns[i]["type"], sub(p, "type")));
		if (std::none_of(std::begin(kNs), std::end(kNs), [&](const char* n) { return *t == n; }))
			return fail("%s.type: unknown namespace '%s'", p.c_str(), t->c_str());
		if (ns[i].contains("path"))
			return fail("%s.path: joining an existing namespace is not supported", p.c_str());
		if (std::find(seen.begin(), seen.end(), *t) != seen.end())
			return fail("%s.type: namespace '%s' listed twice", p.c_str(), t->c_str());
		seen.push_back(*t);
	}
	// pukaipu always creates all seven namespaces; the spec must at least ask
	// for the user namespace, so nobody runs a bundle believing it shares
	// nothing of the host's uids when it would.
	if (std::find(seen.begin(), seen.end(), "user") == seen.end())
		return fail("linux.namespaces: no user namespace; pukaipu always confines with one "
			    "(add {\"type\": \"user\"} and uidMappings/gidMappings of an unprivileged uid/gid)");
	if (!j.contains("uidMappings"))
		return fail("linux.uidMappings: missing; map the unprivileged host uid the container runs as");
	if (!j.contains("gidMappings"))
		return fail("linux.gidMappings: missing; map the unprivileged host gid the container runs as");
	TRY(um, parseMappings(j["uidMappings"], "linux.uidMappings", "uid"));
	TRY(gm, parseMappings(j["gidMappings"], "linux.gidMappings", "gid"));
	s.uidMappings = std::move(*um);
	s.gidMappings = std::move(*gm);

	if (j.contains("seccomp")) {
		TRY(sc, parseSeccomp(j["seccomp"], "linux.seccomp"));
		s.seccomp = std::move(*sc);
	}
	for (const char* key : { "maskedPaths", "readonlyPaths" }) {
		if (!j.contains(key))
			continue;
		std::string p = sub("linux", key);
		TRY(list, getStrings(j[key], p));
		for (size_t i = 0; i < list->size(); i++)
			TRYV(checkContainerPath((*list)[i], idx(p, i)));
		(std::string(key) == "maskedPaths" ? s.maskedPaths : s.readonlyPaths) = std::move(*list);
	}
	if (j.contains("resources"))
		TRYV(parseResources(j["resources"], s.resources));
	return {};
}

} // namespace

Result<Spec> parseSpec(const json& j, const std::string& bundleDir)
{
	Spec s;
	TRYV(onlyKeys(j, "", { "ociVersion", "process", "root", "hostname", "mounts", "linux", "annotations" }));
	if (!j.contains("ociVersion"))
		return fail("ociVersion: missing");
	TRY(ver, getString(j["ociVersion"], "ociVersion"));
	if (!ociVersionSupported(*ver))
		return fail("ociVersion: '%s' not supported (pukaipu reads 1.0.x to 1.2.x)", ver->c_str());
	s.ociVersion = *ver;

	if (!j.contains("root"))
		return fail("root: missing");
	TRYV(onlyKeys(j["root"], "root", { "path", "readonly" }));
	if (!j["root"].contains("path"))
		return fail("root.path: missing");
	TRY(rp, getString(j["root"]["path"], "root.path"));
	if (rp->empty())
		return fail("root.path: empty");
	s.rootPath = (*rp)[0] == '/' ? *rp : bundleDir + "/" + *rp;
	if (j["root"].contains("readonly")) {
		TRY(ro, getBool(j["root"]["readonly"], "root.readonly"));
		s.rootReadonly = *ro;
	}
	if (j.contains("hostname")) {
		TRY(h, getString(j["hostname"], "hostname"));
		if (h->size() > 64)
			return fail("hostname: longer than 64 characters");
		s.hostname = *h;
	}
	if (j.contains("annotations")) {
		if (!j["annotations"].is_object())
			return fail("annotations: expected an object");
		for (const auto& [k, v] : j["annotations"].items()) {
			if (!v.is_string())
				return fail("annotations.%s: expected a string", k.c_str());
			s.annotations[k] = v.get<std::string>();
		}
	}

	if (!j.contains("process"))
		return fail("process: missing");
	TRYV(parseProcess(j["process"], s));
	if (j.contains("mounts"))
		TRYV(parseMounts(j["mounts"], s));
	if (!j.contains("linux"))
		return fail("linux: missing; pukaipu needs linux.namespaces with a user namespace");
	TRYV(parseLinux(j["linux"], s));

	if (!mapToHost(s.uidMappings, s.process.uid))
		return fail("process.user.uid: %u is not mapped by linux.uidMappings", s.process.uid);
	if (!mapToHost(s.gidMappings, s.process.gid))
		return fail("process.user.gid: %u is not mapped by linux.gidMappings", s.process.gid);
	return s;
}

Result<Spec> loadBundle(const std::string& bundleDir)
{
	if (bundleDir.empty())
		return fail("bundle: no directory given");
	const std::string path = bundleDir + "/config.json";
	TRY_CTX(j, jsonf::readFile(path), "bundle");
	TRY_CTX(s, parseSpec(*j, bundleDir), "%s", path.c_str());
	return s;
}

Result<void> checkTrustedPath(const std::string& path)
{
	char real[PATH_MAX];
	if (!realpath(path.c_str(), real))
		return failErrno(errno, "'%s'", path.c_str());
	std::string p = real;
	for (;;) {
		struct stat st;
		if (lstat(p.c_str(), &st) < 0)
			return failErrno(errno, "stat '%s'", p.c_str());
		if (st.st_uid != 0)
			return fail("'%s' is owned by uid %u, not root; refusing to run from it", p.c_str(), st.st_uid);
		bool sticky = S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX);
		if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(sticky && p != real))
			return fail("'%s' is writable by group or others; refusing to run from it", p.c_str());
		if (p == "/")
			break;
		auto slash = p.rfind('/');
		p = slash == 0 ? "/" : p.substr(0, slash);
	}
	return {};
}

std::string formatIdMap(const std::vector<IdMapping>& maps)
{
	std::string out;
	for (const auto& m : maps)
		out += std::to_string(m.containerId) + " " + std::to_string(m.hostId) + " " +
		       std::to_string(m.size) + "\n";
	return out;
}

std::optional<uint32_t> mapToHost(const std::vector<IdMapping>& maps, uint32_t id)
{
	for (const auto& m : maps)
		if (id >= m.containerId && id - m.containerId < m.size)
			return m.hostId + (id - m.containerId);
	return std::nullopt;
}

} // namespace pukaipu
