// sts::resolver with the real fetcher: the shard's DNS resolver against the DNS fixture,
// sts::https_fetcher over https::client, and tests/tools/https_host.py serving policy
// files with the test CA's certificates (sts.crt names mta-sts.dN.sts.test). One shard
// loop per test: it resolves every domain at once and stops when all have answered.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <map>

#include "sealrelay/core/shard.hh"
#include "sealrelay/dns/resolver.hh"
#include "sealrelay/https/client.hh"
#include "sealrelay/net/buffer_ring.hh"
#include "sealrelay/sts/https_fetcher.hh"
#include "sealrelay/sts/resolver.hh"
#include "sealrelay/tls/context.hh"
#include "support/harness.hh"
#include "support/peers.hh"

using namespace sr;

namespace {

// d1: enforce; d2: testing; d3: 404; d4: the host presents a certificate for another name;
// d5: a policy file that does not parse.
const char* zone =
    "_mta-sts.d1.sts.test TXT \"v=STSv1; id=1\"\nmta-sts.d1.sts.test A 127.0.0.1\n"
    "_mta-sts.d2.sts.test TXT \"v=STSv1; id=1\"\nmta-sts.d2.sts.test A 127.0.0.1\n"
    "_mta-sts.d3.sts.test TXT \"v=STSv1; id=1\"\nmta-sts.d3.sts.test A 127.0.0.1\n"
    "_mta-sts.d4.sts.test TXT \"v=STSv1; id=1\"\nmta-sts.d4.sts.test A 127.0.0.1\n"
    "_mta-sts.d5.sts.test TXT \"v=STSv1; id=1\"\nmta-sts.d5.sts.test A 127.0.0.1\n";

// Records every fetch's result on its way to the resolver.
class recording_fetcher final : public sts::fetcher {
 public:
  explicit recording_fetcher(sts::fetcher& inner) : _inner(inner) {}
  void fetch(std::string_view domain, std::function<void(const sts::fetch_result&)> done) override {
    _inner.fetch(domain, [this, d = std::string(domain), done = std::move(done)](const sts::fetch_result& r) {
      results[d] = r;
      done(r);
    });
  }
  std::map<std::string, sts::fetch_result> results;

 private:
  sts::fetcher& _inner;
};

struct answer final : policy::resolve_completion {
  bool got = false;
  policy::resolution r;
  void policy_resolved(const policy::resolution& res) override {
    got = true;
    r = res;
  }
};

class sts_https : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/usr/bin/ldns-testns", X_OK) != 0) GTEST_SKIP() << "ldns-testns not installed (Debian package ldnsutils)";
    _ns = std::make_unique<integ::dns_fixture>(zone);
    ASSERT_TRUE(_ns->start()) << _ns->error();
    std::ofstream(_policies.path() / "d1.sts.test.txt")
        << "version: STSv1\r\nmode: enforce\r\nmx: *.mx.test\r\nmax_age: 86400\r\n";
    std::ofstream(_policies.path() / "d2.sts.test.txt") << "version: STSv1\nmode: testing\nmx: mx1.mx.test\nmax_age: 600\n";
    std::ofstream(_policies.path() / "d4.sts.test.txt") << "version: STSv1\nmode: enforce\nmx: mx1.mx.test\nmax_age: 600\n";
    std::ofstream(_policies.path() / "d5.sts.test.txt") << "version: STSv1\nmode: enforce\nmax_age: 600\n";  // no mx
    integ::https_host_options o;
    o.hosts = {"127.0.0.1"};
    o.certs = {"server", "mta-sts.d4.sts.test=wrongname", "sts"};
    o.policy_dir = _policies.path().string();
    _host = std::make_unique<integ::https_host>(o);
    ASSERT_TRUE(_host->start()) << _host->error();
    ASSERT_TRUE(_sh.init()) << "io_uring unavailable";
    if (int rc = _br.register_with(_sh.ring()); rc < 0) GTEST_SKIP() << "provided buffer rings unsupported";
    dns::resolver_options ro;
    ro.servers = {_ns->address()};
    _dns = std::make_unique<dns::resolver>(_sh, ro);
    ASSERT_TRUE(_dns->start().ok());
    auto ctx = tls::context::client((integ::source_root() / "tests/certs/ca.crt").string(), tls::tls_version::v1_2);
    ASSERT_TRUE(ctx.ok()) << ctx.err();
    _ctx = std::make_unique<tls::context>(std::move(ctx.value()));
    _client = std::make_unique<https::client>(_sh, *_dns, _br, _pool, *_ctx);
    _https = std::make_unique<sts::https_fetcher>(*_client, _host->port());
    _rec = std::make_unique<recording_fetcher>(*_https);
    _res = std::make_unique<sts::resolver>(*_dns, *_rec, _cache, nullptr, policy::effective_policy{});
    _sh.on_tick([this] {
      bool all = true;
      for (auto& [d, a] : _answers) all &= a.got;
      if (all || _sh.now_ms() > _deadline_ms) _sh.stop();
    });
  }
  void TearDown() override {
    _res.reset();
    _client.reset();
    _dns.reset();
  }
  // Resolve every domain at once and run the shard until all answered (or 30 s passed).
  void resolve_all(const std::vector<std::string>& domains) {
    for (const auto& d : domains) _answers[d];
    _sh.post([this] {
      for (auto& [d, a] : _answers) _res->resolve(d, a);
    });
    _deadline_ms = _sh.now_ms() + 30000;
    _sh.run();
    for (auto& [d, a] : _answers) ASSERT_TRUE(a.got) << d << " not answered";
  }

  integ::temp_dir _policies;
  std::unique_ptr<integ::dns_fixture> _ns;
  std::unique_ptr<integ::https_host> _host;
  core::shard _sh{core::shard::options{}};
  net::chunk_pool _pool{4096, 64};
  net::buffer_ring _br{_pool, 64, 7};
  std::unique_ptr<dns::resolver> _dns;
  std::unique_ptr<tls::context> _ctx;
  std::unique_ptr<https::client> _client;
  std::unique_ptr<sts::https_fetcher> _https;
  std::unique_ptr<recording_fetcher> _rec;
  sts::cache _cache{"", 0};
  std::unique_ptr<sts::resolver> _res;
  std::map<std::string, answer> _answers;
  uint64_t _deadline_ms = 0;
};

TEST_F(sts_https, fetches_policies_and_refuses_what_rfc_8461_refuses) {
  resolve_all({"d1.sts.test", "d2.sts.test", "d3.sts.test", "d4.sts.test", "d5.sts.test"});
  const auto& d1 = _answers["d1.sts.test"].r;
  ASSERT_NE(d1.sts, nullptr);
  EXPECT_EQ(d1.sts->mode, policy::sts_mode::enforce);
  EXPECT_TRUE(d1.sts->matches("mx7.mx.test"));
  EXPECT_TRUE(d1.policy.raised);
  EXPECT_EQ(d1.policy.source, report::policy_source::mta_sts);
  ASSERT_NE(_cache.find("d1.sts.test"), nullptr);
  EXPECT_EQ(_cache.find("d1.sts.test")->text, "version: STSv1\r\nmode: enforce\r\nmx: *.mx.test\r\nmax_age: 86400\r\n");

  const auto& d2 = _answers["d2.sts.test"].r;
  ASSERT_NE(d2.sts, nullptr);
  EXPECT_EQ(d2.sts->mode, policy::sts_mode::testing);
  EXPECT_FALSE(d2.policy.raised);

  // 404, a certificate for another name, an invalid policy: no policy at all.
  for (const char* d : {"d3.sts.test", "d4.sts.test", "d5.sts.test"}) {
    EXPECT_EQ(_answers[d].r.sts, nullptr) << d;
    EXPECT_FALSE(_answers[d].r.policy.raised) << d;
  }
  EXPECT_FALSE(_rec->results["d3.sts.test"].ok);
  EXPECT_FALSE(_rec->results["d3.sts.test"].cert_failed);
  EXPECT_FALSE(_rec->results["d4.sts.test"].ok);
  EXPECT_TRUE(_rec->results["d4.sts.test"].cert_failed) << _rec->results["d4.sts.test"].detail;
  EXPECT_TRUE(_rec->results["d5.sts.test"].ok);  // fetched; the resolver refused to parse it
  EXPECT_EQ(_res->stats().fetch_failures, 3u);
  EXPECT_EQ(_res->stats().stored, 2u);
  // Each request named its policy host (SNI and Host) and the well-known path.
  for (const auto& r : _host->requests()) {
    EXPECT_EQ(r.path, "/.well-known/mta-sts.txt");
    EXPECT_EQ(r.sni, r.host);
  }
}

}  // namespace
