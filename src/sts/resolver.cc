// The MTA-STS resolver: per domain, a small state machine (see resolver.hh) —
//   idle --resolve--> txt lookup --id known, live--> answer (maybe refresh in background)
//                               \--no live policy / new id--> fetch (resolves wait) --> answer
// One pending record per domain coalesces every resolve that arrives meanwhile. A fetch's
// outcome goes into the cache first; answers are always read back from the cache.
#include "sealrelay/sts/resolver.hh"

#include <cctype>
#include <ctime>

#include "sealrelay/sts/policy.hh"
#include "sealrelay/util/log.hh"

namespace sr::sts {

struct resolver::pending {
  enum class stage : uint8_t {
    txt,      // TXT lookup in flight: resolves wait
    fetch,    // fetch without a usable cached policy (none, or the id changed): resolves wait
    refresh,  // proactive refetch of a live policy: resolves answer from the cache
  };
  stage st = stage::txt;
  std::vector<policy::resolve_completion*> waiters;
};

resolver::resolver(dns::resolver& dns, fetcher& f, cache& c, policy::reader* table,
                   const policy::effective_policy& fallback, resolver_options opt)
    : _dns(dns), _fetcher(f), _cache(c), _table(table), _fallback(fallback), _opt(std::move(opt)),
      _self(std::make_shared<resolver*>(this)) {}

resolver::~resolver() = default;

int64_t resolver::now() const { return _opt.clock ? _opt.clock() : int64_t(::time(nullptr)); }

policy::resolution resolver::combine(const policy::effective_policy& p,
                                     std::shared_ptr<const policy::mta_sts_rules> sts) {
  policy::resolution out{p, nullptr};
  if (!sts || sts->mode == policy::sts_mode::none) return out;
  if (sts->mode == policy::sts_mode::enforce) {
    // RFC 8461 §4.2: a verified certificate; the configured tls keeps deciding what a
    // failure leads to (opportunistic: retry; forced: fallback; exclusive: drop).
    out.policy.raised = true;
    if (out.policy.verify != config::verify_mode::dane) out.policy.verify = config::verify_mode::ca;
    out.policy.source = report::policy_source::mta_sts;
  }
  out.sts = std::move(sts);
  return out;
}

void resolver::answer(std::string_view domain, policy::resolve_completion& done) {
  const cache_entry* e = _cache.find(domain);
  policy::effective_policy base = _table ? _table->lookup(domain).policy : _fallback;
  done.policy_resolved(combine(base, e && e->live(now()) ? e->rules : nullptr));
}

bool resolver::still_current(std::string_view domain, const policy::resolution& r) const {
  // Asked once per message on a reused connection: no copy when the name is already in
  // the cache's form (the queue's domains are lower case without a trailing dot).
  std::string copy;
  std::string_view key = domain;
  bool plain = !key.empty() && key.back() != '.';
  for (char c : key) plain = plain && !std::isupper(static_cast<unsigned char>(c));
  if (!plain) {
    copy.assign(domain);
    for (char& c : copy) c = char(std::tolower(static_cast<unsigned char>(c)));
    while (!copy.empty() && copy.back() == '.') copy.pop_back();
    key = copy;
  }
  if (_opt.routed && _opt.routed(key)) return true;  // answered without MTA-STS, always
  // What answer() would say now: combine() keeps rules only when their mode is not none.
  const cache_entry* e = _cache.find(key);
  const policy::mta_sts_rules* now_rules = e && e->live(now()) ? e->rules.get() : nullptr;
  if (now_rules && now_rules->mode == policy::sts_mode::none) now_rules = nullptr;
  const policy::mta_sts_rules* had = r.sts.get();
  if (!now_rules || !had) return now_rules == had;
  return now_rules == had || (now_rules->mode == had->mode && now_rules->mx == had->mx);
}

void resolver::resolve(std::string_view domain, policy::resolve_completion& done) {
  std::string key(domain);
  for (char& c : key) c = char(std::tolower(static_cast<unsigned char>(c)));
  while (!key.empty() && key.back() == '.') key.pop_back();
  // Forget expired policies and old failures now and then (O(cache) every 5 minutes).
  if (int64_t t = now(); t - _last_sweep >= sts::refetch_interval_s) {
    _cache.drop_expired(t);
    _last_sweep = t;
  }
  if (_opt.routed && _opt.routed(key)) {
    policy::effective_policy base = _table ? _table->lookup(key).policy : _fallback;
    return done.policy_resolved(combine(base, nullptr));
  }
  if (auto it = _pending.find(key); it != _pending.end()) {
    if (it->second->st == pending::stage::refresh) return answer(key, done);
    if (it->second->st == pending::stage::fetch) ++_stats.waited;
    it->second->waiters.push_back(&done);
    return;
  }
  auto p = std::make_unique<pending>();
  p->waiters.push_back(&done);
  _pending.emplace(key, std::move(p));
  std::weak_ptr<resolver*> self = _self;
  _dns.lookup_txt("_mta-sts." + key, [self, key](const dns::txt_result& r) {
    if (auto s = self.lock()) (*s)->on_txt(key, r);
  });
}

void resolver::refresh_due(size_t max) {
  const int64_t t = now();
  for (const std::string& domain : _cache.due_for_refresh(t, _opt.refetch_interval_s, max)) {
    if (_pending.count(domain)) continue;  // a resolve is already on it
    // A pending record without waiters: on_txt sees a live, due policy and refetches it
    // (or fetches at once when the TXT id changed); nobody waits either way.
    _pending.emplace(domain, std::make_unique<pending>());
    ++_stats.refreshes;
    std::weak_ptr<resolver*> self = _self;
    _dns.lookup_txt("_mta-sts." + domain, [self, domain](const dns::txt_result& r) {
      if (auto s = self.lock()) (*s)->on_txt(domain, r);
    });
  }
}

void resolver::on_txt(const std::string& domain, const dns::txt_result& r) {
  auto it = _pending.find(domain);
  if (it == _pending.end()) return;
  pending* p = it->second.get();
  if (r.status != dns::status::ok) {
    // NXDOMAIN / NODATA: no policy published now; a cached one stays in force until it
    // expires (§3.1 and §10.2: only a fetched "mode: none" withdraws it). A lookup
    // failure tells nothing either way.
    if (r.status == dns::status::temp_fail)
      SR_DEBUG("mta-sts: %s: TXT lookup failed: %s", domain.c_str(), dns::to_string(r.status));
    return finish(domain);
  }
  txt_record rec = parse_txt(r.texts);
  if (rec.verdict != txt_verdict::valid) {
    if (rec.verdict == txt_verdict::invalid)
      SR_INFO("mta-sts: %s: invalid TXT record (%s): no policy available", domain.c_str(), rec.detail.c_str());
    return finish(domain);
  }
  const int64_t t = now();
  const cache_entry* e = _cache.find(domain);
  const bool live = e && e->live(t);
  const bool may_fetch = !e || !e->last_fetch_attempt || t - e->last_fetch_attempt >= _opt.refetch_interval_s;
  if (live && e->id == rec.id) {
    if (t >= e->next_refresh_at && may_fetch) {
      // Due for refresh: this policy is still in force, so nobody needs to wait.
      auto waiters = std::move(p->waiters);
      p->waiters.clear();
      p->st = pending::stage::refresh;
      start_fetch(domain, rec.id);
      for (auto* w : waiters) answer(domain, *w);
      return;
    }
    return finish(domain);
  }
  if (!may_fetch) return finish(domain);  // failed recently: the cached policy, or none
  p->st = pending::stage::fetch;
  _stats.waited += p->waiters.size();
  start_fetch(domain, rec.id);
}

void resolver::start_fetch(const std::string& domain, const std::string& id) {
  ++_stats.fetches;
  std::weak_ptr<resolver*> self = _self;
  _fetcher.fetch(domain, [self, domain, id](const fetch_result& r) {
    if (auto s = self.lock()) (*s)->on_fetched(domain, id, r);
  });
}

void resolver::on_fetched(const std::string& domain, const std::string& id, const fetch_result& r) {
  const int64_t t = now();
  if (!r.ok) {
    ++_stats.fetch_failures;
    _cache.note_failure(domain, t);
    SR_WARN("mta-sts: %s: policy fetch failed (%s)%s", domain.c_str(), r.detail.c_str(),
            _cache.find(domain)->live(t) ? ": the cached policy stays in force" : ": no MTA-STS policy");
    return finish(domain);
  }
  auto parsed = parse_policy(r.body);
  if (!parsed) {
    ++_stats.fetch_failures;
    _cache.note_failure(domain, t);
    SR_WARN("mta-sts: %s: invalid policy (%s)%s", domain.c_str(), parsed.err().c_str(),
            _cache.find(domain)->live(t) ? ": the cached policy stays in force" : ": no MTA-STS policy");
    return finish(domain);
  }
  ++_stats.stored;
  _cache.store(domain, id, parsed->rules, parsed->max_age, r.body, t);
  SR_INFO("mta-sts: %s: policy id %s, mode %s, max_age %u", domain.c_str(), id.c_str(),
          parsed->rules.mode == policy::sts_mode::enforce   ? "enforce"
          : parsed->rules.mode == policy::sts_mode::testing ? "testing"
                                                                       : "none",
          parsed->max_age);
  finish(domain);
}

void resolver::finish(const std::string& domain) {
  auto it = _pending.find(domain);
  if (it == _pending.end()) return;
  auto waiters = std::move(it->second->waiters);
  _pending.erase(it);
  // A completion may resolve this domain again at once: the pending record is gone, so
  // that starts afresh.
  for (auto* w : waiters) answer(domain, *w);
}

}  // namespace sr::sts
