// certs: an instance's certificates, made with the OpenSSL 3 API only (no CLI).
//
// Two kinds of CA (DESIGN.md §2, §4):
//  - the host CA (/etc/pukaipu/ca/) signs every instance's server certificate;
//  - every instance has its OWN client CA, which signs that one user's client
//    certificate. Xpra accepts any client certificate that chains to a CA it
//    trusts, so a CA per instance is what keeps john's certificate from opening
//    alice's desktop. The client CA's key is needed only while issuing: renewal
//    makes a new CA, so callers need not (and should not) keep that key.
//
// Keys are ECDSA P-256 with SHA-256 signatures: accepted by every browser's TLS
// stack and by Python's ssl (xpra), unlike Ed25519, which browsers do not accept
// in certificates. Every OpenSSL object lives in a std::unique_ptr; nothing
// throws and nothing prints; failures come back as Result with OpenSSL's reason.
#pragma once

#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/types.h>

#include "base/error.h"

namespace pukaipu::certs {

struct X509Free {
	void operator()(X509* p) const noexcept;
};
struct PkeyFree {
	void operator()(EVP_PKEY* p) const noexcept;
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// A CA: its self-signed certificate and its private key.
struct Ca {
	X509Ptr cert;
	PkeyPtr key;
};

// A leaf certificate issued by a Ca, with its freshly generated key.
struct Issued {
	X509Ptr cert;
	PkeyPtr key;
};

// Suggested validity periods, in days.
inline constexpr int kCaDays = 3650;
// Apple's platforms refuse TLS server certificates valid for more than 825
// days, whatever their CA; 397 is also within what browsers allow public CAs.
inline constexpr int kServerDays = 397;
inline constexpr int kMaxServerDays = 825;
inline constexpr int kClientDays = 825;
// notBefore is backdated this much, so a client whose clock is a little behind
// accepts a certificate made a moment ago.
inline constexpr int kBackdateSeconds = 5 * 60;

// --- making certificates -----------------------------------------------------

// A new ECDSA P-256 key (named curve).
[[nodiscard]] Result<PkeyPtr> generateKey();

// nameConstraints for a CA users trust (the host CA): it may sign only
// names in `permittedDns` (each domain and every name below it, RFC 5280
// dNSName subtrees), and no IP address at all (0.0.0.0/0 and ::/0 excluded).
// Written critical, as RFC 5280 requires; browsers and OpenSSL enforce it.
struct NameConstraints {
	std::vector<std::string> permittedDns;
};

// Self-signed CA: CN=commonName; basicConstraints critical CA:TRUE, pathlen:0;
// keyUsage critical keyCertSign, cRLSign; subject and authority key
// identifiers; nameConstraints when `constraints` is given (at least one
// domain, each a DNS name as issueServerCert checks them).
[[nodiscard]] Result<Ca> createCa(const std::string& commonName, int validityDays,
	const NameConstraints* constraints = nullptr);

// Server certificate for `fqdn` (a DNS name, or an IP address literal), plus
// extra DNS names and IP addresses, all in subjectAltName. CN=fqdn (omitted,
// with a critical SAN, when fqdn is longer than the 64 characters a CN allows).
// EKU serverAuth, keyUsage critical digitalSignature, CA:FALSE, key
// identifiers, a random serial, notBefore = now - kBackdateSeconds.
// validityDays must be 1..kMaxServerDays. Names are validated (LDH labels, no
// wildcards) and encoded as ASN.1 values, never through a config string.
[[nodiscard]] Result<Issued> issueServerCert(const Ca& ca, const std::string& fqdn,
	const std::vector<std::string>& extraDnsNames, const std::vector<std::string>& extraIps,
	int validityDays);

// Client certificate: CN=userName, no SAN, EKU clientAuth, keyUsage critical
// digitalSignature, CA:FALSE, key identifiers, random serial, backdated.
[[nodiscard]] Result<Issued> issueClientCert(const Ca& ca, const std::string& userName, int validityDays);

// PKCS#12 (DER bytes) holding leaf.key and leaf.cert, plus chainCert when not
// null (the issuing CA; an importer stores it without trusting it). Key and
// certificates are encrypted with PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC; the
// integrity MAC is HMAC-SHA256. Readable by OpenSSL 3, NSS (Chrome/Brave/Firefox
// on Linux) and Windows 10+; old macOS Keychains only read 3DES/RC2 files.
[[nodiscard]] Result<std::string> toPkcs12(const Issued& leaf, X509* chainCert,
	const std::string& passphrase, const std::string& friendlyName);

// "xxxxx-xxxxx-xxxxx-xxxxx": 20 characters from RAND_bytes, each from the 32
// letters of lower-case Crockford base32 (no i, l, o, u), so 5 bits each and
// kPassphraseBits in all. Easy to read aloud and to type into an import dialog.
inline constexpr int kPassphraseBits = 100;
inline constexpr std::string_view kPassphraseAlphabet = "0123456789abcdefghjkmnpqrstvwxyz";
[[nodiscard]] Result<std::string> randomPassphrase();

// --- PEM ---------------------------------------------------------------------

[[nodiscard]] Result<std::string> certToPem(X509* cert);
// PKCS#8 ("BEGIN PRIVATE KEY"), unencrypted: xpra reads its key without a
// password, so a key file is protected by its mode (0600, root) instead.
[[nodiscard]] Result<std::string> keyToPem(EVP_PKEY* key);
// The first certificate in `pem`.
[[nodiscard]] Result<X509Ptr> certFromPem(std::string_view pem);
// Every certificate in `pem`, in order (a "fullchain" file: leaf first).
[[nodiscard]] Result<std::vector<X509Ptr>> certChainFromPem(std::string_view pem);
// An unencrypted private key. An encrypted one is an error: this never prompts.
[[nodiscard]] Result<PkeyPtr> keyFromPem(std::string_view pem);

// Reads a CA's certificate and key (PEM) and checks that they belong together
// and that the certificate is a CA that may sign certificates.
[[nodiscard]] Result<Ca> loadCa(const std::string& certPath, const std::string& keyPath);

// --- looking at certificates ------------------------------------------------

struct CertInfo {
	std::string subject;   // RFC 2253, e.g. "CN=john"
	std::string subjectCn; // "" when there is none
	std::string issuer;
	std::string issuerCn;
	std::string serialHex;
	std::string sha256Fingerprint; // "AB:CD:...", as browsers show it
	unsigned long subjectHash = 0; // c_rehash file name: "%08lx.0"
	std::string signatureAlgorithm; // "ecdsa-with-SHA256"
	std::string keyAlgorithm;       // "EC", "RSA", "ED25519", "ED448", ...
	std::string keyCurve;           // "P-256" for EC keys on a NIST curve
	int keyBits = 0;
	std::vector<std::string> dnsNames;
	std::vector<std::string> ipAddresses; // "192.0.2.1", "2001:db8::1"
	std::vector<std::string> emails;
	std::vector<std::string> extendedKeyUsages; // "serverAuth", "clientAuth", or dotted OIDs
	std::vector<std::string> keyUsages;         // "digitalSignature", "keyCertSign", ...
	bool serverAuth = false; // the EKU lists serverAuth
	bool clientAuth = false; // the EKU lists clientAuth
	bool isCa = false;       // basicConstraints CA:TRUE
	long pathLen = -1;       // -1: no limit given
	bool selfSigned = false; // issuer == subject and the signature verifies with its own key
	// nameConstraints, when present: the permitted dNSName subtrees, and the
	// excluded iPAddress subtrees as "ADDR/PREFIX" ("0.0.0.0/0", "::/0").
	bool hasNameConstraints = false;
	bool nameConstraintsCritical = false;
	std::vector<std::string> permittedDns;
	std::vector<std::string> excludedIps;
	std::time_t notBefore = 0; // seconds since the epoch (UTC)
	std::time_t notAfter = 0;
};

[[nodiscard]] Result<CertInfo> inspect(std::string_view pem);
[[nodiscard]] Result<CertInfo> inspectCert(X509* cert);

enum class Purpose { ServerAuth, ClientAuth };

// X509_verify_cert with a store that holds ONLY `ca` (no default paths, no
// partial chains), the TLS server or client purpose (EKU) check and strict
// RFC 5280 checks (X509_V_FLAG_X509_STRICT, as xpra sets). `hostname`, when
// given, must match a SAN (DNS name or IP address). `at` = 0 means now.
[[nodiscard]] Result<void> verifyChain(X509* leaf, X509* ca, Purpose purpose,
	std::string_view hostname = {}, std::time_t at = 0);
[[nodiscard]] Result<void> verifyChain(std::string_view leafPem, std::string_view caPem, Purpose purpose,
	std::string_view hostname = {}, std::time_t at = 0);

// The first certificate of `leafPem` names `ca` as its issuer and carries
// its signature (no other check: not a chain verification).
[[nodiscard]] bool signedBy(std::string_view leafPem, X509* ca);

// An externally issued server certificate (--server-cert/--server-key).
struct ServerCertCheck {
	CertInfo leaf;
	std::size_t chainLength = 0;       // certificates in the file, leaf first
	std::vector<std::string> warnings; // worth showing, not worth refusing
};

// Refuses (with the reason) a certificate file that is not "leaf first, then
// each issuer", a key that does not match the leaf, a leaf that is not valid
// at `at` (0 = now), is a CA, is not for TLS servers (EKU/keyUsage), has no
// subjectAltName (browsers ignore the CN), or does not name `fqdn` (if given),
// and RSA keys under 2048 bits. Warns when it expires within 30 days, is
// self-signed, or uses an EdDSA key (browsers refuse those).
[[nodiscard]] Result<ServerCertCheck> checkExternalServerCert(std::string_view certPem,
	std::string_view keyPem, std::string_view fqdn = {}, std::time_t at = 0);

// "2026-01-27 12:00:00 UTC"
[[nodiscard]] std::string formatTime(std::time_t t);

} // namespace pukaipu::certs
