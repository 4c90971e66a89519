// json_fields: typed accessors for strict JSON parsing. Every error names
// the JSON path of the offending field and what was found there
// ("process.rlimits[0].soft: expected a non-negative integer, got -1"), so a
// sysadmin can fix the file without reading our code. Used by the OCI spec,
// seccomp profiles and pukaipu's own configuration files.
//
// A path is a JSON path ("linux.seccomp"), or a file name followed by ':'
// ("/etc/p.json:") when the document is a file of its own; its keys then
// follow after a space: "/etc/p.json: syscalls[2].action".
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace pukaipu::jsonf {

using json = nlohmann::json;

// Fails on any key of object `j` not in `allowed` (or if `j` is not an object).
[[nodiscard]] Result<void> onlyKeys(const json& j, const std::string& path, std::initializer_list<const char*> allowed);
// onlyKeys, and every key of `required` present: "PATH: needs a, b and c".
[[nodiscard]] Result<void> keys(const json& j, const std::string& path, std::initializer_list<const char*> allowed,
				std::initializer_list<const char*> required);
// "a.b" / "a[3]" / "/etc/p.json: b": JSON paths for messages.
[[nodiscard]] std::string sub(const std::string& path, const char* key);
[[nodiscard]] std::string idx(const std::string& path, size_t i);
// `path` as a message shows the value itself: a file name loses its ':'.
[[nodiscard]] std::string shown(const std::string& path);
[[nodiscard]] Result<void> checkArray(const json& j, const std::string& path);
[[nodiscard]] Result<std::string> getString(const json& j, const std::string& path);
[[nodiscard]] Result<bool> getBool(const json& j, const std::string& path);
// A non-negative integer no larger than `max`.
[[nodiscard]] Result<uint64_t> getUnsigned(const json& j, const std::string& path, uint64_t max);
[[nodiscard]] Result<uint64_t> getU64(const json& j, const std::string& path);
[[nodiscard]] Result<uint32_t> getU32(const json& j, const std::string& path);
[[nodiscard]] Result<std::vector<std::string>> getStrings(const json& j, const std::string& path);
// An array, each element parsed by parse(element, "path[i]") -> Result<T>.
template <typename F>
[[nodiscard]] auto getArrayOf(const json& j, const std::string& path, F&& parse)
	-> Result<std::vector<typename std::invoke_result_t<F, const json&, std::string>::value_type>>
{
	std::vector<typename std::invoke_result_t<F, const json&, std::string>::value_type> out;
	TRYV(checkArray(j, path));
	for (size_t i = 0; i < j.size(); i++) {
		TRY(v, parse(j[i], idx(path, i)));
		out.push_back(std::move(*v));
	}
	return out;
}
// Reads a whole JSON file through the bounded reader (base/file_io.h) and
// parses it; errors name the file: "'P': invalid JSON: ..." (exceptions stop here).
[[nodiscard]] Result<json> readFile(const std::string& path, std::size_t maxBytes = 1 << 20);

// An optional key of object `j`: when present, get(j[key], "path.key")
// (one of the getters above, or the caller's own that also checks the
// value) is stored in `out`; when absent, `out` keeps its default.
//   TRYV(optionalField(j, "certificateDays", path, c.certDays, getCertDays));
template <typename T, typename Get>
[[nodiscard]] Result<void> optionalField(const json& j, const char* key, const std::string& path, T& out, Get&& get)
{
	auto it = j.find(key);
	if (it == j.end())
		return {};
	TRY(v, get(*it, sub(path, key)));
	out = std::move(*v);
	return {};
}

// One optional key of a section: where it goes in the section's struct and
// the getter that reads it (for optionalSection).
template <typename T, typename M, typename Get>
struct Field {
	const char* key;
	M T::*member;
	Get get;
};
template <typename T, typename M, typename Get>
[[nodiscard]] Field<T, M, Get> field(const char* key, M T::*member, Get get)
{
	return { key, member, get };
}

// An optional object of `j` (a section): when present, it may hold only the
// keys of `fields`, and each of them that it holds is read into `out`, in
// order (optionalField); the first error stops.
//   TRYV(optionalSection(j, "limits", path, c.limits, field("memory", &Limits::memory, getString),
//                        field("tasks", &Limits::tasks, getU32)));
template <typename T, typename... Fields>
[[nodiscard]] Result<void> optionalSection(const json& j, const char* key, const std::string& path, T& out,
					   const Fields&... fields)
{
	auto it = j.find(key);
	if (it == j.end())
		return {};
	const std::string p = sub(path, key);
	TRYV(onlyKeys(*it, p, { fields.key... }));
	Result<void> r;
	((r = optionalField(*it, fields.key, p, out.*fields.member, fields.get), r.has_value()) && ...);
	return r;
}

} // namespace pukaipu::jsonf
