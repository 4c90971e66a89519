// grants: the model of an instance's opt-in permissions — parsing and
// checking grants, instance.json's "grants", and applying one grant or
// revoke. What they do at a start: grant_effect.cc; the commands:
// cmd_grants.cc.
#include "grants.h"

#include <algorithm>
#include <climits>

#include <nlohmann/json.hpp>

#include "base/json_fields.h"

namespace pukaipu {

using json = nlohmann::json;

namespace {

constexpr const char* kKinds = "mount, network, clipboard, downloads, printing, audio, gpu";
constexpr const char* kClipboardValues[] = { "both", "to-browser", "from-browser", "off" };

Result<bool> parseOnOff(const std::string& kind, const std::string& v)
{
	if (v == "on")
		return true;
	if (v == "off")
		return false;
	return fail("%s: '%s' is not one of: on, off", kind.c_str(), v.c_str());
}

Result<std::string> checkClipboard(const std::string& v, const std::string& what)
{
	for (const char* c : kClipboardValues)
		if (v == c)
			return v;
	return fail("%s: '%s' is not one of: both, to-browser, from-browser, off", what.c_str(), v.c_str());
}

// Two container paths that are the same or one inside the other.
bool overlap(const std::string& a, const std::string& b)
{
	return a == b || startsWithDir(a, b) || startsWithDir(b, a);
}

void sortMounts(std::vector<MountGrant>& mounts)
{
	std::sort(mounts.begin(), mounts.end(),
		  [](const MountGrant& a, const MountGrant& b) { return a.container < b.container; });
}

// Getters of instance.json's "grants" (jsonf::optionalField).

Result<MountGrant> getMountGrant(const json& j, const std::string& path)
{
	using namespace jsonf;
	TRYV(onlyKeys(j, path, { "host", "container", "mode", "resolved", "dev", "ino" }));
	if (!j.contains("host") || !j.contains("container"))
		return fail("%s: expected host and container", path.c_str());
	TRY(host, getString(j["host"], sub(path, "host")));
	TRY(cont, getString(j["container"], sub(path, "container")));
	std::string mode = "ro";
	TRYV(optionalField(j, "mode", path, mode, getString));
	TRY_CTX(m, parseMountGrant(*host + ":" + *cont + ":" + mode), "%s", path.c_str());
	TRYV(optionalField(j, "resolved", path, m->resolved, getString));
	TRYV(optionalField(j, "dev", path, m->dev, getU64));
	TRYV(optionalField(j, "ino", path, m->ino, getU64));
	if (!m->resolved.empty())
		TRYV(checkGrantPath(m->resolved, sub(path, "resolved")));
	return m;
}

Result<std::vector<MountGrant>> getMountGrants(const json& j, const std::string& path)
{
	TRYV(jsonf::checkArray(j, path));
	std::vector<MountGrant> out;
	for (size_t i = 0; i < j.size(); i++) {
		const std::string ip = jsonf::idx(path, i);
		TRY(m, getMountGrant(j[i], ip));
		for (const auto& other : out)
			if (overlap(m->container, other.container))
				return fail("%s: container path '%s' overlaps '%s'", ip.c_str(), m->container.c_str(),
					    other.container.c_str());
		out.push_back(*m);
	}
	sortMounts(out);
	return out;
}

Result<std::string> getClipboard(const json& j, const std::string& path)
{
	TRY(v, jsonf::getString(j, path));
	return checkClipboard(*v, path);
}

Result<bool> getOnOff(const json& j, const std::string& path)
{
	TRY(v, jsonf::getString(j, path));
	return parseOnOff(path, *v);
}

} // namespace

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
	using jsonf::optionalField;
	Grants g;
	TRYV(jsonf::onlyKeys(j, path, { "mounts", "clipboard", "downloads", "printing", "audio", "gpu" }));
	TRYV(optionalField(j, "mounts", path, g.mounts, getMountGrants));
	TRYV(optionalField(j, "clipboard", path, g.clipboard, getClipboard));
	TRYV(optionalField(j, "downloads", path, g.downloads, getOnOff));
	TRYV(optionalField(j, "printing", path, g.printing, getOnOff));
	TRYV(optionalField(j, "audio", path, g.audio, getOnOff));
	TRYV(optionalField(j, "gpu", path, g.gpu, getOnOff));
	return g;
}

void to_json(json& j, const MountGrant& m)
{
	j = json { { "host", m.host }, { "container", m.container }, { "mode", m.readOnly ? "ro" : "rw" } };
	if (!m.resolved.empty()) {
		j["resolved"] = m.resolved;
		j["dev"] = m.dev;
		j["ino"] = m.ino;
	}
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

namespace {

Result<GrantChange> grantMount(std::vector<MountGrant>& mounts, const std::string& value)
{
	GrantChange c;
	TRY(m, parseMountGrant(value));
	for (const auto& other : mounts) {
		if (other == *m)
			return c; // granted already
		if (other.container == m->container)
			return fail("mount: '%s' is already granted as %s; revoke that first", m->container.c_str(),
				    formatMountGrant(other).c_str());
		if (overlap(m->container, other.container))
			return fail("mount: container path '%s' overlaps the grant %s", m->container.c_str(),
				    formatMountGrant(other).c_str());
	}
	mounts.push_back(*m);
	sortMounts(mounts);
	c.changed = true;
	c.what = "mount +" + formatMountGrant(*m);
	return c;
}

// By HOST:CONTAINER[:mode] or by the container path alone.
Result<GrantChange> revokeMount(std::vector<MountGrant>& mounts, const std::string& value)
{
	GrantChange c;
	std::string host, container;
	if (value.find(':') == std::string::npos) {
		TRYV(checkContainerPath(value));
		container = value;
	} else {
		TRY(m, parseMountGrant(value));
		host = m->host;
		container = m->container;
	}
	for (auto it = mounts.begin(); it != mounts.end(); ++it) {
		if (it->container == container && (host.empty() || it->host == host)) {
			c.changed = true;
			c.what = "mount -" + formatMountGrant(*it);
			mounts.erase(it);
			return c;
		}
	}
	return c;
}

} // namespace

Result<GrantChange> applyGrant(Grants& g, GrantOp op, const std::string& kind, const std::string& value)
{
	PUKAIPU_CHECK(kind != "network"); // the instance's own field: applyNetworkGrant
	const bool grant = op == GrantOp::Grant;
	if (kind == "mount")
		return grant ? grantMount(g.mounts, value) : revokeMount(g.mounts, value);
	GrantChange c;
	if (kind == "clipboard") {
		TRYV(checkClipboard(value, "clipboard"));
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

Result<GrantChange> applyNetworkGrant(std::string& network, GrantOp op, const std::string& value)
{
	const bool grant = op == GrantOp::Grant;
	GrantChange c;
	if (value != "egress" && value != "none")
		return fail("network: '%s' is not one of: egress, none", value.c_str());
	std::string before = network.empty() ? "default" : network;
	if (grant && network != value) {
		network = value;
	} else if (!grant && network == value) {
		network.clear();
	} else {
		return c;
	}
	c.changed = true;
	c.what = "network: " + before + " -> " + (network.empty() ? "default" : network);
	return c;
}

} // namespace pukaipu
