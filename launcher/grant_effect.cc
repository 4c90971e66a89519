// grant_effect: what an instance's grants do at its start — the spec's extra
// mounts and environment (grantEffect), the host and rootfs facts they depend
// on (probeGrantFacts), the host paths no mount grant may reach
// (forbiddenHostPaths) and the files in RUN_DIR/USER they refer to
// (writeGrantRuntimeFiles), including the xpra guard every desktop gets. The
// grants themselves: grants.cc.
#include "grants.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/file_io.h"
#include "base/unique_fd.h"
#include "config.h"
#include "sandbox/mounts.h"
#include "xpra_guard_script.h" // generated from xpra_guard.py

namespace pukaipu {

using json = nlohmann::json;

std::string attachDirFor(const std::string& runDir)
{
	return runDir + "/attach";
}

std::string policyFileFor(const std::string& runDir)
{
	return runDir + "/browser-policy.json";
}

std::string xpraGuardFileFor(const std::string& runDir)
{
	return runDir + "/xpra-guard";
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
		// The path as it was granted, symlinks resolved (checked at start).
		e.mounts.push_back(bind(m.resolved.empty() ? m.host : m.resolved, m.container,
					{ "bind", m.readOnly ? "ro" : "rw", "nosuid", "nodev" }));
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
	// can make that path: in its own /run or /tmp. The desktop can write
	// here (same uid as xpra), so it can also put its own socket here:
	// `pukaipu attach` checks the listener before its client connects
	// (execAttach, cmd_grants.cc). Still open (issue 13): what the desktop
	// writes here counts against the host's /run, without a bound of its own.
	std::string attach = attachDirFor(runDir);
	if (startsWithDir(attach, "/run") || startsWithDir(attach, "/tmp")) {
		e.attachDir = attach;
		e.mounts.push_back(bind(attach, attach, { "bind", "rw", "nosuid", "nodev", "noexec" }));
		e.env.push_back("PUKAIPU_ATTACH_DIR=" + attach);
	} else {
		e.warnings.push_back("local attach is off: '" + attach +
				     "' is not under /run or /tmp, where the container can use the same path");
	}

	// The xpra guard (xpra_guard.py) over the rootfs's xpra: without it the
	// desktop's own processes could change what the grants above decided,
	// through xpra's sockets or its memory. Root's file, read-only; exec
	// stays allowed (it is the session's `xpra`).
	if (facts.xpra) {
		e.xpraGuard = xpraGuardFileFor(runDir);
		e.mounts.push_back(bind(e.xpraGuard, kXpraPath, { "bind", "ro", "nosuid", "nodev" }));
	}
	return e;
}

Result<void> writeGrantRuntimeFiles(const InstanceConfig& inst, const std::string& runDir)
{
	TRYV(writeFileAtomic(policyFileFor(runDir), browserPolicy(inst.grants), 0644));
	TRYV(writeFileAtomic(xpraGuardFileFor(runDir), kXpraGuardScript, 0755));
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
	f.xpra = existsInRoot(root.get(), kXpraPath, false, true);
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
	// Other users' homes: /etc/passwd read as a file (getpwent lists nothing
	// from sssd without enumeration), every instance's user by name, and
	// getpwent on top for what NSS can list.
	auto otherHome = [&](uint32_t uid, const std::string& dir) {
		if (uid >= 1000 && uid != 65534 && uid != ownUid && !dir.empty() && dir[0] == '/')
			raw.push_back(dir);
	};
	if (auto passwd = readFileLimited("/etc/passwd", 16 << 20)) {
		for (size_t at = 0; at < passwd->size();) {
			size_t nl = passwd->find('\n', at);
			std::string line = passwd->substr(at, nl == std::string::npos ? std::string::npos : nl - at);
			at = nl == std::string::npos ? passwd->size() : nl + 1;
			std::vector<std::string> f;
			for (size_t a = 0, b; f.size() < 7; a = b + 1) {
				b = line.find(':', a);
				f.push_back(line.substr(a, b == std::string::npos ? std::string::npos : b - a));
				if (b == std::string::npos)
					break;
			}
			if (f.size() == 7)
				otherHome((uint32_t)std::strtoul(f[2].c_str(), nullptr, 10), f[5]);
		}
	}
	if (UniqueFd dir { open(p.instancesDir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC) }) {
		if (DIR* d = fdopendir(dir.release())) {
			while (struct dirent* e = readdir(d))
				if (e->d_name[0] != '.')
					if (struct passwd* pw = getpwnam(e->d_name))
						otherHome(pw->pw_uid, pw->pw_dir ? pw->pw_dir : "");
			closedir(d);
		}
	}
	setpwent();
	while (struct passwd* pw = getpwent())
		otherHome(pw->pw_uid, pw->pw_dir ? pw->pw_dir : "");
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

} // namespace pukaipu
