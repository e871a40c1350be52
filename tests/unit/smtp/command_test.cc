// Command-line codec: verb split and lookup, MAIL/RCPT path syntax, ESMTP parameters.
#include "sealrelay/smtp/command.hh"

#include <gtest/gtest.h>

#include <array>

namespace {

using namespace sr::smtp;

TEST(command, split_verb_and_argument) {
  auto c = split_command("MAIL FROM:<a@b.example>  SIZE=10  ");
  EXPECT_EQ(c.verb, "MAIL");
  EXPECT_EQ(c.arg, "FROM:<a@b.example>  SIZE=10");
  auto q = split_command("QUIT");
  EXPECT_EQ(q.verb, "QUIT");
  EXPECT_EQ(q.arg, "");
}

struct entry {
  std::string_view verb;
  int id;
};

TEST(command, table_lookup_is_case_insensitive) {
  static constexpr std::array<entry, 3> table{{{"EHLO", 1}, {"MAIL", 2}, {"STARTTLS", 3}}};
  EXPECT_EQ(find_verb<entry>(table, "ehlo")->id, 1);
  EXPECT_EQ(find_verb<entry>(table, "MaIl")->id, 2);
  EXPECT_EQ(find_verb<entry>(table, "starttls")->id, 3);
  EXPECT_EQ(find_verb<entry>(table, "MAILX"), nullptr);
  EXPECT_EQ(find_verb<entry>(table, ""), nullptr);
}

TEST(command, mail_from_basic_and_params) {
  auto p = parse_mail_from("FROM:<alice@example.org> SIZE=12345 BODY=8BITMIME");
  ASSERT_EQ(p.err, path_error::none);
  EXPECT_EQ(p.value.address, "alice@example.org");
  EXPECT_TRUE(p.value.has_size);
  EXPECT_EQ(p.value.size, 12345u);
  EXPECT_EQ(p.value.body, body_type::eight_bit_mime);
  auto l = parse_mail_from("from: <bob@example.org> body=7bit");
  ASSERT_EQ(l.err, path_error::none);
  EXPECT_EQ(l.value.address, "bob@example.org");
  EXPECT_EQ(l.value.body, body_type::seven_bit);
  EXPECT_FALSE(l.value.has_size);
}

TEST(command, null_sender) {
  auto p = parse_mail_from("FROM:<>");
  ASSERT_EQ(p.err, path_error::none);
  EXPECT_EQ(p.value.address, "");
  EXPECT_EQ(parse_rcpt_to("TO:<>").err, path_error::bad_recipient);
}

TEST(command, source_route_ignored) {
  auto p = parse_mail_from("FROM:<@relay.example,@b.example:user@c.example>");
  ASSERT_EQ(p.err, path_error::none);
  EXPECT_EQ(p.value.address, "user@c.example");
}

TEST(command, quoted_local_part_and_literals) {
  EXPECT_EQ(parse_rcpt_to("TO:<\"john doe\"@example.org>").err, path_error::none);
  EXPECT_EQ(parse_rcpt_to("TO:<\"a>b\"@example.org>").value.address, "\"a>b\"@example.org");
  EXPECT_EQ(parse_rcpt_to("TO:<u@[192.0.2.1]>").err, path_error::none);
  EXPECT_EQ(parse_rcpt_to("TO:<u@[IPv6:2001:db8::1]>").err, path_error::none);
  EXPECT_EQ(parse_rcpt_to("TO:<u@[300.0.2.1]>").err, path_error::bad_recipient);
  EXPECT_EQ(parse_rcpt_to("TO:<u@[IPv6:zz::1]>").err, path_error::bad_recipient);
}

TEST(command, malformed_addresses) {
  for (const char* a : {"FROM:alice@example.org", "FROM:<alice@example.org", "FROM:<alice>",
                        "FROM:<@example.org>", "FROM:<a..b@example.org>", "FROM:<.a@example.org>",
                        "FROM:<a@-example.org>", "FROM:<a@example..org>", "FROM:<a@example.org->",
                        "FROM:<a b@example.org>", "FROM:<a@b.example>x", "FROM:<\xc3\xa9@example.org>"})
    EXPECT_EQ(parse_mail_from(a).err, path_error::bad_sender) << a;
  EXPECT_EQ(parse_rcpt_to("TO:<bob>").err, path_error::bad_recipient);
  EXPECT_EQ(parse_rcpt_to("TO:bob@example.org").err, path_error::bad_recipient);
  std::string long_local = "TO:<" + std::string(65, 'a') + "@example.org>";
  EXPECT_EQ(parse_rcpt_to(long_local).err, path_error::bad_recipient);
  std::string max_local = "TO:<" + std::string(64, 'a') + "@example.org>";
  EXPECT_EQ(parse_rcpt_to(max_local).err, path_error::none);
}

TEST(command, missing_keyword_is_syntax_error) {
  EXPECT_EQ(parse_mail_from("<a@b.example>").err, path_error::syntax);
  EXPECT_EQ(parse_mail_from("TO:<a@b.example>").err, path_error::syntax);
  EXPECT_EQ(parse_rcpt_to("FROM:<a@b.example>").err, path_error::syntax);
  EXPECT_EQ(parse_rcpt_to("").err, path_error::syntax);
}

TEST(command, params_unknown_and_bad) {
  auto u = parse_mail_from("FROM:<a@b.example> SMTPUTF8");
  EXPECT_EQ(u.err, path_error::unknown_param);
  EXPECT_EQ(u.bad_param, "SMTPUTF8");
  EXPECT_EQ(parse_mail_from("FROM:<a@b.example> RET=FULL").err, path_error::unknown_param);
  EXPECT_EQ(parse_mail_from("FROM:<a@b.example> SIZE=").err, path_error::bad_param);
  EXPECT_EQ(parse_mail_from("FROM:<a@b.example> SIZE=12x").err, path_error::bad_param);
  EXPECT_EQ(parse_mail_from("FROM:<a@b.example> SIZE=1 SIZE=2").err, path_error::bad_param);
  EXPECT_EQ(parse_mail_from("FROM:<a@b.example> BODY=BINARYMIME").err, path_error::bad_param);
  EXPECT_EQ(parse_rcpt_to("TO:<a@b.example> NOTIFY=NEVER").err, path_error::unknown_param);
  auto big = parse_mail_from("FROM:<a@b.example> SIZE=99999999999999999999");
  ASSERT_EQ(big.err, path_error::none);
  EXPECT_EQ(big.value.size, UINT64_MAX);
}

TEST(command, reply_codes) {
  EXPECT_EQ(reply_for(path_error::bad_sender).substr(0, 9), "501 5.1.7");
  EXPECT_EQ(reply_for(path_error::bad_recipient).substr(0, 9), "501 5.1.3");
  EXPECT_EQ(reply_for(path_error::unknown_param).substr(0, 9), "555 5.5.4");
  EXPECT_EQ(reply_for(path_error::syntax).substr(0, 9), "501 5.5.4");
}

TEST(command, domains) {
  EXPECT_TRUE(valid_domain("mx1.example.org"));
  EXPECT_TRUE(valid_domain("a-b.c"));
  EXPECT_FALSE(valid_domain("a_b.c"));
  EXPECT_FALSE(valid_domain(std::string(64, 'a') + ".org"));
  EXPECT_TRUE(valid_domain(std::string(63, 'a') + ".org"));
  EXPECT_FALSE(valid_domain("example.org."));
}

// A domain name has at most 253 octets in text form (255 on the wire, RFC 1035 2.3.4).
TEST(command, domain_over_253_octets) {
  std::string d253;
  while (d253.size() < 253 - 12) d253 += std::string(40, 'a') + ".";
  d253 += std::string(253 - d253.size(), 'b');
  ASSERT_EQ(d253.size(), 253u);
  EXPECT_TRUE(valid_domain(d253));
  EXPECT_FALSE(valid_domain("c" + d253));
  EXPECT_FALSE(valid_domain("cd" + d253));

  std::string arg = "TO:<u@" + d253 + ">";  // results point into it
  auto ok = parse_rcpt_to(arg);
  EXPECT_EQ(ok.err, path_error::none);
  EXPECT_EQ(ok.value.address, "u@" + d253);
  EXPECT_EQ(parse_rcpt_to("TO:<u@c" + d253 + ">").err, path_error::bad_recipient);
  EXPECT_EQ(parse_rcpt_to("TO:<u@cd" + d253 + ">").err, path_error::bad_recipient);
  EXPECT_EQ(parse_mail_from("FROM:<u@cd" + d253 + ">").err, path_error::bad_sender);
}

}  // namespace

TEST(command, mail_from_requiretls) {
  auto p = parse_mail_from("FROM:<a@b.example> requiretls SIZE=5");
  ASSERT_EQ(p.err, path_error::none);
  EXPECT_TRUE(p.value.requiretls);
  EXPECT_FALSE(parse_mail_from("FROM:<a@b.example>").value.requiretls);
  EXPECT_EQ(parse_mail_from("FROM:<a@b.example> REQUIRETLS REQUIRETLS").err, path_error::bad_param);
  EXPECT_EQ(parse_mail_from("FROM:<a@b.example> REQUIRETLS=1").err, path_error::bad_param);
}
