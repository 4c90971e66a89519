// seccomp cache: compiled BPF on disk, keyed by profile, libseccomp version
// and architecture; written atomically, verified on read.
#include "seccomp_profile.h"

#include <cstdio>
#include <cerrno>
#include <cstring>
#include <string_view>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seccomp_tables.h"
#include "base/file_io.h"
#include "base/sysutil.h"
#include "base/unique_fd.h"

namespace pukaipu {

using namespace seccomp_detail;

// ---------------------------------------------------------------- cache
//
// Why no cryptographic hash: an entry stores its full key material and is
// used only if that matches byte for byte, so a file-name collision can never
// load another profile's filter; the checksum guards against torn writes and
// bit rot in a directory only root can write (whoever can forge an entry
// there is root already). Keeping OpenSSL out of pukaipu-run saves its
// start-up (about 1 ms per container, measured with bench/startup).

namespace {

// FNV-1a, 64 bit.
uint64_t fnv1a(std::initializer_list<std::string_view> parts)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (std::string_view part : parts)
		for (unsigned char c : part) {
			h ^= c;
			h *= 0x100000001b3ULL;
		}
	return h;
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
constexpr std::string_view kCompilerId = "pukaipu-seccomp-compiler-2";

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

// Entry (native byte order; the native arch is part of the key):
//   magic[8] format:u32 checksum:u64 | keyLen:u32 key | warnLen:u32 warnings | count:u32 bpf
// The checksum covers everything after it.
constexpr char kMagic[8] = { 'P', 'K', 'P', 'S', 'C', 'M', 'P', '\0' };
constexpr uint32_t kFormat = 2;
constexpr size_t kChecksumAt = sizeof(kMagic) + 4;
constexpr size_t kBodyAt = kChecksumAt + 8;

void putU32(std::string& out, uint32_t v)
{
	out.append(reinterpret_cast<const char*>(&v), 4);
}

// Reads a u32-length-prefixed field at *pos; false if it does not fit.
bool takeField(std::string_view data, size_t* pos, std::string_view* field)
{
	uint32_t len;
	if (data.size() - *pos < 4)
		return false;
	std::memcpy(&len, data.data() + *pos, 4);
	*pos += 4;
	if (data.size() - *pos < len)
		return false;
	*field = data.substr(*pos, len);
	*pos += len;
	return true;
}

std::string_view bytesOf(const std::vector<sock_filter>& bpf)
{
	return { reinterpret_cast<const char*>(bpf.data()), bpf.size() * sizeof(sock_filter) };
}

// The BPF we load into every sandbox comes from here, so only a directory
// that nobody but us can write to is trusted. Returns why not, or nullptr.
const char* openCacheDir(const std::string& dir, UniqueFd* out)
{
	(void)makeDirs(dir, 0700); // a failure shows as the open below failing
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

struct CachedFilter {
	std::vector<sock_filter> bpf;
	std::vector<std::string> warnings;
};

// Returns the cached filter, or nullopt with *why set ("" when simply absent).
std::optional<CachedFilter> readEntry(int dirFd, const std::string& name, std::string_view key, std::string* why)
{
	constexpr size_t kMaxEntry = 1 << 22;
	auto read = readFileLimitedAt(dirFd, name, kMaxEntry, name);
	if (!read) {
		*why = read.error().errno_ == ENOENT ? "" : read.error().message();
		return std::nullopt;
	}
	const std::string& data = *read;
	if (data.size() < kBodyAt) {
		*why = "bad size";
		return std::nullopt;
	}
	std::string_view v(data);
	uint32_t format;
	uint64_t sum;
	std::memcpy(&format, data.data() + sizeof(kMagic), 4);
	std::memcpy(&sum, data.data() + kChecksumAt, 8);
	if (v.substr(0, sizeof(kMagic)) != std::string_view(kMagic, sizeof(kMagic)) || format != kFormat) {
		*why = "bad header";
		return std::nullopt;
	}
	if (sum != fnv1a({ v.substr(kBodyAt) })) {
		*why = "checksum mismatch";
		return std::nullopt;
	}
	size_t pos = kBodyAt;
	std::string_view storedKey, warnings;
	uint32_t count = 0;
	if (!takeField(v, &pos, &storedKey) || !takeField(v, &pos, &warnings) || v.size() - pos < 4) {
		*why = "bad layout";
		return std::nullopt;
	}
	if (storedKey != key) {
		*why = "key mismatch";
		return std::nullopt;
	}
	std::memcpy(&count, data.data() + pos, 4);
	pos += 4;
	if (count == 0 || count > BPF_MAXINSNS || v.size() - pos != size_t(count) * sizeof(sock_filter)) {
		*why = "bad instruction count";
		return std::nullopt;
	}
	CachedFilter out;
	out.bpf.resize(count);
	std::memcpy(out.bpf.data(), data.data() + pos, v.size() - pos);
	for (size_t at = 0; at < warnings.size();) {
		size_t nl = warnings.find('\n', at);
		out.warnings.emplace_back(warnings.substr(at, nl - at));
		at = nl == std::string_view::npos ? warnings.size() : nl + 1;
	}
	return out;
}

// Through the one atomic writer (base/file_io.h): a reader sees the old
// entry or the complete new one, never a half-written one.
const char* writeEntry(int dirFd, const std::string& name, std::string_view key, const SeccompProgram& prog)
{
	std::string body;
	putU32(body, static_cast<uint32_t>(key.size()));
	body += key;
	std::string warnings;
	for (const auto& w : prog.warnings)
		warnings += (warnings.empty() ? "" : "\n") + w;
	putU32(body, static_cast<uint32_t>(warnings.size()));
	body += warnings;
	putU32(body, static_cast<uint32_t>(prog.bpf.size()));
	body += bytesOf(prog.bpf);
	uint64_t sum = fnv1a({ body });
	std::string header(kMagic, sizeof(kMagic));
	putU32(header, kFormat);
	header.append(reinterpret_cast<const char*>(&sum), 8);
	if (!writeFileAtomicAt(dirFd, name, header + body, 0600))
		return "cannot write the entry";
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
	char name[32];
	std::snprintf(name, sizeof(name), "%016llx.bpf", (unsigned long long)fnv1a({ material }));
	std::string why;
	if (auto hit = readEntry(dir.get(), name, material, &why)) {
		TRY(flags, filterFlags(p));
		SeccompProgram prog;
		prog.bpf = std::move(hit->bpf);
		prog.flags = *flags;
		prog.warnings = std::move(hit->warnings); // computed when the entry was written
		return prog;
	}
	auto prog = compileSeccomp(p);
	if (!prog)
		return prog;
	const char* werr = writeEntry(dir.get(), name, material, *prog);
	if (!why.empty())
		prog->warnings.push_back(prefix + "entry " + name + " was unusable (" + why + "), rebuilt it");
	if (werr)
		prog->warnings.push_back(prefix + werr + ", ignoring");
	return prog;
}


} // namespace pukaipu
