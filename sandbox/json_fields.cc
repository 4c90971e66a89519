#include "json_fields.h"

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <limits>

namespace pukaipu::jsonf {

Result<void> onlyKeys(const json& j, const std::string& path, std::initializer_list<const char*> allowed)
{
	if (!j.is_object())
		return fail("%s: expected an object", path.c_str());
	for (const auto& [key, value] : j.items()) {
		(void)value;
		bool ok = std::any_of(allowed.begin(), allowed.end(),
				      [&](const char* a) { return key == a; });
		if (!ok)
			return fail("%s%s%s: field not supported by pukaipu", path.c_str(),
				    path.empty() ? "" : ".", key.c_str());
	}
	return {};
}

std::string sub(const std::string& path, const char* key)
{
	return path.empty() ? std::string(key) : path + "." + key;
}

std::string idx(const std::string& path, size_t i)
{
	return path + "[" + std::to_string(i) + "]";
}

Result<std::string> getString(const json& j, const std::string& path)
{
	if (!j.is_string())
		return fail("%s: expected a string", path.c_str());
	return j.get<std::string>();
}

Result<bool> getBool(const json& j, const std::string& path)
{
	if (!j.is_boolean())
		return fail("%s: expected true or false", path.c_str());
	return j.get<bool>();
}

Result<uint64_t> getU64(const json& j, const std::string& path)
{
	if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<int64_t>() >= 0))
		return fail("%s: expected a non-negative integer", path.c_str());
	return j.get<uint64_t>();
}

Result<uint32_t> getU32(const json& j, const std::string& path)
{
	auto v = getU64(j, path);
	if (!v)
		return tl::unexpected(v.error());
	if (*v > std::numeric_limits<uint32_t>::max())
		return fail("%s: %llu does not fit in 32 bits", path.c_str(), (unsigned long long)*v);
	return static_cast<uint32_t>(*v);
}

Result<std::vector<std::string>> getStrings(const json& j, const std::string& path)
{
	if (!j.is_array())
		return fail("%s: expected an array of strings", path.c_str());
	std::vector<std::string> out;
	for (size_t i = 0; i < j.size(); i++) {
		auto s = getString(j[i], idx(path, i));
		if (!s)
			return tl::unexpected(s.error());
		out.push_back(std::move(*s));
	}
	return out;
}

Result<json> readFile(const std::string& path)
{
	std::ifstream in(path);
	if (!in)
		return failErrno(errno, "'%s'", path.c_str());
	try {
		return json::parse(in);
	} catch (const json::exception& e) {
		return fail("%s: invalid JSON: %s", path.c_str(), e.what());
	}
}

} // namespace pukaipu::jsonf
