// seccomp cache: compiled BPF on disk, keyed by profile, libseccomp version
// and architecture; written atomically, verified on read.
#include "seccomp_profile.h"

#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include "seccomp_tables.h"
#include "unique_fd.h"

namespace pukaipu {

using namespace seccomp_detail;

// ---------------------------------------------------------------- cache

namespace {

using Digest = std::array<unsigned char, 32>;

struct MdCtxDeleter {
	void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};

Result<Digest> sha256(std::initializer_list<std::string_view> parts)
{
	std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
	Digest d {};
	unsigned len = 0;
	bool ok = ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1;
	for (std::string_view part : parts)
		ok = ok && EVP_DigestUpdate(ctx.get(), part.data(), part.size()) == 1;
	ok = ok && EVP_DigestFinal_ex(ctx.get(), d.data(), &len) == 1 && len == d.size();
	if (!ok)
		return fail("seccomp cache: sha256 failed");
	return d;
}

// Length-prefixed fields, so no two different profiles serialize alike.
void putString(std::string& out, std::string_view s)
{
	out += std::to_string(s.size());
	out += ':';
	out += s;
}

void putNumber(std::string& out, uint64_t v)
{
	out += std::to_string(v);
	out += ';';
}

void putOptional(std::string& out, std::optional<uint32_t> v)
{
	if (v)
		putNumber(out, *v);
	else
		out += "-;";
}

// Bump when compileSeccomp's output for the same profile changes, so old
// cache entries stop matching.
constexpr std::string_view kCompilerId = "pukaipu-seccomp-compiler-1";

std::string cacheKeyMaterial(const SeccompProfile& p)
{
	std::string out;
	putString(out, kCompilerId);
	putString(out, libseccompVersion());
	std::string native = "unknown";
	for (const Named& n : kArches)
		if (n.value == seccomp_arch_native())
			native = n.name;
	putString(out, native);
	putString(out, p.defaultAction);
	putOptional(out, p.defaultErrnoRet);
	putNumber(out, p.architectures.size());
	for (const std::string& a : p.architectures)
		putString(out, a);
	putNumber(out, p.flags.size());
	for (const std::string& f : p.flags)
		putString(out, f);
	putNumber(out, p.syscalls.size());
	for (const SeccompRule& r : p.syscalls) {
		putNumber(out, r.names.size());
		for (const std::string& n : r.names)
			putString(out, n);
		putString(out, r.action);
		putOptional(out, r.errnoRet);
		putNumber(out, r.args.size());
		for (const SeccompArg& a : r.args) {
			putNumber(out, a.index);
			putNumber(out, a.value);
			putNumber(out, a.valueTwo);
			putString(out, a.op);
		}
	}
	return out;
}

// Entry: magic, format, key, instruction count, sha256 over the header so
// far and the BPF, then the BPF. Native byte order: the native arch is part
// of the key.
constexpr char kMagic[8] = { 'P', 'K', 'P', 'S', 'C', 'M', 'P', '\0' };
constexpr uint32_t kFormat = 1;
constexpr size_t kHeaderSize = sizeof(kMagic) + 4 + 32 + 4; // before the checksum
constexpr size_t kEntryPrefix = kHeaderSize + 32;

std::string entryHeader(const Digest& key, uint32_t count)
{
	std::string h(kMagic, sizeof(kMagic));
	h.append(reinterpret_cast<const char*>(&kFormat), 4);
	h.append(reinterpret_cast<const char*>(key.data()), key.size());
	h.append(reinterpret_cast<const char*>(&count), 4);
	return h;
}

std::string_view bytesOf(const std::vector<sock_filter>& bpf)
{
	return { reinterpret_cast<const char*>(bpf.data()), bpf.size() * sizeof(sock_filter) };
}

// Creates the missing components of `path` with 0700.
void makeDirs(const std::string& path)
{
	for (size_t pos = 1; pos <= path.size(); pos++)
		if (pos == path.size() || path[pos] == '/')
			(void)::mkdir(path.substr(0, pos).c_str(), 0700);
}

// The BPF we load into every sandbox comes from here, so only a directory
// that nobody but us can write to is trusted. Returns why not, or nullptr.
const char* openCacheDir(const std::string& dir, UniqueFd* out)
{
	makeDirs(dir);
	UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
	struct stat st;
	if (!fd || ::fstat(fd.get(), &st) < 0)
		return "cannot open it";
	// geteuid() is root in production; comparing with it keeps the cache
	// usable for the unit tests run by a developer.
	if (st.st_uid != ::geteuid())
		return "not owned by us (root)";
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return "group- or other-writable";
	*out = std::move(fd);
	return nullptr;
}

// Returns the cached BPF, or nullopt with *why set ("" when simply absent).
std::optional<std::vector<sock_filter>> readEntry(int dirFd, const std::string& name, const Digest& key,
						  std::string* why)
{
	UniqueFd fd(::openat(dirFd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY));
	if (!fd) {
		*why = errno == ENOENT ? "" : std::string("open: ") + std::strerror(errno);
		return std::nullopt;
	}
	struct stat st;
	constexpr off_t kMaxEntry = kEntryPrefix + BPF_MAXINSNS * sizeof(sock_filter);
	if (::fstat(fd.get(), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < off_t(kEntryPrefix) ||
	    st.st_size > kMaxEntry) {
		*why = "bad size or type";
		return std::nullopt;
	}
	std::string data(static_cast<size_t>(st.st_size), '\0');
	for (size_t done = 0; done < data.size();) {
		ssize_t n = ::pread(fd.get(), data.data() + done, data.size() - done, off_t(done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*why = "short read";
			return std::nullopt;
		}
		done += size_t(n);
	}
	uint32_t count;
	std::memcpy(&count, data.data() + kHeaderSize - 4, 4);
	size_t bpfBytes = data.size() - kEntryPrefix;
	if (count == 0 || bpfBytes != size_t(count) * sizeof(sock_filter) ||
	    data.compare(0, kHeaderSize, entryHeader(key, count)) != 0) {
		*why = "bad header";
		return std::nullopt;
	}
	auto sum = sha256({ std::string_view(data).substr(0, kHeaderSize),
			    std::string_view(data).substr(kEntryPrefix) });
	if (!sum || std::memcmp(sum->data(), data.data() + kHeaderSize, 32) != 0) {
		*why = "checksum mismatch";
		return std::nullopt;
	}
	std::vector<sock_filter> bpf(count);
	std::memcpy(bpf.data(), data.data() + kEntryPrefix, bpfBytes);
	return bpf;
}

bool writeAll(int fd, std::string_view s)
{
	while (!s.empty()) {
		ssize_t n = ::write(fd, s.data(), s.size());
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		s.remove_prefix(size_t(n));
	}
	return true;
}

// mkstemp's contract, relative to the checked directory fd: write a fresh
// file, fsync it, rename it over the entry, so a reader sees the old entry
// or the complete new one, never a half-written one.
const char* writeEntry(int dirFd, const std::string& name, const Digest& key, const std::vector<sock_filter>& bpf)
{
	std::string header = entryHeader(key, static_cast<uint32_t>(bpf.size()));
	auto sum = sha256({ header, bytesOf(bpf) });
	if (!sum)
		return "sha256 failed";
	std::string tmp;
	UniqueFd fd;
	for (int attempt = 0; attempt < 16 && !fd; attempt++) {
		unsigned char rnd[8];
		if (::getrandom(rnd, sizeof(rnd), 0) != ssize_t(sizeof(rnd)))
			return "getrandom failed";
		tmp = ".tmp-";
		for (unsigned char c : rnd)
			tmp += "0123456789abcdef"[c % 16];
		fd.reset(::openat(dirFd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
		if (!fd && errno != EEXIST)
			return "cannot create a temporary file";
	}
	if (!fd)
		return "cannot create a temporary file";
	bool ok = writeAll(fd.get(), header) &&
		  writeAll(fd.get(), std::string_view(reinterpret_cast<const char*>(sum->data()), sum->size())) &&
		  writeAll(fd.get(), bytesOf(bpf)) && ::fsync(fd.get()) == 0;
	fd.reset();
	if (!ok || ::renameat(dirFd, tmp.c_str(), dirFd, name.c_str()) < 0) {
		(void)::unlinkat(dirFd, tmp.c_str(), 0);
		return "cannot write the entry";
	}
	(void)::fsync(dirFd); // make the rename durable; the entry is valid either way
	return nullptr;
}

} // namespace

Result<SeccompProgram> loadOrCompileSeccomp(const SeccompProfile& p, const std::string& cacheDir)
{
	if (cacheDir.empty())
		return compileSeccomp(p);
	// Cache trouble is never fatal: we compile and say why in a warning.
	std::string prefix = "seccomp cache '" + cacheDir + "': ";
	UniqueFd dir;
	if (const char* why = openCacheDir(cacheDir, &dir)) {
		auto prog = compileSeccomp(p);
		if (prog)
			prog->warnings.push_back(prefix + why + ", not using it");
		return prog;
	}
	std::string material = cacheKeyMaterial(p);
	auto key = sha256({ material });
	if (!key)
		return tl::unexpected(key.error());
	std::string name;
	for (unsigned char c : *key) {
		name += "0123456789abcdef"[c >> 4];
		name += "0123456789abcdef"[c & 15];
	}
	name += ".bpf";
	std::string why;
	if (auto bpf = readEntry(dir.get(), name, *key, &why)) {
		auto flags = filterFlags(p);
		if (!flags)
			return tl::unexpected(flags.error());
		SeccompProgram prog;
		prog.bpf = std::move(*bpf);
		prog.flags = *flags;
		prog.warnings = unknownSyscallWarnings(p);
		return prog;
	}
	auto prog = compileSeccomp(p);
	if (!prog)
		return prog;
	if (!why.empty())
		prog->warnings.push_back(prefix + "entry " + name + " was unusable (" + why + "), rebuilt it");
	if (const char* werr = writeEntry(dir.get(), name, *key, prog->bpf))
		prog->warnings.push_back(prefix + werr + ", ignoring");
	return prog;
}


} // namespace pukaipu
