// Table publication: readers see the table of the epoch they refreshed to, complete; a
// retired table is freed only after every reader moved past it; 1000 swaps under readers
// doing lookups free every old table (counted by the registry and by ~table).
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "alloc_count.hh"
#include "sealrelay/policy/registry.hh"
#include "support/names.hh"

using namespace sr;
using namespace sr::policy;

namespace {

using sr::test::name_of;

constexpr int k_domains = 64;

// Table of generation `gen`: every pattern carries fallback_after = gen ms.
std::unique_ptr<table> make_table(int gen) {
  effective_policy dflt;
  dflt.fallback_after = duration(gen);
  builder b(dflt);
  effective_policy p;
  p.tls = config::tls_policy::forced;
  p.fallback_after = duration(gen);
  for (int i = 0; i < k_domains; ++i) {
    EXPECT_TRUE(b.add(name_of("d", i, ".example"), p));
    EXPECT_TRUE(b.add(name_of(".s", i, ".example"), p));
  }
  auto r = std::move(b).build();
  EXPECT_TRUE(r.ok());
  return std::move(*r);
}

}  // namespace

TEST(policy_registry, reader_sees_published_table_after_refresh) {
  registry reg(make_table(0));
  reader rd(reg);
  EXPECT_EQ(rd.snapshot().epoch(), 1u);
  EXPECT_EQ(rd.lookup("d3.example").policy.fallback_after, duration(0));
  reg.publish(make_table(7));
  // Until its safe point the reader keeps its snapshot.
  EXPECT_EQ(rd.lookup("d3.example").policy.fallback_after, duration(0));
  EXPECT_TRUE(rd.refresh());
  EXPECT_EQ(rd.snapshot().epoch(), 2u);
  EXPECT_EQ(rd.lookup("d3.example").policy.fallback_after, duration(7));
  EXPECT_FALSE(rd.refresh());
  EXPECT_EQ(reg.epoch(), 2u);
}

TEST(policy_registry, retired_table_waits_for_every_reader) {
  registry reg(make_table(0));
  reader fast(reg);
  reader slow(reg);
  const rule& held = slow.lookup("x.s1.example");  // slow keeps using generation 0
  reg.publish(make_table(1));
  reg.publish(make_table(2));
  fast.refresh();
  EXPECT_EQ(reg.reclaim(), 0u);
  EXPECT_EQ(reg.stats().pending, 2u);
  EXPECT_EQ(held.policy.fallback_after, duration(0));  // still allocated
  EXPECT_EQ(held.pattern, ".s1.example");

  uint64_t frees_before = test::frees.load();
  slow.refresh();
  EXPECT_EQ(reg.reclaim(), 2u);
  EXPECT_GT(test::frees.load(), frees_before);  // the tables' memory really went back
  registry_stats st = reg.stats();
  EXPECT_EQ(st.pending, 0u);
  EXPECT_EQ(st.freed, 2u);
  EXPECT_EQ(st.published, 3u);
  EXPECT_EQ(st.readers, 2u);
}

TEST(policy_registry, unregistering_a_reader_releases_its_tables) {
  registry reg(make_table(0));
  auto rd = std::make_unique<reader>(reg);
  reg.publish(make_table(1));
  EXPECT_EQ(reg.stats().pending, 1u);
  rd.reset();
  EXPECT_EQ(reg.stats().pending, 0u);
  EXPECT_EQ(reg.stats().freed, 1u);
  EXPECT_EQ(reg.stats().readers, 0u);
}

TEST(policy_registry, try_reclaim_frees_when_uncontended) {
  registry reg(make_table(0));
  reader rd(reg);
  reg.publish(make_table(1));
  rd.refresh();
  EXPECT_EQ(reg.try_reclaim(), 1u);
  EXPECT_EQ(reg.try_reclaim(), 0u);
}

TEST(policy_registry, thousand_swaps_under_concurrent_readers) {
  constexpr int k_tables = 1000;
  constexpr int k_readers = 3;
  size_t live_before = table::live();
  {
    registry reg(make_table(0));
    std::atomic<bool> done{false};
    std::atomic<int> bad{0};
    std::atomic<uint64_t> lookups{0};
    std::vector<std::thread> readers;
    for (int r = 0; r < k_readers; ++r) {
      readers.emplace_back([&, r] {
        reader rd(reg);
        int64_t last_gen = 0;
        uint64_t n = 0;
        unsigned i = unsigned(r);
        // Keep going until the writer is done and this reader has seen the last table.
        for (;;) {
          bool finished = done.load(std::memory_order_acquire);
          rd.refresh();
          const table& t = rd.snapshot();
          int64_t gen = int64_t(t.epoch()) - 1;
          if (gen < last_gen) bad.fetch_add(1);
          last_gen = gen;
          // Every lookup in one snapshot answers from that snapshot's generation, complete.
          for (int k = 0; k < 16; ++k, ++i) {
            std::string_view name = (i & 1) ? "mx.s5.example" : "d9.example";
            const rule& ru = rd.lookup(name);
            if (ru.policy.fallback_after.count() != gen || ru.pattern.empty() ||
                ru.policy.tls != config::tls_policy::forced)
              bad.fetch_add(1);
            if (rd.lookup("nowhere.example").policy.fallback_after.count() != gen) bad.fetch_add(1);
            ++n;
          }
          if (finished && gen == k_tables) break;
        }
        lookups.fetch_add(n);
      });
    }
    for (int g = 1; g <= k_tables; ++g) reg.publish(make_table(g));
    done.store(true, std::memory_order_release);
    for (auto& t : readers) t.join();
    reg.reclaim();

    EXPECT_EQ(bad.load(), 0);
    EXPECT_GT(lookups.load(), 0u);
    registry_stats st = reg.stats();
    EXPECT_EQ(st.published, uint64_t(k_tables) + 1);
    EXPECT_EQ(st.freed, uint64_t(k_tables));  // every table but the current one
    EXPECT_EQ(st.pending, 0u);
    EXPECT_EQ(st.readers, 0u);
    EXPECT_EQ(reg.current().epoch(), uint64_t(k_tables) + 1);
    EXPECT_EQ(table::live(), live_before + 1);  // only the current table is left
  }
  EXPECT_EQ(table::live(), live_before);  // and the registry freed that one too
}
