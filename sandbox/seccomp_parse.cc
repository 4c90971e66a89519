// seccomp profiles: OCI/Docker JSON → SeccompProfile. The only place in
// the seccomp code where (nlohmann) exceptions are caught.
#include "seccomp_profile.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <string_view>

#include <nlohmann/json.hpp>
#include "seccomp_tables.h"
#include "unique_fd.h"

namespace pukaipu {

using namespace seccomp_detail;

namespace {

using nlohmann::json;

// ---------------------------------------------------------------- parsing

// `where` is a JSON path ("linux.seccomp"), or a file name followed by ':'
// ("/etc/p.json:") after which the keys start: "/etc/p.json: syscalls[2]".
std::string joinKey(const std::string& where, std::string_view key)
{
	if (where.empty())
		return std::string(key);
	return where + (where.back() == ':' ? " " : ".") + std::string(key);
}

std::string joinIndex(const std::string& where, size_t i)
{
	return where + "[" + std::to_string(i) + "]";
}

std::string shown(const std::string& where)
{
	return !where.empty() && where.back() == ':' ? where.substr(0, where.size() - 1) : where;
}

std::string describe(const json& v)
{
	return v.is_number() ? v.dump() : std::string(v.type_name());
}

Result<void> checkKeys(const json& obj, const std::string& where,
		       std::initializer_list<std::string_view> known)
{
	if (!obj.is_object())
		return fail("%s: expected an object, got %s", shown(where).c_str(), describe(obj).c_str());
	for (const auto& [key, value] : obj.items()) {
		std::string path = joinKey(where, key);
		if (key == "includes" || key == "excludes" || key == "archMap")
			return fail("%s: Docker's '%s' is not supported, flatten the profile to OCI form",
				    path.c_str(), key.c_str());
		if (key == "listenerPath" || key == "listenerMetadata")
			return fail("%s: seccomp notify is not supported", path.c_str());
		bool ok = false;
		for (std::string_view k : known)
			ok = ok || key == k;
		if (!ok)
			return fail("%s: unknown key", path.c_str());
	}
	return {};
}

Result<std::string> getString(const json& v, const std::string& path)
{
	if (!v.is_string())
		return fail("%s: expected a string, got %s", path.c_str(), describe(v).c_str());
	return v.get_ref<const std::string&>();
}

Result<uint64_t> getUnsigned(const json& v, const std::string& path, uint64_t max)
{
	uint64_t x;
	if (v.is_number_unsigned())
		x = v.get<uint64_t>();
	else if (v.is_number_integer() && v.get<int64_t>() >= 0)
		x = static_cast<uint64_t>(v.get<int64_t>());
	else
		return fail("%s: expected an unsigned integer, got %s", path.c_str(), describe(v).c_str());
	if (x > max)
		return fail("%s: %llu is out of range (max %llu)", path.c_str(),
			    static_cast<unsigned long long>(x), static_cast<unsigned long long>(max));
	return x;
}

// null is accepted as "absent": Go marshals nil slices that way.
Result<std::vector<std::string>> getStrings(const json& v, const std::string& path)
{
	std::vector<std::string> out;
	if (v.is_null())
		return out;
	if (!v.is_array())
		return fail("%s: expected an array of strings, got %s", path.c_str(), describe(v).c_str());
	for (size_t i = 0; i < v.size(); i++) {
		auto s = getString(v[i], joinIndex(path, i));
		if (!s)
			return tl::unexpected(s.error());
		out.push_back(std::move(*s));
	}
	return out;
}

Result<void> checkAction(const std::string& action, std::optional<uint32_t> ret,
			 const std::string& actionPath, const std::string& retPath)
{
	uint32_t unused;
	const char* why = actionValue(action, ret, &unused);
	if (!why)
		return {};
	if (std::strcmp(why, "unknown action") == 0)
		return fail("%s: unknown action '%s'", actionPath.c_str(), action.c_str());
	return fail("%s: %s", retPath.c_str(), why);
}

Result<SeccompArg> parseArg(const json& j, const std::string& where)
{
	if (auto ok = checkKeys(j, where, { "index", "value", "valueTwo", "op" }); !ok)
		return tl::unexpected(ok.error());
	for (const char* required : { "index", "value", "op" })
		if (!j.contains(required))
			return fail("%s: missing", joinKey(where, required).c_str());
	SeccompArg a;
	auto index = getUnsigned(j["index"], joinKey(where, "index"), 5);
	if (!index)
		return tl::unexpected(index.error());
	a.index = static_cast<unsigned>(*index);
	auto value = getUnsigned(j["value"], joinKey(where, "value"), UINT64_MAX);
	if (!value)
		return tl::unexpected(value.error());
	a.value = *value;
	if (j.contains("valueTwo")) {
		auto two = getUnsigned(j["valueTwo"], joinKey(where, "valueTwo"), UINT64_MAX);
		if (!two)
			return tl::unexpected(two.error());
		a.valueTwo = *two;
	}
	auto op = getString(j["op"], joinKey(where, "op"));
	if (!op)
		return tl::unexpected(op.error());
	if (!lookup(kOps, *op))
		return fail("%s: unknown operator '%s'", joinKey(where, "op").c_str(), op->c_str());
	a.op = std::move(*op);
	return a;
}

Result<SeccompRule> parseRule(const json& j, const std::string& where)
{
	// "comment" is accepted and ignored: our profiles keep the reason for
	// a rule next to it, and Docker's profiles use it the same way.
	if (auto ok = checkKeys(j, where, { "names", "action", "errnoRet", "args", "comment" }); !ok)
		return tl::unexpected(ok.error());
	for (const char* required : { "names", "action" })
		if (!j.contains(required))
			return fail("%s: missing", joinKey(where, required).c_str());
	if (j.contains("comment")) {
		if (auto c = getString(j["comment"], joinKey(where, "comment")); !c)
			return tl::unexpected(c.error());
	}
	SeccompRule r;
	auto names = getStrings(j["names"], joinKey(where, "names"));
	if (!names)
		return tl::unexpected(names.error());
	if (names->empty())
		return fail("%s: must not be empty", joinKey(where, "names").c_str());
	for (size_t i = 0; i < names->size(); i++)
		if ((*names)[i].empty())
			return fail("%s: empty syscall name", joinIndex(joinKey(where, "names"), i).c_str());
	r.names = std::move(*names);
	auto action = getString(j["action"], joinKey(where, "action"));
	if (!action)
		return tl::unexpected(action.error());
	r.action = std::move(*action);
	if (j.contains("errnoRet")) {
		auto ret = getUnsigned(j["errnoRet"], joinKey(where, "errnoRet"), UINT32_MAX);
		if (!ret)
			return tl::unexpected(ret.error());
		r.errnoRet = static_cast<uint32_t>(*ret);
	}
	if (auto ok = checkAction(r.action, r.errnoRet, joinKey(where, "action"), joinKey(where, "errnoRet")); !ok)
		return tl::unexpected(ok.error());
	if (j.contains("args") && !j["args"].is_null()) {
		const json& args = j["args"];
		std::string path = joinKey(where, "args");
		if (!args.is_array())
			return fail("%s: expected an array, got %s", path.c_str(), describe(args).c_str());
		for (size_t i = 0; i < args.size(); i++) {
			auto a = parseArg(args[i], joinIndex(path, i));
			if (!a)
				return tl::unexpected(a.error());
			r.args.push_back(std::move(*a));
		}
		size_t bad = 0;
		if (const char* why = argsProblem(r.args, &bad))
			return fail("%s: %s", joinKey(joinIndex(path, bad), "index").c_str(), why);
	}
	return r;
}

Result<SeccompProfile> parseProfile(const json& j, const std::string& where)
{
	if (auto ok = checkKeys(j, where, { "defaultAction", "defaultErrnoRet", "architectures",
					    "flags", "syscalls", "comment" });
	    !ok)
		return tl::unexpected(ok.error());
	SeccompProfile p;
	if (!j.contains("defaultAction"))
		return fail("%s: missing", joinKey(where, "defaultAction").c_str());
	auto def = getString(j["defaultAction"], joinKey(where, "defaultAction"));
	if (!def)
		return tl::unexpected(def.error());
	p.defaultAction = std::move(*def);
	if (j.contains("defaultErrnoRet")) {
		auto ret = getUnsigned(j["defaultErrnoRet"], joinKey(where, "defaultErrnoRet"), UINT32_MAX);
		if (!ret)
			return tl::unexpected(ret.error());
		p.defaultErrnoRet = static_cast<uint32_t>(*ret);
	}
	if (auto ok = checkAction(p.defaultAction, p.defaultErrnoRet, joinKey(where, "defaultAction"),
				  joinKey(where, "defaultErrnoRet"));
	    !ok)
		return tl::unexpected(ok.error());
	if (j.contains("comment")) {
		if (auto c = getString(j["comment"], joinKey(where, "comment")); !c)
			return tl::unexpected(c.error());
	}
	if (j.contains("architectures")) {
		std::string path = joinKey(where, "architectures");
		auto arches = getStrings(j["architectures"], path);
		if (!arches)
			return tl::unexpected(arches.error());
		for (size_t i = 0; i < arches->size(); i++)
			if (!lookup(kArches, (*arches)[i]))
				return fail("%s: unknown architecture '%s'", joinIndex(path, i).c_str(),
					    (*arches)[i].c_str());
		p.architectures = std::move(*arches);
	}
	if (j.contains("flags")) {
		std::string path = joinKey(where, "flags");
		auto flags = getStrings(j["flags"], path);
		if (!flags)
			return tl::unexpected(flags.error());
		for (size_t i = 0; i < flags->size(); i++)
			if (!lookup(kFlags, (*flags)[i]))
				return fail("%s: unknown or unsupported flag '%s'", joinIndex(path, i).c_str(),
					    (*flags)[i].c_str());
		p.flags = std::move(*flags);
	}
	if (j.contains("syscalls") && !j["syscalls"].is_null()) {
		const json& calls = j["syscalls"];
		std::string path = joinKey(where, "syscalls");
		if (!calls.is_array())
			return fail("%s: expected an array, got %s", path.c_str(), describe(calls).c_str());
		for (size_t i = 0; i < calls.size(); i++) {
			auto r = parseRule(calls[i], joinIndex(path, i));
			if (!r)
				return tl::unexpected(r.error());
			p.syscalls.push_back(std::move(*r));
		}
	}
	return p;
}

} // namespace

Result<SeccompProfile> parseSeccomp(const nlohmann::json& j, const std::string& where)
{
	// Types are checked before every access, so nothing should throw; this
	// is the edge where a surprise from nlohmann becomes an Error.
	try {
		return parseProfile(j, where);
	} catch (const json::exception& e) {
		return fail("%s: %s", shown(where).c_str(), e.what());
	}
}

Result<SeccompProfile> loadSeccompFile(const std::string& path)
{
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
	if (!fd)
		return failErrno(errno, "seccomp profile '%s'", path.c_str());
	struct stat st;
	if (::fstat(fd.get(), &st) < 0)
		return failErrno(errno, "seccomp profile '%s'", path.c_str());
	// A profile is small; refusing FIFOs and devices keeps /dev/zero from
	// hanging the launcher.
	constexpr off_t kMaxProfile = 4 << 20;
	if (!S_ISREG(st.st_mode) || st.st_size > kMaxProfile)
		return fail("seccomp profile '%s': not a regular file under 4 MiB", path.c_str());
	std::string text;
	char buf[16384];
	for (;;) {
		ssize_t n = ::read(fd.get(), buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return failErrno(errno, "seccomp profile '%s': read", path.c_str());
		if (n == 0)
			break;
		text.append(buf, static_cast<size_t>(n));
	}
	json j;
	try {
		j = json::parse(text);
	} catch (const json::exception& e) {
		// Drop nlohmann's "[json.exception.parse_error.101] " prefix.
		const char* what = e.what();
		if (const char* end = std::strstr(what, "] "))
			what = end + 2;
		return fail("seccomp profile '%s': invalid JSON: %s", path.c_str(), what);
	}
	return parseSeccomp(j, path + ":");
}


} // namespace pukaipu
