// Policy table: precedence (exact, longest suffix, default), suffix semantics, case and
// trailing dots, compilation from the config (inheritance of [tls] floors), build errors,
// and no heap allocation per lookup (counted by alloc_count.cc).
#include <gtest/gtest.h>

#include <string>

#include "alloc_count.hh"

#include "sealrelay/config/config.hh"
#include "sealrelay/policy/resolver.hh"
#include "sealrelay/policy/table.hh"
#include "support/names.hh"

using namespace sr;
using namespace sr::policy;

namespace {

using sr::test::name_of;

config::config parse_ok(const std::string& body) {
  std::string text = "[[listen]]\naddress = \"127.0.0.1:2525\"\n" + body;
  // Schema only: the table compiles every fallback method, built or not (not_built.hh).
  auto r = config::parse(text, "test.toml", config::not_built_mode::accept);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err());
  return r.ok() ? std::move(*r) : config::config{};
}

std::unique_ptr<table> compile_ok(const config::config& cfg) {
  auto r = compile(cfg);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err());
  return r.ok() ? std::move(*r) : nullptr;
}

effective_policy with_bits(unsigned bits, config::tls_policy tls = config::tls_policy::forced) {
  effective_policy p;
  p.tls = tls;
  p.min_cipher_bits = bits;
  return p;
}

const char* const k_precedence = R"(
[outbound]
default_policy = "opportunistic"
[[policy]]
domain = "bank.example"
tls = "forced"
min_cipher_bits = 200
[[policy]]
domain = ".bank.example"
tls = "exclusive"
min_cipher_bits = 150
[[policy]]
domain = ".eu.bank.example"
tls = "forced"
verify = "ca"
min_cipher_bits = 256
[[policy]]
domain = ".example"
tls = "forced"
min_cipher_bits = 129
)";

}  // namespace

TEST(policy_table, exact_beats_suffix_beats_default) {
  auto t = compile_ok(parse_ok(k_precedence));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->size(), 4u);

  const rule& exact = t->lookup("bank.example");
  EXPECT_EQ(exact.pattern, "bank.example");
  EXPECT_EQ(exact.policy.tls, config::tls_policy::forced);
  EXPECT_EQ(exact.policy.min_cipher_bits, 200u);
  EXPECT_EQ(exact.policy.source, policy_source::config);

  const rule& sub = t->lookup("mx.bank.example");
  EXPECT_EQ(sub.pattern, ".bank.example");
  EXPECT_EQ(sub.policy.tls, config::tls_policy::exclusive);

  const rule& other = t->lookup("other.example");
  EXPECT_EQ(other.pattern, ".example");
  EXPECT_EQ(other.policy.min_cipher_bits, 129u);

  const rule& none = t->lookup("example.org");
  EXPECT_EQ(none.pattern, "");
  EXPECT_EQ(none.policy.source, policy_source::default_policy);
  EXPECT_EQ(none.policy.tls, config::tls_policy::opportunistic);
  EXPECT_EQ(&none.policy, &t->default_rule().policy);
}

TEST(policy_table, longest_suffix_wins) {
  auto t = compile_ok(parse_ok(k_precedence));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->lookup("a.b.eu.bank.example").pattern, ".eu.bank.example");
  EXPECT_EQ(t->lookup("x.eu.bank.example").policy.verify, config::verify_mode::ca);
  // eu.bank.example itself is not under ".eu.bank.example": the next parent suffix applies.
  EXPECT_EQ(t->lookup("eu.bank.example").pattern, ".bank.example");
  EXPECT_EQ(t->lookup("us.bank.example").pattern, ".bank.example");
}

TEST(policy_table, suffix_does_not_match_the_domain_itself) {
  builder b(effective_policy{});
  ASSERT_TRUE(b.add(".bank.example", with_bits(150)));
  auto r = std::move(b).build();
  ASSERT_TRUE(r.ok());
  const table& t = **r;
  EXPECT_EQ(t.lookup("bank.example").pattern, "");
  EXPECT_EQ(t.lookup("bank.example").policy.source, policy_source::default_policy);
  EXPECT_EQ(t.lookup("mx.bank.example").pattern, ".bank.example");
  // Label boundaries matter: "xbank.example" is not a subdomain of bank.example.
  EXPECT_EQ(t.lookup("xbank.example").pattern, "");
  EXPECT_EQ(t.lookup("example").pattern, "");
}

TEST(policy_table, case_insensitive_and_trailing_dot) {
  builder b(effective_policy{});
  ASSERT_TRUE(b.add("Bank.Example", with_bits(200)));
  ASSERT_TRUE(b.add(".HEALTH.example", with_bits(150)));
  auto r = std::move(b).build();
  ASSERT_TRUE(r.ok());
  const table& t = **r;
  EXPECT_EQ(t.lookup("bank.example").pattern, "bank.example");  // stored lower-case
  EXPECT_EQ(t.lookup("BANK.EXAMPLE").pattern, "bank.example");
  EXPECT_EQ(t.lookup("bAnK.eXaMpLe.").pattern, "bank.example");
  EXPECT_EQ(t.lookup("Mail.Health.Example").pattern, ".health.example");
}

TEST(policy_table, every_letter_folds_and_nothing_else_does) {
  builder b(effective_policy{});
  ASSERT_TRUE(b.add("abcdefghijklmnopqrstuvwxyz0123456789-_.example", with_bits(200)));
  ASSERT_TRUE(b.add(".long-label-for-word-boundaries.example", with_bits(150)));
  auto r = std::move(b).build();
  ASSERT_TRUE(r.ok());
  const table& t = **r;
  EXPECT_EQ(t.lookup("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.EXAMPLE").policy.min_cipher_bits, 200u);
  EXPECT_EQ(t.lookup("aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789-_.eXaMpLe").policy.min_cipher_bits,
            200u);
  // Bytes next to the letters in ASCII ('@' before 'A', '[' after 'Z') and UTF-8 stay as
  // they are, so they never fold into a letter of a pattern.
  EXPECT_EQ(t.lookup("@bcdefghijklmnopqrstuvwxyz0123456789-_.example").pattern, "");
  EXPECT_EQ(t.lookup("abcdefghijklmnopqrstuvwxy[0123456789-_.example").pattern, "");
  EXPECT_EQ(t.lookup("\xc3\x81" "bcdefghijklmnopqrstuvwxyz0123456789-_.example").pattern, "");
  // Dots found a word at a time, at every offset within a word.
  for (size_t n = 1; n <= 17; ++n) {
    std::string host = std::string(n, 'H') + ".Long-Label-For-Word-Boundaries.Example";
    EXPECT_EQ(t.lookup(host).pattern, ".long-label-for-word-boundaries.example") << host;
  }
}

TEST(policy_table, malformed_recipient_domains_get_the_default) {
  builder b(effective_policy{});
  ASSERT_TRUE(b.add(".bank.example", with_bits(150)));
  ASSERT_TRUE(b.add("bank.example", with_bits(200)));
  auto r = std::move(b).build();
  ASSERT_TRUE(r.ok());
  const table& t = **r;
  EXPECT_EQ(t.lookup("").pattern, "");
  EXPECT_EQ(t.lookup(".").pattern, "");
  EXPECT_EQ(t.lookup(".bank.example").pattern, "");
  EXPECT_EQ(t.lookup("a..bank.example").pattern, "");
  // 120 one-letter labels over bank.example: 252 characters, 122 labels.
  std::string deep;
  for (int i = 0; i < 120; ++i) deep += "a.";
  deep += "bank.example";
  EXPECT_EQ(t.lookup(deep).pattern, ".bank.example");
}

// Only the last 254 characters of a name can hold a pattern (253 plus a suffix key's dot):
// a longer name is looked up by the suffixes that fit, never given the default for its length.
TEST(policy_table, over_long_names_still_match_their_suffix) {
  builder b(effective_policy{});
  ASSERT_TRUE(b.add(".bank.example", with_bits(150)));
  ASSERT_TRUE(b.add(".eu.bank.example", with_bits(256)));
  ASSERT_TRUE(b.add("bank.example", with_bits(200)));
  auto r = std::move(b).build();
  ASSERT_TRUE(r.ok());
  const table& t = **r;

  // A 300-octet subdomain of bank.example, made of valid labels.
  std::string sub;
  while (sub.size() < 300 - 13) sub += std::string(40, 'x') + ".";
  std::string name = sub + "bank.example";
  ASSERT_GT(name.size(), 253u);
  const rule& hit = t.lookup(name);
  EXPECT_EQ(hit.pattern, ".bank.example");
  EXPECT_EQ(hit.policy.tls, config::tls_policy::forced);
  EXPECT_EQ(hit.policy.min_cipher_bits, 150u);
  EXPECT_EQ(t.lookup(sub + "EU.Bank.Example.").pattern, ".eu.bank.example");

  // One label longer than any window, and names of every length around the boundary.
  EXPECT_EQ(t.lookup(std::string(300, 'a') + ".bank.example").pattern, ".bank.example");
  EXPECT_EQ(t.lookup(std::string(5000, 'a') + ".eu.bank.example").pattern, ".eu.bank.example");
  for (size_t n = 230; n <= 270; ++n) {
    std::string s;
    while (s.size() + 13 < n) s += (s.size() % 7 == 6) ? '.' : 'a';
    if (!s.empty() && s.back() == '.') s += 'a';
    std::string host = s + ".bank.example";
    EXPECT_EQ(t.lookup(host).pattern, ".bank.example") << host.size();
  }
  // The window (the last 254 characters) starts exactly at a dot: "." + 240 characters of
  // labels + ".bank.example".
  std::string x;
  for (int i = 0; i < 5; ++i) x += std::string(47, 'q') + ".";
  x.back() = 'q';  // 240 characters, four dots
  EXPECT_EQ(t.lookup("z." + x + ".bank.example").pattern, ".bank.example");
  EXPECT_EQ(t.lookup("z." + x + ".eu.bank.example").pattern, ".eu.bank.example");

  // An over-long name under no pattern still gets the default.
  EXPECT_EQ(t.lookup(sub + "other.example").pattern, "");
  // A long name is never the exact pattern it ends with.
  EXPECT_EQ(t.lookup(std::string(300, 'b') + "bank.example").pattern, "");
}

TEST(policy_table, build_rejects_bad_and_duplicate_patterns) {
  {
    builder b(effective_policy{});
    EXPECT_FALSE(b.add("", with_bits(128)));
    EXPECT_FALSE(b.add(".", with_bits(128)));
    EXPECT_FALSE(b.add("*", with_bits(128)));
    EXPECT_FALSE(b.add("bank..example", with_bits(128)));
    EXPECT_FALSE(b.add("bank.example.", with_bits(128)));
    EXPECT_FALSE(b.add("-bank.example", with_bits(128)));
  }
  builder b(effective_policy{});
  ASSERT_TRUE(b.add("bank.example", with_bits(128)));
  ASSERT_TRUE(b.add(".bank.example", with_bits(128)));  // a suffix is a different key
  ASSERT_TRUE(b.add("BANK.example", with_bits(128)));
  auto r = std::move(b).build();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.err().find("bank.example"), std::string::npos) << r.err();
}

TEST(policy_table, compile_fills_policy_fields_and_inherits_tls_floor) {
  auto cfg = parse_ok(R"(
[tls]
min_version = "1.3"
min_cipher_bits = 256
[outbound]
default_policy = "forced"
[[policy]]
domain = "bank.example"
tls = "forced"
verify = "ca"
fallback = ["smime", "defer"]
fallback_after = "2h"
min_version = "1.2"
[[policy]]
domain = "promo.example"
tls = "exclusive"
notify_sender = true
min_cipher_bits = 128
)");
  auto t = compile_ok(cfg);
  ASSERT_TRUE(t);
  const effective_policy& bank = t->lookup("bank.example").policy;
  EXPECT_EQ(bank.tls, config::tls_policy::forced);
  EXPECT_EQ(bank.verify, config::verify_mode::ca);
  ASSERT_EQ(bank.fallback.size, 2);
  EXPECT_EQ(bank.fallback.methods[0], fallback_method::smime);
  EXPECT_EQ(bank.fallback.methods[1], fallback_method::defer);
  EXPECT_EQ(bank.fallback_after, std::chrono::hours(2));
  EXPECT_EQ(bank.min_version, config::tls_version::v1_2);  // written: kept
  EXPECT_EQ(bank.min_cipher_bits, 256u);                    // not written: [tls]

  const effective_policy& promo = t->lookup("promo.example").policy;
  EXPECT_EQ(promo.tls, config::tls_policy::exclusive);
  EXPECT_TRUE(promo.notify_sender);
  EXPECT_EQ(promo.min_version, config::tls_version::v1_3);  // not written: [tls]
  EXPECT_EQ(promo.min_cipher_bits, 128u);                    // written: kept
  EXPECT_EQ(promo.fallback, fallback_chain{});               // default chain

  const effective_policy& dflt = t->lookup("elsewhere.example").policy;
  EXPECT_EQ(dflt.tls, config::tls_policy::forced);
  EXPECT_EQ(dflt.verify, config::verify_mode::none);
  EXPECT_EQ(dflt.min_version, config::tls_version::v1_3);
  EXPECT_EQ(dflt.min_cipher_bits, 256u);
  EXPECT_EQ(dflt.source, policy_source::default_policy);
}

TEST(policy_table, compile_of_an_empty_policy_list) {
  auto t = compile_ok(parse_ok(""));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->size(), 0u);
  EXPECT_EQ(t->lookup("bank.example").policy.tls, config::tls_policy::opportunistic);
  EXPECT_EQ(std::string(to_string(t->lookup("x.example").policy.source)), "default");
}

TEST(policy_table, many_patterns_all_found) {
  builder b(effective_policy{});
  for (unsigned i = 0; i < 20000; ++i) {
    ASSERT_TRUE(b.add(name_of("d", i, ".example"), with_bits(i % 256)));
    ASSERT_TRUE(b.add(name_of(".s", i, ".example"), with_bits((i + 1) % 256)));
  }
  auto r = std::move(b).build();
  ASSERT_TRUE(r.ok());
  const table& t = **r;
  for (unsigned i = 0; i < 20000; ++i) {
    std::string d = name_of("d", i, ".example");
    ASSERT_EQ(t.lookup(d).pattern, d);
    ASSERT_EQ(t.lookup(d).policy.min_cipher_bits, i % 256);
    std::string s = name_of("mx.s", i, ".example");
    ASSERT_EQ(t.lookup(s).pattern, s.substr(2));
    ASSERT_EQ(t.lookup(s).policy.min_cipher_bits, (i + 1) % 256);
    ASSERT_EQ(t.lookup(name_of("q", i, ".example")).pattern, "");
  }
}

TEST(policy_table, lookup_does_not_allocate) {
  auto t = compile_ok(parse_ok(k_precedence));
  ASSERT_TRUE(t);
  // Long enough to defeat any small-string buffer if a lookup built a std::string.
  const char* names[] = {"BANK.EXAMPLE", "a.very.long.subdomain.name.of.the.eu.bank.example",
                         "nothing-matches-this-rather-long-domain-name.example.org", "x.example."};
  size_t sum = 0;
  uint64_t before = test::allocs.load();
  for (int round = 0; round < 1000; ++round)
    for (const char* n : names) sum += t->lookup(n).pattern.size();
  EXPECT_EQ(test::allocs.load(), before);
  EXPECT_GT(sum, 0u);
  // The counter does count (so the check above can fail).
  std::string probe(100, 'x');
  EXPECT_GT(test::allocs.load(), before);
  EXPECT_EQ(probe.size(), 100u);
}

// MTA-STS mx patterns (RFC 8461 §4.1): exact names, and "*." matching exactly one label.
TEST(mta_sts_rules, matches_exact_and_one_label_wildcards) {
  sr::policy::mta_sts_rules r;
  r.mx = {"mx1.example.com", "*.example.net"};
  EXPECT_TRUE(r.matches("mx1.example.com"));
  EXPECT_TRUE(r.matches("MX1.Example.COM."));
  EXPECT_FALSE(r.matches("mx2.example.com"));
  EXPECT_TRUE(r.matches("a.example.net"));
  EXPECT_FALSE(r.matches("example.net"));
  EXPECT_FALSE(r.matches("a.b.example.net"));
  EXPECT_FALSE(r.matches(".example.net"));
  EXPECT_FALSE(r.matches(""));
}
