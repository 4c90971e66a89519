// seccomp profiles: OCI/Docker JSON → SeccompProfile. The only place in
// the seccomp code where (nlohmann) exceptions are caught.
#include "seccomp_profile.h"

#include <cerrno>
#include <cstring>


#include <nlohmann/json.hpp>
#include "base/json_fields.h"
#include "seccomp_tables.h"

namespace pukaipu {

using namespace seccomp_detail;
using namespace jsonf;

namespace {

// ---------------------------------------------------------------- parsing

// Docker's extensions get a message that says what to do instead of the
// generic "field not supported".
Result<void> checkKeys(const json& obj, const std::string& where, std::initializer_list<const char*> known)
{
	for (const char* key : { "includes", "excludes", "archMap" })
		if (obj.contains(key))
			return fail("%s: Docker's '%s' is not supported, flatten the profile to OCI form",
				    sub(where, key).c_str(), key);
	for (const char* key : { "listenerPath", "listenerMetadata" })
		if (obj.contains(key))
			return fail("%s: seccomp notify is not supported", sub(where, key).c_str());
	return onlyKeys(obj, where, known);
}

// null is accepted as "absent": Go marshals nil slices that way.
Result<std::vector<std::string>> getStringsOrNull(const json& v, const std::string& path)
{
	if (v.is_null())
		return std::vector<std::string> {};
	return getStrings(v, path);
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
	TRYV(checkKeys(j, where, { "index", "value", "valueTwo", "op" }));
	for (const char* required : { "index", "value", "op" })
		if (!j.contains(required))
			return fail("%s: missing", sub(where, required).c_str());
	SeccompArg a;
	TRY(index, getUnsigned(j["index"], sub(where, "index"), 5));
	a.index = static_cast<unsigned>(*index);
	TRY(value, getU64(j["value"], sub(where, "value")));
	a.value = *value;
	if (j.contains("valueTwo")) {
		TRY(two, getU64(j["valueTwo"], sub(where, "valueTwo")));
		a.valueTwo = *two;
	}
	TRY(op, getString(j["op"], sub(where, "op")));
	if (!lookup(kOps, *op))
		return fail("%s: unknown operator '%s'", sub(where, "op").c_str(), op->c_str());
	a.op = std::move(*op);
	return a;
}

Result<SeccompRule> parseRule(const json& j, const std::string& where)
{
	// "comment" is accepted and ignored: our profiles keep the reason for
	// a rule next to it, and Docker's profiles use it the same way.
	TRYV(checkKeys(j, where, { "names", "action", "errnoRet", "args", "comment" }));
	for (const char* required : { "names", "action" })
		if (!j.contains(required))
			return fail("%s: missing", sub(where, required).c_str());
	if (j.contains("comment")) {
		TRY(c, getString(j["comment"], sub(where, "comment")));
	}
	SeccompRule r;
	TRY(names, getStringsOrNull(j["names"], sub(where, "names")));
	if (names->empty())
		return fail("%s: must not be empty", sub(where, "names").c_str());
	for (size_t i = 0; i < names->size(); i++)
		if ((*names)[i].empty())
			return fail("%s: empty syscall name", idx(sub(where, "names"), i).c_str());
	r.names = std::move(*names);
	TRY(action, getString(j["action"], sub(where, "action")));
	r.action = std::move(*action);
	if (j.contains("errnoRet")) {
		TRY(ret, getU32(j["errnoRet"], sub(where, "errnoRet")));
		r.errnoRet = *ret;
	}
	TRYV(checkAction(r.action, r.errnoRet, sub(where, "action"), sub(where, "errnoRet")));
	if (j.contains("args") && !j["args"].is_null()) {
		std::string path = sub(where, "args");
		TRY(args, getArrayOf(j["args"], path, parseArg));
		r.args = std::move(*args);
		size_t bad = 0;
		if (const char* why = argsProblem(r.args, &bad))
			return fail("%s: %s", sub(idx(path, bad), "index").c_str(), why);
	}
	return r;
}

Result<SeccompProfile> parseProfile(const json& j, const std::string& where)
{
	TRYV(checkKeys(j, where, { "defaultAction", "defaultErrnoRet", "architectures", "flags", "syscalls", "comment" }));
	SeccompProfile p;
	if (!j.contains("defaultAction"))
		return fail("%s: missing", sub(where, "defaultAction").c_str());
	TRY(def, getString(j["defaultAction"], sub(where, "defaultAction")));
	p.defaultAction = std::move(*def);
	if (j.contains("defaultErrnoRet")) {
		TRY(ret, getU32(j["defaultErrnoRet"], sub(where, "defaultErrnoRet")));
		p.defaultErrnoRet = *ret;
	}
	TRYV(checkAction(p.defaultAction, p.defaultErrnoRet, sub(where, "defaultAction"),
			 sub(where, "defaultErrnoRet")));
	if (j.contains("comment")) {
		TRY(c, getString(j["comment"], sub(where, "comment")));
	}
	if (j.contains("architectures")) {
		std::string path = sub(where, "architectures");
		TRY(arches, getStringsOrNull(j["architectures"], path));
		for (size_t i = 0; i < arches->size(); i++)
			if (!lookup(kArches, (*arches)[i]))
				return fail("%s: unknown architecture '%s'", idx(path, i).c_str(), (*arches)[i].c_str());
		p.architectures = std::move(*arches);
	}
	if (j.contains("flags")) {
		std::string path = sub(where, "flags");
		TRY(flags, getStringsOrNull(j["flags"], path));
		for (size_t i = 0; i < flags->size(); i++)
			if (!lookup(kFlags, (*flags)[i]))
				return fail("%s: unknown or unsupported flag '%s'", idx(path, i).c_str(),
					    (*flags)[i].c_str());
		p.flags = std::move(*flags);
	}
	if (j.contains("syscalls") && !j["syscalls"].is_null()) {
		TRY(calls, getArrayOf(j["syscalls"], sub(where, "syscalls"), parseRule));
		p.syscalls = std::move(*calls);
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

Result<nlohmann::json> readSeccompFile(const std::string& path)
{
	// A profile is small; the bounded reader refuses FIFOs and devices, so
	// /dev/zero cannot hang the launcher.
	TRY_CTX(j, jsonf::readFile(path, kMaxProfileBytes), "seccomp profile");
	TRYV(parseSeccomp(*j, path + ":")); // every field checked, errors name the file
	return std::move(*j);
}

Result<SeccompProfile> loadSeccompFile(const std::string& path)
{
	TRY_CTX(j, jsonf::readFile(path, kMaxProfileBytes), "seccomp profile");
	return parseSeccomp(*j, path + ":");
}

} // namespace pukaipu
