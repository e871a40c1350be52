// The _smtp._tls record (RFC 8460 §3): what is a record, which rua URIs are used, and
// which of several TXT texts is the record.
#include "sealrelay/tlsrpt/record.hh"

#include <gtest/gtest.h>

using namespace sr::tlsrpt;

TEST(tlsrpt_record, mailto_and_https_in_order) {
  auto r = parse_record("v=TLSRPTv1; rua=mailto:reports@example.net,https://reports.example.net:8443/v1?x=1");
  ASSERT_TRUE(r) << r.err();
  ASSERT_EQ(r->rua.size(), 2u);
  EXPECT_EQ(r->rua[0].scheme, rua_uri::scheme::mailto);
  EXPECT_EQ(r->rua[0].address, "reports@example.net");
  EXPECT_EQ(r->rua[0].text, "mailto:reports@example.net");
  EXPECT_EQ(r->rua[1].scheme, rua_uri::scheme::https);
  EXPECT_EQ(r->rua[1].host, "reports.example.net");
  EXPECT_EQ(r->rua[1].port, 8443);
  EXPECT_EQ(r->rua[1].path, "/v1?x=1");
}

TEST(tlsrpt_record, whitespace_trailing_delimiter_extensions_and_escapes) {
  auto r = parse_record("v=TLSRPTv1 ;  rua=mailto:tls%2Dreports@example.net?subject=x , https://R.Example.NET ; ext_1=val;");
  ASSERT_TRUE(r) << r.err();
  ASSERT_EQ(r->rua.size(), 2u);
  EXPECT_EQ(r->rua[0].address, "tls-reports@example.net");
  EXPECT_EQ(r->rua[1].host, "r.example.net");
  EXPECT_EQ(r->rua[1].port, 443);
  EXPECT_EQ(r->rua[1].path, "/");
}

TEST(tlsrpt_record, unknown_schemes_are_skipped_but_one_usable_uri_is_needed) {
  auto r = parse_record("v=TLSRPTv1; rua=ftp://x.example/r,mailto:a@b.example");
  ASSERT_TRUE(r) << r.err();
  ASSERT_EQ(r->rua.size(), 1u);
  EXPECT_EQ(r->rua[0].address, "a@b.example");
  EXPECT_FALSE(parse_record("v=TLSRPTv1; rua=ftp://x.example/r"));
  EXPECT_FALSE(parse_record("v=TLSRPTv1; rua=http://x.example/r"));  // https only
}

TEST(tlsrpt_record, duplicates_are_sent_once) {
  auto r = parse_record("v=TLSRPTv1; rua=mailto:a@b.example,mailto:a@b.example");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->rua.size(), 1u);
}

TEST(tlsrpt_record, malformed_records_are_refused) {
  for (const char* bad : {
           "",
           "v=TLSRPTv1",                              // no fields
           "v=TLSRPTv1;",                             // no rua
           "v=TLSRPTv2; rua=mailto:a@b.example",      // another version
           "v=tlsrptv1; rua=mailto:a@b.example",      // case matters
           "rua=mailto:a@b.example; v=TLSRPTv1",      // version first
           "v=TLSRPTv1x; rua=mailto:a@b.example",
           "v=TLSRPTv1; rua=mailto:a@b.example; rua=mailto:c@d.example",  // two rua
           "v=TLSRPTv1; rua=mailto:no-at-sign",
           "v=TLSRPTv1; rua=mailto:a@b.example;; x=y",  // empty field in the middle
           "v=TLSRPTv1; rua=mailto:a b@c.example",
           "v=TLSRPTv1; rua=https://",
           "v=TLSRPTv1; rua=https://h.example:0/",
           "v=TLSRPTv1; rua=https://h.example:99999/",
           "v=TLSRPTv1; rua=mailto:a%zz@b.example",
           "v=TLSRPTv1; rua=mailto:a@b.example; bad field",
           "v=TLSRPTv1 rua=mailto:a@b.example",       // no delimiter after the version
       })
    EXPECT_FALSE(parse_record(bad)) << bad;
}

TEST(tlsrpt_record, exactly_one_versioned_record_among_the_txt_texts) {
  std::vector<std::string> one{"google-site-verification=x", "v=TLSRPTv1; rua=mailto:a@b.example",
                               "v=spf1 -all"};
  auto r = pick_record(one);
  ASSERT_TRUE(r) << r.err();
  EXPECT_EQ(r->rua[0].address, "a@b.example");
  std::vector<std::string> two{"v=TLSRPTv1; rua=mailto:a@b.example", "v=TLSRPTv1; rua=mailto:c@d.example"};
  EXPECT_FALSE(pick_record(two));
  std::vector<std::string> none{"v=spf1 -all"};
  EXPECT_FALSE(pick_record(none));
  // One record that begins right but is broken: the domain has no usable record.
  std::vector<std::string> broken{"v=TLSRPTv1; rua=gopher://x"};
  EXPECT_FALSE(pick_record(broken));
  EXPECT_EQ(record_name("example.net"), "_smtp._tls.example.net");
}
