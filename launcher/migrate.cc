#include "migrate.h"

#include <cerrno>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/file_io.h"
#include "base/net_literal.h"
#include "certs/certs.h"
#include "front.h"
#include "host_ca.h"
#include "instance.h"
#include "names.h"
#include "provision.h"
#include "systemd/dropins.h"

namespace pukaipu {

namespace {

bool exists(const std::string& path)
{
	struct stat st;
	return lstat(path.c_str(), &st) == 0;
}

std::string oldUrl(const std::string& name, uint16_t port)
{
	return "https://" + (isIpLiteral(name) && name.find(':') != std::string::npos ? "[" + name + "]" : name) + ":" +
	       std::to_string(port) + "/";
}

// What migrate does to one instance; decided before anything changes.
struct Step {
	InstanceConfig next;
	std::string certDir;
	bool renameToDefault = false; // IP fqdn -> USER.DOMAIN, new server certificate
	bool removeTls = false;
	bool removeDropIn = false;
	bool fixKeyMode = false;
	bool fixDirMode = false;
	bool changesState() const { return renameToDefault || removeTls || removeDropIn || fixKeyMode || fixDirMode; }
};

Result<Step> planStep(const Paths& p, const GlobalConfig& g, const InstanceConfig& inst)
{
	Step s;
	s.next = inst;
	s.certDir = p.instanceDir(inst.user) + "/certs";
	s.next.extraNames.clear();
	for (const auto& n : inst.extraNames)
		if (!isIpLiteral(n))
			s.next.extraNames.push_back(n);
	if (isIpLiteral(inst.fqdn)) {
		TRY_CTX(leaf, readFileLimited(s.certDir + "/server.crt"), "instance '%s'", inst.user.c_str());
		// Read only: planning writes nothing (hostCa would make a CA).
		bool ours = false;
		if (exists(p.hostCaDir() + "/ca.crt")) {
			TRY(ca, certs::loadCa(p.hostCaDir() + "/ca.crt", p.hostCaDir() + "/ca.key"));
			ours = certs::signedBy(*leaf, ca->cert.get());
		}
		if (!ours)
			return fail("instance '%s': its name is the IP address %s and its server certificate is not the host "
				    "CA's; give it a DNS name (remove it and create it again with --fqdn); nothing changed",
				    inst.user.c_str(), inst.fqdn.c_str());
		s.next.fqdn = inst.user + "." + g.domain;
		s.renameToDefault = true;
	}
	for (const auto& n : namesOf(s.next))
		TRYV(checkInstanceName(n, "instance '" + inst.user + "': name"));
	s.removeTls = exists(p.runDir + "/" + inst.user + "/tls");
	s.removeDropIn = exists(p.systemdDir + "/" + units::socketName(inst.user) + ".d/" + units::kOldListenDropIn);
	struct stat st;
	if (stat((s.certDir + "/server.key").c_str(), &st) == 0)
		s.fixKeyMode = (st.st_mode & 07777) != 0600 || st.st_uid != 0 || st.st_gid != 0;
	if (stat(s.certDir.c_str(), &st) == 0)
		s.fixDirMode = (st.st_mode & 07777) != 0700 || st.st_uid != 0;
	return s;
}

Result<void> apply(const Paths& p, const GlobalConfig& g, const InstanceConfig& before, const Step& s,
		   MigrateResult& res)
{
	const std::string& user = before.user;
	if (s.fixDirMode) {
		if (chown(s.certDir.c_str(), 0, 0) < 0 || chmod(s.certDir.c_str(), 0700) < 0)
			return failErrno(errno, "chmod 0700 '%s'", s.certDir.c_str());
		res.changes.push_back(user + ": " + s.certDir + " made root's alone (0700)");
	}
	if (s.fixKeyMode) {
		const std::string key = s.certDir + "/server.key";
		if (chown(key.c_str(), 0, 0) < 0 || chmod(key.c_str(), 0600) < 0)
			return failErrno(errno, "chmod 0600 '%s'", key.c_str());
		res.changes.push_back(user + ": server.key made root's alone (0600)");
	}
	if (s.renameToDefault) {
		TRY(ca, hostCa(p, g));
		TRY(server, certs::issueServerCert(*ca, s.next.fqdn, s.next.extraNames, {},
						   (int)std::min<uint32_t>(g.certDays, certs::kMaxServerDays)));
		TRY(keyPem, certs::keyToPem(server->key.get()));
		TRY(leafPem, certs::certToPem(server->cert.get()));
		TRY(caPem, certs::certToPem(ca->cert.get()));
		TRYV(writeFileAtomic(s.certDir + "/server.key", *keyPem, 0600));
		TRYV(writeFileAtomic(s.certDir + "/server.crt", *leafPem + *caPem, 0644));
		res.changes.push_back(user + ": named " + s.next.fqdn + " instead of the IP address " + before.fqdn +
				      ", with a new server certificate from the host CA");
	}
	if (s.next.extraNames != before.extraNames)
		res.changes.push_back(user + ": IP names dropped (the front door serves DNS names only)");
	if (nlohmann::json(s.next) != nlohmann::json(before))
		TRYV(writeFileAtomic(p.instanceDir(user) + "/instance.json", nlohmann::json(s.next).dump(2) + "\n", 0644));
	if (s.removeDropIn) {
		TRYV(units::writeDropIns(p, g, s.next)); // removes the TCP listen drop-in
		res.dropInsRemoved = true;
		res.changes.push_back(user + ": TCP socket drop-in removed (pukaipu@" + user +
				      ".socket listens on the desktop's Unix socket)");
	}
	if (s.removeTls) {
		TRYV(removeOldTlsCopies(p.runDir + "/" + user));
		res.changes.push_back(user + ": " + p.runDir + "/" + user + "/tls removed (a copy of the server key the "
				      "sandbox could read)");
	}
	return {};
}

} // namespace

Result<MigrateResult> migrate(const Paths& p, const GlobalConfig& g)
{
	TRY(lock, lockState(p));
	MigrateResult res;
	res.frontWasSetUp = exists(p.frontDir + "/haproxy.cfg");
	// Every instance is read and planned before the first change.
	TRY(all, listInstances(p));
	std::vector<Step> steps;
	std::vector<InstanceConfig> after;
	for (const auto& inst : *all) {
		TRY(step, planStep(p, g, inst));
		steps.push_back(std::move(*step));
		after.push_back(steps.back().next);
	}
	for (const auto& inst : after)
		TRYV_CTX(checkNamesFree(after, inst.user, namesOf(inst)), "instance '%s'", inst.user.c_str());

	for (size_t i = 0; i < all->size(); i++) {
		const InstanceConfig& before = (*all)[i];
		const Step& s = steps[i];
		bool ipNames = s.next.extraNames != before.extraNames;
		if (!s.changesState() && !ipNames && res.frontWasSetUp)
			continue;
		TRYV(apply(p, g, before, s, res));
		const std::string now = front::originOf(front::instanceName(s.next), g.frontPort) + "/";
		std::string line = before.user + ": " + oldUrl(before.fqdn, before.port) + " -> " + now;
		for (const auto& n : before.extraNames)
			line += ", " + oldUrl(n, before.port) + (isIpLiteral(n) ? " -> (IP names are no longer served)"
										 : " -> " + front::originOf(lowerName(n), g.frontPort) + "/");
		res.urls.push_back(line);
	}
	return res;
}

} // namespace pukaipu
