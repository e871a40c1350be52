// The DESIGN.md §1 table row by row for each policy, the floors, verify = ca with each
// certificate verdict, verify = none / dane, the message outcome after all MX failed, and
// the fallback hand-off stub.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sealrelay/policy/decider.hh"
#include "sealrelay/policy/fallback.hh"
#include "sealrelay/smtp/reply.hh"

using namespace sr;
using namespace sr::policy;
using outbound::cert_verdict;
using outbound::ehlo_action;
using outbound::refused_action;
using outbound::tls_action;
using outbound::tls_outcome;
using config::tls_policy;
using config::verify_mode;
using report::reason;

namespace {

// The audit token of `r` ("" for none): failures read as the audit shows them.
std::string_view tok(reason r) { return report::to_string(r); }
// The reason of an audit token (none for "" and unknown tokens).
reason of(std::string_view token) { return report::reason_from_token(token).value_or(reason::none); }

effective_policy make(tls_policy tls, verify_mode verify = verify_mode::none) {
  effective_policy p;
  p.tls = tls;
  p.verify = verify;
  p.source = tls == tls_policy::opportunistic ? policy_source::default_policy
                                              : policy_source::config;
  return p;
}

smtp::reply parse_reply(std::string_view text) {
  smtp::reply_parser rp;
  size_t used = 0;
  EXPECT_EQ(rp.feed(text, used), smtp::reply_parser::status::done);
  return rp.get();
}

// Good TLS: 1.3, AES-256, certificate verified.
tls_outcome good() {
  tls_outcome o;
  o.version = "TLSv1.3";
  o.cipher = "TLS_AES_256_GCM_SHA384";
  o.cipher_bits = 256;
  o.cert = cert_verdict::verified;
  return o;
}
tls_outcome weak_3des() {
  tls_outcome o = good();
  o.version = "TLSv1.2";
  o.cipher = "TLS_RSA_WITH_3DES_EDE_CBC_SHA";
  o.cipher_bits = 192;  // what wolfSSL reports
  return o;
}
tls_outcome old_tls11() {
  tls_outcome o = good();
  o.version = "TLSv1.1";
  o.cipher = "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA";
  o.cipher_bits = 128;
  return o;
}
tls_outcome bad_cert(std::string_view why) {
  tls_outcome o = good();
  o.cert = cert_verdict::invalid;
  o.cert_reason = of(why);
  return o;
}

const tls_policy k_enforcing[] = {tls_policy::forced, tls_policy::exclusive};

}  // namespace

// ---- opportunistic: deliver over whatever is there, record what forced would refuse ----

TEST(policy_decider, opportunistic_good_tls) {
  decider d(make(tls_policy::opportunistic));
  EXPECT_EQ(d.on_ehlo(true).action, ehlo_action::starttls);
  EXPECT_EQ(d.on_tls(good()).action, tls_action::proceed);
  EXPECT_EQ(tok(d.abort_reason()), "");
  EXPECT_EQ(tok(d.would_fail_forced()), "");
  EXPECT_FALSE(d.tls_failure());
  EXPECT_EQ(d.effective_bits(), 256u);
}

TEST(policy_decider, opportunistic_without_starttls_goes_plain) {
  decider d(make(tls_policy::opportunistic));
  EXPECT_EQ(d.on_ehlo(false).action, ehlo_action::proceed_plain);
  EXPECT_EQ(tok(d.abort_reason()), "");
  EXPECT_EQ(tok(d.would_fail_forced()), "starttls-not-offered");
}

TEST(policy_decider, opportunistic_after_refusal_goes_plain) {
  decider d(make(tls_policy::opportunistic));
  EXPECT_EQ(d.on_ehlo(true).action, ehlo_action::starttls);
  EXPECT_EQ(d.on_starttls_refused(parse_reply("454 4.7.0 TLS not available\r\n")).action,
            refused_action::proceed_plain);
  EXPECT_EQ(tok(d.abort_reason()), "");
  EXPECT_EQ(tok(d.would_fail_forced()), "starttls-refused");
}

TEST(policy_decider, opportunistic_accepts_weak_old_and_unverified_tls) {
  {
    decider d(make(tls_policy::opportunistic));
    EXPECT_EQ(d.on_tls(weak_3des()).action, tls_action::proceed);
    EXPECT_EQ(d.effective_bits(), 112u);
    EXPECT_EQ(tok(d.would_fail_forced()), "weak-cipher");
  }
  {
    decider d(make(tls_policy::opportunistic));
    EXPECT_EQ(d.on_tls(old_tls11()).action, tls_action::proceed);
    EXPECT_EQ(tok(d.would_fail_forced()), "old-protocol");
  }
  {
    decider d(make(tls_policy::opportunistic, verify_mode::ca));  // verify ignored here
    EXPECT_EQ(d.on_tls(bad_cert("cert-untrusted")).action, tls_action::proceed);
    EXPECT_EQ(tok(d.would_fail_forced()), "");
    EXPECT_EQ(tok(d.abort_reason()), "");
  }
}

TEST(policy_decider, opportunistic_handshake_failure_is_recorded) {
  decider d(make(tls_policy::opportunistic));
  d.on_ehlo(true);
  d.on_handshake_failed();
  EXPECT_EQ(tok(d.abort_reason()), "handshake-failed");
  EXPECT_TRUE(d.tls_failure());
  EXPECT_EQ(tok(d.would_fail_forced()), "handshake-failed");
}

// ---- forced and exclusive: never plaintext ----------------------------------------------

TEST(policy_decider, enforcing_good_tls_delivers) {
  for (tls_policy tls : k_enforcing) {
    decider d(make(tls));
    EXPECT_EQ(d.on_ehlo(true).action, ehlo_action::starttls);
    EXPECT_EQ(d.on_tls(good()).action, tls_action::proceed);
    EXPECT_EQ(tok(d.abort_reason()), "");
    EXPECT_FALSE(d.tls_failure());
  }
}

TEST(policy_decider, enforcing_without_starttls_aborts) {
  for (tls_policy tls : k_enforcing) {
    decider d(make(tls));
    auto a = d.on_ehlo(false);
    EXPECT_EQ(a.action, ehlo_action::abort);
    EXPECT_EQ(tok(a.reason), "starttls-not-offered");
    EXPECT_EQ(tok(d.abort_reason()), "starttls-not-offered");
    EXPECT_TRUE(d.tls_failure());
  }
}

TEST(policy_decider, enforcing_refused_starttls_aborts) {
  for (tls_policy tls : k_enforcing) {
    for (const char* r : {"454 4.7.0 TLS not available\r\n", "502 5.5.1 no\r\n",
                          "500 syntax\r\n"}) {
      decider d(make(tls));
      d.on_ehlo(true);
      auto a = d.on_starttls_refused(parse_reply(r));
      EXPECT_EQ(a.action, refused_action::abort) << r;
      EXPECT_EQ(tok(a.reason), "starttls-refused");
      EXPECT_TRUE(d.tls_failure());
    }
  }
}

TEST(policy_decider, enforcing_handshake_failure_is_a_tls_reason) {
  for (tls_policy tls : k_enforcing) {
    decider d(make(tls));
    d.on_ehlo(true);
    d.on_handshake_failed();
    EXPECT_EQ(tok(d.abort_reason()), "handshake-failed");
    EXPECT_TRUE(d.tls_failure());
  }
}

TEST(policy_decider, enforcing_weak_cipher_aborts) {
  for (tls_policy tls : k_enforcing) {
    decider d(make(tls));  // min_cipher_bits 128
    auto a = d.on_tls(weak_3des());
    EXPECT_EQ(a.action, tls_action::abort);
    EXPECT_EQ(tok(a.reason), "weak-cipher");
    EXPECT_EQ(d.effective_bits(), 112u);
    EXPECT_TRUE(d.tls_failure());
  }
  // RC4 is refused even when the floor was lowered to 0.
  effective_policy p = make(tls_policy::forced);
  p.min_cipher_bits = 0;
  decider d(p);
  tls_outcome rc4 = good();
  rc4.version = "TLSv1.2";
  rc4.cipher = "TLS_RSA_WITH_RC4_128_SHA";
  rc4.cipher_bits = 128;
  EXPECT_EQ(tok(d.on_tls(rc4).reason), "weak-cipher");
  // And 3DES passes a floor of 112.
  p.min_cipher_bits = 112;
  decider d112(p);
  EXPECT_EQ(d112.on_tls(weak_3des()).action, tls_action::proceed);
}

TEST(policy_decider, enforcing_old_protocol_aborts) {
  for (tls_policy tls : k_enforcing) {
    decider d(make(tls));  // min_version 1.2
    auto a = d.on_tls(old_tls11());
    EXPECT_EQ(a.action, tls_action::abort);
    EXPECT_EQ(tok(a.reason), "old-protocol");
    EXPECT_TRUE(d.tls_failure());
  }
  effective_policy p = make(tls_policy::forced);
  p.min_version = config::tls_version::v1_3;
  tls_outcome v12 = good();
  v12.version = "TLSv1.2";
  EXPECT_EQ(tok(decider(p).on_tls(v12).reason), "old-protocol");
  p.min_version = config::tls_version::v1_1;
  EXPECT_EQ(decider(p).on_tls(old_tls11()).action, tls_action::proceed);
  tls_outcome unknown = good();
  unknown.version = "SSLv3";
  EXPECT_EQ(tok(decider(p).on_tls(unknown).reason), "old-protocol");
}

TEST(policy_decider, verify_ca_with_each_verdict) {
  struct row {
    tls_outcome o;
    std::string_view want;  // "" = proceed
  };
  tls_outcome none_checked = good();
  none_checked.cert = cert_verdict::none;
  const row rows[] = {
      {good(), ""},
      {bad_cert("cert-untrusted"), "cert-untrusted"},
      {bad_cert("cert-expired"), "cert-expired"},
      {bad_cert("cert-name-mismatch"), "cert-name-mismatch"},
      {bad_cert("cert-invalid"), "cert-invalid"},
      {bad_cert(""), "cert-invalid"},
      {bad_cert("none"), "cert-invalid"},
      {none_checked, "cert-invalid"},
  };
  for (tls_policy tls : k_enforcing) {
    for (const row& r : rows) {
      decider d(make(tls, verify_mode::ca));
      auto a = d.on_tls(r.o);
      if (r.want.empty()) {
        EXPECT_EQ(a.action, tls_action::proceed);
        EXPECT_FALSE(d.tls_failure());
      } else {
        EXPECT_EQ(a.action, tls_action::abort) << r.want;
        EXPECT_EQ(tok(d.abort_reason()), r.want);
        EXPECT_TRUE(d.tls_failure());
      }
    }
  }
}

TEST(policy_decider, verify_ca_checks_floor_first) {
  decider d(make(tls_policy::forced, verify_mode::ca));
  tls_outcome o = weak_3des();
  o.cert = cert_verdict::invalid;
  o.cert_reason = reason::cert_expired;
  EXPECT_EQ(tok(d.on_tls(o).reason), "weak-cipher");
}

TEST(policy_decider, verify_none_is_encryption_only) {
  for (tls_policy tls : k_enforcing) {
    decider d(make(tls, verify_mode::none));
    EXPECT_EQ(d.on_tls(bad_cert("cert-untrusted")).action, tls_action::proceed);
    EXPECT_EQ(tok(d.abort_reason()), "");
  }
}

TEST(policy_decider, verify_dane_needs_the_tlsa_verdict) {
  for (tls_policy tls : k_enforcing) {
    decider d(make(tls, verify_mode::dane));
    EXPECT_EQ(d.on_ehlo(true).action, ehlo_action::starttls);
    EXPECT_EQ(d.on_tls(good()).action, tls_action::proceed);
    decider m(make(tls, verify_mode::dane));
    auto a = m.on_tls(bad_cert("tlsa-mismatch"));
    EXPECT_EQ(a.action, tls_action::abort);
    EXPECT_EQ(tok(a.reason), "tlsa-mismatch");
    EXPECT_TRUE(m.tls_failure());
  }
}

TEST(policy_decider, a_raised_opportunistic_policy_never_goes_plaintext) {
  // MTA-STS enforce or DANE raised an opportunistic domain's floor.
  auto p = make(tls_policy::opportunistic, verify_mode::ca);
  p.raised = true;
  decider d(p);
  auto e = d.on_ehlo(false);
  EXPECT_EQ(e.action, ehlo_action::abort);
  EXPECT_EQ(tok(e.reason), "starttls-not-offered");
  decider c(p);
  EXPECT_EQ(c.on_tls(bad_cert("cert-untrusted")).action, tls_action::abort);
  // ... and its failure stays a retry (a temporary failure), never a fallback or a drop.
  EXPECT_EQ(outcome_on_tls_failure(p, true, std::chrono::hours(1)), tls_failure_outcome::retry);
}

TEST(policy_decider, reason_tokens) {
  for (std::string_view t : {"starttls-not-offered", "starttls-refused", "handshake-failed",
                             "weak-cipher", "old-protocol", "cert-untrusted", "cert-expired",
                             "cert-name-mismatch", "cert-invalid"})
    EXPECT_TRUE(report::is_tls_failure(of(t))) << t;
  for (std::string_view t : {"connect-failed", "remote-4xx", "remote-5xx", "tlsa-lookup-failed", ""})
    EXPECT_FALSE(report::is_tls_failure(of(t))) << t;
}

// ---- the message's fate after every MX failed --------------------------------------------

TEST(policy_outcome, forced_falls_back_exclusive_drops_after_fallback_after) {
  using namespace std::chrono;
  effective_policy f = make(tls_policy::forced);
  effective_policy x = make(tls_policy::exclusive);
  EXPECT_EQ(outcome_on_tls_failure(f, true, seconds(0)), tls_failure_outcome::fallback);
  EXPECT_EQ(outcome_on_tls_failure(x, true, seconds(0)), tls_failure_outcome::drop);
  // Some MX failed for another reason (connect, 4xx): ordinary retry.
  EXPECT_EQ(outcome_on_tls_failure(f, false, hours(100)), tls_failure_outcome::retry);
  EXPECT_EQ(outcome_on_tls_failure(x, false, hours(100)), tls_failure_outcome::retry);

  f.fallback_after = hours(1);
  x.fallback_after = hours(1);
  EXPECT_EQ(outcome_on_tls_failure(f, true, minutes(59)), tls_failure_outcome::retry);
  EXPECT_EQ(outcome_on_tls_failure(x, true, minutes(59)), tls_failure_outcome::retry);
  EXPECT_EQ(outcome_on_tls_failure(f, true, hours(1)), tls_failure_outcome::fallback);
  EXPECT_EQ(outcome_on_tls_failure(x, true, hours(2)), tls_failure_outcome::drop);

  effective_policy o = make(tls_policy::opportunistic);
  EXPECT_EQ(outcome_on_tls_failure(o, true, hours(100)), tls_failure_outcome::retry);
  EXPECT_STREQ(to_string(tls_failure_outcome::drop), "drop");
}

// The hand-off answers through a completion, one outcome per recipient; without a sidecar
// every recipient is answered `unavailable` (audit: deferred, fallback-unavailable).
TEST(policy_fallback, stub_answers_unavailable_through_the_completion) {
  struct answer : handoff_completion {
    std::vector<handoff_outcome> got;
    void handoff_done(std::span<const handoff_outcome> o) override {
      got.assign(o.begin(), o.end());
    }
  } done;
  unavailable_handoff h;
  fallback_handoff& iface = h;
  effective_policy p = make(tls_policy::forced);
  std::string_view rcpts[] = {"a@bank.example", "b@bank.example"};
  handoff_request req{"Q1", "s@relay.example", rcpts, "bank.example", "/var/spool/0/1.seg",
                      0, 100, reason::weak_cipher, &p};
  iface.hand_off(req, done);
  EXPECT_EQ(done.got, (std::vector<handoff_outcome>{handoff_outcome::unavailable,
                                                    handoff_outcome::unavailable}));
  EXPECT_STREQ(to_string(handoff_outcome::unavailable), "deferred");
  EXPECT_STREQ(to_string(handoff_outcome::escrowed), "escrowed");
}

TEST(policy_fallback, a_chain_of_only_defer_needs_no_hand_off) {
  effective_policy p = make(tls_policy::forced);
  EXPECT_TRUE(needs_handoff(p));  // default chain: pgp, smime, escrow
  p.fallback.methods[0] = fallback_method::defer;
  p.fallback.size = 1;
  EXPECT_FALSE(needs_handoff(p));
  p.fallback.methods[1] = fallback_method::escrow;
  p.fallback.size = 2;
  EXPECT_TRUE(needs_handoff(p));
}

// RFC 8689 §4.2.1: a REQUIRETLS connection needs the MX to offer REQUIRETLS over TLS; any
// other connection proceeds whatever the EHLO offered.
TEST(policy_decider, requiretls_needs_the_keyword_after_tls) {
  effective_policy p = make(tls_policy::opportunistic);
  decider plain(p);
  EXPECT_EQ(plain.on_secure_ehlo(false).action, tls_action::proceed);
  p.requiretls = true;
  p.raised = true;
  p.verify = verify_mode::ca;
  decider d(p);
  EXPECT_EQ(d.on_secure_ehlo(true).action, tls_action::proceed);
  EXPECT_EQ(d.abort_reason(), reason::none);
  decider d2(p);
  auto a = d2.on_secure_ehlo(false);
  EXPECT_EQ(a.action, tls_action::abort);
  EXPECT_EQ(tok(a.reason), "requiretls-not-offered");
  EXPECT_TRUE(d2.tls_failure()) << "counts towards every-MX-failed-for-TLS (then a bounce)";
  // The raised floor still applies before that: no STARTTLS, no plaintext.
  decider d3(p);
  EXPECT_EQ(d3.on_ehlo(false).action, ehlo_action::abort);
  decider d4(p);
  tls_outcome bad{"TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, cert_verdict::invalid, reason::cert_untrusted};
  EXPECT_EQ(d4.on_tls(bad).action, tls_action::abort);
  EXPECT_EQ(of("requiretls-unverified"), reason::requiretls_unverified);
  EXPECT_TRUE(report::is_tls_failure(reason::requiretls_unverified));
}
