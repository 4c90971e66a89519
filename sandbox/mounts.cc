#include "mounts.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace pukaipu {

namespace {

struct FlagName {
	const char* name;
	bool clear;          // "rw" clears MS_RDONLY, "suid" clears MS_NOSUID, ...
	unsigned long flag;
};

// Per-mount flags understood for every mount type.
constexpr FlagName kFlags[] = {
	{ "ro", false, MS_RDONLY },         { "rw", true, MS_RDONLY },
	{ "nosuid", false, MS_NOSUID },     { "suid", true, MS_NOSUID },
	{ "nodev", false, MS_NODEV },       { "dev", true, MS_NODEV },
	{ "noexec", false, MS_NOEXEC },     { "exec", true, MS_NOEXEC },
	{ "sync", false, MS_SYNCHRONOUS },  { "async", true, MS_SYNCHRONOUS },
	{ "dirsync", false, MS_DIRSYNC },   { "noatime", false, MS_NOATIME },
	{ "atime", true, MS_NOATIME },      { "nodiratime", false, MS_NODIRATIME },
	{ "diratime", true, MS_NODIRATIME }, { "relatime", false, MS_RELATIME },
	{ "norelatime", true, MS_RELATIME }, { "strictatime", false, MS_STRICTATIME },
	{ "nostrictatime", true, MS_STRICTATIME },
};

struct PropagationName {
	const char* name;
	unsigned long flags;
};
// Shared propagation would let mounts cross between host and container: refused.
constexpr PropagationName kPropagation[] = {
	{ "private", MS_PRIVATE }, { "rprivate", MS_PRIVATE | MS_REC },
	{ "slave", MS_SLAVE },     { "rslave", MS_SLAVE | MS_REC },
};

// "/proc/self/fd/N": how the child names an fd it opened safely to mount(2).
struct FdPath {
	char buf[32];
	explicit FdPath(int fd) { std::snprintf(buf, sizeof(buf), "/proc/self/fd/%d", fd); }
	const char* c_str() const { return buf; }
};

// statvfs's per-mount flags and the mount(2) flags a remount must repeat.
struct LockedFlag {
	unsigned long st;
	unsigned long ms;
};
constexpr LockedFlag kLockedFlags[] = {
	{ ST_RDONLY, MS_RDONLY },   { ST_NOSUID, MS_NOSUID },         { ST_NODEV, MS_NODEV },
	{ ST_NOEXEC, MS_NOEXEC },   { ST_NOATIME, MS_NOATIME },       { ST_NODIRATIME, MS_NODIRATIME },
	{ ST_RELATIME, MS_RELATIME },
};

unsigned long lockedFlags(int fd)
{
	struct statvfs st;
	if (fstatvfs(fd, &st) < 0)
		return 0;
	unsigned long f = 0;
	for (const auto& l : kLockedFlags)
		if (st.f_flag & l.st)
			f |= l.ms;
	return f;
}

// Creates `dest` (and missing parents) inside rootFd. Succeeds only where the
// user may write: our own tmpfs mounts. The rootfs itself is never changed;
// a missing mount point there is an error naming it.
Result<UniqueFd> ensureDest(int rootFd, const char* dest, bool dir) noexcept
{
	auto fd = openInRoot(rootFd, dest, O_PATH);
	if (fd || fd.error().errno_ != ENOENT)
		return fd;
	char buf[PATH_MAX];
	if (std::snprintf(buf, sizeof(buf), "%s", dest) >= (int)sizeof(buf))
		return failErrno(ENAMETOOLONG, "mount destination '%s'", dest);
	size_t len = strlen(buf);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		bool leaf = i == len;
		char saved = buf[i];
		buf[i] = '\0';
		auto here = openInRoot(rootFd, buf, O_PATH);
		if (!here) {
			if (here.error().errno_ != ENOENT)
				return failWith(here.error());
			char* slash = strrchr(buf, '/');
			*slash = '\0';
			auto parent = openInRoot(rootFd, slash == buf ? "/" : buf, O_PATH | O_DIRECTORY);
			*slash = '/';
			if (!parent)
				return failWith(parent.error());
			int r;
			if (leaf && !dir) {
				UniqueFd created(
					openat(parent->get(), slash + 1, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644));
				r = created ? 0 : -1;
			} else {
				r = mkdirat(parent->get(), slash + 1, 0755);
			}
			if (r < 0 && errno != EEXIST)
				return failErrno(errno, "create mount point '%s' in the container", buf);
		}
		buf[i] = saved;
	}
	return openInRoot(rootFd, dest, O_PATH);
}

Result<void> bindDevNode(int rootFd, int devFd, const char* devPath, const char* name) noexcept
{
	char host[64], inside[PATH_MAX];
	std::snprintf(host, sizeof(host), "/dev/%s", name);
	std::snprintf(inside, sizeof(inside), "%s/%s", devPath, name);
	if (!UniqueFd(openat(devFd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0666)))
		return failErrno(errno, "create '%s'", inside);
	TRY(target, openInRoot(rootFd, inside, O_PATH));
	if (mount(host, FdPath(target->get()).c_str(), nullptr, MS_BIND, nullptr) < 0)
		return failErrno(errno, "mount '%s' on '%s'", host, inside);
	return {};
}

Result<void> populateDev(int rootFd, const char* devPath, bool withTty) noexcept
{
	TRY(dev, openInRoot(rootFd, devPath, O_PATH | O_DIRECTORY));
	for (const char* name : kDevNodes)
		TRYV(bindDevNode(rootFd, dev->get(), devPath, name));
	if (withTty)
		TRYV(bindDevNode(rootFd, dev->get(), devPath, kDevTty));
	for (const auto& l : kDevSymlinks)
		if (symlinkat(l.target, dev->get(), l.name) < 0 && errno != EEXIST)
			return failErrno(errno, "symlink '%s/%s'", devPath, l.name);
	return {};
}

} // namespace

Result<std::vector<MountPlan>> planMounts(const Spec& spec, std::vector<std::string>& warnings)
{
	std::vector<MountPlan> plan;
	for (size_t i = 0; i < spec.mounts.size(); i++) {
		const MountSpec& m = spec.mounts[i];
		MountPlan p;
		p.destination = m.destination;
		p.type = m.type == "cgroup" ? "cgroup2" : m.type;
		p.source = m.source.empty() ? m.type : m.source;
		// Hardened defaults; "suid"/"dev" in the options can clear them. A
		// devpts holds nothing but device nodes (the ptys): nodev would make
		// /dev/ptmx unopenable.
		p.flags = MS_NOSUID | (m.type == "devpts" ? 0 : MS_NODEV);
		bool bind = m.type == "bind";
		bool recursive = false;
		for (size_t k = 0; k < m.options.size(); k++) {
			const std::string& o = m.options[k];
			if (o == "bind" || o == "rbind") {
				if (!bind)
					return fail("mounts[%zu].options[%zu]: '%s' on a '%s' mount", i, k, o.c_str(),
						    m.type.c_str());
				recursive = recursive || o == "rbind";
				continue;
			}
			if (o == "shared" || o == "rshared" || o == "unbindable" || o == "runbindable")
				return fail("mounts[%zu].options[%zu]: '%s' propagation not supported", i, k, o.c_str());
			const FlagName* f = nullptr;
			for (const auto& c : kFlags)
				if (o == c.name)
					f = &c;
			if (f) {
				p.flags = f->clear ? (p.flags & ~f->flag) : (p.flags | f->flag);
				continue;
			}
			const PropagationName* pr = nullptr;
			for (const auto& c : kPropagation)
				if (o == c.name)
					pr = &c;
			if (pr) {
				p.propagation = pr->flags;
				continue;
			}
			if (bind)
				return fail("mounts[%zu].options[%zu]: option '%s' not supported for bind mounts", i, k,
					    o.c_str());
			if (m.type == "devpts" && o.rfind("gid=", 0) == 0) {
				char* end = nullptr;
				unsigned long g = strtoul(o.c_str() + 4, &end, 10);
				if (!end || *end || !mapToHost(spec.gidMappings, (uint32_t)g)) {
					warnings.push_back("mounts[" + std::to_string(i) + "].options: '" + o +
							   "' names a group outside the user namespace, ignoring");
					continue;
				}
			}
			if (o.find(',') != std::string::npos)
				return fail("mounts[%zu].options[%zu]: '%s' contains a comma", i, k, o.c_str());
			p.data += (p.data.empty() ? "" : ",") + o;
		}
		if (bind)
			p.flags |= MS_BIND | (recursive && !m.guarded ? MS_REC : 0); // guarded: never recursive
		p.guarded = m.guarded;
		p.forbidden = m.forbidden;
		p.identity = m.identity;
		p.populateDev = p.type == "tmpfs" && p.destination == "/dev";
		p.devTty = p.populateDev && spec.process.terminal;
		if (p.type == "devpts" && p.data.find("newinstance") == std::string::npos)
			p.data += std::string(p.data.empty() ? "" : ",") + "newinstance";
		plan.push_back(std::move(p));
	}
	return plan;
}

Result<void> guardBind(Spec& spec, const std::string& destination, const std::vector<std::string>& forbidden,
		       FileIdentity identity)
{
	size_t found = 0;
	for (auto& m : spec.mounts) {
		if (m.destination != destination)
			continue;
		if (m.type != "bind")
			return fail("guarded mount '%s': not a bind mount", destination.c_str());
		m.guarded = true;
		m.forbidden = forbidden;
		m.identity = identity;
		found++;
	}
	if (found != 1)
		return fail("guarded mount '%s': %zu bind mounts with that destination, expected 1",
			    destination.c_str(), found);
	return {};
}

MountPlan generatedFile(const std::string& destination, std::string content)
{
	MountPlan p;
	p.destination = destination;
	p.type = "file";
	p.source = "tmpfs";
	p.flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
	p.content = std::move(content);
	return p;
}

const char* refusedByPrefix(const char* path, const std::vector<std::string>& forbidden) noexcept
{
	// a is b, or a lies below b, component-wise.
	auto within = [](const char* a, const char* b, size_t blen) {
		return std::strncmp(a, b, blen) == 0 && (a[blen] == '\0' || a[blen] == '/' || (blen == 1 && b[0] == '/'));
	};
	size_t plen = std::strlen(path);
	for (const auto& f : forbidden) {
		if (f.empty())
			continue;
		if (f == "/") {
			if (std::strcmp(path, "/") == 0)
				return f.c_str();
			continue;
		}
		if (within(path, f.c_str(), f.size()) || within(f.c_str(), path, plen))
			return f.c_str();
	}
	return nullptr;
}

Result<UniqueFd> openGuardedSource(const char* source, const std::vector<std::string>& forbidden,
				   FileIdentity identity) noexcept
{
	// With the caller's own permissions on every component: a path the
	// user cannot reach fails here already. Symlinks are followed only
	// where no identity is known yet (at grant time).
	int raw;
	if (identity.known()) {
		struct open_how how {};
		how.flags = O_PATH | O_CLOEXEC;
		how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
		raw = (int)syscall(SYS_openat2, AT_FDCWD, source, &how, sizeof(how));
		if (raw < 0 && errno == ELOOP)
			return failErrno(EPERM, "grant '%s': refused, a symlink is on the way now (it was not when it was "
						"granted)", source);
	} else {
		raw = open(source, O_PATH | O_CLOEXEC);
	}
	if (raw < 0)
		return failErrno(errno, "grant '%s'", source);
	UniqueFd fd(raw);
	// Where the fd really leads, now: this is what gets mounted.
	char real[PATH_MAX];
	ssize_t n = readlink(FdPath(raw).c_str(), real, sizeof(real) - 1);
	if (n <= 0 || real[0] != '/')
		return failErrno(n < 0 ? errno : ENOENT, "grant '%s': cannot tell where it leads", source);
	real[n] = '\0';
	struct stat st;
	if (fstat(raw, &st) < 0)
		return failErrno(errno, "grant '%s'", source);
	if (st.st_nlink == 0)
		return failErrno(ENOENT, "grant '%s': it was deleted", source);
	if (identity.known() && (identity.dev != (uint64_t)st.st_dev || identity.ino != (uint64_t)st.st_ino))
		return failErrno(EPERM, "grant '%s': refused, it is not the one that was granted (replaced since; "
					"grant it again if that is meant)", source);
	if (const char* why = refusedByPrefix(real, forbidden)) {
		bool same = std::strcmp(real, source) == 0;
		size_t wl = std::strlen(why);
		bool inside = std::strncmp(real, why, wl) == 0 && (real[wl] == '\0' || real[wl] == '/');
		return failErrno(EPERM, "grant '%s'%s%s%s: refused, it %s '%s'", source, same ? "" : " (resolves to '",
				 same ? "" : real, same ? "" : "')", inside ? "is or lies inside" : "contains", why);
	}
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
		return failErrno(EPERM, "grant '%s': refused, only directories and regular files can be granted", source);
	// AT_EACCESS: the effective ids, which the caller set to the user's.
	int mode = R_OK | (S_ISDIR(st.st_mode) ? X_OK : 0);
	if (syscall(SYS_faccessat2, raw, "", mode, AT_EMPTY_PATH | AT_EACCESS) < 0)
		return failErrno(errno, "grant '%s': refused, the user cannot read it on the host", source);
	return fd;
}

Result<UniqueFd> openInRoot(int rootFd, const char* path, int flags) noexcept
{
	struct open_how how {};
	how.flags = (uint64_t)(flags | O_CLOEXEC);
	// IN_ROOT: ".." and absolute symlinks stay inside the rootfs.
	// NO_MAGICLINKS: /proc/self/fd/N style links cannot jump out of it.
	how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
	const char* rel = path;
	while (*rel == '/')
		rel++;
	if (!*rel)
		rel = ".";
	int fd = (int)syscall(SYS_openat2, rootFd, rel, &how, sizeof(how));
	if (fd < 0)
		return failErrno(errno, "open '%s' in the container", path);
	return UniqueFd(fd);
}

bool existsInRoot(int rootFd, const char* path, bool wantDir, bool wantExec) noexcept
{
	auto fd = openInRoot(rootFd, path, O_PATH);
	if (!fd)
		return false;
	struct stat st;
	if (fstat(fd->get(), &st) < 0)
		return false;
	if (wantDir)
		return S_ISDIR(st.st_mode);
	return S_ISREG(st.st_mode) && (!wantExec || (st.st_mode & 0111));
}

Result<void> remountReadonly(int mountFd, const char* what) noexcept
{
	return remountWith(mountFd, MS_RDONLY, what);
}

Result<void> remountWith(int mountFd, unsigned long flags, const char* what) noexcept
{
	unsigned long f = MS_BIND | MS_REMOUNT | flags | lockedFlags(mountFd);
	if (mount(nullptr, FdPath(mountFd).c_str(), nullptr, f, nullptr) < 0)
		return failErrno(errno, "remount '%s'%s", what, (flags & MS_RDONLY) ? " read-only" : "");
	return {};
}

namespace {

// A generated file over the rootfs's file at m.destination. The rootfs is
// never written and nothing may be left on the host, so the file lives in a
// tiny tmpfs of our own. A bind source must be attached in our namespace, so:
//   1. open the rootfs's file (the bind target) and its directory;
//   2. stack the tmpfs on that directory, create the file in it;
//   3. bind the new file onto the target fd from step 1 (it names the
//      rootfs's file *under* the tmpfs);
//   4. detach the tmpfs: the bind keeps its file alive, and the directory
//      shows the rootfs again, with the bind on the file;
//   5. remount the bind read-only (and nosuid, nodev, noexec).
Result<void> mountGeneratedFile(int rootFd, const MountPlan& m) noexcept
{
	const char* dest = m.destination.c_str();
	const char* slash = std::strrchr(dest, '/');
	char dir[PATH_MAX];
	if (!slash || slash[1] == '\0' || std::snprintf(dir, sizeof(dir), "%.*s", (int)(slash - dest), dest) >= (int)sizeof(dir))
		return fail("generated file '%s': not an absolute file path", dest);
	TRY(target, openInRoot(rootFd, dest, O_PATH));
	struct stat st;
	if (fstat(target->get(), &st) < 0 || !S_ISREG(st.st_mode))
		return failErrno(EINVAL, "generated file '%s': the rootfs has no regular file there", dest);
	TRY(under, openInRoot(rootFd, dir[0] ? dir : "/", O_PATH | O_DIRECTORY));
	if (mount("tmpfs", FdPath(under->get()).c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "size=16k,nr_inodes=4,mode=0755") < 0)
		return failErrno(errno, "generated file '%s': tmpfs", dest);
	auto stage = openInRoot(rootFd, dir[0] ? dir : "/", O_PATH | O_DIRECTORY); // the tmpfs now
	bool ok = false;
	int err = 0;
	if (stage) {
		UniqueFd f(openat(stage->get(), slash + 1, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644));
		ok = f && write(f.get(), m.content.data(), m.content.size()) == (ssize_t)m.content.size();
		err = errno;
		if (ok && mount(FdPath(f.get()).c_str(), FdPath(target->get()).c_str(), nullptr, MS_BIND, nullptr) < 0) {
			ok = false;
			err = errno;
		}
	} else {
		err = stage.error().errno_;
	}
	if (!stage || umount2(FdPath(stage->get()).c_str(), MNT_DETACH) < 0) {
		// The tmpfs would hide the rootfs's directory: never carry on.
		return failErrno(stage ? errno : err, "generated file '%s': detach its tmpfs", dest);
	}
	if (!ok)
		return failErrno(err, "generated file '%s': write it", dest);
	TRY(top, openInRoot(rootFd, dest, O_PATH));
	return remountWith(top->get(), m.flags, dest);
}

} // namespace

Result<void> mountInChild(int rootFd, const MountPlan& m) noexcept
{
	const char* dest = m.destination.c_str();
	if (m.type == "file")
		return mountGeneratedFile(rootFd, m);
	if (m.flags & MS_BIND) {
		UniqueFd srcFd;
		if (m.guarded) {
			TRY(g, openGuardedSource(m.source.c_str(), m.forbidden, m.identity));
			srcFd = std::move(*g);
		} else {
			srcFd = UniqueFd(open(m.source.c_str(), O_PATH | O_CLOEXEC));
			if (!srcFd)
				return failErrno(errno, "mount '%s' on '%s'", m.source.c_str(), dest);
		}
		int src = srcFd.get();
		struct stat st;
		if (fstat(src, &st) < 0)
			return failErrno(errno, "stat '%s'", m.source.c_str());
		TRY(target, ensureDest(rootFd, dest, S_ISDIR(st.st_mode)));
		// The fd, never the path: for a guarded bind it is what was checked.
		if (mount(FdPath(src).c_str(), FdPath(target->get()).c_str(), nullptr, m.flags & (MS_BIND | MS_REC),
			  nullptr) < 0) {
			// In a user namespace a non-recursive bind of a tree with mounts
			// below it would uncover what they hide: the kernel says EINVAL.
			if (errno == EINVAL && !(m.flags & MS_REC))
				return failErrno(errno, "mount '%s' on '%s': other filesystems are mounted below it "
							"(grant them one by one)",
						 m.source.c_str(), dest);
			return failErrno(errno, "mount '%s' on '%s'", m.source.c_str(), dest);
		}
		// A bind mount takes its flags only from a remount, which must keep
		// the flags the kernel locked on the source. Reopen the destination:
		// the old fd still names the directory *under* the new mount.
		TRY(top, openInRoot(rootFd, dest, O_PATH));
		unsigned long f = MS_BIND | MS_REMOUNT | (m.flags & ~(MS_BIND | MS_REC)) | lockedFlags(src);
		if (mount(nullptr, FdPath(top->get()).c_str(), nullptr, f, nullptr) < 0)
			return failErrno(errno, "remount '%s' with its options", dest);
		if (m.propagation &&
		    mount(nullptr, FdPath(top->get()).c_str(), nullptr, m.propagation, nullptr) < 0)
			return failErrno(errno, "set propagation of '%s'", dest);
		return {};
	}

	TRY(target, ensureDest(rootFd, dest, true));
	if (mount(m.source.c_str(), FdPath(target->get()).c_str(), m.type.c_str(), m.flags,
		  m.data.empty() ? nullptr : m.data.c_str()) < 0)
		return failErrno(errno, "mount %s on '%s'", m.type.c_str(), dest);
	if (m.propagation) {
		TRY(top, openInRoot(rootFd, dest, O_PATH));
		if (mount(nullptr, FdPath(top->get()).c_str(), nullptr, m.propagation, nullptr) < 0)
			return failErrno(errno, "set propagation of '%s'", dest);
	}
	if (m.populateDev)
		return populateDev(rootFd, dest, m.devTty);
	return {};
}

Result<void> maskPathInChild(int rootFd, const std::string& path) noexcept
{
	auto fd = openInRoot(rootFd, path.c_str(), O_PATH);
	if (!fd)
		return fd.error().errno_ == ENOENT ? Result<void>() : failWith(fd.error());
	struct stat st;
	if (fstat(fd->get(), &st) < 0)
		return failErrno(errno, "stat '%s'", path.c_str());
	int r;
	if (S_ISDIR(st.st_mode))
		r = mount("tmpfs", FdPath(fd->get()).c_str(), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			  "size=4k,nr_inodes=1,mode=000");
	else
		r = mount("/dev/null", FdPath(fd->get()).c_str(), nullptr, MS_BIND, nullptr);
	if (r < 0)
		return failErrno(errno, "mask '%s'", path.c_str());
	return {};
}

Result<void> readonlyPathInChild(int rootFd, const std::string& path) noexcept
{
	auto fd = openInRoot(rootFd, path.c_str(), O_PATH);
	if (!fd)
		return fd.error().errno_ == ENOENT ? Result<void>() : failWith(fd.error());
	FdPath p(fd->get());
	if (mount(p.c_str(), p.c_str(), nullptr, MS_BIND | MS_REC, nullptr) < 0)
		return failErrno(errno, "bind '%s' for read-only", path.c_str());
	TRY(top, openInRoot(rootFd, path.c_str(), O_PATH));
	return remountReadonly(top->get(), path.c_str());
}

} // namespace pukaipu
