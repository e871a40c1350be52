// Reply formatting and the incremental reply parser (multi-line, any byte split).
#include "sealrelay/smtp/reply.hh"

#include <gtest/gtest.h>

namespace {

using namespace sr::smtp;

TEST(reply, format) {
  std::string out;
  append_reply(out, 250, "2.1.0", "Ok");
  append_reply(out, 354, "", "End data with <CR><LF>.<CR><LF>");
  append_reply_line(out, 250, false, "mx.example");
  append_reply_line(out, 250, true, "PIPELINING");
  EXPECT_EQ(out, "250 2.1.0 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250-mx.example\r\n250 PIPELINING\r\n");
}

TEST(reply_parser, multi_line_reply_at_every_split) {
  const std::string wire = "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n220 2.0.0 go\r\n";
  for (size_t cut = 0; cut <= wire.size(); ++cut) {
    reply_parser p;
    size_t used = 0, total = 0;
    auto st = p.feed(std::string_view(wire).substr(0, cut), used);
    total += used;
    if (st == reply_parser::status::need_more) {
      st = p.feed(std::string_view(wire).substr(cut), used);
      total += used;
    }
    ASSERT_EQ(st, reply_parser::status::done) << cut;
    EXPECT_EQ(p.get().code(), 250u);
    ASSERT_EQ(p.get().line_count(), 3u);
    EXPECT_EQ(p.get().line(0), "mx.example");
    EXPECT_EQ(p.get().line(1), "PIPELINING");
    EXPECT_EQ(p.get().line(2), "SIZE 1000");
    EXPECT_EQ(total, 47u);  // stops right after the first reply
    p.next();
    ASSERT_EQ(p.feed(std::string_view(wire).substr(total), used), reply_parser::status::done);
    EXPECT_EQ(p.get().code(), 220u);
    EXPECT_EQ(p.get().enhanced(), "2.0.0");
  }
}

TEST(reply_parser, pipelined_replies_one_at_a_time) {
  std::string wire = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.7.1 <x@y>: Relay access denied\r\n354 go\r\n";
  reply_parser p;
  std::vector<unsigned> codes;
  std::string_view rest = wire;
  while (!rest.empty()) {
    size_t used = 0;
    ASSERT_EQ(p.feed(rest, used), reply_parser::status::done);
    codes.push_back(p.get().code());
    rest.remove_prefix(used);
    p.next();
  }
  EXPECT_EQ(codes, (std::vector<unsigned>{250, 250, 554, 354}));
}

TEST(reply_parser, bare_code_and_bare_lf_accepted) {
  reply_parser p;
  size_t used = 0;
  ASSERT_EQ(p.feed("250\n", used), reply_parser::status::done);
  EXPECT_EQ(p.get().line(0), "");
  EXPECT_EQ(p.get().enhanced(), "");
  EXPECT_TRUE(p.get().positive());
}

TEST(reply_parser, malformed_replies_are_errors) {
  for (const char* bad : {"25 x\r\n", "abc def\r\n", "250x\r\n", "250-a\r\n251 b\r\n", "600 x\r\n"}) {
    reply_parser p;
    size_t used = 0;
    EXPECT_EQ(p.feed(bad, used), reply_parser::status::error) << bad;
  }
  reply_parser p;
  size_t used = 0;
  std::string huge(reply_parser::max_line + 1, 'x');
  EXPECT_EQ(p.feed("250 " + huge, used), reply_parser::status::error);
}

TEST(reply_parser, enhanced_code) {
  reply_parser p;
  size_t used = 0;
  ASSERT_EQ(p.feed("550 5.7.1 denied\r\n", used), reply_parser::status::done);
  EXPECT_EQ(p.get().enhanced(), "5.7.1");
  EXPECT_TRUE(p.get().permanent());
  p.next();
  ASSERT_EQ(p.feed("451 4.3.123 later\r\n", used), reply_parser::status::done);
  EXPECT_EQ(p.get().enhanced(), "4.3.123");
  EXPECT_TRUE(p.get().transient());
  p.next();
  ASSERT_EQ(p.feed("250 2.0.0x\r\n", used), reply_parser::status::done);
  EXPECT_EQ(p.get().enhanced(), "");
}

}  // namespace
