// Tables shared by the seccomp parser and compiler (internal to sandbox/).
#pragma once

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <linux/seccomp.h>
#include <linux/../seccomp.h> // libseccomp (see seccomp_compile.cc)

#include "seccomp_profile.h"

namespace pukaipu::seccomp_detail {

// ---------------------------------------------------------------- tables

struct Named {
	const char* name;
	uint32_t value;
};

inline constexpr Named kArches[] = {
	{ "SCMP_ARCH_X86", SCMP_ARCH_X86 },
	{ "SCMP_ARCH_X86_64", SCMP_ARCH_X86_64 },
	{ "SCMP_ARCH_X32", SCMP_ARCH_X32 },
	{ "SCMP_ARCH_ARM", SCMP_ARCH_ARM },
	{ "SCMP_ARCH_AARCH64", SCMP_ARCH_AARCH64 },
	{ "SCMP_ARCH_MIPS", SCMP_ARCH_MIPS },
	{ "SCMP_ARCH_MIPS64", SCMP_ARCH_MIPS64 },
	{ "SCMP_ARCH_MIPS64N32", SCMP_ARCH_MIPS64N32 },
	{ "SCMP_ARCH_MIPSEL", SCMP_ARCH_MIPSEL },
	{ "SCMP_ARCH_MIPSEL64", SCMP_ARCH_MIPSEL64 },
	{ "SCMP_ARCH_MIPSEL64N32", SCMP_ARCH_MIPSEL64N32 },
	{ "SCMP_ARCH_PPC", SCMP_ARCH_PPC },
	{ "SCMP_ARCH_PPC64", SCMP_ARCH_PPC64 },
	{ "SCMP_ARCH_PPC64LE", SCMP_ARCH_PPC64LE },
	{ "SCMP_ARCH_S390", SCMP_ARCH_S390 },
	{ "SCMP_ARCH_S390X", SCMP_ARCH_S390X },
	{ "SCMP_ARCH_PARISC", SCMP_ARCH_PARISC },
	{ "SCMP_ARCH_PARISC64", SCMP_ARCH_PARISC64 },
	{ "SCMP_ARCH_RISCV64", SCMP_ARCH_RISCV64 },
};

// NEW_LISTENER and WAIT_KILLABLE_RECV are left out on purpose: we have no
// seccomp-notify supervisor to hand a listener fd to.
inline constexpr Named kFlags[] = {
	{ "SECCOMP_FILTER_FLAG_TSYNC", SECCOMP_FILTER_FLAG_TSYNC },
	{ "SECCOMP_FILTER_FLAG_LOG", SECCOMP_FILTER_FLAG_LOG },
	{ "SECCOMP_FILTER_FLAG_SPEC_ALLOW", SECCOMP_FILTER_FLAG_SPEC_ALLOW },
};

inline constexpr Named kOps[] = {
	{ "SCMP_CMP_NE", SCMP_CMP_NE },
	{ "SCMP_CMP_LT", SCMP_CMP_LT },
	{ "SCMP_CMP_LE", SCMP_CMP_LE },
	{ "SCMP_CMP_EQ", SCMP_CMP_EQ },
	{ "SCMP_CMP_GE", SCMP_CMP_GE },
	{ "SCMP_CMP_GT", SCMP_CMP_GT },
	{ "SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ },
};

template <size_t N>
const Named* lookup(const Named (&table)[N], std::string_view name)
{
	for (const Named& n : table)
		if (name == n.name)
			return &n;
	return nullptr;
}

inline constexpr uint32_t kMaxErrno = 4095; // the kernel clamps larger values anyway

// Maps an OCI action (+ errnoRet) to a libseccomp action. Returns nullptr or
// the reason it cannot; shared by the parser (which adds a JSON path) and the
// compiler (which may get a profile that was built in code).
inline const char* actionValue(const std::string& action, std::optional<uint32_t> ret, uint32_t* out)
{
	if (action == "SCMP_ACT_ERRNO" || action == "SCMP_ACT_TRACE") {
		bool isErrno = action == "SCMP_ACT_ERRNO";
		uint32_t v = ret.value_or(EPERM); // OCI: EPERM when errnoRet is absent
		if (v > (isErrno ? kMaxErrno : 0xffffu))
			return isErrno ? "errno out of range (0..4095)" : "trace value out of range (0..65535)";
		*out = isErrno ? SCMP_ACT_ERRNO(v) : SCMP_ACT_TRACE(v);
		return nullptr;
	}
	static constexpr Named plain[] = {
		{ "SCMP_ACT_ALLOW", SCMP_ACT_ALLOW },
		{ "SCMP_ACT_KILL", SCMP_ACT_KILL },
		{ "SCMP_ACT_KILL_THREAD", SCMP_ACT_KILL_THREAD },
		{ "SCMP_ACT_KILL_PROCESS", SCMP_ACT_KILL_PROCESS },
		{ "SCMP_ACT_TRAP", SCMP_ACT_TRAP },
		{ "SCMP_ACT_LOG", SCMP_ACT_LOG },
	};
	const Named* n = lookup(plain, action);
	if (!n)
		return "unknown action";
	if (ret)
		return "errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE";
	*out = n->value;
	return nullptr;
}

// Checks one rule's comparisons; on failure *bad is the offending args index.
inline const char* argsProblem(const std::vector<SeccompArg>& args, size_t* bad)
{
	for (size_t i = 0; i < args.size(); i++) {
		*bad = i;
		if (args[i].index > 5)
			return "index out of range (0..5)";
		if (!lookup(kOps, args[i].op))
			return "unknown operator";
		// libseccomp refuses two comparisons of one argument in a rule
		// (EINVAL). runc splits such a rule into an OR of rules, which
		// is not what the profile says; refuse instead of guessing.
		for (size_t k = 0; k < i; k++)
			if (args[k].index == args[i].index)
				return "argument compared twice in one rule";
	}
	return nullptr;
}

// Defined in seccomp_compile.cc; the cache needs them too.
std::string libseccompVersion();
// A function of the profile alone, so a cache hit reports the same warnings.
std::vector<std::string> unknownSyscallWarnings(const SeccompProfile& p);
Result<unsigned> filterFlags(const SeccompProfile& p);

} // namespace pukaipu::seccomp_detail
