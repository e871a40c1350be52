// The MTA-STS cache: lookups, expiry, refresh time, the JSON-lines file (restart, torn
// lines, compaction, foreign shards' entries).
#include "sealrelay/sts/cache.hh"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "sealrelay/sts/policy.hh"
#include "support/file_io.hh"
#include "support/temp_dir.hh"

namespace sr::sts {
namespace {

using sr::test::read_file;
using sr::test::write_file;

const std::string enforce_text = "version: STSv1\nmode: enforce\nmx: mx.a.example\nmax_age: 3600\n";

const std::string short_text = "version: STSv1\nmode: enforce\nmx: mx.b.example\nmax_age: 100\n";

policy::mta_sts_rules rules_of(const std::string& text) { return parse_policy(text)->rules; }

bool all_mine(std::string_view) { return true; }


TEST(StsCache, RefreshTime) {
  EXPECT_EQ(refresh_time(1000, 400), 1000 + 400 - 100);                 // a quarter of max_age
  EXPECT_EQ(refresh_time(0, 31557600), 31557600 - 86400);              // at most one day
  EXPECT_EQ(refresh_time(50, 0), 50);
}

TEST(StsCache, StoreFindExpire) {
  cache c("", 0);
  EXPECT_EQ(c.find("a.example"), nullptr);
  const auto& e = c.store("a.example", "id1", rules_of(enforce_text), 3600, enforce_text, 1000);
  EXPECT_EQ(e.expires_at, 4600);
  EXPECT_EQ(e.next_refresh_at, 4600 - 900);
  const cache_entry* f = c.find("a.example");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->id, "id1");
  EXPECT_TRUE(f->live(4599));
  EXPECT_FALSE(f->live(4600));
  EXPECT_TRUE(f->rules->matches("mx.a.example"));
  c.drop_expired(4599);
  EXPECT_EQ(c.size(), 1u);
  c.drop_expired(4600);
  EXPECT_EQ(c.size(), 0u);
}

TEST(StsCache, FailureKeepsPolicyAndIsRemembered) {
  cache c("", 0);
  c.store("a.example", "id1", rules_of(enforce_text), 3600, enforce_text, 1000);
  c.note_failure("a.example", 2000);
  EXPECT_EQ(c.find("a.example")->last_fetch_attempt, 2000);
  EXPECT_TRUE(c.find("a.example")->live(2000));
  c.note_failure("b.example", 2000);  // no policy: an entry that only remembers the failure
  EXPECT_EQ(c.find("b.example")->rules, nullptr);
  EXPECT_FALSE(c.find("b.example")->live(2000));
  c.drop_expired(2000 + refetch_interval_s - 1);
  EXPECT_NE(c.find("b.example"), nullptr);
  c.drop_expired(2000 + refetch_interval_s);
  EXPECT_EQ(c.find("b.example"), nullptr);
}

TEST(StsCache, JsonLineRoundTrip) {
  cache_entry e;
  // The writer \u-escapes control characters, invalid UTF-8 and U+2028/U+2029; the reader
  // must give back the very bytes. (A policy text that parses is printable ASCII, so the
  // id, which the loader does not re-check, carries the odd bytes here.)
  e.id = "abc123 \b\f\x01\x7f \xe9 x\xe2\x82 Jos\xc3\xa9 \xe2\x80\xa8 \xe2\x80\xa9 \xf0\x9f\x93\xa7 \"\\";
  e.max_age = 3600;
  e.fetched_at = 1700000000;
  e.text = "version: STSv1\r\nmode: testing\r\nmx: *.b.example\t\r\nnote: \"quoted\" \\ x\r\nmax_age: 3600\r\n";
  std::string line = to_json_line("b.example", e);
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // one line
  EXPECT_NE(line.find("\\u2028"), std::string::npos);
  EXPECT_NE(line.find("\\u00e9"), std::string::npos);
  auto back = from_json_line(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(back) << back.err();
  EXPECT_EQ(back->first, "b.example");
  EXPECT_EQ(back->second.id, e.id);
  EXPECT_EQ(back->second.text, e.text);
  EXPECT_EQ(back->second.expires_at, 1700003600);
  EXPECT_EQ(back->second.rules->mode, policy::sts_mode::testing);
  EXPECT_TRUE(back->second.rules->matches("x.b.example"));
}

TEST(StsCache, JsonLineRefusesDamage) {
  cache_entry e;
  e.id = "abc";
  e.max_age = 3600;
  e.fetched_at = 5;
  e.text = enforce_text;
  std::string line = to_json_line("a.example", e);
  line.pop_back();
  for (size_t cut = 0; cut < line.size(); ++cut)
    EXPECT_FALSE(from_json_line(std::string_view(line).substr(0, cut))) << cut;
  EXPECT_FALSE(from_json_line("{\"domain\":\"a.example\",\"id\":\"x\",\"fetched_at\":1,\"max_age\":1,"
                              "\"policy\":\"not a policy\"}"));
}

TEST(StsCache, RestartKeepsPoliciesUntilMaxAge) {
  test::temp_dir dir;
  std::string d = (dir.path() / "mta-sts").string();
  {
    cache c(d, 0);
    ASSERT_TRUE(c.load(1000, all_mine));
    c.store("a.example", "id1", rules_of(enforce_text), 3600, enforce_text, 1000);
    c.store("b.example", "id1", rules_of(short_text), 100, short_text, 1000);
    c.store("a.example", "id2", rules_of(enforce_text), 3600, enforce_text, 1100);  // newer wins
  }
  {
    cache c(d, 0);
    ASSERT_TRUE(c.load(1050, all_mine));
    ASSERT_NE(c.find("a.example"), nullptr);
    EXPECT_EQ(c.find("a.example")->id, "id2");
    EXPECT_EQ(c.find("a.example")->fetched_at, 1100);
    EXPECT_EQ(c.find("a.example")->text, enforce_text);
    ASSERT_NE(c.find("b.example"), nullptr);
  }
  {
    cache c(d, 0);
    ASSERT_TRUE(c.load(1100, all_mine));  // b expired at 1100: dropped, and from the file too
    EXPECT_EQ(c.find("b.example"), nullptr);
    EXPECT_NE(c.find("a.example"), nullptr);
    std::string text = read_file(c.path());
    EXPECT_EQ(text.find("b.example"), std::string::npos);
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);  // compacted: one line for a
  }
}

TEST(StsCache, TornAndCorruptLinesAreSkipped) {
  test::temp_dir dir;
  std::string d = (dir.path() / "mta-sts").string();
  {
    cache c(d, 0);
    ASSERT_TRUE(c.load(1000, all_mine));
    c.store("a.example", "id1", rules_of(enforce_text), 3600, enforce_text, 1000);
    c.store("b.example", "id1", rules_of(enforce_text), 3600, enforce_text, 1000);
  }
  std::string path = d + "/shard-0.jsonl";
  std::string text = read_file(path);
  {
    // A garbage line in the middle and a torn last line (the crash came mid-write).
    std::ofstream f(path, std::ios::trunc);
    size_t first = text.find('\n') + 1;
    f << text.substr(0, first) << "{\"domain\":\"x\n" << text.substr(first, text.size() - first - 10);
  }
  cache c(d, 0);
  ASSERT_TRUE(c.load(1000, all_mine));
  EXPECT_NE(c.find("a.example"), nullptr);
  EXPECT_EQ(c.find("b.example"), nullptr);
  EXPECT_EQ(c.size(), 1u);
  // The rewritten file is whole again, and appends go after it.
  c.store("c.example", "id1", rules_of(enforce_text), 3600, enforce_text, 1000);
  cache again(d, 0);
  ASSERT_TRUE(again.load(1000, all_mine));
  EXPECT_EQ(again.size(), 2u);
}

TEST(StsCache, ShardsKeepTheirOwnDomainsAndNeverLoseOthers) {
  test::temp_dir dir;
  std::string d = (dir.path() / "mta-sts").string();
  {
    // One shard ran before: it owned everything.
    cache c(d, 0);
    ASSERT_TRUE(c.load(1000, all_mine));
    c.store("a.example", "id1", rules_of(enforce_text), 3600, enforce_text, 1000);
    c.store("b.example", "id1", rules_of(enforce_text), 3600, enforce_text, 1000);
  }
  // Now two shards: shard 0 owns a, shard 1 owns b. Shard 0 loads (and rewrites its file)
  // first; shard 1 must still find b.
  auto owner = [](std::string_view dom) { return dom == "a.example" ? 0u : 1u; };
  cache s0(d, 0), s1(d, 1);
  ASSERT_TRUE(s0.load(1000, [&](std::string_view dom) { return owner(dom) == 0; }));
  ASSERT_TRUE(s1.load(1000, [&](std::string_view dom) { return owner(dom) == 1; }));
  EXPECT_NE(s0.find("a.example"), nullptr);
  EXPECT_EQ(s0.find("b.example"), nullptr);
  EXPECT_NE(s1.find("b.example"), nullptr);
  EXPECT_EQ(s1.find("a.example"), nullptr);
  // Shard 1 refreshes b; after a restart its newer policy wins over shard 0's old line.
  s1.store("b.example", "id2", rules_of(enforce_text), 3600, enforce_text, 2000);
  cache again(d, 1);
  ASSERT_TRUE(again.load(2000, [&](std::string_view dom) { return owner(dom) == 1; }));
  EXPECT_EQ(again.find("b.example")->id, "id2");
}

TEST(StsCache, AppendsCompactEventually) {
  test::temp_dir dir;
  std::string d = (dir.path() / "mta-sts").string();
  cache c(d, 0);
  ASSERT_TRUE(c.load(1000, all_mine));
  for (int i = 0; i < 500; ++i)
    c.store("a.example", "id" + std::to_string(i), rules_of(enforce_text), 3600, enforce_text, 1000 + i);
  std::string text = read_file(c.path());
  EXPECT_LT(std::count(text.begin(), text.end(), '\n'), 100);
  cache again(d, 0);
  ASSERT_TRUE(again.load(1500, all_mine));
  EXPECT_EQ(again.find("a.example")->id, "id499");
}

}  // namespace
}  // namespace sr::sts
