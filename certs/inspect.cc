// Looking at certificates: inspect, verifyChain, loadCa, checkExternalServerCert.
#include <arpa/inet.h>
#include <cstdio>
#include <cstring>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>

#include "base/file_io.h"
#include "base/net_literal.h"
#include "certs.h"
#include "ossl.h"

namespace pukaipu::certs {

using namespace detail;

namespace {

std::string asn1ToUtf8(const ASN1_STRING* s)
{
	unsigned char* out = nullptr;
	int n = ASN1_STRING_to_UTF8(&out, s);
	if (n < 0) {
		ERR_clear_error();
		return {};
	}
	std::string r(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
	OPENSSL_free(out);
	return r;
}

std::string nameToString(const X509_NAME* name)
{
	BioPtr bio(BIO_new(BIO_s_mem()));
	if (!bio)
		return {};
	// RFC 2253, UTF-8 kept as is (not escaped as \XX).
	X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
	return bioContents(bio.get());
}

std::string commonName(const X509_NAME* name)
{
	int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (i < 0)
		return {};
	return asn1ToUtf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
}

Result<std::time_t> toTimeT(const ASN1_TIME* t)
{
	struct tm tm {};
	if (!ASN1_TIME_to_tm(t, &tm))
		return sslFail("ASN1_TIME_to_tm");
	return timegm(&tm);
}

std::string objName(const ASN1_OBJECT* obj)
{
	int nid = OBJ_obj2nid(obj);
	if (nid != NID_undef)
		return OBJ_nid2sn(nid);
	char buf[128];
	OBJ_obj2txt(buf, sizeof(buf), obj, 1);
	return buf;
}

std::string ipToString(const ASN1_OCTET_STRING* s)
{
	char buf[INET6_ADDRSTRLEN] = {};
	int len = ASN1_STRING_length(s);
	const unsigned char* p = ASN1_STRING_get0_data(s);
	if (len == 4)
		inet_ntop(AF_INET, p, buf, sizeof(buf));
	else if (len == 16)
		inet_ntop(AF_INET6, p, buf, sizeof(buf));
	else
		return "<invalid IP of " + std::to_string(len) + " bytes>";
	return buf;
}

// A nameConstraints iPAddress subtree: address then mask, "ADDR/PREFIX".
std::string subtreeIpToString(const ASN1_OCTET_STRING* s)
{
	int len = ASN1_STRING_length(s);
	const unsigned char* p = ASN1_STRING_get0_data(s);
	if (len != 8 && len != 32)
		return "<invalid IP subtree of " + std::to_string(len) + " bytes>";
	char buf[INET6_ADDRSTRLEN] = {};
	inet_ntop(len == 8 ? AF_INET : AF_INET6, p, buf, sizeof(buf));
	int prefix = 0;
	for (int i = len / 2; i < len; i++)
		prefix += __builtin_popcount(p[i]);
	return std::string(buf) + "/" + std::to_string(prefix);
}

void readKey(EVP_PKEY* pk, CertInfo& info)
{
	if (!pk)
		return;
	int id = EVP_PKEY_get_base_id(pk);
	info.keyBits = EVP_PKEY_get_bits(pk);
	switch (id) {
	case EVP_PKEY_EC: {
		info.keyAlgorithm = "EC";
		char group[80] = {};
		if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), nullptr)) {
			const char* nist = EC_curve_nid2nist(OBJ_txt2nid(group));
			info.keyCurve = nist ? nist : group;
		}
		break;
	}
	case EVP_PKEY_RSA:
		info.keyAlgorithm = "RSA";
		break;
	case EVP_PKEY_ED25519:
		info.keyAlgorithm = "ED25519";
		break;
	case EVP_PKEY_ED448:
		info.keyAlgorithm = "ED448";
		break;
	default: {
		const char* n = OBJ_nid2sn(id);
		info.keyAlgorithm = n ? n : "unknown";
	}
	}
	ERR_clear_error();
}

struct KeyUsageName {
	uint32_t bit;
	const char* name;
};
constexpr KeyUsageName kKeyUsages[] = {
	{ KU_DIGITAL_SIGNATURE, "digitalSignature" },
	{ KU_NON_REPUDIATION, "nonRepudiation" },
	{ KU_KEY_ENCIPHERMENT, "keyEncipherment" },
	{ KU_DATA_ENCIPHERMENT, "dataEncipherment" },
	{ KU_KEY_AGREEMENT, "keyAgreement" },
	{ KU_KEY_CERT_SIGN, "keyCertSign" },
	{ KU_CRL_SIGN, "cRLSign" },
	{ KU_ENCIPHER_ONLY, "encipherOnly" },
	{ KU_DECIPHER_ONLY, "decipherOnly" },
};

} // namespace

std::string formatTime(std::time_t t)
{
	struct tm tm {};
	char buf[64];
	if (!gmtime_r(&t, &tm) || !strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm))
		return std::to_string(static_cast<long long>(t));
	return buf;
}

Result<CertInfo> inspectCert(X509* x)
{
	if (!x)
		return fail("inspect: no certificate");
	// Computes the cached extension flags; a malformed extension shows here.
	uint32_t flags = X509_get_extension_flags(x);
	if (flags & EXFLAG_INVALID)
		return fail("certificate has invalid extensions");

	CertInfo info;
	info.subject = nameToString(X509_get_subject_name(x));
	info.subjectCn = commonName(X509_get_subject_name(x));
	info.issuer = nameToString(X509_get_issuer_name(x));
	info.issuerCn = commonName(X509_get_issuer_name(x));
	info.subjectHash = X509_subject_name_hash(x);

	BnPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr));
	if (serial) {
		OsslStringPtr hex(BN_bn2hex(serial.get()));
		if (hex)
			info.serialHex = hex.get();
	}

	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdLen = 0;
	if (!X509_digest(x, EVP_sha256(), md, &mdLen))
		return sslFail("X509_digest");
	// "AB:CD:...": upper case, ':' between bytes, as browsers show it.
	char hex[EVP_MAX_MD_SIZE * 3];
	if (!OPENSSL_buf2hexstr_ex(hex, sizeof(hex), nullptr, md, mdLen, ':'))
		return sslFail("OPENSSL_buf2hexstr_ex");
	info.sha256Fingerprint = hex;

	const char* sig = OBJ_nid2ln(X509_get_signature_nid(x));
	info.signatureAlgorithm = sig ? sig : "unknown";
	readKey(X509_get0_pubkey(x), info);

	GenNamesPtr sans(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr)));
	for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans.get()); i++) {
		const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans.get(), i);
		int type = 0;
		const void* v = GENERAL_NAME_get0_value(gn, &type);
		if (type == GEN_DNS)
			info.dnsNames.push_back(asn1ToUtf8(static_cast<const ASN1_STRING*>(v)));
		else if (type == GEN_IPADD)
			info.ipAddresses.push_back(ipToString(static_cast<const ASN1_OCTET_STRING*>(v)));
		else if (type == GEN_EMAIL)
			info.emails.push_back(asn1ToUtf8(static_cast<const ASN1_STRING*>(v)));
	}

	Handle<EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free> eku(static_cast<EXTENDED_KEY_USAGE*>(X509_get_ext_d2i(x, NID_ext_key_usage, nullptr, nullptr)));
	for (int i = 0; eku && i < sk_ASN1_OBJECT_num(eku.get()); i++) {
		const ASN1_OBJECT* obj = sk_ASN1_OBJECT_value(eku.get(), i);
		info.extendedKeyUsages.push_back(objName(obj));
		int nid = OBJ_obj2nid(obj);
		info.serverAuth |= nid == NID_server_auth;
		info.clientAuth |= nid == NID_client_auth;
	}

	uint32_t ku = X509_get_key_usage(x);
	if (ku != UINT32_MAX)
		for (const KeyUsageName& k : kKeyUsages)
			if (ku & k.bit)
				info.keyUsages.push_back(k.name);

	int ncCrit = 0;
	Handle<NAME_CONSTRAINTS, NAME_CONSTRAINTS_free> nc(
		static_cast<NAME_CONSTRAINTS*>(X509_get_ext_d2i(x, NID_name_constraints, &ncCrit, nullptr)));
	if (nc) {
		info.hasNameConstraints = true;
		info.nameConstraintsCritical = ncCrit == 1;
		for (int i = 0; nc->permittedSubtrees && i < sk_GENERAL_SUBTREE_num(nc->permittedSubtrees); i++) {
			const GENERAL_NAME* gn = sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, i)->base;
			if (gn->type == GEN_DNS)
				info.permittedDns.push_back(asn1ToUtf8(gn->d.dNSName));
		}
		for (int i = 0; nc->excludedSubtrees && i < sk_GENERAL_SUBTREE_num(nc->excludedSubtrees); i++) {
			const GENERAL_NAME* gn = sk_GENERAL_SUBTREE_value(nc->excludedSubtrees, i)->base;
			if (gn->type == GEN_IPADD)
				info.excludedIps.push_back(subtreeIpToString(gn->d.iPAddress));
		}
	}

	info.isCa = (flags & EXFLAG_CA) != 0;
	info.pathLen = X509_get_pathlen(x);
	info.selfSigned = X509_self_signed(x, 1) == 1;

	TRY(nb, toTimeT(X509_get0_notBefore(x)));
	TRY(na, toTimeT(X509_get0_notAfter(x)));
	info.notBefore = *nb;
	info.notAfter = *na;
	ERR_clear_error();
	return info;
}

Result<CertInfo> inspect(std::string_view pem)
{
	TRY(x, certFromPem(pem));
	return inspectCert(x->get());
}

Result<void> verifyChain(X509* leaf, X509* ca, Purpose purpose, std::string_view hostname, std::time_t at)
{
	if (!leaf || !ca)
		return fail("verify: certificate missing");
	// A fresh store has no default paths: the CA given here is the only anchor.
	Handle<X509_STORE, X509_STORE_free> store(X509_STORE_new());
	Handle<X509_STORE_CTX, X509_STORE_CTX_free> ctx(X509_STORE_CTX_new());
	if (!store || !ctx)
		return sslFail("X509_STORE_new");
	if (!X509_STORE_add_cert(store.get(), ca))
		return sslFail("X509_STORE_add_cert");
	if (!X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr))
		return sslFail("X509_STORE_CTX_init");
	int p = purpose == Purpose::ClientAuth ? X509_PURPOSE_SSL_CLIENT : X509_PURPOSE_SSL_SERVER;
	if (!X509_STORE_CTX_set_purpose(ctx.get(), p))
		return sslFail("X509_STORE_CTX_set_purpose");
	X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
	X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT);
	if (at != 0)
		X509_VERIFY_PARAM_set_time(param, at);
	if (!hostname.empty()) {
		std::string h(hostname);
		auto ip = parseIpLiteral(h);
		int ok = ip ? X509_VERIFY_PARAM_set1_ip(param, ip->bytes, ip->size())
			    : X509_VERIFY_PARAM_set1_host(param, h.data(), h.size());
		if (!ok)
			return sslFail("set expected host name");
	}
	if (X509_verify_cert(ctx.get()) != 1) {
		int err = X509_STORE_CTX_get_error(ctx.get());
		int depth = X509_STORE_CTX_get_error_depth(ctx.get());
		ERR_clear_error();
		return fail("certificate verification failed at depth %d: %s", depth, X509_verify_cert_error_string(err));
	}
	return {};
}

bool signedBy(std::string_view leafPem, X509* ca)
{
	auto leaf = certFromPem(leafPem);
	if (!leaf || !ca)
		return false;
	bool ok = X509_check_issued(ca, leaf->get()) == X509_V_OK && X509_verify(leaf->get(), X509_get0_pubkey(ca)) == 1;
	ERR_clear_error();
	return ok;
}

Result<void> verifyChain(std::string_view leafPem, std::string_view caPem, Purpose purpose, std::string_view hostname,
	std::time_t at)
{
	TRY(leaf, certFromPem(leafPem));
	TRY(ca, certFromPem(caPem));
	return verifyChain(leaf->get(), ca->get(), purpose, hostname, at);
}

Result<Ca> loadCa(const std::string& certPath, const std::string& keyPath)
{
	TRY(certPem, readFileLimited(certPath));
	TRY(keyPem, readFileLimited(keyPath));
	// The key's PEM text is wiped whatever happens below.
	struct Wipe {
		std::string& s;
		~Wipe() { OPENSSL_cleanse(s.data(), s.size()); }
	} wipe { *keyPem };
	TRY_CTX(key, keyFromPem(*keyPem), "CA key '%s'", keyPath.c_str());
	TRY_CTX(cert, certFromPem(*certPem), "CA certificate '%s'", certPath.c_str());
	if (X509_check_private_key(cert->get(), key->get()) != 1) {
		ERR_clear_error();
		return fail("CA key '%s' does not belong to certificate '%s'", keyPath.c_str(), certPath.c_str());
	}
	uint32_t flags = X509_get_extension_flags(cert->get());
	uint32_t ku = X509_get_key_usage(cert->get());
	if (!(flags & EXFLAG_CA) || (ku != UINT32_MAX && !(ku & KU_KEY_CERT_SIGN)))
		return fail("'%s' is not a CA certificate that may sign certificates", certPath.c_str());
	return Ca { std::move(*cert), std::move(*key) };
}

Result<ServerCertCheck> checkExternalServerCert(std::string_view certPem, std::string_view keyPem,
	std::string_view fqdn, std::time_t at)
{
	TRY_CTX(chain, certChainFromPem(certPem), "server certificate");
	TRY_CTX(key, keyFromPem(keyPem), "server key");
	X509* leaf = chain->front().get();
	if (X509_check_private_key(leaf, key->get()) != 1) {
		ERR_clear_error();
		return fail("the server key does not belong to the server certificate");
	}
	for (std::size_t i = 0; i + 1 < chain->size(); i++) {
		if (X509_check_issued((*chain)[i + 1].get(), (*chain)[i].get()) != X509_V_OK)
			return fail("server certificate file: certificate %zu is not issued by certificate %zu "
				    "(expected the leaf first, then each issuer)",
				i + 1, i + 2);
	}

	TRY(info, inspectCert(leaf));
	std::time_t now = at != 0 ? at : std::time(nullptr);
	if (info->notBefore > now)
		return fail("server certificate is not valid before %s", formatTime(info->notBefore).c_str());
	if (info->notAfter <= now)
		return fail("server certificate expired on %s", formatTime(info->notAfter).c_str());
	if (info->isCa)
		return fail("server certificate is a CA certificate, not a server certificate");
	if (X509_check_purpose(leaf, X509_PURPOSE_SSL_SERVER, 0) != 1) {
		ERR_clear_error();
		return fail("server certificate is not for TLS servers (extended key usage or key usage)");
	}
	if (info->dnsNames.empty() && info->ipAddresses.empty())
		return fail("server certificate has no subjectAltName (browsers ignore the common name)");
	if (info->keyAlgorithm == "RSA" && info->keyBits < 2048)
		return fail("server certificate has a %d-bit RSA key (at least 2048 needed)", info->keyBits);
	if (!fqdn.empty()) {
		std::string h(fqdn);
		auto ip = parseIpLiteral(h);
		int ok = ip ? X509_check_ip(leaf, ip->bytes, ip->size(), 0) : X509_check_host(leaf, h.data(), h.size(), 0, nullptr);
		ERR_clear_error();
		if (ok != 1)
			return fail("server certificate does not name '%s'", h.c_str());
	}

	ServerCertCheck check;
	check.chainLength = chain->size();
	long daysLeft = static_cast<long>((info->notAfter - now) / 86400);
	if (daysLeft < 30)
		check.warnings.push_back("expires in " + std::to_string(daysLeft) + " days (" + formatTime(info->notAfter)
			+ ")");
	if (info->selfSigned)
		check.warnings.push_back("self-signed: browsers warn unless it is trusted explicitly");
	if (info->keyAlgorithm == "ED25519" || info->keyAlgorithm == "ED448")
		check.warnings.push_back("browsers do not accept " + info->keyAlgorithm + " server certificates");
	check.leaf = std::move(*info);
	return check;
}

} // namespace pukaipu::certs
