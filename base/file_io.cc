#include "base/file_io.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/unique_fd.h"

namespace pukaipu {

namespace {

Result<std::string> randomTempName(const std::string& name)
{
	unsigned char b[8];
	std::size_t got = 0;
	while (got < sizeof(b)) {
		ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return failErrno(errno, "getrandom");
		got += static_cast<std::size_t>(n);
	}
	static const char hex[] = "0123456789abcdef";
	std::string t = "." + name + ".tmp-";
	for (unsigned char c : b) {
		t += hex[c >> 4];
		t += hex[c & 15];
	}
	return t;
}

Result<void> writeAll(int fd, std::string_view data, const char* what)
{
	while (!data.empty()) {
		ssize_t n = ::write(fd, data.data(), data.size());
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return failErrno(errno, "write '%s'", what);
		if (n == 0)
			return fail("write '%s': wrote nothing", what);
		data.remove_prefix(static_cast<std::size_t>(n));
	}
	return {};
}

// Steps 3-4 on the created temp file; the caller unlinks it on failure.
Result<void> fillTemp(UniqueFd fd, std::string_view data, mode_t mode, FileOwner owner, const char* what)
{
	if ((owner.uid != static_cast<uid_t>(-1) || owner.gid != static_cast<gid_t>(-1))
		&& ::fchown(fd.get(), owner.uid, owner.gid) < 0)
		return failErrno(errno, "fchown '%s'", what);
	// After fchown: changing the owner may clear mode bits.
	if (::fchmod(fd.get(), mode) < 0)
		return failErrno(errno, "fchmod '%s'", what);
	if (auto r = writeAll(fd.get(), data, what); !r)
		return r;
	if (::fsync(fd.get()) < 0)
		return failErrno(errno, "fsync '%s'", what);
	// The one raw close() in pukaipu: a write's last error may only show
	// here, and UniqueFd ignores close errors (other than EBADF).
	int raw = fd.release();
	if (::close(raw) < 0 && errno != EINTR)
		return failErrno(errno, "close '%s'", what);
	return {};
}

bool plainName(const std::string& n)
{
	return !n.empty() && n != "." && n != ".." && n.find('/') == std::string::npos;
}

} // namespace

Result<void> writeFileAtomicAt(int dirFd, const std::string& name, std::string_view data, mode_t mode, FileOwner owner,
	const char* tempName)
{
	if (!plainName(name))
		return fail("write '%s': not a plain file name", name.c_str());
	if (mode & ~07777)
		return fail("write '%s': bad mode %o", name.c_str(), static_cast<unsigned>(mode));
	const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
	const mode_t createMode = mode & 0600; // never wider than the final mode, even for a moment

	std::string tmp;
	UniqueFd fd;
	for (int attempt = 0; !fd && attempt < 8; attempt++) {
		if (tempName) {
			tmp = tempName;
			if (!plainName(tmp))
				return fail("write '%s': bad temp name '%s'", name.c_str(), tempName);
		} else {
			TRY(t, randomTempName(name));
			tmp = std::move(*t);
		}
		fd = UniqueFd(::openat(dirFd, tmp.c_str(), flags, createMode));
		// EEXIST: something is already there (maybe a planted symlink). Never
		// reuse or remove it; with a random name try another, else give up.
		if (!fd && (errno != EEXIST || tempName))
			return failErrno(errno, "create temp file '%s' for '%s'", tmp.c_str(), name.c_str());
	}
	if (!fd)
		return failErrno(EEXIST, "create temp file for '%s'", name.c_str());

	auto r = fillTemp(std::move(fd), data, mode, owner, tmp.c_str());
	if (r && ::renameat(dirFd, tmp.c_str(), dirFd, name.c_str()) < 0)
		r = failErrno(errno, "rename '%s' to '%s'", tmp.c_str(), name.c_str());
	if (!r) {
		(void)::unlinkat(dirFd, tmp.c_str(), 0); // ours: created with O_EXCL above
		return r;
	}
	// The new file is in place; make the rename itself durable.
	if (::fsync(dirFd) < 0)
		return failErrno(errno, "fsync directory of '%s'", name.c_str());
	return {};
}

Result<void> writeFileAtomic(const std::string& path, std::string_view data, mode_t mode, FileOwner owner)
{
	std::size_t slash = path.rfind('/');
	std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
	std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
	if (!plainName(name))
		return fail("write '%s': not a file path", path.c_str());
	UniqueFd dirFd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (!dirFd)
		return failErrno(errno, "open directory '%s'", dir.c_str());
	auto r = writeFileAtomicAt(dirFd.get(), name, data, mode, owner);
	if (!r)
		return failErrno(r.error().errno_, "%s in '%s'", r.error().what, dir.c_str()); // errno kept
	return {};
}

namespace {

Result<std::string> readOpened(UniqueFd fd, const std::string& shownAs, std::size_t maxBytes)
{
	const char* what = shownAs.c_str();
	struct stat st {};
	if (::fstat(fd.get(), &st) < 0)
		return failErrno(errno, "stat '%s'", what);
	if (!S_ISREG(st.st_mode))
		return fail("'%s' is not a regular file", what);
	if (st.st_size > 0 && static_cast<std::size_t>(st.st_size) > maxBytes)
		return fail("'%s' is larger than %zu bytes", what, maxBytes);
	std::string out;
	char buf[16384];
	while (true) {
		ssize_t n = ::read(fd.get(), buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return failErrno(errno, "read '%s'", what);
		if (n == 0)
			break;
		out.append(buf, static_cast<std::size_t>(n));
		if (out.size() > maxBytes) // a file that grew, or /proc (st_size 0)
			return fail("'%s' is larger than %zu bytes", what, maxBytes);
	}
	return out;
}

constexpr int kReadFlags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;

} // namespace

Result<std::string> readFileLimited(const std::string& path, std::size_t maxBytes)
{
	UniqueFd fd(::open(path.c_str(), kReadFlags));
	if (!fd)
		return failErrno(errno, "open '%s'", path.c_str());
	return readOpened(std::move(fd), path, maxBytes);
}

Result<std::string> readFileLimitedAt(int dirFd, const std::string& name, std::size_t maxBytes, const std::string& shownAs)
{
	UniqueFd fd(::openat(dirFd, name.c_str(), kReadFlags | O_NOFOLLOW));
	if (!fd)
		return failErrno(errno, "open '%s'", shownAs.c_str());
	return readOpened(std::move(fd), shownAs, maxBytes);
}

Result<void> ensureRootDir(const std::string& path, mode_t mode)
{
	if (mkdir(path.c_str(), mode) < 0 && errno != EEXIST)
		return failErrno(errno, "create '%s'", path.c_str());
	// Checked and changed through one fd: what is checked is what is chmod'ed.
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
	if (!fd) {
		if (errno == ENOTDIR || errno == ELOOP)
			return fail("'%s' must be a directory owned by root", path.c_str());
		return failErrno(errno, "open '%s'", path.c_str());
	}
	struct stat st;
	if (::fstat(fd.get(), &st) < 0)
		return failErrno(errno, "stat '%s'", path.c_str());
	if (st.st_uid != 0)
		return fail("'%s' must be a directory owned by root", path.c_str());
	if ((st.st_mode & 07777) != mode && ::fchmod(fd.get(), mode) < 0)
		return failErrno(errno, "chmod '%s'", path.c_str());
	return {};
}

} // namespace pukaipu
