// libFuzzer target: DNS responses as the resolver reads them (src/dns/packet.cc, ldns):
// bytes from the network (any resolver reply, spoofed or not) answering an MX, A, AAAA,
// TLSA, TXT or CNAME question. Input: byte 0 picks the question type, byte 1 the name
// (its top bit instead selects the query-builder mode), the rest is the wire packet.
// Invariants: nothing crashes or hangs (CNAME loops, compression loops, truncation);
// records only for outcome::records, each MX exchange canonical (lower case, absolute);
// a CNAME outcome names another canonical name; every TTL is within its cap; refusals
// carry no TTL. Query mode: canonical_name() is idempotent, and the query built for a
// canonical name, turned into a response (QR=1), reads back as NODATA with its id.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "check.hh"
#include "dns/packet.hh"

namespace {

namespace rr = sr::dns::rrtype;
constexpr uint16_t types[] = {rr::mx, rr::a, rr::aaaa, rr::tlsa, rr::txt, rr::cname, rr::soa, 99};
// Names the seeds' questions use (the fuzzer reaches others by changing the packet).
constexpr const char* names[] = {"example.com.", "mx.example.com.", "_mta-sts.example.com.",
                                 "_smtp._tls.example.com.", "_25._tcp.mx.example.com.", "a.b."};
constexpr uint32_t max_ttl = 86400, max_negative_ttl = 3600;

bool canonical(std::string_view n) {
  if (n.empty() || n.back() != '.') return false;
  for (char c : n) CHECK(!(c >= 'A' && c <= 'Z'));
  return true;
}

void check_answer(const sr::dns::answer& a, std::string_view qname, uint16_t qtype) {
  using sr::dns::outcome;
  CHECK(a.kind == outcome::records || a.records.empty());
  CHECK(a.kind == outcome::cname || a.target.empty());
  switch (a.kind) {
    case outcome::records:
      CHECK(!a.records.empty());
      CHECK(a.ttl <= max_ttl);
      for (const auto& r : a.records) {
        if (qtype == rr::mx) CHECK(canonical(r.data));
        else CHECK(r.pref == 0);
      }
      break;
    case outcome::cname:
      CHECK(canonical(a.target) && a.target != qname);
      CHECK(a.ttl <= max_ttl);
      break;
    case outcome::nodata:
    case outcome::nxdomain:
      CHECK(a.ttl <= max_negative_ttl);
      break;
    default:
      CHECK(a.ttl == 0);
  }
}

void query_mode(std::string_view text, uint16_t qtype, uint16_t id) {
  auto canon = sr::dns::canonical_name(text);
  if (!canon) return;
  CHECK(canonical(*canon));
  auto again = sr::dns::canonical_name(*canon);
  CHECK(again && *again == *canon);
  std::vector<uint8_t> wire;
  if (!sr::dns::build_query(*canon, qtype, id, wire)) return;
  CHECK(wire.size() >= 12 && wire[0] == (id >> 8) && wire[1] == (id & 0xff));
  wire[2] |= 0x80;  // QR: the query read back as an (empty) response
  sr::dns::answer a = sr::dns::parse_answer(wire, *canon, qtype, max_ttl, max_negative_ttl);
  CHECK(a.kind == sr::dns::outcome::nodata);
  CHECK(a.id == id && a.ttl == 0 && a.records.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 2 || size > 8192) return -1;   // UDP answers are at most 1232 octets, TCP 64 KiB
  const uint16_t qtype = types[bytes[0] % (sizeof types / sizeof types[0])];
  std::span<const uint8_t> wire(bytes + 2, size - 2);
  if (bytes[1] & 0x80) {
    query_mode(std::string_view(reinterpret_cast<const char*>(wire.data()), wire.size()), qtype,
               uint16_t(bytes[0] << 8 | bytes[1]));
    return 0;
  }
  std::string_view qname = names[bytes[1] % (sizeof names / sizeof names[0])];
  sr::dns::answer a = sr::dns::parse_answer(wire, qname, qtype, max_ttl, max_negative_ttl);
  check_answer(a, qname, qtype);
  if (wire.size() >= 2 && a.kind != sr::dns::outcome::malformed) CHECK(a.id == (wire[0] << 8 | wire[1]));
  return 0;
}
