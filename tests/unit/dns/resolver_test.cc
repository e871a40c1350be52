// The resolver against a real DNS server on loopback: ldns-testns (Debian ldnsutils), run
// by the shared DNS fixture (support/peers.hh), answers from a canned data file and logs
// every query it receives, so the tests count the packets that reached the server (cache,
// negative cache, coalescing, UDP vs TCP).
// Each test runs one shard loop; its steps chain through the resolver's callbacks.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "sealrelay/core/shard.hh"
#include "sealrelay/dns/resolver.hh"
#include "support/peers.hh"

using namespace sr;

namespace {

const char* soa = "example. 300 IN SOA ns.example. host.example. 1 3600 600 86400 300";
const char* short_soa = "example. 1 IN SOA ns.example. host.example. 1 3600 600 86400 1";

// One data-file entry answering `question` ("name. IN TYPE").
std::string entry(const std::string& question, const std::string& reply, const std::vector<std::string>& answer,
                  const std::vector<std::string>& authority = {}, const std::string& match_extra = "") {
  std::string e = "ENTRY_BEGIN\nMATCH opcode qtype qname " + match_extra + "\nADJUST copy_id\nREPLY " + reply +
                  "\nSECTION QUESTION\n" + question + "\nSECTION ANSWER\n";
  for (auto& a : answer) e += a + "\n";
  e += "SECTION AUTHORITY\n";
  for (auto& a : authority) e += a + "\n";
  return e + "ENTRY_END\n";
}

std::string data_file() {
  const std::string ok = "QR RD RA NOERROR";
  std::string d = "$ORIGIN example.\n";
  d += entry("shuffle.example. IN MX", ok,
             {"shuffle.example. 300 IN MX 10 a.shuffle.example.", "shuffle.example. 300 IN MX 20 c.shuffle.example.",
              "shuffle.example. 300 IN MX 10 b.shuffle.example.", "shuffle.example. 300 IN MX 5 d.shuffle.example."});
  d += entry("nullmx.example. IN MX", ok, {"nullmx.example. 300 IN MX 0 ."});
  d += entry("implicit.example. IN MX", ok, {}, {soa});
  d += entry("implicit.example. IN A", ok, {"implicit.example. 300 IN A 192.0.2.10"});
  d += entry("implicit.example. IN AAAA", ok, {}, {soa});
  d += entry("missing.example. IN MX", "QR RD RA NXDOMAIN", {}, {soa});
  d += entry("alias.example. IN MX", ok,
             {"alias.example. 300 IN CNAME mid.example.", "mid.example. 300 IN CNAME real.example.",
              "real.example. 300 IN MX 10 mx.real.example."});
  d += entry("hop.example. IN MX", ok, {"hop.example. 300 IN CNAME target.example."});
  d += entry("target.example. IN MX", ok, {"target.example. 300 IN MX 10 mx.target.example."});
  d += entry("loop1.example. IN MX", ok, {"loop1.example. 300 IN CNAME loop2.example."});
  d += entry("loop2.example. IN MX", ok, {"loop2.example. 300 IN CNAME loop1.example."});
  d += entry("short.example. IN A", ok, {"short.example. 1 IN A 192.0.2.20"});
  d += entry("short.example. IN AAAA", ok, {}, {short_soa});
  // Over UDP only the header and question: TC=1 sends the resolver to TCP.
  d += entry("big.example. IN MX", "QR RD RA TC NOERROR", {}, {}, "UDP");
  d += entry("big.example. IN MX", ok,
             {"big.example. 300 IN MX 10 mx1.big.example.", "big.example. 300 IN MX 20 mx2.big.example.",
              "big.example. 300 IN MX 30 mx3.big.example."},
             {}, "TCP");
  d += entry("signed.example. IN MX", "QR RD RA AD NOERROR", {"signed.example. 300 IN MX 10 mx.signed.example."});
  d += entry("signed.example. IN A", "QR RD RA AD NOERROR", {"signed.example. 300 IN A 192.0.2.30"});
  d += entry("signed.example. IN AAAA", "QR RD RA AD NOERROR", {"signed.example. 300 IN AAAA 2001:db8::30"});
  d += entry("plain.example. IN MX", ok, {"plain.example. 300 IN MX 10 mx.plain.example."});
  d += entry("signedalias.example. IN MX", "QR RD RA AD NOERROR",
             {"signedalias.example. 300 IN CNAME plain.example."});
  d += entry("coalesce.example. IN MX", ok, {"coalesce.example. 300 IN MX 10 mx.coalesce.example."});
  d += entry("broken.example. IN MX", "QR RD RA SERVFAIL", {});
  d += entry("_mta-sts.example. IN TXT", ok, {"_mta-sts.example. 300 IN TXT \"v=STSv1; \" \"id=20240101\""});
  d += entry("_25._tcp.mx.signed.example. IN TLSA", "QR RD RA AD NOERROR",
             {"_25._tcp.mx.signed.example. 300 IN TLSA 3 1 1 0102030405"});
  // Anything else is refused at once, so a missing entry shows up as temp_fail, not a hang.
  d += "ENTRY_BEGIN\nMATCH opcode\nADJUST copy_id copy_query\nREPLY QR REFUSED\nENTRY_END\n";
  return d;
}

std::string addr_str(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
  else
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, buf, sizeof buf);
  return buf;
}

std::vector<std::string> names(const dns::mx_result& r) {
  std::vector<std::string> out;
  for (auto& h : r.hosts) out.push_back(h.name);
  return out;
}

using next_fn = std::function<void()>;
using step = std::function<void(next_fn)>;

class dns_resolver : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/usr/bin/ldns-testns", X_OK) != 0) GTEST_SKIP() << "ldns-testns not installed (Debian package ldnsutils)";
    _ns = std::make_unique<integ::dns_fixture>(data_file(), integ::dns_options{.raw = true, .log_queries = true});
    ASSERT_TRUE(_ns->start()) << _ns->error() << _ns->log();
    ASSERT_TRUE(_sh.init()) << "io_uring unavailable";
    _sh.on_tick([this] {
      if (_sh.now_ms() > _deadline_ms) {
        _timed_out = true;
        _sh.stop();
      }
      if (_wake && _sh.now_ms() >= _wake_at) {
        auto fn = std::move(_wake);
        _wake = nullptr;
        fn();
      }
    });
  }

  void TearDown() override {
    _res.reset();  // before the shard
  }

  dns::resolver& make(std::vector<std::string> servers, uint32_t timeout_ms = 2000, unsigned attempts = 2) {
    dns::resolver_options o;
    o.servers = std::move(servers);
    o.timeout_ms = timeout_ms;
    o.attempts = attempts;
    _res = std::make_unique<dns::resolver>(_sh, o);
    auto st = _res->start();
    EXPECT_TRUE(st.ok()) << (st.ok() ? "" : st.err());
    return *_res;
  }

  // Run the steps in order on the shard loop, each calling next() when done.
  void run(std::vector<step> steps) {
    _steps = std::move(steps);
    _deadline_ms = _sh.now_ms() + 20000;
    _sh.post([this] { advance(); });
    _sh.run();
    ASSERT_FALSE(_timed_out) << "steps did not finish (at step " << _at << ")";
  }

  // A step that lets `ms` of shard time pass.
  step wait_ms(uint64_t ms) {
    return [this, ms](next_fn next) {
      _wake_at = _sh.now_ms() + ms;
      _wake = std::move(next);
    };
  }
  step mx(const std::string& name, dns::mx_result& out) {
    return [this, name, &out](next_fn next) {
      _res->lookup_mx(name, [&out, next](const dns::mx_result& r) {
        out = r;
        next();
      });
    };
  }
  step addrs(const std::string& name, dns::addr_result& out) {
    return [this, name, &out](next_fn next) {
      _res->lookup_addrs(name, [&out, next](const dns::addr_result& r) {
        out = r;
        next();
      });
    };
  }

  void advance() {
    if (_at == _steps.size()) return _sh.stop();
    auto& s = _steps[_at++];
    s([this] { advance(); });
  }

  std::unique_ptr<integ::dns_fixture> _ns;   // ldns-testns on loopback, logging each query
  core::shard _sh{core::shard::options{}};
  std::unique_ptr<dns::resolver> _res;
  std::vector<step> _steps;
  size_t _at = 0;
  uint64_t _deadline_ms = ~uint64_t(0);
  bool _timed_out = false;
  next_fn _wake;
  uint64_t _wake_at = 0;
};

}  // namespace

TEST_F(dns_resolver, mx_sorted_by_preference_and_shuffled_among_equals) {
  make({_ns->address()});
  std::vector<dns::mx_result> got(40);
  std::vector<step> steps;
  for (auto& r : got) steps.push_back(mx("Shuffle.Example", r));
  run(steps);
  std::set<std::vector<std::string>> orders;
  for (auto& r : got) {
    ASSERT_EQ(r.status, dns::status::ok);
    EXPECT_FALSE(r.implicit);
    auto n = names(r);
    ASSERT_EQ(n.size(), 4u);
    EXPECT_EQ(n[0], "d.shuffle.example");
    EXPECT_EQ(n[3], "c.shuffle.example");
    EXPECT_EQ(r.hosts[1].preference, 10);
    EXPECT_EQ(r.hosts[2].preference, 10);
    orders.insert(n);
  }
  EXPECT_EQ(orders.size(), 2u) << "both orders of the two preference-10 hosts appear";
  EXPECT_EQ(_ns->queries("shuffle.example.", "MX"), 1);  // the other 39 came from the cache
  auto st = _res->stats();
  EXPECT_EQ(st.cache_misses, 1u);
  EXPECT_EQ(st.cache_hits, 39u);
}

TEST_F(dns_resolver, null_mx_is_reported) {
  make({_ns->address()});
  dns::mx_result r;
  run({mx("nullmx.example", r)});
  EXPECT_EQ(r.status, dns::status::null_mx);
  EXPECT_TRUE(r.hosts.empty());
}

TEST_F(dns_resolver, no_mx_gives_implicit_mx_and_its_address) {
  make({_ns->address()});
  dns::mx_result m, m2;
  dns::addr_result a;
  run({mx("implicit.example", m), addrs("implicit.example", a), mx("implicit.example", m2)});
  ASSERT_EQ(m.status, dns::status::ok);
  EXPECT_TRUE(m.implicit);
  ASSERT_EQ(names(m), std::vector<std::string>{"implicit.example"});
  ASSERT_EQ(a.status, dns::status::ok);
  ASSERT_EQ(a.addrs.size(), 1u);
  EXPECT_EQ(addr_str(a.addrs[0]), "192.0.2.10");
  EXPECT_EQ(reinterpret_cast<const sockaddr_in&>(a.addrs[0]).sin_port, 0);
  EXPECT_TRUE(m2.implicit);
  EXPECT_EQ(_ns->queries("implicit.example.", "MX"), 1);  // NODATA cached (SOA minimum)
}

TEST_F(dns_resolver, nxdomain_is_cached_negatively) {
  make({_ns->address()});
  dns::mx_result r1, r2;
  run({mx("missing.example", r1), mx("missing.example", r2)});
  EXPECT_EQ(r1.status, dns::status::nxdomain);
  EXPECT_EQ(r2.status, dns::status::nxdomain);
  EXPECT_EQ(_ns->queries("missing.example.", "MX"), 1);
  EXPECT_EQ(_res->stats().cache_hits, 1u);
}

TEST_F(dns_resolver, cname_chains_in_the_answer_and_by_requery) {
  make({_ns->address()});
  dns::mx_result inside, requery, loop;
  run({mx("alias.example", inside), mx("hop.example", requery), mx("loop1.example", loop)});
  ASSERT_EQ(inside.status, dns::status::ok);
  EXPECT_EQ(names(inside), std::vector<std::string>{"mx.real.example"});
  EXPECT_EQ(_ns->queries("real.example.", "MX"), 0);
  ASSERT_EQ(requery.status, dns::status::ok);
  EXPECT_EQ(names(requery), std::vector<std::string>{"mx.target.example"});
  EXPECT_EQ(_ns->queries("target.example.", "MX"), 1);
  EXPECT_EQ(loop.status, dns::status::temp_fail);  // a CNAME loop ends at the depth limit
  EXPECT_EQ(_ns->queries("loop1.example.", "MX"), 1);
  EXPECT_EQ(_ns->queries("loop2.example.", "MX"), 1);
}

TEST_F(dns_resolver, expired_ttl_is_asked_again) {
  make({_ns->address()});
  dns::addr_result a1, a2, a3;
  run({addrs("short.example", a1), addrs("short.example", a2), wait_ms(1200), addrs("short.example", a3)});
  for (auto* a : {&a1, &a2, &a3}) {
    ASSERT_EQ(a->status, dns::status::ok);
    ASSERT_EQ(a->addrs.size(), 1u);
    EXPECT_EQ(addr_str(a->addrs[0]), "192.0.2.20");
  }
  EXPECT_EQ(_ns->queries("short.example.", "A"), 2);  // second from the cache, third after 1 s TTL
  EXPECT_EQ(_ns->queries("short.example.", "AAAA"), 2);
}

TEST_F(dns_resolver, truncated_udp_answer_is_retried_over_tcp) {
  make({_ns->address()});
  dns::mx_result r;
  run({mx("big.example", r)});
  ASSERT_EQ(r.status, dns::status::ok);
  EXPECT_EQ(names(r), (std::vector<std::string>{"mx1.big.example", "mx2.big.example", "mx3.big.example"}));
  EXPECT_EQ(_ns->queries("big.example.", "MX", "UDP"), 1);
  EXPECT_EQ(_ns->queries("big.example.", "MX", "TCP"), 1);
  EXPECT_EQ(_res->stats().tcp_queries, 1u);
}

TEST_F(dns_resolver, silent_first_server_times_out_and_second_answers) {
  // A bound UDP socket that never reads: packets vanish, like a dead server.
  int silent = socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(silent, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(silent, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  socklen_t len = sizeof sa;
  getsockname(silent, reinterpret_cast<sockaddr*>(&sa), &len);
  make({"127.0.0.1:" + std::to_string(ntohs(sa.sin_port)), _ns->address()}, 300);
  dns::mx_result r;
  run({mx("plain.example", r)});
  close(silent);
  ASSERT_EQ(r.status, dns::status::ok);
  EXPECT_EQ(names(r), std::vector<std::string>{"mx.plain.example"});
  EXPECT_EQ(_res->stats().timeouts, 1u);
  EXPECT_EQ(_ns->queries("plain.example.", "MX"), 1);
}

TEST_F(dns_resolver, refused_port_moves_on_without_waiting_for_the_timeout) {
  // A port nobody listens on: the kernel's ICMP refusal reaches the connected socket.
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  socklen_t len = sizeof sa;
  getsockname(s, reinterpret_cast<sockaddr*>(&sa), &len);
  close(s);
  make({"127.0.0.1:" + std::to_string(ntohs(sa.sin_port)), _ns->address()}, 5000);
  dns::mx_result r;
  run({mx("plain.example", r)});
  ASSERT_EQ(r.status, dns::status::ok);
  EXPECT_EQ(_res->stats().timeouts, 0u);
}

TEST_F(dns_resolver, servfail_everywhere_is_a_temporary_failure) {
  make({_ns->address(), _ns->address()}, 2000, 2);
  dns::mx_result r1, r2;
  run({mx("broken.example", r1), mx("broken.example", r2)});
  EXPECT_EQ(r1.status, dns::status::temp_fail);
  EXPECT_EQ(r2.status, dns::status::temp_fail);
  // 2 servers x 2 attempts per lookup, and failures are not cached.
  EXPECT_EQ(_ns->queries("broken.example.", "MX"), 8);
  EXPECT_EQ(_res->stats().timeouts, 0u);
}

TEST_F(dns_resolver, ad_bit_passes_through_and_needs_every_answer) {
  make({_ns->address()});
  dns::mx_result signed_mx, plain_mx, alias_mx;
  dns::addr_result signed_addrs;
  run({mx("signed.example", signed_mx), mx("plain.example", plain_mx), mx("signedalias.example", alias_mx),
       addrs("signed.example", signed_addrs)});
  ASSERT_EQ(signed_mx.status, dns::status::ok);
  EXPECT_TRUE(signed_mx.ad);
  ASSERT_EQ(plain_mx.status, dns::status::ok);
  EXPECT_FALSE(plain_mx.ad);
  ASSERT_EQ(alias_mx.status, dns::status::ok);  // signed CNAME to an unsigned MX
  EXPECT_EQ(names(alias_mx), std::vector<std::string>{"mx.plain.example"});
  EXPECT_FALSE(alias_mx.ad);
  ASSERT_EQ(signed_addrs.status, dns::status::ok);
  EXPECT_TRUE(signed_addrs.ad);
  ASSERT_EQ(signed_addrs.addrs.size(), 2u);
  EXPECT_EQ(signed_addrs.addrs[0].ss_family, AF_INET);  // IPv4 first
  EXPECT_EQ(addr_str(signed_addrs.addrs[0]), "192.0.2.30");
  EXPECT_EQ(signed_addrs.addrs[1].ss_family, AF_INET6);
  EXPECT_EQ(addr_str(signed_addrs.addrs[1]), "2001:db8::30");
}

TEST_F(dns_resolver, concurrent_identical_lookups_share_one_packet) {
  make({_ns->address()});
  std::vector<dns::mx_result> got(5);
  int done = 0;
  run({[&](next_fn next) {
    for (auto& r : got)
      _res->lookup_mx("coalesce.example", [&, next](const dns::mx_result& m) {
        r = m;
        if (++done == 5) next();
      });
  }});
  for (auto& r : got) {
    ASSERT_EQ(r.status, dns::status::ok);
    EXPECT_EQ(names(r), std::vector<std::string>{"mx.coalesce.example"});
  }
  EXPECT_EQ(_ns->queries("coalesce.example.", "MX"), 1);
  EXPECT_EQ(_res->stats().coalesced, 4u);
}

TEST_F(dns_resolver, callbacks_never_run_inside_the_call) {
  make({_ns->address()});
  dns::mx_result warm;
  bool in_call = false, ran_inside = false, ran = false, bad_ran_inside = false;
  run({mx("plain.example", warm), [&](next_fn next) {
         in_call = true;
         _res->lookup_mx("plain.example", [&, next](const dns::mx_result& r) {  // a cache hit
           ran_inside = in_call;
           ran = r.status == dns::status::ok;
           next();
         });
         _res->lookup_mx("bad..name", [&](const dns::mx_result& r) {
           bad_ran_inside = in_call;
           EXPECT_EQ(r.status, dns::status::bad_name);
         });
         in_call = false;
       }});
  EXPECT_TRUE(ran);
  EXPECT_FALSE(ran_inside);
  EXPECT_FALSE(bad_ran_inside);
}

TEST_F(dns_resolver, txt_and_tlsa_records) {
  make({_ns->address()});
  dns::txt_result txt, none;
  dns::tlsa_result tlsa;
  run({[&](next_fn next) {
         _res->lookup_txt("_mta-sts.example", [&, next](const dns::txt_result& r) {
           txt = r;
           next();
         });
       },
       [&](next_fn next) {
         _res->lookup_txt("missing.example", [&, next](const dns::txt_result& r) {
           none = r;  // refused by the catch-all entry: a temporary failure
           next();
         });
       },
       [&](next_fn next) {
         _res->lookup_tlsa("_25._tcp.mx.signed.example", [&, next](const dns::tlsa_result& r) {
           tlsa = r;
           next();
         });
       }});
  ASSERT_EQ(txt.status, dns::status::ok);
  EXPECT_EQ(txt.texts, std::vector<std::string>{"v=STSv1; id=20240101"});
  EXPECT_EQ(none.status, dns::status::temp_fail);
  ASSERT_EQ(tlsa.status, dns::status::ok);
  EXPECT_TRUE(tlsa.ad);
  ASSERT_EQ(tlsa.records.size(), 1u);
  EXPECT_EQ(tlsa.records[0], (std::vector<uint8_t>{3, 1, 1, 1, 2, 3, 4, 5}));
}

TEST_F(dns_resolver, ip_literals_answer_themselves) {
  make({_ns->address()});
  dns::addr_result v4, v6;
  run({addrs("192.0.2.7", v4), addrs("[2001:db8::7]", v6)});
  ASSERT_EQ(v4.status, dns::status::ok);
  ASSERT_EQ(v4.addrs.size(), 1u);
  EXPECT_EQ(addr_str(v4.addrs[0]), "192.0.2.7");
  ASSERT_EQ(v6.status, dns::status::ok);
  EXPECT_EQ(addr_str(v6.addrs[0]), "2001:db8::7");
  EXPECT_EQ(_res->stats().udp_queries, 0u);
}
