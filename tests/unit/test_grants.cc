// Grants: parsing, validation, forbidden-prefix matching, what they add to a
// spec (mounts, environment, browser policy), and the guarded source check.
#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "launcher/config.h"
#include "launcher/grants.h"
#include "sandbox/mounts.h"
#include "sandbox/stages.h"

using namespace pukaipu;
using json = nlohmann::json;

namespace {

InstanceConfig instance()
{
	InstanceConfig i;
	i.user = "john";
	i.uid = i.gid = 3001;
	i.port = 14501;
	i.fqdn = "john.example.test";
	return i;
}

std::string err(const Result<GrantChange>& r)
{
	REQUIRE_FALSE(r);
	return r.error().message();
}

std::vector<std::string> optionsOf(const json& m)
{
	return m["options"].get<std::vector<std::string>>();
}

const json* mountAt(const json& mounts, const std::string& dest)
{
	for (const auto& m : mounts)
		if (m["destination"] == dest)
			return &m;
	return nullptr;
}

} // namespace

TEST_CASE("mount grants: HOST:CONTAINER[:ro|:rw], read-only by default")
{
	auto m = parseMountGrant("/srv/data:/mnt/data");
	REQUIRE(m);
	CHECK(m->host == "/srv/data");
	CHECK(m->container == "/mnt/data");
	CHECK(m->readOnly);
	m = parseMountGrant("/home/john/projects:/media/projects:rw");
	REQUIRE(m);
	CHECK_FALSE(m->readOnly);
	CHECK(formatMountGrant(*m) == "/home/john/projects:/media/projects:rw");

	for (const char* bad : { "", "/a", "/a:/mnt/a:ro:x", "/a:/mnt/a:rx", "a:/mnt/a", "/a/../etc:/mnt/a", "/a/./b:/mnt/a",
				 "/a//b:/mnt/a", "/a/:/mnt/a", "/a:/mnt/a/", "/a:mnt/a", "/a\n:/mnt/a" })
		CHECK_MESSAGE(!parseMountGrant(bad), bad);
}

TEST_CASE("container paths: only inside /mnt, /media, /srv; never the home or a system directory")
{
	for (const char* ok : { "/mnt/a", "/media/usb", "/srv/a/b" })
		CHECK_MESSAGE(checkContainerPath(ok), ok);
	for (const char* bad : { "/", "/mnt", "/media", "/srv", "/mntx/a", "/bin", "/bin/x", "/boot/x", "/dev/x", "/etc",
				 "/etc/chromium/policies/managed", "/lib/x", "/lib64/x", "/opt/x", "/proc/x", "/root/x",
				 "/run/x", "/sbin/x", "/sys/x", "/tmp/x", "/usr/local/x", "/var/x", "/data", "/data/home",
				 "/data/home/x", "/home/x" }) {
		auto r = checkContainerPath(bad);
		CHECK_MESSAGE(!r, bad);
		if (!r && bad != std::string("/mntx/a") && std::string(bad).find("..") == std::string::npos)
			CHECK(r.error().message().find("must be inside /mnt, /media or /srv") != std::string::npos);
	}
}

TEST_CASE("forbidden prefixes match whole components, in both directions")
{
	std::vector<std::string> f { "/", "/etc", "/home/bob", "/var/lib/pukaipu" };
	auto by = [&](const char* p) {
		const char* r = refusedByPrefix(p, f);
		return r ? std::string(r) : std::string();
	};
	CHECK(by("/") == "/");
	CHECK(by("/etc") == "/etc");
	CHECK(by("/etc/ssl/private") == "/etc");
	CHECK(by("/etcetera") == "");
	CHECK(by("/home") == "/home/bob");      // would contain bob's home
	CHECK(by("/home/bob") == "/home/bob");
	CHECK(by("/home/bob/public") == "/home/bob");
	CHECK(by("/home/bobby") == "");
	CHECK(by("/home/john/x") == "");
	CHECK(by("/var") == "/var/lib/pukaipu"); // contains the state dir
	CHECK(by("/var/lib/pukaipu/instances/john") == "/var/lib/pukaipu");
	CHECK(by("/var/lib/pukaipu-other") == "");
	CHECK(by("/srv/data") == "");
	// Without "/" in the list, "/" is still refused: it contains everything.
	CHECK(refusedByPrefix("/", { "/etc" }) != nullptr);
	CHECK(refusedByPrefix("/srv", {}) == nullptr);
}

TEST_CASE("grant and revoke: one kind at a time, unknown kinds and values refused with the valid ones")
{
	InstanceConfig i = instance();
	const InstanceConfig before = i;
	CHECK(err(applyGrant(i.grants, GrantOp::Grant, "webcam", "on")) ==
	      "unknown kind 'webcam' (valid: mount, network, clipboard, downloads, printing, audio, gpu)");
	CHECK(err(applyGrant(i.grants, GrantOp::Grant, "clipboard", "yes")) ==
	      "clipboard: 'yes' is not one of: both, to-browser, from-browser, off");
	CHECK(err(applyGrant(i.grants, GrantOp::Grant, "downloads", "yes")) == "downloads: 'yes' is not one of: on, off");
	CHECK(err(applyNetworkGrant(i.network, GrantOp::Grant, "host")) == "network: 'host' is not one of: egress, none");
	CHECK(err(applyGrant(i.grants, GrantOp::Grant, "mount", "/srv/a:/etc/a")).find("must be inside") != std::string::npos);
	CHECK(json(i) == json(before));

	auto c = applyGrant(i.grants, GrantOp::Grant, "clipboard", "to-browser");
	REQUIRE(c);
	CHECK(c->changed);
	CHECK(c->what == "clipboard: off -> to-browser");
	c = applyGrant(i.grants, GrantOp::Grant, "clipboard", "to-browser");
	REQUIRE(c);
	CHECK_FALSE(c->changed);
	c = applyGrant(i.grants, GrantOp::Revoke, "clipboard", "both"); // not what is granted
	REQUIRE(c);
	CHECK_FALSE(c->changed);
	c = applyGrant(i.grants, GrantOp::Revoke, "clipboard", "to-browser");
	REQUIRE(c);
	CHECK(c->changed);
	CHECK(i.grants.clipboard == "off");

	for (const char* kind : { "downloads", "printing", "audio", "gpu" }) {
		c = applyGrant(i.grants, GrantOp::Grant, kind, "on");
		REQUIRE(c);
		CHECK(c->what == std::string(kind) + ": off -> on");
	}
	CHECK(i.grants.downloads);
	CHECK(i.grants.gpu);
	c = applyGrant(i.grants, GrantOp::Revoke, "gpu", "on");
	REQUIRE(c);
	CHECK_FALSE(i.grants.gpu);
	c = applyGrant(i.grants, GrantOp::Grant, "audio", "off");
	REQUIRE(c);
	CHECK_FALSE(i.grants.audio);

	// network is the instance's own field; revoking returns it to the global default.
	c = applyNetworkGrant(i.network, GrantOp::Grant, "none");
	REQUIRE(c);
	CHECK(i.network == "none");
	CHECK(c->what == "network: default -> none");
	c = applyNetworkGrant(i.network, GrantOp::Revoke, "none");
	REQUIRE(c);
	CHECK(i.network.empty());
}

TEST_CASE("mount grants: duplicates change nothing, overlapping container paths are refused, revoke by path")
{
	InstanceConfig i = instance();
	REQUIRE(applyGrant(i.grants, GrantOp::Grant, "mount", "/srv/b:/mnt/b:rw"));
	REQUIRE(applyGrant(i.grants, GrantOp::Grant, "mount", "/srv/a:/mnt/a"));
	REQUIRE(i.grants.mounts.size() == 2);
	CHECK(i.grants.mounts[0].container == "/mnt/a"); // sorted: parents before children
	auto c = applyGrant(i.grants, GrantOp::Grant, "mount", "/srv/a:/mnt/a:ro");
	REQUIRE(c);
	CHECK_FALSE(c->changed);
	CHECK(err(applyGrant(i.grants, GrantOp::Grant, "mount", "/srv/c:/mnt/a")).find("already granted") != std::string::npos);
	CHECK(err(applyGrant(i.grants, GrantOp::Grant, "mount", "/srv/c:/mnt/a/c")).find("overlaps") != std::string::npos);
	CHECK(err(applyGrant(i.grants, GrantOp::Grant, "mount", "/srv/c:/mnt")).find("must be inside") != std::string::npos);
	c = applyGrant(i.grants, GrantOp::Revoke, "mount", "/mnt/b");
	REQUIRE(c);
	CHECK(c->what == "mount -/srv/b:/mnt/b:rw");
	c = applyGrant(i.grants, GrantOp::Revoke, "mount", "/srv/other:/mnt/a"); // another host path: not this grant
	REQUIRE(c);
	CHECK_FALSE(c->changed);
	CHECK(i.grants.mounts.size() == 1);
}

TEST_CASE("instance.json: grants round-trip, defaults are not written, parsing is strict")
{
	InstanceConfig i = instance();
	CHECK_FALSE(json(i).contains("grants"));
	REQUIRE(applyGrant(i.grants, GrantOp::Grant, "mount", "/srv/a:/mnt/a:rw"));
	REQUIRE(applyGrant(i.grants, GrantOp::Grant, "clipboard", "both"));
	REQUIRE(applyGrant(i.grants, GrantOp::Grant, "downloads", "on"));
	json j = i;
	CHECK(j["grants"] == json::parse(R"({"mounts":[{"host":"/srv/a","container":"/mnt/a","mode":"rw"}],
					     "clipboard":"both","downloads":"on"})"));
	auto back = parseInstanceConfig(j);
	REQUIRE(back);
	CHECK(back->grants == i.grants);

	auto bad = [&](const char* grants) {
		json b = j;
		b["grants"] = json::parse(grants);
		auto r = parseInstanceConfig(b);
		REQUIRE_FALSE(r);
		return r.error().message();
	};
	CHECK(bad(R"({"webcam":"on"})").find("grants") != std::string::npos);
	CHECK(bad(R"({"gpu":"yes"})") == "grants.gpu: 'yes' is not one of: on, off");
	CHECK(bad(R"({"clipboard":"all"})").find("grants.clipboard") == 0);
	CHECK(bad(R"({"mounts":[{"host":"/srv/a","container":"/etc/a"}]})").find("grants.mounts[0]: ") == 0);
	CHECK(bad(R"({"mounts":[{"host":"/srv/a","container":"/mnt/a"},{"host":"/srv/b","container":"/mnt/a/b"}]})")
		      .find("overlaps") != std::string::npos);
}

TEST_CASE("environment for xpra-session: the clipboard in xpra's words")
{
	Grants g;
	CHECK(grantEnv(g) == std::vector<std::string> { "PUKAIPU_CLIPBOARD=off", "PUKAIPU_DOWNLOADS=off",
							"PUKAIPU_PRINTING=off", "PUKAIPU_AUDIO=off" });
	g.clipboard = "to-browser";
	CHECK(grantEnv(g)[0] == "PUKAIPU_CLIPBOARD=to-server");
	g.clipboard = "from-browser";
	CHECK(grantEnv(g)[0] == "PUKAIPU_CLIPBOARD=to-client");
	g.clipboard = "both";
	g.downloads = g.printing = g.audio = true;
	CHECK(grantEnv(g) == std::vector<std::string> { "PUKAIPU_CLIPBOARD=both", "PUKAIPU_DOWNLOADS=on",
							"PUKAIPU_PRINTING=on", "PUKAIPU_AUDIO=on" });
}

TEST_CASE("browser policy: downloads blocked and printing off unless granted")
{
	Grants g;
	CHECK(json::parse(browserPolicy(g)) == json { { "DownloadRestrictions", 3 }, { "PrintingEnabled", false } });
	g.downloads = g.printing = true;
	CHECK(json::parse(browserPolicy(g)) == json { { "DownloadRestrictions", 0 }, { "PrintingEnabled", true } });
}

TEST_CASE("what grants add to a spec")
{
	InstanceConfig i = instance();
	GrantFacts none;
	auto e = grantEffect(i, none, "/run/pukaipu/john", true);
	// No grants: only the attach directory, at the same path on both sides.
	REQUIRE(e.mounts.size() == 1);
	CHECK(e.mounts[0]["source"] == "/run/pukaipu/john/attach");
	CHECK(e.mounts[0]["destination"] == "/run/pukaipu/john/attach");
	CHECK(e.attachDir == "/run/pukaipu/john/attach");
	CHECK(e.guarded.empty());
	CHECK(std::find(e.env.begin(), e.env.end(), "PUKAIPU_ATTACH_DIR=/run/pukaipu/john/attach") != e.env.end());
	REQUIRE(e.warnings.size() == 1); // no policy placeholder in this (imaginary) rootfs
	CHECK(e.warnings[0].find("no browser policy placeholder") != std::string::npos);

	// A run directory the container cannot mirror: no attach, and it says so.
	e = grantEffect(i, none, "/var/pukaipu-run/john", true);
	CHECK(e.attachDir.empty());
	CHECK(e.mounts.empty());
	CHECK(e.warnings.back().find("local attach is off") != std::string::npos);

	REQUIRE(applyGrant(i.grants, GrantOp::Grant, "mount", "/srv/b:/mnt/b:rw"));
	REQUIRE(applyGrant(i.grants, GrantOp::Grant, "mount", "/home/john/x:/media/x"));
	REQUIRE(applyGrant(i.grants, GrantOp::Grant, "gpu", "on"));
	REQUIRE(applyGrant(i.grants, GrantOp::Grant, "audio", "on"));
	GrantFacts facts;
	facts.renderNodes = { "/dev/dri/renderD128" };
	facts.policyPlaceholders = { kPolicyPlaceholders[0] };
	facts.audio = true;
	e = grantEffect(i, facts, "/run/pukaipu/john", true);
	CHECK(e.warnings.empty());
	CHECK(e.guarded == std::vector<std::string> { "/media/x", "/mnt/b" });
	const json* t = mountAt(e.mounts, "/mnt");
	REQUIRE(t);
	CHECK((*t)["type"] == "tmpfs");
	REQUIRE(mountAt(e.mounts, "/media"));
	CHECK_FALSE(mountAt(e.mounts, "/srv")); // no grant there: the rootfs's /srv stays
	const json* b = mountAt(e.mounts, "/mnt/b");
	REQUIRE(b);
	CHECK((*b)["source"] == "/srv/b");
	CHECK(optionsOf(*b) == std::vector<std::string> { "bind", "rw", "nosuid", "nodev" }); // never rbind
	CHECK(optionsOf(*mountAt(e.mounts, "/media/x"))[1] == "ro");
	const json* gpu = mountAt(e.mounts, "/dev/dri/renderD128");
	REQUIRE(gpu);
	CHECK(optionsOf(*gpu) == std::vector<std::string> { "bind", "rw", "nosuid", "noexec", "dev" });
	const json* pol = mountAt(e.mounts, kPolicyPlaceholders[0]);
	REQUIRE(pol);
	CHECK((*pol)["source"] == "/run/pukaipu/john/browser-policy.json");
	CHECK(std::find(e.env.begin(), e.env.end(), "PUKAIPU_AUDIO=on") != e.env.end());
	// tmpfs roots come before the binds that need them.
	auto pos = [&](const std::string& d) {
		for (size_t k = 0; k < e.mounts.size(); k++)
			if (e.mounts[k]["destination"] == d)
				return k;
		return e.mounts.size();
	};
	CHECK(pos("/mnt") < pos("/mnt/b"));
	CHECK(pos("/media") < pos("/media/x"));
	CHECK(e.xpraGuard.empty()); // no xpra in this rootfs: nothing to guard
	CHECK_FALSE(mountAt(e.mounts, kXpraPath));

	// A rootfs with xpra: the guard goes over it in a desktop, read-only,
	// executable; a shell gets none (no xpra server runs there).
	facts.xpra = true;
	e = grantEffect(i, facts, "/run/pukaipu/john", true);
	CHECK(e.xpraGuard == "/run/pukaipu/john/xpra-guard");
	const json* xg = mountAt(e.mounts, kXpraPath);
	REQUIRE(xg);
	CHECK((*xg)["source"] == "/run/pukaipu/john/xpra-guard");
	CHECK(optionsOf(*xg) == std::vector<std::string> { "bind", "ro", "nosuid", "nodev" });
	e = grantEffect(i, facts, "/run/pukaipu/john", false);
	CHECK_FALSE(mountAt(e.mounts, kXpraPath));

	// What the host cannot give: said, and left out.
	GrantFacts poor;
	poor.audioMissing = { "PulseAudio (/usr/bin/pulseaudio: package pulseaudio)" };
	e = grantEffect(i, poor, "/run/pukaipu/john", true);
	CHECK_FALSE(mountAt(e.mounts, "/dev/dri/renderD128"));
	CHECK(std::find(e.env.begin(), e.env.end(), "PUKAIPU_AUDIO=off") != e.env.end());
	bool gpuWarned = false, audioWarned = false;
	for (const auto& w : e.warnings) {
		gpuWarned = gpuWarned || w.find("gpu is granted") == 0;
		audioWarned = audioWarned || w.find("audio is granted") == 0;
	}
	CHECK(gpuWarned);
	CHECK(audioWarned);

	// A shell: the mounts, but no desktop environment and no attach.
	e = grantEffect(i, facts, "/run/pukaipu/john", false);
	CHECK(e.env.empty());
	CHECK(e.attachDir.empty());
	CHECK(mountAt(e.mounts, "/mnt/b"));
}

TEST_CASE("grant mounts in the plan: bind without rbind, and 'dev' for render nodes")
{
	Spec s;
	s.mounts.push_back({ "/mnt/b", "bind", "/srv/b", { "bind", "rw", "nosuid", "nodev" }, false, {}, {} });
	s.mounts.push_back({ "/dev/dri/renderD128", "bind", "/dev/dri/renderD128",
			     { "bind", "rw", "nosuid", "noexec", "dev" }, false, {}, {} });
	std::vector<std::string> w;
	auto plan = planMounts(s, w);
	REQUIRE(plan);
	CHECK((*plan)[0].flags == (MS_BIND | MS_NOSUID | MS_NODEV));
	CHECK((*plan)[1].flags == (MS_BIND | MS_NOSUID | MS_NOEXEC));
	CHECK_FALSE((*plan)[0].guarded); // only guardBind() marks it
}

TEST_CASE("guardBind marks one bind mount of the spec; prepare() plans it guarded, never recursive")
{
	Spec s;
	s.rootPath = "/";
	s.mounts.push_back({ "/mnt/b", "bind", "/srv/b", { "rbind", "rw" }, false, {}, {} });
	s.mounts.push_back({ "/data/home", "bind", "/home/john", { "rbind", "rw" }, false, {}, {} });
	s.mounts.push_back({ "/tmp", "tmpfs", "tmpfs", {}, false, {}, {} });
	const std::vector<std::string> forbidden { "/", "/etc" };
	REQUIRE(guardBind(s, "/mnt/b", forbidden));
	RunOptions o;
	o.checkTrustedPaths = false;
	auto p = prepare(s, o);
	REQUIRE_MESSAGE(p, (p ? "" : p.error().message()));
	CHECK(p->mounts[0].guarded);
	CHECK(p->mounts[0].flags == (MS_BIND | MS_NOSUID | MS_NODEV)); // MS_REC dropped
	CHECK(p->mounts[0].forbidden == forbidden);
	CHECK_FALSE(p->mounts[1].guarded);
	CHECK((p->mounts[1].flags & MS_REC));
	CHECK(p->spec.mounts[0].options == std::vector<std::string> { "rbind", "rw" });

	auto bad = guardBind(s, "/mnt/missing", forbidden);
	REQUIRE_FALSE(bad);
	CHECK(bad.error().message() == "guarded mount '/mnt/missing': 0 bind mounts with that destination, expected 1");
	bad = guardBind(s, "/tmp", forbidden);
	REQUIRE_FALSE(bad);
	CHECK(bad.error().message() == "guarded mount '/tmp': not a bind mount");
}

TEST_CASE("generated files are rows of the plan: read-only, no device, no exec")
{
	MountPlan f = generatedFile("/etc/resolv.conf", "nameserver 192.0.2.53\n");
	CHECK(f.type == "file");
	CHECK(f.destination == "/etc/resolv.conf");
	CHECK(f.content == "nameserver 192.0.2.53\n");
	CHECK(f.flags == (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC));
	CHECK_FALSE(f.guarded);
}

TEST_CASE("the guarded source check: where it really leads, what it is, who may read it")
{
	char tmpl[] = "/tmp/pukaipu-unit-grants-XXXXXX";
	REQUIRE(mkdtemp(tmpl));
	const std::string d = tmpl;
	REQUIRE(mkdir((d + "/dir").c_str(), 0755) == 0);
	REQUIRE(symlink("/etc", (d + "/to-etc").c_str()) == 0);
	REQUIRE(symlink("dir", (d + "/to-dir").c_str()) == 0);
	REQUIRE(mkfifo((d + "/fifo").c_str(), 0644) == 0);
	const std::vector<std::string> forbidden { "/", "/etc", "/proc" };

	auto ok = openGuardedSource((d + "/to-dir").c_str(), forbidden);
	CHECK(ok);
	auto r = openGuardedSource((d + "/to-etc").c_str(), forbidden);
	REQUIRE_FALSE(r);
	CHECK(r.error().message().find("(resolves to '/etc'): refused, it is or lies inside '/etc'") != std::string::npos);
	r = openGuardedSource("/proc/self/root", forbidden); // a magic link to "/"
	REQUIRE_FALSE(r);
	CHECK(r.error().message().find("refused") != std::string::npos);
	r = openGuardedSource((d + "/fifo").c_str(), forbidden);
	REQUIRE_FALSE(r);
	CHECK(r.error().message().find("only directories and regular files") != std::string::npos);
	r = openGuardedSource((d + "/missing").c_str(), forbidden);
	REQUIRE_FALSE(r);
	CHECK(r.error().errno_ == ENOENT);
	// Containing a forbidden path is as bad as being inside one.
	r = openGuardedSource(d.c_str(), { d + "/dir" });
	REQUIRE_FALSE(r);
	CHECK(r.error().message().find("contains") != std::string::npos);

	for (const char* n : { "/dir", "/to-etc", "/to-dir", "/fifo" })
		(n == std::string("/dir") ? rmdir : unlink)((d + n).c_str());
	rmdir(d.c_str());
}
