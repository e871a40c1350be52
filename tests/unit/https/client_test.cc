// The HTTPS client against real peers on loopback: names come from the DNS fixture
// (ldns-testns), answers from tests/tools/https_host.py with certificates picked by SNI
// (tests/certs: sts for the good hosts, expired/selfsigned/wrongname for the bad ones).
// Each test runs one shard loop until its fetches answered, bounded by a deadline.
#include <gtest/gtest.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/dns/resolver.hh"
#include "sealrelay/https/client.hh"
#include "sealrelay/net/buffer_ring.hh"
#include "sealrelay/tls/context.hh"
#include "support/harness.hh"
#include "support/peers.hh"

using namespace sr;

namespace {

const std::string policy = "version: STSv1\r\nmode: enforce\r\nmx: mx.test\r\nmax_age: 86400\r\n";

// Hosts: .1 serves every route with the certificate its name asks for; .2 speaks TLS 1.1
// at most; .3 accepts TCP and never answers.
const char* zone =
    "mta-sts.d1.sts.test A 127.0.0.1\n"
    "mta-sts.d2.sts.test A 127.0.0.1\n"   // expired certificate
    "mta-sts.d3.sts.test A 127.0.0.1\n"   // self-signed
    "mta-sts.d4.sts.test A 127.0.0.1\n"   // wrong name
    "mta-sts.d5.sts.test A 127.0.0.2\n"   // TLS 1.1 only
    "mta-sts.d6.sts.test A 127.0.0.3\n"   // silent
    "report.sts.test A 127.0.0.1\n"
    "two.sts.test A 127.0.0.9\n"         // nothing listens there: the next address serves
    "two.sts.test A 127.0.0.1\n"
    "gone.sts.test NXDOMAIN\n";

std::string routes_json() {
  std::string big(70000, 'x');
  return R"({"routes": [
    {"path": "/.well-known/mta-sts.txt", "status": 200, "content_type": "text/plain", "body": ")" +
         std::string("version: STSv1\\r\\nmode: enforce\\r\\nmx: mx.test\\r\\nmax_age: 86400\\r\\n") + R"("},
    {"path": "/charset", "status": 200, "content_type": "Text/Plain; charset=utf-8", "body": "ok"},
    {"path": "/html", "status": 200, "content_type": "text/html", "body": "<p>no</p>"},
    {"path": "/redirect", "status": 302, "location": "https://elsewhere.test/", "body": ""},
    {"path": "/big", "status": 200, "content_type": "text/plain", "size": 70000},
    {"path": "/chunked", "status": 200, "content_type": "text/plain", "chunked": true, "chunk_size": 7,
     "body": "version: STSv1\r\nmode: testing\r\n"},
    {"path": "/chunked-big", "status": 200, "content_type": "text/plain", "chunked": true, "chunk_size": 4096,
     "size": 70000},
    {"path": "/nolength", "status": 200, "content_type": "text/plain", "no_length": true, "body": "until close"},
    {"path": "/silent", "silent": true},
    {"path": "/report", "status": 201, "body": ""},
    {"path": "/refused", "status": 403, "body": "no"}
  ]})";
}

class https_client : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/usr/bin/ldns-testns", X_OK) != 0) GTEST_SKIP() << "ldns-testns not installed (Debian package ldnsutils)";
    _ns = std::make_unique<integ::dns_fixture>(zone);
    ASSERT_TRUE(_ns->start()) << _ns->error();

    integ::https_host_options o;
    o.hosts = {"127.0.0.1"};
    // Specific names first: an exact SNI name goes to the first certificate listing it.
    o.certs = {"server", "mta-sts.d2.sts.test=expired", "mta-sts.d3.sts.test=selfsigned",
               "mta-sts.d4.sts.test=wrongname", "sts"};
    o.config = routes_json();
    _host = std::make_unique<integ::https_host>(o);
    ASSERT_TRUE(_host->start()) << _host->error();

    ASSERT_TRUE(_sh.init()) << "io_uring unavailable";
    _shard_ok = true;
    if (int rc = _br.register_with(_sh.ring()); rc < 0) GTEST_SKIP() << "provided buffer rings unsupported";
    dns::resolver_options ro;
    ro.servers = {_ns->address()};
    _res = std::make_unique<dns::resolver>(_sh, ro);
    ASSERT_TRUE(_res->start().ok());
    auto ctx = tls::context::client((integ::source_root() / "tests/certs/ca.crt").string(), tls::tls_version::v1_2);
    ASSERT_TRUE(ctx.ok()) << ctx.err();
    _ctx = std::make_unique<tls::context>(std::move(ctx.value()));
    _client = std::make_unique<https::client>(_sh, *_res, _br, _pool, *_ctx);
    _sh.on_tick([this] {
      if (_sh.now_ms() > _deadline_ms) {
        _timed_out = true;
        _sh.stop();
      }
      if (_stop_at && _sh.now_ms() >= _stop_at) _sh.stop();
      if (_at_fn && _sh.now_ms() >= _at_ms) std::exchange(_at_fn, nullptr)();
    });
  }

  void TearDown() override {
    _client.reset();
    _res.reset();
  }

  // Run the shard loop (once per test: a stopped shard does not run again) until stop_soon().
  void run(uint64_t limit_ms = 20000) {
    ASSERT_FALSE(_ran) << "one shard loop per test";
    _ran = true;
    _deadline_ms = _sh.now_ms() + limit_ms;
    _sh.run();
  }
  // Stop in a while: connections closed by the client finish closing first.
  void stop_soon() { _stop_at = _sh.now_ms() + 100; }

  https::request get(const std::string& host, const std::string& path, uint16_t port = 0) {
    https::request r;
    r.host = host;
    r.port = port ? port : _host->port();
    r.path = path;
    r.expect_content_type = "text/plain";
    r.timeout_ms = 10000;
    return r;
  }

  // Fetch every request concurrently; run the shard until all answered.
  std::vector<https::response> fetch_all(std::vector<https::request> reqs) {
    std::vector<https::response> out(reqs.size());
    size_t left = reqs.size();
    bool inside = false;
    for (size_t i = 0; i < reqs.size(); ++i) {
      inside = true;
      _client->fetch(reqs[i], [&, i](const https::response& r) {
        EXPECT_FALSE(inside) << "callback ran inside fetch()";
        out[i] = r;
        if (--left == 0) stop_soon();
      });
      inside = false;
    }
    EXPECT_EQ(_client->in_flight(), reqs.size());
    run();
    EXPECT_FALSE(_timed_out) << left << " fetches did not answer";
    EXPECT_EQ(_client->in_flight(), 0u);
    return out;
  }
  https::response fetch_one(https::request r) { return fetch_all({std::move(r)}).at(0); }

  std::unique_ptr<integ::dns_fixture> _ns;
  std::unique_ptr<integ::https_host> _host;
  core::shard _sh{core::shard::options{.tick_ms = 20}};
  net::chunk_pool _pool{4096, 64};
  net::buffer_ring _br{_pool, 64, 7};
  std::unique_ptr<dns::resolver> _res;
  std::unique_ptr<tls::context> _ctx;
  std::unique_ptr<https::client> _client;
  uint64_t _deadline_ms = ~uint64_t(0);
  bool _timed_out = false;
  bool _shard_ok = false;
  bool _ran = false;
  uint64_t _stop_at = 0;
  std::function<void()> _at_fn;   // run once on the tick at _at_ms
  uint64_t _at_ms = 0;
};

}  // namespace

TEST_F(https_client, get_200_text_plain) {
  auto r = fetch_one(get("mta-sts.d1.sts.test", "/.well-known/mta-sts.txt"));
  EXPECT_EQ(r.fail, https::failure::none) << r.detail;
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "text/plain");
  EXPECT_EQ(r.body, policy);
  auto reqs = _host->requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "GET");
  EXPECT_EQ(reqs[0].sni, "mta-sts.d1.sts.test");
  EXPECT_EQ(reqs[0].host, "mta-sts.d1.sts.test");
  EXPECT_EQ(reqs[0].header("Connection"), "close");
  EXPECT_TRUE(reqs[0].tls_version == "TLSv1.2" || reqs[0].tls_version == "TLSv1.3") << reqs[0].tls_version;
}

TEST_F(https_client, media_type_parameters_and_case_are_allowed) {
  auto r = fetch_one(get("mta-sts.d1.sts.test", "/charset"));
  EXPECT_EQ(r.fail, https::failure::none) << r.detail;
  EXPECT_EQ(r.body, "ok");
}

TEST_F(https_client, chunked_and_until_close_bodies) {
  auto rs = fetch_all({get("mta-sts.d1.sts.test", "/chunked"), get("mta-sts.d1.sts.test", "/nolength")});
  EXPECT_EQ(rs[0].fail, https::failure::none) << rs[0].detail;
  EXPECT_EQ(rs[0].body, "version: STSv1\r\nmode: testing\r\n");
  EXPECT_EQ(rs[1].fail, https::failure::none) << rs[1].detail;
  EXPECT_EQ(rs[1].body, "until close");
}

TEST_F(https_client, status_other_than_200_fails) {
  auto r = fetch_one(get("mta-sts.d1.sts.test", "/missing"));
  EXPECT_EQ(r.fail, https::failure::status);
  EXPECT_EQ(r.status, 404u);
  EXPECT_EQ(r.detail, "HTTP 404");
}

TEST_F(https_client, redirect_is_not_followed) {
  auto r = fetch_one(get("mta-sts.d1.sts.test", "/redirect"));
  EXPECT_EQ(r.fail, https::failure::redirect);
  EXPECT_EQ(r.status, 302u);
  EXPECT_EQ(r.detail, "HTTP 302 to https://elsewhere.test/");
  EXPECT_EQ(_host->requests().size(), 1u) << "only the first URL was asked for";
}

TEST_F(https_client, wrong_content_type_fails) {
  auto any = get("mta-sts.d1.sts.test", "/html");
  any.expect_content_type.clear();
  auto rs = fetch_all({get("mta-sts.d1.sts.test", "/html"), any});
  EXPECT_EQ(rs[0].fail, https::failure::content_type);
  EXPECT_EQ(rs[0].content_type, "text/html");
  EXPECT_EQ(rs[1].fail, https::failure::none) << rs[1].detail;
  EXPECT_EQ(rs[1].body, "<p>no</p>");
}

TEST_F(https_client, oversized_bodies_fail) {
  auto roomy = get("mta-sts.d1.sts.test", "/big");
  roomy.max_body = 100000;
  auto rs = fetch_all({get("mta-sts.d1.sts.test", "/big"), get("mta-sts.d1.sts.test", "/chunked-big"), roomy});
  EXPECT_EQ(rs[0].fail, https::failure::too_large) << rs[0].detail;
  EXPECT_EQ(rs[1].fail, https::failure::too_large) << rs[1].detail;
  EXPECT_EQ(rs[2].fail, https::failure::none) << rs[2].detail;
  EXPECT_EQ(rs[2].body, std::string(70000, 'x'));
}

TEST_F(https_client, bad_certificates_are_refused) {
  auto rs = fetch_all({get("mta-sts.d2.sts.test", "/.well-known/mta-sts.txt"),
                       get("mta-sts.d3.sts.test", "/.well-known/mta-sts.txt"),
                       get("mta-sts.d4.sts.test", "/.well-known/mta-sts.txt")});
  EXPECT_EQ(rs[0].fail, https::failure::cert);
  EXPECT_EQ(rs[0].detail, "cert-expired");
  EXPECT_EQ(rs[1].fail, https::failure::cert);
  EXPECT_EQ(rs[1].detail, "cert-untrusted");
  EXPECT_EQ(rs[2].fail, https::failure::cert);
  EXPECT_EQ(rs[2].detail, "cert-name-mismatch");
  EXPECT_TRUE(_host->requests().empty()) << "no request goes to a host whose certificate failed";
}

TEST_F(https_client, tls_below_1_2_is_refused) {
  integ::https_host_options o;
  o.hosts = {"127.0.0.2"};
  o.tls_min = "1.0";
  o.tls_max = "1.1";
  integ::https_host old(o);
  ASSERT_TRUE(old.start()) << old.error();
  auto r = fetch_one(get("mta-sts.d5.sts.test", "/.well-known/mta-sts.txt", old.port()));
  EXPECT_EQ(r.fail, https::failure::tls) << r.detail;
  EXPECT_TRUE(old.requests().empty());
}

TEST_F(https_client, silent_peers_time_out) {
  integ::https_host_options o;
  o.hosts = {"127.0.0.3"};
  o.silent = true;
  integ::https_host quiet(o);
  ASSERT_TRUE(quiet.start()) << quiet.error();
  auto handshake = get("mta-sts.d6.sts.test", "/", quiet.port());
  handshake.timeout_ms = 300;
  auto response = get("mta-sts.d1.sts.test", "/silent");
  response.timeout_ms = 300;
  auto rs = fetch_all({handshake, response});
  EXPECT_EQ(rs[0].fail, https::failure::timeout) << rs[0].detail;
  EXPECT_EQ(rs[1].fail, https::failure::timeout) << rs[1].detail;
}

TEST_F(https_client, post_sends_the_body) {
  https::request r;
  r.method = "POST";
  r.host = "report.sts.test";
  r.port = _host->port();
  r.path = "/report";
  r.content_type = "application/tlsrpt+gzip";
  r.body = std::string("\x1f\x8b\x08") + '\0' + "binary\r\n" + '\0' + "body";  // NULs and CRLF pass as they are
  auto refused = r;
  refused.path = "/refused";
  auto rs = fetch_all({r, refused});
  EXPECT_EQ(rs[0].fail, https::failure::none) << rs[0].detail;
  EXPECT_EQ(rs[0].status, 201u);
  EXPECT_EQ(rs[1].fail, https::failure::status);
  EXPECT_EQ(rs[1].status, 403u);
  auto reqs = _host->requests();
  ASSERT_EQ(reqs.size(), 2u);
  const auto& got = reqs[0].path == "/report" ? reqs[0] : reqs[1];
  EXPECT_EQ(got.method, "POST");
  EXPECT_EQ(got.path, "/report");
  EXPECT_EQ(got.header("Content-Type"), "application/tlsrpt+gzip");
  EXPECT_EQ(got.header("Content-Length"), std::to_string(r.body.size()));
  EXPECT_EQ(got.body, r.body);
}

TEST_F(https_client, dns_and_connect_failures) {
  auto closed = get("mta-sts.d1.sts.test", "/");
  closed.port = integ::free_port_on({"127.0.0.1"});
  auto rs = fetch_all({get("gone.sts.test", "/"), closed});
  EXPECT_EQ(rs[0].fail, https::failure::dns);
  EXPECT_EQ(rs[0].detail, "nxdomain");
  EXPECT_EQ(rs[1].fail, https::failure::connect);
  EXPECT_FALSE(rs[1].detail.empty());
}

TEST_F(https_client, a_refused_address_moves_to_the_next) {
  auto r = fetch_one(get("two.sts.test", "/.well-known/mta-sts.txt"));
  EXPECT_EQ(r.fail, https::failure::none) << r.detail;
  EXPECT_EQ(r.body, policy);
}

TEST_F(https_client, bad_requests_fail_later_not_inside_fetch) {
  auto r = get("mta-sts.d1.sts.test", "/");
  r.method = "PUT";
  auto r2 = get("mta-sts.d1.sts.test", "no-slash");
  auto rs = fetch_all({r, r2});
  EXPECT_EQ(rs[0].fail, https::failure::local);
  EXPECT_EQ(rs[1].fail, https::failure::local);
}

TEST_F(https_client, destroying_the_client_drops_callbacks) {
  // One fetch waits for a response that never comes, one for its DNS answer, one for a
  // posted refusal when the client goes.
  int called = 0;
  _client->fetch(get("mta-sts.d1.sts.test", "/silent"), [&](const https::response&) { ++called; });
  _at_ms = _sh.now_ms() + 300;
  _at_fn = [&] {
    EXPECT_EQ(_host->requests().size(), 1u) << "the silent fetch got as far as its request";
    _client->fetch(get("mta-sts.d1.sts.test", "/"), [&](const https::response&) { ++called; });
    auto bad = get("mta-sts.d1.sts.test", "/");
    bad.method = "DELETE";
    _client->fetch(bad, [&](const https::response&) { ++called; });
    EXPECT_EQ(_client->in_flight(), 3u);
    _client.reset();
    _stop_at = _sh.now_ms() + 500;
  };
  run();
  EXPECT_FALSE(_timed_out);
  EXPECT_EQ(called, 0);
}

TEST_F(https_client, to_string_names_every_failure) {
  EXPECT_STREQ(https::to_string(https::failure::none), "none");
  EXPECT_STREQ(https::to_string(https::failure::dns), "dns");
  EXPECT_STREQ(https::to_string(https::failure::cert), "cert");
  EXPECT_STREQ(https::to_string(https::failure::too_large), "too-large");
  EXPECT_STREQ(https::to_string(https::failure::content_type), "content-type");
  EXPECT_STREQ(https::to_string(https::failure::local), "local");
}
