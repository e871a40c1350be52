// DNS messages in and out, with no I/O: a query's wire bytes built with ldns, and a
// response reduced to what the cache keeps (records of the asked type after following
// the CNAME chain inside the answer, or the negative/referral outcome and its TTL).
// Internal to src/dns: no ldns type appears here, so callers need no ldns headers.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sr::dns {

// RR types the resolver asks for (RFC 1035, 3596, 6698).
namespace rrtype {
inline constexpr uint16_t a = 1;
inline constexpr uint16_t cname = 5;
inline constexpr uint16_t soa = 6;
inline constexpr uint16_t mx = 15;
inline constexpr uint16_t txt = 16;
inline constexpr uint16_t aaaa = 28;
inline constexpr uint16_t tlsa = 52;
}  // namespace rrtype

// EDNS0 payload size we advertise (DNS flag day 2020: no IP fragmentation).
inline constexpr uint16_t edns_udp_size = 1232;
// Longest CNAME chain followed, inside one answer and across re-queries together.
inline constexpr unsigned max_cname_depth = 8;

// One record's data in the cache's form.
//   MX: `pref` and the exchange in canonical form ("mx.example." or "." for null MX);
//   A/AAAA/TLSA and other types: the raw rdata bytes; TXT: its strings concatenated.
struct rdata {
  uint16_t pref = 0;
  std::string data;
};

// What a response says about the question it answers.
enum class outcome : uint8_t {
  records,      // `records` hold the RRset (possibly reached through CNAMEs)
  cname,        // the chain ends at `target` with no data for it: ask again for `target`
  nodata,       // the name exists but has no RR of the type (RFC 2308 NODATA)
  nxdomain,     // the name (or the end of its CNAME chain) does not exist
  truncated,    // TC=1: ask again over TCP
  server_fail,  // SERVFAIL, REFUSED, NOTIMP, FORMERR, ...: ask another server
  malformed,    // unparsable, not a response, or not an answer to our question: drop it
};
const char* to_string(outcome o);

struct answer {
  outcome kind = outcome::malformed;
  uint16_t id = 0;
  bool ad = false;                // the responder validated it (DNSSEC AD bit)
  uint32_t ttl = 0;               // seconds this outcome may be cached (0: do not cache)
  std::vector<rdata> records;     // outcome::records
  std::string target;             // outcome::cname
};

// Return `name` in canonical form (lowercase, absolute: "example.com."), or nothing
// if it is not a valid domain name.
std::optional<std::string> canonical_name(std::string_view name);

// Build a recursive query for (`name`, `type`) with EDNS0 (DO bit, 1232-byte buffer)
// into `out`; false if `name` is not a valid domain name.
bool build_query(std::string_view name, uint16_t type, uint16_t id, std::vector<uint8_t>& out);

// Read a response to the question (`qname` canonical, `qtype`); TTLs are capped at
// `max_ttl` (positive) and `max_negative_ttl` (NXDOMAIN/NODATA, from the SOA: RFC 2308).
answer parse_answer(std::span<const uint8_t> wire, std::string_view qname, uint16_t qtype,
                    uint32_t max_ttl, uint32_t max_negative_ttl);

}  // namespace sr::dns
