// certs: certificate fields, chains, PKCS#12, passphrases and atomic writes,
// all checked through OpenSSL itself.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <set>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <doctest/doctest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>

#include "base/file_io.h"
#include "certs/certs.h"

using namespace pukaipu;
using namespace pukaipu::certs;
using Strings = std::vector<std::string>;

namespace {

Ca makeCa(const char* cn = "test CA")
{
	auto ca = createCa(cn, kCaDays);
	REQUIRE_MESSAGE(ca, ca.error().message());
	return std::move(*ca);
}

Issued makeServer(const Ca& ca, const std::string& fqdn = "john.example.org")
{
	auto s = issueServerCert(ca, fqdn, { "alt.example.org" }, { "127.0.0.1", "::1" }, kServerDays);
	REQUIRE_MESSAGE(s, s.error().message());
	return std::move(*s);
}

Issued makeClient(const Ca& ca, const char* user = "john")
{
	auto c = issueClientCert(ca, user, kClientDays);
	REQUIRE_MESSAGE(c, c.error().message());
	return std::move(*c);
}

CertInfo infoOf(X509* x)
{
	auto i = inspectCert(x);
	REQUIRE_MESSAGE(i, i.error().message());
	return *i;
}

bool extensionCritical(X509* x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);
	REQUIRE(i >= 0);
	return X509_EXTENSION_get_critical(X509_get_ext(x, i)) == 1;
}

std::string keyId(const ASN1_OCTET_STRING* s)
{
	REQUIRE(s != nullptr);
	return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
		static_cast<std::size_t>(ASN1_STRING_length(s)));
}

// notBefore is backdated 5 minutes; notAfter is `days` from now.
void checkWindow(const CertInfo& i, int days)
{
	std::time_t now = std::time(nullptr);
	CHECK(i.notBefore <= now - kBackdateSeconds + 60);
	CHECK(i.notBefore >= now - kBackdateSeconds - 60);
	CHECK(i.notAfter >= now + days * 86400L - 60);
	CHECK(i.notAfter <= now + days * 86400L + 60);
}

struct TempDir {
	std::string path;
	TempDir()
	{
		char tmpl[] = "/tmp/pukaipu-certs-test-XXXXXX";
		REQUIRE(mkdtemp(tmpl) != nullptr);
		path = tmpl;
	}
	~TempDir()
	{
		std::error_code ec;
		std::filesystem::remove_all(path, ec);
	}
	std::string operator/(const std::string& n) const { return path + "/" + n; }
	Strings entries() const
	{
		Strings out;
		for (const auto& e : std::filesystem::directory_iterator(path))
			out.push_back(e.path().filename().string());
		std::sort(out.begin(), out.end());
		return out;
	}
};

std::string slurp(const std::string& path)
{
	auto r = readFileLimited(path);
	REQUIRE_MESSAGE(r, r.error().message());
	return *r;
}

mode_t modeOf(const std::string& path)
{
	struct stat st {};
	REQUIRE(lstat(path.c_str(), &st) == 0);
	return st.st_mode;
}

} // namespace

TEST_CASE("CA: EC P-256, self-signed, CA:TRUE pathlen:0 critical, keyCertSign+cRLSign, key ids")
{
	Ca ca = makeCa("pukaipu client CA for john");
	CertInfo i = infoOf(ca.cert.get());
	CHECK(i.keyAlgorithm == "EC");
	CHECK(i.keyCurve == "P-256");
	CHECK(i.keyBits == 256);
	CHECK(i.signatureAlgorithm == "ecdsa-with-SHA256");
	CHECK(i.subjectCn == "pukaipu client CA for john");
	CHECK(i.issuerCn == i.subjectCn);
	CHECK(i.selfSigned);
	CHECK(i.isCa);
	CHECK(i.pathLen == 0);
	CHECK(extensionCritical(ca.cert.get(), NID_basic_constraints));
	CHECK(extensionCritical(ca.cert.get(), NID_key_usage));
	CHECK(i.keyUsages == Strings { "keyCertSign", "cRLSign" });
	CHECK(i.extendedKeyUsages.empty());
	CHECK(keyId(X509_get0_subject_key_id(ca.cert.get())).size() == 20);
	CHECK(X509_get_version(ca.cert.get()) == X509_VERSION_3);
	checkWindow(i, kCaDays);
	CHECK(X509_verify(ca.cert.get(), X509_get0_pubkey(ca.cert.get())) == 1);
	// A CA is an anchor, not a client or server certificate (no digitalSignature).
	CHECK_FALSE(verifyChain(ca.cert.get(), ca.cert.get(), Purpose::ClientAuth));
	CHECK_FALSE(verifyChain(ca.cert.get(), ca.cert.get(), Purpose::ServerAuth));
}

TEST_CASE("server certificate: SAN dns+ip, EKU serverAuth only, digitalSignature, AKI, random serial, window")
{
	Ca ca = makeCa();
	Issued s = makeServer(ca);
	CertInfo i = infoOf(s.cert.get());
	CHECK(i.keyAlgorithm == "EC");
	CHECK(i.keyCurve == "P-256");
	CHECK(i.subjectCn == "john.example.org");
	CHECK(i.issuerCn == "test CA");
	CHECK(i.dnsNames == Strings { "john.example.org", "alt.example.org" });
	CHECK(i.ipAddresses == Strings { "127.0.0.1", "::1" });
	CHECK(i.emails.empty());
	CHECK(i.extendedKeyUsages == Strings { "serverAuth" });
	CHECK(i.serverAuth);
	CHECK_FALSE(i.clientAuth);
	CHECK(i.keyUsages == Strings { "digitalSignature" });
	CHECK(extensionCritical(s.cert.get(), NID_key_usage));
	CHECK(extensionCritical(s.cert.get(), NID_basic_constraints));
	CHECK_FALSE(extensionCritical(s.cert.get(), NID_subject_alt_name));
	CHECK_FALSE(i.isCa);
	CHECK_FALSE(i.selfSigned);
	CHECK(keyId(X509_get0_authority_key_id(s.cert.get())) == keyId(X509_get0_subject_key_id(ca.cert.get())));
	checkWindow(i, kServerDays);

	// Serial: positive, at most 16 octets, random (two certificates differ).
	Issued s2 = makeServer(ca);
	CHECK(infoOf(s2.cert.get()).serialHex != i.serialHex);
	CHECK(i.serialHex.size() <= 32);
	CHECK(i.serialHex.size() >= 24); // fails only with probability ~2^-29
	CHECK(i.serialHex[0] != '-');
	// As `openssl x509 -serial` prints it and HAProxy's ssl_c_serial,hex
	// sees it (the front door's serials.map): the INTEGER's content octets,
	// upper-case hex, two digits per octet.
	const ASN1_INTEGER* raw = X509_get0_serialNumber(s.cert.get());
	std::string octets;
	for (int k = 0; k < raw->length; k++) {
		char two[3];
		std::snprintf(two, sizeof(two), "%02X", raw->data[k]);
		octets += two;
	}
	CHECK(i.serialHex == octets);
	CHECK(i.sha256Fingerprint.size() == 32 * 3 - 1);
	// Upper-case hex pairs joined by ':', of the DER's SHA-256 (as browsers show it).
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdLen = 0;
	REQUIRE(X509_digest(s.cert.get(), EVP_sha256(), md, &mdLen));
	std::string want;
	for (unsigned int k = 0; k < mdLen; k++) {
		char pair[4];
		std::snprintf(pair, sizeof(pair), k ? ":%02X" : "%02X", md[k]);
		want += pair;
	}
	CHECK(i.sha256Fingerprint == want);
}

TEST_CASE("server certificate: an IP as fqdn goes into iPAddress; long names drop the CN, SAN critical")
{
	Ca ca = makeCa();
	auto ip = issueServerCert(ca, "192.0.2.7", {}, {}, 30);
	REQUIRE(ip);
	CertInfo i = infoOf(ip->cert.get());
	CHECK(i.dnsNames.empty());
	CHECK(i.ipAddresses == Strings { "192.0.2.7" });
	CHECK(verifyChain(ip->cert.get(), ca.cert.get(), Purpose::ServerAuth, "192.0.2.7"));

	std::string longName = std::string(60, 'a') + ".example.org"; // 72 > 64
	auto l = issueServerCert(ca, longName, {}, {}, 30);
	REQUIRE_MESSAGE(l, l.error().message());
	CertInfo li = infoOf(l->cert.get());
	CHECK(li.subjectCn.empty());
	CHECK(li.dnsNames == Strings { longName });
	CHECK(extensionCritical(l->cert.get(), NID_subject_alt_name));
	CHECK(verifyChain(l->cert.get(), ca.cert.get(), Purpose::ServerAuth, longName));
}

TEST_CASE("server certificate: bad names, IPs and validity are refused")
{
	Ca ca = makeCa();
	for (const char* bad : { "", "*.example.org", "a..b", "-a.example.org", "a-.example.org", "a b.org",
		     "a,DNS:evil.org", "example.org.", "ex_ample.org" }) {
		CAPTURE(bad);
		CHECK_FALSE(issueServerCert(ca, bad, {}, {}, 30));
		CHECK_FALSE(issueServerCert(ca, "ok.example.org", { bad }, {}, 30));
	}
	CHECK_FALSE(issueServerCert(ca, std::string(254, 'a'), {}, {}, 30));
	CHECK_FALSE(issueServerCert(ca, "ok.example.org", {}, { "300.1.1.1" }, 30));
	CHECK_FALSE(issueServerCert(ca, "ok.example.org", {}, { "example.org" }, 30));
	CHECK_FALSE(issueServerCert(ca, "ok.example.org", {}, {}, 0));
	CHECK_FALSE(issueServerCert(ca, "ok.example.org", {}, {}, kMaxServerDays + 1));
	CHECK(issueServerCert(ca, "ok.example.org", {}, {}, kMaxServerDays));
	CHECK(ERR_peek_error() == 0); // failures leave no stale OpenSSL errors behind
}

TEST_CASE("only a CA may issue: a leaf (or a mismatched key) is refused as issuer")
{
	Ca ca = makeCa();
	Issued leaf = makeServer(ca);
	Ca fake { std::move(leaf.cert), std::move(leaf.key) };
	CHECK_FALSE(issueClientCert(fake, "john", 30));
	Ca other = makeCa("other");
	Ca mixed { std::move(ca.cert), std::move(other.key) };
	auto r = issueClientCert(mixed, "john", 30);
	REQUIRE_FALSE(r);
	CHECK(std::string(r.error().what).find("does not match") != std::string::npos);
}

TEST_CASE("chain: verifies against its own CA only, for its own purpose, host and validity window")
{
	Ca ca = makeCa();
	Ca other = makeCa("test CA"); // same name, different key: must not matter
	Issued s = makeServer(ca);
	CHECK(verifyChain(s.cert.get(), ca.cert.get(), Purpose::ServerAuth));
	CHECK(verifyChain(s.cert.get(), ca.cert.get(), Purpose::ServerAuth, "john.example.org"));
	CHECK(verifyChain(s.cert.get(), ca.cert.get(), Purpose::ServerAuth, "alt.example.org"));
	CHECK(verifyChain(s.cert.get(), ca.cert.get(), Purpose::ServerAuth, "::1"));
	CHECK_FALSE(verifyChain(s.cert.get(), ca.cert.get(), Purpose::ServerAuth, "alice.example.org"));
	CHECK_FALSE(verifyChain(s.cert.get(), ca.cert.get(), Purpose::ServerAuth, "10.0.0.1"));
	CHECK_FALSE(verifyChain(s.cert.get(), other.cert.get(), Purpose::ServerAuth));
	CHECK_FALSE(verifyChain(s.cert.get(), ca.cert.get(), Purpose::ClientAuth));

	CertInfo i = infoOf(s.cert.get());
	CHECK(verifyChain(s.cert.get(), ca.cert.get(), Purpose::ServerAuth, {}, i.notBefore + 1));
	CHECK_FALSE(verifyChain(s.cert.get(), ca.cert.get(), Purpose::ServerAuth, {}, i.notBefore - 1));
	CHECK_FALSE(verifyChain(s.cert.get(), ca.cert.get(), Purpose::ServerAuth, {}, i.notAfter + 1));

	// The PEM form too.
	auto leafPem = certToPem(s.cert.get());
	auto caPem = certToPem(ca.cert.get());
	auto otherPem = certToPem(other.cert.get());
	REQUIRE((leafPem && caPem && otherPem));
	CHECK(verifyChain(*leafPem, *caPem, Purpose::ServerAuth, "john.example.org"));
	auto r = verifyChain(*leafPem, *otherPem, Purpose::ServerAuth);
	REQUIRE_FALSE(r);
	CHECK(std::string(r.error().what).find("verification failed") != std::string::npos);
}

TEST_CASE("client certificate: CN=user, EKU clientAuth only, no SAN; CA-A's cert fails against CA-B")
{
	Ca a = makeCa("client CA john");
	Ca b = makeCa("client CA alice");
	Issued c = makeClient(a, "john");
	CertInfo i = infoOf(c.cert.get());
	CHECK(i.subject == "CN=john");
	CHECK(i.keyAlgorithm == "EC");
	CHECK(i.keyCurve == "P-256");
	CHECK(i.extendedKeyUsages == Strings { "clientAuth" });
	CHECK(i.clientAuth);
	CHECK_FALSE(i.serverAuth);
	CHECK(i.keyUsages == Strings { "digitalSignature" });
	CHECK(i.dnsNames.empty());
	CHECK(i.ipAddresses.empty());
	CHECK(i.emails.empty());
	CHECK(X509_get_ext_by_NID(c.cert.get(), NID_subject_alt_name, -1) < 0);
	CHECK_FALSE(i.isCa);
	checkWindow(i, kClientDays);

	CHECK(verifyChain(c.cert.get(), a.cert.get(), Purpose::ClientAuth));
	CHECK_FALSE(verifyChain(c.cert.get(), b.cert.get(), Purpose::ClientAuth));
	CHECK_FALSE(verifyChain(c.cert.get(), a.cert.get(), Purpose::ServerAuth));

	CHECK_FALSE(issueClientCert(a, "", 30));
	CHECK_FALSE(issueClientCert(a, "jo\nhn", 30));
	CHECK_FALSE(issueClientCert(a, std::string(65, 'j'), 30));
}

namespace {

// PBES2 with PBKDF2(HMAC-SHA256) and AES-256-CBC?
void checkPbes2Aes256(const X509_ALGOR* alg)
{
	REQUIRE(alg != nullptr);
	CHECK(OBJ_obj2nid(alg->algorithm) == NID_pbes2);
	PBE2PARAM* pbe2 = static_cast<PBE2PARAM*>(ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), alg->parameter));
	REQUIRE(pbe2 != nullptr);
	CHECK(OBJ_obj2nid(pbe2->encryption->algorithm) == NID_aes_256_cbc);
	CHECK(OBJ_obj2nid(pbe2->keyfunc->algorithm) == NID_id_pbkdf2);
	PBKDF2PARAM* kdf = static_cast<PBKDF2PARAM*>(
		ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM), pbe2->keyfunc->parameter));
	REQUIRE(kdf != nullptr);
	REQUIRE(kdf->prf != nullptr); // absent would mean the default, HMAC-SHA1
	CHECK(OBJ_obj2nid(kdf->prf->algorithm) == NID_hmacWithSHA256);
	PBKDF2PARAM_free(kdf);
	PBE2PARAM_free(pbe2);
}

PKCS12* parseDer(const std::string& der)
{
	const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
	PKCS12* p12 = d2i_PKCS12(nullptr, &p, static_cast<long>(der.size()));
	REQUIRE(p12 != nullptr);
	return p12;
}

} // namespace

TEST_CASE("PKCS#12: opens with the passphrase, not with a wrong one; AES-256-CBC/PBKDF2-SHA256, MAC SHA-256")
{
	Ca ca = makeCa("client CA john");
	Issued c = makeClient(ca, "john");
	auto pass = randomPassphrase();
	REQUIRE(pass);
	auto der = toPkcs12(c, ca.cert.get(), *pass, "john (pukaipu)");
	REQUIRE_MESSAGE(der, der.error().message());

	PKCS12* p12 = parseDer(*der);
	EVP_PKEY* key = nullptr;
	X509* cert = nullptr;
	STACK_OF(X509)* chain = nullptr;
	REQUIRE(PKCS12_parse(p12, pass->c_str(), &key, &cert, &chain) == 1);
	CHECK(EVP_PKEY_eq(key, c.key.get()) == 1);
	CHECK(X509_cmp(cert, c.cert.get()) == 0);
	REQUIRE(chain != nullptr);
	REQUIRE(sk_X509_num(chain) == 1);
	CHECK(X509_cmp(sk_X509_value(chain, 0), ca.cert.get()) == 0);
	int nameLen = 0;
	unsigned char* alias = X509_alias_get0(cert, &nameLen);
	CHECK(std::string(reinterpret_cast<char*>(alias), static_cast<std::size_t>(nameLen)) == "john (pukaipu)");
	EVP_PKEY_free(key);
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);

	// Wrong passphrases: MAC check fails and parse refuses.
	for (const char* wrong : { "", "wrong", "00000-00000-00000-00000" }) {
		CAPTURE(wrong);
		CHECK(PKCS12_verify_mac(p12, wrong, -1) == 0);
		key = nullptr;
		cert = nullptr;
		CHECK(PKCS12_parse(p12, wrong, &key, &cert, nullptr) == 0);
		CHECK(key == nullptr);
		CHECK(cert == nullptr);
	}
	CHECK(PKCS12_verify_mac(p12, pass->c_str(), -1) == 1);
	ERR_clear_error();

	// The algorithms, read from the file itself.
	const ASN1_OCTET_STRING* macValue = nullptr;
	const X509_ALGOR* macAlg = nullptr;
	const ASN1_OCTET_STRING* salt = nullptr;
	const ASN1_INTEGER* iter = nullptr;
	PKCS12_get0_mac(&macValue, &macAlg, &salt, &iter, p12);
	REQUIRE(macAlg != nullptr);
	const ASN1_OBJECT* macObj = nullptr;
	X509_ALGOR_get0(&macObj, nullptr, nullptr, macAlg);
	CHECK(OBJ_obj2nid(macObj) == NID_sha256);
	CHECK(ASN1_STRING_length(macValue) == 32);

	STACK_OF(PKCS7)* safes = PKCS12_unpack_authsafes(p12);
	REQUIRE(safes != nullptr);
	int shroudedKeys = 0, encryptedSafes = 0, certsInEncrypted = 0, plainKeys = 0, plainCerts = 0;
	for (int s = 0; s < sk_PKCS7_num(safes); s++) {
		PKCS7* p7 = sk_PKCS7_value(safes, s);
		STACK_OF(PKCS12_SAFEBAG)* bags = nullptr;
		bool encrypted = false;
		switch (OBJ_obj2nid(p7->type)) {
		case NID_pkcs7_encrypted:
			encrypted = true;
			encryptedSafes++;
			checkPbes2Aes256(p7->d.encrypted->enc_data->algorithm);
			bags = PKCS12_unpack_p7encdata(p7, pass->c_str(), -1);
			break;
		case NID_pkcs7_data:
			bags = PKCS12_unpack_p7data(p7);
			break;
		default:
			FAIL("unexpected PKCS#7 content type");
		}
		REQUIRE(bags != nullptr);
		for (int b = 0; b < sk_PKCS12_SAFEBAG_num(bags); b++) {
			const PKCS12_SAFEBAG* bag = sk_PKCS12_SAFEBAG_value(bags, b);
			switch (PKCS12_SAFEBAG_get_nid(bag)) {
			case NID_pkcs8ShroudedKeyBag: {
				shroudedKeys++;
				const X509_ALGOR* alg = nullptr;
				X509_SIG_get0(PKCS12_SAFEBAG_get0_pkcs8(bag), &alg, nullptr);
				checkPbes2Aes256(alg);
				break;
			}
			case NID_keyBag:
				plainKeys++;
				break;
			case NID_certBag:
				(encrypted ? certsInEncrypted : plainCerts)++;
				break;
			}
		}
		sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	}
	sk_PKCS7_pop_free(safes, PKCS7_free);
	PKCS12_free(p12);
	CHECK(shroudedKeys == 1);
	CHECK(plainKeys == 0);
	CHECK(encryptedSafes == 1);
	CHECK(certsInEncrypted == 2); // leaf + CA
	CHECK(plainCerts == 0);

	CHECK_FALSE(toPkcs12(c, nullptr, "", "x"));
	auto noChain = toPkcs12(c, nullptr, *pass, "x");
	REQUIRE(noChain);
	CHECK(noChain->size() < der->size());
}

TEST_CASE("passphrase: 4 groups of 5 from the 32-letter alphabet, 100 bits, uniform, unique")
{
	CHECK(kPassphraseBits == 100);
	std::set<std::string> seen;
	std::vector<int> counts(32, 0);
	const int n = 2000;
	for (int k = 0; k < n; k++) {
		auto p = randomPassphrase();
		REQUIRE(p);
		REQUIRE(p->size() == 23);
		for (std::size_t i = 0; i < p->size(); i++) {
			if (i == 5 || i == 11 || i == 17) {
				REQUIRE((*p)[i] == '-');
				continue;
			}
			std::size_t pos = kPassphraseAlphabet.find((*p)[i]);
			REQUIRE(pos != std::string_view::npos);
			counts[pos]++;
		}
		seen.insert(*p);
	}
	CHECK(seen.size() == n);
	// 40000 characters: 1250 expected per letter; +-20% is > 11 sigma.
	for (int c = 0; c < 32; c++) {
		CAPTURE(c);
		CHECK(counts[c] > 1000);
		CHECK(counts[c] < 1500);
	}
	for (char ambiguous : { 'i', 'l', 'o', 'u', 'I', 'L', 'O', 'U' })
		CHECK(kPassphraseAlphabet.find(ambiguous) == std::string_view::npos);
}

TEST_CASE("PEM: round trips; encrypted keys refused without prompting; chains in order; garbage refused")
{
	Ca ca = makeCa();
	Issued s = makeServer(ca);
	auto certPem = certToPem(s.cert.get());
	auto keyPem = keyToPem(s.key.get());
	REQUIRE((certPem && keyPem));
	CHECK(certPem->rfind("-----BEGIN CERTIFICATE-----", 0) == 0);
	CHECK(keyPem->rfind("-----BEGIN PRIVATE KEY-----", 0) == 0);
	auto cert = certFromPem(*certPem);
	auto key = keyFromPem(*keyPem);
	REQUIRE((cert && key));
	CHECK(X509_cmp(cert->get(), s.cert.get()) == 0);
	CHECK(EVP_PKEY_eq(key->get(), s.key.get()) == 1);

	auto caPem = certToPem(ca.cert.get());
	REQUIRE(caPem);
	auto chain = certChainFromPem(*certPem + *caPem);
	REQUIRE(chain);
	REQUIRE(chain->size() == 2);
	CHECK(X509_cmp((*chain)[1].get(), ca.cert.get()) == 0);

	BIO* bio = BIO_new(BIO_s_mem());
	REQUIRE(PEM_write_bio_PrivateKey(bio, s.key.get(), EVP_aes_256_cbc(),
		reinterpret_cast<const unsigned char*>("pw"), 2, nullptr, nullptr));
	char* data = nullptr;
	long len = BIO_get_mem_data(bio, &data);
	std::string encrypted(data, static_cast<std::size_t>(len));
	BIO_free(bio);
	CHECK_FALSE(keyFromPem(encrypted)); // and the test did not hang on a prompt

	CHECK_FALSE(certFromPem("garbage"));
	CHECK_FALSE(certChainFromPem(""));
	CHECK_FALSE(keyFromPem(*certPem));
	CHECK(ERR_peek_error() == 0);
}

TEST_CASE("loadCa: loads a written CA; refuses a mismatched key and a non-CA certificate")
{
	TempDir d;
	Ca ca = makeCa();
	Ca other = makeCa();
	Issued leaf = makeServer(ca);
	auto write = [&](const std::string& name, const Result<std::string>& pem, mode_t mode) {
		REQUIRE(pem);
		REQUIRE(writeFileAtomic(d / name, *pem, mode));
	};
	write("ca.crt", certToPem(ca.cert.get()), 0644);
	write("ca.key", keyToPem(ca.key.get()), 0600);
	write("other.key", keyToPem(other.key.get()), 0600);
	write("leaf.crt", certToPem(leaf.cert.get()), 0644);
	write("leaf.key", keyToPem(leaf.key.get()), 0600);

	auto loaded = loadCa(d / "ca.crt", d / "ca.key");
	REQUIRE_MESSAGE(loaded, loaded.error().message());
	CHECK(X509_cmp(loaded->cert.get(), ca.cert.get()) == 0);
	auto issued = issueClientCert(*loaded, "john", 30);
	REQUIRE(issued);
	CHECK(verifyChain(issued->cert.get(), ca.cert.get(), Purpose::ClientAuth));

	CHECK_FALSE(loadCa(d / "ca.crt", d / "other.key"));
	CHECK_FALSE(loadCa(d / "leaf.crt", d / "leaf.key"));
	auto missing = loadCa(d / "nope.crt", d / "ca.key");
	REQUIRE_FALSE(missing);
	CHECK(missing.error().errno_ == ENOENT);
}

TEST_CASE("external server certificate: accepted when usable, refused with the reason otherwise")
{
	Ca ca = makeCa();
	Issued s = makeServer(ca);
	Issued c = makeClient(ca);
	auto pem = [](X509* x) { return *certToPem(x); };
	auto key = [](EVP_PKEY* k) { return *keyToPem(k); };
	std::string sPem = pem(s.cert.get()), sKey = key(s.key.get());

	auto ok = checkExternalServerCert(sPem, sKey, "john.example.org");
	REQUIRE_MESSAGE(ok, ok.error().message());
	CHECK(ok->chainLength == 1);
	CHECK(ok->warnings.empty());
	CHECK(ok->leaf.subjectCn == "john.example.org");
	auto full = checkExternalServerCert(sPem + pem(ca.cert.get()), sKey);
	REQUIRE(full);
	CHECK(full->chainLength == 2);

	auto refused = [&](std::string_view cert, std::string_view k, std::string_view fqdn, std::time_t at,
			       const char* why) {
		CAPTURE(why);
		auto r = checkExternalServerCert(cert, k, fqdn, at);
		REQUIRE_FALSE(r);
		CHECK(std::string(r.error().what).find(why) != std::string::npos);
	};
	refused(sPem, key(c.key.get()), {}, 0, "does not belong");
	refused(sPem, sKey, "alice.example.org", 0, "does not name");
	refused(pem(c.cert.get()), key(c.key.get()), {}, 0, "not for TLS servers");
	refused(pem(ca.cert.get()), key(ca.key.get()), {}, 0, "is a CA");
	refused(sPem, sKey, {}, ok->leaf.notAfter + 1, "expired");
	refused(sPem, sKey, {}, ok->leaf.notBefore - 1, "not valid before");
	refused(sPem + pem(makeCa().cert.get()), sKey, {}, 0, "not issued by");
	refused("nothing here", sKey, {}, 0, "server certificate");

	auto soon = checkExternalServerCert(sPem, sKey, {}, ok->leaf.notAfter - 10 * 86400);
	REQUIRE(soon);
	REQUIRE(soon->warnings.size() == 1);
	CHECK(soon->warnings[0].rfind("expires in 10 days", 0) == 0);
}

// --- atomic writes -----------------------------------------------------------

TEST_CASE("atomic write: exact mode from the start whatever the umask, content, no temp left")
{
	TempDir d;
	mode_t old = umask(0);
	REQUIRE(writeFileAtomic(d / "secret.key", "s3cret", 0600));
	REQUIRE(writeFileAtomic(d / "public.crt", "cert", 0644));
	umask(077);
	REQUIRE(writeFileAtomic(d / "public2.crt", "cert", 0644)); // mode is set, not masked
	umask(old);
	CHECK((modeOf(d / "secret.key") & 07777) == 0600);
	CHECK((modeOf(d / "public.crt") & 07777) == 0644);
	CHECK((modeOf(d / "public2.crt") & 07777) == 0644);
	CHECK(slurp(d / "secret.key") == "s3cret");
	struct stat st {};
	REQUIRE(stat((d / "secret.key").c_str(), &st) == 0);
	CHECK(st.st_uid == geteuid());
	CHECK(d.entries() == Strings { "public.crt", "public2.crt", "secret.key" });

	// Overwrite: new content and mode, same single name.
	REQUIRE(writeFileAtomic(d / "public.crt", "new", 0600));
	CHECK(slurp(d / "public.crt") == "new");
	CHECK((modeOf(d / "public.crt") & 07777) == 0600);
	CHECK(d.entries() == Strings { "public.crt", "public2.crt", "secret.key" });

	// Relative paths and bad names.
	CHECK_FALSE(writeFileAtomic(d / "missing-dir/x", "x", 0600));
	CHECK_FALSE(writeFileAtomic(d.path + "/", "x", 0600));
	CHECK_FALSE(writeFileAtomic(d / "..", "x", 0600));
}

TEST_CASE("atomic write: a secret's temp file is never seen with a wider mode while it holds data")
{
	TempDir d;
	int dirFd = open(d.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	REQUIRE(dirFd >= 0);
	mode_t old = umask(0); // the widest a careless create would get
	std::atomic<bool> done { false };
	std::atomic<int> seen { 0 }, wide { 0 };
	std::thread watcher([&] {
		while (!done.load()) {
			struct stat st {};
			if (fstatat(dirFd, "tmp", &st, AT_SYMLINK_NOFOLLOW) == 0) {
				seen++;
				if ((st.st_mode & 077) != 0)
					wide++;
			}
		}
	});
	std::string big(32 << 20, 'k');
	auto r = writeFileAtomicAt(dirFd, "secret.key", big, 0600, {}, "tmp");
	done = true;
	watcher.join();
	umask(old);
	close(dirFd);
	REQUIRE_MESSAGE(r, r.error().message());
	MESSAGE("temp file observed " << seen.load() << " times");
	CHECK(wide.load() == 0);
	CHECK((modeOf(d / "secret.key") & 07777) == 0600);
	CHECK(d.entries() == Strings { "secret.key" });
}

TEST_CASE("atomic write: refuses a symlink planted at the temp path, never follows or removes it")
{
	TempDir d;
	REQUIRE(writeFileAtomic(d / "server.key", "old", 0600));
	REQUIRE(symlink((d / "victim").c_str(), (d / ".server.key.tmp").c_str()) == 0);
	int dirFd = open(d.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	REQUIRE(dirFd >= 0);
	auto r = writeFileAtomicAt(dirFd, "server.key", "new", 0600, {}, ".server.key.tmp");
	REQUIRE_FALSE(r);
	CHECK(r.error().errno_ == EEXIST);
	// A symlink to an existing file: same answer.
	REQUIRE(writeFileAtomic(d / "victim", "precious", 0644));
	r = writeFileAtomicAt(dirFd, "server.key", "new", 0600, {}, ".server.key.tmp");
	close(dirFd);
	REQUIRE_FALSE(r);
	CHECK(slurp(d / "victim") == "precious");
	CHECK(S_ISLNK(modeOf(d / ".server.key.tmp"))); // not ours: left alone
	CHECK(slurp(d / "server.key") == "old");
}

TEST_CASE("atomic write: a symlink AT the target is replaced, not written through")
{
	TempDir d;
	REQUIRE(writeFileAtomic(d / "victim", "precious", 0644));
	REQUIRE(symlink((d / "victim").c_str(), (d / "client-ca.crt").c_str()) == 0);
	REQUIRE(writeFileAtomic(d / "client-ca.crt", "new", 0644));
	CHECK(S_ISREG(modeOf(d / "client-ca.crt")));
	CHECK(slurp(d / "client-ca.crt") == "new");
	CHECK(slurp(d / "victim") == "precious");
}

TEST_CASE("atomic write: a failing write leaves the old file intact and no temp file")
{
	TempDir d;
	REQUIRE(writeFileAtomic(d / "instance.json", "{\"old\":1}", 0644));
	// RLIMIT_FSIZE makes write(2) fail with EFBIG once the temp file would
	// exceed 4 bytes (SIGXFSZ ignored, or it would kill the test).
	struct rlimit saved {};
	REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
	auto oldHandler = signal(SIGXFSZ, SIG_IGN);
	struct rlimit small = saved;
	small.rlim_cur = 4;
	REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
	auto r = writeFileAtomic(d / "instance.json", "{\"new\":2, \"longer\":true}", 0644);
	REQUIRE(setrlimit(RLIMIT_FSIZE, &saved) == 0);
	signal(SIGXFSZ, oldHandler);
	REQUIRE_FALSE(r);
	CHECK(r.error().errno_ == EFBIG);
	CHECK(slurp(d / "instance.json") == "{\"old\":1}");
	CHECK(d.entries() == Strings { "instance.json" });
}

TEST_CASE("atomic write: owner is applied before the data lands (root only)")
{
	if (geteuid() != 0) {
		MESSAGE("skipped: needs root to chown");
		return;
	}
	TempDir d;
	REQUIRE(writeFileAtomic(d / "owned", "x", 0640, FileOwner { 3999, 3999 }));
	struct stat st {};
	REQUIRE(stat((d / "owned").c_str(), &st) == 0);
	CHECK(st.st_uid == 3999);
	CHECK(st.st_gid == 3999);
	CHECK((st.st_mode & 07777) == 0640);
}

TEST_CASE("readFileLimited: whole regular files only, bounded")
{
	TempDir d;
	REQUIRE(writeFileAtomic(d / "f", std::string(100, 'x'), 0600));
	CHECK(readFileLimited(d / "f", 100));
	CHECK_FALSE(readFileLimited(d / "f", 99));
	CHECK_FALSE(readFileLimited(d.path));
	auto missing = readFileLimited(d / "nope");
	REQUIRE_FALSE(missing);
	CHECK(missing.error().errno_ == ENOENT);
}

TEST_CASE("host CA nameConstraints: critical, permitted domains, every IP excluded; enforced by verifyChain")
{
	NameConstraints nc { { "example.test", "other.test" } };
	auto ca = createCa("pukaipu host CA (t)", 30, &nc);
	REQUIRE(ca);
	CertInfo i = infoOf(ca->cert.get());
	CHECK(i.hasNameConstraints);
	CHECK(i.nameConstraintsCritical);
	CHECK(i.permittedDns == Strings { "example.test", "other.test" });
	CHECK(i.excludedIps == Strings { "0.0.0.0/0", "::/0" });
	CHECK_FALSE(infoOf(makeCa("plain").cert.get()).hasNameConstraints);
	auto inside = issueServerCert(*ca, "john.example.test", { "other.test" }, {}, 30);
	REQUIRE(inside);
	CHECK(verifyChain(inside->cert.get(), ca->cert.get(), Purpose::ServerAuth, "john.example.test"));
	CHECK(signedBy(*certToPem(inside->cert.get()), ca->cert.get()));
	CHECK_FALSE(signedBy(*certToPem(inside->cert.get()), makeCa("other").cert.get()));
	// The CA's key signs anything; verification refuses what it may not vouch for.
	for (auto [fqdn, ips] : { std::pair<std::string, Strings> { "bank.example.com", {} },
		     std::pair<std::string, Strings> { "xexample.test", {} },
		     std::pair<std::string, Strings> { "a.example.test", { "127.0.0.1" } },
		     std::pair<std::string, Strings> { "b.example.test", { "2001:db8::1" } } }) {
		CAPTURE(fqdn);
		auto leaf = issueServerCert(*ca, fqdn, {}, ips, 30);
		REQUIRE(leaf);
		auto v = verifyChain(leaf->cert.get(), ca->cert.get(), Purpose::ServerAuth);
		REQUIRE_FALSE(v);
		CHECK(v.error().message().find("subtree violation") != std::string::npos);
	}
	NameConstraints none;
	CHECK_FALSE(createCa("x", 30, &none));
	NameConstraints bad { { "1.2.3.4/8" } };
	CHECK_FALSE(createCa("x", 30, &bad));
}
