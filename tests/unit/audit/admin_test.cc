// Admin: the metrics registry (per-shard cells summed across threads, exact Prometheus
// text, misuse refused) and the HTTP endpoint answering real requests over loopback
// from a raw socket client (and curl when installed): /metrics, /healthz 200 and 503,
// 404, 405, 400, 431, 408, concurrent clients, clean stop.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "sealrelay/admin/metrics.hh"
#include "sealrelay/admin/server.hh"

using namespace sr;

namespace {

int connect_to(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{20, 0};  // a fail-safe so a broken server fails the test instead of hanging it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

void send_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    s.remove_prefix(size_t(n));
  }
}

std::string read_to_eof(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  return out;
}

struct response {
  int status = 0;
  std::string head;
  std::string body;
};

response parse(const std::string& raw) {
  response r;
  if (raw.size() < 12 || raw.compare(0, 9, "HTTP/1.1 ") != 0) return r;
  r.status = std::stoi(raw.substr(9, 3));
  size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return r;
  r.head = raw.substr(0, end + 2);
  r.body = raw.substr(end + 4);
  return r;
}

response request(uint16_t port, std::string_view req) {
  int fd = connect_to(port);
  if (fd < 0) return {};
  send_all(fd, req);
  response r = parse(read_to_eof(fd));
  ::close(fd);
  return r;
}

std::string content_length_of(const response& r) {
  size_t p = r.head.find("Content-Length: ");
  if (p == std::string::npos) return "";
  return r.head.substr(p + 16, r.head.find("\r\n", p) - p - 16);
}

}  // namespace

TEST(metrics, render_is_exact_prometheus_text) {
  admin::registry reg(2);
  auto a = reg.add_counter("t_requests_total", "Requests \\ seen.\nSecond line.");
  auto b1 = reg.add_counter("t_tls_total", "By version.", {{"tls", "TLSv1.3"}});
  auto b2 = reg.add_counter("t_tls_total", "ignored", {{"tls", "plain\"text\\\n"}});
  auto g = reg.add_gauge("t_depth", "Depth.", {{"a", "1"}, {"b", "2"}});
  a.inc(0, 5);
  a.inc(1, 7);
  a.inc_shared(1);
  b1.inc(1);
  g.add(0, 3);
  g.add(1, -10);
  EXPECT_EQ(reg.render(),
            "# HELP t_requests_total Requests \\\\ seen.\\nSecond line.\n"
            "# TYPE t_requests_total counter\n"
            "t_requests_total 13\n"
            "# HELP t_tls_total By version.\n"
            "# TYPE t_tls_total counter\n"
            "t_tls_total{tls=\"TLSv1.3\"} 1\n"
            "t_tls_total{tls=\"plain\\\"text\\\\\\n\"} 0\n"
            "# HELP t_depth Depth.\n"
            "# TYPE t_depth gauge\n"
            "t_depth{a=\"1\",b=\"2\"} -7\n");
  EXPECT_EQ(a.value(), 13u);
  EXPECT_EQ(b2.value(), 0u);
  EXPECT_EQ(g.value(), -7);
  g.set(1, 4);
  EXPECT_EQ(g.value(), 7);
}

TEST(metrics, shard_cells_are_summed_across_threads) {
  constexpr unsigned shards = 4;
  constexpr uint64_t per = 200000;
  admin::registry reg(shards);
  auto c = reg.add_counter("t_total", "x");
  auto g = reg.add_gauge("t_open", "x");
  std::vector<std::thread> ts;
  for (unsigned s = 0; s < shards; ++s)
    ts.emplace_back([&, s] {
      for (uint64_t i = 0; i < per; ++i) {
        c.inc(s);
        g.add(s, 1);
        if (i % 2) g.add(s, -1);
      }
    });
  for (int k = 0; k < 2; ++k)
    ts.emplace_back([&] {
      for (uint64_t i = 0; i < per; ++i) c.inc_shared();
    });
  // Scrapes while the shards count: never more than the final total.
  uint64_t last = 0;
  for (int i = 0; i < 100; ++i) {
    uint64_t v = c.value();
    EXPECT_LE(v, (shards + 2) * per);
    last = v;
  }
  (void)last;
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.value(), (shards + 2) * per);
  EXPECT_EQ(g.value(), int64_t(shards * per / 2));
}

TEST(metrics, relay_families_are_registered_once_each) {
  admin::registry reg(2);
  admin::relay_metrics m(reg);
  m.messages_accepted.inc(0, 3);
  m.messages_delivered.inc(1, 2);
  m.deliveries("TLSv1.3").inc(0);
  m.deliveries("TLSv1.3").inc(1);
  m.deliveries("").inc(1);
  m.deliveries("SSLv3").inc(0);
  m.queue_depth.add(0, 5);
  m.queue_depth.add(1, 2);
  m.connections_inbound.add(1, 1);
  m.dns_cache_hits.inc(0, 9);
  m.dns_cache_misses.inc(1, 1);
  m.tls_failure(sr::report::reason::handshake_failed).inc(0);
  m.tls_failure(sr::report::reason::connect_failed).inc(1);  // not a TLS failure: "other"
  std::string text = reg.render();
  auto has = [&](const std::string& s) { return text.find(s) != std::string::npos; };
  EXPECT_TRUE(has("\nsealrelay_messages_accepted_total 3\n"));
  EXPECT_TRUE(has("\nsealrelay_messages_delivered_total 2\n"));
  EXPECT_TRUE(has("\nsealrelay_messages_deferred_total 0\n"));
  EXPECT_TRUE(has("\nsealrelay_messages_bounced_total 0\n"));
  EXPECT_TRUE(has("\nsealrelay_deliveries_total{tls=\"TLSv1.3\"} 2\n"));
  EXPECT_TRUE(has("\nsealrelay_deliveries_total{tls=\"plaintext\"} 1\n"));
  EXPECT_TRUE(has("\nsealrelay_deliveries_total{tls=\"other\"} 1\n"));
  EXPECT_TRUE(has("\nsealrelay_queue_depth 7\n"));
  EXPECT_TRUE(has("\nsealrelay_connections{direction=\"inbound\"} 1\n"));
  EXPECT_TRUE(has("\nsealrelay_connections{direction=\"outbound\"} 0\n"));
  EXPECT_TRUE(has("\nsealrelay_dns_cache_hits_total 9\n"));
  EXPECT_TRUE(has("\nsealrelay_dns_cache_misses_total 1\n"));
  EXPECT_TRUE(has("\nsealrelay_tls_failures_total{reason=\"handshake-failed\"} 1\n"));
  EXPECT_TRUE(has("\nsealrelay_tls_failures_total{reason=\"other\"} 1\n"));
  EXPECT_TRUE(has("\nsealrelay_audit_dropped_total 0\n"));
  EXPECT_TRUE(has("# TYPE sealrelay_queue_depth gauge\n"));
  // Added for the dashboards (issue 13): one oldest-age series per shard, each written by
  // its own shard; deliveries by policy and source; inbound TLS by version.
  ASSERT_EQ(m.queue_oldest_age.size(), 2u);
  m.queue_oldest_age[0].set(0, 42);
  m.queue_oldest_age[1].set(1, 7);
  m.deliveries_by_policy[1 * std::size(admin::policy_source_labels) + 1].inc(1, 3);  // forced, config
  m.inbound_tls_handshakes[3].inc(0, 4);                                             // TLSv1.3
  m.inbound_tls_failures.inc(1);
  text = reg.render();
  EXPECT_TRUE(has("\nsealrelay_queue_oldest_age_seconds{shard=\"0\"} 42\n")) << text;
  EXPECT_TRUE(has("\nsealrelay_queue_oldest_age_seconds{shard=\"1\"} 7\n")) << text;
  EXPECT_TRUE(has("\nsealrelay_deliveries_by_policy_total{policy=\"forced\",source=\"config\"} 3\n")) << text;
  EXPECT_TRUE(has("\nsealrelay_deliveries_by_policy_total{policy=\"exclusive\",source=\"dane\"} 0\n")) << text;
  EXPECT_TRUE(has("\nsealrelay_inbound_tls_handshakes_total{tls=\"TLSv1.3\"} 4\n")) << text;
  EXPECT_TRUE(has("\nsealrelay_inbound_tls_failures_total 1\n")) << text;
  EXPECT_TRUE(has("# TYPE sealrelay_connections gauge\n"));
  // One HELP and one TYPE per family.
  for (const char* fam : {"sealrelay_deliveries_total", "sealrelay_tls_failures_total",
                          "sealrelay_connections"}) {
    std::string help = std::string("# HELP ") + fam + " ";
    size_t first = text.find(help);
    ASSERT_NE(first, std::string::npos) << fam;
    EXPECT_EQ(text.find(help, first + 1), std::string::npos) << fam;
  }
}

TEST(metrics_death, misuse_aborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        admin::registry reg(1);
        reg.seal();
        reg.add_counter("late_total", "x");
      },
      "after seal");
  EXPECT_DEATH(
      {
        admin::registry reg(1);
        reg.add_counter("x_total", "x");
        reg.add_gauge("x_total", "x");
      },
      "both counter and gauge");
  EXPECT_DEATH(
      {
        admin::registry reg(1);
        reg.add_counter("bad-name", "x");
      },
      "not a valid metric name");
  EXPECT_DEATH(
      {
        admin::registry reg(1);
        reg.add_counter("d_total", "x", {{"a", "1"}});
        reg.add_counter("d_total", "x", {{"a", "1"}});
      },
      "registered twice");
}

class admin_server : public testing::Test {
 protected:
  void SetUp() override {
    counter = reg.add_counter("t_hits_total", "Hits.", {{"k", "v"}});
    counter.inc(0, 41);
    counter.inc(1, 1);
  }
  std::unique_ptr<admin::server> start(unsigned timeout_ms = 5000) {
    admin::server::options o;
    o.listen = "127.0.0.1:0";
    o.metrics = &reg;
    o.healthy = [this] { return healthy.load(); };
    o.timeout_ms = timeout_ms;
    o.max_request_bytes = 4096;
    auto s = std::make_unique<admin::server>(o);
    auto st = s->start();
    EXPECT_TRUE(st) << (st ? "" : st.err());
    EXPECT_NE(s->port(), 0);
    return s;
  }
  admin::registry reg{2};
  admin::counter counter;
  std::atomic<bool> healthy{true};
};

TEST_F(admin_server, serves_metrics_in_prometheus_text) {
  auto s = start();
  EXPECT_TRUE(reg.sealed());
  auto r = request(s->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.head.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), std::string::npos);
  EXPECT_NE(r.head.find("Connection: close\r\n"), std::string::npos);
  EXPECT_EQ(r.body, "# HELP t_hits_total Hits.\n# TYPE t_hits_total counter\nt_hits_total{k=\"v\"} 42\n");
  EXPECT_EQ(content_length_of(r), std::to_string(r.body.size()));
  // Values are read at each scrape; a query string is ignored; bare LF heads are accepted.
  counter.inc(1, 8);
  r = request(s->port(), "GET /metrics?x=1 HTTP/1.0\n\n");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("t_hits_total{k=\"v\"} 50\n"), std::string::npos);
}

TEST_F(admin_server, healthz_follows_the_health_callback) {
  auto s = start();
  auto r = request(s->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok\n");
  healthy = false;
  r = request(s->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status, 503);
  healthy = true;
  EXPECT_EQ(request(s->port(), "GET /healthz HTTP/1.1\r\n\r\n").status, 200);
}

TEST_F(admin_server, errors_404_405_400_431) {
  auto s = start();
  EXPECT_EQ(request(s->port(), "GET / HTTP/1.1\r\n\r\n").status, 404);
  EXPECT_EQ(request(s->port(), "GET /metricsx HTTP/1.1\r\n\r\n").status, 404);
  auto r = request(s->port(), "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_EQ(r.status, 405);
  EXPECT_NE(r.head.find("Allow: GET\r\n"), std::string::npos);
  EXPECT_EQ(request(s->port(), "DELETE /healthz HTTP/1.1\r\n\r\n").status, 405);
  EXPECT_EQ(request(s->port(), "garbage\r\n\r\n").status, 400);
  EXPECT_EQ(request(s->port(), "GET /metrics SMTP/1.0\r\n\r\n").status, 400);
  std::string big = "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(6000, 'a') + "\r\n\r\n";
  EXPECT_EQ(request(s->port(), big).status, 431);
  std::string endless = "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(20000, 'b');
  EXPECT_EQ(request(s->port(), endless).status, 431);
  // The server is still serving after all of that.
  EXPECT_EQ(request(s->port(), "GET /healthz HTTP/1.1\r\n\r\n").status, 200);
}

// The http/ codec's refusals reach the client with their status codes.
TEST_F(admin_server, codec_refusals_get_their_status) {
  auto s = start();
  EXPECT_EQ(request(s->port(), "GET /healthz HTTP/2.0\r\n\r\n").status, 505);
  EXPECT_EQ(request(s->port(), "GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n").status, 400);
  EXPECT_EQ(request(s->port(),
                    "GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .status,
            400);
  EXPECT_EQ(request(s->port(), "GET /healthz HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").status, 501);
  // A chunked body is read whole before the answer.
  auto r = request(s->port(), "POST /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  EXPECT_EQ(r.status, 405);
}

TEST_F(admin_server, a_silent_client_gets_408_and_does_not_block_others) {
  auto s = start(300);
  int slow = connect_to(s->port());
  ASSERT_GE(slow, 0);
  send_all(slow, "GET /metrics HTTP/1.1\r\n");  // never finishes its head
  // Another client is served while the slow one is still pending.
  int other = connect_to(s->port());
  ASSERT_GE(other, 0);
  send_all(other, "GET /healthz HTTP/1.1\r\n\r\n");
  EXPECT_EQ(parse(read_to_eof(other)).status, 200);
  ::close(other);
  EXPECT_EQ(parse(read_to_eof(slow)).status, 408);
  ::close(slow);
}

TEST_F(admin_server, pending_client_does_not_delay_a_complete_one) {
  auto s = start(60000);  // the pending client would hold a one-at-a-time server for a minute
  int pending = connect_to(s->port());
  ASSERT_GE(pending, 0);
  send_all(pending, "GET /healthz HTTP/1.1\r\n");
  EXPECT_EQ(request(s->port(), "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
  send_all(pending, "Host: x\r\n\r\n");
  EXPECT_EQ(parse(read_to_eof(pending)).status, 200);
  ::close(pending);
}

TEST_F(admin_server, stops_cleanly_and_releases_the_port) {
  auto s = start();
  uint16_t port = s->port();
  int idle = connect_to(port);  // an open connection must not hold stop() up
  ASSERT_GE(idle, 0);
  EXPECT_EQ(request(port, "GET /healthz HTTP/1.1\r\n\r\n").status, 200);
  s->stop();
  s->stop();  // idempotent
  EXPECT_EQ(read_to_eof(idle), "");  // closed by stop()
  ::close(idle);
  EXPECT_LT(connect_to(port), 0);
  s.reset();
}

TEST_F(admin_server, bad_listen_address_is_an_error_naming_it) {
  admin::server::options o;
  o.listen = "not-an-address";
  admin::server s(o);
  auto st = s.start();
  ASSERT_FALSE(st);
  EXPECT_NE(st.err().find("not-an-address"), std::string::npos);
  // A port already in use is reported too.
  auto first = start();
  admin::server::options o2;
  o2.listen = "127.0.0.1:" + std::to_string(first->port());
  admin::server s2(o2);
  auto st2 = s2.start();
  ASSERT_FALSE(st2);
  EXPECT_NE(st2.err().find("127.0.0.1:"), std::string::npos);
}

TEST_F(admin_server, curl_reads_metrics_and_healthz) {
  if (access("/usr/bin/curl", X_OK) != 0) GTEST_SKIP() << "curl is not installed";
  auto s = start();
  auto run = [](const std::string& cmd) {
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
    return out;
  };
  std::string base = "/usr/bin/curl -sS --max-time 20 http://127.0.0.1:" + std::to_string(s->port());
  EXPECT_EQ(run(base + "/metrics"),
            "# HELP t_hits_total Hits.\n# TYPE t_hits_total counter\nt_hits_total{k=\"v\"} 42\n");
  EXPECT_EQ(run(base + "/healthz -w ' %{http_code}'"), "ok\n 200");
  healthy = false;
  EXPECT_EQ(run(base + "/healthz -o /dev/null -w '%{http_code}'"), "503");
  EXPECT_EQ(run(base + "/nope -o /dev/null -w '%{http_code}'"), "404");
  EXPECT_EQ(run(base + "/metrics -X POST -o /dev/null -w '%{http_code}'"), "405");
}
