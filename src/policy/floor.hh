// The TLS floor rules (DESIGN.md §1 "good TLS"): symmetric strength of a negotiated cipher
// suite rated by its name, not by the number the TLS library reports (wolfSSL says 192 for
// 3DES, whose effective strength is 112), and protocol version strings against the policy's
// min_version. Anything unknown or unparsable rates as below every floor (fail closed).
#pragma once
#include <optional>
#include <string_view>

#include "sealrelay/config/config.hh"

namespace sr::policy {

// Return the effective symmetric strength of a cipher suite named in IANA form
// ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA") or wolfSSL/OpenSSL form ("DES-CBC3-SHA"):
// RC4, NULL, EXPORT, single DES, anonymous and integrity-only suites 0; 3DES 112;
// AES-128, Camellia-128, ARIA-128, SEED, IDEA, SM4 128; AES-256, Camellia-256, ARIA-256,
// ChaCha20 256. A name naming no known cipher (or none at all) is 0: the library's own
// number is never trusted, as it rates 3DES at 192.
unsigned classify_cipher(std::string_view name);

// Parse "TLSv1", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3" (also "1.0".."1.3" as in the
// config); nullopt for SSLv2/SSLv3 and anything else.
std::optional<config::tls_version> parse_tls_version(std::string_view text);

// Return whether the negotiated `version` string is at least `floor` (unknown: false).
bool version_meets(std::string_view version, config::tls_version floor);

}  // namespace sr::policy
