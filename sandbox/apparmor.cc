#include "apparmor.h"

#include <cerrno>
#include <sys/apparmor.h>

#include "base/file_io.h"

namespace pukaipu {

namespace {
// The kernel lists loaded profiles as "NAME (MODE)" lines.
bool profileLoaded(const std::string& profile)
{
	auto list = readFileLimited("/sys/kernel/security/apparmor/profiles", 16 << 20);
	if (!list)
		return false;
	const std::string want = profile + " (";
	for (size_t at = 0; at < list->size();) {
		size_t nl = list->find('\n', at);
		if (list->compare(at, want.size(), want) == 0)
			return true;
		at = nl == std::string::npos ? list->size() : nl + 1;
	}
	return false;
}
} // namespace

Result<AppArmorPolicy> parseAppArmorPolicy(const std::string& s)
{
	if (s == "required")
		return AppArmorPolicy::Required;
	if (s == "optional")
		return AppArmorPolicy::Optional;
	return fail("apparmor policy '%s': expected 'required' or 'optional'", s.c_str());
}

Result<bool> checkAppArmor(const std::string& profile, AppArmorPolicy policy, std::string& warning)
{
	if (profile.empty())
		return false;
	bool enabled = aa_is_enabled() == 1;
	const char* problem = nullptr;
	if (!enabled)
		problem = "AppArmor is not enabled on this host";
	else if (!profileLoaded(profile))
		problem = "the profile is not loaded (apparmor_parser -r it first)";
	if (!problem)
		return true;
	if (policy == AppArmorPolicy::Required)
		return fail("apparmor profile '%s': %s; refusing to start (policy 'required')", profile.c_str(),
			    problem);
	warning = "apparmor profile '" + profile + "': " + problem + "; running unconfined (policy 'optional')";
	return false;
}

Result<void> changeProfileOnExec(const char* profile) noexcept
{
	if (aa_change_onexec(profile) < 0)
		return failErrno(errno, "apparmor: change profile on exec to '%s'", profile);
	return {};
}

} // namespace pukaipu
