#include "unix_user.h"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/process.h"
#include "base/unique_fd.h"

namespace pukaipu {

namespace {

// The home layout a session expects, created as the user (see makeHomeLayout).
constexpr const char* kHomeDirs[] = { ".config", ".config/qtile", ".config/kitty", ".cache", "Downloads",
				      "brave-profile" };

// The GECOS comment of the users `pukaipu create` makes: how a later run
// recognises its own.
const std::string kUserComment = "pukaipu instance";

// Runs a system tool (useradd, groupadd, userdel); its stderr goes into the
// error message when it fails.
Result<void> runTool(const std::vector<std::string>& argv)
{
	TRY(r, runProgram(argv, false));
	if (r->status == 0)
		return {};
	std::replace(r->output.begin(), r->output.end(), '\n', ' ');
	return fail("%s failed (status %d)%s%s", argv[0].c_str(), r->status, r->output.empty() ? "" : ": ",
		    r->output.c_str());
}

bool uidTaken(uint32_t uid)
{
	return getpwuid(uid) != nullptr || getgrgid(uid) != nullptr;
}

// Makes `rel` below dirFd component by component, never following a
// symlink; false when something that is not a directory is in the way.
bool makeDirsBelow(int dirFd, const std::string& rel)
{
	UniqueFd cur(dup(dirFd));
	bool ok = cur.valid();
	for (size_t a = 0; ok && a < rel.size();) {
		size_t b = rel.find('/', a);
		if (b == std::string::npos)
			b = rel.size();
		std::string comp = rel.substr(a, b - a);
		if (mkdirat(cur.get(), comp.c_str(), 0700) < 0 && errno != EEXIST)
			ok = false;
		cur = UniqueFd(ok ? openat(cur.get(), comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1);
		ok = ok && cur;
		a = b + 1;
	}
	return ok;
}

// Creates the session's directories in the user's home AS THE USER, in a
// child process: a symlink the user planted (~/.config -> /etc) then leads
// only where the user could write anyway, and root never writes into a
// directory the user controls. Components that are symlinks are skipped.
Result<std::vector<std::string>> makeHomeLayout(const std::string& home, uint32_t uid, uint32_t gid)
{
	const std::string what = "create the home layout in '" + home + "'";
	TRY(skipped, runAsUser(uid, gid, what, [&]() -> Result<std::string> {
		umask(077);
		UniqueFd homeFd(open(home.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
		if (!homeFd)
			return failErrno(errno, "open home '%s'", home.c_str());
		std::string lines; // one a directory that could not be made
		for (const char* rel : kHomeDirs)
			if (!makeDirsBelow(homeFd.get(), rel))
				lines += std::string(rel) + "\n";
		return lines;
	}));
	std::vector<std::string> out;
	for (size_t a = 0; a < skipped->size();) {
		size_t b = skipped->find('\n', a);
		out.push_back(skipped->substr(a, b - a));
		a = b + 1;
	}
	return out;
}

// A missing home (an adopted user's): created and handed over through fds,
// inside a parent only root can write. In a parent the user could write, the
// new directory could be swapped for a symlink (to /etc/shadow, say) between
// mkdir and a chown by name; so such a parent is refused.
Result<void> createHome(const std::string& home, uid_t uid, gid_t gid)
{
	const auto slash = home.rfind('/');
	const std::string parent = slash == 0 ? "/" : home.substr(0, slash), name = home.substr(slash + 1);
	if (slash == std::string::npos || name.empty() || name == "." || name == "..")
		return fail("home '%s': not an absolute path to a directory", home.c_str());
	UniqueFd pfd(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	struct stat st;
	if (!pfd || fstat(pfd.get(), &st) < 0)
		return failErrno(errno, "home '%s': parent '%s'", home.c_str(), parent.c_str());
	if (st.st_uid != 0 || (st.st_mode & 022))
		return fail("home '%s' is missing and its parent '%s' is writable by others than root; "
			    "create the home yourself",
			    home.c_str(), parent.c_str());
	if (mkdirat(pfd.get(), name.c_str(), 0700) < 0)
		return failErrno(errno, "create home '%s'", home.c_str());
	UniqueFd fd(openat(pfd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
	if (!fd || fchown(fd.get(), uid, gid) < 0 || fchmod(fd.get(), 0700) < 0)
		return failErrno(errno, "create home '%s'", home.c_str());
	return {};
}

} // namespace

Result<uint32_t> pickUid(const GlobalConfig& g)
{
	for (uint32_t u = g.uids.first; u <= g.uids.last; u++)
		if (!uidTaken(u))
			return u;
	return fail("no free uid left in the range %u-%u", g.uids.first, g.uids.last);
}

Result<UserPlan> planUser(const GlobalConfig& g, const std::string& user, std::optional<uint32_t> wantUid)
{
	UserPlan plan;
	errno = 0;
	if (struct passwd* pw = getpwnam(user.c_str())) {
		if (pw->pw_uid == 0)
			return fail("user '%s' has uid 0: refusing", user.c_str());
		if (!g.uids.contains(pw->pw_uid))
			return fail("user '%s' exists with uid %u, outside the instance range %u-%u: refusing to adopt it",
				    user.c_str(), pw->pw_uid, g.uids.first, g.uids.last);
		if (wantUid && *wantUid != pw->pw_uid)
			return fail("user '%s' exists with uid %u, not %u", user.c_str(), pw->pw_uid, *wantUid);
		plan.uid = pw->pw_uid;
		plan.gid = pw->pw_gid;
		// A user with our comment is one a `create` made and then failed
		// (or crashed) after useradd: still ours, so that `remove
		// --purge-home` can take it away again.
		plan.createdUser = pw->pw_gecos && kUserComment == pw->pw_gecos;
		plan.home = pw->pw_dir;
		return plan;
	}
	if (wantUid && uidTaken(*wantUid))
		return fail("--uid %u: already used by another user or group", *wantUid);
	if (wantUid) {
		plan.uid = *wantUid;
	} else {
		TRY(u, pickUid(g));
		plan.uid = *u;
	}
	plan.gid = plan.uid;
	plan.createdUser = true;
	plan.add = true;
	return plan;
}

Result<std::string> ensureUser(const std::string& user, const UserPlan& plan)
{
	if (!plan.add)
		return plan.home;
	const std::string id = std::to_string(plan.uid);
	TRYV(runTool({ "groupadd", "--gid", id, user }));
	// HOME_MODE=0700: Debian's login.defs would give 0755 (UMASK 022), and
	// the home holds the browser's profile, cookies and downloads.
	auto added = runTool({ "useradd", "--uid", id, "--gid", id, "--home-dir", "/home/" + user, "--create-home",
			       "--key", "HOME_MODE=0700", "--shell", "/usr/sbin/nologin", "--comment", kUserComment,
			       user });
	// Not a group without its user: it would hold the id and the name, and
	// the next create would fail at groupadd.
	if (!added)
		(void)runTool({ "groupdel", user });
	TRYV(added);
	struct passwd* pw = getpwnam(user.c_str());
	if (!pw || pw->pw_uid != plan.uid)
		return fail("useradd did not create '%s' with uid %u", user.c_str(), plan.uid);
	return std::string(pw->pw_dir);
}

Result<std::vector<std::string>> prepareHome(const std::string& home, const std::string& user, uint32_t uid,
					     uint32_t gid)
{
	struct stat st;
	if (lstat(home.c_str(), &st) < 0) {
		if (errno != ENOENT)
			return failErrno(errno, "home '%s'", home.c_str());
		TRYV(createHome(home, uid, gid));
	} else if (!S_ISDIR(st.st_mode) || st.st_uid != uid) {
		return fail("home '%s' must be a directory owned by '%s'", home.c_str(), user.c_str());
	}
	return makeHomeLayout(home, uid, gid);
}

Result<void> deleteUser(const std::string& user)
{
	return runTool({ "userdel", "--remove", user });
}

} // namespace pukaipu
