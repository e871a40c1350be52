// Query building and response reading with ldns. Every ldns object is owned by a
// unique_ptr for the length of one call; nothing ldns-typed escapes this file.
// Names are compared in canonical form (ldns presentation, ASCII-lowercased).
#include "packet.hh"

#include <ldns/ldns.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <memory>

namespace sr::dns {
namespace {

struct pkt_free {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
struct rdf_free {
  void operator()(ldns_rdf* r) const { ldns_rdf_deep_free(r); }
};
using pkt_ptr = std::unique_ptr<ldns_pkt, pkt_free>;
using rdf_ptr = std::unique_ptr<ldns_rdf, rdf_free>;

// Canonical text of a dname rdf ("mx.example."), escapes kept as ldns writes them.
std::string dname_str(const ldns_rdf* rdf) {
  std::string out;
  if (!rdf) return out;
  char* s = ldns_rdf2str(rdf);
  if (!s) return out;
  out = s;
  free(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

// The record data of `rr` in the cache's form (see rdata in packet.hh).
rdata rr_data(const ldns_rr* rr, uint16_t type) {
  rdata d;
  size_t n = ldns_rr_rd_count(rr);
  if (type == rrtype::mx && n >= 2) {
    d.pref = ldns_rdf2native_int16(ldns_rr_rdf(rr, 0));
    d.data = dname_str(ldns_rr_rdf(rr, 1));
    return d;
  }
  for (size_t i = 0; i < n; ++i) {
    const ldns_rdf* f = ldns_rr_rdf(rr, i);
    const auto* p = reinterpret_cast<const char*>(ldns_rdf_data(f));
    size_t len = ldns_rdf_size(f);
    if (type == rrtype::txt && ldns_rdf_get_type(f) == LDNS_RDF_TYPE_STR && len >= 1)
      d.data.append(p + 1, std::min<size_t>(len - 1, uint8_t(p[0])));  // drop the length octet
    else
      d.data.append(p, len);
  }
  return d;
}

// RFC 2308 §5: a negative answer lives min(SOA TTL, SOA MINIMUM); no SOA, no caching.
uint32_t negative_ttl(const ldns_pkt* pkt, uint32_t cap) {
  const ldns_rr_list* auth = ldns_pkt_authority(pkt);
  for (size_t i = 0; i < ldns_rr_list_rr_count(auth); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(auth, i);
    if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA || ldns_rr_rd_count(rr) < 7) continue;
    uint32_t minimum = ldns_rdf2native_int32(ldns_rr_rdf(rr, 6));
    return std::min({ldns_rr_ttl(rr), minimum, cap});
  }
  return 0;
}

bool has_soa(const ldns_pkt* pkt) {
  const ldns_rr_list* auth = ldns_pkt_authority(pkt);
  for (size_t i = 0; i < ldns_rr_list_rr_count(auth); ++i)
    if (ldns_rr_get_type(ldns_rr_list_rr(auth, i)) == LDNS_RR_TYPE_SOA) return true;
  return false;
}

}  // namespace

const char* to_string(outcome o) {
  switch (o) {
    case outcome::records: return "records";
    case outcome::cname: return "cname";
    case outcome::nodata: return "nodata";
    case outcome::nxdomain: return "nxdomain";
    case outcome::truncated: return "truncated";
    case outcome::server_fail: return "server_fail";
    case outcome::malformed: return "malformed";
  }
  return "?";
}

std::optional<std::string> canonical_name(std::string_view name) {
  if (name.empty() || name.size() > 1024) return std::nullopt;
  std::string z(name);
  rdf_ptr rdf(ldns_dname_new_frm_str(z.c_str()));
  if (!rdf) return std::nullopt;
  std::string out = dname_str(rdf.get());
  if (out.empty()) return std::nullopt;
  return out;
}

bool build_query(std::string_view name, uint16_t type, uint16_t id, std::vector<uint8_t>& out) {
  out.clear();
  std::string z(name);
  ldns_rdf* qname = ldns_dname_new_frm_str(z.c_str());
  if (!qname) return false;
  pkt_ptr pkt(ldns_pkt_query_new(qname, ldns_rr_type(type), LDNS_RR_CLASS_IN, LDNS_RD));
  if (!pkt) {
    ldns_rdf_deep_free(qname);
    return false;
  }
  ldns_pkt_set_id(pkt.get(), id);
  // DO makes a validating resolver return the AD bit (RFC 3225, RFC 6840 §5.7).
  ldns_pkt_set_edns_udp_size(pkt.get(), edns_udp_size);
  ldns_pkt_set_edns_do(pkt.get(), true);
  uint8_t* wire = nullptr;
  size_t size = 0;
  if (ldns_pkt2wire(&wire, pkt.get(), &size) != LDNS_STATUS_OK || !wire) return false;
  out.assign(wire, wire + size);
  free(wire);
  return true;
}

answer parse_answer(std::span<const uint8_t> wire, std::string_view qname, uint16_t qtype,
                    uint32_t max_ttl, uint32_t max_negative_ttl) {
  answer a;
  ldns_pkt* raw = nullptr;
  if (wire.size() < 12 || ldns_wire2pkt(&raw, wire.data(), wire.size()) != LDNS_STATUS_OK)
    return a;
  pkt_ptr pkt(raw);
  a.id = ldns_pkt_id(raw);
  if (!ldns_pkt_qr(raw)) return a;
  ldns_pkt_rcode rcode = ldns_pkt_get_rcode(raw);
  const ldns_rr_list* question = ldns_pkt_question(raw);
  size_t qcount = ldns_rr_list_rr_count(question);
  if (qcount == 1) {
    const ldns_rr* q = ldns_rr_list_rr(question, 0);
    if (ldns_rr_get_type(q) != qtype || dname_str(ldns_rr_owner(q)) != qname) return a;
  } else if (qcount != 0 || (rcode == LDNS_RCODE_NOERROR && !ldns_pkt_tc(raw)) ||
             rcode == LDNS_RCODE_NXDOMAIN) {
    // Only error and truncated responses may omit the question.
    return a;
  }
  a.ad = ldns_pkt_ad(raw);
  if (ldns_pkt_tc(raw)) {
    a.kind = outcome::truncated;
    return a;
  }
  if (rcode != LDNS_RCODE_NOERROR && rcode != LDNS_RCODE_NXDOMAIN) {
    a.kind = outcome::server_fail;
    return a;
  }

  // Follow the CNAME chain inside the answer section from the question's name.
  const ldns_rr_list* ans = ldns_pkt_answer(raw);
  size_t n = ldns_rr_list_rr_count(ans);
  std::vector<std::string> owners(n);
  for (size_t i = 0; i < n; ++i) owners[i] = dname_str(ldns_rr_owner(ldns_rr_list_rr(ans, i)));
  std::string cur(qname);
  uint32_t chain_ttl = std::numeric_limits<uint32_t>::max();
  for (unsigned depth = 0; depth <= max_cname_depth; ++depth) {
    uint32_t set_ttl = std::numeric_limits<uint32_t>::max();
    for (size_t i = 0; i < n; ++i) {
      const ldns_rr* rr = ldns_rr_list_rr(ans, i);
      if (owners[i] != cur || ldns_rr_get_type(rr) != qtype ||
          ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN)
        continue;
      // ldns reads RDLENGTH 0 as a record without fields (RFC 2136's delete form), which no
      // answer carries: an MX without an exchange read as exchange "" (tests/fuzz/dns_fuzz).
      // The whole answer is dropped, not just the record, so that a broken MX set never
      // turns into NODATA and the implicit MX of RFC 5321 §5.1.
      if (ldns_rr_rd_count(rr) == 0 || (qtype == rrtype::mx && ldns_rr_rd_count(rr) < 2)) {
        a.records.clear();
        a.kind = outcome::malformed;
        a.ttl = 0;
        return a;
      }
      a.records.push_back(rr_data(rr, qtype));
      set_ttl = std::min(set_ttl, ldns_rr_ttl(rr));
    }
    if (!a.records.empty()) {
      a.kind = outcome::records;
      a.ttl = std::min({chain_ttl, set_ttl, max_ttl});
      return a;
    }
    const ldns_rr* cname = nullptr;
    for (size_t i = 0; i < n && !cname; ++i) {
      const ldns_rr* rr = ldns_rr_list_rr(ans, i);
      if (owners[i] == cur && ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME &&
          ldns_rr_rd_count(rr) >= 1)
        cname = rr;
    }
    if (!cname) break;
    chain_ttl = std::min(chain_ttl, ldns_rr_ttl(cname));
    cur = dname_str(ldns_rr_rdf(cname, 0));
  }
  uint32_t neg = negative_ttl(raw, max_negative_ttl);
  if (rcode == LDNS_RCODE_NXDOMAIN) {
    a.kind = outcome::nxdomain;
    a.ttl = std::min(neg, chain_ttl);
  } else if (cur != qname && !has_soa(raw)) {
    // The resolver stopped at the alias without saying the target is empty: ask for it.
    a.kind = outcome::cname;
    a.target = cur;
    a.ttl = std::min(chain_ttl, max_ttl);
  } else {
    a.kind = outcome::nodata;
    a.ttl = std::min(neg, chain_ttl);
  }
  return a;
}

}  // namespace sr::dns
