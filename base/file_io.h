// file_io: whole small files, written so that a reader (or a crash) sees
// either the old content or the new one, never a mix, and a secret is never
// readable by anyone else, not even for a moment.
//
// writeFileAtomic(path, data, mode):
//   1. open the directory (O_DIRECTORY|O_CLOEXEC);
//   2. create a temp file next to the target: ".NAME.tmp-<random>", with
//      O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC and mode (mode & 0600), so it is
//      never wider than the final mode and O_EXCL refuses anything already at
//      that name (a planted symlink is never followed, nor removed);
//   3. fchown (when asked), then fchmod to `mode` — before any byte is written;
//   4. write everything, fsync, close (close errors count);
//   5. renameat over the target (a symlink AT the target is replaced, never
//      followed), then fsync the directory so the rename survives a crash.
// On any failure after step 2 the temp file is unlinked and the old target is
// untouched. Files are owned by the caller's euid/egid (root, for pukaipu)
// unless `owner` says otherwise. Serialize writers of one target with a lock
// (pukaipu holds flock on /var/lib/pukaipu/.lock); each writer still gets its
// own temp name, so even unlocked writers cannot corrupt each other.
#pragma once

#include <string>
#include <string_view>
#include <sys/types.h>

#include "base/error.h"

namespace pukaipu {

struct FileOwner {
	uid_t uid = static_cast<uid_t>(-1); // -1: leave as created (the caller's euid)
	gid_t gid = static_cast<gid_t>(-1);
};

[[nodiscard]] Result<void> writeFileAtomic(const std::string& path, std::string_view data, mode_t mode,
	FileOwner owner = {});

// The same inside an already opened directory (e.g. one reached safely with
// openat2), for `name` without '/'. `tempName`, when given, is used instead of
// a random one (it must not exist); tests use it to plant things there.
[[nodiscard]] Result<void> writeFileAtomicAt(int dirFd, const std::string& name, std::string_view data, mode_t mode,
	FileOwner owner = {}, const char* tempName = nullptr);

// Creates `path` if missing and insists it is a directory owned by root (not
// a symlink), with exactly `mode`. For pukaipu's own directories.
[[nodiscard]] Result<void> ensureRootDir(const std::string& path, mode_t mode);

// The one bounded reader: a whole regular file of at most maxBytes, opened
// O_CLOEXEC|O_NOCTTY|O_NONBLOCK (a FIFO or a device at that path can
// neither hang us nor be read; /proc and /sys files are regular and read
// to their end). Errors: "open 'P': errno", "'P' is not a regular file",
// "'P' is larger than N bytes".
[[nodiscard]] Result<std::string> readFileLimited(const std::string& path, std::size_t maxBytes = 1 << 20);
// The same for `name` inside an open directory, never following a symlink
// at `name` itself (O_NOFOLLOW); `shownAs` names it in errors.
[[nodiscard]] Result<std::string> readFileLimitedAt(int dirFd, const std::string& name, std::size_t maxBytes,
	const std::string& shownAs);

} // namespace pukaipu
