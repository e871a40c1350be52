// MTA-STS cache lookup cost (issue 8, item 6): the per-resolve work once the cache is warm —
// find the domain's entry, check it is live, and combine its rules with the table's
// policy — over 10,000 and 100,000 cached domains, half enforce and half testing, looked
// up in random order; plus the miss path (a domain with no policy).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "sealrelay/sts/cache.hh"
#include "sealrelay/sts/policy.hh"
#include "sealrelay/sts/resolver.hh"

using namespace sr;

namespace {

std::string domain_of(size_t i) {
  std::string s = "d";
  s += std::to_string(i);
  s += ".example";
  return s;
}

struct fixture {
  sts::cache c{"", 0};
  std::vector<std::string> hits, misses;
  explicit fixture(size_t n) {
    auto enforce = sts::parse_policy("version: STSv1\nmode: enforce\nmx: *.mx.example\nmax_age: 86400\n");
    auto testing = sts::parse_policy("version: STSv1\nmode: testing\nmx: *.mx.example\nmax_age: 86400\n");
    for (size_t i = 0; i < n; ++i) {
      const auto& p = i % 2 ? enforce.value() : testing.value();
      c.store(domain_of(i), "id1", p.rules, p.max_age, "", 1000);
      hits.push_back(domain_of(i));
      misses.push_back(domain_of(i + n));
    }
    std::mt19937 rng(42);
    std::shuffle(hits.begin(), hits.end(), rng);
  }
};

void BM_CacheHit(benchmark::State& state) {
  fixture f(size_t(state.range(0)));
  policy::effective_policy base;
  size_t i = 0;
  for (auto _ : state) {
    const std::string& d = f.hits[i++ % f.hits.size()];
    const sts::cache_entry* e = f.c.find(d);
    auto r = sts::resolver::combine(base, e && e->live(2000) ? e->rules : nullptr);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_CacheHit)->Arg(10'000)->Arg(100'000);

void BM_CacheMiss(benchmark::State& state) {
  fixture f(size_t(state.range(0)));
  size_t i = 0;
  for (auto _ : state) {
    const sts::cache_entry* e = f.c.find(f.misses[i++ % f.misses.size()]);
    benchmark::DoNotOptimize(e);
  }
}
BENCHMARK(BM_CacheMiss)->Arg(10'000);

void BM_MxMatch(benchmark::State& state) {
  auto p = sts::parse_policy("version: STSv1\nmode: enforce\nmx: mx1.a.example\nmx: *.mx.example\nmax_age: 86400\n");
  for (auto _ : state) benchmark::DoNotOptimize(p->rules.matches("host-17.mx.example"));
}
BENCHMARK(BM_MxMatch);

}  // namespace

BENCHMARK_MAIN();
