// nft: libnftables through dlopen. See nft.h.
#include "nft.h"

#include <cerrno>
#include <dlfcn.h>
#include <memory>
#include <nftables/libnftables.h>

namespace pukaipu {

namespace {

// libnftables (and its libmnl, libnftnl, libxtables, libjansson, libgmp) is
// loaded only when a container gets egress: linked into pukaipu-run, its
// relocation would cost every start, most of which never touch nftables
// (bench/startup). Loaded once; the handle is never closed.
struct NftApi {
	decltype(&nft_ctx_new) ctxNew;
	decltype(&nft_ctx_free) ctxFree;
	decltype(&nft_ctx_buffer_output) bufferOutput;
	decltype(&nft_ctx_buffer_error) bufferError;
	decltype(&nft_run_cmd_from_buffer) runCmd;
	decltype(&nft_ctx_get_error_buffer) errorBuffer;
	decltype(&nft_ctx_get_output_buffer) outputBuffer;
	decltype(&nft_ctx_output_set_flags) setFlags;
};

Result<const NftApi*> nftApi()
{
	static NftApi api;
	static bool loaded = false;
	if (loaded)
		return &api;
	void* h = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return fail("network: cannot load libnftables.so.1 (install the libnftables1 package): %s", dlerror());
	auto sym = [h](const char* name) { return dlsym(h, name); };
	api.ctxNew = reinterpret_cast<decltype(api.ctxNew)>(sym("nft_ctx_new"));
	api.ctxFree = reinterpret_cast<decltype(api.ctxFree)>(sym("nft_ctx_free"));
	api.bufferOutput = reinterpret_cast<decltype(api.bufferOutput)>(sym("nft_ctx_buffer_output"));
	api.bufferError = reinterpret_cast<decltype(api.bufferError)>(sym("nft_ctx_buffer_error"));
	api.runCmd = reinterpret_cast<decltype(api.runCmd)>(sym("nft_run_cmd_from_buffer"));
	api.errorBuffer = reinterpret_cast<decltype(api.errorBuffer)>(sym("nft_ctx_get_error_buffer"));
	api.outputBuffer = reinterpret_cast<decltype(api.outputBuffer)>(sym("nft_ctx_get_output_buffer"));
	api.setFlags = reinterpret_cast<decltype(api.setFlags)>(sym("nft_ctx_output_set_flags"));
	if (!api.ctxNew || !api.ctxFree || !api.bufferOutput || !api.bufferError || !api.runCmd || !api.errorBuffer ||
	    !api.outputBuffer || !api.setFlags)
		return fail("network: libnftables.so.1 lacks a function pukaipu needs");
	loaded = true;
	return &api;
}

using Ctx = std::unique_ptr<nft_ctx, void (*)(nft_ctx*)>;

// Runs `script`; on failure the error is nftables' own message on one line.
Result<void> run(const NftApi& n, nft_ctx* ctx, const std::string& script, const char* where)
{
	n.bufferOutput(ctx);
	n.bufferError(ctx);
	if (n.runCmd(ctx, script.c_str()) == 0)
		return {};
	std::string err = n.errorBuffer(ctx);
	while (!err.empty() && (err.back() == '\n' || err.back() == ' '))
		err.pop_back();
	for (auto& c : err)
		if (c == '\n')
			c = ' ';
	return fail("network: nftables %s: %s", where, err.c_str());
}

Result<Ctx> context(const NftApi& n)
{
	Ctx ctx(n.ctxNew(NFT_CTX_DEFAULT), n.ctxFree);
	if (!ctx)
		return failErrno(ENOMEM, "network: nftables context");
	return ctx;
}

} // namespace

Result<void> applyNft(const std::string& script, const char* where)
{
	TRY(api, nftApi());
	TRY(ctx, context(**api));
	return run(**api, ctx->get(), script, where);
}

Result<std::optional<nlohmann::json>> listNftTable(const std::string& name)
{
	TRY(api, nftApi());
	const NftApi& n = **api;
	TRY(ctx, context(n));
	n.setFlags(ctx->get(), NFT_CTX_OUTPUT_JSON);
	// One command (each one reads the kernel's ruleset): no such table is
	// nftables' ENOENT message, not an error here.
	if (auto r = run(n, ctx->get(), "list table inet " + name, "list table"); !r) {
		if (std::string(r.error().what).find("No such file or directory") != std::string::npos)
			return std::nullopt;
		return failWith(r.error());
	}
	try {
		return nlohmann::json::parse(n.outputBuffer(ctx->get()));
	} catch (const nlohmann::json::exception& e) {
		return fail("network: nftables listed table %s as JSON pukaipu cannot read: %s", name.c_str(), e.what());
	}
}

} // namespace pukaipu
