// unix_user: the Unix user and home of an instance, for `pukaipu create`
// and `pukaipu remove --purge-home`. An existing user in the uid range is
// adopted; otherwise one is added (groupadd + useradd, with our GECOS comment
// so that a later run knows it as ours). The home is checked, made through
// fds when missing, and the session's directories in it are made as the
// user. Runs under the provisioning lock (lockState).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "config.h"

namespace pukaipu {

// Who an instance runs as, decided before the first change.
struct UserPlan {
	uint32_t uid = 0;
	uint32_t gid = 0;
	bool add = false;         // a new user (useradd); else an existing one is adopted
	bool createdUser = false; // pukaipu made it (now or in an earlier, failed create)
	std::string home;         // the adopted user's home; a new user's is known after ensureUser
};

// Adopts `user` if it exists (in the range, not uid 0, with `wantUid` if
// given) or plans a new one with `wantUid` or the lowest free uid.
[[nodiscard]] Result<UserPlan> planUser(const GlobalConfig& g, const std::string& user,
					std::optional<uint32_t> wantUid);

// The uid/gid pukaipu would give a new user: the lowest free in the range.
[[nodiscard]] Result<uint32_t> pickUid(const GlobalConfig& g);

// The planned user: added when plan.add (groupadd + useradd; a failed
// useradd takes the group back). Returns the user's home.
[[nodiscard]] Result<std::string> ensureUser(const std::string& user, const UserPlan& plan);

// The home: made (root-owned parent only) if missing, else it must be a
// directory the user owns; then the session's directories in it, made as
// the user. Returns the ones that could not be made (something is in the way).
[[nodiscard]] Result<std::vector<std::string>> prepareHome(const std::string& home, const std::string& user,
							   uint32_t uid, uint32_t gid);

// userdel --remove: the user and its home.
[[nodiscard]] Result<void> deleteUser(const std::string& user);

} // namespace pukaipu
