#include "grants.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/file_io.h"
#include "config.h"
#include "base/json_fields.h"
#include "base/process.h"
#include "base/sysutil.h"
#include "sandbox/mounts.h"
#include "base/unique_fd.h"

namespace pukaipu {

using json = nlohmann::json;

namespace {

constexpr const char* kKinds = "mount, network, clipboard, downloads, printing, audio, gpu";
constexpr const char* kClipboardValues[] = { "both", "to-browser", "from-browser", "off" };

bool startsWithDir(const std::string& path, const std::string& dir)
{
	return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

std::string mountRootOf(const std::string& container)
{
	for (const char* r : kGrantMountRoots)
		if (startsWithDir(container, r))
			return r;
	return "";
}

std::string onOff(bool v)
{
	return v ? "on" : "off";
}

Result<bool> parseOnOff(const std::string& kind, const std::string& v)
{
	if (v == "on")
		return true;
	if (v == "off")
		return false;
	return fail("%s: '%s' is not one of: on, off", kind.c_str(), v.c_str());
}

// Who asked: the real uid, and what sudo and the login session say.
std::string whoAsked()
{
	std::string who;
	uid_t uid = getuid();
	struct passwd* pw = getpwuid(uid);
	who = (pw ? std::string(pw->pw_name) : std::string("?")) + " (uid " + std::to_string(uid);
	if (const char* s = std::getenv("SUDO_USER"); s && *s)
		who += ", sudo from " + std::string(s);
	if (const char* l = getlogin(); l && *l)
		who += ", login " + std::string(l);
	return who + ")";
}

void audit(const std::string& line)
{
	std::fprintf(stderr, "pukaipu: %s\n", line.c_str());
	openlog("pukaipu", LOG_PID, LOG_AUTHPRIV);
	syslog(LOG_NOTICE, "%s", line.c_str());
	closelog();
}

std::string attachDirFor(const std::string& runDir)
{
	return runDir + "/attach";
}

std::string policyFileFor(const std::string& runDir)
{
	return runDir + "/browser-policy.json";
}

} // namespace

// --- pure ------------------------------------------------------------------------

Result<std::string> checkGrantPath(const std::string& p, const std::string& what)
{
	if (p.empty() || p[0] != '/')
		return fail("%s: '%s' is not an absolute path", what.c_str(), p.c_str());
	if (p.size() >= PATH_MAX)
		return fail("%s: too long", what.c_str());
	for (char c : p)
		if ((unsigned char)c < 0x20 || c == 0x7f || c == ':')
			return fail("%s: '%s' contains ':' or a control character", what.c_str(), p.c_str());
	if (p != "/" && p.back() == '/')
		return fail("%s: '%s' ends with '/'", what.c_str(), p.c_str());
	for (size_t a = 1; a <= p.size();) {
		size_t b = p.find('/', a);
		if (b == std::string::npos)
			b = p.size();
		std::string comp = p.substr(a, b - a);
		if (p != "/" && (comp.empty() || comp == "." || comp == ".."))
			return fail("%s: '%s' is not a normalized path (no '.', '..' or '//')", what.c_str(), p.c_str());
		a = b + 1;
	}
	return p;
}

Result<void> checkContainerPath(const std::string& p)
{
	TRY(ok, checkGrantPath(p, "mount: container path"));
	if (mountRootOf(p).empty())
		return fail("mount: container path '%s' must be inside /mnt, /media or /srv (system directories of the "
			    "rootfs and /data/home are refused)",
			    p.c_str());
	return {};
}

Result<MountGrant> parseMountGrant(const std::string& value)
{
	// HOST:CONTAINER[:ro|:rw]; neither path may contain ':'.
	std::vector<std::string> parts;
	for (size_t a = 0;;) {
		size_t b = value.find(':', a);
		parts.push_back(value.substr(a, b == std::string::npos ? std::string::npos : b - a));
		if (b == std::string::npos)
			break;
		a = b + 1;
	}
	if (parts.size() < 2 || parts.size() > 3)
		return fail("mount: '%s' is not HOST_PATH:CONTAINER_PATH[:ro|:rw]", value.c_str());
	MountGrant m;
	if (parts.size() == 3) {
		if (parts[2] != "ro" && parts[2] != "rw")
			return fail("mount: '%s' is not one of: ro, rw", parts[2].c_str());
		m.readOnly = parts[2] == "ro";
	}
	TRY(host, checkGrantPath(parts[0], "mount: host path"));
	TRYV(checkContainerPath(parts[1]));
	m.host = parts[0];
	m.container = parts[1];
	return m;
}

std::string formatMountGrant(const MountGrant& m)
{
	return m.host + ":" + m.container + (m.readOnly ? ":ro" : ":rw");
}

Result<Grants> parseGrants(const json& j, const std::string& path)
{
	using namespace jsonf;
	Grants g;
	TRYV(onlyKeys(j, path, { "mounts", "clipboard", "downloads", "printing", "audio", "gpu" }));
	if (j.contains("mounts")) {
		const json& ms = j["mounts"];
		const std::string mp = sub(path, "mounts");
		if (!ms.is_array())
			return fail("%s: expected an array", mp.c_str());
		for (size_t i = 0; i < ms.size(); i++) {
			const std::string ip = idx(mp, i);
			TRYV(onlyKeys(ms[i], ip, { "host", "container", "mode" }));
			if (!ms[i].contains("host") || !ms[i].contains("container"))
				return fail("%s: expected host and container", ip.c_str());
			TRY(host, getString(ms[i]["host"], sub(ip, "host")));
			TRY(cont, getString(ms[i]["container"], sub(ip, "container")));
			std::string mode = "ro";
			if (ms[i].contains("mode")) {
				TRY(m, getString(ms[i]["mode"], sub(ip, "mode")));
				mode = *m;
			}
			auto m = parseMountGrant(*host + ":" + *cont + ":" + mode);
			if (!m)
				return fail("%s: %s", ip.c_str(), m.error().message().c_str());
			for (const auto& other : g.mounts)
				if (startsWithDir(m->container, other.container) || startsWithDir(other.container, m->container) ||
				    other.container == m->container)
					return fail("%s: container path '%s' overlaps '%s'", ip.c_str(), m->container.c_str(),
						    other.container.c_str());
			g.mounts.push_back(*m);
		}
		std::sort(g.mounts.begin(), g.mounts.end(),
			  [](const MountGrant& a, const MountGrant& b) { return a.container < b.container; });
	}
	if (j.contains("clipboard")) {
		TRY(v, getString(j["clipboard"], sub(path, "clipboard")));
		if (std::find_if(std::begin(kClipboardValues), std::end(kClipboardValues),
				 [&](const char* c) { return *v == c; }) == std::end(kClipboardValues))
			return fail("%s: '%s' is not one of: both, to-browser, from-browser, off",
				    sub(path, "clipboard").c_str(), v->c_str());
		g.clipboard = *v;
	}
	for (auto [key, field] : { std::pair { "downloads", &g.downloads }, std::pair { "printing", &g.printing },
				   std::pair { "audio", &g.audio }, std::pair { "gpu", &g.gpu } }) {
		if (!j.contains(key))
			continue;
		TRY(v, getString(j[key], sub(path, key)));
		auto b = parseOnOff(sub(path, key), *v);
		if (!b)
			return tl::unexpected(b.error());
		*field = *b;
	}
	return g;
}

void to_json(json& j, const MountGrant& m)
{
	j = json { { "host", m.host }, { "container", m.container }, { "mode", m.readOnly ? "ro" : "rw" } };
}

void to_json(json& j, const Grants& g)
{
	j = json::object();
	if (!g.mounts.empty())
		j["mounts"] = g.mounts;
	if (g.clipboard != "off")
		j["clipboard"] = g.clipboard;
	if (g.downloads)
		j["downloads"] = "on";
	if (g.printing)
		j["printing"] = "on";
	if (g.audio)
		j["audio"] = "on";
	if (g.gpu)
		j["gpu"] = "on";
}

Result<GrantChange> applyGrant(InstanceConfig& inst, GrantOp op, const std::string& kind, const std::string& value)
{
	const bool grant = op == GrantOp::Grant;
	Grants& g = inst.grants;
	GrantChange c;
	if (kind == "mount") {
		if (grant) {
			TRY(m, parseMountGrant(value));
			for (const auto& other : g.mounts) {
				if (other == *m)
					return c; // granted already
				if (other.container == m->container)
					return fail("mount: '%s' is already granted as %s; revoke that first", m->container.c_str(),
						    formatMountGrant(other).c_str());
				if (startsWithDir(m->container, other.container) || startsWithDir(other.container, m->container))
					return fail("mount: container path '%s' overlaps the grant %s", m->container.c_str(),
						    formatMountGrant(other).c_str());
			}
			g.mounts.push_back(*m);
			std::sort(g.mounts.begin(), g.mounts.end(),
				  [](const MountGrant& a, const MountGrant& b) { return a.container < b.container; });
			c.changed = true;
			c.what = "mount +" + formatMountGrant(*m);
			return c;
		}
		// Revoke by HOST:CONTAINER[:mode] or by the container path alone.
		std::string host, container;
		if (value.find(':') == std::string::npos) {
			TRYV(checkContainerPath(value));
			container = value;
		} else {
			TRY(m, parseMountGrant(value));
			host = m->host;
			container = m->container;
		}
		for (auto it = g.mounts.begin(); it != g.mounts.end(); ++it) {
			if (it->container == container && (host.empty() || it->host == host)) {
				c.changed = true;
				c.what = "mount -" + formatMountGrant(*it);
				g.mounts.erase(it);
				return c;
			}
		}
		return c;
	}
	if (kind == "network") {
		if (value != "egress" && value != "none")
			return fail("network: '%s' is not one of: egress, none", value.c_str());
		std::string before = inst.network.empty() ? "default" : inst.network;
		if (grant && inst.network != value) {
			inst.network = value;
		} else if (!grant && inst.network == value) {
			inst.network.clear();
		} else {
			return c;
		}
		c.changed = true;
		c.what = "network: " + before + " -> " + (inst.network.empty() ? "default" : inst.network);
		return c;
	}
	if (kind == "clipboard") {
		if (std::find_if(std::begin(kClipboardValues), std::end(kClipboardValues),
				 [&](const char* v) { return value == v; }) == std::end(kClipboardValues))
			return fail("clipboard: '%s' is not one of: both, to-browser, from-browser, off", value.c_str());
		std::string next = grant ? value : (g.clipboard == value ? std::string("off") : g.clipboard);
		if (next == g.clipboard)
			return c;
		c.changed = true;
		c.what = "clipboard: " + g.clipboard + " -> " + next;
		g.clipboard = next;
		return c;
	}
	bool* field = kind == "downloads" ? &g.downloads
		    : kind == "printing"  ? &g.printing
		    : kind == "audio"     ? &g.audio
		    : kind == "gpu"       ? &g.gpu
					  : nullptr;
	if (!field)
		return fail("unknown kind '%s' (valid: %s)", kind.c_str(), kKinds);
	TRY(v, parseOnOff(kind, value));
	bool next = grant ? *v : (*field == *v ? false : *field);
	if (next == *field)
		return c;
	c.changed = true;
	c.what = kind + ": " + onOff(*field) + " -> " + onOff(next);
	*field = next;
	return c;
}

std::vector<std::string> grantEnv(const Grants& g)
{
	// xpra's words for the clipboard direction: the server is the browser's side.
	std::string clip = g.clipboard == "to-browser"     ? "to-server"
			 : g.clipboard == "from-browser" ? "to-client"
							 : g.clipboard;
	return {
		"PUKAIPU_CLIPBOARD=" + clip,
		"PUKAIPU_DOWNLOADS=" + onOff(g.downloads),
		"PUKAIPU_PRINTING=" + onOff(g.printing),
		"PUKAIPU_AUDIO=" + onOff(g.audio),
	};
}

std::string browserPolicy(const Grants& g)
{
	// DownloadRestrictions 3: block all downloads; 0: no special restrictions.
	json j = {
		{ "DownloadRestrictions", g.downloads ? 0 : 3 },
		{ "PrintingEnabled", g.printing },
	};
	return j.dump(2) + "\n";
}

GrantEffect grantEffect(const InstanceConfig& inst, const GrantFacts& facts, const std::string& runDir, bool desktop)
{
	const Grants& g = inst.grants;
	GrantEffect e;
	e.mounts = json::array();
	auto bind = [](const std::string& src, const std::string& dest, std::initializer_list<const char*> opts) {
		return json { { "destination", dest }, { "type", "bind" }, { "source", src }, { "options", opts } };
	};

	// An empty tmpfs on each mount root that a grant uses, so the mount
	// points can be made without touching the rootfs.
	for (const char* root : kGrantMountRoots)
		if (std::any_of(g.mounts.begin(), g.mounts.end(),
				[&](const MountGrant& m) { return mountRootOf(m.container) == root; }))
			e.mounts.push_back({ { "destination", root },
					     { "type", "tmpfs" },
					     { "source", "tmpfs" },
					     { "options", { "nosuid", "nodev", "noexec", "mode=755", "size=64k" } } });
	// Never "rbind": what is mounted below a granted folder stays out.
	for (const auto& m : g.mounts) {
		e.mounts.push_back(bind(m.host, m.container, { "bind", m.readOnly ? "ro" : "rw", "nosuid", "nodev" }));
		e.guarded.push_back(m.container);
	}

	if (g.gpu) {
		if (facts.renderNodes.empty())
			e.warnings.push_back("gpu is granted, but this host has no render nodes (/dev/dri/renderD*), ignoring");
		for (const auto& node : facts.renderNodes) {
			std::string name = node.substr(node.rfind('/') + 1);
			// "dev": a device node; its own bind mount, so /dev's nodev does not apply.
			e.mounts.push_back(bind(node, "/dev/dri/" + name, { "bind", "rw", "nosuid", "noexec", "dev" }));
		}
	}
	if (!desktop)
		return e;

	Grants eff = g;
	if (g.audio && !facts.audio) {
		std::string missing;
		for (const auto& m : facts.audioMissing)
			missing += (missing.empty() ? "" : ", ") + m;
		e.warnings.push_back("audio is granted, but the rootfs lacks " + missing + ", ignoring");
		eff.audio = false;
	}
	e.env = grantEnv(eff);

	if (!facts.policyPlaceholders.empty()) {
		e.policyFile = policyFileFor(runDir);
		for (const auto& p : facts.policyPlaceholders)
			e.mounts.push_back(bind(e.policyFile, p, { "bind", "ro", "nosuid", "nodev", "noexec" }));
	} else {
		e.warnings.push_back(std::string("the rootfs has no browser policy placeholder (") + kPolicyPlaceholders[0] +
				     "): the browser's downloads and printing follow its own defaults");
	}

	// Local attach: the same path on both sides, so the mmap file the local
	// client makes in it is found by xpra inside. Only where the container
	// can make that path: in its own /run or /tmp.
	std::string attach = attachDirFor(runDir);
	if (startsWithDir(attach, "/run") || startsWithDir(attach, "/tmp")) {
		e.attachDir = attach;
		e.mounts.push_back(bind(attach, attach, { "bind", "rw", "nosuid", "nodev", "noexec" }));
		e.env.push_back("PUKAIPU_ATTACH_DIR=" + attach);
	} else {
		e.warnings.push_back("local attach is off: '" + attach +
				     "' is not under /run or /tmp, where the container can use the same path");
	}
	return e;
}

// --- host --------------------------------------------------------------------------

GrantFacts probeGrantFacts(const std::string& rootfs, const std::string& driDir)
{
	GrantFacts f;
	if (DIR* d = opendir(driDir.c_str())) {
		while (struct dirent* ent = readdir(d)) {
			if (std::strncmp(ent->d_name, "renderD", 7) != 0)
				continue;
			struct stat st;
			if (fstatat(dirfd(d), ent->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISCHR(st.st_mode))
				f.renderNodes.push_back(driDir + "/" + ent->d_name);
		}
		closedir(d);
		std::sort(f.renderNodes.begin(), f.renderNodes.end());
	}
	UniqueFd root(open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
	if (!root) {
		f.audioMissing.push_back("everything (cannot open '" + rootfs + "')");
		return f;
	}
	for (const char* p : kPolicyPlaceholders)
		if (existsInRoot(root.get(), p, false))
			f.policyPlaceholders.push_back(p);
	if (!existsInRoot(root.get(), "/usr/bin/pulseaudio", false, true))
		f.audioMissing.push_back("PulseAudio (/usr/bin/pulseaudio: package pulseaudio)");
	if (!existsInRoot(root.get(), "/usr/lib/python3/dist-packages/gi/overrides/Gst.py", false))
		f.audioMissing.push_back("GStreamer for xpra (package python3-gst-1.0)");
	f.audio = f.audioMissing.empty();
	f.cups = existsInRoot(root.get(), "/usr/sbin/lpadmin", false, true);
	return f;
}

std::vector<std::string> forbiddenHostPaths(const Paths& p, uint32_t ownUid)
{
	std::vector<std::string> raw(std::begin(kForbiddenHostPaths), std::end(kForbiddenHostPaths));
	raw.push_back(p.stateDir);
	raw.push_back(p.runDir);
	auto slash = p.configFile.rfind('/');
	if (slash != std::string::npos && slash > 0)
		raw.push_back(p.configFile.substr(0, slash));
	setpwent();
	while (struct passwd* pw = getpwent())
		if (pw->pw_uid >= 1000 && pw->pw_uid != 65534 && pw->pw_uid != ownUid && pw->pw_dir && pw->pw_dir[0] == '/')
			raw.push_back(pw->pw_dir);
	endpwent();
	std::vector<std::string> out;
	for (const auto& r : raw) {
		if (r.empty() || r[0] != '/')
			continue;
		out.push_back(r);
		if (char* real = realpath(r.c_str(), nullptr)) {
			out.push_back(real);
			std::free(real);
		}
	}
	std::sort(out.begin(), out.end());
	out.erase(std::unique(out.begin(), out.end()), out.end());
	return out;
}

Result<void> checkHostPathAsUser(const std::string& host, uint32_t uid, uint32_t gid,
				 const std::vector<std::string>& forbidden)
{
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return failErrno(errno, "pipe");
	UniqueFd rd(pipefd[0]), wr(pipefd[1]);
	pid_t pid = fork();
	if (pid < 0)
		return failErrno(errno, "fork");
	if (pid == 0) {
		// As inside the container: the user's ids, no supplementary groups.
		Error e {};
		if (auto became = becomeUser(uid, gid); !became) {
			e = became.error();
		} else {
			auto r = openGuardedSource(host.c_str(), forbidden);
			if (r)
				_exit(0);
			e = r.error();
		}
		(void)!write(wr.get(), &e, sizeof(e));
		_exit(1);
	}
	wr.reset();
	Error e {};
	ssize_t n;
	while ((n = read(rd.get(), &e, sizeof(e))) < 0 && errno == EINTR) {
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	if (n == (ssize_t)sizeof(e)) {
		e.what[sizeof(e.what) - 1] = '\0';
		return tl::unexpected(e);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return fail("grant '%s': the check as uid %u failed (status %d)", host.c_str(), uid, status);
	return {};
}

Result<GrantResult> changeGrants(const Paths& p, const GlobalConfig& g, const std::string& user, GrantOp op,
				 const std::string& kind, const std::string& value)
{
	TRY(inst, loadInstanceConfig(p, user));
	InstanceConfig next = *inst;
	TRY(change, applyGrant(next, op, kind, value));
	GrantResult res;
	res.change = *change;
	if (!change->changed)
		return res;
	if (op == GrantOp::Grant) {
		GrantFacts facts = probeGrantFacts(g.rootfs);
		if (kind == "mount") {
			TRY(parsed, parseMountGrant(value));
			const MountGrant& m = *parsed;
			UniqueFd root(open(g.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
			std::string mroot = mountRootOf(m.container);
			if (!root || !existsInRoot(root.get(), mroot.c_str(), true))
				return fail("mount: the rootfs '%s' has no '%s' to hold the mount point; use another of /mnt, "
					    "/media, /srv",
					    g.rootfs.c_str(), mroot.c_str());
			TRYV(checkHostPathAsUser(m.host, next.uid, next.gid, forbiddenHostPaths(p, next.uid)));
		} else if (kind == "gpu" && next.grants.gpu) {
			if (facts.renderNodes.empty())
				return fail("gpu: this host has no GPU render nodes (/dev/dri/renderD*)");
			for (const auto& n : facts.renderNodes) {
				struct stat st;
				if (stat(n.c_str(), &st) == 0 && (st.st_mode & 06) != 06)
					res.warnings.push_back(n + " is not readable and writable by everyone (mode " +
							       std::to_string((st.st_mode >> 6 & 7) * 100 + (st.st_mode >> 3 & 7) * 10 +
									      (st.st_mode & 7)) +
							       "): inside, the user has no supplementary groups to open it with");
			}
		} else if (kind == "audio" && next.grants.audio) {
			if (!facts.audio) {
				std::string missing;
				for (const auto& m : facts.audioMissing)
					missing += (missing.empty() ? "" : ", ") + m;
				return fail("audio: the rootfs '%s' lacks %s; add them to its manifest and rebuild it",
					    g.rootfs.c_str(), missing.c_str());
			}
		} else if (kind == "downloads" || kind == "printing") {
			if (facts.policyPlaceholders.empty())
				res.warnings.push_back(std::string("the rootfs has no browser policy placeholder (") +
						       kPolicyPlaceholders[0] + "): only xpra's side of " + kind + " changes");
			if (kind == "printing" && next.grants.printing && !facts.cups)
				res.warnings.push_back("the rootfs has no CUPS (/usr/sbin/lpadmin; packages cups-client and "
						       "python3-cups): xpra cannot forward print jobs, the browser can still "
						       "print to PDF");
		}
	}
	TRYV(writeFileAtomic(p.instanceDir(user) + "/instance.json", json(next).dump(2) + "\n", 0644));
	return res;
}

json describeGrants(const GlobalConfig& g, const InstanceConfig& inst)
{
	const Grants& gr = inst.grants;
	json mounts = json::array();
	for (const auto& m : gr.mounts)
		mounts.push_back(m);
	auto item = [](const std::string& v, bool isDefault) { return json { { "value", v }, { "default", isDefault } }; };
	return json {
		{ "user", inst.user },
		{ "network", item(inst.network.empty() ? g.networkMode : inst.network, inst.network.empty()) },
		{ "clipboard", item(gr.clipboard, gr.clipboard == "off") },
		{ "downloads", item(onOff(gr.downloads), !gr.downloads) },
		{ "printing", item(onOff(gr.printing), !gr.printing) },
		{ "audio", item(onOff(gr.audio), !gr.audio) },
		{ "gpu", item(onOff(gr.gpu), !gr.gpu) },
		{ "mounts", mounts },
	};
}

std::string formatGrantsTable(const json& d)
{
	std::string out;
	char line[4200];
	std::snprintf(line, sizeof(line), "%-10s %s\n", "KIND", "VALUE");
	out += line;
	for (const char* k : { "network", "clipboard", "downloads", "printing", "audio", "gpu" }) {
		std::snprintf(line, sizeof(line), "%-10s %s%s\n", k, d[k]["value"].get<std::string>().c_str(),
			      d[k]["default"].get<bool>() ? " (default)" : "");
		out += line;
	}
	for (const auto& m : d["mounts"]) {
		std::snprintf(line, sizeof(line), "%-10s %s:%s:%s\n", "mount", m["host"].get<std::string>().c_str(),
			      m["container"].get<std::string>().c_str(), m["mode"].get<std::string>().c_str());
		out += line;
	}
	return out;
}

Result<void> writeGrantRuntimeFiles(const InstanceConfig& inst, const std::string& runDir)
{
	TRYV(writeFileAtomic(policyFileFor(runDir), browserPolicy(inst.grants), 0644));
	// The attach directory: the user's (xpra inside makes its socket there,
	// the local client its mmap file), 0700: nobody else may even look.
	// RUN_DIR/USER is root's, so nobody but root can swap this directory.
	const std::string dir = attachDirFor(runDir);
	if (mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST)
		return failErrno(errno, "create '%s'", dir.c_str());
	UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
	if (!fd)
		return failErrno(errno, "open '%s'", dir.c_str());
	if (fchown(fd.get(), inst.uid, inst.gid) < 0 || fchmod(fd.get(), 0700) < 0)
		return failErrno(errno, "give '%s' to uid %u", dir.c_str(), inst.uid);
	return {};
}

Error execAttach(const Paths& p, const std::string& user, const std::vector<std::string>& extra)
{
	if (!validUserName(user))
		return makeError(0, "'%s' is not a valid user name", user.c_str());
	const std::string dir = attachDirFor(p.runDir + "/" + user);
	const std::string sock = dir + "/socket";
	struct passwd* pw = getpwnam(user.c_str());
	uid_t me = getuid();
	// Not root either: the server on that socket runs inside the sandbox
	// (the untrusted side), and root's client would take its clipboard, its
	// windows' requests and an mmap file in a directory the user controls
	// with root's rights. The user's own client has nothing more to lose.
	if (me == 0)
		return makeError(0, "attach to '%s': not as root (the desktop is the sandboxed side); as the user: "
				    "runuser -u %s -- pukaipu attach %s",
				 user.c_str(), user.c_str(), user.c_str());
	if (!pw || pw->pw_uid != me)
		return makeError(EACCES, "attach to '%s': only %s can open that desktop", user.c_str(), user.c_str());
	struct stat st;
	if (stat(sock.c_str(), &st) < 0) {
		if (errno == EACCES)
			return makeError(EACCES, "attach to '%s': only %s can open that desktop", user.c_str(),
					 user.c_str());
		if (errno == ENOENT)
			return makeError(0, "attach to '%s': it is not running (no socket at '%s'; start it with: "
					    "systemctl start pukaipu@%s)",
					 user.c_str(), sock.c_str(), user.c_str());
		return makeError(errno, "attach to '%s': '%s'", user.c_str(), sock.c_str());
	}
	if (!S_ISSOCK(st.st_mode))
		return makeError(0, "attach to '%s': '%s' is not a socket", user.c_str(), sock.c_str());
	if (access(sock.c_str(), R_OK | W_OK) < 0)
		return makeError(errno, "attach to '%s': only %s can open that desktop", user.c_str(),
				 user.c_str());
	// The mmap file goes into the shared directory (same path inside).
	setenv("XPRA_MMAP_DIR", dir.c_str(), 1);
	std::vector<std::string> args = { "xpra", "attach", "socket://" + sock, "--mmap=yes", "--open-files=no",
					   "--open-url=no" };
	args.insert(args.end(), extra.begin(), extra.end());
	std::vector<char*> argv;
	for (auto& a : args)
		argv.push_back(a.data());
	argv.push_back(nullptr);
	execvp("xpra", argv.data());
	return makeError(errno, "run the local xpra client (install the package xpra)");
}

int runGrantCommand(const Paths& p, const GrantCommand& c, Result<UniqueFd> (*lock)(const Paths&))
{
	auto report = [](const Error& e) {
		std::fprintf(stderr, "pukaipu: %s\n", e.message().c_str());
		return 1;
	};
	if (c.which == GrantCommand::Attach) {
		Error e = execAttach(p, c.user, c.extra);
		return report(e);
	}
	auto global = loadGlobalConfig(p);
	if (!global)
		return report(global.error());
	if (c.which == GrantCommand::List) {
		auto inst = loadInstanceConfig(p, c.user);
		if (!inst)
			return report(inst.error());
		json d = describeGrants(*global, *inst);
		std::fputs(c.json ? (d.dump(2) + "\n").c_str() : formatGrantsTable(d).c_str(), stdout);
		return 0;
	}
	if (geteuid() != 0)
		return report(makeError(0, "must run as root"));
	const GrantOp op = c.which == GrantCommand::Grant ? GrantOp::Grant : GrantOp::Revoke;
	const char* verb = op == GrantOp::Grant ? "grant" : "revoke";
	auto held = lock(p);
	if (!held)
		return report(held.error());
	auto r = changeGrants(p, *global, c.user, op, c.kind, c.value);
	if (!r)
		return report(makeError(r.error().errno_, "%s %s %s %s: %s; nothing changed", verb, c.user.c_str(),
					c.kind.c_str(), c.value.c_str(), r.error().what));
	for (const auto& w : r->warnings)
		std::fprintf(stderr, "pukaipu: warning: %s\n", w.c_str());
	if (!r->change.changed) {
		std::printf("unchanged: '%s' %s %s %s\n", c.user.c_str(),
			    op == GrantOp::Grant ? "already has" : "does not have", c.kind.c_str(), c.value.c_str());
		return 0;
	}
	audit(std::string(verb) + " " + c.user + " " + c.kind + " " + c.value + " (" + r->change.what + ") by " +
	      whoAsked() + " at " + nowIso());
	std::printf("%s '%s' %s %s; it takes effect at the instance's next start\n",
		    op == GrantOp::Grant ? "granted" : "revoked", c.user.c_str(), c.kind.c_str(), c.value.c_str());
	return 0;
}

} // namespace pukaipu
