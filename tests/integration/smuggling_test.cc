// SMTP smuggling (the CVE-2023-51764 class): a body with a bare LF or bare CR around a dot
// must be rejected once with "550 5.6.0", must never end the message early, and must
// never let the bytes after the fake terminator run as commands or become a message.
#include <gtest/gtest.h>

#include "support/harness.hh"

namespace sr::integ {
namespace {

struct smuggle_case {
  const char* name;
  const char* fake_end;   // what the attacker hopes ends the first message
};

void PrintTo(const smuggle_case& c, std::ostream* os) { *os << c.name; }

class Smuggling : public ::testing::TestWithParam<smuggle_case> {};

TEST_P(Smuggling, FakeTerminatorIsRejectedOnceAndNothingIsSpooled) {
  relay r;
  ASSERT_TRUE(r.start()) << r.error();
  raw_client c;
  std::string why;
  ASSERT_TRUE(open_data(c, r.port(), "s@example.org", "t@example.net", &why)) << why;
  std::string body = std::string("Subject: first\r\n\r\nhello") + GetParam().fake_end +
                     "MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"
                     "Subject: smuggled\r\n\r\nsmuggled-body\r\n.\r\nQUIT\r\n";
  ASSERT_TRUE(c.send(body));
  auto replies = c.read_until_eof();
  ASSERT_EQ(replies.size(), 2u) << "replies: " << ::testing::PrintToString(replies);
  EXPECT_TRUE(starts_with(replies[0], "550 5.6.0")) << replies[0];
  EXPECT_EQ(reply_code(replies[1]), 221) << replies[1];

  ASSERT_EQ(r.stop(), 0) << r.log();
  auto q = r.list_queue();
  ASSERT_TRUE(q);
  EXPECT_TRUE(q->empty()) << "a message was spooled";
  EXPECT_FALSE(r.spool_contains("smuggled-body"));
}

INSTANTIATE_TEST_SUITE_P(Variants, Smuggling,
                         ::testing::Values(smuggle_case{"lf_dot_crlf", "\n.\r\n"},
                                           smuggle_case{"crlf_dot_lf", "\r\n.\n"},
                                           smuggle_case{"lf_dot_lf", "\n.\n"},
                                           smuggle_case{"cr_dot_cr", "\r.\r"},
                                           smuggle_case{"cr_dot_crlf", "\r.\r\n"}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace sr::integ
