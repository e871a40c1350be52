// TLS policy end to end (issue 4, point 7): the real relay between a client and misbehaving
// fake MX hosts (no STARTTLS, 454 to STARTTLS, aborted handshake, TLS 1.0/1.1 only, 3DES
// only, expired / self-signed / wrong-name certificates, STARTTLS stripped after the first
// connection) under opportunistic, forced and exclusive policies (DESIGN.md §1 table).
// Every test asserts on what the MX hosts received (the --sessions record: no MAIL, RCPT or
// DATA outside TLS under forced/exclusive; the --record of messages) and on the audit lines
// (DESIGN.md §5). Retries are 1 s apart; every wait polls with a deadline.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "support/world.hh"

namespace sr::integ {
namespace {

namespace fs = std::filesystem;

// Loopback hosts (world.hh): 127.0.0.2..8 are recipient MX hosts, 127.0.0.9 is the
// sender's own MX (where DSNs go). All share one port (outbound.smtp_port).
const char* const home_ip = "127.0.0.9";
const char* const home_zone = "sender.test MX 10 home.mx.test\nhome.mx.test A 127.0.0.9\n";

std::string simple_body(const std::string& subject, const std::string& text) {
  return "From: <alice@sender.test>\r\nTo: <someone@dest.test>\r\nSubject: " + subject +
         "\r\nMessage-ID: <" + unique("m") + "@sender.test>\r\n\r\n" + text + "\r\n";
}

// An attempt's record of message `qid` (not a hand-off's: reason fallback-unavailable,
// written after each attempt of a forced message whose every MX failed for TLS).
bool attempt_line(const audit_line& a, const std::string& qid) {
  return a.queue_id == qid && a.reason != "fallback-unavailable";
}

// Nothing of a message was ever sent in the clear to `mx`: no MAIL, RCPT or DATA before
// TLS in any session, and every message it recorded came over TLS.
void expect_nothing_in_clear(const fake_mx& mx) {
  for (const auto& s : mx.sessions()) {
    SCOPED_TRACE(commands_of(s));
    EXPECT_FALSE(s.plaintext_command("MAIL"));
    EXPECT_FALSE(s.plaintext_command("RCPT"));
    EXPECT_FALSE(s.plaintext_command("DATA"));
    EXPECT_FALSE(s.plaintext_command("BDAT"));
  }
  for (const auto& m : mx.messages()) EXPECT_TRUE(m.tls) << m.mail_from << " " << m.rcpts.size();
}

// `mx` got no message and no session of it reached MAIL, even over TLS (the relay walked
// away with QUIT); every session ended with QUIT, or with a cut handshake.
void expect_no_mail_at_all(const fake_mx& mx) {
  EXPECT_TRUE(mx.messages().empty());
  for (const auto& s : mx.sessions()) {
    SCOPED_TRACE(commands_of(s));
    for (const auto& c : s.commands) {
      std::string_view v = c;
      if (v.rfind("TLS ", 0) == 0) v.remove_prefix(4);
      EXPECT_NE(v.rfind("MAIL", 0), 0u);
      EXPECT_NE(v.rfind("RCPT", 0), 0u);
      EXPECT_NE(v.rfind("DATA", 0), 0u);
    }
  }
  expect_nothing_in_clear(mx);
}

// DESIGN.md §5 fields every line has, and the policy that applied.
void expect_line(const audit_line& a, std::string_view policy, std::string_view source) {
  SCOPED_TRACE(a.raw);
  expect_audit_fields(a);
  EXPECT_EQ(a.policy, policy);
  EXPECT_EQ(a.policy_source, source);
  if (a.tls) {
    EXPECT_TRUE(a.cert == "verified" || a.cert == "invalid");
  }
}

std::string policy_toml(const std::string& domain, const std::string& tls, const std::string& extra = {}) {
  return "[[policy]]\ndomain = \"" + domain + "\"\ntls = \"" + tls + "\"\n" + extra + "\n";
}

enum class mx_kind { good, no_starttls, broken, weak };

// The four MX columns of the DESIGN.md §1 table.
fake_mx_options mx_options(mx_kind k, const std::string& ip) {
  fake_mx_options o{.hosts = {ip}};
  switch (k) {
    case mx_kind::good: break;
    case mx_kind::no_starttls: o.no_starttls = true; break;
    case mx_kind::broken: o.tls_abort = true; break;
    case mx_kind::weak:   // 3DES only (112 bits), TLS 1.2, through the wolfSSL backend
      o.tls_max = "1.2";
      o.ciphers = "ECDHE-ECDSA-DES-CBC3-SHA";
      o.tls_backend = "wolfssl";
      break;
  }
  return o;
}

const char* reason_of(mx_kind k) {
  switch (k) {
    case mx_kind::good: return "";
    case mx_kind::no_starttls: return "starttls-not-offered";
    case mx_kind::broken: return "handshake-failed";
    case mx_kind::weak: return "weak-cipher";
  }
  return "";
}

bool is_3des(const std::optional<std::string>& cipher) {
  return cipher && (contains(*cipher, "3DES") || contains(*cipher, "DES-CBC3"));
}

// A loopback world (world.hh) whose DNS always knows the sender's own MX.
class Policy : public ::testing::Test, protected world {
 protected:
  Policy() { _outbound_defaults = {{"connect_timeout", "\"2s\""}, {"retry", "[\"1s\"]"}, {"max_queue_age", "\"60s\""}}; }

  // Start the DNS fixture with `zone` plus sender.test's own MX (home.mx.test).
  bool start_dns(const std::string& zone) { return world::start_dns(zone + home_zone); }
  // The sender's own MX, where DSNs arrive.
  fake_mx* start_home() { return start_mx({.hosts = {home_ip}}); }

  // One DESIGN.md §1 cell: a message to dest.test (one MX of `kind`) under `policy`
  // ("opportunistic" is the default policy; forced/exclusive come from a [[policy]]).
  void run_row(const std::string& policy, mx_kind kind);
};

void Policy::run_row(const std::string& policy, mx_kind kind) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns("dest.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx(mx_options(kind, "127.0.0.2"));
  ASSERT_TRUE(mx);
  fake_mx* home = start_home();
  ASSERT_TRUE(home);
  bool opportunistic = policy == "opportunistic";
  relay* r = start_relay(opportunistic ? "" : policy_toml("dest.test", policy));
  ASSERT_TRUE(r);
  std::string source = opportunistic ? "default" : "config";

  std::string secret = unique("row-secret");
  std::string body = simple_body("row", secret);
  std::string why;
  std::string qid = submit(*r, "alice@sender.test", {"bob@dest.test"}, body, &why);
  ASSERT_FALSE(qid.empty()) << why;

  if (kind == mx_kind::good || opportunistic) {
    // Delivered: over TLS when the MX has any, else in the clear (opportunistic only).
    auto lines = wait_audit(*r, 1, [&](const audit_line& a) { return a.queue_id == qid && a.outcome == "delivered"; });
    ASSERT_EQ(lines.size(), 1u) << dump_audit(*r) << r->log();
    ASSERT_TRUE(mx->wait_messages(1, 10s));
    auto msgs = mx->messages();
    ASSERT_EQ(msgs.size(), 1u);
    EXPECT_TRUE(contains(msgs[0].data, secret));
    EXPECT_EQ(msgs[0].rcpts, std::vector<std::string>{"bob@dest.test"});
    auto all = audit_of(*r, qid);
    for (const auto& a : all) expect_line(a, policy, source);
    const audit_line& d = lines[0];
    SCOPED_TRACE(d.raw);
    EXPECT_EQ(d.mx, "mx1.mx.test");
    EXPECT_EQ(d.ip, "127.0.0.2");
    switch (kind) {
      case mx_kind::good:
        ASSERT_EQ(all.size(), 1u) << dump_audit(*r);
        EXPECT_TRUE(msgs[0].tls);
        EXPECT_TRUE(d.tls);
        EXPECT_EQ(d.tls_version, "TLSv1.3");
        EXPECT_EQ(d.cipher, msgs[0].cipher);
        EXPECT_GE(d.cipher_bits.value_or(0), 128);
        EXPECT_EQ(d.cert, "verified");
        EXPECT_FALSE(d.reason);
        EXPECT_EQ(d.attempt, 1);
        ASSERT_TRUE(mx->wait_sessions(1, 10s));
        expect_nothing_in_clear(*mx);
        break;
      case mx_kind::no_starttls:
        ASSERT_EQ(all.size(), 1u) << dump_audit(*r);
        EXPECT_FALSE(msgs[0].tls);
        EXPECT_FALSE(d.tls);
        EXPECT_EQ(d.reason, "starttls-not-offered");
        EXPECT_EQ(d.attempt, 1);
        break;
      case mx_kind::broken: {
        // The failed handshake is attempt 1 (deferred), the one plaintext retry attempt 2.
        ASSERT_EQ(all.size(), 2u) << dump_audit(*r);
        EXPECT_EQ(all[0].attempt, 1);
        EXPECT_EQ(all[0].outcome, "deferred");
        EXPECT_EQ(all[0].reason, "handshake-failed");
        EXPECT_FALSE(msgs[0].tls);
        EXPECT_FALSE(d.tls);
        EXPECT_EQ(d.attempt, 2);
        EXPECT_EQ(d.reason, "handshake-failed");
        ASSERT_TRUE(mx->wait_sessions(2, 10s));
        auto ss = mx->sessions();
        ASSERT_EQ(ss.size(), 2u);
        EXPECT_TRUE(has_command(ss[0], "STARTTLS")) << commands_of(ss[0]);
        EXPECT_FALSE(ss[0].plaintext_command("MAIL")) << commands_of(ss[0]);
        EXPECT_FALSE(has_command(ss[1], "STARTTLS")) << commands_of(ss[1]);
        break;
      }
      case mx_kind::weak:
        // Postfix `may`: any TLS beats plaintext; the audit shows the 112-bit rating.
        ASSERT_EQ(all.size(), 1u) << dump_audit(*r);
        EXPECT_TRUE(msgs[0].tls);
        EXPECT_EQ(msgs[0].cipher_bits, 112);
        EXPECT_TRUE(d.tls);
        EXPECT_EQ(d.tls_version, "TLSv1.2");
        EXPECT_TRUE(is_3des(d.cipher)) << d.cipher.value_or("none");
        EXPECT_EQ(d.cipher_bits, 112);
        EXPECT_EQ(d.cert, "verified");
        ASSERT_TRUE(mx->wait_sessions(1, 10s));
        expect_nothing_in_clear(*mx);
        break;
    }
    return;
  }

  std::string reason = reason_of(kind);
  if (policy == "forced") {
    // Never plaintext: each attempt is audited deferred with the TLS reason, then handed
    // to the fallback, which is unavailable until the sidecar exists (deferred,
    // fallback-unavailable); retried over TLS on the normal schedule: a second attempt
    // fails the same way.
    auto lines = wait_audit(*r, 2, [&](const audit_line& a) {
      return a.queue_id == qid && a.reason != "fallback-unavailable";
    });
    ASSERT_GE(lines.size(), 2u) << dump_audit(*r) << r->log();
    for (size_t i = 0; i < lines.size(); ++i) {
      const auto& a = lines[i];
      SCOPED_TRACE(a.raw);
      expect_line(a, "forced", "config");
      EXPECT_EQ(a.attempt, int(i + 1));
      EXPECT_EQ(a.outcome, "deferred");
      EXPECT_EQ(a.reason, reason);
      EXPECT_EQ(a.mx, "mx1.mx.test");
      EXPECT_EQ(a.ip, "127.0.0.2");
      if (kind == mx_kind::weak) {
        // The TLS session the policy refused is on record: what was negotiated and why not.
        EXPECT_TRUE(a.tls);
        EXPECT_EQ(a.tls_version, "TLSv1.2");
        EXPECT_TRUE(is_3des(a.cipher));
        EXPECT_EQ(a.cipher_bits, 112);
      } else {
        EXPECT_FALSE(a.tls);
      }
      auto handoff = wait_audit(*r, 1, [&](const audit_line& h) {
        return h.queue_id == qid && h.attempt == a.attempt && h.reason == "fallback-unavailable";
      });
      ASSERT_EQ(handoff.size(), 1u) << dump_audit(*r);
      expect_line(handoff[0], "forced", "config");
      EXPECT_EQ(handoff[0].outcome, "deferred") << handoff[0].raw;
    }
    ASSERT_TRUE(mx->wait_sessions(2, 10s));
    expect_no_mail_at_all(*mx);
    for (const auto& s : mx->sessions()) {
      SCOPED_TRACE(commands_of(s));
      if (kind == mx_kind::no_starttls) {
        EXPECT_FALSE(s.starttls_offered);
        EXPECT_TRUE(has_command(s, "QUIT"));
      } else {
        EXPECT_TRUE(has_command(s, "STARTTLS"));   // every try asked for TLS; none went on without
      }
      if (kind == mx_kind::weak) {
        EXPECT_TRUE(s.tls);
        EXPECT_TRUE(has_command(s, "TLS QUIT"));
      }
    }
    std::string raw;
    EXPECT_TRUE(wait_queue(*r, [&](const std::set<std::string>& ids) { return ids.count(qid) == 1; }, 10s, &raw))
        << raw;
    return;
  }

  // exclusive: dropped at once (attempt 1), out of the spool, no DSN unless asked for.
  auto lines = wait_audit(*r, 1, [&](const audit_line& a) { return a.queue_id == qid && a.outcome == "dropped"; });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(*r) << r->log();
  auto all = audit_of(*r, qid);
  ASSERT_EQ(all.size(), 1u) << dump_audit(*r);
  const auto& a = all[0];
  expect_line(a, "exclusive", "config");
  SCOPED_TRACE(a.raw);
  EXPECT_EQ(a.attempt, 1);
  EXPECT_EQ(a.outcome, "dropped");
  EXPECT_EQ(a.reason, reason);
  EXPECT_EQ(a.mx, "mx1.mx.test");
  if (kind == mx_kind::weak) {
    EXPECT_TRUE(a.tls);
    EXPECT_EQ(a.cipher_bits, 112);
  }
  std::string raw;
  EXPECT_TRUE(wait_queue(*r, [](const std::set<std::string>& ids) { return ids.empty(); }, 10s, &raw)) << raw;
  ASSERT_EQ(r->stop(), 0) << r->log();
  auto q = r->list_queue(&raw);
  ASSERT_TRUE(q) << raw;
  EXPECT_TRUE(q->empty()) << raw;   // neither the message nor a DSN
  ASSERT_TRUE(mx->wait_sessions(1, 10s));
  expect_no_mail_at_all(*mx);
  EXPECT_TRUE(home->messages().empty());
  for (const auto& l : read_audit(audit_file(*r))) EXPECT_NE(l.kind, "dsn") << l.raw;
}

// ------------------------------------------------------- DESIGN.md §1, every row and column

TEST_F(Policy, OpportunisticGoodTlsDeliversOverTls) { run_row("opportunistic", mx_kind::good); }
TEST_F(Policy, OpportunisticNoStartTlsDeliversInTheClear) { run_row("opportunistic", mx_kind::no_starttls); }
TEST_F(Policy, OpportunisticBrokenTlsRetriesOnceInTheClear) { run_row("opportunistic", mx_kind::broken); }
TEST_F(Policy, OpportunisticWeakCipherDeliversOverWeakTls) { run_row("opportunistic", mx_kind::weak); }
TEST_F(Policy, ForcedGoodTlsDeliversOverTls) { run_row("forced", mx_kind::good); }
TEST_F(Policy, ForcedNoStartTlsDefers) { run_row("forced", mx_kind::no_starttls); }
TEST_F(Policy, ForcedBrokenTlsDefersWithoutPlaintextRetry) { run_row("forced", mx_kind::broken); }
TEST_F(Policy, ForcedWeakCipherDefers) { run_row("forced", mx_kind::weak); }
TEST_F(Policy, ExclusiveGoodTlsDeliversOverTls) { run_row("exclusive", mx_kind::good); }
TEST_F(Policy, ExclusiveNoStartTlsDrops) { run_row("exclusive", mx_kind::no_starttls); }
TEST_F(Policy, ExclusiveBrokenTlsDrops) { run_row("exclusive", mx_kind::broken); }
TEST_F(Policy, ExclusiveWeakCipherDrops) { run_row("exclusive", mx_kind::weak); }

TEST_F(Policy, ExclusiveWithNotifySenderSendsADsn) {
  ASSERT_TRUE(start_dns("dest.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx(mx_options(mx_kind::no_starttls, "127.0.0.2"));
  ASSERT_TRUE(mx);
  fake_mx* home = start_home();
  ASSERT_TRUE(home);
  relay* r = start_relay(policy_toml("dest.test", "exclusive", "notify_sender = true\n"));
  ASSERT_TRUE(r);
  std::string secret = unique("dropped-body");
  std::string qid = submit(*r, "alice@sender.test", {"bob@dest.test"}, simple_body("promo", secret));
  ASSERT_FALSE(qid.empty());

  ASSERT_TRUE(home->wait_messages(1, 20s)) << dump_audit(*r) << r->log();
  auto dsn = home->messages().at(0);
  EXPECT_EQ(dsn.mail_from, "");
  EXPECT_EQ(dsn.rcpts, std::vector<std::string>{"alice@sender.test"});
  EXPECT_TRUE(contains(dsn.data, "Final-Recipient: rfc822; bob@dest.test")) << dsn.data;
  EXPECT_TRUE(contains(dsn.data, "Action: failed")) << dsn.data;
  EXPECT_TRUE(contains(dsn.data, "Status: 5.7.10")) << dsn.data;
  EXPECT_TRUE(contains(dsn.data, "starttls-not-offered")) << dsn.data;
  EXPECT_TRUE(contains(dsn.data, "Subject: promo")) << dsn.data;
  EXPECT_FALSE(contains(dsn.data, secret)) << dsn.data;
  expect_no_mail_at_all(*mx);

  auto lines = audit_of(*r, qid);
  ASSERT_EQ(lines.size(), 1u) << dump_audit(*r);
  expect_line(lines[0], "exclusive", "config");
  EXPECT_EQ(lines[0].outcome, "dropped") << lines[0].raw;
  EXPECT_EQ(lines[0].reason, "starttls-not-offered") << lines[0].raw;
  auto dsn_lines = wait_audit(*r, 1, [](const audit_line& a) { return a.kind == "dsn"; });
  ASSERT_EQ(dsn_lines.size(), 1u) << dump_audit(*r);
  EXPECT_EQ(dsn_lines[0].rcpt, "alice@sender.test");
  EXPECT_EQ(dsn_lines[0].outcome, "delivered") << dsn_lines[0].raw;
  std::string raw;
  EXPECT_TRUE(wait_queue(*r, [](const std::set<std::string>& ids) { return ids.empty(); }, 10s, &raw)) << raw;
}

// ------------------------------------------------------------------ one misbehaviour each

TEST_F(Policy, StartTls454IsRefusedUnderForcedAndPlaintextUnderOpportunistic) {
  // One MX answering 454 to STARTTLS, two domains: forced.test (forced), open.test (default).
  ASSERT_TRUE(start_dns(
      "forced.test MX 10 mx1.mx.test\nopen.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .starttls_reply = "454 4.7.0 TLS not available"});
  ASSERT_TRUE(mx);
  relay* r = start_relay(policy_toml("forced.test", "forced"));
  ASSERT_TRUE(r);

  std::string q1 = submit(*r, "alice@sender.test", {"bob@forced.test"}, simple_body("454", "forced"));
  ASSERT_FALSE(q1.empty());
  auto lines = wait_audit(*r, 1, [&](const audit_line& a) { return attempt_line(a, q1); });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(*r);
  expect_line(lines[0], "forced", "config");
  EXPECT_EQ(lines[0].outcome, "deferred") << lines[0].raw;
  EXPECT_EQ(lines[0].reason, "starttls-refused") << lines[0].raw;
  EXPECT_FALSE(lines[0].tls);
  ASSERT_TRUE(mx->wait_sessions(1, 10s));
  expect_no_mail_at_all(*mx);
  for (const auto& s : mx->sessions()) {
    // After the 454, nothing but QUIT.
    SCOPED_TRACE(commands_of(s));
    auto it = std::find(s.commands.begin(), s.commands.end(), "STARTTLS");
    ASSERT_NE(it, s.commands.end());
    ASSERT_EQ(s.commands.end() - it, 2);
    EXPECT_EQ(*(it + 1), "QUIT");
  }
  size_t forced_sessions = mx->sessions().size();

  // The same MX under opportunistic: delivered in the clear, and the audit says why.
  std::string q2 = submit(*r, "alice@sender.test", {"carol@open.test"}, simple_body("454", "open"));
  ASSERT_FALSE(q2.empty());
  auto open = wait_audit(*r, 1, [&](const audit_line& a) { return attempt_line(a, q2); });
  ASSERT_EQ(open.size(), 1u) << dump_audit(*r);
  expect_line(open[0], "opportunistic", "default");
  EXPECT_EQ(open[0].outcome, "delivered") << open[0].raw;
  EXPECT_EQ(open[0].reason, "starttls-refused") << open[0].raw;
  ASSERT_TRUE(mx->wait_messages(1, 10s));
  auto msgs = mx->messages();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].rcpts, std::vector<std::string>{"carol@open.test"});
  EXPECT_FALSE(msgs[0].tls);
  EXPECT_GE(forced_sessions, 1u);
}

TEST_F(Policy, Tls11OnlyIsOldProtocolUnderForced) {
  ASSERT_TRUE(start_dns("old.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .tls_min = "1.1", .tls_max = "1.1"});
  ASSERT_TRUE(mx);
  relay* r = start_relay(policy_toml("old.test", "forced", "min_version = \"1.2\"\n"));
  ASSERT_TRUE(r);
  std::string qid = submit(*r, "alice@sender.test", {"bob@old.test"}, simple_body("old", "tls 1.1"));
  ASSERT_FALSE(qid.empty());
  auto lines = wait_audit(*r, 1, [&](const audit_line& a) { return attempt_line(a, qid); });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(*r) << r->log();
  const auto& a = lines[0];
  expect_line(a, "forced", "config");
  SCOPED_TRACE(a.raw);
  EXPECT_EQ(a.outcome, "deferred");
  EXPECT_EQ(a.reason, "old-protocol");
  EXPECT_TRUE(a.tls);
  EXPECT_EQ(a.tls_version, "TLSv1.1");
  ASSERT_TRUE(mx->wait_sessions(1, 10s));
  expect_no_mail_at_all(*mx);
  auto s = mx->sessions().at(0);
  EXPECT_TRUE(s.tls);
  EXPECT_EQ(s.tls_version, "TLSv1.1");
  EXPECT_TRUE(has_command(s, "TLS QUIT")) << commands_of(s);
}

TEST_F(Policy, Tls10OnlyIsRefusedUnderForced) {
  // Debian's wolfSSL has no TLS 1.0 client: the handshake fails before a version is
  // agreed. Either way (handshake-failed or old-protocol) nothing goes out.
  ASSERT_TRUE(start_dns("older.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .tls_min = "1.0", .tls_max = "1.0"});
  ASSERT_TRUE(mx);
  relay* r = start_relay(policy_toml("older.test", "forced"));
  ASSERT_TRUE(r);
  std::string qid = submit(*r, "alice@sender.test", {"bob@older.test"}, simple_body("older", "tls 1.0"));
  ASSERT_FALSE(qid.empty());
  auto lines = wait_audit(*r, 2, [&](const audit_line& a) { return attempt_line(a, qid); });
  ASSERT_GE(lines.size(), 2u) << dump_audit(*r) << r->log();
  for (const auto& a : lines) {
    expect_line(a, "forced", "config");
    EXPECT_EQ(a.outcome, "deferred") << a.raw;
    EXPECT_TRUE(a.reason == "handshake-failed" || a.reason == "old-protocol") << a.raw;
  }
  ASSERT_TRUE(mx->wait_sessions(2, 10s));
  expect_no_mail_at_all(*mx);
  for (const auto& s : mx->sessions()) EXPECT_TRUE(has_command(s, "STARTTLS")) << commands_of(s);
}

TEST_F(Policy, ThreeDesIsRatedAt112BitsAndRefused) {
  // The same 3DES-only MX for two forced domains: the default floor (128) refuses it; a
  // policy that lowers min_cipher_bits to 112 takes it.
  ASSERT_TRUE(start_dns("des.test MX 10 mx1.mx.test\nlow.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx(mx_options(mx_kind::weak, "127.0.0.2"));
  ASSERT_TRUE(mx);
  relay* r = start_relay(policy_toml("des.test", "forced") +
                         policy_toml("low.test", "forced", "min_cipher_bits = 112\n"));
  ASSERT_TRUE(r);
  std::string q1 = submit(*r, "alice@sender.test", {"bob@des.test"}, simple_body("des", "refused"));
  ASSERT_FALSE(q1.empty());
  auto lines = wait_audit(*r, 1, [&](const audit_line& a) { return attempt_line(a, q1); });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(*r) << r->log();
  expect_line(lines[0], "forced", "config");
  EXPECT_EQ(lines[0].outcome, "deferred") << lines[0].raw;
  EXPECT_EQ(lines[0].reason, "weak-cipher") << lines[0].raw;
  EXPECT_EQ(lines[0].cipher_bits, 112) << lines[0].raw;   // not the 192 wolfSSL reports
  ASSERT_TRUE(mx->wait_sessions(1, 10s));
  EXPECT_TRUE(mx->messages().empty());

  std::string q2 = submit(*r, "alice@sender.test", {"carol@low.test"}, simple_body("des", "accepted"));
  ASSERT_FALSE(q2.empty());
  auto ok = wait_audit(*r, 1, [&](const audit_line& a) { return a.queue_id == q2 && a.outcome == "delivered"; });
  ASSERT_EQ(ok.size(), 1u) << dump_audit(*r);
  expect_line(ok[0], "forced", "config");
  EXPECT_EQ(ok[0].cipher_bits, 112) << ok[0].raw;
  ASSERT_TRUE(mx->wait_messages(1, 10s));
  auto m = mx->messages().at(0);
  EXPECT_EQ(m.rcpts, std::vector<std::string>{"carol@low.test"});   // never bob@des.test
  EXPECT_TRUE(m.tls);
  EXPECT_EQ(m.cipher_bits, 112);
  expect_nothing_in_clear(*mx);
}

// verify = "ca" against one certificate: `reason` empty means it must verify and deliver.
void verify_ca_case(fake_mx* mx, relay* r, const std::string& reason) {
  std::string qid = submit(*r, "alice@sender.test", {"bob@vca.test"}, simple_body("ca", "verify"));
  ASSERT_FALSE(qid.empty());
  auto lines = wait_audit(*r, 1, [&](const audit_line& a) { return attempt_line(a, qid); });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(*r) << r->log();
  const auto& a = lines[0];
  expect_line(a, "forced", "config");
  SCOPED_TRACE(a.raw);
  EXPECT_TRUE(a.tls);
  if (reason.empty()) {
    EXPECT_EQ(a.outcome, "delivered");
    EXPECT_EQ(a.cert, "verified");
    EXPECT_FALSE(a.reason);
    ASSERT_TRUE(mx->wait_messages(1, 10s));
    expect_nothing_in_clear(*mx);
  } else {
    EXPECT_EQ(a.outcome, "deferred");
    EXPECT_EQ(a.cert, "invalid");
    EXPECT_EQ(a.reason, reason);
    ASSERT_TRUE(mx->wait_sessions(1, 10s));
    expect_no_mail_at_all(*mx);
    for (const auto& s : mx->sessions()) EXPECT_TRUE(has_command(s, "TLS QUIT")) << commands_of(s);
  }
}

#define SR_VERIFY_CA_TEST(NAME, CERT, REASON)                                                  \
  TEST_F(Policy, NAME) {                                                                       \
    ASSERT_TRUE(start_dns("vca.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n"));         \
    fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .cert = CERT});                           \
    ASSERT_TRUE(mx);                                                                           \
    relay* r = start_relay(policy_toml("vca.test", "forced", "verify = \"ca\"\n"));           \
    ASSERT_TRUE(r);                                                                            \
    verify_ca_case(mx, r, REASON);                                                              \
  }
SR_VERIFY_CA_TEST(VerifyCaRefusesAnExpiredCertificate, "expired", "cert-expired")
SR_VERIFY_CA_TEST(VerifyCaRefusesASelfSignedCertificate, "selfsigned", "cert-untrusted")
SR_VERIFY_CA_TEST(VerifyCaRefusesAWrongNameCertificate, "wrongname", "cert-name-mismatch")
SR_VERIFY_CA_TEST(VerifyCaDeliversWithAGoodCertificate, "server", "")
#undef SR_VERIFY_CA_TEST

TEST_F(Policy, VerifyNoneTakesASelfSignedCertificateForEncryptionOnly) {
  ASSERT_TRUE(start_dns("enc.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .cert = "selfsigned"});
  ASSERT_TRUE(mx);
  relay* r = start_relay(policy_toml("enc.test", "forced", "verify = \"none\"\n"));
  ASSERT_TRUE(r);
  std::string qid = submit(*r, "alice@sender.test", {"bob@enc.test"}, simple_body("enc", "encrypt only"));
  ASSERT_FALSE(qid.empty());
  auto lines = wait_audit(*r, 1, [&](const audit_line& a) { return attempt_line(a, qid); });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(*r) << r->log();
  const auto& a = lines[0];
  expect_line(a, "forced", "config");
  SCOPED_TRACE(a.raw);
  EXPECT_EQ(a.outcome, "delivered");
  EXPECT_TRUE(a.tls);
  EXPECT_EQ(a.cert, "invalid");              // checked and recorded, not enforced
  EXPECT_EQ(a.reason, "cert-untrusted");
  ASSERT_TRUE(mx->wait_messages(1, 10s));
  EXPECT_TRUE(mx->messages().at(0).tls);
  expect_nothing_in_clear(*mx);
}

TEST_F(Policy, StartTlsStrippingPeerNeverGetsPlaintextUnderForced) {
  // STARTTLS on the first connection only (a downgrade by a man in the middle afterwards).
  ASSERT_TRUE(start_dns("strip.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .strip_starttls_after = 1});
  ASSERT_TRUE(mx);
  // One message per connection, so the second message needs a second connection.
  relay* r = start_relay(policy_toml("strip.test", "forced"), "messages_per_conn = 1\n");
  ASSERT_TRUE(r);
  std::string q1 = submit(*r, "alice@sender.test", {"first@strip.test"}, simple_body("strip", "first"));
  ASSERT_FALSE(q1.empty());
  auto first = wait_audit(*r, 1, [&](const audit_line& a) { return attempt_line(a, q1); });
  ASSERT_EQ(first.size(), 1u) << dump_audit(*r) << r->log();
  EXPECT_EQ(first[0].outcome, "delivered") << first[0].raw;
  EXPECT_TRUE(first[0].tls) << first[0].raw;
  ASSERT_TRUE(mx->wait_sessions(1, 10s));   // that connection is over

  std::string q2 = submit(*r, "alice@sender.test", {"second@strip.test"}, simple_body("strip", "second"));
  ASSERT_FALSE(q2.empty());
  auto second = wait_audit(*r, 2, [&](const audit_line& a) { return attempt_line(a, q2); });
  ASSERT_GE(second.size(), 2u) << dump_audit(*r) << r->log();
  for (const auto& a : second) {
    expect_line(a, "forced", "config");
    EXPECT_EQ(a.outcome, "deferred") << a.raw;
    EXPECT_EQ(a.reason, "starttls-not-offered") << a.raw;
  }
  auto msgs = mx->messages();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].rcpts, std::vector<std::string>{"first@strip.test"});
  EXPECT_TRUE(msgs[0].tls);
  ASSERT_TRUE(mx->wait_sessions(2, 10s));
  expect_nothing_in_clear(*mx);
  auto ss = mx->sessions();
  EXPECT_TRUE(ss[0].starttls_offered);
  for (size_t i = 1; i < ss.size(); ++i) {
    SCOPED_TRACE(commands_of(ss[i]));
    EXPECT_FALSE(ss[i].starttls_offered);
    EXPECT_TRUE(has_command(ss[i], "QUIT"));
  }
}

TEST_F(Policy, FirstMxUnderTheFloorSecondMxDelivers) {
  ASSERT_TRUE(start_dns(
      "two.test MX 10 mx1.mx.test\ntwo.test MX 20 mx2.mx.test\n"
      "mx1.mx.test A 127.0.0.2\nmx2.mx.test A 127.0.0.3\n"));
  fake_mx* old = start_mx({.hosts = {"127.0.0.2"}, .tls_min = "1.1", .tls_max = "1.1"});
  ASSERT_TRUE(old);
  fake_mx* good = start_mx({.hosts = {"127.0.0.3"}});
  ASSERT_TRUE(good);
  relay* r = start_relay(policy_toml("two.test", "forced"));
  ASSERT_TRUE(r);
  std::string qid = submit(*r, "alice@sender.test", {"bob@two.test"}, simple_body("two", "second mx"));
  ASSERT_FALSE(qid.empty());
  ASSERT_TRUE(good->wait_messages(1, 20s)) << dump_audit(*r) << r->log();
  EXPECT_TRUE(good->messages().at(0).tls);
  auto lines = wait_audit(*r, 1, [&](const audit_line& a) { return attempt_line(a, qid); });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(*r);
  expect_line(lines[0], "forced", "config");
  EXPECT_EQ(lines[0].outcome, "delivered") << lines[0].raw;
  EXPECT_EQ(lines[0].mx, "mx2.mx.test") << lines[0].raw;
  EXPECT_EQ(lines[0].attempt, 1) << lines[0].raw;
  ASSERT_TRUE(old->wait_sessions(1, 10s));
  expect_no_mail_at_all(*old);
  auto s = old->sessions().at(0);
  EXPECT_EQ(s.tls_version, "TLSv1.1");
  ASSERT_FALSE(s.commands.empty());
  EXPECT_EQ(s.commands.back(), "TLS QUIT") << commands_of(s);
  expect_nothing_in_clear(*good);
}

TEST_F(Policy, SuffixPoliciesMostSpecificWins) {
  // One MX without STARTTLS for every domain: opportunistic delivers in the clear, forced
  // defers, exclusive drops, so the outcome shows which policy matched.
  ASSERT_TRUE(start_dns(
      "bank.test MX 10 plain.mx.test\n"
      "mail.bank.test MX 10 plain.mx.test\n"
      "open.bank.test MX 10 plain.mx.test\n"
      "x.eu.bank.test MX 10 plain.mx.test\n"
      "plain.mx.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx(mx_options(mx_kind::no_starttls, "127.0.0.2"));
  ASSERT_TRUE(mx);
  relay* r = start_relay(policy_toml(".bank.test", "forced") +
                         policy_toml("open.bank.test", "opportunistic") +   // exact beats suffix
                         policy_toml(".eu.bank.test", "exclusive"));        // longer suffix wins
  ASSERT_TRUE(r);
  struct expectation {
    std::string rcpt, policy, source, outcome;
  };
  std::vector<expectation> want = {
      {"a@mail.bank.test", "forced", "config", "deferred"},
      {"b@bank.test", "opportunistic", "default", "delivered"},   // ".bank.test" is not bank.test
      {"c@open.bank.test", "opportunistic", "config", "delivered"},
      {"d@x.eu.bank.test", "exclusive", "config", "dropped"},
  };
  std::map<std::string, std::string> qids;
  for (const auto& w : want) {
    std::string qid = submit(*r, "alice@sender.test", {w.rcpt}, simple_body("suffix", w.rcpt));
    ASSERT_FALSE(qid.empty());
    qids[w.rcpt] = qid;
  }
  for (const auto& w : want) {
    SCOPED_TRACE(w.rcpt);
    auto lines = wait_audit(*r, 1, [&](const audit_line& a) { return a.queue_id == qids[w.rcpt]; });
    ASSERT_GE(lines.size(), 1u) << dump_audit(*r);
    expect_line(lines[0], w.policy, w.source);
    EXPECT_EQ(lines[0].outcome, w.outcome) << lines[0].raw;
    if (w.outcome != "delivered") {
      EXPECT_EQ(lines[0].reason, "starttls-not-offered") << lines[0].raw;
    }
  }
  ASSERT_TRUE(mx->wait_messages(2, 10s));
  std::set<std::string> got;
  for (const auto& m : mx->messages()) got.insert(m.rcpts.begin(), m.rcpts.end());
  EXPECT_EQ(got, (std::set<std::string>{"b@bank.test", "c@open.bank.test"}));
  for (const auto& s : mx->sessions()) {
    // Only sessions that carried an opportunistic domain may have reached MAIL.
    for (const auto& c : s.commands)
      if (c.rfind("RCPT", 0) == 0) {
        EXPECT_TRUE(contains(c, "@bank.test") || contains(c, "@open.bank.test")) << c;
      }
  }
}

TEST_F(Policy, FallbackAfterKeepsRetryingOverTlsFirst) {
  // exclusive with fallback_after = "2s": the first TLS failures are ordinary deferrals
  // (the audit says "deferred", not "dropped"); once 2 s have passed since the message
  // arrived, the next TLS failure drops it. forced with fallback_after = "10s": every
  // failure within the test is an ordinary retry, so the relay never logs a hand-off to
  // the fallback for it, while a forced domain with the default "0s" is handed off at once.
  // (Until the sidecar exists the hand-off defers too, so the audit line alone cannot tell
  // the two apart under forced; the relay log line of the hand-off can.)
  ASSERT_TRUE(start_dns(
      "later.test MX 10 plain.mx.test\nslow.test MX 10 plain.mx.test\nnow.test MX 10 plain.mx.test\n"
      "plain.mx.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx(mx_options(mx_kind::no_starttls, "127.0.0.2"));
  ASSERT_TRUE(mx);
  relay* r = start_relay(policy_toml("later.test", "exclusive", "fallback_after = \"2s\"\n") +
                         policy_toml("slow.test", "forced", "fallback_after = \"10s\"\n") +
                         policy_toml("now.test", "forced"));
  ASSERT_TRUE(r);
  std::string qx = submit(*r, "alice@sender.test", {"bob@later.test"}, simple_body("later", "x"));
  std::string qs = submit(*r, "alice@sender.test", {"bob@slow.test"}, simple_body("slow", "s"));
  std::string qn = submit(*r, "alice@sender.test", {"bob@now.test"}, simple_body("now", "n"));
  ASSERT_FALSE(qx.empty());
  ASSERT_FALSE(qs.empty());
  ASSERT_FALSE(qn.empty());

  auto dropped = wait_audit(*r, 1, [&](const audit_line& a) { return a.queue_id == qx && a.outcome == "dropped"; });
  ASSERT_EQ(dropped.size(), 1u) << dump_audit(*r) << r->log();
  auto x = audit_of(*r, qx);
  ASSERT_GE(x.size(), 2u) << dump_audit(*r);
  EXPECT_EQ(x[0].attempt, 1);
  EXPECT_EQ(x[0].outcome, "deferred") << x[0].raw;   // not dropped at once
  EXPECT_EQ(x[0].reason, "starttls-not-offered") << x[0].raw;
  for (size_t i = 0; i + 1 < x.size(); ++i) EXPECT_EQ(x[i].outcome, "deferred") << x[i].raw;
  EXPECT_EQ(x.back().outcome, "dropped") << x.back().raw;
  EXPECT_EQ(x.back().attempt, int(x.size()));
  for (const auto& a : x) expect_line(a, "exclusive", "config");

  auto slow = wait_audit(*r, 2, [&](const audit_line& a) { return attempt_line(a, qs); });
  ASSERT_GE(slow.size(), 2u) << dump_audit(*r);
  for (const auto& a : slow) {
    expect_line(a, "forced", "config");
    EXPECT_EQ(a.outcome, "deferred") << a.raw;
    EXPECT_EQ(a.reason, "starttls-not-offered") << a.raw;
  }
  ASSERT_TRUE(wait_log(*r, [&](const std::string& log) { return contains(log, qn + ": handed to the fallback"); }))
      << r->log();
  std::string log = r->log();
  EXPECT_FALSE(contains(log, qs + ": handed to the fallback")) << log;
  expect_no_mail_at_all(*mx);
}

TEST_F(Policy, ForcedWithoutStartTlsIsDeferredFallbackUnavailableOncePerRetry) {
  // A forced domain whose only MX has no STARTTLS: every retry hands the message to the
  // fallback, which does not exist yet. Each attempt writes, per recipient, one record
  // for the attempt (deferred, starttls-not-offered) and one for the hand-off (deferred,
  // fallback-unavailable): once per retry, not once per message per tick. Nothing of the
  // message reaches the MX, in plaintext or otherwise. (Before: the hand-off's answer was
  // ignored and never audited.)
  ASSERT_TRUE(start_dns("sealed.test MX 10 plain.mx.test\nplain.mx.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx(mx_options(mx_kind::no_starttls, "127.0.0.2"));
  ASSERT_TRUE(mx);
  relay* r = start_relay(policy_toml("sealed.test", "forced"));
  ASSERT_TRUE(r);
  std::string qid = submit(*r, "alice@sender.test", {"a@sealed.test", "b@sealed.test"},
                           simple_body("sealed", "phi"));
  ASSERT_FALSE(qid.empty());
  // Three retries (1 s apart): 2 recipients x 3 attempts x (attempt + hand-off) records.
  auto three = wait_audit(*r, 2, [&](const audit_line& a) {
    return a.queue_id == qid && a.attempt == 3 && a.reason == "fallback-unavailable";
  });
  ASSERT_EQ(three.size(), 2u) << dump_audit(*r) << r->log();
  auto lines = audit_of(*r, qid);
  std::map<std::pair<std::string, int>, int> handoffs, attempts;  // (rcpt, attempt) -> records
  for (const auto& a : lines) {
    SCOPED_TRACE(a.raw);
    expect_line(a, "forced", "config");
    EXPECT_EQ(a.outcome, "deferred");
    EXPECT_FALSE(a.tls);
    if (a.reason == "fallback-unavailable") {
      ++handoffs[{a.rcpt, a.attempt}];
    } else {
      EXPECT_EQ(a.reason, "starttls-not-offered");
      EXPECT_EQ(a.mx, "plain.mx.test");
      ++attempts[{a.rcpt, a.attempt}];
    }
  }
  for (const char* rcpt : {"a@sealed.test", "b@sealed.test"})
    for (int n = 1; n <= 3; ++n) {
      EXPECT_EQ((handoffs[{rcpt, n}]), 1) << rcpt << " attempt " << n << "\n" << dump_audit(*r);
      EXPECT_EQ((attempts[{rcpt, n}]), 1) << rcpt << " attempt " << n << "\n" << dump_audit(*r);
    }
  // A record of attempt 4 may be on its way; nothing beyond one hand-off per attempt.
  for (const auto& [key, n] : handoffs) EXPECT_EQ(n, 1) << key.first << " attempt " << key.second;
  EXPECT_LE(handoffs.size(), attempts.size() + 2) << dump_audit(*r);
  ASSERT_TRUE(mx->wait_sessions(3, 10s));
  expect_no_mail_at_all(*mx);
  std::string raw;
  EXPECT_TRUE(wait_queue(*r, [&](const std::set<std::string>& ids) { return ids.count(qid) == 1; }, 10s, &raw))
      << raw;
}

// ---------------------------------------------------------------------------- SIGHUP

// Replace `from` by `to` in the relay's config file, atomically (rename), so a reload
// never reads a half-written file.
void rewrite_config(const relay& r, const std::string& from, const std::string& to) {
  std::ifstream in(r.config_path());
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  auto at = text.find(from);
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, from.size(), to);
  fs::path tmp = r.config_path().string() + ".new";
  std::ofstream(tmp) << text;
  fs::rename(tmp, r.config_path());
}

size_t count_of(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

TEST_F(Policy, SighupSwapsThePolicyUnderLoadWithoutLosingAMessage) {
  // swap.test's MX has no STARTTLS. A stream of messages runs while the policy goes from
  // opportunistic (delivered in the clear) to forced (deferred, kept) and, once the stream
  // is over, back to opportunistic: every accepted message is then delivered exactly once.
  ASSERT_TRUE(start_dns("swap.test MX 10 plain.mx.test\nplain.mx.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx(mx_options(mx_kind::no_starttls, "127.0.0.2"));
  ASSERT_TRUE(mx);
  const std::string opp = "domain = \"swap.test\"\ntls = \"opportunistic\"\n";
  const std::string forced = "domain = \"swap.test\"\ntls = \"forced\"\n";
  relay* r = start_relay("[[policy]]\n" + opp, "max_queue_age = \"120s\"\n");
  ASSERT_TRUE(r);

  struct sent {
    std::string qid, rcpt;
    bool after_swap_seen = false;   // sent once an attempt under forced was on record
  };
  std::mutex mu;
  std::vector<sent> accepted;
  std::vector<std::string> failures;
  std::atomic<bool> swap_seen{false}, stop{false};
  std::atomic<int> count{0};
  constexpr int threads = 4, max_total = 2000, after_swap = 40;   // max_total: a bound, not a goal
  auto client = [&](int t) {
    int i = 0;
    while (!stop.load() && count.load() < max_total) {
      // A fresh connection every 10 messages: accepts keep happening during the swap.
      raw_client c;
      if (!open_session(c, r->port())) {
        std::lock_guard g(mu);
        failures.push_back("thread " + std::to_string(t) + ": no session");
        return;
      }
      for (int k = 0; k < 10 && !stop.load() && count.load() < max_total; ++k, ++i) {
        std::string rcpt = std::to_string(t);   // appended: GCC 12 -Wrestrict misfires on "u" + ...
        rcpt.insert(0, 1, 'u');
        rcpt += '-';
        rcpt += std::to_string(i);
        rcpt += "@swap.test";
        bool seen = swap_seen.load();
        auto reply = send_message(c, "alice@sender.test", {rcpt}, dot_stuff(simple_body("swap", rcpt)));
        std::lock_guard g(mu);
        if (!reply || reply_code(*reply) != 250 || !queued_id(*reply)) {
          failures.push_back(rcpt + ": " + (reply ? *reply : "no reply (connection dropped?)"));
          return;
        }
        accepted.push_back({*queued_id(*reply), rcpt, seen});
        ++count;
      }
      c.command("QUIT", 5s);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(client, t);

  // Mid-stream: forced, then wait until an attempt under forced is on record.
  auto until = clock::now() + 20s;
  while (count.load() < 100 && clock::now() < until) std::this_thread::sleep_for(10ms);
  rewrite_config(*r, opp, forced);
  int at_hup = count.load();
  r->signal(SIGHUP);
  bool reloaded = wait_log(*r, [](const std::string& l) { return count_of(l, "SIGHUP: policy table reloaded") >= 1; });
  auto forced_lines = wait_audit(*r, 1, [](const audit_line& a) { return a.policy == "forced"; }, 20s);
  swap_seen = true;
  int at_swap = count.load();
  until = clock::now() + 20s;
  while (count.load() < std::min(max_total, at_swap + after_swap) && clock::now() < until)
    std::this_thread::sleep_for(10ms);
  stop = true;
  for (auto& th : pool) th.join();
  ASSERT_TRUE(reloaded) << r->log();
  ASSERT_FALSE(forced_lines.empty()) << dump_audit(*r) << r->log();
  ASSERT_TRUE(failures.empty()) << failures.size() << " failures, first: " << failures[0];
  ASSERT_GE(accepted.size(), 100u);

  // Every accepted message is on record; none was delivered under forced (the MX has no
  // STARTTLS); every message sent after the swap was seen stays queued under forced.
  // (The audit is read once per poll and indexed: forced messages add a line a second each.)
  auto by_qid = [&] {
    std::map<std::string, std::vector<audit_line>> m;
    for (auto& a : read_audit(audit_file(*r))) m[a.queue_id].push_back(std::move(a));
    return m;
  };
  std::map<std::string, std::vector<audit_line>> audit;
  until = clock::now() + 30s;
  for (;;) {
    audit = by_qid();
    bool all = true;
    for (const auto& s : accepted) {
      bool done = false;
      for (const auto& a : audit[s.qid])
        done = done || a.outcome == "delivered" || (a.outcome == "deferred" && a.policy == "forced");
      all = all && done;
    }
    if (all || clock::now() >= until) break;
    std::this_thread::sleep_for(200ms);   // polling the audit file
  }
  std::set<std::string> delivered_before, queued_before;
  size_t after_count = 0;
  for (const auto& s : accepted) {
    const auto& lines = audit[s.qid];
    ASSERT_FALSE(lines.empty()) << s.qid << " " << s.rcpt << " has no audit line";
    bool delivered = false;
    for (const auto& a : lines) {
      if (a.outcome == "delivered") {
        EXPECT_EQ(a.policy, "opportunistic") << a.raw;
        delivered = true;
      } else {
        EXPECT_EQ(a.outcome, "deferred") << a.raw;
        EXPECT_EQ(a.policy, "forced") << a.raw;
        EXPECT_TRUE(a.reason == "starttls-not-offered" || a.reason == "fallback-unavailable") << a.raw;
      }
    }
    (delivered ? delivered_before : queued_before).insert(s.qid);
    if (s.after_swap_seen) {
      ++after_count;
      EXPECT_FALSE(delivered) << s.rcpt << " was sent after the swap took effect:\n" << lines.back().raw;
    }
  }
  EXPECT_GE(after_count, 1u) << "accepted " << accepted.size() << ", at the forced line " << at_swap
                             << ", at SIGHUP " << at_hup;
  EXPECT_FALSE(delivered_before.empty());
  EXPECT_FALSE(queued_before.empty());
  std::string raw;
  ASSERT_TRUE(wait_queue(*r, [&](const std::set<std::string>& ids) { return ids == queued_before; }, 20s, &raw))
      << queued_before.size() << " expected queued; " << raw;

  // Back to opportunistic: the queued messages go out under the new policy.
  rewrite_config(*r, forced, opp);
  r->signal(SIGHUP);
  ASSERT_TRUE(wait_log(*r, [](const std::string& l) { return count_of(l, "SIGHUP: policy table reloaded") >= 2; }))
      << r->log();
  ASSERT_TRUE(mx->wait_messages(accepted.size(), 60s))
      << mx->messages().size() << " of " << accepted.size() << "\n" << r->log();
  EXPECT_TRUE(wait_queue(*r, [](const std::set<std::string>& ids) { return ids.empty(); }, 20s, &raw)) << raw;
  std::multiset<std::string> got;
  for (const auto& m : mx->messages()) got.insert(m.rcpts.begin(), m.rcpts.end());
  std::multiset<std::string> want;
  for (const auto& s : accepted) want.insert(s.rcpt);
  EXPECT_EQ(got, want);   // each exactly once
  // The MX records a message before its 250 reaches the relay: wait for the audit too.
  until = clock::now() + 20s;
  for (;;) {
    audit = by_qid();
    bool all = true;
    for (const auto& qid : queued_before) all = all && !audit[qid].empty() && audit[qid].back().outcome == "delivered";
    if (all || clock::now() >= until) break;
    std::this_thread::sleep_for(100ms);   // polling the audit file
  }
  for (const auto& qid : queued_before) {
    const auto& lines = audit[qid];
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.back().outcome, "delivered") << lines.back().raw;
    EXPECT_EQ(lines.back().policy, "opportunistic") << lines.back().raw;
  }
}

TEST_F(Policy, SighupDuringAnAttemptAppliesTheNewPolicyAtGiveUp) {
  // drop.test starts exclusive; its MX has no STARTTLS and greets only after 1.5 s, so the
  // first attempt is still waiting when the policy becomes opportunistic (SIGHUP) and a
  // second message is queued. When that attempt gives up (no STARTTLS: a TLS failure
  // under exclusive), the current policy decides: both messages are delivered in the
  // clear under opportunistic, and neither is dropped. (Before: the give-up applied the
  // policy of the attempt's start and dropped both, the one queued after the reload too.)
  ASSERT_TRUE(start_dns("drop.test MX 10 slow.mx.test\nslow.mx.test A 127.0.0.2\n"));
  fake_mx_options mo = mx_options(mx_kind::no_starttls, "127.0.0.2");
  mo.delays = {"greeting=1.5"};   // under connect_timeout (2 s), which bounds the greeting
  fake_mx* mx = start_mx(mo);
  ASSERT_TRUE(mx);
  const std::string excl = "domain = \"drop.test\"\ntls = \"exclusive\"\n";
  const std::string opp = "domain = \"drop.test\"\ntls = \"opportunistic\"\n";
  relay* r = start_relay("[[policy]]\n" + excl, "max_conns_per_domain = 1\n");
  ASSERT_TRUE(r);
  std::string q1 = submit(*r, "alice@sender.test", {"one@drop.test"}, simple_body("before", "1"));
  ASSERT_FALSE(q1.empty());
  // The attempt under exclusive connects at once and waits 1.5 s for the greeting: the
  // reload happens within that wait (the audit shows it: q1's first record says
  // "opportunistic", never "exclusive").
  std::this_thread::sleep_for(300ms);
  rewrite_config(*r, excl, opp);
  r->signal(SIGHUP);
  ASSERT_TRUE(wait_log(*r, [](const std::string& l) { return contains(l, "SIGHUP: policy table reloaded"); }))
      << r->log();
  std::this_thread::sleep_for(300ms);   // every shard's reader refreshes on its 100 ms tick
  std::string q2 = submit(*r, "alice@sender.test", {"two@drop.test"}, simple_body("after", "2"));
  ASSERT_FALSE(q2.empty());
  ASSERT_TRUE(mx->wait_messages(2, 20s)) << dump_audit(*r) << r->log();
  std::set<std::string> got;
  for (const auto& m : mx->messages()) got.insert(m.rcpts.begin(), m.rcpts.end());
  EXPECT_EQ(got, (std::set<std::string>{"one@drop.test", "two@drop.test"}));
  for (const auto& qid : {q1, q2}) {
    auto done = wait_audit(*r, 1, [&](const audit_line& a) { return a.queue_id == qid && a.outcome == "delivered"; });
    ASSERT_EQ(done.size(), 1u) << dump_audit(*r);
    EXPECT_EQ(done[0].policy, "opportunistic") << done[0].raw;
    for (const auto& a : audit_of(*r, qid)) {
      EXPECT_NE(a.outcome, "dropped") << a.raw;
      EXPECT_EQ(a.policy, "opportunistic") << a.raw;   // nothing decided under the old table
    }
  }
}

TEST_F(Policy, SighupWithABadConfigKeepsTheOldTable) {
  ASSERT_TRUE(start_dns("keep.test MX 10 plain.mx.test\nplain.mx.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx(mx_options(mx_kind::no_starttls, "127.0.0.2"));
  ASSERT_TRUE(mx);
  relay* r = start_relay(policy_toml("keep.test", "forced"));
  ASSERT_TRUE(r);
  // Not a policy: the whole file is refused, the forced table stays.
  rewrite_config(*r, "tls = \"forced\"", "tls = \"sometimes\"");
  r->signal(SIGHUP);
  ASSERT_TRUE(wait_log(*r, [](const std::string& l) { return contains(l, "SIGHUP: keeping the current policy table"); }))
      << r->log();
  EXPECT_FALSE(contains(r->log(), "SIGHUP: policy table reloaded")) << r->log();
  std::string qid = submit(*r, "alice@sender.test", {"bob@keep.test"}, simple_body("keep", "still forced"));
  ASSERT_FALSE(qid.empty());
  auto lines = wait_audit(*r, 1, [&](const audit_line& a) { return attempt_line(a, qid); });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(*r);
  expect_line(lines[0], "forced", "config");
  EXPECT_EQ(lines[0].outcome, "deferred") << lines[0].raw;
  EXPECT_EQ(lines[0].reason, "starttls-not-offered") << lines[0].raw;
  ASSERT_TRUE(mx->wait_sessions(1, 10s));
  expect_no_mail_at_all(*mx);
  EXPECT_TRUE(r->running());
}

}  // namespace
}  // namespace sr::integ
