#include "host_ca.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file_io.h"
#include "base/sysutil.h"
#include "names.h"
#include "provision.h"

namespace pukaipu {

namespace {

bool exists(const std::string& path)
{
	struct stat st;
	return stat(path.c_str(), &st) == 0;
}

Result<certs::Ca> newHostCa(const GlobalConfig& g)
{
	char host[256] = "localhost";
	gethostname(host, sizeof(host) - 1);
	// A CN holds at most 64 characters: keep the host name's first label.
	std::string label(host);
	label = label.substr(0, std::min<size_t>(label.find('.'), 40));
	certs::NameConstraints nc { permittedDomains(g) };
	return certs::createCa("pukaipu host CA (" + label + ")", certs::kCaDays, &nc);
}

// Key first: a certificate without its key would be useless.
Result<void> writeCa(const certs::Ca& ca, const std::string& crt, const std::string& key)
{
	TRY(keyPem, certs::keyToPem(ca.key.get()));
	TRY(crtPem, certs::certToPem(ca.cert.get()));
	TRYV(writeFileAtomic(key, *keyPem, 0600));
	return writeFileAtomic(crt, *crtPem, 0644);
}

std::string join(const std::vector<std::string>& v)
{
	std::string out;
	for (const auto& s : v)
		out += (out.empty() ? "" : ", ") + s;
	return out;
}

} // namespace

Result<certs::Ca> hostCa(const Paths& p, const GlobalConfig& g)
{
	const std::string dir = p.hostCaDir();
	const std::string crt = dir + "/ca.crt", key = dir + "/ca.key";
	if (exists(crt))
		return certs::loadCa(crt, key);
	TRYV(makeDirs(dir.substr(0, dir.rfind('/')), 0755));
	TRYV(ensureRootDir(dir, 0755));
	TRY(ca, newHostCa(g));
	TRYV(writeCa(*ca, crt, key));
	return std::move(*ca);
}

std::optional<std::string> hostCaProblem(const Paths& p, const GlobalConfig& g)
{
	const std::string crt = p.hostCaDir() + "/ca.crt";
	auto pem = readFileLimited(crt);
	if (!pem)
		return std::nullopt;
	auto info = certs::inspect(*pem);
	if (!info)
		return "the host CA " + crt + " cannot be read (" + info.error().message() + "): run pukaipu ca rotate";
	if (!info->hasNameConstraints)
		return "the host CA " + crt + " has no name constraints: users who trust it trust it for every name and "
		       "IP address; run pukaipu ca rotate";
	for (const char* all : { "0.0.0.0/0", "::/0" })
		if (std::find(info->excludedIps.begin(), info->excludedIps.end(), all) == info->excludedIps.end())
			return "the host CA " + crt + " does not exclude " + all + ": run pukaipu ca rotate";
	for (const auto& d : permittedDomains(g))
		if (!withinDomains(d, info->permittedDns))
			return "the host CA " + crt + " may not sign names in '" + d + "' (it permits " +
			       join(info->permittedDns) + "): run pukaipu ca rotate";
	return std::nullopt;
}

Result<RotateResult> rotateHostCa(const Paths& p, const GlobalConfig& g)
{
	TRY(lock, lockState(p));
	TRY(all, listInstances(p));
	const std::string dir = p.hostCaDir();
	const std::string crt = dir + "/ca.crt", key = dir + "/ca.key";
	const std::string newCrt = crt + ".new", newKey = key + ".new";
	// The CA being replaced, and a pending one from a rotation that stopped
	// half way (its key may already have taken ca.key's place).
	std::optional<certs::Ca> old, pending;
	if (exists(newCrt)) {
		TRY_CTX(ca, certs::loadCa(newCrt, exists(newKey) ? newKey : key), "pending host CA");
		pending = std::move(*ca);
	}
	if (exists(crt) && (!pending || exists(newKey))) {
		TRY_CTX(ca, certs::loadCa(crt, key), "host CA");
		old = std::move(*ca);
	}

	// --- everything checked before the first change ---
	RotateResult res;
	res.caPath = crt;
	const auto domains = permittedDomains(g);
	std::vector<std::pair<const InstanceConfig*, std::string>> serverCerts; // instance, its certs dir
	for (const auto& inst : *all) {
		const std::string certDir = p.instanceDir(inst.user) + "/certs";
		TRY_CTX(leaf, readFileLimited(certDir + "/server.crt"), "instance '%s'", inst.user.c_str());
		bool ours = (old && certs::signedBy(*leaf, old->cert.get())) ||
			    (pending && certs::signedBy(*leaf, pending->cert.get()));
		if (!ours) {
			res.external.push_back(inst.user);
			continue;
		}
		for (const auto& n : namesOf(inst)) {
			TRYV(checkInstanceName(n, "instance '" + inst.user + "': name"));
			if (!withinDomains(n, domains))
				return fail("instance '%s': name '%s' is outside the domains the new CA may sign for (%s); "
					    "add its domain to extraDomains in pukaipu.json; nothing changed",
					    inst.user.c_str(), n.c_str(), join(domains).c_str());
		}
		serverCerts.emplace_back(&inst, certDir);
	}

	// --- the pending CA, then the instances, then the swap ---
	TRYV(makeDirs(dir.substr(0, dir.rfind('/')), 0755));
	TRYV(ensureRootDir(dir, 0755));
	if (!pending) {
		TRY(ca, newHostCa(g));
		TRYV(writeCa(*ca, newCrt, newKey));
		pending = std::move(*ca);
	}
	TRY(caPem, certs::certToPem(pending->cert.get()));
	const int days = (int)std::min<uint32_t>(g.certDays, certs::kMaxServerDays);
	for (const auto& [inst, certDir] : serverCerts) {
		TRY(server, certs::issueServerCert(*pending, lowerName(inst->fqdn), inst->extraNames, {}, days));
		TRY(keyPem, certs::keyToPem(server->key.get()));
		TRY(leafPem, certs::certToPem(server->cert.get()));
		TRYV(writeFileAtomic(certDir + "/server.key", *keyPem, 0600));
		TRYV(writeFileAtomic(certDir + "/server.crt", *leafPem + *caPem, 0644));
		res.reissued.push_back(inst->user);
	}
	for (const auto& inst : *all) {
		const std::string certDir = p.instanceDir(inst.user) + "/certs";
		TRY(pass, writeClientCerts(certDir, inst.user));
		res.clients.push_back({ inst.user, certDir + "/client.p12", *pass });
	}
	if (exists(newKey) && rename(newKey.c_str(), key.c_str()) < 0)
		return failErrno(errno, "rename '%s' to '%s'", newKey.c_str(), key.c_str());
	if (rename(newCrt.c_str(), crt.c_str()) < 0)
		return failErrno(errno, "rename '%s' to '%s'", newCrt.c_str(), crt.c_str());
	return res;
}

} // namespace pukaipu
