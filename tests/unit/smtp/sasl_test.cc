// The AUTH codec: commands with and without an initial response, strict base64, PLAIN's
// three fields, cancel, and the exchanges real clients send (swaks, Thunderbird's LOGIN,
// Python smtplib's PLAIN with an initial response) taken byte for byte from RFC examples.
#include <gtest/gtest.h>

#include "sealrelay/smtp/sasl.hh"
#include "sealrelay/util/text.hh"

namespace sr::smtp {
namespace {

using namespace std::string_literals;

std::string b64(std::string_view s) {
  std::string out;
  append_base64(out, s);
  return out;
}

TEST(sasl, auth_commands) {
  auto p = parse_auth("PLAIN");
  EXPECT_EQ(p.error, auth_error::none);
  EXPECT_EQ(p.cmd.mech, sasl_mech::plain);
  EXPECT_FALSE(p.cmd.initial);
  auto l = parse_auth("login");
  EXPECT_EQ(l.cmd.mech, sasl_mech::login);
  auto e = parse_auth("PLAIN =");
  ASSERT_TRUE(e.cmd.initial);
  EXPECT_EQ(*e.cmd.initial, "");
  // RFC 4616 §4 example: "\0tim\0tanstaaftanstaaf"
  auto i = parse_auth("PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
  ASSERT_EQ(i.error, auth_error::none);
  ASSERT_TRUE(i.cmd.initial);
  EXPECT_EQ(*i.cmd.initial, "\0tim\0tanstaaftanstaaf"s);
  auto c = parse_plain(*i.cmd.initial);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->user, "tim");
  EXPECT_EQ(c->password, "tanstaaftanstaaf");

  EXPECT_EQ(parse_auth("").error, auth_error::syntax);
  EXPECT_EQ(parse_auth("PLAIN a b").error, auth_error::syntax);
  EXPECT_EQ(parse_auth("PLAIN ").error, auth_error::syntax);
  EXPECT_EQ(parse_auth("CRAM-MD5").error, auth_error::unknown_mech);
  EXPECT_EQ(parse_auth("PLAIN not*base64").error, auth_error::bad_base64);
  EXPECT_EQ(parse_auth("PLAIN *").error, auth_error::cancelled);
  EXPECT_EQ(reply_of(auth_error::unknown_mech), "504 5.5.4 Unrecognized authentication type");
  EXPECT_EQ(reply_of(auth_error::bad_base64), "501 5.5.2 Cannot decode response");
}

TEST(sasl, plain_messages) {
  EXPECT_TRUE(parse_plain("\0u@x.org\0pw"s));
  EXPECT_TRUE(parse_plain("u@x.org\0u@x.org\0pw"s));          // authzid = authcid
  EXPECT_FALSE(parse_plain("admin\0u@x.org\0pw"s));           // no proxy authorization
  EXPECT_FALSE(parse_plain("\0\0pw"s));                         // empty user
  EXPECT_FALSE(parse_plain("\0u@x.org\0"s));                    // empty password
  EXPECT_FALSE(parse_plain("\0u@x.org\0pw\0extra"s));
  EXPECT_FALSE(parse_plain("u@x.org pw"));
  auto c = parse_plain("\0u@x.org\0p\xc3\xa4ss w\xc3\xb6rd"s);  // UTF-8 and spaces are fine
  ASSERT_TRUE(c);
  EXPECT_EQ(c->password, "p\xc3\xa4ss w\xc3\xb6rd");
}

// Thunderbird and Outlook use LOGIN: AUTH LOGIN, 334 Username:, base64 user, 334 Password:,
// base64 password.
TEST(sasl, login_exchange_responses) {
  EXPECT_EQ(*decode_base64_strict(sasl_reply::login_username.substr(4)), "Username:");
  EXPECT_EQ(*decode_base64_strict(sasl_reply::login_password.substr(4)), "Password:");
  auto u = parse_response(b64("alice@example.org"));
  EXPECT_EQ(u.error, auth_error::none);
  EXPECT_EQ(u.data, "alice@example.org");
  EXPECT_EQ(parse_response("*").error, auth_error::cancelled);
  EXPECT_EQ(parse_response("YWxp Y2U=").error, auth_error::bad_base64);
  EXPECT_EQ(parse_response("").error, auth_error::none);  // an empty response is allowed
}

}  // namespace
}  // namespace sr::smtp
