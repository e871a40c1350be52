// RFC 8461 §3.1 (TXT record) and §3.2 (policy file): every grammar rule, accepted and refused.
#include "sealrelay/sts/policy.hh"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sr::sts {
namespace {

using mode = policy::sts_mode;

txt_record txt(std::vector<std::string> records) { return parse_txt(records); }

TEST(StsTxt, OneValidRecord) {
  auto r = txt({"v=STSv1; id=20160831085700Z;"});
  EXPECT_EQ(r.verdict, txt_verdict::valid) << r.detail;
  EXPECT_EQ(r.id, "20160831085700Z");
}

TEST(StsTxt, SeparatorsWithOptionalWhitespace) {
  EXPECT_EQ(txt({"v=STSv1;id=abc"}).verdict, txt_verdict::valid);
  EXPECT_EQ(txt({"v=STSv1 ;\tid=abc"}).verdict, txt_verdict::valid);
  EXPECT_EQ(txt({"v=STSv1;  id=abc  ;"}).verdict, txt_verdict::valid);
  EXPECT_EQ(txt({"v=STSv1; id=abc; "}).verdict, txt_verdict::valid);
}

TEST(StsTxt, NoRecordMeansNoPolicy) {
  EXPECT_EQ(txt({}).verdict, txt_verdict::none);
  // Other TXT records at the name are discarded, and so is another version.
  EXPECT_EQ(txt({"google-site-verification=x", "v=spf1 -all"}).verdict, txt_verdict::none);
  EXPECT_EQ(txt({"v=STSv10; id=abc"}).verdict, txt_verdict::none);
  EXPECT_EQ(txt({"V=STSv1; id=abc"}).verdict, txt_verdict::none);  // %s: case-sensitive
}

TEST(StsTxt, OtherRecordsBesideOneValidAreIgnored) {
  auto r = txt({"v=spf1 -all", "v=STSv1; id=1"});
  EXPECT_EQ(r.verdict, txt_verdict::valid);
  EXPECT_EQ(r.id, "1");
}

TEST(StsTxt, TwoRecordsAreInvalid) {
  auto r = txt({"v=STSv1; id=1", "v=STSv1; id=2"});
  EXPECT_EQ(r.verdict, txt_verdict::invalid);
  EXPECT_TRUE(r.id.empty());
  EXPECT_EQ(txt({"v=STSv1; id=1", "v=STSv1; id=1"}).verdict, txt_verdict::invalid);
}

TEST(StsTxt, IdIsOneTo32Alphanumerics) {
  EXPECT_EQ(txt({"v=STSv1; id=" + std::string(32, 'a')}).verdict, txt_verdict::valid);
  EXPECT_EQ(txt({"v=STSv1; id=" + std::string(33, 'a')}).verdict, txt_verdict::invalid);
  EXPECT_EQ(txt({"v=STSv1; id="}).verdict, txt_verdict::invalid);
  EXPECT_EQ(txt({"v=STSv1; id=abc-def"}).verdict, txt_verdict::invalid);
  EXPECT_EQ(txt({"v=STSv1; id=abc def"}).verdict, txt_verdict::invalid);
  EXPECT_EQ(txt({"v=STSv1; id=abc.1"}).verdict, txt_verdict::invalid);
}

TEST(StsTxt, IdIsRequiredAndSingle) {
  EXPECT_EQ(txt({"v=STSv1"}).verdict, txt_verdict::invalid);
  EXPECT_EQ(txt({"v=STSv1;"}).verdict, txt_verdict::invalid);
  EXPECT_EQ(txt({"v=STSv1; foo=bar"}).verdict, txt_verdict::invalid);
  EXPECT_EQ(txt({"v=STSv1; id=a; id=b"}).verdict, txt_verdict::invalid);
}

TEST(StsTxt, UnknownFieldsAreIgnoredIfWellFormed) {
  auto r = txt({"v=STSv1; ext_1=x-y.z; id=abc; x=1"});
  EXPECT_EQ(r.verdict, txt_verdict::valid) << r.detail;
  EXPECT_EQ(r.id, "abc");
  EXPECT_EQ(txt({"v=STSv1; id=abc; =x"}).verdict, txt_verdict::invalid);
  EXPECT_EQ(txt({"v=STSv1; id=abc; _x=1"}).verdict, txt_verdict::invalid);   // name starts alnum
  EXPECT_EQ(txt({"v=STSv1; id=abc; x="}).verdict, txt_verdict::invalid);     // value 1*
  EXPECT_EQ(txt({"v=STSv1; id=abc; x=a=b"}).verdict, txt_verdict::invalid);  // no '=' in value
  EXPECT_EQ(txt({"v=STSv1; id=abc; novalue"}).verdict, txt_verdict::invalid);
}

TEST(StsTxt, MalformedSeparators) {
  EXPECT_EQ(txt({"v=STSv1 id=abc"}).verdict, txt_verdict::invalid);
  EXPECT_EQ(txt({"v=STSv1; ; id=abc"}).verdict, txt_verdict::invalid);
  EXPECT_EQ(txt({"v=STSv1; id=abc;;"}).verdict, txt_verdict::invalid);
  EXPECT_EQ(txt({"v=STSv1; id = abc"}).verdict, txt_verdict::invalid);
}

// ------------------------------------------------------------------------- policy file

const char* rfc_example =
    "version: STSv1\r\n"
    "mode: enforce\r\n"
    "mx: mail.example.com\r\n"
    "mx: *.example.net\r\n"
    "mx: backupmx.example.com\r\n"
    "max_age: 604800\r\n";

TEST(StsPolicy, RfcExample) {
  auto p = parse_policy(rfc_example);
  ASSERT_TRUE(p) << p.err();
  EXPECT_EQ(p->rules.mode, mode::enforce);
  EXPECT_EQ(p->max_age, 604800u);
  ASSERT_EQ(p->rules.mx.size(), 3u);
  EXPECT_EQ(p->rules.mx[1], "*.example.net");
  EXPECT_TRUE(p->rules.matches("mx1.example.net"));
  EXPECT_FALSE(p->rules.matches("a.b.example.net"));
  EXPECT_TRUE(p->rules.matches("MAIL.example.com."));
}

TEST(StsPolicy, LfLineEndingsAndNoFinalNewline) {
  auto p = parse_policy("version: STSv1\nmode: testing\nmx: mx.a.example\nmax_age: 86400");
  ASSERT_TRUE(p) << p.err();
  EXPECT_EQ(p->rules.mode, mode::testing);
  EXPECT_EQ(p->max_age, 86400u);
}

TEST(StsPolicy, OrderDoesNotMatterAndWhitespaceAroundValues) {
  auto p = parse_policy("max_age:86400  \nmx:\t MX.A.Example\nmode:   enforce\nversion: STSv1\n");
  ASSERT_TRUE(p) << p.err();
  EXPECT_EQ(p->rules.mx[0], "mx.a.example");  // lower-cased
}

TEST(StsPolicy, ModeNoneNeedsNoMx) {
  auto p = parse_policy("version: STSv1\nmode: none\nmax_age: 0\n");
  ASSERT_TRUE(p) << p.err();
  EXPECT_EQ(p->rules.mode, mode::none);
  EXPECT_EQ(p->max_age, 0u);
}

TEST(StsPolicy, MissingRequiredKeyIsInvalid) {
  EXPECT_FALSE(parse_policy("mode: enforce\nmx: a.example\nmax_age: 1\n"));
  EXPECT_FALSE(parse_policy("version: STSv1\nmx: a.example\nmax_age: 1\n"));
  EXPECT_FALSE(parse_policy("version: STSv1\nmode: enforce\nmx: a.example\n"));
  EXPECT_FALSE(parse_policy("version: STSv1\nmode: enforce\nmax_age: 1\n"));   // mx
  EXPECT_FALSE(parse_policy("version: STSv1\nmode: testing\nmax_age: 1\n"));   // mx
  EXPECT_FALSE(parse_policy(""));
}

TEST(StsPolicy, BadValues) {
  const std::string base = "mx: a.example\nmax_age: 10\n";
  EXPECT_FALSE(parse_policy("version: STSv2\nmode: enforce\n" + base));
  EXPECT_FALSE(parse_policy("version: stsv1\nmode: enforce\n" + base));
  EXPECT_FALSE(parse_policy("version: STSv1\nmode: Enforce\n" + base));
  EXPECT_FALSE(parse_policy("version: STSv1\nmode: report\n" + base));
  EXPECT_FALSE(parse_policy("Version: STSv1\nmode: enforce\n" + base));  // keys are case-sensitive
}

TEST(StsPolicy, MaxAge) {
  auto with = [](const std::string& v) {
    return parse_policy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: " + v + "\n");
  };
  EXPECT_TRUE(with("31557600"));
  EXPECT_FALSE(with("31557601"));
  EXPECT_FALSE(with("99999999999"));  // 11 digits
  EXPECT_FALSE(with("-1"));
  EXPECT_FALSE(with("1d"));
  EXPECT_FALSE(with(""));
  EXPECT_FALSE(with("1 2"));
  auto p = with("0000000060");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->max_age, 60u);
}

TEST(StsPolicy, RepeatedSingleKeysAreInvalid) {
  EXPECT_FALSE(parse_policy("version: STSv1\nversion: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n"));
  EXPECT_FALSE(parse_policy("version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 1\n"));
  EXPECT_FALSE(parse_policy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nmax_age: 2\n"));
}

TEST(StsPolicy, WildcardsAreOneLabelOnly) {
  EXPECT_TRUE(valid_mx_pattern("*.example.net"));
  EXPECT_TRUE(valid_mx_pattern("mx-1.example.net"));
  EXPECT_FALSE(valid_mx_pattern("*a.example.net"));
  EXPECT_FALSE(valid_mx_pattern("a.*.example.net"));
  EXPECT_FALSE(valid_mx_pattern("**.example.net"));
  EXPECT_FALSE(valid_mx_pattern("**"));
  EXPECT_FALSE(valid_mx_pattern("*"));
  EXPECT_FALSE(valid_mx_pattern("*."));
  EXPECT_FALSE(valid_mx_pattern("*.*.example.net"));
  EXPECT_FALSE(valid_mx_pattern("example.net."));
  EXPECT_FALSE(valid_mx_pattern("-mx.example.net"));
  EXPECT_FALSE(valid_mx_pattern("mx..example.net"));
  EXPECT_FALSE(valid_mx_pattern("mx_1.example.net"));
  EXPECT_FALSE(parse_policy("version: STSv1\nmode: enforce\nmx: *a.example\nmax_age: 1\n"));
}

TEST(StsPolicy, UnknownKeysIgnoredButMustBeWellFormed) {
  auto p = parse_policy("version: STSv1\nmode: enforce\nfoo: bar baz\nx-y.z_1: é\nmx: a.example\nmax_age: 1\n");
  ASSERT_TRUE(p) << p.err();
  EXPECT_EQ(p->rules.mx.size(), 1u);
  EXPECT_FALSE(parse_policy("version: STSv1\nmode: enforce\n_foo: bar\nmx: a.example\nmax_age: 1\n"));
  EXPECT_FALSE(parse_policy("version: STSv1\nmode: enforce\nfoo:\nmx: a.example\nmax_age: 1\n"));
}

TEST(StsPolicy, MalformedLines) {
  const std::string good = "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n";
  EXPECT_TRUE(parse_policy(good));
  EXPECT_TRUE(parse_policy(good + "\n\n"));  // empty lines are tolerated
  EXPECT_FALSE(parse_policy(good + "garbage\n"));
  EXPECT_FALSE(parse_policy(" version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n"));
  EXPECT_FALSE(parse_policy("version : STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n"));
  // A bare CR is not a line ending.
  EXPECT_FALSE(parse_policy("version: STSv1\rmode: enforce\nmx: a.example\nmax_age: 1\n"));
  static const char nul[] = "version: STSv1\nmode: enforce\nmx: a.example\0\nmax_age: 1\n";
  EXPECT_FALSE(parse_policy(std::string_view(nul, sizeof nul - 1)));
}

TEST(StsPolicy, SizeLimit) {
  std::string big = "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n";
  while (big.size() <= max_policy_bytes) big += "filler: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n";
  EXPECT_FALSE(parse_policy(big));
}

}  // namespace
}  // namespace sr::sts
