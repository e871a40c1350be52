// DANE for SMTP (RFC 7672): TLSA records and matching a peer's certificate chain against
// them. Records come in as raw TLSA rdata (what dns::tlsa_result carries) or presentation
// text; only DANE-TA(2) and DANE-EE(3) with selector Cert/SPKI and matching Full/SHA2-256/
// SHA2-512 are usable (§3.1); the rest are ignored. DANE-EE ignores names and dates
// (§3.1.1); DANE-TA needs the leaf to chain to a matched certificate of the presented
// chain, to name the reference host and to be within validity (§3.1.2). Plain bytes only:
// no wolfSSL or ldns type crosses this header.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/tls/verdict.hh"
#include "sealrelay/util/result.hh"

namespace sr::tls {

struct tlsa_record {
  // Certificate usages, selectors and matching types (RFC 6698 §2.1, names of RFC 7218).
  static constexpr uint8_t pkix_ta = 0, pkix_ee = 1, dane_ta = 2, dane_ee = 3;
  static constexpr uint8_t cert = 0, spki = 1;
  static constexpr uint8_t full = 0, sha2_256 = 1, sha2_512 = 2;

  uint8_t usage = 0;
  uint8_t selector = 0;
  uint8_t mtype = 0;
  std::vector<uint8_t> data;  // certificate association data

  // Parse raw TLSA rdata: usage, selector, matching type, then the data (RFC 6698 §2.1).
  static sr::result<tlsa_record> from_rdata(std::span<const uint8_t> rdata);
  // Parse presentation form "3 1 1 AB12..." (hex may hold blanks; RFC 7218 mnemonics such
  // as "DANE-EE SPKI SHA2-256" are accepted too).
  static sr::result<tlsa_record> parse(std::string_view text);
  // Return true when RFC 7672 §3.1 lets SMTP use the record (usage 2/3, selector 0/1,
  // matching 0/1/2 with 32 bytes for SHA2-256, 64 for SHA2-512, non-empty for Full).
  bool usable() const;
  // Return the presentation form, "3 1 1 ab12..." (lower-case hex).
  std::string to_string() const;

  bool operator==(const tlsa_record&) const = default;
};

// Return the usable records of a raw rdata set, in order (malformed and unusable dropped).
std::vector<tlsa_record> usable_tlsa(std::span<const std::vector<uint8_t>> rdatas);

// What matching a chain against TLSA records decided.
struct dane_match {
  cert_verdict verdict = cert_verdict::none;  // none: no usable record was given
  int record = -1;  // index (into the records given) of the record that decided, -1 none
  int depth = -1;   // chain index of the certificate it matched (0 = leaf), -1 none
};

// Match `chain` (DER certificates as presented, leaf first) against `records` for the
// reference host (the MX host name): verified when a DANE-EE record matches the leaf or a
// DANE-TA record matches a chain certificate the leaf chains to and the leaf names `host`
// and is within validity; name_mismatch / expired for the best TA match whose leaf fails
// those; tlsa_mismatch when nothing matched; none when no record is usable.
dane_match match_tlsa(std::span<const std::span<const uint8_t>> chain,
                      std::span<const tlsa_record> records, std::string_view host);

// Return the SubjectPublicKeyInfo (its full DER) inside a DER certificate, empty when the
// certificate does not parse.
std::span<const uint8_t> spki_of(std::span<const uint8_t> cert_der);

}  // namespace sr::tls
