// util/text.hh: ASCII case-insensitive equality and base64 (RFC 4648 test vectors, the
// URL-safe alphabet without padding, MIME lines of 76 characters, strict decoding).
#include <gtest/gtest.h>

#include <string>

#include "sealrelay/util/text.hh"

using sr::base64_alphabet;

namespace {
std::string b64(std::string_view in, base64_alphabet a = base64_alphabet::standard) {
  std::string s;
  sr::append_base64(s, in, a);
  return s;
}
}  // namespace

TEST(util_text, iequals_ignores_ascii_case_only) {
  EXPECT_TRUE(sr::iequals("Content-Type", "content-TYPE"));
  EXPECT_TRUE(sr::iequals("", ""));
  EXPECT_FALSE(sr::iequals("Subject", "Subjects"));
  EXPECT_FALSE(sr::iequals("a", "b"));
  EXPECT_FALSE(sr::iequals("\xc3\x89", "\xc3\xa9"));  // not ASCII: compared as bytes
  EXPECT_FALSE(sr::iequals("[", "{"));                 // 0x5b vs 0x7b: no false "case" match
}

TEST(util_text, base64_rfc4648_vectors) {
  EXPECT_EQ(b64(""), "");
  EXPECT_EQ(b64("f"), "Zg==");
  EXPECT_EQ(b64("fo"), "Zm8=");
  EXPECT_EQ(b64("foo"), "Zm9v");
  EXPECT_EQ(b64("foob"), "Zm9vYg==");
  EXPECT_EQ(b64("fooba"), "Zm9vYmE=");
  EXPECT_EQ(b64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(b64("\xfb\xff\xfe"), "+//+");
  EXPECT_EQ(b64("\xfb\xff\xfe", base64_alphabet::url), "-__-");
  EXPECT_EQ(b64("fo", base64_alphabet::url), "Zm8");
  EXPECT_EQ(b64("f", base64_alphabet::url), "Zg");
}

TEST(util_text, base64_lines_are_76_characters_with_crlf) {
  std::string in(57 * 2 + 1, '\x01');
  std::string out;
  sr::append_base64_lines(out, in);
  ASSERT_EQ(out.size(), 76 + 2 + 76 + 2 + 4 + 2);
  EXPECT_EQ(out.substr(76, 2), "\r\n");
  EXPECT_EQ(out.substr(154, 2), "\r\n");
  EXPECT_EQ(out.substr(out.size() - 6), "AQ==\r\n");
  std::string none;
  sr::append_base64_lines(none, "");
  EXPECT_EQ(none, "");
}

TEST(util_text, strict_base64_decodes_only_canonical_base64) {
  EXPECT_EQ(*sr::decode_base64_strict(""), "");
  EXPECT_EQ(*sr::decode_base64_strict("Zg=="), "f");
  EXPECT_EQ(*sr::decode_base64_strict("Zm8="), "fo");
  EXPECT_EQ(*sr::decode_base64_strict("Zm9v"), "foo");
  EXPECT_EQ(*sr::decode_base64_strict("Zm9vYmFy"), "foobar");
  for (const char* bad : {"Zg", "Zg=", "Z===", "Zh==", "Zm9=", "Zg==Zg==", "Zm9v\r\n", "Zm-v", "Zm_v", "Z g="})
    EXPECT_FALSE(sr::decode_base64_strict(bad)) << bad;
  std::string all;
  for (int i = 0; i < 256; ++i) all += char(i);
  EXPECT_EQ(*sr::decode_base64_strict(b64(all)), all);
}
