// The sidecar wire codec: every frame type round-trips, bytes may arrive one at a time,
// and a broken stream (wrong version, unknown type, over-long or short fields, trailing
// bytes, counts larger than the frame) fails without reading past the frame.
#include <gtest/gtest.h>

#include <string>

#include "sealrelay/fallback/protocol.hh"

using namespace sr::fallback::wire;

namespace {

handoff sample_handoff() {
  handoff h;
  h.request_id = 0x0102030405060708ull;
  h.queue_id = "6B0AD79A01000000";
  h.from = "alice@sender.test";
  h.domain = "bank.test";
  h.rcpts = {"bob@bank.test", "carol@bank.test"};
  h.segment = "0/00000003.seg";
  h.offset = 4096;
  h.length = 10240;
  h.reason = 7;
  h.chain = {method::pgp, method::smime, method::escrow};
  return h;
}

std::string encoded(const frame& f) {
  std::string s;
  encode(f, s);
  return s;
}

}  // namespace

TEST(fallback_wire, every_frame_round_trips_even_byte_by_byte) {
  result res{42, {outcome::pgp, outcome::escrowed}, "no key for carol@bank.test: escrowed"};
  std::string stream = encoded(hello{1234, "relay.test"}) + encoded(hello_ok{"sealrelay-fallback 0.1"}) +
                       encoded(sample_handoff()) + encoded(res) + encoded(ping{9}) + encoded(pong{9});
  decoder d;
  std::vector<frame> got;
  for (char c : stream) {
    d.feed(std::string_view(&c, 1));
    while (auto f = d.next()) got.push_back(std::move(*f));
  }
  ASSERT_FALSE(d.failed()) << d.error();
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(std::get<hello>(got[0]).engine_pid, 1234u);
  EXPECT_EQ(std::get<hello>(got[0]).node, "relay.test");
  EXPECT_EQ(std::get<hello_ok>(got[1]).sidecar_version, "sealrelay-fallback 0.1");
  const auto& h = std::get<handoff>(got[2]);
  const auto want = sample_handoff();
  EXPECT_EQ(h.request_id, want.request_id);
  EXPECT_EQ(h.queue_id, want.queue_id);
  EXPECT_EQ(h.from, want.from);
  EXPECT_EQ(h.domain, want.domain);
  EXPECT_EQ(h.rcpts, want.rcpts);
  EXPECT_EQ(h.segment, want.segment);
  EXPECT_EQ(h.offset, want.offset);
  EXPECT_EQ(h.length, want.length);
  EXPECT_EQ(h.reason, want.reason);
  EXPECT_EQ(h.chain, want.chain);
  const auto& r = std::get<result>(got[3]);
  EXPECT_EQ(r.request_id, 42u);
  EXPECT_EQ(r.outcomes, res.outcomes);
  EXPECT_EQ(r.detail, res.detail);
  EXPECT_EQ(std::get<ping>(got[4]).nonce, 9u);
  EXPECT_EQ(std::get<pong>(got[5]).nonce, 9u);
}

TEST(fallback_wire, the_encoding_is_length_version_type_then_fields) {
  // Fixed bytes: a peer in another language can be written from this test.
  EXPECT_EQ(encoded(ping{0x0a0b}), std::string("\x00\x00\x00\x0a\x01\x05\x00\x00\x00\x00\x00\x00\x0a\x0b", 14));
}

TEST(fallback_wire, a_broken_stream_fails_and_stays_failed) {
  auto fails = [](std::string bytes, std::string_view why) {
    decoder d;
    d.feed(bytes);
    EXPECT_FALSE(d.next().has_value());
    EXPECT_TRUE(d.failed()) << why;
    d.feed(encoded(ping{1}));
    EXPECT_FALSE(d.next().has_value()) << why << ": a failed decoder stays failed";
  };
  std::string ok = encoded(sample_handoff());
  std::string v2 = ok;
  v2[4] = 2;
  fails(v2, "another version");
  std::string unknown = encoded(ping{1});
  unknown[5] = 99;
  fails(unknown, "unknown type");
  fails(std::string("\x00\x20\x00\x00", 4), "frame over max_frame");
  fails(std::string("\x00\x00\x00\x01\x01", 5), "frame too short for version and type");
  // A string length running past the frame end.
  std::string h = encoded(hello{1, "relay.test"});
  h[13] = char(0x7f);
  fails(h, "string past the frame");
  // Trailing bytes inside the frame.
  std::string t = encoded(ping{1});
  t[3] = char(t[3] + 1);
  t += 'x';
  fails(t, "trailing bytes");
  // A recipient count far larger than the frame could hold: no huge allocation, a failure.
  handoff none = sample_handoff();
  std::string c = encoded(none);
  size_t rcpt_count_at = 4 + 2 + 8 + (4 + none.queue_id.size()) + (4 + none.from.size()) + (4 + none.domain.size());
  c[rcpt_count_at] = char(0xff);
  fails(c, "count larger than the frame");
  // A hand-off without recipients or without a chain is not a hand-off.
  handoff empty = sample_handoff();
  empty.rcpts.clear();
  fails(encoded(empty), "no recipients");
  handoff nochain = sample_handoff();
  nochain.chain.clear();
  fails(encoded(nochain), "no chain");
  // An outcome byte that is not one.
  std::string res = encoded(result{1, {outcome::pgp}, ""});
  res[4 + 2 + 8 + 4] = 0;
  fails(res, "bad outcome");
}

TEST(fallback_wire, a_partial_frame_waits_for_more) {
  std::string f = encoded(sample_handoff());
  decoder d;
  d.feed(std::string_view(f).substr(0, f.size() - 1));
  EXPECT_FALSE(d.next().has_value());
  EXPECT_FALSE(d.failed());
  d.feed(std::string_view(f).substr(f.size() - 1));
  auto got = d.next();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(std::get<handoff>(*got).rcpts.size(), 2u);
}

TEST(fallback_wire, outputs_submit_and_retract_round_trip) {
  output o;
  o.kind = 4;
  o.from = "";
  o.rcpts = {"bob@bank.test"};
  o.msg_id = "abc@relay.test";
  o.path = "var/fallback/outbox/1.eml";
  result res{7, {outcome::pgp}, "pgp", {o}};
  submit sub{3, o};
  std::string stream = encoded(res) + encoded(sub) + encoded(submitted{3, true, ""}) +
                       encoded(retract{5, "m1@x.test"}) + encoded(retracted{5, true, 2, ""});
  decoder d;
  d.feed(stream);
  auto r = d.next();
  ASSERT_TRUE(r) << d.error();
  const auto& rr = std::get<result>(*r);
  ASSERT_EQ(rr.outputs.size(), 1u);
  EXPECT_EQ(rr.outputs[0].kind, 4);
  EXPECT_EQ(rr.outputs[0].from, "");
  EXPECT_EQ(rr.outputs[0].rcpts, o.rcpts);
  EXPECT_EQ(rr.outputs[0].msg_id, o.msg_id);
  EXPECT_EQ(rr.outputs[0].path, o.path);
  auto s = d.next();
  ASSERT_TRUE(s);
  EXPECT_EQ(std::get<submit>(*s).submit_id, 3u);
  EXPECT_EQ(std::get<submit>(*s).mail.path, o.path);
  auto sd = d.next();
  ASSERT_TRUE(sd);
  EXPECT_TRUE(std::get<submitted>(*sd).ok);
  auto rt = d.next();
  ASSERT_TRUE(rt);
  EXPECT_EQ(std::get<retract>(*rt).msg_id, "m1@x.test");
  auto rd = d.next();
  ASSERT_TRUE(rd);
  EXPECT_EQ(std::get<retracted>(*rd).count, 2u);
  EXPECT_FALSE(d.next());
  EXPECT_FALSE(d.failed());
}

TEST(fallback_wire, an_output_without_recipients_or_path_or_a_bad_bool_breaks_the_stream) {
  output o;
  o.rcpts = {"bob@bank.test"};
  o.path = "";
  decoder d;
  d.feed(encoded(submit{1, o}));
  EXPECT_FALSE(d.next());
  EXPECT_TRUE(d.failed());
  std::string s = encoded(submitted{1, true, ""});
  s[4 + 1 + 1 + 8] = 2;  // the bool byte
  decoder d2;
  d2.feed(s);
  EXPECT_FALSE(d2.next());
  EXPECT_TRUE(d2.failed());
}
