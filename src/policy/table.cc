// Policy table build and lookup. The hash of a name is built label by label from the right,
// so one right-to-left pass over the recipient domain yields the hash of the full name and of
// every parent suffix; each candidate then costs one slot probe (usually one cache line).
// Exact keys ("bank.example") and suffix keys (".bank.example") share one slot array: the
// final mix differs by kind and the stored key text differs by the leading dot.
#include "policy/table.hh"

#include <cstring>

namespace sr::policy {

namespace {

constexpr size_t max_name = 253;    // RFC 1035 presentation length without the final dot
constexpr size_t max_labels = 128;  // 253 chars hold at most 127 labels
constexpr size_t pad = 8;           // word loads may read up to 7 bytes past a label

constexpr uint64_t k0 = 0xa0761d6478bd642full;
constexpr uint64_t k1 = 0xe7037ed1a0b428dbull;
constexpr uint64_t k2 = 0x8ebc6af09c88c6e3ull;
constexpr uint64_t k3 = 0x589965cc75374cc3ull;

inline uint64_t mum(uint64_t a, uint64_t b) {
  __uint128_t r = static_cast<__uint128_t>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

// Load the n (1..) bytes at p as one word, zero above n; p must have 8 readable bytes.
inline uint64_t load_word(const char* p, size_t n) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return n >= 8 ? w : w & (~0ull >> (64 - 8 * n));
}

// Extend the hash `h` of a parent name with the label [p, p+n) written to its left.
inline uint64_t add_label(uint64_t h, const char* p, size_t n) {
  h = mum(h ^ k0, n ^ k1);
  for (size_t i = 0; i < n; i += 8) h = mum(h ^ load_word(p + i, n - i) ^ k2, k3);
  return h;
}

// Finish the hash of a key: exact names and ".suffix" keys of the same labels differ.
inline uint64_t finish(uint64_t h, bool suffix) { return mum(h ^ k1, suffix ? k2 : k3); }

inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

// Validate a lower-case domain name (no leading or trailing dot); return what is wrong.
const char* check_name(std::string_view name) {
  if (name.empty() || name.size() > max_name) return "empty or longer than 253 characters";
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view label = name.substr(start, end - start);
    if (label.empty() || label.size() > 63) return "empty or over-long label";
    if (label.front() == '-' || label.back() == '-') return "label starts or ends with '-'";
    for (char c : label)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
        return "character outside [a-z0-9-_]";
    start = end + 1;
  }
  return nullptr;
}

// Hash of a lower-case pattern as lookup() will compute it for the matching candidate.
uint64_t pattern_hash(std::string_view pattern) {
  bool suffix = pattern.front() == '.';
  std::string_view name = suffix ? pattern.substr(1) : pattern;
  char buf[max_name + pad] = {};
  std::memcpy(buf, name.data(), name.size());
  uint64_t h = k0;
  size_t end = name.size();
  for (;;) {
    size_t start = end;
    while (start > 0 && buf[start - 1] != '.') --start;
    h = add_label(h, buf + start, end - start);
    if (start == 0) break;
    end = start - 1;
  }
  return finish(h, suffix);
}

}  // namespace

const char* to_string(policy_source s) {
  switch (s) {
    case policy_source::default_policy: return "default";
    case policy_source::config: return "config";
  }
  return "?";
}

const char* to_string(fallback_method m) {
  switch (m) {
    case fallback_method::pgp: return "pgp";
    case fallback_method::smime: return "smime";
    case fallback_method::escrow: return "escrow";
    case fallback_method::defer: return "defer";
  }
  return "?";
}

bool fallback_chain::operator==(const fallback_chain& o) const {
  if (size != o.size) return false;
  for (uint8_t i = 0; i < size; ++i)
    if (methods[i] != o.methods[i]) return false;
  return true;
}

// ---- builder -----------------------------------------------------------------------------

builder::builder(const effective_policy& default_policy) : _default(default_policy) {
  _default.source = policy_source::default_policy;
  _offsets.push_back(0);
}

void builder::reserve(size_t n) {
  _policies.reserve(n);
  _offsets.reserve(n + 1);
  _arena.reserve(n * 16);
}

status builder::add(std::string_view pattern, const effective_policy& p) {
  std::string lowered(pattern);
  for (char& c : lowered) c = lower(c);
  std::string_view name = lowered;
  if (!name.empty() && name.front() == '.') name.remove_prefix(1);
  if (const char* why = check_name(name))
    return error{"policy pattern \"" + std::string(pattern) + "\": " + why};
  _arena += lowered;
  _offsets.push_back(uint32_t(_arena.size()));
  _policies.push_back(p);
  _policies.back().source = policy_source::config;
  return {};
}

result<std::unique_ptr<table>> builder::build() && {
  std::unique_ptr<table> t(new table());
  size_t n = _policies.size();
  t->_arena = std::make_unique<char[]>(_arena.size() + 1);
  std::memcpy(t->_arena.get(), _arena.data(), _arena.size());
  t->_default = rule{_default, std::string_view()};
  t->_rules.reserve(n);
  for (size_t i = 0; i < n; ++i)
    t->_rules.push_back(rule{_policies[i], std::string_view(t->_arena.get() + _offsets[i],
                                                            _offsets[i + 1] - _offsets[i])});
  size_t cap = 16;
  while (cap < 2 * n) cap <<= 1;
  t->_slots.assign(cap, table::slot{});
  t->_mask = cap - 1;
  for (size_t i = 0; i < n; ++i) {
    std::string_view key = t->_rules[i].pattern;
    uint64_t h = pattern_hash(key);
    for (uint64_t pos = h & t->_mask;; pos = (pos + 1) & t->_mask) {
      table::slot& s = t->_slots[pos];
      if (s.rule == table::slot::empty) {
        s = table::slot{h, uint32_t(i), uint32_t(key.size())};
        break;
      }
      if (s.hash == h && t->_rules[s.rule].pattern == key)
        return error{"policy pattern \"" + std::string(key) + "\" given twice"};
    }
  }
  return t;
}

// ---- compile -----------------------------------------------------------------------------

effective_policy default_for(const config::config& cfg) {
  effective_policy p;
  p.tls = cfg.outbound.default_policy;
  p.min_version = cfg.tls.min_version;
  p.min_cipher_bits = cfg.tls.min_cipher_bits;
  p.source = policy_source::default_policy;
  return p;
}

effective_policy from_entry(const config::config& cfg, size_t index) {
  const config::policy_entry& e = cfg.policies[index];
  const config::policy_entry defaults;
  effective_policy p;
  p.tls = e.tls;
  p.verify = e.verify;
  p.notify_sender = e.notify_sender;
  p.fallback_after = e.fallback_after;
  p.source = policy_source::config;
  p.fallback.size = 0;
  for (const std::string& m : e.fallback) {
    if (p.fallback.size == p.fallback.methods.size()) break;
    fallback_method fm = m == "pgp"     ? fallback_method::pgp
                         : m == "smime" ? fallback_method::smime
                         : m == "escrow" ? fallback_method::escrow
                                         : fallback_method::defer;  // validated by the loader
    p.fallback.methods[p.fallback.size++] = fm;
  }
  if (p.fallback.size == 0) p.fallback = fallback_chain{};
  // A floor the operator did not write follows [tls] (the relay-wide floor); one written,
  // or set by code to something other than the default, is kept.
  std::string key = "policy[" + std::to_string(index) + "].";
  bool version_written = cfg.line_of(key + "min_version") != 0;
  bool bits_written = cfg.line_of(key + "min_cipher_bits") != 0;
  p.min_version = (!version_written && e.min_version == defaults.min_version) ? cfg.tls.min_version
                                                                              : e.min_version;
  p.min_cipher_bits = (!bits_written && e.min_cipher_bits == defaults.min_cipher_bits)
                          ? cfg.tls.min_cipher_bits
                          : e.min_cipher_bits;
  return p;
}

result<std::unique_ptr<table>> compile(const config::config& cfg) {
  builder b(default_for(cfg));
  b.reserve(cfg.policies.size());
  for (size_t i = 0; i < cfg.policies.size(); ++i) {
    for (const std::string& m : cfg.policies[i].fallback)
      if (m != "pgp" && m != "smime" && m != "escrow" && m != "defer")
        return error{"policy[" + std::to_string(i) + "].fallback: unknown method \"" + m + "\""};
    if (status s = b.add(cfg.policies[i].domain, from_entry(cfg, i)); !s)
      return error{"policy[" + std::to_string(i) + "]: " + s.err()};
  }
  return std::move(b).build();
}

// ---- lookup ------------------------------------------------------------------------------

const rule* table::find(uint64_t h, const char* key, size_t len) const {
  for (uint64_t pos = h & _mask;; pos = (pos + 1) & _mask) {
    const slot& s = _slots[pos];
    if (s.rule == slot::empty) return nullptr;
    if (s.hash == h && s.len == len) {
      const rule& r = _rules[s.rule];
      if (std::memcmp(r.pattern.data(), key, len) == 0) return &r;
    }
  }
}

const rule& table::lookup(std::string_view domain) const {
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  size_t len = domain.size();
  if (_rules.empty() || len == 0 || len > max_name) return _default;

  // Lower-case into a stack buffer (with the padding word loads need); note label starts.
  char buf[max_name + pad];
  uint16_t starts[max_labels];
  size_t labels = 1;
  starts[0] = 0;
  for (size_t i = 0; i < len; ++i) {
    char c = lower(domain[i]);
    buf[i] = c;
    if (c == '.') {
      if (starts[labels - 1] == i) return _default;  // empty label: not a domain name
      starts[labels++] = uint16_t(i + 1);
    }
  }
  if (starts[labels - 1] == len) return _default;
  std::memset(buf + len, 0, pad);

  // One right-to-left pass: hashes[k] covers labels k..labels-1.
  uint64_t hashes[max_labels];
  hashes[0] = 0;  // always written below (labels >= 1); silences -Wmaybe-uninitialized
  uint64_t h = k0;
  size_t end = len;
  for (size_t k = labels; k-- > 0;) {
    h = add_label(h, buf + starts[k], end - starts[k]);
    hashes[k] = finish(h, k != 0);
    end = starts[k] - 1;
  }
  // Touch every candidate's slot first so the cache misses overlap.
  for (size_t k = 0; k < labels; ++k) __builtin_prefetch(&_slots[hashes[k] & _mask]);

  if (const rule* r = find(hashes[0], buf, len)) return *r;
  for (size_t k = 1; k < labels; ++k) {
    size_t from = starts[k] - 1;  // the dot in front of label k belongs to the suffix key
    if (const rule* r = find(hashes[k], buf + from, len - from)) return *r;
  }
  return _default;
}

}  // namespace sr::policy
