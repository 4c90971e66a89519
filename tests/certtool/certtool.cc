// pukaipu-certtool: a thin test CLI over the certs library, so the TLS
// integration test makes its certificates through the same code as pukaipu.
// Not installed. Exit status: 0 ok, 1 failure (one line on stderr), 2 usage.
// Its subcommands repeat one shape on purpose (load, issue, write, each
// step's error printed): each reads as the recipe it is.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/file_io.h"
#include "certs/certs.h"

using namespace pukaipu;
using namespace pukaipu::certs;

namespace {

const char kUsage[] =
	"usage: pukaipu-certtool ca OUTDIR [--cn NAME] [--days N]\n"
	"       pukaipu-certtool server CA_DIR FQDN OUTDIR [--dns NAME]... [--ip ADDR]... [--days N]\n"
	"       pukaipu-certtool client CA_DIR USER OUTDIR [--days N]   (prints the p12 passphrase)\n"
	"       pukaipu-certtool inspect CERT.pem\n"
	"       pukaipu-certtool verify LEAF.pem CA.pem server|client [HOST]\n"
	"       pukaipu-certtool check-server CERT.pem KEY.pem [FQDN]\n"
	"CA_DIR and OUTDIR hold ca.crt/ca.key, server.crt/server.key, client.crt/client.key/client.p12.\n";

[[noreturn]] void usage()
{
	std::fputs(kUsage, stderr);
	std::exit(2);
}

int failed(const Error& e)
{
	std::fprintf(stderr, "pukaipu-certtool: %s\n", e.message().c_str());
	return 1;
}

struct Args {
	std::vector<std::string> positional;
	std::vector<std::string> dns, ips;
	std::string cn;
	int days = 0;
};

Args parse(int argc, char** argv)
{
	Args a;
	for (int i = 2; i < argc; i++) {
		std::string s = argv[i];
		auto value = [&]() -> std::string {
			if (i + 1 >= argc)
				usage();
			return argv[++i];
		};
		if (s == "--dns")
			a.dns.push_back(value());
		else if (s == "--ip")
			a.ips.push_back(value());
		else if (s == "--cn")
			a.cn = value();
		else if (s == "--days")
			a.days = std::atoi(value().c_str());
		else if (s.rfind("--", 0) == 0)
			usage();
		else
			a.positional.push_back(s);
	}
	return a;
}

Result<void> writePair(const std::string& dir, const std::string& base, X509* cert, EVP_PKEY* key)
{
	TRY(certPem, certToPem(cert));
	TRY(keyPem, keyToPem(key));
	TRYV(writeFileAtomic(dir + "/" + base + ".key", *keyPem, 0600));
	return writeFileAtomic(dir + "/" + base + ".crt", *certPem, 0644);
}

int cmdCa(const Args& a)
{
	if (a.positional.size() != 1)
		usage();
	auto ca = createCa(a.cn.empty() ? "pukaipu test CA" : a.cn, a.days ? a.days : kCaDays);
	if (!ca)
		return failed(ca.error());
	if (auto r = writePair(a.positional[0], "ca", ca->cert.get(), ca->key.get()); !r)
		return failed(r.error());
	return 0;
}

int cmdServer(const Args& a)
{
	if (a.positional.size() != 3)
		usage();
	const std::string& caDir = a.positional[0];
	auto ca = loadCa(caDir + "/ca.crt", caDir + "/ca.key");
	if (!ca)
		return failed(ca.error());
	auto leaf = issueServerCert(*ca, a.positional[1], a.dns, a.ips, a.days ? a.days : kServerDays);
	if (!leaf)
		return failed(leaf.error());
	if (auto r = writePair(a.positional[2], "server", leaf->cert.get(), leaf->key.get()); !r)
		return failed(r.error());
	return 0;
}

int cmdClient(const Args& a)
{
	if (a.positional.size() != 3)
		usage();
	const std::string& caDir = a.positional[0];
	const std::string& out = a.positional[2];
	auto ca = loadCa(caDir + "/ca.crt", caDir + "/ca.key");
	if (!ca)
		return failed(ca.error());
	auto leaf = issueClientCert(*ca, a.positional[1], a.days ? a.days : kClientDays);
	if (!leaf)
		return failed(leaf.error());
	auto pass = randomPassphrase();
	if (!pass)
		return failed(pass.error());
	auto p12 = toPkcs12(*leaf, ca->cert.get(), *pass, a.positional[1] + " (pukaipu)");
	if (!p12)
		return failed(p12.error());
	if (auto r = writeFileAtomic(out + "/client.p12", *p12, 0600); !r)
		return failed(r.error());
	if (auto r = writePair(out, "client", leaf->cert.get(), leaf->key.get()); !r)
		return failed(r.error());
	std::printf("%s\n", pass->c_str());
	return 0;
}

void printList(const char* key, const std::vector<std::string>& v)
{
	std::printf("%s=", key);
	for (std::size_t i = 0; i < v.size(); i++)
		std::printf("%s%s", i ? "," : "", v[i].c_str());
	std::printf("\n");
}

void printInfo(const CertInfo& i)
{
	std::printf("subject=%s\nsubject_cn=%s\nissuer=%s\nissuer_cn=%s\nserial=%s\nsha256=%s\n",
		i.subject.c_str(), i.subjectCn.c_str(), i.issuer.c_str(), i.issuerCn.c_str(), i.serialHex.c_str(),
		i.sha256Fingerprint.c_str());
	std::printf("subject_hash=%08lx\nsignature=%s\nkey=%s %s %d\n", i.subjectHash, i.signatureAlgorithm.c_str(),
		i.keyAlgorithm.c_str(), i.keyCurve.c_str(), i.keyBits);
	printList("dns", i.dnsNames);
	printList("ip", i.ipAddresses);
	printList("eku", i.extendedKeyUsages);
	printList("key_usage", i.keyUsages);
	std::printf("ca=%d\npathlen=%ld\nself_signed=%d\nnot_before=%lld\nnot_after=%lld\nnot_after_text=%s\n",
		i.isCa, i.pathLen, i.selfSigned, static_cast<long long>(i.notBefore),
		static_cast<long long>(i.notAfter), formatTime(i.notAfter).c_str());
}

int cmdInspect(const Args& a)
{
	if (a.positional.size() != 1)
		usage();
	auto pem = readFileLimited(a.positional[0]);
	if (!pem)
		return failed(pem.error());
	auto info = inspect(*pem);
	if (!info)
		return failed(info.error());
	printInfo(*info);
	return 0;
}

int cmdVerify(const Args& a)
{
	if (a.positional.size() < 3 || a.positional.size() > 4)
		usage();
	Purpose p;
	if (a.positional[2] == "server")
		p = Purpose::ServerAuth;
	else if (a.positional[2] == "client")
		p = Purpose::ClientAuth;
	else
		usage();
	auto leaf = readFileLimited(a.positional[0]);
	auto ca = readFileLimited(a.positional[1]);
	if (!leaf || !ca)
		return failed(!leaf ? leaf.error() : ca.error());
	std::string host = a.positional.size() == 4 ? a.positional[3] : "";
	if (auto r = verifyChain(*leaf, *ca, p, host); !r)
		return failed(r.error());
	std::printf("ok\n");
	return 0;
}

int cmdCheckServer(const Args& a)
{
	if (a.positional.size() < 2 || a.positional.size() > 3)
		usage();
	auto cert = readFileLimited(a.positional[0]);
	auto key = readFileLimited(a.positional[1]);
	if (!cert || !key)
		return failed(!cert ? cert.error() : key.error());
	auto check = checkExternalServerCert(*cert, *key, a.positional.size() == 3 ? a.positional[2] : "");
	if (!check)
		return failed(check.error());
	for (const std::string& w : check->warnings)
		std::printf("warning: %s\n", w.c_str());
	std::printf("ok: %s, %zu certificate(s), valid until %s\n", check->leaf.subject.c_str(), check->chainLength,
		formatTime(check->leaf.notAfter).c_str());
	return 0;
}

} // namespace

int main(int argc, char** argv)
{
	if (argc < 2)
		usage();
	std::string cmd = argv[1];
	Args a = parse(argc, argv);
	if (cmd == "ca")
		return cmdCa(a);
	if (cmd == "server")
		return cmdServer(a);
	if (cmd == "client")
		return cmdClient(a);
	if (cmd == "inspect")
		return cmdInspect(a);
	if (cmd == "verify")
		return cmdVerify(a);
	if (cmd == "check-server")
		return cmdCheckServer(a);
	usage();
}
