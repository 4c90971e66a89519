#include "base/json_fields.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "base/file_io.h"

namespace pukaipu::jsonf {

namespace {

// What was found instead: numbers by value ("got -1" says more than "got
// number"), everything else by its type name ("got array").
std::string describe(const json& v)
{
	return v.is_number() ? v.dump() : std::string(v.type_name());
}

} // namespace

Result<void> onlyKeys(const json& j, const std::string& path, std::initializer_list<const char*> allowed)
{
	if (!j.is_object())
		return fail("%s: expected an object, got %s", shown(path).c_str(), describe(j).c_str());
	for (const auto& [key, value] : j.items()) {
		(void)value;
		bool ok = std::any_of(allowed.begin(), allowed.end(),
				      [&](const char* a) { return key == a; });
		if (!ok)
			return fail("%s: field not supported by pukaipu", sub(path, key.c_str()).c_str());
	}
	return {};
}

Result<void> keys(const json& j, const std::string& path, std::initializer_list<const char*> allowed,
		  std::initializer_list<const char*> required)
{
	TRYV(onlyKeys(j, path, allowed));
	bool all = true;
	for (const char* k : required)
		all = all && j.contains(k);
	if (all)
		return {};
	std::string list;
	size_t n = 0;
	for (const char* k : required) {
		list += n == 0 ? "" : n + 1 == required.size() ? " and " : ", ";
		list += k;
		n++;
	}
	return fail("%s: needs %s", shown(path).c_str(), list.c_str());
}

std::string sub(const std::string& path, const char* key)
{
	if (path.empty())
		return key;
	return path + (path.back() == ':' ? " " : ".") + key;
}

std::string idx(const std::string& path, size_t i)
{
	return path + "[" + std::to_string(i) + "]";
}

std::string shown(const std::string& path)
{
	return !path.empty() && path.back() == ':' ? path.substr(0, path.size() - 1) : path;
}

Result<void> checkArray(const json& j, const std::string& path)
{
	if (!j.is_array())
		return fail("%s: expected an array, got %s", shown(path).c_str(), describe(j).c_str());
	return {};
}

Result<std::string> getString(const json& j, const std::string& path)
{
	if (!j.is_string())
		return fail("%s: expected a string, got %s", shown(path).c_str(), describe(j).c_str());
	return j.get<std::string>();
}

Result<bool> getBool(const json& j, const std::string& path)
{
	if (!j.is_boolean())
		return fail("%s: expected true or false, got %s", shown(path).c_str(), describe(j).c_str());
	return j.get<bool>();
}

Result<uint64_t> getUnsigned(const json& j, const std::string& path, uint64_t max)
{
	if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<int64_t>() >= 0))
		return fail("%s: expected a non-negative integer, got %s", shown(path).c_str(), describe(j).c_str());
	uint64_t v = j.get<uint64_t>();
	if (v > max)
		return fail("%s: %llu is out of range (max %llu)", shown(path).c_str(), static_cast<unsigned long long>(v),
			    static_cast<unsigned long long>(max));
	return v;
}

Result<uint64_t> getU64(const json& j, const std::string& path)
{
	return getUnsigned(j, path, std::numeric_limits<uint64_t>::max());
}

Result<uint32_t> getU32(const json& j, const std::string& path)
{
	TRY(v, getUnsigned(j, path, std::numeric_limits<uint32_t>::max()));
	return static_cast<uint32_t>(*v);
}

Result<std::vector<std::string>> getStrings(const json& j, const std::string& path)
{
	if (!j.is_array())
		return fail("%s: expected an array of strings, got %s", shown(path).c_str(), describe(j).c_str());
	std::vector<std::string> out;
	for (size_t i = 0; i < j.size(); i++) {
		TRY(s, getString(j[i], idx(path, i)));
		out.push_back(std::move(*s));
	}
	return out;
}

Result<json> readFile(const std::string& path, std::size_t maxBytes)
{
	TRY(text, readFileLimited(path, maxBytes));
	try {
		return json::parse(*text);
	} catch (const json::exception& e) {
		// Drop nlohmann's "[json.exception.parse_error.101] " prefix.
		const char* what = e.what();
		if (const char* end = std::strstr(what, "] "))
			what = end + 2;
		return fail("'%s': invalid JSON: %s", path.c_str(), what);
	}
}

} // namespace pukaipu::jsonf
