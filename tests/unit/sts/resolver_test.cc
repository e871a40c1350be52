// The MTA-STS resolver on a real shard, with the shard's DNS resolver against the loopback
// DNS fixture (ldns-testns) and a stub fetcher whose answers the test releases: discovery,
// waiting while a fetch is in flight, failures keeping the cache, the refetch limit, id
// changes, proactive refresh, expiry, and how each mode shapes the effective policy.
#include "sealrelay/sts/resolver.hh"

#include <gtest/gtest.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <optional>

#include "sealrelay/core/shard.hh"
#include "sealrelay/dns/resolver.hh"
#include "sealrelay/sts/policy.hh"
#include "support/peers.hh"
#include "support/shard_dns.hh"

using namespace sr;

namespace {

using mode = policy::sts_mode;

const std::string zone =
    "$TTL 300\n"
    "_mta-sts.enforce.test TXT \"v=STSv1; id=1\"\n"
    "_mta-sts.testing.test TXT \"v=STSv1; id=1\"\n"
    "_mta-sts.none.test TXT \"v=STSv1; id=1\"\n"
    "_mta-sts.split.test TXT \"v=STSv1; \" \"id=7\"\n"
    "_mta-sts.two.test TXT \"v=STSv1; id=1\"\n"
    "_mta-sts.two.test TXT \"v=STSv1; id=2\"\n"
    "_mta-sts.bad.test TXT \"v=STSv1; id=not-valid\"\n"
    "_mta-sts.other.test TXT \"v=spf1 -all\"\n"
    "_mta-sts.fail.test TXT \"v=STSv1; id=1\"\n"
    "_mta-sts.broken.test SERVFAIL\n";

std::string policy_text(const char* m, unsigned max_age = 86400) {
  return std::string("version: STSv1\nmode: ") + m + "\nmx: *.mx.test\nmax_age: " + std::to_string(max_age) + "\n";
}

// Answers fetches when the test says so (release()), or at once from `auto_answer`.
class stub_fetcher final : public sts::fetcher {
 public:
  explicit stub_fetcher(core::shard& sh) : _sh(sh) {}
  void fetch(std::string_view domain, std::function<void(const sts::fetch_result&)> done) override {
    ++count[std::string(domain)];
    _held.emplace_back(std::string(domain), std::move(done));
    if (auto it = auto_answer.find(std::string(domain)); it != auto_answer.end()) release(it->second);
  }
  // Answer the oldest held fetch with `r` (later, through post()).
  void release(sts::fetch_result r) {
    ASSERT_FALSE(_held.empty());
    auto [d, done] = std::move(_held.front());
    _held.pop_front();
    _sh.post([done = std::move(done), r = std::move(r)] { done(r); });
  }
  size_t held() const { return _held.size(); }
  std::map<std::string, int> count;
  std::map<std::string, sts::fetch_result> auto_answer;

 private:
  core::shard& _sh;
  std::deque<std::pair<std::string, std::function<void(const sts::fetch_result&)>>> _held;
};

sts::fetch_result ok(const std::string& body) { return {true, body, {}}; }
sts::fetch_result failed(const std::string& why) { return {false, {}, why}; }

struct answer final : policy::resolve_completion {
  bool got = false;
  policy::resolution r;
  std::function<void()> then;
  void policy_resolved(const policy::resolution& res) override {
    EXPECT_FALSE(got) << "answered twice";
    got = true;
    r = res;
    if (then) then();
  }
};

class sts_resolver : public test::shard_dns_test {
 protected:
  void SetUp() override {
    start_shard_dns(zone);
    if (IsSkipped() || HasFatalFailure()) return;
    _fetch = std::make_unique<stub_fetcher>(_sh);
    _fallback.tls = config::tls_policy::opportunistic;
    make_resolver();
  }
  void on_tick() override {
    if (_until && _until()) {
      _until = nullptr;
      auto then = std::move(_then);
      then();
    }
  }
  void TearDown() override {
    _res.reset();
    _fetch.reset();
    _dns.reset();
  }
  void make_resolver() {
    sts::resolver_options ro;
    ro.clock = [this] { return _now; };
    _res = std::make_unique<sts::resolver>(*_dns, *_fetch, _cache, nullptr, _fallback, ro);
  }

  using next_fn = std::function<void()>;
  using step = std::function<void(next_fn)>;

  // Run the steps in order on the shard loop (once per test: a stopped shard stays
  // stopped), each calling next() when done; false at the deadline.
  void run(std::vector<step> steps) {
    _steps = std::move(steps);
    ASSERT_TRUE(run_loop(20000, [this] { advance(); })) << "steps did not finish (stuck at step " << _at << ")";
  }
  void advance() {
    if (_at == _steps.size()) return _sh.stop();
    auto& s = _steps[_at++];
    s([this] { _sh.post([this] { advance(); }); });
  }
  // Resolve `domain` into `out`; next once it is answered.
  step resolve(const std::string& domain, answer& out) {
    return [this, domain, &out](next_fn next) {
      out.then = next;
      _res->resolve(domain, out);
    };
  }
  // Resolve `domain` and check what it says: an MTA-STS mode (or none), nothing more.
  step expect_sts(const std::string& domain, std::optional<mode> m) {
    auto a = std::make_shared<answer>();
    return [this, domain, m, a](next_fn next) {
      a->then = [a, m, domain, next] {
        if (!m) EXPECT_EQ(a->r.sts, nullptr) << domain;
        else if (!a->r.sts) ADD_FAILURE() << domain << ": no MTA-STS rules";
        else EXPECT_EQ(a->r.sts->mode, *m) << domain;
        next();
      };
      _res->resolve(domain, *a);
    };
  }
  // Run `fn` on the loop, then go on.
  step act(std::function<void()> fn) {
    return [fn](next_fn next) {
      fn();
      next();
    };
  }
  // Go on once `pred` holds (checked every tick).
  step wait_for(std::function<bool()> pred) {
    return [this, pred](next_fn next) {
      _until = pred;
      _then = next;
    };
  }

  std::unique_ptr<stub_fetcher> _fetch;
  sts::cache _cache{"", 0};
  policy::effective_policy _fallback;
  std::unique_ptr<sts::resolver> _res;
  int64_t _now = 1'000'000;
  std::vector<step> _steps;
  size_t _at = 0;
  std::function<bool()> _until;
  next_fn _then;
};

TEST_F(sts_resolver, no_txt_record_means_no_policy_and_no_fetch) {
  answer a;
  run({resolve("nothing.test", a),  // NXDOMAIN
       expect_sts("other.test", std::nullopt)});  // TXT, but no v=STSv1 record
  EXPECT_EQ(a.r.sts, nullptr);
  EXPECT_EQ(a.r.policy.source, report::policy_source::default_policy);
  EXPECT_FALSE(a.r.policy.raised);
  EXPECT_TRUE(_fetch->count.empty());
}

TEST_F(sts_resolver, bad_or_duplicate_txt_means_no_policy) {
  run({expect_sts("two.test", std::nullopt), expect_sts("bad.test", std::nullopt)});
  EXPECT_TRUE(_fetch->count.empty());
}

TEST_F(sts_resolver, enforce_raises_the_policy) {
  _fetch->auto_answer["enforce.test"] = ok(policy_text("enforce"));
  answer a, b;
  run({resolve("Enforce.Test.", a), resolve("enforce.test", b)});
  ASSERT_NE(a.r.sts, nullptr);
  EXPECT_EQ(a.r.sts->mode, mode::enforce);
  EXPECT_TRUE(a.r.sts->matches("a.mx.test"));
  EXPECT_TRUE(a.r.policy.raised);
  EXPECT_EQ(a.r.policy.verify, config::verify_mode::ca);
  EXPECT_EQ(a.r.policy.source, report::policy_source::mta_sts);
  EXPECT_EQ(a.r.policy.tls, config::tls_policy::opportunistic);  // the configured tls stays
  EXPECT_EQ(_cache.find("enforce.test")->id, "1");
  // Cached: the second resolve looked the TXT up again (DNS cache) but fetched nothing.
  ASSERT_NE(b.r.sts, nullptr);
  EXPECT_EQ(_fetch->count["enforce.test"], 1);
}

TEST_F(sts_resolver, txt_strings_are_concatenated) {
  _fetch->auto_answer["split.test"] = ok(policy_text("enforce"));
  run({expect_sts("split.test", mode::enforce)});
  EXPECT_EQ(_cache.find("split.test")->id, "7");
}

TEST_F(sts_resolver, dane_in_the_config_stays_dane) {
  _fallback.tls = config::tls_policy::forced;
  _fallback.verify = config::verify_mode::dane;
  make_resolver();
  _fetch->auto_answer["enforce.test"] = ok(policy_text("enforce"));
  answer a;
  run({resolve("enforce.test", a)});
  EXPECT_EQ(a.r.policy.verify, config::verify_mode::dane);
  EXPECT_EQ(a.r.policy.tls, config::tls_policy::forced);
  EXPECT_TRUE(a.r.policy.raised);
}

TEST_F(sts_resolver, testing_leaves_the_policy_and_none_publishes_nothing) {
  _fetch->auto_answer["testing.test"] = ok(policy_text("testing"));
  _fetch->auto_answer["none.test"] = ok("version: STSv1\nmode: none\nmax_age: 86400\n");
  answer a;
  run({resolve("testing.test", a), expect_sts("none.test", std::nullopt), expect_sts("none.test", std::nullopt)});
  ASSERT_NE(a.r.sts, nullptr);
  EXPECT_EQ(a.r.sts->mode, mode::testing);
  EXPECT_FALSE(a.r.policy.raised);
  EXPECT_EQ(a.r.policy.verify, config::verify_mode::none);
  EXPECT_EQ(a.r.policy.source, report::policy_source::default_policy);
  ASSERT_NE(_cache.find("none.test"), nullptr);  // cached all the same: no refetch
  EXPECT_EQ(_fetch->count["none.test"], 1);
}

TEST_F(sts_resolver, resolves_wait_for_the_fetch_in_flight) {
  std::vector<std::unique_ptr<answer>> as;
  for (int i = 0; i < 4; ++i) as.push_back(std::make_unique<answer>());
  auto all_got = [&] {
    for (auto& a : as)
      if (!a->got) return false;
    return true;
  };
  run({act([&] {
         for (int i = 0; i < 3; ++i) _res->resolve("enforce.test", *as[i]);
       }),
       wait_for([&] { return _fetch->held() == 1; }),
       act([&] { _res->resolve("enforce.test", *as[3]); }),  // arrives while the fetch is in flight
       wait_for([] { return true; }),                         // a tick later
       act([&] {
         for (auto& a : as) EXPECT_FALSE(a->got) << "answered before the policy was fetched";
         _fetch->release(ok(policy_text("enforce")));
       }),
       wait_for(all_got)});
  for (auto& a : as) {
    ASSERT_NE(a->r.sts, nullptr);
    EXPECT_TRUE(a->r.policy.raised);
  }
  EXPECT_EQ(_fetch->count["enforce.test"], 1);
  EXPECT_EQ(_res->stats().waited, 4u);
}

TEST_F(sts_resolver, a_failure_without_cache_means_no_policy_and_no_refetch_for_5_minutes) {
  _fetch->auto_answer["fail.test"] = failed("status 404");
  run({expect_sts("fail.test", std::nullopt),
       act([&] {
         EXPECT_EQ(_fetch->count["fail.test"], 1);
         _now += 299;
       }),
       expect_sts("fail.test", std::nullopt),
       act([&] {
         EXPECT_EQ(_fetch->count["fail.test"], 1);
         _now += 1;
         _fetch->auto_answer["fail.test"] = ok(policy_text("enforce"));
       }),
       expect_sts("fail.test", mode::enforce)});
  EXPECT_EQ(_fetch->count["fail.test"], 2);
}

TEST_F(sts_resolver, an_invalid_policy_is_a_failure) {
  _fetch->auto_answer["fail.test"] = ok("version: STSv1\nmode: enforce\nmax_age: 86400\n");  // no mx
  run({expect_sts("fail.test", std::nullopt)});
  EXPECT_EQ(_res->stats().fetch_failures, 1u);
}

TEST_F(sts_resolver, an_id_change_refetches_and_a_failure_keeps_the_cached_policy) {
  auto old = sts::parse_policy(policy_text("enforce"));
  _cache.store("enforce.test", "0", old->rules, old->max_age, policy_text("enforce"), _now);
  // TXT says id=1: refetch; it fails: the cached policy (id 0) stays in force.
  _fetch->auto_answer["enforce.test"] = failed("tls: handshake");
  run({expect_sts("enforce.test", mode::enforce),
       act([&] {
         EXPECT_EQ(_cache.find("enforce.test")->id, "0");
         EXPECT_EQ(_fetch->count["enforce.test"], 1);
         _now += 60;  // within 5 minutes: no refetch
       }),
       expect_sts("enforce.test", mode::enforce),
       act([&] {
         EXPECT_EQ(_fetch->count["enforce.test"], 1);
         _now += 300;  // later it works: the new policy (testing) replaces the old
         _fetch->auto_answer["enforce.test"] = ok(policy_text("testing"));
       }),
       expect_sts("enforce.test", mode::testing)});
  EXPECT_EQ(_cache.find("enforce.test")->id, "1");
  EXPECT_EQ(_fetch->count["enforce.test"], 2);
}

TEST_F(sts_resolver, refresh_before_expiry_answers_at_once) {
  _fetch->auto_answer["enforce.test"] = ok(policy_text("enforce", 4000));
  run({expect_sts("enforce.test", mode::enforce),
       act([&] {
         _fetch->auto_answer.clear();
         _now += 2999;  // 1001 s left: more than a quarter of max_age
       }),
       expect_sts("enforce.test", mode::enforce),
       act([&] {
         EXPECT_EQ(_fetch->count["enforce.test"], 1);
         _now += 1;  // 1000 s left: refresh, but answer from the cache without waiting
       }),
       expect_sts("enforce.test", mode::enforce),
       act([&] {
         EXPECT_EQ(_fetch->count["enforce.test"], 2);
         EXPECT_EQ(_fetch->held(), 1u);
       }),
       expect_sts("enforce.test", mode::enforce),  // while the refresh is in flight, too
       act([&] {
         EXPECT_EQ(_fetch->count["enforce.test"], 2);
         _fetch->release(ok(policy_text("testing", 4000)));
       }),
       wait_for([&] { return _cache.find("enforce.test")->fetched_at == _now; }),
       expect_sts("enforce.test", mode::testing)});
}

TEST_F(sts_resolver, refresh_due_refetches_policies_nobody_asked_for) {
  // A cached policy due for refresh is refetched in the background without any mail for
  // the domain (RFC 8461 §10.2); one not due yet is left alone.
  auto p = sts::parse_policy(policy_text("enforce", 4000));
  _cache.store("enforce.test", "1", p->rules, p->max_age, policy_text("enforce", 4000), _now);
  _cache.store("testing.test", "1", p->rules, p->max_age, policy_text("enforce", 4000), _now);
  _now += 3000;  // 1000 s left for both
  _cache.store("testing.test", "1", p->rules, p->max_age, policy_text("enforce", 4000), _now);  // fresh again
  _fetch->auto_answer["enforce.test"] = ok(policy_text("testing", 4000));
  run({act([&] { _res->refresh_due(); }),
       wait_for([&] { return _cache.find("enforce.test")->fetched_at == _now; }),
       act([&] {
         EXPECT_EQ(_fetch->count["enforce.test"], 1);
         EXPECT_EQ(_fetch->count["testing.test"], 0);
         EXPECT_EQ(_res->stats().refreshes, 1u);
         _res->refresh_due();  // nothing due any more
         EXPECT_EQ(_res->stats().refreshes, 1u);
       }),
       expect_sts("enforce.test", mode::testing)});
}

TEST_F(sts_resolver, still_current_says_when_a_new_policy_replaced_an_answer) {
  auto a = std::make_shared<answer>();
  _fetch->auto_answer["enforce.test"] = ok(policy_text("testing", 4000));
  run({resolve("enforce.test", *a),
       act([&] {
         ASSERT_TRUE(a->r.sts);
         EXPECT_TRUE(_res->still_current("enforce.test", a->r));
         EXPECT_TRUE(_res->still_current("Enforce.Test.", a->r));
         // Refetched with the same rules: still current (a new pointer, same content).
         auto same = sts::parse_policy(policy_text("testing", 4000));
         _cache.store("enforce.test", "1", same->rules, same->max_age, policy_text("testing", 4000), _now);
         EXPECT_TRUE(_res->still_current("enforce.test", a->r));
         // Now enforce: a reused connection must not carry the next message.
         auto p = sts::parse_policy(policy_text("enforce", 4000));
         _cache.store("enforce.test", "2", p->rules, p->max_age, policy_text("enforce", 4000), _now);
         EXPECT_FALSE(_res->still_current("enforce.test", a->r));
         // No policy answered, none cached: current; "mode: none" counts as none.
         policy::resolution nothing{_fallback, nullptr};
         EXPECT_TRUE(_res->still_current("other.test", nothing));
         auto none = sts::parse_policy("version: STSv1\nmode: none\nmax_age: 600\n");
         ASSERT_TRUE(none);
         _cache.store("none.test", "1", none->rules, none->max_age, "", _now);
         EXPECT_TRUE(_res->still_current("none.test", nothing));
         // An answered policy that expired since: not current.
         _now += 4001;
         EXPECT_FALSE(_res->still_current("enforce.test", a->r));
       })});
}

TEST_F(sts_resolver, without_txt_the_cache_holds_until_expiry) {
  auto p = sts::parse_policy(policy_text("enforce", 600));
  _cache.store("gone.test", "1", p->rules, p->max_age, policy_text("enforce", 600), _now);
  run({expect_sts("gone.test", mode::enforce),  // NXDOMAIN: the cached policy stays
       act([&] { _now += 599; }), expect_sts("gone.test", mode::enforce),
       act([&] { _now += 1; }), expect_sts("gone.test", std::nullopt)});  // expired
  EXPECT_TRUE(_fetch->count.empty());
}

TEST_F(sts_resolver, a_dns_failure_keeps_the_cache) {
  auto p = sts::parse_policy(policy_text("enforce"));
  _cache.store("broken.test", "1", p->rules, p->max_age, policy_text("enforce"), _now);
  run({expect_sts("broken.test", mode::enforce)});  // SERVFAIL
  EXPECT_TRUE(_fetch->count.empty());
}

TEST_F(sts_resolver, routed_domains_get_the_table_policy_without_a_lookup) {
  sts::resolver_options ro;
  ro.clock = [this] { return _now; };
  ro.routed = [](std::string_view d) { return d == "enforce.test"; };
  _res = std::make_unique<sts::resolver>(*_dns, *_fetch, _cache, nullptr, _fallback, ro);
  _fetch->auto_answer["enforce.test"] = ok(policy_text("enforce"));
  answer a;
  _res->resolve("Enforce.Test", a);  // answered at once: nothing to wait for
  EXPECT_TRUE(a.got);
  EXPECT_EQ(a.r.sts, nullptr);
  EXPECT_FALSE(a.r.policy.raised);
  run({expect_sts("nothing.test", std::nullopt)});  // not routed: looked up as usual
  EXPECT_TRUE(_fetch->count.find("enforce.test") == _fetch->count.end());
}

TEST_F(sts_resolver, combine_spells_out_the_modes) {
  policy::effective_policy p;
  p.tls = config::tls_policy::exclusive;
  EXPECT_EQ(sts::resolver::combine(p, nullptr).sts, nullptr);
  auto rules = std::make_shared<policy::mta_sts_rules>();
  rules->mode = mode::none;
  EXPECT_EQ(sts::resolver::combine(p, rules).sts, nullptr);
  rules->mode = mode::enforce;
  auto r = sts::resolver::combine(p, rules);
  EXPECT_EQ(r.policy.tls, config::tls_policy::exclusive);
  EXPECT_EQ(r.policy.verify, config::verify_mode::ca);
  EXPECT_EQ(r.policy.source, report::policy_source::mta_sts);
}

}  // namespace
