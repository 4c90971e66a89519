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

#include "base/handle.h"
#include "certs.h"

namespace pukaipu::certs::detail {

using BioPtr = Handle<BIO, BIO_free_all>;
using BnPtr = Handle<BIGNUM, BN_free>;
using GenNamesPtr = Handle<GENERAL_NAMES, GENERAL_NAMES_free>;
using Asn1OctetPtr = Handle<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>;

inline void freeX509Stack(STACK_OF(X509) * s) { sk_X509_pop_free(s, X509_free); }
using X509StackPtr = Handle<STACK_OF(X509), freeX509Stack>;

inline void freeOsslString(char* p) { OPENSSL_free(p); }
using OsslStringPtr = Handle<char, freeOsslString>;

// `return sslFail("step")`: "step: <OpenSSL's reason>" from the newest entry
// of the thread's error queue, which it then clears.
[[nodiscard]] tl::unexpected<Error> sslFail(const char* step);

// A read-only memory BIO over `data` (not copied: keep data alive).
[[nodiscard]] Result<BioPtr> memReader(std::string_view data);
// Everything written to a memory BIO, as a string.
[[nodiscard]] std::string bioContents(BIO* bio);

} // namespace pukaipu::certs::detail
