// Token buckets, rate parsing and the back-off rules (queue/shaping.hh): the arithmetic the
// scheduler's shaping rests on, and that the built-in rules match what the providers send
// and not ordinary deferrals.
#include <gtest/gtest.h>

#include "sealrelay/config/config.hh"
#include "sealrelay/queue/shaping.hh"

namespace sr::queue {
namespace {

TEST(TokenBucket, HoldsOneSecondsWorthAndRefillsAtTheRate) {
  token_bucket b;
  EXPECT_FALSE(b.limited());
  EXPECT_GT(b.whole(0), 1000u);  // unlimited
  b.set_rate(4, 1000);
  // Starts full at capacity 1 (the unlimited bucket's one token), then fills to 4.
  EXPECT_EQ(b.whole(1000), 1u);
  b.take(1000);
  EXPECT_EQ(b.whole(1000), 0u);
  EXPECT_EQ(b.whole(1249), 0u);
  EXPECT_EQ(b.whole(1250), 1u);  // 4/s: one token per 250 ms
  EXPECT_EQ(b.whole(9000), 4u);  // capped at one second's worth
  for (int i = 0; i < 4; ++i) b.take(9000);
  EXPECT_EQ(b.whole(9000), 0u);
  b.refund();
  EXPECT_EQ(b.whole(9000), 1u);
}

TEST(TokenBucket, SlowRatesKeepACapacityOfOne) {
  token_bucket b;
  b.set_rate(1800.0 / 3600.0, 0);  // "1800/h": one token per 2 s
  b.take(0);
  EXPECT_EQ(b.whole(1999), 0u);
  EXPECT_EQ(b.whole(2000), 1u);
  EXPECT_EQ(b.whole(100000), 1u);  // never more than one
  // Halved (a back-off): tokens earned so far are kept, the refill slows.
  b.take(100000);
  b.whole(101000);                 // half a token earned at the old rate
  b.set_rate(900.0 / 3600.0, 101000);
  EXPECT_EQ(b.whole(102999), 0u);
  EXPECT_EQ(b.whole(103000), 1u);  // the other half at 0.25/s: 2 s more
}

TEST(Rate, ParsesUnitsAndRefusesTheRest) {
  auto r = config::parse_rate("5000/h");
  ASSERT_TRUE(r);
  EXPECT_NEAR(r->per_second(), 5000.0 / 3600.0, 1e-9);
  EXPECT_EQ(config::format_rate(*r), "5000/h");
  ASSERT_TRUE(config::parse_rate("1.5/s"));
  EXPECT_NEAR(config::parse_rate("1.5/s")->per_second(), 1.5, 1e-9);
  EXPECT_EQ(config::format_rate(*config::parse_rate("100/min")), "100/min");
  for (const char* bad : {"", "5", "/h", "5/week", "-1/s", "0/s", "5 /h", "1e3/s", "abc/min"})
    EXPECT_FALSE(config::parse_rate(bad)) << bad;
}

TEST(Backoff, BuiltInRulesMatchTheProvidersDeferrals) {
  config::config cfg;
  backoff_rules rules(cfg);
  const std::pair<const char*, const char*> hits[] = {
      {"421 4.7.28 [192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating from your IP "
       "address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited.",
       "builtin:gmail-4.7.28"},
      {"421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints",
       "builtin:yahoo-ts"},
      {"451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.",
       "builtin:microsoft-4.7.5xx-6xx"},
      {"452 4.7.500 Server busy. Please try again later from [192.0.2.1]", "builtin:microsoft-4.7.5xx-6xx"},
      {"450 4.2.0 Rate limit exceeded, slow down", "builtin:rate-limited"},
  };
  for (const auto& [reply, label] : hits) {
    const config::backoff_rule* r = rules.match(reply);
    ASSERT_TRUE(r) << reply;
    EXPECT_EQ(r->label, label) << reply;
    EXPECT_EQ(r->factor, 0.5);
  }
  for (const char* miss : {"450 4.2.1 Mailbox busy", "421 4.3.2 Service shutting down", "550 5.1.1 No such user",
                           "451 4.7.1 Greylisted, try again in 5 minutes", ""})
    EXPECT_FALSE(rules.match(miss)) << miss;
}

TEST(Backoff, OperatorRulesComeFirstAndDefaultsCanBeOff) {
  auto cfg = config::parse(
      "[[listen]]\naddress = \"127.0.0.1:2525\"\n[outbound]\nbackoff_defaults = false\n"
      "[[backoff]]\nmatch = \"slow down\"\nfactor = 0.25\nduration = \"5m\"\n",
      "t.toml");
  ASSERT_TRUE(cfg) << cfg.err();
  backoff_rules rules(cfg.value());
  const config::backoff_rule* r = rules.match("450 4.2.0 Rate limit exceeded, SLOW DOWN");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->label, "backoff[0]");
  EXPECT_EQ(r->factor, 0.25);
  EXPECT_FALSE(rules.match("421 4.7.28 unusual rate of unsolicited mail"));  // built-ins off
}

TEST(ShapingMatch, MxHostsMatchWithoutRegardToCaseOrTheRootDot) {
  auto cfg = config::parse(
      "[[listen]]\naddress = \"127.0.0.1:2525\"\n"
      "[[shaping]]\nname = \"google\"\nmx = \"*.google.com\"\n"
      "[[shaping]]\nname = \"one\"\nmx = \"mx1.google.com\"\n",
      "t.toml");
  ASSERT_TRUE(cfg) << cfg.err();
  const config::shaping_entry* e = config::shaping_for_mx(cfg.value(), "ASPMX.L.Google.COM.");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->name, "google");
  e = config::shaping_for_mx(cfg.value(), "MX1.google.com");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->name, "one");  // the exact host beats the suffix
  EXPECT_FALSE(config::shaping_for_mx(cfg.value(), "google.com"));  // "*." needs a label below
  EXPECT_FALSE(config::shaping_for_mx(cfg.value(), "mx.notgoogle.com"));
}

}  // namespace
}  // namespace sr::queue
