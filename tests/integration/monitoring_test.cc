// Dashboards and alerts (issue 13): conf/monitoring/'s Grafana dashboard and Prometheus
// rules name only metrics the real relay exposes. The relay takes mail over STARTTLS and
// delivers it over TLS under the default opportunistic policy and under a forced
// [[policy]], and keeps one message queued; its /metrics scrape then shows the metrics
// added for the dashboard counting what happened (deliveries by policy and source, inbound
// TLS by version, the oldest queued message's age), and tests/tools/check_monitoring.py
// finds every metric name, label and label value of every panel and rule in it (a [[shaping]]
// entry makes the per-destination shaping series exist). A copy of
// the dashboard with one name misspelt must fail the same check, naming it.
#include <gtest/gtest.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <thread>

#include "support/harness.hh"
#include "support/peers.hh"
#include "support/temp_dir.hh"
#include "support/world.hh"

namespace fs = std::filesystem;

namespace sr::integ {
namespace {

// The sum of every sample whose line starts with `series` ("name{a=\"b\"}", "name{" for
// every series of a family, "name " for one without labels); -1 when there is none.
double sample(const std::string& text, const std::string& series) {
  double sum = -1;
  size_t from = 0;
  while (from < text.size()) {
    size_t eol = text.find('\n', from);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + from, eol - from);
    from = eol + 1;
    if (!line.starts_with(series)) continue;
    size_t sp = line.rfind(' ');
    double v = 0;
    auto [p, ec] = std::from_chars(line.data() + sp + 1, line.data() + line.size(), v);
    if (sp == std::string_view::npos || ec != std::errc()) continue;
    sum = (sum < 0 ? 0 : sum) + v;
  }
  return sum;
}

// Send one message to `rcpt` over STARTTLS; the final reply ("" when none).
std::string send_tls(uint16_t port, const std::string& rcpt, const std::string& text) {
  raw_client c;
  if (!open_session(c, port)) return "no session";
  auto go = c.command("STARTTLS");
  if (!go || reply_code(*go) != 220) return "STARTTLS: " + go.value_or("");
  if (!c.start_tls()) return "handshake failed";
  auto ehlo = c.command("EHLO client.test");
  if (!ehlo || reply_code(*ehlo) != 250) return "EHLO: " + ehlo.value_or("");
  return send_message(c, "ops@sender.test", {rcpt}, text).value_or("");
}

fs::path monitoring(const char* file) { return source_root() / "conf" / "monitoring" / file; }

run_result check(const fs::path& metrics, const fs::path& dashboard) {
  return run({"/usr/bin/python3", (source_root() / "tests" / "tools" / "check_monitoring.py").string(),
              metrics.string(), dashboard.string(), monitoring("sealrelay-alerts.yml").string()},
             60s);
}

TEST(Monitoring, DashboardAndAlertsNameOnlyExposedMetrics) {
  uint16_t port = mx_port();
  ASSERT_NE(port, 0);
  // forced.test and plain.test reach the fake MX; parked.test's next hop does not answer,
  // so its message stays queued (next attempt in an hour).
  relay_options o = parked_options(port, 2,
                                   route_to("forced.test", "127.0.0.2", port) +
                                       route_to("plain.test", "127.0.0.2", port) +
                                       route_to("parked.test", "127.0.0.3", port) +
                                       "[[policy]]\ndomain = \"forced.test\"\ntls = \"forced\"\n"
                                       "verify = \"none\"\nfallback = [\"defer\"]\n"
                                       // The shaping series (issue 14) exist per [[shaping]] entry.
                                       "[[shaping]]\nname = \"partners\"\ndomain = \"forced.test\"\n"
                                       "max_message_rate = \"100/s\"\n");
  o.listeners = {listener{.tls = "starttls"}};
  uint16_t admin = free_port();
  o.admin_listen = "127.0.0.1:" + std::to_string(admin);
  fake_mx mx({.hosts = {"127.0.0.2"}, .port = port});
  ASSERT_TRUE(mx.start()) << mx.error();
  relay r(o);
  ASSERT_TRUE(r.start()) << r.error();

  for (const char* rcpt : {"a@forced.test", "b@plain.test", "c@parked.test"}) {
    std::string rep = send_tls(r.port(), rcpt, std::string("Subject: monitoring\r\n\r\nto ") + rcpt + "\r\n");
    ASSERT_EQ(reply_code(rep), 250) << rcpt << ": " << rep << r.log();
  }
  ASSERT_TRUE(mx.wait_messages(2, 30s)) << r.log();

  // Poll until the shards have published what happened (each copies its counters on its
  // tick) and the parked message is a second old.
  std::string text;
  for (auto until = clock::now() + 20s; clock::now() < until;) {
    text = admin_get(admin, "/metrics");
    if (sample(text, "sealrelay_deliveries_by_policy_total{policy=\"forced\",source=\"config\"}") >= 1 &&
        sample(text, "sealrelay_deliveries_by_policy_total{policy=\"opportunistic\",source=\"default\"}") >= 1 &&
        sample(text, "sealrelay_queue_oldest_age_seconds{") >= 1 &&
        sample(text, "sealrelay_messages_deferred_total ") >= 1)
      break;
    std::this_thread::sleep_for(200ms);   // polling the endpoint, not an assertion
  }
  ASSERT_NE(text.find(" 200 "), std::string::npos) << text;
  EXPECT_EQ(sample(text, "sealrelay_deliveries_by_policy_total{policy=\"forced\",source=\"config\"}"), 1) << text;
  EXPECT_EQ(sample(text, "sealrelay_deliveries_by_policy_total{policy=\"opportunistic\",source=\"default\"}"), 1)
      << text;
  EXPECT_EQ(sample(text, "sealrelay_deliveries_by_policy_total{"), 2) << text;
  EXPECT_EQ(sample(text, "sealrelay_deliveries_total{"), 2) << "one per recipient, like messages_delivered";
  EXPECT_EQ(sample(text, "sealrelay_deliveries_total{tls=\"plaintext\"}"), 0) << text;
  // Three clients, three STARTTLS handshakes, each at the version the harness client and
  // the relay agree on; none fails.
  EXPECT_EQ(sample(text, "sealrelay_inbound_tls_handshakes_total{"), 3) << text;
  EXPECT_EQ(sample(text, "sealrelay_inbound_tls_handshakes_total{tls=\"TLSv1.2\"}") +
                sample(text, "sealrelay_inbound_tls_handshakes_total{tls=\"TLSv1.3\"}"),
            3)
      << text;
  EXPECT_EQ(sample(text, "sealrelay_inbound_tls_failures_total "), 0) << text;
  EXPECT_GE(sample(text, "sealrelay_queue_oldest_age_seconds{"), 1) << text;
  EXPECT_LT(sample(text, "sealrelay_queue_oldest_age_seconds{"), 3600) << text;
  EXPECT_EQ(sample(text, "sealrelay_queue_depth "), 1) << text;
  EXPECT_EQ(sample(text, "sealrelay_shaping_message_rate_per_hour{destination=\"partners\"}"), 360000) << text;
  EXPECT_GE(sample(text, "sealrelay_shaping_connections{destination=\"partners\"}"), 0) << text;
  EXPECT_EQ(sample(text, "sealrelay_shaping_backoffs_total{destination=\"partners\"}"), 0) << text;

  sr::test::temp_dir tmp{"sr-monitoring"};
  fs::path scrape = tmp.path() / "metrics.txt";
  std::ofstream(scrape) << text.substr(text.find("\r\n\r\n") + 4);
  auto ok = check(scrape, monitoring("sealrelay-dashboard.json"));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_TRUE(contains(ok.output, "all exposed by /metrics")) << ok.output;

  // The check can fail: one metric name misspelt in a copy of the dashboard.
  std::string dash = read_file(monitoring("sealrelay-dashboard.json"));
  size_t at = dash.find("sealrelay_queue_oldest_age_seconds");
  ASSERT_NE(at, std::string::npos);
  dash.replace(at, std::string("sealrelay_queue_oldest_age_seconds").size(), "sealrelay_queue_oldest_age_secs");
  fs::path bad = tmp.path() / "dashboard.json";
  std::ofstream(bad) << dash;
  auto fail = check(scrape, bad);
  EXPECT_EQ(fail.exit_code, 1) << fail.output;
  EXPECT_TRUE(contains(fail.output, "metric sealrelay_queue_oldest_age_secs is not exposed")) << fail.output;
  EXPECT_EQ(r.stop(), 0) << r.log();
}

}  // namespace
}  // namespace sr::integ
