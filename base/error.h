// Error and Result: how every fallible step of pukaipu reports failure.
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

	// The same failure seen from further up: "CONTEXT: what", errno kept
	// (crun's crun_error_wrap). Never format message() into a new Error:
	// that loses the errno and prints strerror twice.
	[[nodiscard]] Error wrap(const char* fmt, ...) const __attribute__((format(printf, 2, 3)));
};
static_assert(std::is_trivially_copyable_v<Error>);

template <typename T>
using Result = tl::expected<T, Error>;

// Builds an Error without allocating (vsnprintf into the fixed buffer), so it
// is safe in the child between clone3 and execve.
[[nodiscard]] Error makeError(int err, const char* fmt, ...)
	__attribute__((format(printf, 2, 3)));

// An Error someone else made, returned as it is (the conditional case TRY
// cannot express: "ENOENT is fine, anything else is an error").
[[nodiscard]] inline tl::unexpected<Error> failWith(const Error& e)
{
	return tl::unexpected<Error>(e);
}

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

// Early return of a Result's error, the only way errors travel up:
//   TRY(v, expr);           declares v (a Result; use *v), returns expr's error
//   TRYV(expr);             the same for Result<void>
//   TRY_CTX(v, expr, ...);  returns the error wrapped in a printf-style context
//   TRYV_CTX(expr, ...);
#define TRY(var, expr) \
	auto var = (expr); \
	if (!var) \
	return tl::unexpected(var.error())
#define TRYV(expr) \
	do { \
		auto r_ = (expr); \
		if (!r_) \
			return tl::unexpected(r_.error()); \
	} while (0)
#define TRY_CTX(var, expr, ...) \
	auto var = (expr); \
	if (!var) \
	return tl::unexpected(var.error().wrap(__VA_ARGS__))
#define TRYV_CTX(expr, ...) \
	do { \
		auto r_ = (expr); \
		if (!r_) \
			return tl::unexpected(r_.error().wrap(__VA_ARGS__)); \
	} while (0)
