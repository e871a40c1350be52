// The collector: which session ends count and how, grouping by policy and failure detail,
// merge and take; and the saved state's round trip.
#include "sealrelay/tlsrpt/collector.hh"

#include <gtest/gtest.h>

#include "sealrelay/tlsrpt/state.hh"
#include "support/temp_dir.hh"

using namespace sr;
using namespace sr::tlsrpt;
using report::reason;
using report::result_type;

namespace {

delivery::session_report tls_session(const char* mx = "mx1.example.net", const char* ip = "192.0.2.1") {
  delivery::session_report r;
  r.mx = mx;
  r.ip = ip;
  r.tls = true;
  r.tls_version = "TLSv1.3";
  r.cert_checked = true;
  r.cert_ok = true;
  return r;
}

}  // namespace

TEST(tlsrpt_collector, classify_success_failure_and_not_counted) {
  auto ok = classify(tls_session(), true, false, reason::quit, false);
  EXPECT_TRUE(ok.counted);
  EXPECT_TRUE(ok.success);

  // STARTTLS missing under opportunistic: the session goes on in plaintext, a failure.
  delivery::session_report plain;
  plain.mx = "mx1.example.net";
  plain.reason = reason::starttls_not_offered;
  auto nt = classify(plain, true, false, reason::quit, false);
  EXPECT_TRUE(nt.counted);
  EXPECT_FALSE(nt.success);
  EXPECT_EQ(nt.type, result_type::starttls_not_supported);

  // Refused by the policy (forced, verify = ca) for the name: the close reason says why.
  auto name = classify(tls_session(), false, false, reason::cert_name_mismatch, false);
  EXPECT_TRUE(name.counted);
  EXPECT_EQ(name.type, result_type::certificate_host_mismatch);

  // The plaintext retry after a failed handshake was counted as that failure already.
  delivery::session_report retry;
  retry.reason = reason::handshake_failed;
  EXPECT_FALSE(classify(retry, true, true, reason::quit, false).counted);

  // A host ruled out before any session (MTA-STS enforce mx mismatch, a failed TLSA
  // lookup), when the walk reports it: failures of their RFC 8460 types.
  delivery::session_report ruled_out;
  ruled_out.mx = "mx9.example.net";
  ruled_out.reason = reason::mx_not_in_sts_policy;
  EXPECT_EQ(classify(ruled_out, false, false, reason::none, true).type, result_type::validation_failure);
  ruled_out.reason = reason::tlsa_lookup_failed;
  auto dnssec = classify(ruled_out, false, false, reason::none, true);
  EXPECT_TRUE(dnssec.counted);
  EXPECT_EQ(dnssec.type, result_type::dnssec_invalid);

  // Not TLS matters: never connected, a 4xx greeting.
  EXPECT_FALSE(classify(delivery::session_report{}, false, false, reason::connect_failed, false).counted);
  EXPECT_FALSE(classify(delivery::session_report{}, false, false, reason::remote_4xx, false).counted);

  // Opportunistic TLS with an unverified certificate and no published policy: a success.
  auto unverified = tls_session();
  unverified.cert_ok = false;
  unverified.cert_reason = reason::cert_untrusted;
  EXPECT_TRUE(classify(unverified, true, false, reason::quit, false).success);
  // The same under a published policy (MTA-STS testing lets it through): a failure.
  auto testing = classify(unverified, true, false, reason::quit, true);
  EXPECT_TRUE(testing.counted);
  EXPECT_FALSE(testing.success);
  EXPECT_EQ(testing.type, result_type::certificate_not_trusted);
  // MTA-STS testing delivered through an MX its policy does not name: a failure too.
  auto unnamed = tls_session("mx9.example.net");
  unnamed.sts_testing = reason::mx_not_in_sts_policy;
  auto t2 = classify(unnamed, true, false, reason::quit, true);
  EXPECT_TRUE(t2.counted);
  EXPECT_FALSE(t2.success);
  EXPECT_EQ(t2.type, result_type::validation_failure);
}

TEST(tlsrpt_collector, counts_group_by_domain_policy_and_detail) {
  collector c;
  verdict ok{true, true, result_type::none};
  verdict expired{true, false, result_type::certificate_expired};
  policy::mta_sts_rules rules;
  rules.mode = policy::sts_mode::enforce;
  rules.mx = {"mx1.example.net", "*.example.net"};
  rules.max_age = 604800;
  for (int i = 0; i < 3; ++i) c.add("example.net", policy_type::sts, &rules, ok, "10.0.0.1", "mx1.example.net", "192.0.2.1");
  c.add("example.net", policy_type::sts, &rules, expired, "10.0.0.1", "mx1.example.net", "192.0.2.1");
  c.add("example.net", policy_type::sts, &rules, expired, "10.0.0.1", "mx1.example.net", "192.0.2.1");
  c.add("example.net", policy_type::sts, &rules, expired, "10.0.0.1", "mx2.example.net", "192.0.2.2");
  c.add("example.net", policy_type::no_policy_found, nullptr, ok, "10.0.0.1", "mx1.example.net", "192.0.2.1");
  c.add("other.example", policy_type::no_policy_found, nullptr, ok, "", "mx.other.example", "192.0.2.9");
  c.add("other.example", policy_type::no_policy_found, nullptr, verdict{}, "", "", "");  // not counted

  ASSERT_EQ(c.counts().size(), 2u);
  const domain_counts& d = c.counts().at("example.net");
  ASSERT_EQ(d.policies.size(), 2u);
  const policy_counts& sts = d.policies[0];
  EXPECT_EQ(sts.type, policy_type::sts);
  EXPECT_EQ(sts.strings, (std::vector<std::string>{"version: STSv1", "mode: enforce", "mx: mx1.example.net",
                                                   "mx: *.example.net", "max_age: 604800"}));
  EXPECT_EQ(sts.mx_host, rules.mx);
  EXPECT_EQ(sts.successes, 3u);
  EXPECT_EQ(sts.failures, 3u);
  ASSERT_EQ(sts.details.size(), 2u);
  EXPECT_EQ(sts.details[0].count, 2u);
  EXPECT_EQ(sts.details[0].mx, "mx1.example.net");
  EXPECT_EQ(sts.details[0].sending_ip, "10.0.0.1");
  EXPECT_EQ(sts.details[1].count, 1u);
  EXPECT_EQ(sts.details[1].ip, "192.0.2.2");
  EXPECT_EQ(d.policies[1].type, policy_type::no_policy_found);
  EXPECT_EQ(d.policies[1].successes, 1u);
  EXPECT_EQ(c.counts().at("other.example").policies[0].successes, 1u);

  // A changed policy (mode testing now) is a policy of its own.
  rules.mode = policy::sts_mode::testing;
  c.add("example.net", policy_type::sts, &rules, ok, "", "mx1.example.net", "192.0.2.1");
  EXPECT_EQ(c.counts().at("example.net").policies.size(), 3u);

  // Policy fetch failures come from MTA-STS, before any session.
  c.add_policy_failure("fetch.example", result_type::sts_policy_fetch_error, "HTTP 404");
  const auto& f = c.counts().at("fetch.example").policies.at(0);
  EXPECT_EQ(f.type, policy_type::sts);
  EXPECT_EQ(f.failures, 1u);
  EXPECT_EQ(f.details.at(0).type, result_type::sts_policy_fetch_error);
  EXPECT_EQ(f.details.at(0).info, "HTTP 404");

  counts_map taken = c.take();
  EXPECT_TRUE(c.empty());
  c.merge(taken);
  c.merge(taken);
  EXPECT_EQ(c.counts().at("example.net").policies[0].successes, 6u);
  EXPECT_EQ(c.counts().at("example.net").policies[0].details[0].count, 4u);
}

TEST(tlsrpt_collector, at_most_max_domains) {
  collector c(2);
  verdict ok{true, true, result_type::none};
  c.add("a.example", policy_type::no_policy_found, nullptr, ok, "", "", "");
  c.add("b.example", policy_type::no_policy_found, nullptr, ok, "", "", "");
  c.add("c.example", policy_type::no_policy_found, nullptr, ok, "", "", "");
  c.add("a.example", policy_type::no_policy_found, nullptr, ok, "", "", "");
  EXPECT_EQ(c.counts().size(), 2u);
  EXPECT_EQ(c.dropped(), 1u);
  EXPECT_EQ(c.counts().at("a.example").policies[0].successes, 2u);
}

TEST(tlsrpt_state, round_trip_and_cut_short) {
  state s;
  s.window_start_ms = 1765000000000;
  collector c;
  policy::mta_sts_rules rules;
  rules.mode = policy::sts_mode::testing;
  rules.mx = {"mx\t1.example"};  // escapes survive
  c.add("example.net", policy_type::sts, &rules, verdict{true, false, result_type::validation_failure}, "10.0.0.1",
        "mx1.example.net", "192.0.2.1");
  c.add_policy_failure("example.net", result_type::sts_webpki_invalid, "line\nbreak \\ back");
  s.current = c.counts();
  pending_report p;
  p.start_ms = 1;
  p.end_ms = 2;
  p.domain = "pending.example";
  p.counts = c.counts().at("example.net");
  p.done = {"mailto:a@b.example"};
  p.tries = 2;
  s.pending.push_back(p);

  std::string text = serialize(s);
  auto back = deserialize(text);
  ASSERT_TRUE(back) << back.err();
  EXPECT_EQ(serialize(*back), text);
  EXPECT_EQ(back->window_start_ms, s.window_start_ms);
  ASSERT_EQ(back->pending.size(), 1u);
  EXPECT_EQ(back->pending[0].done, p.done);
  EXPECT_EQ(back->pending[0].tries, 2u);
  const auto& pol = back->current.at("example.net").policies;
  ASSERT_EQ(pol.size(), 2u);
  EXPECT_EQ(pol[0].mx_host, rules.mx);
  EXPECT_EQ(pol[1].details.at(0).info, "line\nbreak \\ back");

  // Every proper prefix is refused (a torn file is never read as a smaller state).
  for (size_t n = 0; n < text.size(); ++n) EXPECT_FALSE(deserialize(text.substr(0, n))) << n;
  EXPECT_FALSE(deserialize(text + "C\tx\n"));

  test::temp_dir dir;
  std::string path = (dir.path() / "shard-0.state").string();
  auto none = load(path);
  ASSERT_TRUE(none) << none.err();
  EXPECT_TRUE(none->current.empty());
  ASSERT_TRUE(save(path, s));
  auto loaded = load(path);
  ASSERT_TRUE(loaded) << loaded.err();
  EXPECT_EQ(serialize(*loaded), text);
}

// DANE: each MX host's TLSA RRset is its own policy, its records the policy-string.
TEST(tlsrpt_collector, tlsa_policies_are_kept_apart_by_their_records) {
  collector c;
  verdict ok{true, true, result_type::none};
  verdict bad{true, false, result_type::validation_failure};
  std::vector<std::string> mx1 = {"_25._tcp.mx1.example.net. IN TLSA ( 3 1 1 AB )"};
  std::vector<std::string> mx2 = {"_25._tcp.mx2.example.net. IN TLSA ( 2 0 1 CD )",
                                  "_25._tcp.mx2.example.net. IN TLSA ( 3 1 1 EF )"};
  c.add("example.net", policy_type::tlsa, nullptr, ok, "10.0.0.1", "mx1.example.net", "192.0.2.1", mx1);
  c.add("example.net", policy_type::tlsa, nullptr, bad, "10.0.0.1", "mx2.example.net", "192.0.2.2", mx2);
  c.add("example.net", policy_type::tlsa, nullptr, ok, "10.0.0.1", "mx1.example.net", "192.0.2.1", mx1);
  const domain_counts& d = c.counts().at("example.net");
  ASSERT_EQ(d.policies.size(), 2u);
  EXPECT_EQ(d.policies[0].strings, mx1);
  EXPECT_EQ(d.policies[0].successes, 2u);
  EXPECT_EQ(d.policies[1].strings, mx2);
  EXPECT_EQ(d.policies[1].failures, 1u);
}
