#include "sync.h"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>

namespace pukaipu {

namespace {

// One sendmsg: LEN bytes of DATA, and FD (if >= 0) as SCM_RIGHTS.
Result<void> sendWithFd(int sock, const void* data, size_t len, int fd, const char* what) noexcept
{
	struct iovec iov { const_cast<void*>(data), len };
	struct msghdr mh {};
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] {};
	if (fd >= 0) {
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len)
		return failErrno(n < 0 ? errno : EPROTO, "%s: send", what);
	return {};
}

} // namespace

Result<void> sendMsg(int sock, const SyncMsg& msg, int fd) noexcept
{
	return sendWithFd(sock, &msg, sizeof(msg), fd, "sync");
}

Result<void> sendFd(int sock, int fd) noexcept
{
	// The name is what runc sends along; receivers (conmon, go-runc's
	// console socket) only take the fd.
	static const char kName[] = "/dev/ptmx";
	return sendWithFd(sock, kName, sizeof(kName) - 1, fd, "console socket");
}

Result<bool> recvMsg(int sock, SyncMsg& msg, UniqueFd* fd) noexcept
{
	struct iovec iov { &msg, sizeof(msg) };
	struct msghdr mh {};
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] {};
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return false;
	if (n < 0)
		return failErrno(errno, "sync: receive");
	for (struct cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int got;
			std::memcpy(&got, CMSG_DATA(c), sizeof(int));
			UniqueFd received(got);
			if (fd)
				*fd = std::move(received); // else closed here: nobody asked for it
		}
	}
	if (n != (ssize_t)sizeof(msg) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
		return failErrno(EPROTO, "sync: short message");
	return true;
}

} // namespace pukaipu
