// handle: a C library's object owned by std::unique_ptr with that library's
// free function, e.g. Handle<nl_sock, nl_socket_free>, Handle<BIO, BIO_free_all>.
#pragma once

#include <memory>

namespace pukaipu {

template <auto Free>
struct Freer {
	template <typename T>
	void operator()(T* p) const noexcept
	{
		Free(p);
	}
};

template <typename T, auto Free>
using Handle = std::unique_ptr<T, Freer<Free>>;

} // namespace pukaipu
