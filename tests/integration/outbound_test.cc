// Outbound delivery end to end (issue 3, point 7): a loopback DNS fixture, fake MX hosts on
// 127.0.0.2.. at one outbound.smtp_port, and the real relay between a client and them.
// Each test asserts on what the MX hosts recorded (envelope, bytes, TLS) and on the audit
// log (DESIGN.md §5). Retry schedules are shortened to seconds; every wait polls with a
// deadline and nothing sleeps to decide an outcome.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "support/world.hh"

namespace sr::integ {
namespace {

namespace fs = std::filesystem;

std::string simple_body(const std::string& subject, const std::string& text,
                        const std::string& msg_id = {}) {
  std::string b = "From: <alice@sender.test>\r\nTo: <someone@example.test>\r\nSubject: " + subject + "\r\n";
  if (!msg_id.empty()) b += "Message-ID: <" + msg_id + ">\r\n";
  b += "\r\n" + text + "\r\n";
  return b;
}

// Fields every record must have whatever happened (DESIGN.md §5), and loopback-only peers.
void expect_well_formed(const audit_line& a) {
  SCOPED_TRACE(a.raw);
  expect_audit_fields(a);
  EXPECT_TRUE(a.kind == "message" || a.kind == "dsn");
  EXPECT_EQ(a.policy, "opportunistic");
  EXPECT_EQ(a.policy_source, "default");
}

// The relay's generated config sends DNS to the loopback fixture only.
void expect_loopback_dns(const relay& r, const dns_fixture& dns) {
  std::ifstream in(r.config_path());
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_TRUE(contains(ss.str(), "resolvers = [\"" + dns.address() + "\"]")) << ss.str();
  EXPECT_EQ(dns.address().rfind("127.0.0.1:", 0), 0u);
}

// ------------------------------------------------------------------------------ tests

TEST(Outbound, TlsMxGetsTheMessageOverVerifiedTls) {
  dns_fixture dns("tls.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n");
  ASSERT_TRUE(dns.start()) << dns.error();
  fake_mx mx({.hosts = {"127.0.0.2"}, .port = mx_port()});
  ASSERT_TRUE(mx.start()) << mx.error();
  relay r(delivery_options(dns, mx.port()));
  ASSERT_TRUE(r.start()) << r.error();
  expect_loopback_dns(r, dns);

  // Lines that need dot-stuffing on both legs, and a body large enough to span many
  // spool chunks and TLS records.
  std::string msg_id = unique("tls") + "@sender.test";
  std::string text = ".leading dot\r\n..two dots\r\n.\r\nmiddle\r\n. space\r\n";
  for (int i = 0; i < 4000; ++i) text += "line " + std::to_string(i) + " of a long TLS body .......\r\n";
  text += ".";
  std::string body = simple_body("over tls", text, msg_id);
  std::string why;
  std::string qid = submit(r, "alice@sender.test", {"bob@tls.test"}, body, &why);
  ASSERT_FALSE(qid.empty()) << why;

  ASSERT_TRUE(mx.wait_messages(1, 20s)) << r.log() << mx.log();
  auto m = mx.messages().at(0);
  EXPECT_EQ(m.mx, "127.0.0.2:" + std::to_string(mx.port()));
  EXPECT_EQ(m.helo, "relay.test");
  EXPECT_EQ(m.mail_from, "alice@sender.test");
  EXPECT_EQ(m.rcpts, std::vector<std::string>{"bob@tls.test"});
  EXPECT_TRUE(m.tls);
  EXPECT_EQ(m.tls_version, "TLSv1.3");
  EXPECT_GE(m.cipher_bits, 128);
  EXPECT_TRUE(m.accepted);
  EXPECT_FALSE(m.bare_lf);
  EXPECT_FALSE(m.bare_cr);
  // The relay prepends its Received: header; the rest is byte for byte what was sent.
  EXPECT_TRUE(starts_with(m.data, "Received: ")) << m.data.substr(0, 200);
  EXPECT_TRUE(ends_with(m.data, body)) << "MX got " << m.data.size() << " bytes";
  EXPECT_EQ(m.data.size() - m.data.find("From: <alice@sender.test>"), body.size());

  auto lines = wait_audit(r, 1, [&](const audit_line& a) { return a.queue_id == qid; });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(r);
  const auto& a = lines[0];
  expect_well_formed(a);
  EXPECT_EQ(a.outcome, "delivered") << a.raw;
  EXPECT_EQ(a.kind, "message");
  EXPECT_EQ(a.msg_id, msg_id);
  EXPECT_EQ(a.from, "alice@sender.test");
  EXPECT_EQ(a.rcpt, "bob@tls.test");
  EXPECT_EQ(a.domain, "tls.test");
  EXPECT_EQ(a.mx, "mx1.mx.test");
  EXPECT_EQ(a.ip, "127.0.0.2");
  EXPECT_EQ(a.attempt, 1);
  EXPECT_TRUE(a.tls);
  EXPECT_EQ(a.tls_version, "TLSv1.3");
  EXPECT_EQ(a.cipher, m.cipher);
  EXPECT_EQ(a.cipher_bits, m.cipher_bits);
  EXPECT_EQ(a.cert, "verified") << a.raw;   // tests/certs/ca.crt is tls.ca_file
  EXPECT_FALSE(a.reason) << a.raw;
  ASSERT_TRUE(a.smtp_reply) << a.raw;
  EXPECT_TRUE(starts_with(*a.smtp_reply, "250")) << a.raw;

  ASSERT_TRUE(mx.wait_sessions(1, 10s));
  auto s = mx.sessions().at(0);
  EXPECT_TRUE(s.starttls_offered);
  EXPECT_FALSE(s.plaintext_command("MAIL"));
  EXPECT_FALSE(s.starttls_injection);
}

TEST(Outbound, MxWithoutStartTlsGetsPlaintextUnderOpportunistic) {
  dns_fixture dns("plain.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.3\n");
  ASSERT_TRUE(dns.start()) << dns.error();
  fake_mx mx({.hosts = {"127.0.0.3"}, .port = mx_port(), .cert = ""});
  ASSERT_TRUE(mx.start()) << mx.error();
  relay r(delivery_options(dns, mx.port()));
  ASSERT_TRUE(r.start()) << r.error();

  std::string body = simple_body("plain", "..stuffed\r\n.\r\nend");
  std::string why;
  std::string qid = submit(r, "alice@sender.test", {"bob@plain.test", "carol@plain.test"}, body, &why);
  ASSERT_FALSE(qid.empty()) << why;
  ASSERT_TRUE(mx.wait_messages(1, 20s)) << r.log();
  auto msgs = mx.messages();
  ASSERT_EQ(msgs.size(), 1u);   // two recipients of one domain: one transaction
  EXPECT_FALSE(msgs[0].tls);
  EXPECT_EQ(msgs[0].rcpts, (std::vector<std::string>{"bob@plain.test", "carol@plain.test"}));
  EXPECT_TRUE(ends_with(msgs[0].data, body));

  auto lines = wait_audit(r, 2, [&](const audit_line& a) { return a.queue_id == qid; });
  ASSERT_EQ(lines.size(), 2u) << dump_audit(r);
  std::set<std::string> rcpts;
  for (const auto& a : lines) {
    expect_well_formed(a);
    rcpts.insert(a.rcpt);
    EXPECT_EQ(a.outcome, "delivered") << a.raw;
    EXPECT_FALSE(a.tls) << a.raw;
    EXPECT_EQ(a.cert, "none");
    EXPECT_EQ(a.mx, "mx1.mx.test");
    EXPECT_EQ(a.ip, "127.0.0.3");
    EXPECT_EQ(a.attempt, 1);
    EXPECT_EQ(a.reason, "starttls-not-offered") << a.raw;   // why it went in the clear
  }
  EXPECT_EQ(rcpts, (std::set<std::string>{"bob@plain.test", "carol@plain.test"}));
}

TEST(Outbound, FailedHandshakeIsRetriedOnceInPlaintext) {
  dns_fixture dns("abort.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n");
  ASSERT_TRUE(dns.start()) << dns.error();
  fake_mx mx({.hosts = {"127.0.0.2"}, .port = mx_port(), .tls_abort = true});
  ASSERT_TRUE(mx.start()) << mx.error();
  relay r(delivery_options(dns, mx.port()));
  ASSERT_TRUE(r.start()) << r.error();

  std::string body = simple_body("abort", "after a failed handshake");
  std::string why;
  std::string qid = submit(r, "alice@sender.test", {"bob@abort.test"}, body, &why);
  ASSERT_FALSE(qid.empty()) << why;
  ASSERT_TRUE(mx.wait_messages(1, 20s)) << r.log() << mx.log();
  auto m = mx.messages().at(0);
  EXPECT_FALSE(m.tls);
  EXPECT_TRUE(ends_with(m.data, body));

  // Two connections: STARTTLS cut mid-handshake, then a new one that never asks for TLS.
  ASSERT_TRUE(mx.wait_sessions(2, 15s)) << r.log();
  auto ss = mx.sessions();
  ASSERT_GE(ss.size(), 2u);
  const mx_session* tls_try = nullptr;
  const mx_session* plain = nullptr;
  for (const auto& s : ss) {
    bool asked = std::find(s.commands.begin(), s.commands.end(), "STARTTLS") != s.commands.end();
    if (asked) tls_try = &s;
    else if (s.plaintext_command("MAIL")) plain = &s;
  }
  ASSERT_TRUE(tls_try && plain) << "sessions: " << ss.size();
  EXPECT_FALSE(tls_try->plaintext_command("MAIL"));
  EXPECT_LT(tls_try->conn, plain->conn);
  EXPECT_EQ(ss.size(), 2u);   // exactly one plaintext retry

  // The plaintext retry is its own attempt (DESIGN.md §5): the failed handshake is
  // attempt 1 (deferred, handshake-failed), the delivery in the clear attempt 2.
  auto lines = wait_audit(r, 2, [&](const audit_line& a) { return a.queue_id == qid; });
  ASSERT_EQ(lines.size(), 2u) << dump_audit(r);
  for (const auto& a : lines) expect_well_formed(a);
  EXPECT_EQ(lines[0].attempt, 1);
  EXPECT_EQ(lines[0].outcome, "deferred") << lines[0].raw;
  EXPECT_EQ(lines[0].reason, "handshake-failed") << lines[0].raw;
  EXPECT_FALSE(lines[0].tls);
  EXPECT_EQ(lines[0].mx, "mx1.mx.test");
  EXPECT_EQ(lines[0].ip, "127.0.0.2");
  EXPECT_EQ(lines[1].attempt, 2);
  EXPECT_EQ(lines[1].outcome, "delivered") << lines[1].raw;
  EXPECT_FALSE(lines[1].tls);
  EXPECT_EQ(lines[1].reason, "handshake-failed") << lines[1].raw;
  EXPECT_EQ(lines[1].ip, "127.0.0.2");
}

TEST(Outbound, FallsBackToTheNextMxByPreference) {
  // mx1: nothing listens (connection refused); mx2: greets with 421; mx3 takes the mail.
  dns_fixture dns(
      "pref.test MX 30 mx3.mx.test\n"
      "pref.test MX 10 mx1.mx.test\n"
      "pref.test MX 20 mx2.mx.test\n"
      "mx1.mx.test A 127.0.0.5\n"
      "mx2.mx.test A 127.0.0.2\n"
      "mx3.mx.test A 127.0.0.3\n");
  ASSERT_TRUE(dns.start()) << dns.error();
  uint16_t port = mx_port();
  fake_mx busy({.hosts = {"127.0.0.2"}, .port = port, .replies = {"greeting=421:4.3.2 busy"}});
  ASSERT_TRUE(busy.start()) << busy.error();
  fake_mx good({.hosts = {"127.0.0.3"}, .port = port});
  ASSERT_TRUE(good.start()) << good.error();
  relay r(delivery_options(dns, port));
  ASSERT_TRUE(r.start()) << r.error();

  std::string qid = submit(r, "alice@sender.test", {"bob@pref.test"}, simple_body("pref", "fallback"));
  ASSERT_FALSE(qid.empty());
  ASSERT_TRUE(good.wait_messages(1, 20s)) << r.log();
  EXPECT_EQ(good.messages().at(0).rcpts, std::vector<std::string>{"bob@pref.test"});
  EXPECT_TRUE(good.messages().at(0).tls);
  EXPECT_TRUE(busy.messages().empty());
  ASSERT_TRUE(busy.wait_sessions(1, 10s));   // mx2 was tried (and refused) before mx3

  auto lines = wait_audit(r, 1, [&](const audit_line& a) { return a.queue_id == qid; });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(r);
  expect_well_formed(lines[0]);
  EXPECT_EQ(lines[0].outcome, "delivered");
  EXPECT_EQ(lines[0].mx, "mx3.mx.test");
  EXPECT_EQ(lines[0].ip, "127.0.0.3");
  EXPECT_EQ(lines[0].attempt, 1);
  EXPECT_TRUE(lines[0].tls);
}

TEST(Outbound, SilentMxTimesOutAndTheNextOneDelivers) {
  dns_fixture dns(
      "quiet.test MX 10 mx1.mx.test\n"
      "quiet.test MX 20 mx2.mx.test\n"
      "mx1.mx.test A 127.0.0.6\n"
      "mx2.mx.test A 127.0.0.7\n");
  ASSERT_TRUE(dns.start()) << dns.error();
  uint16_t port = mx_port();
  fake_mx silent({.hosts = {"127.0.0.6"}, .port = port, .silent = true});
  ASSERT_TRUE(silent.start()) << silent.error();
  fake_mx good({.hosts = {"127.0.0.7"}, .port = port});
  ASSERT_TRUE(good.start()) << good.error();
  relay r(delivery_options(dns, port));   // connect_timeout 2s also bounds the greeting wait
  ASSERT_TRUE(r.start()) << r.error();

  std::string qid = submit(r, "alice@sender.test", {"bob@quiet.test"}, simple_body("quiet", "patience"));
  ASSERT_FALSE(qid.empty());
  ASSERT_TRUE(good.wait_messages(1, 20s)) << r.log();
  EXPECT_TRUE(silent.messages().empty());
  auto lines = wait_audit(r, 1, [&](const audit_line& a) { return a.queue_id == qid; });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(r);
  expect_well_formed(lines[0]);
  EXPECT_EQ(lines[0].outcome, "delivered");
  EXPECT_EQ(lines[0].mx, "mx2.mx.test");
  EXPECT_EQ(lines[0].attempt, 1);
}

TEST(Outbound, TemporaryFailureIsRetriedThenDelivered) {
  dns_fixture dns("retry.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n");
  ASSERT_TRUE(dns.start()) << dns.error();
  fake_mx mx({.hosts = {"127.0.0.2"}, .port = mx_port(), .replies = {"rcpt=450:4.2.0 mailbox busy x1"}});
  ASSERT_TRUE(mx.start()) << mx.error();
  relay r(delivery_options(dns, mx.port()));
  ASSERT_TRUE(r.start()) << r.error();

  std::string body = simple_body("retry", "second time lucky");
  std::string qid = submit(r, "alice@sender.test", {"bob@retry.test"}, body);
  ASSERT_FALSE(qid.empty());
  ASSERT_TRUE(mx.wait_messages(1, 20s)) << r.log();
  auto msgs = mx.messages();
  ASSERT_EQ(msgs.size(), 1u);   // the first transaction never reached DATA
  EXPECT_TRUE(ends_with(msgs[0].data, body));

  auto lines = wait_audit(r, 2, [&](const audit_line& a) { return a.queue_id == qid; });
  ASSERT_EQ(lines.size(), 2u) << dump_audit(r);
  for (const auto& a : lines) expect_well_formed(a);
  EXPECT_EQ(lines[0].attempt, 1);
  EXPECT_EQ(lines[0].outcome, "deferred");
  EXPECT_EQ(lines[0].reason, "remote-4xx");
  ASSERT_TRUE(lines[0].smtp_reply);
  EXPECT_TRUE(starts_with(*lines[0].smtp_reply, "450 4.2.0 mailbox busy")) << lines[0].raw;
  EXPECT_EQ(lines[0].mx, "mx1.mx.test");
  EXPECT_TRUE(lines[0].tls);
  EXPECT_EQ(lines[1].attempt, 2);
  EXPECT_EQ(lines[1].outcome, "delivered");
  EXPECT_FALSE(lines[1].reason) << lines[1].raw;
}

TEST(Outbound, RecipientsOfOneMessageKeepTheirOwnStatus) {
  dns_fixture dns("mixed.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n");
  ASSERT_TRUE(dns.start()) << dns.error();
  fake_mx mx({.hosts = {"127.0.0.2"}, .port = mx_port(),
              .rcpt_replies = {"later@mixed.test=450:4.2.1 come back later x1"}});
  ASSERT_TRUE(mx.start()) << mx.error();
  relay r(delivery_options(dns, mx.port()));
  ASSERT_TRUE(r.start()) << r.error();

  std::string body = simple_body("mixed", "one delivered now, one on retry");
  std::string qid = submit(r, "alice@sender.test", {"now@mixed.test", "later@mixed.test"}, body);
  ASSERT_FALSE(qid.empty());
  ASSERT_TRUE(mx.wait_messages(2, 20s)) << r.log();
  auto msgs = mx.messages();
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[0].rcpts, std::vector<std::string>{"now@mixed.test"});
  EXPECT_EQ(msgs[1].rcpts, std::vector<std::string>{"later@mixed.test"});   // only the deferred one again
  for (const auto& m : msgs) EXPECT_TRUE(ends_with(m.data, body));

  auto lines = wait_audit(r, 3, [&](const audit_line& a) { return a.queue_id == qid; });
  ASSERT_EQ(lines.size(), 3u) << dump_audit(r);
  std::vector<std::string> seen;
  for (const auto& a : lines) {
    expect_well_formed(a);
    seen.push_back(a.rcpt + " " + std::to_string(a.attempt) + " " + a.outcome);
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<std::string>{"later@mixed.test 1 deferred", "later@mixed.test 2 delivered",
                                            "now@mixed.test 1 delivered"}));
  std::string raw;
  EXPECT_TRUE(wait_queue_empty(r, 20s, &raw)) << raw;
}

TEST(Outbound, PermanentFailureBouncesWithADsnToTheSender) {
  dns_fixture dns(
      "bounce.test MX 10 mx1.mx.test\n"
      "mx1.mx.test A 127.0.0.2\n"
      "sender.test MX 10 mx2.mx.test\n"
      "mx2.mx.test A 127.0.0.3\n");
  ASSERT_TRUE(dns.start()) << dns.error();
  uint16_t port = mx_port();
  fake_mx dest({.hosts = {"127.0.0.2"}, .port = port,
                .rcpt_replies = {"nobody@bounce.test=550:5.1.1 no such user here"}});
  ASSERT_TRUE(dest.start()) << dest.error();
  fake_mx home({.hosts = {"127.0.0.3"}, .port = port});
  ASSERT_TRUE(home.start()) << home.error();
  relay r(delivery_options(dns, port));
  ASSERT_TRUE(r.start()) << r.error();

  std::string secret = unique("secret-body");
  std::string body = simple_body("quarterly figures", secret);
  std::string qid = submit(r, "alice@sender.test", {"nobody@bounce.test", "bob@bounce.test"}, body);
  ASSERT_FALSE(qid.empty());

  // bob is delivered; nobody bounces; the DSN goes to sender.test's MX from <>.
  ASSERT_TRUE(home.wait_messages(1, 20s)) << r.log();
  ASSERT_TRUE(dest.wait_messages(1, 10s));
  EXPECT_EQ(dest.messages().at(0).rcpts, std::vector<std::string>{"bob@bounce.test"});
  auto dsn = home.messages().at(0);
  EXPECT_EQ(dsn.mail_from, "");
  EXPECT_EQ(dsn.rcpts, std::vector<std::string>{"alice@sender.test"});
  const std::string& d = dsn.data;
  EXPECT_TRUE(contains(d, "Content-Type: multipart/report; report-type=delivery-status")) << d;
  EXPECT_TRUE(contains(d, "Content-Type: message/delivery-status")) << d;
  EXPECT_TRUE(contains(d, "Final-Recipient: rfc822; nobody@bounce.test")) << d;
  EXPECT_TRUE(contains(d, "Action: failed")) << d;
  EXPECT_TRUE(contains(d, "Status: 5.1.1")) << d;
  EXPECT_TRUE(contains(d, "Remote-MTA: dns; mx1.mx.test")) << d;
  EXPECT_TRUE(contains(d, "Diagnostic-Code: smtp; 550 5.1.1 no such user here")) << d;
  EXPECT_TRUE(contains(d, "Content-Type: text/rfc822-headers")) << d;
  EXPECT_TRUE(contains(d, "Subject: quarterly figures")) << d;   // the original headers...
  EXPECT_FALSE(contains(d, secret)) << d;                          // ...but never its body
  EXPECT_FALSE(contains(d, "bob@bounce.test")) << d;              // only the failed recipient
  EXPECT_TRUE(contains(d, "To: <alice@sender.test>")) << d;

  auto lines = wait_audit(r, 2, [&](const audit_line& a) { return a.queue_id == qid; });
  ASSERT_EQ(lines.size(), 2u) << dump_audit(r);
  for (const auto& a : lines) {
    expect_well_formed(a);
    EXPECT_EQ(a.attempt, 1);
    if (a.rcpt == "nobody@bounce.test") {
      EXPECT_EQ(a.outcome, "bounced") << a.raw;
      EXPECT_EQ(a.reason, "remote-5xx") << a.raw;
      ASSERT_TRUE(a.smtp_reply);
      EXPECT_TRUE(starts_with(*a.smtp_reply, "550 5.1.1")) << a.raw;
    } else {
      EXPECT_EQ(a.rcpt, "bob@bounce.test");
      EXPECT_EQ(a.outcome, "delivered") << a.raw;
    }
  }
  auto dsn_lines = wait_audit(r, 1, [](const audit_line& a) { return a.kind == "dsn"; });
  ASSERT_EQ(dsn_lines.size(), 1u) << dump_audit(r);
  expect_well_formed(dsn_lines[0]);
  EXPECT_EQ(dsn_lines[0].from, "");
  EXPECT_EQ(dsn_lines[0].rcpt, "alice@sender.test");
  EXPECT_EQ(dsn_lines[0].outcome, "delivered");
  EXPECT_EQ(dsn_lines[0].mx, "mx2.mx.test");
}

TEST(Outbound, ExpiredMessageBouncesWithItsLastError) {
  dns_fixture dns(
      "slowpoke.test MX 10 mx1.mx.test\n"
      "mx1.mx.test A 127.0.0.2\n"
      "sender.test MX 10 mx2.mx.test\n"
      "mx2.mx.test A 127.0.0.3\n");
  ASSERT_TRUE(dns.start()) << dns.error();
  uint16_t port = mx_port();
  fake_mx dest({.hosts = {"127.0.0.2"}, .port = port, .replies = {"rcpt=451:4.3.0 not today"}});
  ASSERT_TRUE(dest.start()) << dest.error();
  fake_mx home({.hosts = {"127.0.0.3"}, .port = port});
  ASSERT_TRUE(home.start()) << home.error();
  relay r(delivery_options(dns, port, "max_queue_age = \"3s\"\n"));
  ASSERT_TRUE(r.start()) << r.error();

  std::string secret = unique("expired-body");
  std::string qid = submit(r, "alice@sender.test", {"bob@slowpoke.test"}, simple_body("too slow", secret));
  ASSERT_FALSE(qid.empty());
  ASSERT_TRUE(home.wait_messages(1, 20s)) << r.log();
  auto dsn = home.messages().at(0);
  EXPECT_EQ(dsn.mail_from, "");
  EXPECT_EQ(dsn.rcpts, std::vector<std::string>{"alice@sender.test"});
  EXPECT_TRUE(contains(dsn.data, "Final-Recipient: rfc822; bob@slowpoke.test")) << dsn.data;
  EXPECT_TRUE(contains(dsn.data, "Status: 4.4.7")) << dsn.data;
  EXPECT_TRUE(contains(dsn.data, "451 4.3.0 not today")) << dsn.data;   // the last error
  EXPECT_TRUE(contains(dsn.data, "Subject: too slow")) << dsn.data;     // headers read back from the spool
  EXPECT_FALSE(contains(dsn.data, secret)) << dsn.data;
  EXPECT_TRUE(dest.messages().empty());

  auto lines = wait_audit(r, 1, [&](const audit_line& a) { return a.queue_id == qid && a.outcome == "bounced"; });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(r);
  expect_well_formed(lines[0]);
  EXPECT_GE(lines[0].attempt, 2);
  EXPECT_EQ(lines[0].reason, "expired") << lines[0].raw;
  EXPECT_EQ(lines[0].smtp_reply, "451 4.3.0 not today") << lines[0].raw;
  // Every earlier attempt was deferred, numbered 1, 2, ... in order.
  int n = 0;
  for (const auto& a : read_audit(audit_file(r))) {
    if (a.queue_id != qid) continue;
    EXPECT_EQ(a.attempt, ++n) << a.raw;
    if (a.outcome != "bounced") {
      EXPECT_EQ(a.outcome, "deferred") << a.raw;
    }
  }
  std::string raw;
  EXPECT_TRUE(wait_queue_empty(r, 20s, &raw)) << raw;
}

TEST(Outbound, NullMxBouncesAtOnce) {
  dns_fixture dns(
      "nullmx.test MX 0 .\n"
      "sender.test MX 10 mx2.mx.test\n"
      "mx2.mx.test A 127.0.0.3\n");
  ASSERT_TRUE(dns.start()) << dns.error();
  fake_mx home({.hosts = {"127.0.0.3"}, .port = mx_port()});
  ASSERT_TRUE(home.start()) << home.error();
  relay r(delivery_options(dns, home.port()));
  ASSERT_TRUE(r.start()) << r.error();

  std::string qid = submit(r, "alice@sender.test", {"bob@nullmx.test"}, simple_body("null mx", "never sent"));
  ASSERT_FALSE(qid.empty());
  ASSERT_TRUE(home.wait_messages(1, 20s)) << r.log();
  auto dsn = home.messages().at(0);
  EXPECT_EQ(dsn.mail_from, "");
  EXPECT_EQ(dsn.rcpts, std::vector<std::string>{"alice@sender.test"});
  EXPECT_TRUE(contains(dsn.data, "Final-Recipient: rfc822; bob@nullmx.test")) << dsn.data;
  EXPECT_TRUE(contains(dsn.data, "Status: 5.1.10")) << dsn.data;
  EXPECT_TRUE(contains(dsn.data, "Subject: null mx")) << dsn.data;

  auto lines = wait_audit(r, 1, [&](const audit_line& a) { return a.queue_id == qid; });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(r);
  expect_well_formed(lines[0]);
  EXPECT_EQ(lines[0].outcome, "bounced");
  EXPECT_EQ(lines[0].reason, "null-mx");
  EXPECT_EQ(lines[0].attempt, 1);
  EXPECT_FALSE(lines[0].mx) << lines[0].raw;   // no host was contacted
  EXPECT_FALSE(lines[0].ip) << lines[0].raw;
  EXPECT_FALSE(lines[0].tls);
}

TEST(Outbound, DomainWithoutMxIsDeliveredToItsAddress) {
  dns_fixture dns("nomx.test A 127.0.0.4\n");
  ASSERT_TRUE(dns.start()) << dns.error();
  fake_mx mx({.hosts = {"127.0.0.4"}, .port = mx_port()});
  ASSERT_TRUE(mx.start()) << mx.error();
  relay r(delivery_options(dns, mx.port()));
  ASSERT_TRUE(r.start()) << r.error();

  std::string qid = submit(r, "alice@sender.test", {"bob@nomx.test"}, simple_body("no mx", "implicit MX"));
  ASSERT_FALSE(qid.empty());
  ASSERT_TRUE(mx.wait_messages(1, 20s)) << r.log();
  EXPECT_EQ(mx.messages().at(0).rcpts, std::vector<std::string>{"bob@nomx.test"});
  auto lines = wait_audit(r, 1, [&](const audit_line& a) { return a.queue_id == qid; });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(r);
  expect_well_formed(lines[0]);
  EXPECT_EQ(lines[0].outcome, "delivered");
  EXPECT_EQ(lines[0].mx, "nomx.test");
  EXPECT_EQ(lines[0].ip, "127.0.0.4");
  EXPECT_TRUE(lines[0].tls);
}

TEST(Outbound, ManyDomainsAtOnceEachMxGetsExactlyItsOwn) {
  constexpr int domains = 20, per_domain = 5, hosts = 4;
  std::string zone;
  std::vector<std::string> ips;
  for (int h = 0; h < hosts; ++h) ips.push_back("127.0.0." + std::to_string(2 + h));
  auto dom = [](int d) {
    std::string name = std::to_string(d);   // built by appending: GCC 12 -Wrestrict misfires on "d" + ...
    name.insert(0, 1, 'd');
    name += ".many.test";
    return name;
  };
  for (int d = 0; d < domains; ++d) {
    zone += dom(d) + " MX 10 mx" + std::to_string(d) + ".mx.test\n";
    zone += "mx" + std::to_string(d) + ".mx.test A " + ips[d % hosts] + "\n";
  }
  dns_fixture dns(zone);
  ASSERT_TRUE(dns.start()) << dns.error();
  uint16_t port = mx_port();
  std::vector<std::unique_ptr<fake_mx>> mxs;
  for (int h = 0; h < hosts; ++h) {
    mxs.push_back(std::make_unique<fake_mx>(fake_mx_options{.hosts = {ips[h]}, .port = port}));
    ASSERT_TRUE(mxs.back()->start()) << mxs.back()->error();
  }
  relay r(delivery_options(dns, port));
  ASSERT_TRUE(r.start()) << r.error();

  // One client session: per_domain single-recipient messages for every domain, then
  // per_domain messages that each name a recipient in every domain (split per domain).
  raw_client c;
  ASSERT_TRUE(open_session(c, r.port()));
  std::map<std::string, std::multiset<std::string>> expected;   // ip -> "rcpt|marker"
  size_t sent = 0;
  for (int m = 0; m < per_domain; ++m) {
    for (int d = 0; d < domains; ++d) {
      std::string rcpt = "u" + std::to_string(m) + "@" + dom(d);
      std::string marker = "single-" + std::to_string(m) + "-" + std::to_string(d);
      auto reply = send_message(c, "alice@sender.test", {rcpt}, simple_body(marker, marker));
      ASSERT_TRUE(reply && reply_code(*reply) == 250) << (reply ? *reply : "no reply");
      expected[ips[d % hosts]].insert(rcpt + "|" + marker);
      ++sent;
    }
  }
  for (int m = 0; m < per_domain; ++m) {
    std::vector<std::string> rcpts;
    std::string marker = "multi-" + std::to_string(m);
    for (int d = 0; d < domains; ++d) {
      rcpts.push_back("all" + std::to_string(m) + "@" + dom(d));
      expected[ips[d % hosts]].insert(rcpts.back() + "|" + marker);
      ++sent;
    }
    auto reply = send_message(c, "alice@sender.test", rcpts, simple_body(marker, marker));
    ASSERT_TRUE(reply && reply_code(*reply) == 250) << (reply ? *reply : "no reply");
  }
  c.command("QUIT", 5s);

  auto lines = wait_audit(r, sent, [](const audit_line& a) { return a.outcome == "delivered"; }, 60s);
  ASSERT_EQ(lines.size(), sent) << r.log();
  for (const auto& a : lines) expect_well_formed(a);
  for (int h = 0; h < hosts; ++h) {
    SCOPED_TRACE(ips[h]);
    size_t want = expected[ips[h]].size();
    size_t txns = want;   // every transaction here carries one recipient of this host's domains
    ASSERT_TRUE(mxs[h]->wait_messages(txns, 20s));
    std::multiset<std::string> got;
    for (const auto& m : mxs[h]->messages()) {
      EXPECT_TRUE(m.accepted);
      EXPECT_TRUE(m.tls);
      size_t s = m.data.find("Subject: ");
      ASSERT_NE(s, std::string::npos);
      std::string marker = m.data.substr(s + 9, m.data.find("\r\n", s) - s - 9);
      for (const auto& rc : m.rcpts) got.insert(rc + "|" + marker);
    }
    EXPECT_EQ(got, expected[ips[h]]);
  }
  // No recipient was attempted twice and nothing was deferred.
  for (const auto& a : read_audit(audit_file(r))) EXPECT_EQ(a.outcome, "delivered") << a.raw;
}

TEST(Outbound, DeferredQueueSurvivesARestart) {
  dns_fixture dns("later.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n");
  ASSERT_TRUE(dns.start()) << dns.error();
  uint16_t port = mx_port();
  auto refusing = std::make_unique<fake_mx>(
      fake_mx_options{.hosts = {"127.0.0.2"}, .port = port, .replies = {"rcpt=451:4.3.0 try later"}});
  ASSERT_TRUE(refusing->start()) << refusing->error();
  relay r(delivery_options(dns, port));
  ASSERT_TRUE(r.start()) << r.error();

  constexpr int n = 3;
  std::set<std::string> ids;
  for (int i = 0; i < n; ++i) {
    std::string qid = submit(r, "alice@sender.test", {"bob" + std::to_string(i) + "@later.test"},
                             simple_body("later " + std::to_string(i), "kept across a restart"));
    ASSERT_FALSE(qid.empty());
    ids.insert(qid);
  }
  auto deferred = wait_audit(r, n, [&](const audit_line& a) { return a.outcome == "deferred"; });
  ASSERT_GE(deferred.size(), size_t(n)) << dump_audit(r);
  ASSERT_EQ(r.stop(), 0) << r.log();
  // The last attempt number each recipient reached before the restart.
  std::map<std::string, int> last_attempt;
  for (const auto& a : read_audit(audit_file(r)))
    last_attempt[a.rcpt] = std::max(last_attempt[a.rcpt], a.attempt);
  ASSERT_EQ(last_attempt.size(), size_t(n)) << dump_audit(r);

  std::string raw;
  auto q = r.list_queue(&raw);
  ASSERT_TRUE(q) << raw;
  std::set<std::string> queued;
  for (const auto& m : *q) queued.insert(m.id);
  EXPECT_EQ(queued, ids) << raw;

  // The MX recovers; the restarted relay delivers everything it had queued.
  refusing.reset();
  fake_mx mx({.hosts = {"127.0.0.2"}, .port = port});
  ASSERT_TRUE(mx.start()) << mx.error();
  ASSERT_TRUE(r.start()) << r.error();
  ASSERT_TRUE(mx.wait_messages(n, 20s)) << r.log();
  std::set<std::string> rcpts;
  for (const auto& m : mx.messages()) rcpts.insert(m.rcpts.begin(), m.rcpts.end());
  EXPECT_EQ(rcpts, (std::set<std::string>{"bob0@later.test", "bob1@later.test", "bob2@later.test"}));
  EXPECT_EQ(mx.messages().size(), size_t(n));
  auto delivered = wait_audit(r, n, [&](const audit_line& a) { return a.outcome == "delivered"; });
  ASSERT_EQ(delivered.size(), size_t(n)) << dump_audit(r);
  // The spool keeps attempt counts: numbering continues after the restart (DESIGN.md §5).
  for (const auto& a : delivered) {
    expect_well_formed(a);
    EXPECT_TRUE(ids.count(a.queue_id)) << a.raw;
    EXPECT_EQ(a.attempt, last_attempt[a.rcpt] + 1) << a.raw << "\n" << dump_audit(r);
  }
  EXPECT_TRUE(wait_queue_empty(r, 20s, &raw)) << raw;
  ASSERT_EQ(r.stop(), 0) << r.log();
  q = r.list_queue(&raw);
  ASSERT_TRUE(q) << raw;
  EXPECT_TRUE(q->empty()) << raw;
}

TEST(Outbound, ReusesOneConnectionForSeveralMessages) {
  dns_fixture dns("reuse.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n");
  ASSERT_TRUE(dns.start()) << dns.error();
  // The slow greeting keeps the first connection busy while the client queues the rest.
  fake_mx mx({.hosts = {"127.0.0.2"}, .port = mx_port(), .delays = {"greeting=0.5"}});
  ASSERT_TRUE(mx.start()) << mx.error();
  relay r(delivery_options(dns, mx.port(), "max_conns_per_domain = 1\n"));
  ASSERT_TRUE(r.start()) << r.error();

  // All five are queued before the first connection is through its handshake, or while
  // it waits (parked) for more: either way one connection carries them.
  constexpr int n = 5;
  raw_client c;
  ASSERT_TRUE(open_session(c, r.port()));
  for (int i = 0; i < n; ++i) {
    auto reply = send_message(c, "alice@sender.test", {"bob" + std::to_string(i) + "@reuse.test"},
                              simple_body("reuse " + std::to_string(i), "one connection"));
    ASSERT_TRUE(reply && reply_code(*reply) == 250);
  }
  c.command("QUIT", 5s);
  ASSERT_TRUE(mx.wait_messages(n, 20s)) << r.log();
  auto msgs = mx.messages();
  std::set<int> conns;
  for (const auto& m : msgs) conns.insert(m.conn);
  EXPECT_EQ(conns.size(), 1u) << "messages arrived over " << conns.size() << " connections";
  for (const auto& m : msgs) EXPECT_TRUE(m.tls);
  auto lines = wait_audit(r, n, [](const audit_line& a) { return a.outcome == "delivered"; });
  EXPECT_EQ(lines.size(), size_t(n)) << dump_audit(r);
}

// Issue 11 item 5: the delivery agent keeps the MX's session ticket, so its next
// connection to that MX resumes (no certificate, one round trip less), as the MX sees
// (Python ssl's session_reused), and the audit still says the certificate was verified.
TEST(Outbound, SecondConnectionToTheSameMxResumesTls) {
  dns_fixture dns("resume.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n");
  ASSERT_TRUE(dns.start()) << dns.error();
  fake_mx mx({.hosts = {"127.0.0.2"}, .port = mx_port()});
  ASSERT_TRUE(mx.start()) << mx.error();
  // One message per connection: the second message needs a new connection.
  relay r(delivery_options(dns, mx.port(), "messages_per_conn = 1\nmax_conns_per_domain = 1\n"));
  ASSERT_TRUE(r.start()) << r.error();
  // Both messages through one inbound session: one shard stores both, and its delivery
  // agent (whose session cache is per shard) delivers both.
  raw_client c;
  ASSERT_TRUE(open_session(c, r.port()));
  for (int i = 0; i < 2; ++i) {
    auto reply = send_message(c, "alice@sender.test", {"bob" + std::to_string(i) + "@resume.test"},
                              simple_body("resume " + std::to_string(i), "ticket"));
    ASSERT_TRUE(reply && reply_code(*reply) == 250);
    ASSERT_TRUE(mx.wait_messages(size_t(i + 1), 20s)) << r.log() << mx.log();
  }
  c.command("QUIT", 5s);
  ASSERT_TRUE(mx.wait_sessions(2, 10s)) << mx.log();
  auto ss = mx.sessions();
  ASSERT_EQ(ss.size(), 2u);
  EXPECT_NE(ss[0].conn, ss[1].conn);
  EXPECT_TRUE(ss[0].tls);
  EXPECT_TRUE(ss[1].tls);
  EXPECT_FALSE(ss[0].tls_resumed);
  EXPECT_TRUE(ss[1].tls_resumed) << "the second connection made a full handshake";
  auto lines = wait_audit(r, 2, [](const audit_line& a) { return a.outcome == "delivered"; });
  ASSERT_EQ(lines.size(), 2u) << dump_audit(r);
  for (const auto& a : lines) EXPECT_EQ(a.cert, "verified") << a.raw;  // kept from the full handshake
}

TEST(Outbound, RouteSendsADomainToItsNextHopWithoutDns) {
  // The DNS fixture knows nothing of routed.test and answers SERVFAIL for it: any lookup
  // would defer the message. The route's next hop gets it.
  dns_fixture dns("other.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n", {.default_rcode = "SERVFAIL"});
  ASSERT_TRUE(dns.start()) << dns.error();
  uint16_t port = mx_port();
  fake_mx hop({.hosts = {"127.0.0.4"}, .port = port});
  ASSERT_TRUE(hop.start()) << hop.error();
  fake_mx mx({.hosts = {"127.0.0.2"}, .port = port});
  ASSERT_TRUE(mx.start()) << mx.error();
  std::string route = "[[route]]\ndomain = \"routed.test\"\nnext_hop = \"[127.0.0.4]:" + std::to_string(port) + "\"\n";
  relay r(delivery_options(dns, port, {}, route));
  ASSERT_TRUE(r.start()) << r.error();

  std::string q1 = submit(r, "alice@sender.test", {"bob@routed.test"}, simple_body("routed", "via next hop"));
  std::string q2 = submit(r, "alice@sender.test", {"bob@other.test"}, simple_body("other", "via MX"));
  ASSERT_FALSE(q1.empty());
  ASSERT_FALSE(q2.empty());
  ASSERT_TRUE(hop.wait_messages(1, 20s)) << r.log();
  ASSERT_TRUE(mx.wait_messages(1, 20s)) << r.log();
  EXPECT_EQ(hop.messages().at(0).rcpts, std::vector<std::string>{"bob@routed.test"});
  EXPECT_EQ(mx.messages().at(0).rcpts, std::vector<std::string>{"bob@other.test"});
  EXPECT_EQ(hop.messages().size(), 1u);
  EXPECT_EQ(mx.messages().size(), 1u);
  EXPECT_TRUE(hop.messages().at(0).tls);   // the domain's (opportunistic) policy still applies

  auto lines = wait_audit(r, 1, [&](const audit_line& a) { return a.queue_id == q1; });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(r);
  expect_well_formed(lines[0]);
  EXPECT_EQ(lines[0].outcome, "delivered");
  EXPECT_EQ(lines[0].ip, "127.0.0.4");
  EXPECT_EQ(lines[0].mx, "127.0.0.4");
  EXPECT_TRUE(lines[0].tls);
}

}  // namespace
}  // namespace sr::integ
