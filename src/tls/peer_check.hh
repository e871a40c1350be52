// Internal to src/tls: the peer-name check shared by the CA path (session.cc) and DANE-TA
// (dane.cc), and the cache tag that keeps DANE-verdict sessions apart from CA-verdict ones.
#pragma once
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <span>
#include <string>

#include "sealrelay/tls/dane.hh"

namespace sr::tls {

// Return true when host is an IPv4 or IPv6 literal.
bool is_ip_literal(const std::string& host);
// Return true when `cert` names `host` (DNS SAN/CN with wildcards, or an IP SAN).
bool names_host(WOLFSSL_X509* cert, const std::string& host);
// Return a session-cache key suffix that changes with the record set: a resumed session
// only restores a verdict made against the same TLSA records.
std::string dane_cache_tag(std::span<const tlsa_record> records);

}  // namespace sr::tls
