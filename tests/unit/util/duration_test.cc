// Config duration syntax and CIDR matching used by relay access.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include "sealrelay/util/cidr.hh"
#include "sealrelay/util/duration.hh"

using namespace std::chrono_literals;

TEST(duration, parses_each_unit) {
  EXPECT_EQ(sr::parse_duration("250ms"), sr::duration(250));
  EXPECT_EQ(sr::parse_duration("10s"), sr::duration(10s));
  EXPECT_EQ(sr::parse_duration("5m"), sr::duration(5min));
  EXPECT_EQ(sr::parse_duration("4h"), sr::duration(4h));
  EXPECT_EQ(sr::parse_duration("5d"), sr::duration(120h));
}

TEST(duration, rejects_malformed) {
  for (const char* bad : {"", "s", "10", "10 s", "-1s", "1.5s", "10x", "1sec"})
    EXPECT_FALSE(sr::parse_duration(bad).has_value()) << bad;
}

TEST(duration, formats_with_largest_unit) {
  EXPECT_EQ(sr::format_duration(90s), "90s");
  EXPECT_EQ(sr::format_duration(5min), "5m");
  EXPECT_EQ(sr::format_duration(sr::duration(1500)), "1500ms");
}

static sockaddr_in v4(const char* ip) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

TEST(cidr, matches_prefixes) {
  auto c = sr::cidr::parse("127.0.0.0/8");
  ASSERT_TRUE(c);
  auto in = v4("127.1.2.3"), out = v4("10.0.0.1");
  EXPECT_TRUE(c->contains(reinterpret_cast<sockaddr*>(&in)));
  EXPECT_FALSE(c->contains(reinterpret_cast<sockaddr*>(&out)));
  auto host = sr::cidr::parse("192.0.2.7");
  ASSERT_TRUE(host);
  EXPECT_EQ(host->prefix_len, 32);
  auto odd = sr::cidr::parse("192.0.2.0/25");
  auto a = v4("192.0.2.127"), b = v4("192.0.2.128");
  EXPECT_TRUE(odd->contains(reinterpret_cast<sockaddr*>(&a)));
  EXPECT_FALSE(odd->contains(reinterpret_cast<sockaddr*>(&b)));
}

TEST(cidr, v4_mapped_v6_client_matches_v4_prefix) {
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:127.0.0.1", &a.sin6_addr);
  EXPECT_TRUE(sr::cidr::parse("127.0.0.0/8")->contains(reinterpret_cast<sockaddr*>(&a)));
}

TEST(cidr, rejects_malformed) {
  for (const char* bad : {"", "1.2.3", "1.2.3.4/33", "::1/129", "1.2.3.4/x", "host/8"})
    EXPECT_FALSE(sr::cidr::parse(bad).has_value()) << bad;
}

TEST(endpoint, parses_v4_and_v6) {
  socklen_t len = 0;
  auto e = sr::parse_endpoint("127.0.0.1:2525", &len);
  ASSERT_TRUE(e);
  EXPECT_EQ(len, sizeof(sockaddr_in));
  EXPECT_TRUE(sr::parse_endpoint("[::1]:25", &len));
  EXPECT_EQ(len, sizeof(sockaddr_in6));
  EXPECT_FALSE(sr::parse_endpoint("127.0.0.1", &len));
  EXPECT_FALSE(sr::parse_endpoint("127.0.0.1:70000", &len));
  EXPECT_FALSE(sr::parse_endpoint("nohost:25", &len));
}
