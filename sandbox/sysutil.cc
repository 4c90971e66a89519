#include "sysutil.h"

#include <cerrno>
#include <ctime>
#include <sys/stat.h>

namespace pukaipu {

long long monotonicMs() noexcept
{
	timespec ts {};
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

Result<void> makeDirs(const std::string& path, mode_t mode)
{
	for (std::size_t end = 1; end <= path.size(); end++) {
		if (end < path.size() && path[end] != '/')
			continue;
		const std::string part = path.substr(0, end);
		if (mkdir(part.c_str(), mode) < 0 && errno != EEXIST)
			return failErrno(errno, "create '%s'", part.c_str());
	}
	return {};
}

} // namespace pukaipu
