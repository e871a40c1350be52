// The policy resolver seam (issue 7, item 5): one effective policy and its source for a
// recipient domain. Today it combines only the config table (policy::reader); MTA-STS,
// DANE and REQUIRETLS plug in later and need a lookup first (DNS TXT/TLSA, an HTTPS
// fetch), so the answer comes through a completion, possibly before resolve() returns.
#pragma once
#include <string_view>

#include "sealrelay/policy/registry.hh"
#include "sealrelay/policy/table.hh"

namespace sr::policy {

// Where a resolution's answer goes.
class resolve_completion {
 public:
  // The effective policy for the domain asked about (source inside: p.source). `p` is
  // valid during the call only; copy it to keep it.
  virtual void policy_resolved(const effective_policy& p) = 0;

 protected:
  ~resolve_completion() = default;
};

class resolver {
 public:
  virtual ~resolver() = default;
  // Resolve the policy of `domain`; `done` gets it exactly once, on the caller's thread,
  // possibly before this returns.
  virtual void resolve(std::string_view domain, resolve_completion& done) = 0;
};

// The config table only: answers at once from the shard's reader (or `fallback` when the
// shard has no table, e.g. in tools).
class table_resolver final : public resolver {
 public:
  // Resolve from `r` (may be null) or, without a table, to `fallback`.
  table_resolver(reader* r, const effective_policy& fallback) : _reader(r), _fallback(fallback) {}
  // Answer the table's most specific rule for `domain` at once.
  void resolve(std::string_view domain, resolve_completion& done) override {
    if (_reader) done.policy_resolved(_reader->lookup(domain).policy);
    else done.policy_resolved(_fallback);
  }
  void set_reader(reader* r) { _reader = r; }

 private:
  reader* _reader;
  effective_policy _fallback;
};

}  // namespace sr::policy
