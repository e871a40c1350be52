// The resolver's AD bit against real DNSSEC: the DNSSEC world (support/peers.hh) signs
// zones with ldns-signzone, serves them with nsd and validates them with a private unbound
// on loopback. Secure answers (records, NODATA, NXDOMAIN, CNAME chains) carry `ad`; bogus
// or expired signatures and a dead authoritative server are temp_fail, never "no records";
// an insecure zone answers without `ad`. These are the facts DANE (RFC 7672 §2.2) rests on.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/dns/resolver.hh"
#include "support/peers.hh"

using namespace sr;

namespace {

// 32 bytes of SHA-256 in TLSA data (DANE-EE, SPKI); the value only has to round-trip.
const std::string digest = "8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d";

std::string world_zone() {
  return "$ZONE secure.test\n"
         "secure.test MX 10 mx1.secure.test\n"
         "secure.test TXT \"v=STSv1; id=20240101\"\n"
         "mx1.secure.test A 127.0.0.2\n"
         "alias.secure.test CNAME mx1.secure.test\n"
         "half.secure.test A 127.0.0.4\n"
         "half.secure.test AAAA ::1\n"
         "half.secure.test BOGUS AAAA\n"
         "_25._tcp.mx1.secure.test TLSA 3 1 1 " + digest + "\n"
         "$ZONE bogus.test bogus\n"
         "bogus.test MX 10 mx1.bogus.test\n"
         "mx1.bogus.test A 127.0.0.2\n"
         "_25._tcp.mx1.bogus.test TLSA 3 1 1 " + digest + "\n"
         "$ZONE expired.test expired\n"
         "expired.test MX 10 mx1.expired.test\n"
         "mx1.expired.test A 127.0.0.2\n"
         "$ZONE partly.test\n"
         "partly.test MX 10 mx1.partly.test\n"
         "mx1.partly.test A 127.0.0.2\n"
         "_25._tcp.mx1.partly.test TLSA 3 1 1 " + digest + "\n"
         "_25._tcp.mx1.partly.test BOGUS TLSA\n"
         "$ZONE insecure.test insecure\n"
         "insecure.test MX 10 mx1.insecure.test\n"
         "mx1.insecure.test A 127.0.0.2\n"
         "_25._tcp.mx1.insecure.test TLSA 3 1 1 " + digest + "\n"
         "$ZONE dead.test dead\n";
}

std::string addr_str(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
  return buf;
}

std::string hex(const std::vector<uint8_t>& v, size_t from) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (size_t i = from; i < v.size(); ++i) {
    out += d[v[i] >> 4];
    out += d[v[i] & 15];
  }
  return out;
}

class dns_dnssec : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (access("/usr/sbin/nsd", X_OK) != 0 || access("/usr/sbin/unbound", X_OK) != 0 ||
        access("/usr/bin/ldns-signzone", X_OK) != 0)
      return;
    _world = new integ::dnssec_world(world_zone());
    if (!_world->start()) _start_error = _world->error() + "\n" + _world->log();
  }
  static void TearDownTestSuite() {
    delete _world;
    _world = nullptr;
  }

  void SetUp() override {
    if (!_world) GTEST_SKIP() << "nsd, unbound or ldnsutils not installed (tools/install-deps)";
    ASSERT_TRUE(_start_error.empty()) << _start_error;
    ASSERT_TRUE(_sh.init()) << "io_uring unavailable";
    _sh.on_tick([this] {
      if (_sh.now_ms() > _deadline_ms) {
        _timed_out = true;
        _sh.stop();
      }
    });
    dns::resolver_options o;
    o.servers = {_world->address()};
    o.timeout_ms = 3000;
    o.attempts = 2;
    _res = std::make_unique<dns::resolver>(_sh, o);
    auto st = _res->start();
    ASSERT_TRUE(st.ok()) << (st.ok() ? "" : st.err());
  }
  void TearDown() override { _res.reset(); }

  // Run the lookups in order on the shard loop (a shard runs once: one run per test),
  // each started when the one before has answered; 20 s at most in all.
  using step = std::function<void(std::function<void()>)>;
  void run(std::vector<step> steps) {
    _steps = std::move(steps);
    _deadline_ms = _sh.now_ms() + 20000;
    _sh.post([this] { advance(); });
    _sh.run();
    ASSERT_FALSE(_timed_out) << "lookups did not finish (at step " << _at << ")\n" << _world->log();
  }
  void advance() {
    if (_at == _steps.size()) return _sh.stop();
    _steps[_at++]([this] { advance(); });
  }
  template <typename R, typename L>
  step lookup(std::string name, R& out, L method) {
    return [this, name = std::move(name), &out, method](std::function<void()> next) {
      (_res.get()->*method)(name, [&out, next](const R& r) {
        out = r;
        next();
      });
    };
  }
  step mx(std::string n, dns::mx_result& out) { return lookup(std::move(n), out, &dns::resolver::lookup_mx); }
  step addrs(std::string n, dns::addr_result& out) { return lookup(std::move(n), out, &dns::resolver::lookup_addrs); }
  step tlsa(std::string n, dns::tlsa_result& out) { return lookup(std::move(n), out, &dns::resolver::lookup_tlsa); }
  step txt(std::string n, dns::txt_result& out) { return lookup(std::move(n), out, &dns::resolver::lookup_txt); }

  static integ::dnssec_world* _world;
  static std::string _start_error;
  core::shard _sh{core::shard::options{}};
  std::unique_ptr<dns::resolver> _res;
  std::vector<step> _steps;
  size_t _at = 0;
  uint64_t _deadline_ms = ~uint64_t(0);
  bool _timed_out = false;
};

integ::dnssec_world* dns_dnssec::_world = nullptr;
std::string dns_dnssec::_start_error;

}  // namespace

TEST_F(dns_dnssec, secure_zone_answers_carry_ad) {
  dns::mx_result m;
  dns::addr_result a;
  dns::tlsa_result t;
  dns::txt_result x;
  run({mx("secure.test", m), addrs("mx1.secure.test", a), tlsa("_25._tcp.mx1.secure.test", t), txt("secure.test", x)});
  ASSERT_EQ(m.status, dns::status::ok) << _world->log();
  ASSERT_EQ(m.hosts.size(), 1u);
  EXPECT_EQ(m.hosts[0].name, "mx1.secure.test");
  EXPECT_TRUE(m.ad) << "MX of a signed zone under a trust anchor\n" << _world->log();

  ASSERT_EQ(a.status, dns::status::ok);
  ASSERT_EQ(a.addrs.size(), 1u);
  EXPECT_EQ(addr_str(a.addrs[0]), "127.0.0.2");
  EXPECT_TRUE(a.ad) << "A and the (secure NODATA) AAAA both validated";

  ASSERT_EQ(t.status, dns::status::ok);
  ASSERT_EQ(t.records.size(), 1u);
  ASSERT_EQ(t.records[0].size(), 3u + 32u);
  EXPECT_EQ(t.records[0][0], 3);
  EXPECT_EQ(t.records[0][1], 1);
  EXPECT_EQ(t.records[0][2], 1);
  EXPECT_EQ(hex(t.records[0], 3), digest);
  EXPECT_TRUE(t.ad);

  ASSERT_EQ(x.status, dns::status::ok);
  ASSERT_EQ(x.texts.size(), 1u);
  EXPECT_EQ(x.texts[0], "v=STSv1; id=20240101");
  EXPECT_TRUE(x.ad);
}

TEST_F(dns_dnssec, secure_denials_and_cname_chains_carry_ad) {
  dns::tlsa_result none, nodata;
  dns::txt_result notxt;
  dns::addr_result alias;
  run({tlsa("_25._tcp.mx2.secure.test", none), tlsa("_25._tcp.secure.test", nodata), txt("mx1.secure.test", notxt),
       addrs("alias.secure.test", alias)});
  // "No TLSA" is only trustworthy when proven (NSEC): DANE then falls back to opportunistic.
  EXPECT_EQ(none.status, dns::status::nxdomain);
  EXPECT_TRUE(none.records.empty());
  EXPECT_TRUE(none.ad) << _world->log();

  // _25._tcp.secure.test does not exist either (no name below it): NXDOMAIN, proven.
  EXPECT_EQ(nodata.status, dns::status::nxdomain) << dns::to_string(nodata.status);
  EXPECT_TRUE(nodata.ad);

  EXPECT_EQ(notxt.status, dns::status::nodata);
  EXPECT_TRUE(notxt.ad);

  ASSERT_EQ(alias.status, dns::status::ok);
  ASSERT_EQ(alias.addrs.size(), 1u);
  EXPECT_EQ(addr_str(alias.addrs[0]), "127.0.0.2");
  EXPECT_TRUE(alias.ad);
}

TEST_F(dns_dnssec, bogus_signatures_are_temp_fail_never_no_records) {
  dns::mx_result m, e;
  dns::tlsa_result t;
  dns::addr_result ea;
  run({mx("bogus.test", m), tlsa("_25._tcp.mx1.bogus.test", t), mx("expired.test", e), addrs("mx1.expired.test", ea)});
  EXPECT_EQ(m.status, dns::status::temp_fail) << dns::to_string(m.status) << "\n" << _world->log();
  EXPECT_FALSE(m.ad);
  EXPECT_TRUE(m.hosts.empty());

  EXPECT_EQ(t.status, dns::status::temp_fail);
  EXPECT_FALSE(t.ad);
  EXPECT_TRUE(t.records.empty());

  EXPECT_EQ(e.status, dns::status::temp_fail) << "signatures expired in 2020";
  EXPECT_FALSE(e.ad);
  EXPECT_EQ(ea.status, dns::status::temp_fail);
  EXPECT_TRUE(ea.addrs.empty());
}

TEST_F(dns_dnssec, one_bogus_rrset_fails_alone) {
  // The MX and A of partly.test validate; only its TLSA signature was broken after signing.
  dns::mx_result m;
  dns::addr_result a;
  dns::tlsa_result t;
  run({mx("partly.test", m), addrs("mx1.partly.test", a), tlsa("_25._tcp.mx1.partly.test", t)});
  ASSERT_EQ(m.status, dns::status::ok);
  EXPECT_TRUE(m.ad);
  ASSERT_EQ(a.status, dns::status::ok);
  EXPECT_TRUE(a.ad);
  EXPECT_EQ(t.status, dns::status::temp_fail) << dns::to_string(t.status) << "\n" << _world->log();
  EXPECT_FALSE(t.ad);
  EXPECT_TRUE(t.records.empty());
}

TEST_F(dns_dnssec, a_bogus_address_family_does_not_unsecure_the_other) {
  // half.secure.test: a valid A, a bogus AAAA. The addresses that are left are validated,
  // so the answer stays secure (else breaking AAAA would switch DANE off), without ::1.
  dns::addr_result a;
  run({addrs("half.secure.test", a)});
  ASSERT_EQ(a.status, dns::status::ok) << _world->log();
  ASSERT_EQ(a.addrs.size(), 1u);
  EXPECT_EQ(addr_str(a.addrs[0]), "127.0.0.4");
  EXPECT_TRUE(a.ad);
}

TEST_F(dns_dnssec, dead_authoritative_server_is_temp_fail) {
  dns::mx_result m;
  dns::tlsa_result t;
  run({mx("dead.test", m), tlsa("_25._tcp.mx1.dead.test", t)});
  EXPECT_EQ(m.status, dns::status::temp_fail) << dns::to_string(m.status);
  EXPECT_FALSE(m.ad);
  EXPECT_EQ(t.status, dns::status::temp_fail);
  EXPECT_FALSE(t.ad);
}

TEST_F(dns_dnssec, insecure_zone_answers_without_ad) {
  dns::mx_result m;
  dns::addr_result a;
  dns::tlsa_result t;
  run({mx("insecure.test", m), addrs("mx1.insecure.test", a), tlsa("_25._tcp.mx1.insecure.test", t)});
  ASSERT_EQ(m.status, dns::status::ok) << _world->log();
  ASSERT_EQ(m.hosts.size(), 1u);
  EXPECT_EQ(m.hosts[0].name, "mx1.insecure.test");
  EXPECT_FALSE(m.ad);
  ASSERT_EQ(a.status, dns::status::ok);
  EXPECT_FALSE(a.ad);
  // Records that exist but are not validated: never a reason to trust them for DANE.
  ASSERT_EQ(t.status, dns::status::ok);
  EXPECT_EQ(t.records.size(), 1u);
  EXPECT_FALSE(t.ad);
}

TEST_F(dns_dnssec, ad_survives_the_cache) {
  dns::tlsa_result first, again;
  dns::mx_result bogus_first, bogus_again;
  uint64_t hits_before = 0;
  run({tlsa("_25._tcp.mx1.secure.test", first),
       [&](std::function<void()> next) {
         hits_before = _res->stats().cache_hits;
         next();
       },
       tlsa("_25._tcp.mx1.secure.test", again), mx("bogus.test", bogus_first), mx("bogus.test", bogus_again)});
  ASSERT_TRUE(first.ad);
  EXPECT_GT(_res->stats().cache_hits, hits_before);
  EXPECT_TRUE(again.ad);
  EXPECT_EQ(bogus_first.status, dns::status::temp_fail);
  EXPECT_EQ(bogus_again.status, dns::status::temp_fail);
  EXPECT_FALSE(bogus_again.ad);
}
