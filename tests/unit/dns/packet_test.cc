// The I/O-free half of src/dns: queries built with ldns are read back by ldns, and
// responses built with ldns are reduced by parse_answer (CNAME chains, TTLs, RFC 2308
// negative TTLs, TC, error rcodes, foreign questions); plus the server-list helpers.
#include <gtest/gtest.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "dns/packet.hh"
#include "sealrelay/dns/resolver.hh"

using namespace sr;
using dns::outcome;

namespace {

struct response_spec {
  uint16_t id = 0x1234;
  const char* qname = "example.com.";
  ldns_rr_type qtype = LDNS_RR_TYPE_MX;
  ldns_pkt_rcode rcode = LDNS_RCODE_NOERROR;
  std::vector<const char*> answer;
  std::vector<const char*> authority;
  bool qr = true, tc = false, ad = false;
};

std::vector<uint8_t> make_response(const response_spec& s) {
  ldns_pkt* p = ldns_pkt_new();
  ldns_pkt_set_id(p, s.id);
  ldns_pkt_set_qr(p, s.qr);
  ldns_pkt_set_tc(p, s.tc);
  ldns_pkt_set_ad(p, s.ad);
  ldns_pkt_set_rcode(p, s.rcode);
  ldns_rr* q = ldns_rr_new();
  ldns_rr_set_owner(q, ldns_dname_new_frm_str(s.qname));
  ldns_rr_set_type(q, s.qtype);
  ldns_rr_set_class(q, LDNS_RR_CLASS_IN);
  ldns_rr_set_question(q, true);
  ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, q);
  auto push = [&](ldns_pkt_section sec, const char* text) {
    ldns_rr* rr = nullptr;
    EXPECT_EQ(ldns_rr_new_frm_str(&rr, text, 3600, nullptr, nullptr), LDNS_STATUS_OK) << text;
    ldns_pkt_push_rr(p, sec, rr);
  };
  for (auto* t : s.answer) push(LDNS_SECTION_ANSWER, t);
  for (auto* t : s.authority) push(LDNS_SECTION_AUTHORITY, t);
  uint8_t* wire = nullptr;
  size_t size = 0;
  EXPECT_EQ(ldns_pkt2wire(&wire, p, &size), LDNS_STATUS_OK);
  std::vector<uint8_t> out(wire, wire + size);
  free(wire);
  ldns_pkt_free(p);
  return out;
}

dns::answer parse(const response_spec& s, const char* qname = "example.com.",
                  uint16_t qtype = dns::rrtype::mx) {
  auto wire = make_response(s);
  return dns::parse_answer(wire, qname, qtype, 86400, 3600);
}

}  // namespace

TEST(dns_packet, canonical_name_is_lowercase_and_absolute) {
  EXPECT_EQ(dns::canonical_name("Mail.Example.COM").value(), "mail.example.com.");
  EXPECT_EQ(dns::canonical_name("example.com.").value(), "example.com.");
  EXPECT_FALSE(dns::canonical_name("").has_value());
  EXPECT_FALSE(dns::canonical_name("a..b").has_value());
  EXPECT_FALSE(dns::canonical_name(std::string(70, 'a') + ".com").has_value());
}

TEST(dns_packet, query_carries_edns_do_and_recursion_desired) {
  std::vector<uint8_t> wire;
  ASSERT_TRUE(dns::build_query("example.com.", dns::rrtype::mx, 0xbeef, wire));
  ldns_pkt* p = nullptr;
  ASSERT_EQ(ldns_wire2pkt(&p, wire.data(), wire.size()), LDNS_STATUS_OK);
  EXPECT_EQ(ldns_pkt_id(p), 0xbeef);
  EXPECT_TRUE(ldns_pkt_rd(p));
  EXPECT_FALSE(ldns_pkt_qr(p));
  EXPECT_TRUE(ldns_pkt_edns(p));
  EXPECT_TRUE(ldns_pkt_edns_do(p));
  EXPECT_EQ(ldns_pkt_edns_udp_size(p), 1232);
  ASSERT_EQ(ldns_rr_list_rr_count(ldns_pkt_question(p)), 1u);
  ldns_rr* q = ldns_rr_list_rr(ldns_pkt_question(p), 0);
  EXPECT_EQ(ldns_rr_get_type(q), LDNS_RR_TYPE_MX);
  char* owner = ldns_rdf2str(ldns_rr_owner(q));
  EXPECT_STREQ(owner, "example.com.");
  free(owner);
  ldns_pkt_free(p);
  EXPECT_FALSE(dns::build_query("a..b", dns::rrtype::mx, 1, wire));
}

TEST(dns_packet, mx_records_with_min_ttl_and_ad) {
  response_spec s;
  s.ad = true;
  s.answer = {"example.com. 300 IN MX 10 MX1.example.com.", "example.com. 200 IN MX 20 mx2.example.com."};
  auto a = parse(s);
  ASSERT_EQ(a.kind, outcome::records);
  EXPECT_EQ(a.id, 0x1234);
  EXPECT_TRUE(a.ad);
  EXPECT_EQ(a.ttl, 200u);
  ASSERT_EQ(a.records.size(), 2u);
  EXPECT_EQ(a.records[0].pref, 10);
  EXPECT_EQ(a.records[0].data, "mx1.example.com.");
  EXPECT_EQ(a.records[1].data, "mx2.example.com.");
}

TEST(dns_packet, positive_ttl_is_capped) {
  response_spec s;
  s.answer = {"example.com. 999999 IN MX 10 mx.example.com."};
  EXPECT_EQ(parse(s).ttl, 86400u);
}

TEST(dns_packet, cname_chain_inside_the_answer_is_followed) {
  response_spec s;
  s.answer = {"example.com. 100 IN CNAME mid.example.net.", "mid.example.net. 50 IN CNAME real.example.org.",
              "real.example.org. 300 IN MX 5 mx.example.org.", "other.example. 1 IN MX 1 decoy.example."};
  auto a = parse(s);
  ASSERT_EQ(a.kind, outcome::records);
  ASSERT_EQ(a.records.size(), 1u);
  EXPECT_EQ(a.records[0].data, "mx.example.org.");
  EXPECT_EQ(a.ttl, 50u);
}

TEST(dns_packet, dangling_cname_asks_again_unless_soa_says_nodata) {
  response_spec s;
  s.answer = {"example.com. 100 IN CNAME target.example.net."};
  auto a = parse(s);
  EXPECT_EQ(a.kind, outcome::cname);
  EXPECT_EQ(a.target, "target.example.net.");
  EXPECT_EQ(a.ttl, 100u);
  s.authority = {"example.net. 600 IN SOA ns.example.net. host.example.net. 1 3600 600 86400 30"};
  a = parse(s);
  EXPECT_EQ(a.kind, outcome::nodata);
  EXPECT_EQ(a.ttl, 30u);
}

TEST(dns_packet, negative_ttl_from_soa_rfc2308) {
  response_spec s;
  s.rcode = LDNS_RCODE_NXDOMAIN;
  s.authority = {"example.com. 120 IN SOA ns.example.com. host.example.com. 1 3600 600 86400 900"};
  auto a = parse(s);
  EXPECT_EQ(a.kind, outcome::nxdomain);
  EXPECT_EQ(a.ttl, 120u);  // min(SOA TTL, MINIMUM)
  s.authority = {"example.com. 99999 IN SOA ns.example.com. host.example.com. 1 3600 600 86400 99999"};
  EXPECT_EQ(parse(s).ttl, 3600u);  // capped
  s.rcode = LDNS_RCODE_NOERROR;
  s.authority = {};
  a = parse(s);
  EXPECT_EQ(a.kind, outcome::nodata);
  EXPECT_EQ(a.ttl, 0u);  // no SOA: not cached
}

TEST(dns_packet, truncated_error_and_foreign_answers) {
  response_spec s;
  s.tc = true;
  EXPECT_EQ(parse(s).kind, outcome::truncated);
  s.tc = false;
  s.rcode = LDNS_RCODE_SERVFAIL;
  EXPECT_EQ(parse(s).kind, outcome::server_fail);
  s.rcode = LDNS_RCODE_REFUSED;
  EXPECT_EQ(parse(s).kind, outcome::server_fail);
  s.rcode = LDNS_RCODE_NOERROR;
  s.answer = {"example.com. 300 IN MX 10 mx.example.com."};
  EXPECT_EQ(parse(s, "example.org.").kind, outcome::malformed);               // other name
  EXPECT_EQ(parse(s, "example.com.", dns::rrtype::a).kind, outcome::malformed);  // other type
  s.qr = false;
  EXPECT_EQ(parse(s).kind, outcome::malformed);  // a query, not a response
  uint8_t junk[5] = {1, 2, 3, 4, 5};
  EXPECT_EQ(dns::parse_answer(junk, "example.com.", dns::rrtype::mx, 1, 1).kind, outcome::malformed);
}

// Found by tests/fuzz/dns_fuzz: RDLENGTH 0 makes ldns build an MX without fields, which
// read as an exchange "" (a host the resolver would then be asked to look up). Such an
// answer is dropped as malformed, not read as NODATA (which would mean the implicit MX).
TEST(dns_packet, mx_with_empty_rdata_is_malformed) {
  const uint8_t head[] = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
                          7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 15, 0, 1};
  std::vector<uint8_t> wire(std::begin(head), std::end(head));
  const uint8_t empty_mx[] = {0xc0, 0x0c, 0, 15, 0, 1, 0, 0, 0x0e, 0x10, 0, 0};
  wire.insert(wire.end(), std::begin(empty_mx), std::end(empty_mx));
  auto a = dns::parse_answer(wire, "example.com.", dns::rrtype::mx, 86400, 3600);
  EXPECT_EQ(a.kind, outcome::malformed);
  EXPECT_TRUE(a.records.empty());
  EXPECT_EQ(a.ttl, 0u);
}

TEST(dns_packet, txt_strings_are_joined_and_tlsa_kept_raw) {
  response_spec s;
  s.qname = "_mta-sts.example.com.";
  s.qtype = LDNS_RR_TYPE_TXT;
  s.answer = {"_mta-sts.example.com. 300 IN TXT \"v=STSv1; \" \"id=2024\""};
  auto a = parse(s, "_mta-sts.example.com.", dns::rrtype::txt);
  ASSERT_EQ(a.kind, outcome::records);
  ASSERT_EQ(a.records.size(), 1u);
  EXPECT_EQ(a.records[0].data, "v=STSv1; id=2024");

  s.qname = "_25._tcp.mx.example.com.";
  s.qtype = LDNS_RR_TYPE_TLSA;
  s.answer = {"_25._tcp.mx.example.com. 300 IN TLSA 3 1 1 0a0b0c0d"};
  a = parse(s, "_25._tcp.mx.example.com.", dns::rrtype::tlsa);
  ASSERT_EQ(a.kind, outcome::records);
  ASSERT_EQ(a.records.size(), 1u);
  EXPECT_EQ(a.records[0].data, std::string("\x03\x01\x01\x0a\x0b\x0c\x0d", 7));
}

TEST(dns_config, parse_server_forms) {
  auto v4 = dns::parse_server("127.0.0.1:5353");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->ss_family, AF_INET);
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in&>(*v4).sin_port), 5353);
  auto plain = dns::parse_server("192.0.2.1");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in&>(*plain).sin_port), 53);
  auto v6 = dns::parse_server("[::1]:1053");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->ss_family, AF_INET6);
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in6&>(*v6).sin6_port), 1053);
  auto bare6 = dns::parse_server("2001:db8::1");
  ASSERT_TRUE(bare6.ok());
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in6&>(*bare6).sin6_port), 53);
  EXPECT_FALSE(dns::parse_server("dns.example:53").ok());
  EXPECT_FALSE(dns::parse_server("127.0.0.1:0").ok());
  EXPECT_FALSE(dns::parse_server("127.0.0.1:99999").ok());
  EXPECT_FALSE(dns::parse_server("[::1").ok());
}

TEST(dns_config, servers_from_resolv_conf_reads_nameserver_lines) {
  char path[] = "/tmp/sr-resolv-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream f(path);
    f << "# comment\nsearch example.com\nnameserver 192.0.2.53\n"
         "  nameserver\t2001:db8::53  # trailing\nnameserver not-an-ip\nnameservers 1.1.1.1\n"
         "; nameserver 10.0.0.1\noptions edns0\n";
  }
  auto servers = dns::servers_from_resolv_conf(path);
  unlink(path);
  ASSERT_EQ(servers.size(), 2u);
  EXPECT_EQ(servers[0], "192.0.2.53:53");
  EXPECT_EQ(servers[1], "[2001:db8::53]:53");
  EXPECT_TRUE(dns::servers_from_resolv_conf("/nonexistent/resolv.conf").empty());
}
