#include "base/error.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace pukaipu {

namespace {
Error vmake(int err, const char* fmt, va_list ap)
{
	Error e;
	e.errno_ = err;
	std::vsnprintf(e.what, sizeof(e.what), fmt, ap);
	return e;
}
} // namespace

std::string Error::message() const
{
	std::string s(what, strnlen(what, sizeof(what)));
	if (errno_ != 0) {
		s += ": ";
		s += std::strerror(errno_);
	}
	return s;
}

Error Error::wrap(const char* fmt, ...) const
{
	char ctx[sizeof(what)];
	va_list ap;
	va_start(ap, fmt);
	std::vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	Error e;
	e.errno_ = errno_;
	// Truncated at sizeof(what) like every Error (the return value is checked
	// so the compiler knows truncation is meant).
	if (std::snprintf(e.what, sizeof(e.what), "%s: %.*s", ctx, (int)strnlen(what, sizeof(what)), what) < 0)
		e.what[0] = '\0';
	return e;
}

Error makeError(int err, const char* fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	Error e = vmake(err, fmt, ap);
	va_end(ap);
	return e;
}

tl::unexpected<Error> fail(const char* fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	Error e = vmake(0, fmt, ap);
	va_end(ap);
	return tl::unexpected<Error>(e);
}

tl::unexpected<Error> failErrno(int err, const char* fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	Error e = vmake(err, fmt, ap);
	va_end(ap);
	return tl::unexpected<Error>(e);
}

void die(const char* what) noexcept
{
	// write(2) only: this may run in the child after clone3.
	static const char prefix[] = "pukaipu: fatal: ";
	(void)!::write(2, prefix, sizeof(prefix) - 1);
	(void)!::write(2, what, strlen(what));
	(void)!::write(2, "\n", 1);
	std::abort();
}

} // namespace pukaipu
