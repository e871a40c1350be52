// The escrow rules without a store (escrow_store.hh: access_of, apply_code_issue,
// apply_code_try): the boundaries of expiry and code validity, and the state names.
#include <gtest/gtest.h>

#include "sealrelay/fallback/escrow_store.hh"

namespace sr::fallback {
namespace {

using namespace std::chrono_literals;

const seconds_t t0{std::chrono::seconds{1'800'000'000}};

escrow_record record() {
  escrow_record r;
  r.created = t0;
  r.expires = t0 + 1h;
  return r;
}

code_hash code_of(uint8_t v) {
  code_hash c;
  c.fill(v);
  return c;
}

TEST(EscrowRules, StateNamesRoundTrip) {
  for (auto s : {escrow_state::active, escrow_state::expired, escrow_state::retracted,
                 escrow_state::locked})
    EXPECT_EQ(escrow_state_from(to_string(s)), s);
  EXPECT_FALSE(escrow_state_from("Active"));
  EXPECT_FALSE(escrow_state_from(""));
}

TEST(EscrowRules, ExpiryBoundary) {
  auto r = record();
  EXPECT_EQ(access_of(r, t0 + 1h - 1s), access::ok);
  EXPECT_EQ(access_of(r, t0 + 1h), access::expired);
  r.state = escrow_state::locked;
  EXPECT_EQ(access_of(r, t0), access::locked);
  EXPECT_EQ(access_of(r, t0 + 1h), access::expired);
  r.state = escrow_state::retracted;
  EXPECT_EQ(access_of(r, t0 + 2h), access::retracted);
}

TEST(EscrowRules, CodeValidityBoundary) {
  auto r = record();
  ASSERT_EQ(apply_code_issue(r, code_of(1), t0), access::ok);
  EXPECT_EQ(r.code_expires, t0 + 10min);
  auto early = r;
  EXPECT_EQ(apply_code_try(early, code_of(1), t0 + 10min - 1s).verdict, code_verdict::accepted);
  EXPECT_FALSE(early.code);
  auto late = r;
  EXPECT_EQ(apply_code_try(late, code_of(1), t0 + 10min).verdict, code_verdict::code_expired);
  EXPECT_FALSE(late.code);
  EXPECT_EQ(late.wrong_codes, 0);
}

TEST(EscrowRules, LockOnTheFifthWrongCode) {
  auto r = record();
  ASSERT_EQ(apply_code_issue(r, code_of(1), t0), access::ok);
  for (int i = 1; i <= max_wrong_codes; ++i) {
    auto t = apply_code_try(r, code_of(2), t0);
    EXPECT_EQ(t.verdict, i < max_wrong_codes ? code_verdict::wrong : code_verdict::locked_now);
    EXPECT_EQ(t.tries_left, max_wrong_codes - i);
  }
  EXPECT_EQ(r.state, escrow_state::locked);
  auto t = apply_code_try(r, code_of(1), t0);
  EXPECT_EQ(t.verdict, code_verdict::refused);
  EXPECT_EQ(t.refused, access::locked);
  EXPECT_EQ(apply_code_issue(r, code_of(3), t0), access::locked);
}

}  // namespace
}  // namespace sr::fallback
