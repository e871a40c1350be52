// The peer chain as plain data: the client session keeps the DER chain the peer sent
// (taken in its verify callback; this wolfSSL keeps none itself); each certificate is
// decoded here once, on demand (a checker's path, never the delivery path).
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "sealrelay/tls/chain.hh"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace sr::tls {

namespace {

// GeneralName tags (RFC 5280 §4.2.1.6), as wolfSSL's GENERAL_NAME.type carries them.
constexpr int gen_dns = 2;
constexpr int gen_ipadd = 7;

std::string oneline(WOLFSSL_X509_NAME* n) {
  char buf[1024];
  if (n && wolfSSL_X509_NAME_oneline(n, buf, sizeof buf)) return buf;
  return {};
}

// An ASN.1 time as ISO 8601 UTC and Unix seconds; false when it cannot be read.
bool read_time(const WOLFSSL_ASN1_TIME* t, std::string& iso, int64_t& secs) {
  struct tm tm {};
  if (!t || wolfSSL_ASN1_TIME_to_tm(t, &tm) != WOLFSSL_SUCCESS) return false;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  iso = buf;
  secs = int64_t(timegm(&tm));
  return true;
}

// DNS names first, then IP addresses, each in certificate order.
void read_names(WOLFSSL_X509* x, std::vector<std::string>& out) {
  auto* gens = static_cast<WOLFSSL_GENERAL_NAMES*>(
      wolfSSL_X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (!gens) return;
  std::vector<std::string> ips;
  size_t first = out.size();
  int n = wolfSSL_sk_GENERAL_NAME_num(gens);
  for (int i = 0; i < n; ++i) {
    WOLFSSL_GENERAL_NAME* g = wolfSSL_sk_GENERAL_NAME_value(gens, i);
    if (!g) continue;
    if (g->type == gen_dns && g->d.dNSName) {
      auto* p = wolfSSL_ASN1_STRING_data(g->d.dNSName);
      int len = wolfSSL_ASN1_STRING_length(g->d.dNSName);
      if (p && len > 0) out.emplace_back(reinterpret_cast<const char*>(p), size_t(len));
    } else if (g->type == gen_ipadd && g->d.iPAddress) {
      auto* p = wolfSSL_ASN1_STRING_data(g->d.iPAddress);
      int len = wolfSSL_ASN1_STRING_length(g->d.iPAddress);
      char buf[INET6_ADDRSTRLEN];
      if (p && (len == 4 || len == 16) &&
          inet_ntop(len == 4 ? AF_INET : AF_INET6, p, buf, sizeof buf))
        ips.emplace_back(buf);
    }
  }
  wolfSSL_GENERAL_NAMES_free(gens);
  // wolfSSL 5.5 builds its name list by prepending, so the stack runs last name first;
  // turn it back into certificate order (tests/unit/tls/chain_test.cc pins it).
  std::reverse(out.begin() + std::ptrdiff_t(first), out.end());
  std::reverse(ips.begin(), ips.end());
  out.insert(out.end(), ips.begin(), ips.end());
}

cert_info describe(WOLFSSL_X509* x) {
  cert_info c;
  c.subject = oneline(wolfSSL_X509_get_subject_name(x));
  c.issuer = oneline(wolfSSL_X509_get_issuer_name(x));
  read_names(x, c.names);
  read_time(wolfSSL_X509_get_notBefore(x), c.not_before, c.not_before_s);
  read_time(wolfSSL_X509_get_notAfter(x), c.not_after, c.not_after_s);
  int len = 0;
  if (const unsigned char* d = wolfSSL_X509_get_der(x, &len); d && len > 0) c.der.assign(d, d + len);
  return c;
}

}  // namespace

std::vector<cert_info> peer_chain(const session& s) {
  std::vector<cert_info> out;
  if (!s.native() || !s.handshake_done()) return out;
  for (const auto& der : s.peer_certificates()) {
    const unsigned char* p = der.data();
    WOLFSSL_X509* x = wolfSSL_d2i_X509(nullptr, &p, static_cast<int>(der.size()));
    if (!x) continue;
    out.push_back(describe(x));
    wolfSSL_X509_free(x);
  }
  return out;
}

}  // namespace sr::tls
