// The compiled TLS policy table (DESIGN.md §1, §4 [[policy]]): an immutable snapshot built
// from `config.policies` + `outbound.default_policy`, looked up per recipient domain.
// Most specific wins: the exact domain, then the longest parent suffix (".bank.example"
// matches every subdomain, never bank.example itself), then the default. A lookup lower-cases
// the domain into a stack buffer, hashes each label once (right to left, which yields the
// hash of the name and of every parent suffix), probes one open-addressing run per candidate
// (a control byte first, then the slot holding the pattern), never allocates, never locks.
#pragma once
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/config/config.hh"
#include "sealrelay/report/policy_source.hh"
#include "sealrelay/util/duration.hh"
#include "sealrelay/util/result.hh"

namespace sr::policy {

// Where the effective policy came from: the one enum of report/policy_source.hh.
using report::policy_source;

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
  // The recipient's own policy raised the floor (MTA-STS enforce: verify = ca; DANE:
  // verify = dane): TLS with a verified peer is required whatever `tls` says. Under an
  // opportunistic `tls` a failure is then a temporary failure (retry, bounce at
  // max_queue_age); forced and exclusive keep their fallback and drop.
  bool raised = false;
  // The message asked for REQUIRETLS (RFC 8689; never set by the table): on top of the
  // raised floor, the MX must offer REQUIRETLS in its EHLO over TLS.
  bool requiretls = false;
};

// A lookup result (returned by value, two words): the policy and the pattern that selected
// it ("bank.example", ".bank.example", or "" for the default). Both refer into the table
// and live as long as it does; copy `policy` to keep it longer.
struct rule {
  const effective_policy& policy;
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
  ~table();

  // Return how many tables exist in the process (tests and /metrics: reclamation works).
  static size_t live() { return _live.load(std::memory_order_relaxed); }

  // Return the most specific rule for `domain` (any case, optional trailing dot); never
  // allocates. What it refers to is valid while this table is (see registry.hh).
  rule lookup(std::string_view domain) const;
  // Return the rule for domains no pattern matches.
  rule default_rule() const { return rule{_default, {}}; }
  // Return the number of [[policy]] patterns.
  size_t size() const { return _count; }
  // Return the publication epoch the registry stamped on it (0 before publication).
  uint64_t epoch() const { return _epoch; }

 private:
  friend class builder;
  friend class registry;
  table();

  // An anonymous mapping; 2 MiB-aligned with MADV_HUGEPAGE when large, so that random
  // lookups in a million-entry table do not pay a page walk per access.
  class region {
   public:
    region() = default;
    region(region&& o) noexcept;
    region& operator=(region&& o) noexcept;
    ~region();
    // Map `bytes` (zero-filled); false when the kernel refuses.
    bool map(size_t bytes);
    std::byte* data() const { return _p; }

   private:
    std::byte* _p = nullptr;  // aligned start
    void* _base = nullptr;    // what mmap returned
    size_t _len = 0;          // what was mapped
  };

  // One open-addressing slot, two per cache line. Patterns up to 24 characters (nearly
  // all) live in the slot, so a hit costs one cache miss; longer ones live in _long_keys.
  struct slot {
    uint32_t policy;  // index + 1 into _policies; 0 = empty
    uint16_t len;     // pattern length
    uint16_t tag;     // 16 more hash bits: most non-matching probes stop here
    char key[24];     // the pattern, or (len > 24) a `const char*` to it
  };
  static constexpr size_t inline_key = sizeof(slot::key);

  static const char* key_of(const slot& s) {
    if (s.len <= inline_key) return s.key;
    const char* p;
    __builtin_memcpy(&p, s.key, sizeof p);
    return p;
  }
  const slot* find(uint64_t h, const char* key, size_t len) const;

  effective_policy _default;
  size_t _count = 0;
  std::vector<effective_policy> _policies;  // distinct policies (usually a handful)
  std::unique_ptr<char[]> _long_keys;       // patterns over 24 characters, back to back
  region _slot_mem;
  region _ctrl_mem;
  const slot* _slots = nullptr;  // a power of two of them, load factor <= 1/2
  // One byte per slot, probed before the slots (as in Abseil's Swiss tables): 0 = empty,
  // else 0x80 | 7 hash bits. At a byte per slot it stays cached, so a miss rarely touches
  // a slot and a hit costs the one slot it finds.
  const uint8_t* _ctrl = nullptr;
  uint64_t _mask = 0;
  uint64_t _epoch = 0;
  static inline std::atomic<size_t> _live{0};
};

}  // namespace sr::policy
