// The policy resolver seam (issue 7, item 5): one effective policy and its source for a
// recipient domain. Today it combines only the config table (policy::reader); MTA-STS,
// DANE and REQUIRETLS plug in later and need a lookup first (DNS TXT/TLSA, an HTTPS
// fetch), so the answer comes through a completion, possibly before resolve() returns.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/policy/registry.hh"
#include "sealrelay/policy/table.hh"

namespace sr::policy {

// A recipient domain's MTA-STS rules as delivery uses them (RFC 8461 §4.1): the mode and
// the `mx` patterns an MX host must match ("mx1.example.com", or "*.example.net" = exactly
// one more label). Parsed and cached by src/sts; pure data here so the host walk needs no
// more than this.
enum class sts_mode : uint8_t { none, testing, enforce };

struct mta_sts_rules {
  sts_mode mode = sts_mode::none;
  std::vector<std::string> mx;  // lower-case patterns, no trailing dot
  uint32_t max_age = 0;         // seconds, as published (TLS-RPT reports the policy string)
  // Return whether `host` (any case, optional trailing dot) matches one of the patterns.
  bool matches(std::string_view host) const;
};

// What a resolution yields: the effective policy (the config table's, raised by MTA-STS
// enforce) and the domain's MTA-STS rules when it publishes a policy (testing or enforce).
struct resolution {
  effective_policy policy;
  std::shared_ptr<const mta_sts_rules> sts;  // null: no MTA-STS policy in force
};

// Where a resolution's answer goes.
class resolve_completion {
 public:
  // The resolution for the domain asked about (source inside: r.policy.source). `r` is
  // valid during the call only; copy it to keep it.
  virtual void policy_resolved(const resolution& r) = 0;

 protected:
  ~resolve_completion() = default;
};

class resolver {
 public:
  virtual ~resolver() = default;
  // Resolve the policy of `domain`; `done` gets it exactly once, on the caller's thread,
  // possibly before this returns.
  virtual void resolve(std::string_view domain, resolve_completion& done) = 0;
  // Return whether `r`, answered earlier for `domain`, still holds as far as the resolver
  // knows now, without a lookup (a connection reused for the next message asks: a policy
  // fetched since then must not be bypassed). Must not be false for a fresh answer.
  virtual bool still_current(std::string_view domain, const resolution& r) const {
    (void)domain;
    (void)r;
    return true;
  }
};

// The config table only: answers at once from the shard's reader (or `fallback` when the
// shard has no table, e.g. in tools).
class table_resolver final : public resolver {
 public:
  // Resolve from `r` (may be null) or, without a table, to `fallback`.
  table_resolver(reader* r, const effective_policy& fallback) : _reader(r), _fallback(fallback) {}
  // Answer the table's most specific rule for `domain` at once.
  void resolve(std::string_view domain, resolve_completion& done) override {
    done.policy_resolved(resolution{_reader ? _reader->lookup(domain).policy : _fallback, nullptr});
  }
  void set_reader(reader* r) { _reader = r; }

 private:
  reader* _reader;
  effective_policy _fallback;
};

}  // namespace sr::policy
