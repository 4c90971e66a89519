// Making keys, certificates, PKCS#12 files and passphrases.
#include "certs.h"

#include <climits>
#include <cstring>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "base/net_literal.h"
#include "ossl.h"

namespace pukaipu::certs {

using namespace detail;

void X509Free::operator()(X509* p) const noexcept { X509_free(p); }
void PkeyFree::operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }

namespace detail {

tl::unexpected<Error> sslFail(const char* step)
{
	unsigned long code = ERR_peek_last_error();
	ERR_clear_error();
	if (code == 0)
		return fail("%s: failed (OpenSSL gave no reason)", step);
	const char* reason = ERR_reason_error_string(code);
	if (reason)
		return fail("%s: %s", step, reason);
	return fail("%s: OpenSSL error %#lx", step, code);
}

Result<BioPtr> memReader(std::string_view data)
{
	if (data.size() > INT_MAX)
		return fail("input too large (%zu bytes)", data.size());
	BioPtr bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
	if (!bio)
		return sslFail("BIO_new_mem_buf");
	return bio;
}

std::string bioContents(BIO* bio)
{
	char* p = nullptr;
	long n = BIO_get_mem_data(bio, &p);
	return n > 0 ? std::string(p, static_cast<std::size_t>(n)) : std::string();
}

} // namespace detail

namespace {

// --- names -------------------------------------------------------------------

bool isLdhLabel(std::string_view l)
{
	if (l.empty() || l.size() > 63 || l.front() == '-' || l.back() == '-')
		return false;
	for (char c : l) {
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
		if (!ok)
			return false;
	}
	return true;
}

// A host name as browsers match it: LDH labels, no wildcard, no trailing dot.
Result<void> checkDnsName(const std::string& name)
{
	if (name.empty() || name.size() > 253)
		return fail("DNS name '%s': must be 1 to 253 characters", name.c_str());
	std::string_view rest = name;
	while (true) {
		std::size_t dot = rest.find('.');
		if (!isLdhLabel(rest.substr(0, dot)))
			return fail("DNS name '%s': labels are letters, digits and '-' (no wildcards, no empty labels)",
				name.c_str());
		if (dot == std::string_view::npos)
			break;
		rest.remove_prefix(dot + 1);
	}
	return {};
}

// An IP literal (isIpLiteral) as the 4 or 16 bytes of an IP SAN.
Result<Asn1OctetPtr> ipOctets(const IpLiteral& ip)
{
	Asn1OctetPtr o(ASN1_OCTET_STRING_new());
	if (!o || !ASN1_OCTET_STRING_set(o.get(), ip.bytes, static_cast<int>(ip.size())))
		return sslFail("ASN1_OCTET_STRING_set");
	return o;
}

Result<void> checkPrintable(const char* what, const std::string& s)
{
	if (s.empty() || s.size() > 64)
		return fail("%s '%s': must be 1 to 64 characters", what, s.c_str());
	for (unsigned char c : s)
		if (c < 0x20 || c == 0x7f)
			return fail("%s: control characters are not allowed", what);
	return {};
}

Result<void> addNameEntry(X509_NAME* name, int nid, const std::string& value)
{
	if (!X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8,
		    reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0))
		return sslFail("X509_NAME_add_entry");
	return {};
}

// --- building a certificate --------------------------------------------------

// 16 random bytes with the top bit cleared: a positive INTEGER of up to 16
// octets carrying 127 bits of randomness (RFC 5280 allows 20; CA/B wants 64).
Result<void> setRandomSerial(X509* x)
{
	unsigned char buf[16];
	BnPtr bn;
	do {
		if (RAND_bytes(buf, sizeof(buf)) != 1)
			return sslFail("RAND_bytes (serial)");
		buf[0] &= 0x7f;
		bn.reset(BN_bin2bn(buf, sizeof(buf), nullptr));
		if (!bn)
			return sslFail("BN_bin2bn");
	} while (BN_is_zero(bn.get()));
	Handle<ASN1_INTEGER, ASN1_INTEGER_free> serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
	if (!serial || !X509_set_serialNumber(x, serial.get()))
		return sslFail("set serial number");
	return {};
}

Result<void> addConfExt(X509V3_CTX* ctx, X509* x, int nid, const char* value)
{
	// `value` is always a constant of this file: no untrusted text goes through
	// OpenSSL's config-string parser (names are encoded in addSan instead).
	Handle<X509_EXTENSION, X509_EXTENSION_free> ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
	if (!ext)
		return sslFail(OBJ_nid2sn(nid));
	if (!X509_add_ext(x, ext.get(), -1))
		return sslFail("X509_add_ext");
	return {};
}

Result<void> addSan(X509* x, const std::vector<std::string>& dns, const std::vector<Asn1OctetPtr>& ips, bool critical)
{
	GenNamesPtr names(sk_GENERAL_NAME_new_null());
	if (!names)
		return sslFail("sk_GENERAL_NAME_new_null");
	auto push = [&](int type, ASN1_STRING* value) -> Result<void> {
		Handle<ASN1_STRING, ASN1_STRING_free> owned(value);
		Handle<GENERAL_NAME, GENERAL_NAME_free> gn(GENERAL_NAME_new());
		if (!owned || !gn)
			return sslFail("GENERAL_NAME_new");
		GENERAL_NAME_set0_value(gn.get(), type, owned.release());
		if (!sk_GENERAL_NAME_push(names.get(), gn.get()))
			return sslFail("sk_GENERAL_NAME_push");
		(void)gn.release();
		return {};
	};
	for (const std::string& d : dns) {
		ASN1_IA5STRING* s = ASN1_IA5STRING_new();
		if (s && !ASN1_STRING_set(s, d.data(), static_cast<int>(d.size()))) {
			ASN1_IA5STRING_free(s);
			return sslFail("ASN1_STRING_set");
		}
		TRYV(push(GEN_DNS, s));
	}
	for (const Asn1OctetPtr& ip : ips)
		TRYV(push(GEN_IPADD, ASN1_OCTET_STRING_dup(ip.get())));
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, names.get(), critical ? 1 : 0, X509V3_ADD_DEFAULT) != 1)
		return sslFail("add subjectAltName");
	return {};
}

const EVP_MD* signDigest(EVP_PKEY* key)
{
	// EdDSA signs the message itself; everything else hashes with SHA-256.
	int id = EVP_PKEY_get_base_id(key);
	return (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) ? nullptr : EVP_sha256();
}

struct Template {
	EVP_PKEY* subjectKey;
	const std::string* commonName; // null: empty subject (SAN must then be critical)
	int validityDays;
};

// Version 3, random serial, subject, validity window and public key; issuer
// and extensions are the caller's.
Result<X509Ptr> newCert(const Template& t)
{
	if (t.validityDays < 1 || t.validityDays > 100 * 366)
		return fail("validity of %d days: out of range", t.validityDays);
	X509Ptr x(X509_new());
	if (!x)
		return sslFail("X509_new");
	if (!X509_set_version(x.get(), X509_VERSION_3))
		return sslFail("X509_set_version");
	TRYV(setRandomSerial(x.get()));
	std::time_t now = std::time(nullptr);
	if (!ASN1_TIME_set(X509_getm_notBefore(x.get()), now - kBackdateSeconds)
		|| !ASN1_TIME_adj(X509_getm_notAfter(x.get()), now, t.validityDays, 0))
		return sslFail("set validity");
	if (t.commonName)
		TRYV(addNameEntry(X509_get_subject_name(x.get()), NID_commonName, *t.commonName));
	if (!X509_set_pubkey(x.get(), t.subjectKey))
		return sslFail("X509_set_pubkey");
	return x;
}

Result<void> sign(X509* x, EVP_PKEY* key)
{
	if (X509_sign(x, key, signDigest(key)) <= 0)
		return sslFail("X509_sign");
	return {};
}

enum class LeafKind { Server, Client };

// The extensions every leaf has, in the order OpenSSL's own tools write them.
Result<void> addLeafExtensions(X509* x, const Ca& ca, LeafKind kind)
{
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, ca.cert.get(), x, nullptr, nullptr, 0);
	const char* eku = kind == LeafKind::Server ? "serverAuth" : "clientAuth";
	for (auto [nid, value] : { std::pair { NID_basic_constraints, "critical,CA:FALSE" },
		     std::pair { NID_key_usage, "critical,digitalSignature" },
		     std::pair { NID_ext_key_usage, eku },
		     std::pair { NID_subject_key_identifier, "hash" },
		     std::pair { NID_authority_key_identifier, "keyid:always" } })
		TRYV(addConfExt(&ctx, x, nid, value));
	return {};
}

// permittedSubtrees: one dNSName per domain; excludedSubtrees: iPAddress
// 0.0.0.0/0 and ::/0 (address and mask, all zero: every address). Names are
// encoded as ASN.1 values, never through a config string.
Result<void> addNameConstraints(X509* x, const NameConstraints& nc)
{
	using SubtreePtr = Handle<GENERAL_SUBTREE, GENERAL_SUBTREE_free>;
	Handle<NAME_CONSTRAINTS, NAME_CONSTRAINTS_free> c(NAME_CONSTRAINTS_new());
	if (!c)
		return sslFail("NAME_CONSTRAINTS_new");
	c->permittedSubtrees = sk_GENERAL_SUBTREE_new_null();
	c->excludedSubtrees = sk_GENERAL_SUBTREE_new_null();
	if (!c->permittedSubtrees || !c->excludedSubtrees)
		return sslFail("sk_GENERAL_SUBTREE_new_null");
	auto push = [](STACK_OF(GENERAL_SUBTREE) * to, int type, ASN1_STRING* value) -> Result<void> {
		Handle<ASN1_STRING, ASN1_STRING_free> owned(value);
		SubtreePtr t(GENERAL_SUBTREE_new());
		if (!owned || !t)
			return sslFail("GENERAL_SUBTREE_new");
		GENERAL_NAME_set0_value(t->base, type, owned.release());
		if (!sk_GENERAL_SUBTREE_push(to, t.get()))
			return sslFail("sk_GENERAL_SUBTREE_push");
		(void)t.release();
		return {};
	};
	for (const std::string& d : nc.permittedDns) {
		ASN1_IA5STRING* s = ASN1_IA5STRING_new();
		if (s && !ASN1_STRING_set(s, d.data(), static_cast<int>(d.size()))) {
			ASN1_IA5STRING_free(s);
			return sslFail("ASN1_STRING_set");
		}
		TRYV(push(c->permittedSubtrees, GEN_DNS, s));
	}
	for (int len : { 8, 32 }) { // IPv4 and IPv6: address + mask
		const unsigned char zeros[32] = {};
		ASN1_OCTET_STRING* o = ASN1_OCTET_STRING_new();
		if (o && !ASN1_OCTET_STRING_set(o, zeros, len)) {
			ASN1_OCTET_STRING_free(o);
			return sslFail("ASN1_OCTET_STRING_set");
		}
		TRYV(push(c->excludedSubtrees, GEN_IPADD, o));
	}
	if (X509_add1_ext_i2d(x, NID_name_constraints, c.get(), 1, X509V3_ADD_DEFAULT) != 1)
		return sslFail("add nameConstraints");
	return {};
}

Result<void> checkCaUsable(const Ca& ca)
{
	if (!ca.cert || !ca.key)
		return fail("CA certificate or key missing");
	if (!(X509_get_extension_flags(ca.cert.get()) & EXFLAG_CA))
		return fail("issuer certificate is not a CA (basicConstraints CA:TRUE missing)");
	uint32_t ku = X509_get_key_usage(ca.cert.get());
	if (ku != UINT32_MAX && !(ku & KU_KEY_CERT_SIGN))
		return fail("issuer certificate may not sign certificates (keyUsage keyCertSign missing)");
	if (X509_check_private_key(ca.cert.get(), ca.key.get()) != 1)
		return sslFail("CA key does not match the CA certificate");
	return {};
}

} // namespace

Result<PkeyPtr> generateKey()
{
	PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
	if (!key)
		return sslFail("generate EC P-256 key");
	return key;
}

Result<Ca> createCa(const std::string& commonName, int validityDays, const NameConstraints* constraints)
{
	TRYV(checkPrintable("CA common name", commonName));
	if (constraints) {
		if (constraints->permittedDns.empty())
			return fail("nameConstraints: no permitted domain");
		for (const auto& d : constraints->permittedDns)
			TRYV(checkDnsName(d));
	}
	TRY(key, generateKey());
	TRY(x, newCert({ key->get(), &commonName, validityDays }));
	if (!X509_set_issuer_name(x->get(), X509_get_subject_name(x->get())))
		return sslFail("X509_set_issuer_name");

	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, x->get(), x->get(), nullptr, nullptr, 0);
	// subjectKeyIdentifier first: the (self-)authorityKeyIdentifier copies it.
	for (auto [nid, value] : { std::pair { NID_basic_constraints, "critical,CA:TRUE,pathlen:0" },
		     std::pair { NID_key_usage, "critical,keyCertSign,cRLSign" },
		     std::pair { NID_subject_key_identifier, "hash" },
		     std::pair { NID_authority_key_identifier, "keyid:always" } })
		TRYV(addConfExt(&ctx, x->get(), nid, value));
	if (constraints)
		TRYV(addNameConstraints(x->get(), *constraints));
	TRYV(sign(x->get(), key->get()));
	return Ca { std::move(*x), std::move(*key) };
}

Result<Issued> issueServerCert(const Ca& ca, const std::string& fqdn, const std::vector<std::string>& extraDnsNames,
	const std::vector<std::string>& extraIps, int validityDays)
{
	if (validityDays < 1 || validityDays > kMaxServerDays)
		return fail("server certificate validity of %d days: must be 1 to %d (Apple's limit)", validityDays,
			kMaxServerDays);
	TRYV(checkCaUsable(ca));

	std::vector<std::string> dns;
	std::vector<Asn1OctetPtr> ips;
	auto addName = [&](const std::string& n, bool ipAllowed, bool dnsAllowed) -> Result<void> {
		if (ipAllowed) {
			if (auto ip = parseIpLiteral(n)) {
				TRY(octets, ipOctets(*ip));
				ips.push_back(std::move(*octets));
				return {};
			}
			if (!dnsAllowed)
				return fail("'%s' is not an IPv4 or IPv6 address", n.c_str());
		}
		TRYV(checkDnsName(n));
		dns.push_back(n);
		return {};
	};
	TRYV(addName(fqdn, true, true));
	for (const std::string& n : extraDnsNames)
		TRYV(addName(n, false, true));
	for (const std::string& n : extraIps)
		TRYV(addName(n, true, false));

	TRY(key, generateKey());
	bool cnFits = fqdn.size() <= 64;
	TRY(x, newCert({ key->get(), cnFits ? &fqdn : nullptr, validityDays }));
	if (!X509_set_issuer_name(x->get(), X509_get_subject_name(ca.cert.get())))
		return sslFail("X509_set_issuer_name");
	TRYV(addLeafExtensions(x->get(), ca, LeafKind::Server));
	TRYV(addSan(x->get(), dns, ips, !cnFits));
	TRYV(sign(x->get(), ca.key.get()));
	return Issued { std::move(*x), std::move(*key) };
}

Result<Issued> issueClientCert(const Ca& ca, const std::string& userName, int validityDays)
{
	TRYV(checkPrintable("user name", userName));
	TRYV(checkCaUsable(ca));
	TRY(key, generateKey());
	TRY(x, newCert({ key->get(), &userName, validityDays }));
	if (!X509_set_issuer_name(x->get(), X509_get_subject_name(ca.cert.get())))
		return sslFail("X509_set_issuer_name");
	TRYV(addLeafExtensions(x->get(), ca, LeafKind::Client));
	TRYV(sign(x->get(), ca.key.get()));
	return Issued { std::move(*x), std::move(*key) };
}

Result<std::string> toPkcs12(const Issued& leaf, X509* chainCert, const std::string& passphrase,
	const std::string& friendlyName)
{
	if (!leaf.cert || !leaf.key)
		return fail("PKCS#12: certificate or key missing");
	if (passphrase.empty())
		return fail("PKCS#12: empty passphrase");
	X509StackPtr chain(sk_X509_new_null());
	if (!chain)
		return sslFail("sk_X509_new_null");
	if (chainCert) {
		if (!X509_up_ref(chainCert))
			return sslFail("X509_up_ref");
		if (!sk_X509_push(chain.get(), chainCert)) {
			X509_free(chainCert);
			return sslFail("sk_X509_push");
		}
	}
	// PBES2 for both bags: naming the cipher (not a PKCS#12 PBE) selects PBES2
	// with PBKDF2, whose PRF is HMAC-SHA256 in OpenSSL 3. The MAC is added
	// explicitly below so its digest is stated, not defaulted. The iteration
	// count is OpenSSL's (2048): the passphrase's 100 random bits carry the
	// security, not key stretching.
	const char* name = friendlyName.empty() ? nullptr : friendlyName.c_str();
	Handle<PKCS12, PKCS12_free> p12(PKCS12_create_ex(passphrase.c_str(), name, leaf.key.get(), leaf.cert.get(),
		chain.get(), NID_aes_256_cbc, NID_aes_256_cbc, PKCS12_DEFAULT_ITER, -1 /* no MAC yet */, 0, nullptr,
		nullptr));
	if (!p12)
		return sslFail("PKCS12_create");
	if (!PKCS12_set_mac(p12.get(), passphrase.c_str(), -1, nullptr, 0, PKCS12_DEFAULT_ITER, EVP_sha256()))
		return sslFail("PKCS12_set_mac");
	unsigned char* der = nullptr;
	int n = i2d_PKCS12(p12.get(), &der);
	if (n <= 0)
		return sslFail("i2d_PKCS12");
	std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(n));
	OPENSSL_free(der);
	return out;
}

Result<std::string> randomPassphrase()
{
	static_assert(kPassphraseAlphabet.size() == 32);
	constexpr int kChars = kPassphraseBits / 5;
	unsigned char buf[kChars];
	if (RAND_bytes(buf, sizeof(buf)) != 1)
		return sslFail("RAND_bytes (passphrase)");
	std::string out;
	for (int i = 0; i < kChars; i++) {
		if (i > 0 && i % 5 == 0)
			out += '-';
		out += kPassphraseAlphabet[buf[i] & 31]; // 256 is a multiple of 32: no bias
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	return out;
}

// --- PEM -----------------------------------------------------------------------

Result<std::string> certToPem(X509* cert)
{
	BioPtr bio(BIO_new(BIO_s_mem()));
	if (!bio || !PEM_write_bio_X509(bio.get(), cert))
		return sslFail("PEM_write_bio_X509");
	return bioContents(bio.get());
}

Result<std::string> keyToPem(EVP_PKEY* key)
{
	BioPtr bio(BIO_new(BIO_s_secmem()));
	if (!bio || !PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr))
		return sslFail("PEM_write_bio_PrivateKey");
	return bioContents(bio.get());
}

Result<X509Ptr> certFromPem(std::string_view pem)
{
	TRY(bio, memReader(pem));
	X509Ptr x(PEM_read_bio_X509(bio->get(), nullptr, nullptr, nullptr));
	if (!x)
		return sslFail("read PEM certificate");
	return x;
}

Result<std::vector<X509Ptr>> certChainFromPem(std::string_view pem)
{
	TRY(bio, memReader(pem));
	std::vector<X509Ptr> chain;
	while (X509* x = PEM_read_bio_X509(bio->get(), nullptr, nullptr, nullptr))
		chain.emplace_back(x);
	// The loop ends with "no start line" at the end of input: expected.
	unsigned long err = ERR_peek_last_error();
	if (!chain.empty() && ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE)
		ERR_clear_error();
	else if (err != 0 || chain.empty())
		return sslFail("read PEM certificates");
	return chain;
}

Result<PkeyPtr> keyFromPem(std::string_view pem)
{
	TRY(bio, memReader(pem));
	// Without a callback OpenSSL would ask for a password on the terminal.
	auto noPassword = [](char*, int, int, void*) -> int { return -1; };
	PkeyPtr key(PEM_read_bio_PrivateKey(bio->get(), nullptr, noPassword, nullptr));
	if (!key)
		return sslFail("read PEM private key (encrypted keys are not supported)");
	return key;
}

} // namespace pukaipu::certs
