// ossl: private helpers of the certs library — owners for OpenSSL objects and
// the one function that turns OpenSSL's error queue into an Error.
#pragma once

#include <memory>
#include <string_view>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certs.h"

namespace pukaipu::certs::detail {

template <typename T, void (*Free)(T*)>
struct Freer {
	void operator()(T* p) const noexcept { Free(p); }
};

using BioPtr = std::unique_ptr<BIO, Freer<BIO, BIO_free_all>>;
using BnPtr = std::unique_ptr<BIGNUM, Freer<BIGNUM, BN_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Freer<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Freer<X509_EXTENSION, X509_EXTENSION_free>>;
using GenNamesPtr = std::unique_ptr<GENERAL_NAMES, Freer<GENERAL_NAMES, GENERAL_NAMES_free>>;
using GenNamePtr = std::unique_ptr<GENERAL_NAME, Freer<GENERAL_NAME, GENERAL_NAME_free>>;
using EkuPtr = std::unique_ptr<EXTENDED_KEY_USAGE, Freer<EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free>>;
using Asn1StringPtr = std::unique_ptr<ASN1_STRING, Freer<ASN1_STRING, ASN1_STRING_free>>;
using Asn1IntPtr = std::unique_ptr<ASN1_INTEGER, Freer<ASN1_INTEGER, ASN1_INTEGER_free>>;
using Asn1OctetPtr = std::unique_ptr<ASN1_OCTET_STRING, Freer<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>>;
using Pkcs12Ptr = std::unique_ptr<PKCS12, Freer<PKCS12, PKCS12_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Freer<X509_STORE, X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Freer<X509_STORE_CTX, X509_STORE_CTX_free>>;

inline void freeX509Stack(STACK_OF(X509) * s) { sk_X509_pop_free(s, X509_free); }
using X509StackPtr = std::unique_ptr<STACK_OF(X509), Freer<STACK_OF(X509), freeX509Stack>>;

inline void freeOsslString(char* p) { OPENSSL_free(p); }
using OsslStringPtr = std::unique_ptr<char, Freer<char, freeOsslString>>;

// `return sslFail("step")`: "step: <OpenSSL's reason>" from the newest entry
// of the thread's error queue, which it then clears.
[[nodiscard]] tl::unexpected<Error> sslFail(const char* step);

// A read-only memory BIO over `data` (not copied: keep data alive).
[[nodiscard]] Result<BioPtr> memReader(std::string_view data);
// Everything written to a memory BIO, as a string.
[[nodiscard]] std::string bioContents(BIO* bio);

} // namespace pukaipu::certs::detail
