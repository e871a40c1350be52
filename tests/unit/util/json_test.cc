// The shared JSON string escaper: quoting, short and \u escapes, U+2028/U+2029, and bytes
// that are not valid UTF-8 (each written as \u00XX), valid UTF-8 kept as is.
#include <gtest/gtest.h>

#include <string>

#include "sealrelay/util/json.hh"

namespace {

std::string lit(std::string_view s) {
  std::string out = "x";  // appends, never replaces
  sr::append_json_string(out, s);
  return out.substr(1);
}

}  // namespace

TEST(json_string, quotes_plain_text) {
  EXPECT_EQ(lit(""), "\"\"");
  EXPECT_EQ(lit("mx1.example"), "\"mx1.example\"");
}

TEST(json_string, escapes_quote_backslash_and_control_characters) {
  EXPECT_EQ(lit("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(lit("\n\r\t\b\f"), "\"\\n\\r\\t\\b\\f\"");
  EXPECT_EQ(lit(std::string("\x00\x01\x1f\x7f", 4)), "\"\\u0000\\u0001\\u001f\\u007f\"");
  EXPECT_EQ(lit("/ ~"), "\"/ ~\"");  // '/' and printable ASCII are not escaped
}

TEST(json_string, keeps_valid_utf8_and_escapes_line_separators) {
  EXPECT_EQ(lit("Jos\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7"), "\"Jos\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7\"");
  EXPECT_EQ(lit("a\xe2\x80\xa8z\xe2\x80\xa9"), "\"a\\u2028z\\u2029\"");
  EXPECT_EQ(lit("\xe2\x80\xaa"), "\"\xe2\x80\xaa\"");  // U+202A is an ordinary character
}

TEST(json_string, escapes_each_byte_that_is_not_valid_utf8) {
  EXPECT_EQ(lit("Jos\xe9"), "\"Jos\\u00e9\"");                                      // lone Latin-1 byte
  EXPECT_EQ(lit("x\xe2\x82"), "\"x\\u00e2\\u0082\"");                               // truncated sequence
  EXPECT_EQ(lit("\xe2\x80"), "\"\\u00e2\\u0080\"");                                 // truncated U+2028
  EXPECT_EQ(lit("\xc0\xaf"), "\"\\u00c0\\u00af\"");                                 // overlong '/'
  EXPECT_EQ(lit("\xed\xa0\x80"), "\"\\u00ed\\u00a0\\u0080\"");                      // UTF-16 surrogate
  EXPECT_EQ(lit("\xf4\x90\x80\x80"), "\"\\u00f4\\u0090\\u0080\\u0080\"");           // above U+10FFFF
  EXPECT_EQ(lit("\x80\xff"), "\"\\u0080\\u00ff\"");                                 // stray bytes
}
