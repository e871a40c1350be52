// report::reason and report::policy_source: every reason has a distinct token that reads
// back to it, TLS failures are exactly the DESIGN.md §1 ones, and each TLS failure files
// under an RFC 8460 result type (non-TLS reasons under none).
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "sealrelay/report/policy_source.hh"
#include "sealrelay/report/reason.hh"

using namespace sr::report;

TEST(report_reason, tokens_are_distinct_and_round_trip) {
  std::set<std::string> seen;
  for (unsigned i = 1; i < reason_count; ++i) {
    auto r = reason(i);
    std::string t(to_string(r));
    EXPECT_FALSE(t.empty()) << i;
    EXPECT_TRUE(seen.insert(t).second) << t;
    EXPECT_EQ(reason_from_token(t), r) << t;
  }
  EXPECT_EQ(to_string(reason::none), "");
  EXPECT_FALSE(reason_from_token("").has_value());
  EXPECT_FALSE(reason_from_token("no-such-reason").has_value());
  EXPECT_EQ(to_string(reason::fallback_unavailable), "fallback-unavailable");
}

TEST(report_reason, tls_failures_and_rfc8460_result_types) {
  const std::set<reason> tls = {reason::starttls_not_offered, reason::starttls_refused,
                                reason::handshake_failed,     reason::old_protocol,
                                reason::weak_cipher,          reason::cert_untrusted,
                                reason::cert_expired,         reason::cert_name_mismatch,
                                reason::cert_invalid,         reason::tls_rejected,
                                reason::tlsa_mismatch,        reason::dane_required,
                                reason::mx_not_in_sts_policy};
  // Reported to TLS-RPT but an ordinary retry, not a TLS failure of the MX.
  const std::set<reason> reported_only = {reason::tlsa_lookup_failed};
  // REQUIRETLS (RFC 8689): the message's demand, not the recipient's published policy, failed:
  // it ends the walk like a TLS failure (then a bounce) but is no TLS-RPT failure.
  const std::set<reason> requiretls = {reason::requiretls_not_offered, reason::requiretls_unverified};
  for (unsigned i = 0; i < reason_count; ++i) {
    auto r = reason(i);
    EXPECT_EQ(is_tls_failure(r), tls.count(r) + requiretls.count(r) == 1) << to_string(r);
    EXPECT_EQ(result_type_of(r) != result_type::none, tls.count(r) + reported_only.count(r) == 1)
        << to_string(r);
  }
  EXPECT_EQ(to_string(result_type_of(reason::starttls_not_offered)), "starttls-not-supported");
  EXPECT_EQ(to_string(result_type_of(reason::cert_name_mismatch)), "certificate-host-mismatch");
  EXPECT_EQ(to_string(result_type_of(reason::cert_expired)), "certificate-expired");
  EXPECT_EQ(to_string(result_type_of(reason::cert_untrusted)), "certificate-not-trusted");
  EXPECT_EQ(to_string(result_type_of(reason::weak_cipher)), "validation-failure");
  EXPECT_EQ(to_string(result_type::sts_policy_fetch_error), "sts-policy-fetch-error");
  EXPECT_EQ(to_string(result_type::sts_policy_invalid), "sts-policy-invalid");
  EXPECT_EQ(to_string(result_type::sts_webpki_invalid), "sts-webpki-invalid");
  EXPECT_EQ(to_string(result_type::tlsa_invalid), "tlsa-invalid");
  EXPECT_EQ(to_string(result_type::dnssec_invalid), "dnssec-invalid");
  EXPECT_EQ(to_string(result_type::dane_required), "dane-required");
  EXPECT_EQ(result_type_of(reason::dane_required), result_type::dane_required);
  EXPECT_EQ(result_type_of(reason::tlsa_lookup_failed), result_type::dnssec_invalid);
  // A TLSA lookup that failed is a DNS problem, not the MX's TLS: never a fallback or a drop.
  EXPECT_FALSE(is_tls_failure(reason::tlsa_lookup_failed));
}

TEST(report_policy_source, tokens) {
  EXPECT_EQ(to_string(policy_source::default_policy), "default");
  EXPECT_EQ(to_string(policy_source::config), "config");
  EXPECT_EQ(to_string(policy_source::mta_sts), "mta-sts");
  EXPECT_EQ(to_string(policy_source::dane), "dane");
  EXPECT_EQ(to_string(policy_source::requiretls), "requiretls");
}
