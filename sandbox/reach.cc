#include "reach.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>

namespace pukaipu {

namespace {

// Is the host id `id` some container id's image under `maps`?
bool mappedOnHost(const std::vector<IdMapping>& maps, uint32_t id)
{
	for (const auto& m : maps)
		if (id >= m.hostId && id - m.hostId < m.size)
			return true;
	return false;
}

} // namespace

bool maySearch(mode_t mode, uid_t owner, gid_t group, uid_t uid, gid_t gid, bool capable) noexcept
{
	if (capable)
		return true;
	if (uid == owner)
		return mode & S_IXUSR;
	if (gid == group)
		return mode & S_IXGRP;
	return mode & S_IXOTH;
}

Result<void> checkSearchable(const std::string& what, const std::string& path, bool parentsOnly, const Spec& spec)
{
	auto uid = mapToHost(spec.uidMappings, spec.process.uid);
	auto gid = mapToHost(spec.gidMappings, spec.process.gid);
	if (!uid || !gid || path.empty() || path[0] != '/')
		return {}; // refused elsewhere (spec parsing), with its own message
	std::string p = path;
	while (p.size() > 1 && p.back() == '/')
		p.pop_back();
	// '/', every prefix that ends before a '/', then (unless parentsOnly) p.
	std::vector<std::string> dirs { "/" };
	for (size_t i = 1; i < p.size(); i++)
		if (p[i] == '/' && p[i - 1] != '/')
			dirs.push_back(p.substr(0, i));
	if (!parentsOnly && p != "/")
		dirs.push_back(p);
	for (const auto& d : dirs) {
		struct stat st;
		if (stat(d.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
			return {};
		if (getxattr(d.c_str(), "system.posix_acl_access", nullptr, 0) >= 0)
			continue;
		bool capable = mappedOnHost(spec.uidMappings, st.st_uid) && mappedOnHost(spec.gidMappings, st.st_gid);
		if (!maySearch(st.st_mode, st.st_uid, st.st_gid, *uid, *gid, capable))
			return fail("%s: uid %u (gid %u) cannot search '%s' (mode %04o, owner %u:%u)", what.c_str(), *uid,
				    *gid, d.c_str(), (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
				    (unsigned)st.st_gid);
	}
	return {};
}

Result<void> checkReach(const Spec& spec, const std::vector<MountPlan>& mounts)
{
	if (auto r = checkSearchable("root.path '" + spec.rootPath + "'", spec.rootPath, false, spec); !r)
		return r;
	for (const auto& m : mounts) {
		if (!(m.flags & MS_BIND) || m.guarded)
			continue;
		auto r = checkSearchable("mount '" + m.source + "' on '" + m.destination + "'", m.source, true, spec);
		if (!r)
			return r;
	}
	return {};
}

} // namespace pukaipu
