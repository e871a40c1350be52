// Policy table lookup cost (issue 4: under 200 ns per lookup with 1,000,000 entries, no
// allocation): half exact patterns ("d123.bank-x.example"), half suffix patterns
// (".s123.example"); lookups of exact hits, suffix hits (one or two labels below the
// suffix), and misses, over domains in random order so the table is not cache-resident.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "sealrelay/policy/table.hh"

using namespace sr;
using namespace sr::policy;

namespace {

constexpr size_t k_entries = 1'000'000;
constexpr size_t k_queries = 1 << 16;

// Build "<pre><i><post>" (GCC 12 warns falsely, -Wrestrict, on chained operator+).
std::string name_of(const char* pre, size_t i, const char* post) {
  std::string s(pre);
  s += std::to_string(i);
  s += post;
  return s;
}

struct fixture {
  std::unique_ptr<table> t;
  std::vector<std::string> exact_hits, suffix_hits, misses, mixed;
};

const fixture& get() {
  static const fixture f = [] {
    fixture f;
    builder b(effective_policy{});
    b.reserve(k_entries);
    effective_policy p;
    p.tls = config::tls_policy::forced;
    for (size_t i = 0; i < k_entries / 2; ++i) {
      (void)b.add(name_of("d", i, ".bank-x.example"), p);
      (void)b.add(name_of(".s", i, ".example"), p);
    }
    auto r = std::move(b).build();
    if (!r.ok()) std::abort();
    f.t = std::move(*r);
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<size_t> pick(0, k_entries / 2 - 1);
    for (size_t q = 0; q < k_queries; ++q) {
      size_t i = pick(rng);
      f.exact_hits.push_back(name_of("d", i, ".bank-x.example"));
      f.suffix_hits.push_back(name_of(q & 1 ? "mx1.mail.s" : "mx.s", i, ".example"));
      f.misses.push_back(name_of("host", i, ".unknown-domain.org"));
    }
    for (size_t q = 0; q < k_queries; ++q) {
      const auto& src = q % 3 == 0 ? f.exact_hits : q % 3 == 1 ? f.suffix_hits : f.misses;
      f.mixed.push_back(src[q]);
    }
    std::shuffle(f.mixed.begin(), f.mixed.end(), rng);
    return f;
  }();
  return f;
}

void run(benchmark::State& state, const std::vector<std::string>& names) {
  const table& t = *get().t;
  size_t i = 0;
  for (auto _ : state) {
    const rule& r = t.lookup(names[i]);
    benchmark::DoNotOptimize(&r);
    i = (i + 1) & (k_queries - 1);
  }
  state.SetItemsProcessed(int64_t(state.iterations()));
  state.counters["entries"] = double(t.size());
}

void bm_exact_hit(benchmark::State& s) { run(s, get().exact_hits); }
void bm_suffix_hit(benchmark::State& s) { run(s, get().suffix_hits); }
void bm_miss(benchmark::State& s) { run(s, get().misses); }
void bm_mixed(benchmark::State& s) { run(s, get().mixed); }

}  // namespace

BENCHMARK(bm_exact_hit);
BENCHMARK(bm_suffix_hit);
BENCHMARK(bm_miss);
BENCHMARK(bm_mixed);
BENCHMARK_MAIN();
