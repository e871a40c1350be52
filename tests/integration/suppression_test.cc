// Bounce classes and the suppression list (issue 14 items 4 and 5) against the real daemon:
// a fake MX answers 550 5.1.1 for one recipient and 552 5.2.2 for another. The audit says
// bad-mailbox and mailbox-full, /metrics counts both, only the bad mailbox is listed; the
// next message to it is refused at RCPT (action "refuse", also after a restart) or dropped
// with an audit record and never offered to the MX (action "drop").
#include <gtest/gtest.h>

#include <charconv>
#include <cstdlib>
#include <string>
#include <thread>

#include "support/harness.hh"
#include "support/peers.hh"
#include "support/world.hh"

namespace sr::integ {
namespace {

const char* const zone =
    "dest.test MX 10 mx.dest.test\n"
    "mx.dest.test A 127.0.0.2\n"
    "sender.test MX 10 mx.sender.test\n"
    "mx.sender.test A 127.0.0.3\n";

std::string queue_binary() {
  const char* bin = std::getenv("SEALRELAY_QUEUE_BIN");
  return bin ? bin : "sealrelay-queue";
}

class Suppression : public ::testing::Test, public world {
 protected:
  // `sealrelay-queue -c <the relay's config> args...`.
  run_result queue_tool(std::vector<std::string> args) const {
    std::vector<std::string> argv = {queue_binary(), "-c", _relay->config_path().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, 20s);
  }
  // Poll (up to 5 s) until RCPT TO `rcpt` is answered with a reply starting with `prefix`:
  // the relay re-reads the list within a second of the operator's change.
  bool wait_rcpt(const std::string& rcpt, const std::string& prefix) {
    for (int i = 0; i < 50; ++i) {
      if (starts_with(rcpt_reply(rcpt), prefix)) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }
  // The relay with [suppression] action = `action` and /metrics on a free port.
  relay* start(const std::string& action) {
    _metrics_port = free_port();
    _admin_listen = "127.0.0.1:" + std::to_string(_metrics_port);
    return start_relay("[suppression]\nenabled = true\naction = \"" + action + "\"\n");
  }
  std::string metrics() const {
    return run({"curl", "-sS", "--max-time", "5", "http://127.0.0.1:" + std::to_string(_metrics_port) + "/metrics"})
        .output;
  }
  // Poll /metrics until `series` reaches `want` (the shards publish every 100 ms).
  bool wait_metric(const std::string& series, double want, std::string* last) const {
    for (int i = 0; i < 100; ++i) {
      *last = metrics();
      if (metric_sample(*last, series) >= want) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }
  // The RCPT reply for `rcpt` in a fresh session (the transaction is then reset).
  std::string rcpt_reply(const std::string& rcpt) {
    raw_client c;
    if (!open_session(c, _relay->port())) return "no session";
    auto m = c.command("MAIL FROM:<alice@sender.test>");
    if (!m || reply_code(*m) != 250) return "MAIL: " + m.value_or("");
    auto r = c.command("RCPT TO:<" + rcpt + ">");
    c.command("QUIT");
    return r.value_or("");
  }
  // How many times the MX was offered `rcpt` (RCPT commands over every session), once the
  // relay is stopped: the MX writes a session when it closes, so poll up to 5 s for one.
  static size_t offered(const fake_mx& mx, const std::string& rcpt) {
    size_t n = 0;
    for (int i = 0; i < 50 && n == 0; ++i) {
      if (i) std::this_thread::sleep_for(100ms);
      n = 0;
      for (const auto& s : mx.sessions())
        for (const auto& c : s.commands)
          if (contains(c, "RCPT TO:<" + rcpt + ">")) ++n;
    }
    return n;
  }
  // Send the first message and check what the bounces did: audit classes, metrics, the list.
  void bounce_first() {
    std::string qid = submit(*_relay, "alice@sender.test", {"gone@dest.test", "full@dest.test", "ok@dest.test"},
                             "Subject: first\r\n\r\nhello\r\n");
    ASSERT_FALSE(qid.empty()) << _relay->log();
    auto lines = wait_audit(*_relay, 3, [&](const audit_line& a) { return a.queue_id == qid; });
    ASSERT_EQ(lines.size(), 3u) << dump_audit(*_relay);
    for (const auto& a : lines) {
      expect_audit_fields(a);
      if (a.rcpt == "gone@dest.test") {
        EXPECT_EQ(a.outcome, "bounced") << a.raw;
        EXPECT_EQ(a.bounce_class, "bad-mailbox") << a.raw;
      } else if (a.rcpt == "full@dest.test") {
        EXPECT_EQ(a.outcome, "bounced") << a.raw;
        EXPECT_EQ(a.bounce_class, "mailbox-full") << a.raw;
      } else {
        EXPECT_EQ(a.outcome, "delivered") << a.raw;
        EXPECT_FALSE(a.bounce_class.has_value()) << a.raw;
      }
    }
    std::string m;
    ASSERT_TRUE(wait_metric("sealrelay_suppression_entries", 1, &m)) << m;
    EXPECT_EQ(metric_sample(m, "sealrelay_suppression_entries"), 1) << m;
    ASSERT_TRUE(wait_metric("sealrelay_bounces_total{class=\"mailbox-full\"}", 1, &m)) << m;
    EXPECT_EQ(metric_sample(m, "sealrelay_bounces_total{class=\"bad-mailbox\"}"), 1) << m;
    EXPECT_EQ(metric_sample(m, "sealrelay_bounces_total{class=\"mailbox-full\"}"), 1) << m;
    EXPECT_EQ(metric_sample(m, "sealrelay_bounces_total{class=\"policy\"}"), 0) << m;
    EXPECT_EQ(metric_sample(m, "sealrelay_suppression_added_total"), 1) << m;
  }

  uint16_t _metrics_port = 0;
};

fake_mx_options bouncing_mx() {
  return {.hosts = {"127.0.0.2"},
          .rcpt_replies = {"gone@dest.test=550:5.1.1 <gone@dest.test>: Recipient address rejected: User unknown",
                           "full@dest.test=552:5.2.2 <full@dest.test>: Mailbox is full"}};
}

TEST_F(Suppression, BadMailboxIsListedAndRefusedAtRcptAlsoAfterARestart) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(zone));
  fake_mx* mx = start_mx(bouncing_mx());
  fake_mx* home = start_mx({.hosts = {"127.0.0.3"}});  // the DSNs
  ASSERT_TRUE(mx && home);
  ASSERT_TRUE(start("refuse"));
  bounce_first();
  EXPECT_TRUE(home->wait_messages(1, 20s));  // the DSN of both bounces

  EXPECT_TRUE(starts_with(rcpt_reply("gone@dest.test"), "550 5.1.1 <gone@dest.test>: Recipient address suppressed"))
      << rcpt_reply("gone@dest.test");
  EXPECT_TRUE(starts_with(rcpt_reply("Gone@DEST.test"), "550 5.1.1")) << "the list compares in lower case";
  EXPECT_TRUE(starts_with(rcpt_reply("full@dest.test"), "250")) << "a full mailbox is not suppressed";
  std::string m;
  EXPECT_TRUE(wait_metric("sealrelay_suppressed_total{action=\"refused\"}", 2, &m)) << m;
  EXPECT_EQ(metric_sample(m, "sealrelay_suppressed_total{action=\"refused\"}"), 2) << m;

  // The list is on disk: a restart keeps it.
  ASSERT_EQ(_relay->stop(), 0) << _relay->log();
  ASSERT_TRUE(_relay->start()) << _relay->error() << _relay->log();
  EXPECT_TRUE(starts_with(rcpt_reply("gone@dest.test"), "550 5.1.1")) << _relay->log();
  EXPECT_TRUE(starts_with(rcpt_reply("ok@dest.test"), "250"));
  EXPECT_TRUE(contains(_relay->log(), "suppression: 1 addresses listed")) << _relay->log();

  // The operator's tool: list, add (in any case), remove; the running relay follows.
  auto listed = queue_tool({"suppress", "list"});
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_TRUE(contains(listed.output, "gone@dest.test")) << listed.output;
  EXPECT_TRUE(contains(listed.output, "bounce")) << listed.output;
  EXPECT_TRUE(contains(listed.output, "550 5.1.1")) << listed.output;
  auto added = queue_tool({"suppress", "add", "Op@Dest.test"});
  EXPECT_EQ(added.exit_code, 0) << added.output;
  EXPECT_TRUE(wait_rcpt("op@dest.test", "550 5.1.1")) << rcpt_reply("op@dest.test");
  auto removed = queue_tool({"suppress", "remove", "gone@dest.test"});
  EXPECT_EQ(removed.exit_code, 0) << removed.output;
  EXPECT_TRUE(wait_rcpt("gone@dest.test", "250")) << rcpt_reply("gone@dest.test");
  EXPECT_EQ(queue_tool({"suppress", "remove", "gone@dest.test"}).exit_code, 1);  // not listed
  EXPECT_EQ(queue_tool({"suppress", "add", "not-an-address"}).exit_code, 2);
  auto json = queue_tool({"suppress", "list", "--json"});
  EXPECT_EQ(json.exit_code, 0);
  EXPECT_TRUE(contains(json.output, "{\"suppressed\":[{\"added_ms\":")) << json.output;
  EXPECT_TRUE(contains(json.output, "\"address\":\"op@dest.test\"")) << json.output;
  EXPECT_FALSE(contains(json.output, "gone@dest.test")) << json.output;

  ASSERT_EQ(_relay->stop(), 0) << _relay->log();  // the MX writes a session when it closes
  EXPECT_EQ(offered(*mx, "gone@dest.test"), 1u);
  // The list is a file: the tool reads it with the relay stopped too.
  auto stopped = queue_tool({"suppress", "list"});
  EXPECT_EQ(stopped.exit_code, 0) << stopped.output;
  EXPECT_TRUE(contains(stopped.output, "op@dest.test  ")) << stopped.output;
}

TEST_F(Suppression, DropModeAuditsTheDropAndNeverOffersTheAddressToTheMx) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(zone));
  fake_mx* mx = start_mx(bouncing_mx());
  fake_mx* home = start_mx({.hosts = {"127.0.0.3"}});
  ASSERT_TRUE(mx && home);
  ASSERT_TRUE(start("drop"));
  bounce_first();

  // Accepted (no refusal at RCPT), then dropped before delivery; ok@ still goes out.
  std::string qid = submit(*_relay, "alice@sender.test", {"gone@dest.test", "ok@dest.test"},
                           "Subject: second\r\n\r\nagain\r\n");
  ASSERT_FALSE(qid.empty()) << _relay->log();
  auto lines = wait_audit(*_relay, 2, [&](const audit_line& a) { return a.queue_id == qid; });
  ASSERT_EQ(lines.size(), 2u) << dump_audit(*_relay);
  for (const auto& a : lines) {
    expect_audit_fields(a);
    if (a.rcpt == "gone@dest.test") {
      EXPECT_EQ(a.outcome, "suppressed") << a.raw;
      EXPECT_FALSE(a.mx.has_value()) << a.raw;
      EXPECT_FALSE(a.bounce_class.has_value()) << a.raw;
    } else {
      EXPECT_EQ(a.outcome, "delivered") << a.raw;
    }
  }
  ASSERT_TRUE(mx->wait_messages(2, 20s));
  EXPECT_EQ(mx->messages().back().rcpts, std::vector<std::string>{"ok@dest.test"});
  std::string m;
  EXPECT_TRUE(wait_metric("sealrelay_suppressed_total{action=\"dropped\"}", 1, &m)) << m;
  std::string raw;
  EXPECT_TRUE(wait_queue_empty(*_relay, 20s, &raw)) << raw;  // the dropped recipient is final
  ASSERT_EQ(_relay->stop(), 0) << _relay->log();  // the MX writes a session when it closes
  EXPECT_EQ(offered(*mx, "gone@dest.test"), 1u) << "only the first message offered it";
}

}  // namespace
}  // namespace sr::integ
