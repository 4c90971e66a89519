// seccomp compiling: SeccompProfile → libseccomp → BPF (parent), and the one
// seccomp(2) call the child makes.
#include "seccomp_profile.h"

#include <cerrno>
#include <cstring>
#include <memory>
#include <string_view>

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "seccomp_tables.h"
#include "base/unique_fd.h"

namespace pukaipu {

using namespace seccomp_detail;

// ---------------------------------------------------------------- compiling

namespace seccomp_detail {

std::string libseccompVersion()
{
	const scmp_version* v = seccomp_version();
	return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->micro);
}

// A function of the profile alone, so a cache hit reports the same warnings.
std::vector<std::string> unknownSyscallWarnings(const SeccompProfile& p)
{
	std::vector<std::string> out;
	for (size_t i = 0; i < p.syscalls.size(); i++)
		for (const std::string& name : p.syscalls[i].names)
			if (seccomp_syscall_resolve_name(name.c_str()) == __NR_SCMP_ERROR)
				out.push_back("seccomp: syscalls[" + std::to_string(i) + "]: '" + name +
					      "' is not known to libseccomp " + libseccompVersion() + ", ignoring");
	return out;
}

Result<unsigned> filterFlags(const SeccompProfile& p)
{
	unsigned flags = 0;
	for (const std::string& f : p.flags) {
		const Named* n = lookup(kFlags, f);
		if (!n)
			return fail("seccomp: unknown or unsupported flag '%s'", f.c_str());
		flags |= n->value;
	}
	return flags;
}

} // namespace seccomp_detail

namespace {

struct ScmpCtxDeleter {
	void operator()(void* ctx) const noexcept { seccomp_release(ctx); }
};
using ScmpCtx = std::unique_ptr<void, ScmpCtxDeleter>;

struct PlannedRule {
	const std::string* name;
	int nr;
	uint32_t action;
	const std::vector<SeccompArg>* args;
	size_t ruleIndex;
};

// The rules split in two programs (see compileSeccomp).
struct Plan {
	std::vector<PlannedRule> main;
	std::vector<PlannedRule> exceptions;
};

Result<Plan> planRules(const SeccompProfile& p, uint32_t defaultAction)
{
	struct Group {
		std::optional<uint32_t> uncond;
		size_t uncondRule = 0;
		PlannedRule first {};
		std::vector<PlannedRule> cond;
	};
	std::vector<Group> groups;
	std::map<std::string_view, size_t> byName;
	for (size_t i = 0; i < p.syscalls.size(); i++) {
		const SeccompRule& r = p.syscalls[i];
		uint32_t action;
		if (const char* why = actionValue(r.action, r.errnoRet, &action))
			return fail("seccomp: syscalls[%zu]: %s", i, why);
		size_t bad = 0;
		if (const char* why = argsProblem(r.args, &bad))
			return fail("seccomp: syscalls[%zu].args[%zu]: %s", i, bad, why);
		for (const std::string& name : r.names) {
			int nr = seccomp_syscall_resolve_name(name.c_str());
			if (nr == __NR_SCMP_ERROR)
				continue; // reported by unknownSyscallWarnings, like runc/crun
			auto [it, added] = byName.try_emplace(name, groups.size());
			if (added)
				groups.emplace_back();
			Group& g = groups[it->second];
			PlannedRule pr { &name, nr, action, &r.args, i };
			if (!r.args.empty()) {
				g.cond.push_back(pr);
			} else if (!g.uncond) {
				g.uncond = action;
				g.uncondRule = i;
				g.first = pr;
			} else if (*g.uncond != action) {
				return fail("seccomp: syscalls[%zu] and syscalls[%zu] give '%s' different actions",
					    g.uncondRule, i, name.c_str());
			}
		}
	}
	// libseccomp silently drops a syscall's argument-conditional rules once
	// it also has an unconditional rule, so "allow ioctl, but not TIOCSTI"
	// would allow TIOCSTI. Such conditional rules become exceptions,
	// compiled into a program that runs first. Rules equal to the default
	// action are skipped: libseccomp rejects them (EACCES) and they are
	// what happens anyway.
	Plan plan;
	for (const Group& g : groups) {
		if (g.uncond) {
			if (*g.uncond != defaultAction)
				plan.main.push_back(g.first);
			for (const PlannedRule& c : g.cond)
				if (c.action != *g.uncond)
					plan.exceptions.push_back(c);
		} else {
			for (const PlannedRule& c : g.cond)
				if (c.action != defaultAction)
					plan.main.push_back(c);
		}
	}
	return plan;
}

Result<std::vector<sock_filter>> exportBpf(void* ctx)
{
	UniqueFd fd(::memfd_create("pukaipu-seccomp", MFD_CLOEXEC));
	if (!fd)
		return failErrno(errno, "seccomp: memfd_create");
	if (int rc = seccomp_export_bpf(ctx, fd.get()); rc < 0)
		return failErrno(-rc, "seccomp: export BPF");
	off_t size = ::lseek(fd.get(), 0, SEEK_END);
	if (size < 0)
		return failErrno(errno, "seccomp: export BPF: lseek");
	if (size == 0 || size % sizeof(sock_filter) != 0)
		return fail("seccomp: export BPF: odd size %lld", static_cast<long long>(size));
	std::vector<sock_filter> bpf(static_cast<size_t>(size) / sizeof(sock_filter));
	auto* out = reinterpret_cast<char*>(bpf.data());
	for (off_t done = 0; done < size;) {
		ssize_t n = ::pread(fd.get(), out + done, static_cast<size_t>(size - done), done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return failErrno(n < 0 ? errno : EIO, "seccomp: export BPF: read");
		done += n;
	}
	return bpf;
}

Result<std::vector<sock_filter>> buildFilter(uint32_t defaultAction, const std::vector<uint32_t>& arches,
					     const std::vector<PlannedRule>& rules)
{
	ScmpCtx ctx(seccomp_init(defaultAction));
	if (!ctx)
		return fail("seccomp: seccomp_init failed");
	// Without this, a syscall made through a non-native ABI (i386
	// `int 0x80`, x32 numbers with bit 30 set) would get the default
	// action and be judged by the wrong syscall table.
	if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc < 0)
		return failErrno(-rc, "seccomp: set the bad-architecture action");
	// A binary tree of syscall numbers instead of a linear list: a profile
	// of ~300 allowed syscalls costs a handful of comparisons per syscall
	// instead of up to a few hundred (libseccomp >= 2.5).
	if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2); rc < 0)
		return failErrno(-rc, "seccomp: enable the binary-tree optimization");
	for (uint32_t arch : arches)
		if (int rc = seccomp_arch_add(ctx.get(), arch); rc < 0 && rc != -EEXIST)
			return failErrno(-rc, "seccomp: add architecture 0x%x", arch);
	for (const PlannedRule& r : rules) {
		scmp_arg_cmp cmp[6];
		for (size_t i = 0; i < r.args->size(); i++) {
			const SeccompArg& a = (*r.args)[i];
			cmp[i] = scmp_arg_cmp { a.index, static_cast<scmp_compare>(lookup(kOps, a.op)->value),
						a.value, a.valueTwo };
		}
		int rc = seccomp_rule_add_array(ctx.get(), r.action, r.nr,
						static_cast<unsigned>(r.args->size()), cmp);
		if (rc < 0)
			return failErrno(-rc, "seccomp: syscalls[%zu]: add rule for '%s'", r.ruleIndex,
					 r.name->c_str());
	}
	return exportBpf(ctx.get());
}

// Runs `first`, and where it would return `sentinel`, continues with `second`:
// each such return becomes a forward jump to second's first instruction.
// libseccomp programs only return constants and start by loading the arch,
// so `second` needs no state from `first`.
Result<std::vector<sock_filter>> chainFilters(std::vector<sock_filter> first, uint32_t sentinel,
					      const std::vector<sock_filter>& second)
{
	for (size_t i = 0; i < first.size(); i++) {
		sock_filter& f = first[i];
		if (BPF_CLASS(f.code) != BPF_RET)
			continue;
		if (BPF_RVAL(f.code) != BPF_K)
			return fail("seccomp: libseccomp returned a non-constant BPF action");
		if (f.k == sentinel)
			f = sock_filter { BPF_JMP | BPF_JA, 0, 0, static_cast<uint32_t>(first.size() - i - 1) };
	}
	first.insert(first.end(), second.begin(), second.end());
	return first;
}

} // namespace

Result<SeccompProgram> compileSeccomp(const SeccompProfile& p)
{
	SeccompProgram prog;
	uint32_t defaultAction;
	if (const char* why = actionValue(p.defaultAction, p.defaultErrnoRet, &defaultAction))
		return fail("seccomp: defaultAction: %s", why);
	TRY(flags, filterFlags(p));
	prog.flags = *flags;
	std::vector<uint32_t> arches;
	for (const std::string& a : p.architectures) {
		const Named* n = lookup(kArches, a);
		if (!n)
			return fail("seccomp: unknown architecture '%s'", a.c_str());
		arches.push_back(n->value);
	}
	prog.warnings = unknownSyscallWarnings(p);
	TRY(plan, planRules(p, defaultAction));
	TRY(main, buildFilter(defaultAction, arches, plan->main));
	if (plan->exceptions.empty()) {
		prog.bpf = std::move(*main);
	} else {
		// The exceptions program's default is a TRACE value no exception
		// uses; it means "not an exception, ask the main program".
		uint32_t sentinel = SCMP_ACT_TRACE(0xffff);
		for (bool clash = true; clash;) {
			clash = false;
			for (const PlannedRule& r : plan->exceptions)
				clash = clash || r.action == sentinel;
			if (clash)
				sentinel--;
		}
		TRY(first, buildFilter(sentinel, arches, plan->exceptions));
		TRY(chained, chainFilters(std::move(*first), sentinel, *main));
		prog.bpf = std::move(*chained);
	}
	if (prog.bpf.size() > BPF_MAXINSNS)
		return fail("seccomp: filter has %zu instructions, the kernel takes at most %d", prog.bpf.size(),
			    BPF_MAXINSNS);
	return prog;
}

// ---------------------------------------------------------------- installing

Result<void> installSeccomp(const SeccompProgram& prog) noexcept
{
	// Runs in the child after clone3: no allocation, only makeError.
	if (prog.bpf.empty() || prog.bpf.size() > BPF_MAXINSNS)
		return failErrno(EINVAL, "seccomp: load filter of %zu instructions", prog.bpf.size());
	sock_fprog fprog {};
	fprog.len = static_cast<unsigned short>(prog.bpf.size());
	fprog.filter = const_cast<sock_filter*>(prog.bpf.data());
	long rc = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, prog.flags, &fprog);
	if (rc == 0)
		return {};
	if (rc > 0) // TSYNC: the id of a thread that could not be synchronized
		return fail("seccomp: load filter: thread %ld could not be synchronized", rc);
	return failErrno(errno, "seccomp: load filter");
}

} // namespace pukaipu
