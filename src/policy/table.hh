// The compiled TLS policy table (DESIGN.md §1, §4 [[policy]]): an immutable snapshot built
// from `config.policies` + `outbound.default_policy`, looked up per recipient domain.
// Most specific wins: the exact domain, then the longest parent suffix (".bank.example"
// matches every subdomain, never bank.example itself), then the default. A lookup hashes
// each label of the domain once (right to left, into a stack buffer), probes at most one
// open-addressing slot run per candidate, never allocates and never locks.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hh"
#include "util/duration.hh"
#include "util/result.hh"

namespace sr::policy {

// Where the effective policy came from (audit `policy_source`).
enum class policy_source : uint8_t {
  default_policy,  // outbound.default_policy (no [[policy]] matched)
  config,          // a [[policy]] entry
};
// Return the audit token: "default" or "config".
const char* to_string(policy_source s);

// One step of a forced policy's fallback chain (DESIGN.md §4 `fallback`).
enum class fallback_method : uint8_t { pgp, smime, escrow, defer };
// Return the config spelling: "pgp", "smime", "escrow", "defer".
const char* to_string(fallback_method m);

// The fallback chain without heap storage (at most the four distinct methods).
struct fallback_chain {
  std::array<fallback_method, 4> methods{fallback_method::pgp, fallback_method::smime,
                                         fallback_method::escrow, fallback_method::defer};
  uint8_t size = 3;  // default chain: pgp, smime, escrow

  const fallback_method* begin() const { return methods.data(); }
  const fallback_method* end() const { return methods.data() + size; }
  bool operator==(const fallback_chain& o) const;
};

// Everything the decider, the queue and the audit need about one domain's policy. Trivially
// copyable and self-contained: a connection may keep a copy after its table is reclaimed.
struct effective_policy {
  config::tls_policy tls = config::tls_policy::opportunistic;
  config::verify_mode verify = config::verify_mode::none;
  config::tls_version min_version = config::tls_version::v1_2;
  bool notify_sender = false;
  policy_source source = policy_source::default_policy;
  fallback_chain fallback;
  unsigned min_cipher_bits = 128;
  duration fallback_after{0};
};

// A lookup result: the policy and the pattern that selected it. `pattern` ("bank.example",
// ".bank.example", or "" for the default) lives as long as the table does.
struct rule {
  effective_policy policy;
  std::string_view pattern;
};

class table;

// Collects patterns and their policies, then builds a table. Start-up / reload path only.
class builder {
 public:
  // Start a table whose unmatched domains get `default_policy` (source forced to default).
  explicit builder(const effective_policy& default_policy);
  // Reserve room for `n` patterns (avoids regrowth when compiling large tables).
  void reserve(size_t n);
  // Add "domain" (exact) or ".domain" (suffix); lower-cased here. Fails on a malformed
  // pattern; duplicates are reported by build().
  status add(std::string_view pattern, const effective_policy& p);
  // Build the immutable table; fails when a pattern was added twice.
  result<std::unique_ptr<table>> build() &&;

 private:
  effective_policy _default;
  std::vector<effective_policy> _policies;
  std::vector<uint32_t> _offsets;  // pattern i is _arena[_offsets[i], _offsets[i+1])
  std::string _arena;
};

// Compile `cfg` into a table. [[policy]] min_version / min_cipher_bits that were not written
// take [tls]'s values; the default policy takes outbound.default_policy and [tls]'s floors.
result<std::unique_ptr<table>> compile(const config::config& cfg);

// Return the effective policy for a [[policy]] entry of `cfg` (as compile() does).
effective_policy from_entry(const config::config& cfg, size_t index);
// Return the policy for domains that match no [[policy]] (as compile() does).
effective_policy default_for(const config::config& cfg);

class table {
 public:
  table(const table&) = delete;
  table& operator=(const table&) = delete;

  // Return the most specific rule for `domain` (any case, optional trailing dot); never
  // allocates. The reference is valid while this table is (see registry.hh).
  const rule& lookup(std::string_view domain) const;
  // Return the rule for domains no pattern matches.
  const rule& default_rule() const { return _default; }
  // Return the number of [[policy]] patterns.
  size_t size() const { return _rules.size(); }
  // Return the publication epoch the registry stamped on it (0 before publication).
  uint64_t epoch() const { return _epoch; }

 private:
  friend class builder;
  friend class registry;
  table() = default;

  // One open-addressing slot: full hash and key length filter before the rule is touched.
  struct slot {
    uint64_t hash = 0;
    uint32_t rule = empty;
    uint32_t len = 0;
    static constexpr uint32_t empty = UINT32_MAX;
  };

  const rule* find(uint64_t h, const char* key, size_t len) const;

  rule _default;
  std::vector<rule> _rules;
  std::unique_ptr<char[]> _arena;  // every pattern, lower-case; rules point into it
  std::vector<slot> _slots;        // size is a power of two, load factor <= 1/2
  uint64_t _mask = 0;
  uint64_t _epoch = 0;
};

}  // namespace sr::policy
