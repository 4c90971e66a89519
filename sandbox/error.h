// Error and Result: how every fallible step of the sandbox reports failure.
//
// An Error is trivially copyable on purpose: the child half of a stage runs
// after clone3, where it must not allocate, and sends its Error to the parent
// over the sync socket as plain bytes. The library never prints; the launcher
// formats an Error once, as one line:
//     pukaipu-run: mount '/x' on '/data/home': No such file or directory
#pragma once

#include <cstdarg>
#include <cstddef>
#include <string>
#include <type_traits>

#include <tl/expected.hpp>

namespace pukaipu {

struct Error {
	int errno_ = 0;    // 0 when the failure is not a system call's
	char what[480] {}; // context, e.g. "mount '/x' on '/data/home'"

	// "what: strerror(errno_)", or just "what" when errno_ is 0.
	[[nodiscard]] std::string message() const;
};
static_assert(std::is_trivially_copyable_v<Error>);

template <typename T>
using Result = tl::expected<T, Error>;

// Builds an Error without allocating (vsnprintf into the fixed buffer), so it
// is safe in the child between clone3 and execve.
[[nodiscard]] Error makeError(int err, const char* fmt, ...)
	__attribute__((format(printf, 2, 3)));

// Shorthands for `return fail(...)` and `return failErrno(...)`.
[[nodiscard]] tl::unexpected<Error> fail(const char* fmt, ...)
	__attribute__((format(printf, 1, 2)));
[[nodiscard]] tl::unexpected<Error> failErrno(int err, const char* fmt, ...)
	__attribute__((format(printf, 2, 3)));

// "Cannot happen" and re-checks after a privilege drop: never an Error.
[[noreturn]] void die(const char* what) noexcept;
#define PUKAIPU_CHECK(cond) \
	do { \
		if (!(cond)) \
			::pukaipu::die("check failed: " #cond " at " __FILE__); \
	} while (0)

} // namespace pukaipu
