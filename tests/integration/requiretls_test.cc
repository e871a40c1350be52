// REQUIRETLS end to end (issue 10, items 2 and 5; RFC 8689): Python's smtplib submits over
// STARTTLS with `MAIL FROM:<...> REQUIRETLS` (or a `TLS-Required: No` header) to the real
// relay, which delivers to fake MX hosts on 127.0.0.x under MTA-STS policies served by the
// HTTPS policy host. Checked on what the MX hosts received and on the audit log:
// delivered only to an MX vouched for by MTA-STS that offers REQUIRETLS (and relayed with
// it); bounced 5.7.30 with a DSN that returns nothing of the message otherwise, never
// escrowed even under a forced policy; refused on a plaintext session; kept across a
// restart; TLS-Required: No ignores MTA-STS but never the configured [[policy]].
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <thread>
#include <tuple>

#include "support/world.hh"

namespace sr::integ {
namespace {

namespace fs = std::filesystem;

std::string policy_text(const std::string& mode, const std::string& mx) {
  return "version: STSv1\r\nmode: " + mode + "\r\nmx: " + mx + "\r\nmax_age: 86400\r\n";
}

// dN.sts.test (the policy host's certificate names mta-sts.dN.sts.test) with MX `mx`, and
// an MTA-STS TXT record when `sts`.
std::string domain_zone(const std::string& domain, const std::string& mx, bool sts) {
  std::string z = domain + " MX 10 " + mx + "\nmta-sts." + domain + " A 127.0.0.1\n";
  if (sts) z += "_mta-sts." + domain + " 1 TXT \"v=STSv1; id=1\"\n";
  return z;
}

// mx1 (127.0.0.2) offers REQUIRETLS; mx2 (.3) does not; mx3 (.4) has a certificate for
// another name; mx5 (.6) has no TLS at all. DSNs to the sender go to mx1.
const std::string base_zone =
    "mx1.mx.test A 127.0.0.2\nmx2.mx.test A 127.0.0.3\nmx3.mx.test A 127.0.0.4\n"
    "mx5.mx.test A 127.0.0.6\nsender.test MX 10 mx1.mx.test\n";

const std::string sender = "alice@sender.test";

class RequireTLS : public ::testing::Test, protected world {
 protected:
  RequireTLS() {
    _outbound_defaults = {{"connect_timeout", "\"2s\""}, {"retry", "[\"1s\"]"}, {"max_queue_age", "\"60s\""}};
    listener l;
    l.tls = "starttls";
    _listeners = {l};
  }

  // The HTTPS policy host on 127.0.0.1 serving _policies, and MTA-STS on in the relay.
  bool start_sts() {
    https_host_options o;
    o.hosts = {"127.0.0.1"};
    o.policy_dir = _policies.path().string();
    _https = std::make_unique<https_host>(o);
    if (!_https->start()) {
      ADD_FAILURE() << "https host: " << _https->error() << _https->log();
      return false;
    }
    _mta_sts = "enabled = true\nhttps_port = " + std::to_string(_https->port());
    return true;
  }
  void put_policy(const std::string& domain, const std::string& text) {
    std::ofstream(_policies.path() / (domain + ".txt"), std::ios::trunc) << text;
  }

  // A message to `rcpt` whose body carries `secret` and whose Subject is `subject`.
  static std::string message(const std::string& rcpt, const std::string& secret, const std::string& subject,
                             const std::string& extra_headers = {}) {
    return "From: <" + sender + ">\r\nTo: <" + rcpt + ">\r\nSubject: " + subject + "\r\nMessage-ID: <" +
           unique("rt") + "@sender.test>\r\n" + extra_headers + "\r\n" + secret + "\r\n";
  }

  // Submit over STARTTLS (unless `plain`), with REQUIRETLS on MAIL when `requiretls`.
  std::string submit_py(const std::string& rcpt, const std::string& text, bool requiretls, bool plain = false) {
    return submit_smtplib(*_relay, sender, rcpt, text,
                          requiretls ? std::vector<std::string>{"REQUIRETLS"} : std::vector<std::string>{}, plain);
  }
  // Submit and return the queue id (a test failure when the relay did not queue it).
  std::string queue(const std::string& rcpt, const std::string& text, bool requiretls) {
    std::string out = submit_py(rcpt, text, requiretls);
    auto id = queued_id(out);
    EXPECT_TRUE(id.has_value()) << out;
    return id.value_or("");
  }
  // The first audit line of `qid` with `outcome` (waits); nullopt with a test failure.
  std::optional<audit_line> outcome(const std::string& qid, const std::string& what) {
    auto lines = wait_audit(*_relay, 1, [&](const audit_line& a) { return a.queue_id == qid && a.outcome == what; });
    if (lines.empty()) {
      ADD_FAILURE() << qid << " never " << what << "\n" << dump_audit(*_relay) << _relay->log();
      return std::nullopt;
    }
    return lines[0];
  }
  // Messages at `mx` whose text contains `needle`.
  static size_t received(const fake_mx& mx, const std::string& needle) {
    size_t n = 0;
    for (const auto& m : mx.messages()) n += contains(m.data, needle) ? 1 : 0;
    return n;
  }
  // The DSN at `mx` for `rcpt` (from <> to the sender, naming `rcpt`); waits.
  std::optional<mx_message> dsn_for(const fake_mx& mx, const std::string& rcpt) {
    for (auto until = clock::now() + 20s; clock::now() < until; std::this_thread::sleep_for(100ms))
      for (const auto& m : mx.messages())
        if (m.mail_from.empty() && contains(m.data, "Final-Recipient: rfc822; " + rcpt)) return m;
    ADD_FAILURE() << "no DSN for " << rcpt << "\n" << dump_audit(*_relay);
    return std::nullopt;
  }

  temp_dir _policies;
  std::unique_ptr<https_host> _https;
};

// An MTA-STS domain whose MX offers REQUIRETLS gets the message, relayed with REQUIRETLS
// over verified TLS; one whose MX does not, and one without MTA-STS or DANE, bounce it
// (5.7.30) with a DSN that carries neither its body nor its headers; nothing reaches them.
// On a plaintext session the relay neither offers nor accepts REQUIRETLS.
TEST_F(RequireTLS, DeliveredOnlyToAVouchedMxThatOffersIt) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(base_zone + domain_zone("d1.sts.test", "mx1.mx.test", true) +
                        domain_zone("d2.sts.test", "mx2.mx.test", true) +
                        domain_zone("d3.sts.test", "mx1.mx.test", false)));
  fake_mx* mx1 = start_mx({.hosts = {"127.0.0.2"}, .requiretls = true});
  fake_mx* mx2 = start_mx({.hosts = {"127.0.0.3"}});
  ASSERT_TRUE(mx1 && mx2 && start_sts());
  put_policy("d1.sts.test", policy_text("enforce", "mx1.mx.test"));
  put_policy("d2.sts.test", policy_text("enforce", "mx2.mx.test"));
  ASSERT_TRUE(start_relay({}));

  // Plaintext: not offered, and MAIL ... REQUIRETLS is refused.
  std::string plain = submit_py("bob@d1.sts.test", message("bob@d1.sts.test", "x", "x"), true, true);
  EXPECT_TRUE(contains(plain, "EHLO 0")) << plain;
  EXPECT_TRUE(contains(plain, "MAIL 530 5.7.10")) << plain;
  EXPECT_FALSE(contains(plain, "DATA")) << plain;

  // d1: delivered with REQUIRETLS over verified TLS.
  std::string s1 = unique("secret-d1");
  std::string out = submit_py("bob@d1.sts.test", message("bob@d1.sts.test", s1, "hello"), true);
  EXPECT_TRUE(contains(out, "EHLO 1")) << out;
  auto q1 = queued_id(out);
  ASSERT_TRUE(q1) << out;
  auto d = outcome(*q1, "delivered");
  ASSERT_TRUE(d);
  SCOPED_TRACE(d->raw);
  expect_audit_fields(*d);
  EXPECT_EQ(d->policy_source, "requiretls");
  EXPECT_EQ(d->mx, "mx1.mx.test");
  EXPECT_TRUE(d->tls);
  EXPECT_EQ(d->cert, "verified");
  ASSERT_TRUE(mx1->wait_messages(1, 10s));
  bool seen = false;
  for (const auto& m : mx1->messages()) {
    if (!contains(m.data, s1)) continue;
    seen = true;
    EXPECT_TRUE(m.tls);
    EXPECT_NE(std::find(m.mail_params.begin(), m.mail_params.end(), "REQUIRETLS"), m.mail_params.end())
        << "MAIL parameters: " << ::testing::PrintToString(m.mail_params);
  }
  EXPECT_TRUE(seen);

  // d2: its MX does not offer REQUIRETLS: bounced, nothing sent there.
  std::string s2 = unique("secret-d2"), subj2 = unique("Patient-2");
  std::string q2 = queue("bob@d2.sts.test", message("bob@d2.sts.test", s2, subj2), true);
  auto b2 = outcome(q2, "bounced");
  ASSERT_TRUE(b2);
  EXPECT_EQ(b2->policy_source, "requiretls");
  EXPECT_EQ(b2->reason.value_or(""), "requiretls-not-offered") << b2->raw;
  // d3: no MTA-STS, no DANE: bounced without a connection.
  std::string s3 = unique("secret-d3"), subj3 = unique("Patient-3");
  std::string q3 = queue("bob@d3.sts.test", message("bob@d3.sts.test", s3, subj3), true);
  auto b3 = outcome(q3, "bounced");
  ASSERT_TRUE(b3);
  EXPECT_EQ(b3->policy_source, "requiretls");
  EXPECT_EQ(b3->reason.value_or(""), "requiretls-unverified") << b3->raw;

  // The DSNs: 5.7.30, ordinary mail, nothing of the original but its Message-ID.
  for (auto [rcpt, secret, subject] : {std::tuple{std::string("bob@d2.sts.test"), s2, subj2},
                                       std::tuple{std::string("bob@d3.sts.test"), s3, subj3}}) {
    SCOPED_TRACE(rcpt);
    auto dsn = dsn_for(*mx1, rcpt);
    ASSERT_TRUE(dsn);
    EXPECT_TRUE(contains(dsn->data, "Status: 5.7.30")) << dsn->data;
    EXPECT_FALSE(contains(dsn->data, secret)) << dsn->data;
    EXPECT_FALSE(contains(dsn->data, subject)) << dsn->data;
    EXPECT_FALSE(contains(dsn->data, "text/rfc822-headers")) << dsn->data;
    EXPECT_EQ(std::find(dsn->mail_params.begin(), dsn->mail_params.end(), "REQUIRETLS"), dsn->mail_params.end());
  }
  EXPECT_EQ(received(*mx1, s3), 0u);
  EXPECT_EQ(received(*mx2, s2), 0u);
  // mx2 was asked nothing: STARTTLS, EHLO again, QUIT.
  for (const auto& s : mx2->sessions()) EXPECT_FALSE(contains(commands_of(s), "MAIL")) << commands_of(s);
}

// TLS-Required: No: an MTA-STS enforce domain whose MX certificate does not verify still
// gets the message (opportunistic TLS), where the same message without the header stays
// queued; with REQUIRETLS on MAIL the header is ignored (bounced); and a forced [[policy]]
// still never sends in plaintext.
TEST_F(RequireTLS, TlsRequiredNoIgnoresMtaStsButNeverThePolicy) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(base_zone + domain_zone("d4.sts.test", "mx3.mx.test", true) +
                        "forced.test MX 10 mx5.mx.test\n"));
  fake_mx* mx3 = start_mx({.hosts = {"127.0.0.4"}, .cert = "wrongname", .requiretls = true});
  fake_mx* mx5 = start_mx({.hosts = {"127.0.0.6"}, .cert = "", .no_starttls = true});
  fake_mx* mx1 = start_mx({.hosts = {"127.0.0.2"}});  // sender.test: DSNs
  ASSERT_TRUE(mx3 && mx5 && mx1 && start_sts());
  put_policy("d4.sts.test", policy_text("enforce", "mx3.mx.test"));
  ASSERT_TRUE(start_relay("[[policy]]\ndomain = \"forced.test\"\ntls = \"forced\"\nfallback = [\"escrow\"]\n"));

  const std::string waiver = "TLS-Required: No\r\n";
  std::string s_no = unique("secret-no"), s_ctl = unique("secret-ctl"), s_rt = unique("secret-rt");
  std::string q_ctl = queue("bob@d4.sts.test", message("bob@d4.sts.test", s_ctl, "ctl"), false);
  std::string q_no = queue("bob@d4.sts.test", message("bob@d4.sts.test", s_no, "no", waiver), false);
  std::string q_rt = queue("bob@d4.sts.test", message("bob@d4.sts.test", s_rt, "rt", waiver), true);
  std::string s_forced = unique("secret-forced");
  std::string q_forced = queue("carol@forced.test", message("carol@forced.test", s_forced, "f", waiver), false);

  auto d = outcome(q_no, "delivered");
  ASSERT_TRUE(d);
  SCOPED_TRACE(d->raw);
  EXPECT_TRUE(d->tls);
  EXPECT_EQ(d->cert, "invalid");
  EXPECT_EQ(d->policy, "opportunistic");
  EXPECT_EQ(d->policy_source, "requiretls");
  EXPECT_EQ(d->mx, "mx3.mx.test");
  ASSERT_TRUE(mx3->wait_messages(1, 10s));
  EXPECT_EQ(received(*mx3, s_no), 1u);

  // Without the header MTA-STS holds: deferred for the certificate, never delivered.
  auto c = outcome(q_ctl, "deferred");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->policy_source, "mta-sts") << c->raw;
  EXPECT_EQ(c->reason.value_or(""), "cert-name-mismatch") << c->raw;
  // REQUIRETLS wins over the header: the certificate does not verify, so it bounces.
  auto b = outcome(q_rt, "bounced");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->policy_source, "requiretls") << b->raw;
  EXPECT_EQ(b->reason.value_or(""), "cert-name-mismatch") << b->raw;

  // The forced domain's plaintext-only MX: the policy still applies (no sidecar here: the
  // message stays queued for the fallback), nothing goes out in the clear.
  auto f = outcome(q_forced, "deferred");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->policy, "forced") << f->raw;
  EXPECT_EQ(f->policy_source, "config") << f->raw;
  EXPECT_EQ(received(*mx5, s_forced), 0u);
  for (const auto& s : mx5->sessions()) EXPECT_FALSE(s.plaintext_command("MAIL")) << commands_of(s);
  EXPECT_EQ(received(*mx3, s_ctl), 0u);
  EXPECT_EQ(received(*mx3, s_rt), 0u);
}

// A forced domain whose fallback chain escrows: ordinary mail that cannot get TLS is
// escrowed; REQUIRETLS mail is bounced instead and never reaches the escrow.
TEST_F(RequireTLS, NeverEscrowedEvenUnderAForcedPolicy) {
  ASSERT_NE(_port, 0);
  if (!fs::exists(fs::path(relay_binary()).parent_path() / "sealrelay-fallback"))
    GTEST_SKIP() << "sealrelay-fallback is not built";
  ASSERT_TRUE(start_dns(base_zone + "bank.test MX 10 mx5.mx.test\n"));
  fake_mx* mx5 = start_mx({.hosts = {"127.0.0.6"}, .cert = "", .no_starttls = true});
  fake_mx* mx1 = start_mx({.hosts = {"127.0.0.2"}});  // sender.test: DSNs
  ASSERT_TRUE(mx5 && mx1);
  _fallback = "spawn = true\nportal_listen = \"\"\nportal_url = \"https://portal.test:8443\"\nescrow_expiry = \"1h\"\n";
  ASSERT_TRUE(start_relay("[[policy]]\ndomain = \"bank.test\"\ntls = \"forced\"\nfallback = [\"escrow\"]\n"));
  ASSERT_TRUE(wait_log(*_relay, [](const std::string& l) { return contains(l, "fallback: sidecar link up"); }, 20s))
      << _relay->log();

  std::string s_ctl = unique("secret-ctl"), s_rt = unique("secret-rt"), subj = unique("Patient");
  std::string q_ctl = queue("dora@bank.test", message("dora@bank.test", s_ctl, "ctl"), false);
  std::string q_rt = queue("erin@bank.test", message("erin@bank.test", s_rt, subj), true);
  ASSERT_TRUE(outcome(q_ctl, "escrowed"));
  auto b = outcome(q_rt, "bounced");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->policy_source, "requiretls") << b->raw;
  auto dsn = dsn_for(*mx1, "erin@bank.test");
  ASSERT_TRUE(dsn);
  EXPECT_TRUE(contains(dsn->data, "Status: 5.7.30")) << dsn->data;
  EXPECT_FALSE(contains(dsn->data, s_rt) || contains(dsn->data, subj)) << dsn->data;
  // Nothing of it was escrowed or handed over: no escrow line names it, and the MX (which
  // gets the escrow notices) never saw it.
  for (const auto& a : read_audit(audit_file(*_relay))) {
    if (a.queue_id != q_rt) continue;
    EXPECT_NE(a.outcome, "escrowed") << a.raw;
    EXPECT_NE(a.reason.value_or(""), "fallback-unavailable") << a.raw;
  }
  EXPECT_EQ(received(*mx5, s_rt), 0u);
  EXPECT_EQ(received(*mx5, "erin@bank.test"), 0u) << "no escrow notice for the REQUIRETLS recipient";
}

// The REQUIRETLS flag is in the spool record: a message deferred before a restart (its MX
// was down) still leaves with REQUIRETLS afterwards, under the same rules.
TEST_F(RequireTLS, KeptAcrossARestart) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(base_zone + domain_zone("d5.sts.test", "mx1.mx.test", true)));
  ASSERT_TRUE(start_sts());
  put_policy("d5.sts.test", policy_text("enforce", "mx1.mx.test"));
  ASSERT_TRUE(start_relay({}));
  std::string secret = unique("secret-restart");
  std::string qid = queue("bob@d5.sts.test", message("bob@d5.sts.test", secret, "restart"), true);
  auto d = outcome(qid, "deferred");  // nothing listens on mx1 yet
  ASSERT_TRUE(d);
  EXPECT_EQ(d->policy_source, "requiretls") << d->raw;
  EXPECT_EQ(d->reason.value_or(""), "connect-failed") << d->raw;
  ASSERT_EQ(_relay->stop(), 0) << _relay->log();
  fake_mx* mx1 = start_mx({.hosts = {"127.0.0.2"}, .requiretls = true});
  ASSERT_TRUE(mx1);
  ASSERT_TRUE(_relay->start()) << _relay->error() << _relay->log();
  auto ok = outcome(qid, "delivered");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->policy_source, "requiretls") << ok->raw;
  ASSERT_TRUE(mx1->wait_messages(1, 10s));
  bool seen = false;
  for (const auto& m : mx1->messages())
    if (contains(m.data, secret)) {
      seen = true;
      EXPECT_TRUE(m.tls);
      EXPECT_NE(std::find(m.mail_params.begin(), m.mail_params.end(), "REQUIRETLS"), m.mail_params.end());
    }
  EXPECT_TRUE(seen);
}

}  // namespace
}  // namespace sr::integ
