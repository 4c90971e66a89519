// UniqueFd: the only owner of a file descriptor. Move-only; closes on
// destruction. A close() that fails with EBADF means some code closed an fd it
// did not own — in a sandbox that is a bug that may leak a host directory into
// the container, so it aborts (as Chromium's sandbox does).
#pragma once

#include <cerrno>
#include <unistd.h>

#include "base/error.h"

namespace pukaipu {

class UniqueFd {
public:
	UniqueFd() = default;
	explicit UniqueFd(int fd) noexcept : fd_(fd) {}
	UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
	UniqueFd& operator=(UniqueFd&& o) noexcept
	{
		if (this != &o)
			reset(o.release());
		return *this;
	}
	UniqueFd(const UniqueFd&) = delete;
	UniqueFd& operator=(const UniqueFd&) = delete;
	~UniqueFd() { reset(); }

	[[nodiscard]] int get() const noexcept { return fd_; }
	[[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
	explicit operator bool() const noexcept { return valid(); }

	// Gives up ownership without closing.
	[[nodiscard]] int release() noexcept
	{
		int fd = fd_;
		fd_ = -1;
		return fd;
	}

	void reset(int fd = -1) noexcept
	{
		if (fd_ >= 0 && ::close(fd_) < 0 && errno == EBADF)
			die("close() of an fd we did not own (EBADF)");
		fd_ = fd;
	}

private:
	int fd_ = -1;
};

} // namespace pukaipu
