// The suppression list: normalisation, the SQLite store (add, remove, list, persist and
// reload, mode 0600), and the published snapshot (bounces from several threads, a reader
// that sees each change, a change made by another connection picked up, restart).
#include "sealrelay/suppress/list.hh"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <thread>

#include "support/temp_dir.hh"

namespace sr::suppress {
namespace {

std::string db_in(const test::temp_dir& d) { return db_path(d.path().string()); }

TEST(Suppress, Normalize) {
  EXPECT_EQ(normalize("Bob@Example.NET"), "bob@example.net");
  EXPECT_EQ(normalize(" <bob@example.net> "), "bob@example.net");
  EXPECT_EQ(normalize("bob"), "");
  EXPECT_EQ(normalize("@example.net"), "");
  EXPECT_EQ(normalize("bob@"), "");
  EXPECT_EQ(normalize("b ob@example.net"), "");
  EXPECT_EQ(normalize("bob@exa\nmple.net"), "");
  EXPECT_EQ(normalize(std::string(400, 'a') + "@example.net"), "");
}

TEST(Suppress, StoreAddRemoveListPersist) {
  test::temp_dir d;
  ASSERT_FALSE(d.path().empty());
  {
    auto missing = store::open(db_in(d), false);
    EXPECT_FALSE(missing);  // the tool never creates the list
  }
  {
    auto s = store::open(db_in(d), true);
    ASSERT_TRUE(s) << s.err();
    auto n = s.value()->add({{"b@example.net", 1000, origin::bounce, "550 5.1.1 User unknown"},
                             {"a@example.net", 2000, origin::operator_, ""},
                             {"b@example.net", 3000, origin::operator_, "again"}});
    ASSERT_TRUE(n) << n.err();
    EXPECT_EQ(*n, 2u);
    auto has = s.value()->contains("a@example.net");
    ASSERT_TRUE(has);
    EXPECT_TRUE(*has);
    auto gone = s.value()->remove("a@example.net");
    ASSERT_TRUE(gone);
    EXPECT_TRUE(*gone);
    gone = s.value()->remove("a@example.net");
    ASSERT_TRUE(gone);
    EXPECT_FALSE(*gone);
  }
  struct stat st{};
  ASSERT_EQ(::stat(db_in(d).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto s = store::open(db_in(d), false);
  ASSERT_TRUE(s) << s.err();
  auto all = s.value()->list();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].address, "b@example.net");
  EXPECT_EQ((*all)[0].added_ms, 1000);  // the first add wins
  EXPECT_EQ((*all)[0].source, origin::bounce);
  EXPECT_EQ((*all)[0].reason, "550 5.1.1 User unknown");
}

TEST(Suppress, SnapshotContainsAnyCase) {
  snapshot s({"a@example.net", "c@example.net"});
  EXPECT_TRUE(s.contains("a@example.net"));
  EXPECT_TRUE(s.contains("A@Example.NET"));
  EXPECT_TRUE(s.contains("<c@example.net>"));
  EXPECT_FALSE(s.contains("b@example.net"));
  EXPECT_FALSE(snapshot().contains("a@example.net"));
}

TEST(Suppress, BouncesFromManyThreadsArePublishedAndPersist) {
  test::temp_dir d;
  ASSERT_FALSE(d.path().empty());
  {
    auto l = list::open(db_in(d));
    ASSERT_TRUE(l) << l.err();
    reader rd(*l.value());
    EXPECT_FALSE(rd.suppressed("t0-0@example.net"));
    uint64_t v0 = l.value()->version();
    std::vector<std::thread> shards;
    for (int t = 0; t < 4; ++t)
      shards.emplace_back([&, t] {
        for (int i = 0; i < 50; ++i)
          l.value()->add_async("T" + std::to_string(t) + "-" + std::to_string(i) + "@Example.net", "550 5.1.1");
      });
    for (auto& th : shards) th.join();
    l.value()->add_async("not an address", "");
    l.value()->add_async("t0-0@example.net", "again");  // a duplicate costs nothing
    l.value()->sync();
    EXPECT_GT(l.value()->version(), v0);
    EXPECT_EQ(l.value()->current()->size(), 200u);
    EXPECT_EQ(l.value()->added_by_bounces(), 200u);
    EXPECT_TRUE(rd.suppressed("t0-0@example.net"));
    EXPECT_TRUE(rd.suppressed("T3-49@EXAMPLE.NET"));
    EXPECT_FALSE(rd.suppressed("t4-0@example.net"));
    const auto& a = l.value()->current()->addresses();
    EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  }
  // Restart: the list is read back.
  auto l = list::open(db_in(d));
  ASSERT_TRUE(l) << l.err();
  reader rd(*l.value());
  EXPECT_EQ(l.value()->current()->size(), 200u);
  EXPECT_TRUE(rd.suppressed("t2-17@example.net"));
}

TEST(Suppress, AnotherConnectionsChangeIsPickedUp) {
  test::temp_dir d;
  ASSERT_FALSE(d.path().empty());
  auto l = list::open(db_in(d));
  ASSERT_TRUE(l) << l.err();
  reader rd(*l.value());
  // The operator's tool: its own connection to the same file.
  auto tool = store::open(db_in(d), false);
  ASSERT_TRUE(tool) << tool.err();
  ASSERT_TRUE(tool.value()->add({{"op@example.net", 1, origin::operator_, "asked to"}}));
  l.value()->sync();  // a poll, as the writer does every second
  EXPECT_TRUE(rd.suppressed("op@example.net"));
  ASSERT_TRUE(tool.value()->remove("op@example.net"));
  l.value()->sync();
  EXPECT_FALSE(rd.suppressed("op@example.net"));
  // A bounce after the operator's change merges into the re-read list.
  ASSERT_TRUE(tool.value()->add({{"op2@example.net", 2, origin::operator_, ""}}));
  l.value()->add_async("b@example.net", "550 5.1.1");
  l.value()->sync();
  EXPECT_TRUE(rd.suppressed("op2@example.net"));
  EXPECT_TRUE(rd.suppressed("b@example.net"));
}

}  // namespace
}  // namespace sr::suppress
