// source_picker (issue 14 item 3): round-robin order, weighted shares over N picks counted
// (not timed), and address families kept apart.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <map>
#include <string>

#include "sealrelay/config/config.hh"
#include "sealrelay/delivery/source.hh"

using namespace sr;

namespace {

config::config load(const std::string& pool_lines) {
  auto r = config::parse("[[listen]]\naddress = \"127.0.0.1:2525\"\n[[pool]]\nname = \"p\"\n" + pool_lines,
                         "t.toml");
  EXPECT_TRUE(r) << r.err();
  return r ? std::move(r.value()) : config::config{};
}

}  // namespace

TEST(source_picker, round_robin_takes_each_address_in_written_order) {
  auto cfg = load("addresses = [\"127.0.0.2\", \"127.0.0.3\", \"127.0.0.4\"]\n");
  ASSERT_EQ(cfg.pools.size(), 1u);
  delivery::source_picker p(cfg.pools[0]);
  std::string seq;
  for (int i = 0; i < 7; ++i) seq += p.next(AF_INET)->address + " ";
  EXPECT_EQ(seq, "127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.2 ");
  EXPECT_EQ(p.next(AF_INET6), nullptr);  // no IPv6 address in the pool
}

TEST(source_picker, weighted_shares_follow_the_weights_over_n_picks) {
  auto cfg = load("selection = \"weighted\"\n"
                  "addresses = [\"127.0.0.2\", {address = \"127.0.0.3\", weight = 3}, "
                  "{address = \"127.0.0.4\", weight = 6}]\n");
  ASSERT_EQ(cfg.pools.size(), 1u);
  delivery::source_picker p(cfg.pools[0]);
  std::map<std::string, int> count;
  const int n = 1000;
  for (int i = 0; i < n; ++i) ++count[p.next(AF_INET)->address];
  // Shares 1:3:6 of 1000 = 100, 300, 600; smooth WRR is exact per full cycle of 10 picks.
  EXPECT_NEAR(count["127.0.0.2"], 100, 1);
  EXPECT_NEAR(count["127.0.0.3"], 300, 1);
  EXPECT_NEAR(count["127.0.0.4"], 600, 1);
  // Spread, not in runs: within any 10 consecutive picks each address has its share.
  std::map<std::string, int> window;
  for (int i = 0; i < 10; ++i) ++window[p.next(AF_INET)->address];
  EXPECT_EQ(window["127.0.0.2"], 1);
  EXPECT_EQ(window["127.0.0.3"], 3);
  EXPECT_EQ(window["127.0.0.4"], 6);
}

TEST(source_picker, families_are_picked_apart) {
  auto cfg = load("addresses = [\"127.0.0.2\", \"::1\", \"127.0.0.3\", \"::2\"]\n");
  ASSERT_EQ(cfg.pools.size(), 1u);
  delivery::source_picker p(cfg.pools[0]);
  EXPECT_EQ(p.next(AF_INET)->address, "127.0.0.2");
  EXPECT_EQ(p.next(AF_INET6)->address, "::1");
  EXPECT_EQ(p.next(AF_INET6)->address, "::2");
  EXPECT_EQ(p.next(AF_INET)->address, "127.0.0.3");
  EXPECT_EQ(p.next(AF_INET)->address, "127.0.0.2");
}
