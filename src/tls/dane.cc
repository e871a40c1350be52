// TLSA records (RFC 6698 rdata / presentation form) and chain matching for DANE SMTP
// (RFC 7672 §3.1). Digests use wolfCrypt; DANE-TA chain checks use a temporary wolfSSL
// cert manager that trusts only the matched certificate, fed the chain's intermediates
// one by one, each only after it verified against what is already trusted.
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/hash.h>

#include "sealrelay/tls/dane.hh"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <memory>

#include "peer_check.hh"

namespace sr::tls {

namespace {

constexpr size_t sha256_len = 32, sha512_len = 64;

// Read one DER TLV from `in` (definite lengths only): its tag, the whole TLV, its content.
bool der_next(std::span<const uint8_t>& in, uint8_t& tag, std::span<const uint8_t>& tlv,
              std::span<const uint8_t>& content) {
  if (in.size() < 2) return false;
  tag = in[0];
  size_t len = in[1], hdr = 2;
  if (len & 0x80) {
    size_t n = len & 0x7f;
    if (n == 0 || n > 4 || in.size() < 2 + n) return false;
    len = 0;
    for (size_t i = 0; i < n; ++i) len = (len << 8) | in[2 + i];
    hdr += n;
  }
  if (in.size() - hdr < len) return false;
  tlv = in.first(hdr + len);
  content = in.subspan(hdr, len);
  in = in.subspan(hdr + len);
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Parse one field: a decimal 0..255 or one of the RFC 7218 mnemonics in `names`.
bool parse_field(std::string_view tok, std::span<const std::string_view> names, uint8_t& out) {
  uint8_t i = 0;
  for (auto n : names) {
    if (tok.size() == n.size() &&
        std::equal(tok.begin(), tok.end(), n.begin(), [](char a, char b) {
          return std::toupper(static_cast<unsigned char>(a)) == b;
        })) {
      out = i;
      return true;
    }
    ++i;
  }
  if (tok.empty() || tok.size() > 3) return false;
  unsigned v = 0;
  for (char c : tok) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > 255) return false;
  out = static_cast<uint8_t>(v);
  return true;
}

// A chain certificate with its SPKI and lazily computed digests (several records often
// hash the same certificate the same way).
struct cert_view {
  std::span<const uint8_t> der;
  std::span<const uint8_t> spki;
  std::array<std::array<uint8_t, sha512_len>, 4> digest{};  // [selector * 2 + (mtype - 1)]
  std::array<bool, 4> have{};
  bool parsed = false;

  std::span<const uint8_t> selected(uint8_t selector) {
    if (selector == tlsa_record::cert) return der;
    if (!parsed) {
      spki = spki_of(der);
      parsed = true;
    }
    return spki;
  }

  bool matches(const tlsa_record& r) {
    auto sel = selected(r.selector);
    if (sel.empty()) return false;
    if (r.mtype == tlsa_record::full)
      return sel.size() == r.data.size() && std::equal(sel.begin(), sel.end(), r.data.begin());
    size_t slot = r.selector * 2u + (r.mtype - 1u);
    size_t len = r.mtype == tlsa_record::sha2_256 ? sha256_len : sha512_len;
    if (!have[slot]) {
      int rc = r.mtype == tlsa_record::sha2_256
                   ? wc_Sha256Hash(sel.data(), static_cast<word32>(sel.size()), digest[slot].data())
                   : wc_Sha512Hash(sel.data(), static_cast<word32>(sel.size()), digest[slot].data());
      if (rc != 0) return false;
      have[slot] = true;
    }
    return r.data.size() == len && std::memcmp(digest[slot].data(), r.data.data(), len) == 0;
  }
};

struct x509_free {
  void operator()(WOLFSSL_X509* x) const { wolfSSL_X509_free(x); }
};
struct cm_free {
  void operator()(WOLFSSL_CERT_MANAGER* cm) const { wolfSSL_CertManagerFree(cm); }
};
using x509_ptr = std::unique_ptr<WOLFSSL_X509, x509_free>;
using cm_ptr = std::unique_ptr<WOLFSSL_CERT_MANAGER, cm_free>;

cert_verdict worst(cert_verdict a, cert_verdict b) { return a > b ? a : b; }

bool is_date_error(int rc) { return rc == ASN_AFTER_DATE_E || rc == ASN_BEFORE_DATE_E; }

long ssize(std::span<const uint8_t> s) { return static_cast<long>(s.size()); }

// DANE-TA: does the leaf chain to chain[ta] (trusting it alone, intermediates taken from
// the chain), name host and lie within validity? tlsa_mismatch when it does not chain.
cert_verdict check_ta(std::span<const std::span<const uint8_t>> chain, size_t ta,
                      WOLFSSL_X509* leaf, const std::string& host) {
  cert_verdict v = cert_verdict::verified;
  if (ta == 0) {
    // The leaf itself is the trust anchor: nothing to chain, dates and name still count.
    if (wolfSSL_X509_cmp_current_time(wolfSSL_X509_get_notBefore(leaf)) > 0 ||
        wolfSSL_X509_cmp_current_time(wolfSSL_X509_get_notAfter(leaf)) < 0)
      v = cert_verdict::expired;
  } else {
    cm_ptr cm(wolfSSL_CertManagerNew());
    if (!cm) return cert_verdict::tlsa_mismatch;
    if (wolfSSL_CertManagerLoadCABuffer(cm.get(), chain[ta].data(), ssize(chain[ta]),
                                        WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS)
      return cert_verdict::tlsa_mismatch;  // not usable as an issuer (no CA bit, unparsable)
    // Walk down from the anchor: an intermediate is trusted only once it verified.
    for (size_t i = ta - 1; i >= 1; --i) {
      if (wolfSSL_CertManagerVerifyBuffer(cm.get(), chain[i].data(), ssize(chain[i]),
                                          WOLFSSL_FILETYPE_ASN1) == WOLFSSL_SUCCESS)
        wolfSSL_CertManagerLoadCABuffer(cm.get(), chain[i].data(), ssize(chain[i]),
                                        WOLFSSL_FILETYPE_ASN1);
    }
    int rc = wolfSSL_CertManagerVerifyBuffer(cm.get(), chain[0].data(), ssize(chain[0]),
                                             WOLFSSL_FILETYPE_ASN1);
    if (is_date_error(rc))
      v = cert_verdict::expired;  // wolfSSL reports dates only once the signature held
    else if (rc != WOLFSSL_SUCCESS)
      return cert_verdict::tlsa_mismatch;
  }
  if (!host.empty() && !names_host(leaf, host)) v = worst(v, cert_verdict::name_mismatch);
  return v;
}

}  // namespace

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

bool names_host(WOLFSSL_X509* cert, const std::string& host) {
  return is_ip_literal(host)
             ? wolfSSL_X509_check_ip_asc(cert, host.c_str(), 0) == WOLFSSL_SUCCESS
             : wolfSSL_X509_check_host(cert, host.data(), host.size(), 0, nullptr) ==
                   WOLFSSL_SUCCESS;
}

std::string dane_cache_tag(std::span<const tlsa_record> records) {
  std::vector<uint8_t> flat;
  for (const auto& r : records) {
    flat.insert(flat.end(), {r.usage, r.selector, r.mtype, static_cast<uint8_t>(r.data.size())});
    flat.insert(flat.end(), r.data.begin(), r.data.end());
  }
  uint8_t d[sha256_len];
  if (wc_Sha256Hash(flat.data(), static_cast<word32>(flat.size()), d) != 0) return "\ndane";
  static constexpr char hex[] = "0123456789abcdef";
  std::string tag = "\ndane:";
  for (size_t i = 0; i < 16; ++i) {
    tag += hex[d[i] >> 4];
    tag += hex[d[i] & 15];
  }
  return tag;
}

sr::result<tlsa_record> tlsa_record::from_rdata(std::span<const uint8_t> rdata) {
  if (rdata.size() < 3) return sr::error{"tlsa: rdata shorter than 3 bytes"};
  tlsa_record r;
  r.usage = rdata[0];
  r.selector = rdata[1];
  r.mtype = rdata[2];
  r.data.assign(rdata.begin() + 3, rdata.end());
  return r;
}

sr::result<tlsa_record> tlsa_record::parse(std::string_view text) {
  tlsa_record r;
  uint8_t* fields[3] = {&r.usage, &r.selector, &r.mtype};
  static constexpr std::string_view usages[] = {"PKIX-TA", "PKIX-EE", "DANE-TA", "DANE-EE"};
  static constexpr std::string_view selectors[] = {"CERT", "SPKI"};
  static constexpr std::string_view mtypes[] = {"FULL", "SHA2-256", "SHA2-512"};
  const std::span<const std::string_view> names[3] = {usages, selectors, mtypes};
  size_t pos = 0;
  auto blank = [](char c) { return c == ' ' || c == '\t'; };
  for (int f = 0; f < 3; ++f) {
    while (pos < text.size() && blank(text[pos])) ++pos;
    size_t start = pos;
    while (pos < text.size() && !blank(text[pos])) ++pos;
    if (!parse_field(text.substr(start, pos - start), names[f], *fields[f]))
      return sr::error{"tlsa: bad field " + std::to_string(f + 1) + " in \"" +
                       std::string(text) + "\""};
  }
  int hi = -1;
  for (; pos < text.size(); ++pos) {
    char c = text[pos];
    if (blank(c)) continue;
    int v = hex_value(c);
    if (v < 0) return sr::error{"tlsa: bad hex in \"" + std::string(text) + "\""};
    if (hi < 0) {
      hi = v;
    } else {
      r.data.push_back(static_cast<uint8_t>(hi << 4 | v));
      hi = -1;
    }
  }
  if (hi >= 0) return sr::error{"tlsa: odd number of hex digits in \"" + std::string(text) + "\""};
  if (r.data.empty()) return sr::error{"tlsa: no association data in \"" + std::string(text) + "\""};
  return r;
}

bool tlsa_record::usable() const {
  if (usage != dane_ta && usage != dane_ee) return false;  // PKIX-* unusable for SMTP
  if (selector != cert && selector != spki) return false;
  switch (mtype) {
    case full: return !data.empty();
    case sha2_256: return data.size() == sha256_len;
    case sha2_512: return data.size() == sha512_len;
    default: return false;
  }
}

std::string tlsa_record::to_string() const {
  static constexpr char hex[] = "0123456789abcdef";
  std::string s = std::to_string(usage) + " " + std::to_string(selector) + " " +
                  std::to_string(mtype) + " ";
  for (uint8_t b : data) {
    s += hex[b >> 4];
    s += hex[b & 15];
  }
  return s;
}

std::vector<tlsa_record> usable_tlsa(std::span<const std::vector<uint8_t>> rdatas) {
  std::vector<tlsa_record> out;
  for (const auto& rd : rdatas) {
    auto r = tlsa_record::from_rdata(rd);
    if (r && r->usable()) out.push_back(std::move(*r));
  }
  return out;
}

std::span<const uint8_t> spki_of(std::span<const uint8_t> cert_der) {
  uint8_t tag;
  std::span<const uint8_t> tlv, body, tbs;
  // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serial,
  //   signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }
  if (!der_next(cert_der, tag, tlv, body) || tag != 0x30) return {};
  if (!der_next(body, tag, tlv, tbs) || tag != 0x30) return {};
  if (!tbs.empty() && tbs[0] == 0xa0 && !der_next(tbs, tag, tlv, body)) return {};
  static constexpr uint8_t skipped[] = {0x02, 0x30, 0x30, 0x30, 0x30};  // serial..subject
  for (uint8_t want : skipped)
    if (!der_next(tbs, tag, tlv, body) || tag != want) return {};
  if (!der_next(tbs, tag, tlv, body) || tag != 0x30) return {};
  return tlv;
}

dane_match match_tlsa(std::span<const std::span<const uint8_t>> chain,
                      std::span<const tlsa_record> records, std::string_view host) {
  dane_match m;
  bool any = std::any_of(records.begin(), records.end(),
                         [](const tlsa_record& r) { return r.usable(); });
  if (!any) return m;
  m.verdict = cert_verdict::tlsa_mismatch;
  if (chain.empty()) return m;

  // Chains are short (MAX_CHAIN_DEPTH 9); certificates past 16 are never looked at.
  std::array<cert_view, 16> certs;
  size_t n = std::min(chain.size(), certs.size());
  for (size_t i = 0; i < n; ++i) certs[i].der = chain[i];

  // DANE-EE first: cheap, and it decides alone (§3.1.1: no name, no dates).
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    if (r.usable() && r.usage == tlsa_record::dane_ee && certs[0].matches(r)) {
      m = {cert_verdict::verified, static_cast<int>(i), 0};
      return m;
    }
  }

  // DANE-TA: the best outcome over every (record, matching chain certificate) pair.
  x509_ptr leaf;
  std::string ref(host);
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    if (!r.usable() || r.usage != tlsa_record::dane_ta) continue;
    for (size_t k = 0; k < n; ++k) {
      if (!certs[k].matches(r)) continue;
      if (!leaf) {
        const unsigned char* p = chain[0].data();
        leaf.reset(wolfSSL_d2i_X509(nullptr, &p, static_cast<int>(chain[0].size())));
        if (!leaf) return m;  // an unparsable leaf cannot pass a TA check
      }
      cert_verdict v = check_ta(chain.first(n), k, leaf.get(), ref);
      if (v < m.verdict) m = {v, static_cast<int>(i), static_cast<int>(k)};
      if (v == cert_verdict::verified) return m;
    }
  }
  return m;
}

}  // namespace sr::tls
