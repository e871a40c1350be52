// The escrow store suite: the store operations and the escrow facade (deposit, open, codes,
// expiry, retraction) against whichever backend the instantiation's factory makes. Time is
// injected: every call gets its `now`.
#include "store_suite.hh"

#include <algorithm>
#include <cctype>

namespace sr::fallback::test {
namespace {

using namespace std::chrono_literals;

bool contains(std::span<const uint8_t> hay, std::string_view needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

TEST_P(EscrowStore, DepositThenOpenRoundTrips) {
  auto l = deposit();
  EXPECT_EQ(l.id.size(), 22u);
  EXPECT_EQ(l.secret.size(), 43u);
  auto o = open(l);
  ASSERT_EQ(o.status, escrow::open_status::ok) << escrow::to_string(o.status);
  EXPECT_EQ(text_of(o.message), body);
  EXPECT_EQ(o.views, 1);
  EXPECT_EQ(open(l).views, 2);
}

TEST_P(EscrowStore, PeekOpensWithoutCountingAView) {
  auto l = deposit();
  auto p = escrow::peek(*_store, l.id, l.secret, t0 + 1s);
  ASSERT_TRUE(p) << p.err();
  ASSERT_EQ(p->status, escrow::open_status::ok) << escrow::to_string(p->status);
  EXPECT_EQ(text_of(p->message), body);
  EXPECT_EQ(p->views, 0);
  auto wrong = escrow::peek(*_store, l.id, deposit("<m2@bank.example>").secret, t0 + 1s);
  ASSERT_TRUE(wrong) << wrong.err();
  EXPECT_EQ(wrong->status, escrow::open_status::wrong_secret);
  EXPECT_EQ(open(l).views, 1);  // the peeks counted nothing
  auto late = escrow::peek(*_store, l.id, l.secret, t0 + 31 * 24h);
  ASSERT_TRUE(late) << late.err();
  EXPECT_EQ(late->status, escrow::open_status::expired);
}

TEST_P(EscrowStore, LinksAreFreshEachDeposit) {
  auto a = deposit();
  auto b = deposit();
  EXPECT_NE(a.id, b.id);
  EXPECT_NE(a.secret, b.secret);
}

TEST_P(EscrowStore, RecordHoldsNeitherPlaintextNorSecretNorId) {
  auto l = deposit("<m1@bank.example>");
  auto found = _store->find_by_link_hash(escrow::hash_link_id(l.id));
  ASSERT_TRUE(found) << found.err();
  ASSERT_TRUE(*found);
  const escrow_record& r = **found;
  EXPECT_EQ(r.msg_id, "m1@bank.example");  // stored without <>
  EXPECT_EQ(r.recipient, "pat@clinic.example");
  EXPECT_EQ(r.state, escrow_state::active);
  EXPECT_EQ(r.expires, t0 + 30 * 24h);
  EXPECT_EQ(r.sealed.size(), body.size() + tls::seal_overhead);
  for (std::span<const uint8_t> field : {std::span<const uint8_t>(r.sealed),
                                         std::span<const uint8_t>(r.salt),
                                         std::span<const uint8_t>(r.link)}) {
    EXPECT_FALSE(contains(field, "Confidential"));
    EXPECT_FALSE(contains(field, l.secret));
    EXPECT_FALSE(contains(field, l.id));
  }
}

TEST_P(EscrowStore, WrongSecretOrIdDoesNotOpen) {
  auto l = deposit();
  auto other = deposit();
  EXPECT_EQ(open({l.id, other.secret}).status, escrow::open_status::wrong_secret);
  std::string flipped = l.secret;
  flipped[5] = flipped[5] == 'A' ? 'B' : 'A';
  EXPECT_EQ(open({l.id, flipped}).status, escrow::open_status::wrong_secret);
  EXPECT_EQ(open({l.id, "short"}).status, escrow::open_status::wrong_secret);
  EXPECT_EQ(open({l.id, l.secret + "x"}).status, escrow::open_status::wrong_secret);
  EXPECT_EQ(open({"AAAAAAAAAAAAAAAAAAAAAA", l.secret}).status, escrow::open_status::unknown);
  EXPECT_EQ(open({"../../etc/passwd", l.secret}).status, escrow::open_status::unknown);
  // A refused secret counts no view.
  EXPECT_EQ(open(l).views, 1);
}

TEST_P(EscrowStore, SealedBytesMovedToAnotherRecordDoNotOpen) {
  auto a = deposit("<a@x>");
  auto found = _store->find_by_link_hash(escrow::hash_link_id(a.id));
  ASSERT_TRUE(found && *found);
  // The same sealed bytes and salt under another link hash (a store-side swap).
  escrow_record moved = **found;
  const std::string other_id = "BBBBBBBBBBBBBBBBBBBBBB";
  moved.link = escrow::hash_link_id(other_id);
  ASSERT_TRUE(_store->put(moved));
  EXPECT_EQ(open({other_id, a.secret}).status, escrow::open_status::wrong_secret);
  // The original still opens.
  EXPECT_EQ(open(a).status, escrow::open_status::ok);
}

TEST_P(EscrowStore, PutRefusesADuplicateLinkHash) {
  auto l = deposit();
  auto found = _store->find_by_link_hash(escrow::hash_link_id(l.id));
  ASSERT_TRUE(found && *found);
  EXPECT_FALSE(_store->put(**found));
}

TEST_P(EscrowStore, ExpiryShowsNoContent) {
  auto l = deposit("<m@x>", "pat@clinic.example", 1h);
  EXPECT_EQ(open(l, t0 + 1h - 1s).status, escrow::open_status::ok);
  // Expired at its expiry even before a sweep ran.
  EXPECT_EQ(open(l, t0 + 1h).status, escrow::open_status::expired);
  auto kept = deposit("<n@x>", "pat@clinic.example", 2h);
  auto swept = _store->expire(t0 + 1h);
  ASSERT_TRUE(swept) << swept.err();
  ASSERT_EQ(swept->size(), 1u);
  EXPECT_EQ((*swept)[0].msg_id, "m@x");
  EXPECT_EQ((*swept)[0].recipient, "pat@clinic.example");
  EXPECT_EQ((*swept)[0].link, escrow::hash_link_id(l.id));
  auto found = _store->find_by_link_hash(escrow::hash_link_id(l.id));
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->state, escrow_state::expired);
  EXPECT_TRUE((*found)->sealed.empty());
  // Even a clock set back does not bring it back.
  EXPECT_EQ(open(l, t0 + 1s).status, escrow::open_status::expired);
  // A second sweep finds nothing new; the other record is untouched.
  auto again = _store->expire(t0 + 1h);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->empty());
  EXPECT_EQ(open(kept, t0 + 1h).status, escrow::open_status::ok);
}

TEST_P(EscrowStore, RetractionByMessageId) {
  auto a = deposit("<same@bank.example>", "one@clinic.example");
  auto b = deposit("<same@bank.example>", "two@clinic.example");
  auto c = deposit("<other@bank.example>", "one@clinic.example");
  auto gone = escrow::retract(*_store, "same@bank.example");
  ASSERT_TRUE(gone) << gone.err();
  ASSERT_EQ(gone->size(), 2u);
  std::vector<std::string> rcpts{(*gone)[0].recipient, (*gone)[1].recipient};
  std::sort(rcpts.begin(), rcpts.end());
  EXPECT_EQ(rcpts, (std::vector<std::string>{"one@clinic.example", "two@clinic.example"}));
  EXPECT_EQ(open(a).status, escrow::open_status::retracted);
  EXPECT_EQ(open(b).status, escrow::open_status::retracted);
  EXPECT_EQ(open(c).status, escrow::open_status::ok);
  auto found = _store->find_by_link_hash(escrow::hash_link_id(a.id));
  ASSERT_TRUE(found && *found);
  EXPECT_TRUE((*found)->sealed.empty());
  // Retracting again (with <>) changes nothing; a retracted record does not expire later.
  auto again = escrow::retract(*_store, "<same@bank.example>");
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->empty());
  auto swept = _store->expire(t0 + 365 * 24h);
  ASSERT_TRUE(swept);
  EXPECT_EQ(swept->size(), 1u);  // only c
  EXPECT_EQ(open(a, t0 + 365 * 24h).status, escrow::open_status::retracted);
}

TEST_P(EscrowStore, RightCodeIsAcceptedOnce) {
  auto l = deposit();
  auto code = escrow::issue_code(*_store, l.id, t0);
  ASSERT_TRUE(code) << code.err();
  ASSERT_EQ(code->why, access::ok);
  EXPECT_EQ(code->recipient, "pat@clinic.example");
  ASSERT_EQ(code->code.size(), 6u);
  EXPECT_TRUE(std::all_of(code->code.begin(), code->code.end(), ::isdigit));
  auto t = escrow::check_code(*_store, l.id, code->code, t0 + 60s);
  ASSERT_TRUE(t) << t.err();
  EXPECT_EQ(t->verdict, code_verdict::accepted);
  EXPECT_EQ(t->tries_left, max_wrong_codes);
  // One-time: the same code again finds no code.
  t = escrow::check_code(*_store, l.id, code->code, t0 + 61s);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->verdict, code_verdict::no_code);
}

TEST_P(EscrowStore, NoCodeIssuedIsNotCounted) {
  auto l = deposit();
  for (int i = 0; i < 2 * max_wrong_codes; ++i) {
    auto t = escrow::check_code(*_store, l.id, "123456", t0);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->verdict, code_verdict::no_code);
  }
  EXPECT_EQ(open(l).status, escrow::open_status::ok);
}

TEST_P(EscrowStore, FiveWrongCodesLock) {
  auto l = deposit();
  auto code = escrow::issue_code(*_store, l.id, t0);
  ASSERT_TRUE(code && code->why == access::ok);
  const std::string wrong = code->code == "000000" ? "000001" : "000000";
  for (int i = 1; i < max_wrong_codes; ++i) {
    auto t = escrow::check_code(*_store, l.id, wrong, t0 + 1s);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->verdict, code_verdict::wrong) << "try " << i;
    EXPECT_EQ(t->tries_left, max_wrong_codes - i);
  }
  auto last = escrow::check_code(*_store, l.id, wrong, t0 + 2s);
  ASSERT_TRUE(last);
  EXPECT_EQ(last->verdict, code_verdict::locked_now);
  EXPECT_EQ(last->tries_left, 0);
  // Locked: the right code, a new code and the link all fail.
  auto right = escrow::check_code(*_store, l.id, code->code, t0 + 3s);
  ASSERT_TRUE(right);
  EXPECT_EQ(right->verdict, code_verdict::refused);
  EXPECT_EQ(right->refused, access::locked);
  auto fresh = escrow::issue_code(*_store, l.id, t0 + 4s);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->why, access::locked);
  EXPECT_TRUE(fresh->code.empty());
  EXPECT_EQ(open(l).status, escrow::open_status::locked);
  // Only the right secret learns that: a guessed one reads as wrong, like any other.
  std::string guessed = l.secret;
  guessed[0] = guessed[0] == 'A' ? 'B' : 'A';
  EXPECT_EQ(open({l.id, guessed}).status, escrow::open_status::wrong_secret);
  auto peeked = escrow::peek(*_store, l.id, l.secret, t0 + 5s);
  ASSERT_TRUE(peeked);
  EXPECT_EQ(peeked->status, escrow::open_status::locked);
  EXPECT_TRUE(peeked->message.empty());
  // A locked record still expires (and then says expired).
  auto swept = _store->expire(t0 + 31 * 24h);
  ASSERT_TRUE(swept);
  EXPECT_EQ(swept->size(), 1u);
  EXPECT_EQ(open(l, t0 + 31 * 24h).status, escrow::open_status::expired);
}

TEST_P(EscrowStore, WrongCodesCountAcrossNewCodes) {
  auto l = deposit();
  for (int i = 1; i <= max_wrong_codes; ++i) {
    auto code = escrow::issue_code(*_store, l.id, t0 + std::chrono::seconds(i));
    ASSERT_TRUE(code && code->why == access::ok) << "code " << i;
    const std::string wrong = code->code == "999999" ? "999998" : "999999";
    auto t = escrow::check_code(*_store, l.id, wrong, t0 + std::chrono::seconds(i));
    ASSERT_TRUE(t);
    EXPECT_EQ(t->verdict, i < max_wrong_codes ? code_verdict::wrong : code_verdict::locked_now);
  }
  EXPECT_EQ(open(l).status, escrow::open_status::locked);
}

TEST_P(EscrowStore, CodeExpiresAfterTenMinutes) {
  auto l = deposit();
  auto code = escrow::issue_code(*_store, l.id, t0);
  ASSERT_TRUE(code && code->why == access::ok);
  auto late = escrow::check_code(*_store, l.id, code->code, t0 + 10min);
  ASSERT_TRUE(late);
  EXPECT_EQ(late->verdict, code_verdict::code_expired);
  EXPECT_EQ(late->tries_left, max_wrong_codes);  // not counted
  // Dropped: even an earlier clock does not revive it.
  auto after = escrow::check_code(*_store, l.id, code->code, t0 + 1s);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->verdict, code_verdict::no_code);
  // A new code just inside its ten minutes works; a later code replaces an earlier one.
  auto first = escrow::issue_code(*_store, l.id, t0 + 20min);
  auto second = escrow::issue_code(*_store, l.id, t0 + 21min);
  ASSERT_TRUE(first && second);
  if (first->code != second->code) {
    auto old = escrow::check_code(*_store, l.id, first->code, t0 + 22min);
    ASSERT_TRUE(old);
    EXPECT_EQ(old->verdict, code_verdict::wrong);
  }
  auto ok = escrow::check_code(*_store, l.id, second->code, t0 + 31min - 1s);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->verdict, code_verdict::accepted);
}

TEST_P(EscrowStore, CodesRefusedForUnusableRecords) {
  auto l = deposit("<r@x>", "pat@clinic.example", 1h);
  auto unknown = escrow::issue_code(*_store, "CCCCCCCCCCCCCCCCCCCCCC", t0);
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->why, access::unknown);
  auto expired = escrow::issue_code(*_store, l.id, t0 + 1h);
  ASSERT_TRUE(expired);
  EXPECT_EQ(expired->why, access::expired);
  auto code = escrow::issue_code(*_store, l.id, t0);
  ASSERT_TRUE(code && code->why == access::ok);
  ASSERT_TRUE(escrow::retract(*_store, "r@x"));
  auto t = escrow::check_code(*_store, l.id, code->code, t0 + 1s);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->verdict, code_verdict::refused);
  EXPECT_EQ(t->refused, access::retracted);
  auto nobody = escrow::check_code(*_store, "CCCCCCCCCCCCCCCCCCCCCC", "123456", t0);
  ASSERT_TRUE(nobody);
  EXPECT_EQ(nobody->verdict, code_verdict::refused);
  EXPECT_EQ(nobody->refused, access::unknown);
}

TEST_P(EscrowStore, MarkViewedCountsOnlyUsableRecords) {
  auto l = deposit("<v@x>");
  const auto link = escrow::hash_link_id(l.id);
  auto v = _store->mark_viewed(link, t0);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->why, access::ok);
  EXPECT_EQ(v->views, 1);
  ASSERT_TRUE(escrow::retract(*_store, "v@x"));
  v = _store->mark_viewed(link, t0);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->why, access::retracted);
  v = _store->mark_viewed(escrow::hash_link_id("nobody"), t0);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->why, access::unknown);
}

}  // namespace
}  // namespace sr::fallback::test
