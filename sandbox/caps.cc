#include "caps.h"

#include <cap-ng.h>
#include <cerrno>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace pukaipu {

bool hasAnyCapability() noexcept
{
	// Ask the kernel directly rather than libcap-ng's cached view.
	struct __user_cap_header_struct hdr { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] {};
	if (syscall(SYS_capget, &hdr, data) < 0)
		return true;
	for (const auto& d : data)
		if (d.effective || d.permitted || d.inheritable)
			return true;
	for (int cap = 0; cap <= CAP_LAST_CAP + 32; cap++) {
		int b = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
		if (b < 0)
			break; // past the kernel's last capability
		if (b > 0)
			return true;
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) > 0)
			return true;
	}
	return false;
}

Result<void> dropAllCapabilities() noexcept
{
	capng_clear(CAPNG_SELECT_ALL);
	// Order inside capng_apply: bounding set first (needs CAP_SETPCAP, which
	// we still hold), then ambient, then the effective/permitted/inheritable sets.
	if (capng_apply(CAPNG_SELECT_ALL) != 0)
		return failErrno(errno ? errno : EPERM, "drop capabilities");
	if (hasAnyCapability())
		die("a capability survived dropAllCapabilities()");
	return {};
}

} // namespace pukaipu
