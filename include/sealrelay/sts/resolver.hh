// The MTA-STS policy resolver (RFC 8461 §3–5) of one shard: resolve(domain) combines the
// config table's policy with the domain's published MTA-STS policy. Each resolve looks up
// TXT `_mta-sts.<domain>` (through the DNS cache, so at most once per TTL on the wire),
// then answers from the policy cache, or fetches the policy first when there is no live
// cached policy or the TXT id changed. While such a fetch is in flight, every resolve for
// the domain waits for it (messages never leave unprotected meanwhile); a fetch failure
// keeps the cached policy (none: no MTA-STS, §5) and is not retried for 5 minutes. A
// live policy due for refresh is answered at once and refetched in the background.
// Shard-local: no lock; callbacks run on the shard thread.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sealrelay/dns/resolver.hh"
#include "sealrelay/policy/resolver.hh"
#include "sealrelay/sts/cache.hh"

namespace sr::sts {

// What fetching a policy file yielded.
struct fetch_result {
  bool ok = false;
  std::string body;    // the policy file (ok only)
  std::string detail;  // why it failed, for logs ("cert: ...", "status: HTTP 404", "redirect: ...")
  // The policy host's certificate did not verify (TLS-RPT sts-webpki-invalid); any other
  // failure is a fetch error.
  bool cert_failed = false;
};

// Where policies come from: https://mta-sts.<domain>/.well-known/mta-sts.txt in the
// daemon (https_fetcher), a stub in tests.
class fetcher {
 public:
  virtual ~fetcher() = default;
  // Fetch the policy file of `domain`; `done` runs exactly once, later, on the shard thread.
  virtual void fetch(std::string_view domain, std::function<void(const fetch_result&)> done) = 0;
};

struct resolver_options {
  // Wall-clock Unix seconds (tests move time forward); default: time().
  std::function<int64_t()> clock;
  // A failed fetch is not retried before this many seconds.
  int64_t refetch_interval_s = sts::refetch_interval_s;
  // Domains whose mail goes to a configured next hop ([[route]]) rather than their MX hosts:
  // MTA-STS describes MX hosts (RFC 8461 §4), so these get the table's policy at once, with
  // no TXT lookup. Null: none.
  std::function<bool(std::string_view domain)> routed;
};

// Counters for tests and /metrics.
struct resolver_stats {
  uint64_t fetches = 0;         // policy fetches started
  uint64_t fetch_failures = 0;  // fetches that failed or returned an invalid policy
  uint64_t stored = 0;          // policies fetched and cached
  uint64_t waited = 0;          // resolves that waited for a fetch
  uint64_t refreshes = 0;       // background refreshes started by refresh_due()
};

class resolver final : public policy::resolver {
 public:
  // Resolve against `table` (the shard's config table; null: `fallback` for every domain),
  // looking TXT records up through `dns`, fetching with `f`, caching in `c`.
  resolver(dns::resolver& dns, fetcher& f, cache& c, policy::reader* table, const policy::effective_policy& fallback,
           resolver_options opt = {});
  // Pending completions are dropped (never called): destroy it only once no attempt waits.
  ~resolver() override;
  resolver(const resolver&) = delete;
  resolver& operator=(const resolver&) = delete;

  // Resolve `domain`'s policy: the table's, raised by an MTA-STS enforce policy (verify
  // = ca unless the table says dane, source mta_sts), with the rules in `sts` when the
  // domain publishes testing or enforce. Answers later (after a DNS callback), except for
  // routed domains and while a refresh runs in the background (at once, from the table or
  // the cache).
  void resolve(std::string_view domain, policy::resolve_completion& done) override;

  // Return false when the cache now holds other MTA-STS rules for `domain` than `r` was
  // answered with (a new policy, or the old one expired).
  bool still_current(std::string_view domain, const policy::resolution& r) const override;

  // Start background refreshes (TXT lookup, then a fetch) of live cached policies due for
  // one, at most `max` per call, so that a domain without traffic still has a fresh policy
  // when mail for it comes (RFC 8461 §10.2: a policy that expires unrefreshed lets an
  // attacker who blocks the fetch downgrade the domain). The relay calls it every 10 s.
  void refresh_due(size_t max = 64);

  // Return what `p` becomes under the MTA-STS rules `sts` (null: unchanged).
  static policy::resolution combine(const policy::effective_policy& p,
                                    std::shared_ptr<const policy::mta_sts_rules> sts);

  void set_reader(policy::reader* r) { _table = r; }
  const resolver_stats& stats() const { return _stats; }

 private:
  struct pending;  // one domain's TXT lookup or fetch in flight, and who waits for it
  int64_t now() const;
  void on_txt(const std::string& domain, const dns::txt_result& r);
  void start_fetch(const std::string& domain, const std::string& id);
  void on_fetched(const std::string& domain, const std::string& id, const fetch_result& r);
  // Answer every waiter of `domain` from the cache and forget its pending state.
  void finish(const std::string& domain);
  void answer(std::string_view domain, policy::resolve_completion& done);

  dns::resolver& _dns;
  fetcher& _fetcher;
  cache& _cache;
  policy::reader* _table;
  policy::effective_policy _fallback;
  resolver_options _opt;
  resolver_stats _stats;
  int64_t _last_sweep = 0;  // when the cache last dropped expired entries
  std::unordered_map<std::string, std::unique_ptr<pending>> _pending;
  // Callbacks hold a weak reference: after destruction they do nothing.
  std::shared_ptr<resolver*> _self;
};

}  // namespace sr::sts
