#include "base/sysutil.h"

#include <cerrno>
#include <ctime>
#include <sys/stat.h>
#include <unistd.h>

namespace pukaipu {

long long monotonicMs() noexcept
{
	timespec ts {};
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

std::string nowIso()
{
	char buf[32];
	std::time_t t = std::time(nullptr);
	struct tm tm;
	gmtime_r(&t, &tm);
	std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
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
