// Policy table build and lookup. The hash of a name is built label by label from the right,
// so one right-to-left pass over the recipient domain yields the hash of the full name and of
// every parent suffix; each candidate then costs one slot probe (usually one cache line).
// Exact keys ("bank.example") and suffix keys (".bank.example") share one slot array: the
// final mix differs by kind and the stored key text differs by the leading dot. Slots hold
// short patterns inline and point to de-duplicated policies, so a hit is one cache miss.
#include "sealrelay/policy/table.hh"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <new>

namespace sr::policy {

namespace {

constexpr size_t max_name = 253;    // RFC 1035 presentation length without the final dot
constexpr size_t max_key = max_name + 1;  // a ".suffix" key: the dot and a name
constexpr size_t max_labels = 128;  // 254 chars without empty labels hold at most 128
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

// Control byte of a hash: never 0 (empty); bits unrelated to the slot index and the tag.
inline uint8_t ctrl_byte(uint64_t h) { return uint8_t(0x80 | ((h >> 40) & 0x7f)); }

constexpr uint64_t ones = 0x0101010101010101ull;
constexpr uint64_t highs = 0x8080808080808080ull;

// Lower-case the ASCII letters of 8 bytes at once; other bytes (UTF-8 too) are unchanged.
inline uint64_t lower_word(uint64_t w) {
  uint64_t low7 = w & ~highs;
  uint64_t ge_a = low7 + ones * (0x80 - 'A');      // high bit set where byte >= 'A'
  uint64_t gt_z = low7 + ones * (0x80 - 'Z' - 1);  // high bit set where byte > 'Z'
  uint64_t upper = ge_a & ~gt_z & ~w & highs;
  return w | (upper >> 2);  // 0x80 >> 2 = 0x20
}

// Return 0x80 in each byte of w that is '.' (exact per byte, no borrow between bytes).
inline uint64_t dots_of(uint64_t w) {
  uint64_t x = w ^ (ones * uint64_t('.'));
  return ~(((x & ~highs) + ~highs) | x | ~highs);
}

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

namespace {

// Every field of a policy packed for de-duplication (a million patterns share a few policies).
std::pair<uint64_t, int64_t> policy_key(const effective_policy& p) {
  uint64_t k = uint64_t(p.tls) | uint64_t(p.verify) << 4 | uint64_t(p.min_version) << 8 |
               uint64_t(p.notify_sender) << 12 | uint64_t(p.source) << 13 |
               uint64_t(p.fallback.size) << 16 | uint64_t(p.min_cipher_bits) << 32;
  for (uint8_t i = 0; i < p.fallback.size; ++i) k |= uint64_t(p.fallback.methods[i]) << (20 + 2 * i);
  return {k, int64_t(p.fallback_after.count())};
}

}  // namespace

result<std::unique_ptr<table>> builder::build() && {
  std::unique_ptr<table> t(new table());
  size_t n = _policies.size();
  t->_default = _default;
  t->_count = n;
  if (n == 0) return t;

  size_t long_total = 0;
  for (size_t i = 0; i < n; ++i)
    if (size_t len = _offsets[i + 1] - _offsets[i]; len > table::inline_key) long_total += len;
  t->_long_keys = std::make_unique<char[]>(long_total + 1);
  size_t cap = 16;
  while (cap < 2 * n) cap <<= 1;
  if (!t->_slot_mem.map(cap * sizeof(table::slot)) || !t->_ctrl_mem.map(cap))
    return error{"policy table: cannot map memory"};
  auto* slots = reinterpret_cast<table::slot*>(t->_slot_mem.data());
  auto* ctrl = reinterpret_cast<uint8_t*>(t->_ctrl_mem.data());  // zero: all empty
  t->_slots = slots;
  t->_ctrl = ctrl;
  t->_mask = cap - 1;

  std::map<std::pair<uint64_t, int64_t>, uint32_t> distinct;
  size_t long_off = 0;
  for (size_t i = 0; i < n; ++i) {
    auto [it, added] = distinct.emplace(policy_key(_policies[i]), uint32_t(t->_policies.size()));
    if (added) t->_policies.push_back(_policies[i]);
    std::string_view key(_arena.data() + _offsets[i], _offsets[i + 1] - _offsets[i]);

    table::slot fresh{it->second + 1, uint16_t(key.size()), 0, {}};
    if (key.size() <= table::inline_key) {
      std::memcpy(fresh.key, key.data(), key.size());
    } else {
      char* at = t->_long_keys.get() + long_off;
      std::memcpy(at, key.data(), key.size());
      std::memcpy(fresh.key, &at, sizeof at);
      long_off += key.size();
    }
    uint64_t h = pattern_hash(key);
    fresh.tag = uint16_t(h >> 48);
    for (uint64_t pos = h & t->_mask;; pos = (pos + 1) & t->_mask) {
      table::slot& s = slots[pos];
      if (ctrl[pos] == 0) {
        s = fresh;
        ctrl[pos] = ctrl_byte(h);
        break;
      }
      if (s.tag == fresh.tag && s.len == key.size() &&
          std::memcmp(table::key_of(s), key.data(), key.size()) == 0)
        return error{"policy pattern \"" + std::string(key) + "\" given twice"};
    }
  }
  return t;
}

// ---- memory ------------------------------------------------------------------------------

table::table() { _live.fetch_add(1, std::memory_order_relaxed); }
table::~table() { _live.fetch_sub(1, std::memory_order_relaxed); }

table::region::region(region&& o) noexcept : _p(o._p), _base(o._base), _len(o._len) {
  o._p = nullptr;
  o._base = nullptr;
  o._len = 0;
}

table::region& table::region::operator=(region&& o) noexcept {
  if (this != &o) {
    this->~region();
    new (this) region(std::move(o));
  }
  return *this;
}

table::region::~region() {
  if (_base) munmap(_base, _len);
}

bool table::region::map(size_t bytes) {
  constexpr size_t huge = size_t(2) << 20;
  size_t page = size_t(sysconf(_SC_PAGESIZE));
  bool large = bytes >= huge;
  size_t want = large ? (bytes + huge - 1) & ~(huge - 1) : (bytes + page - 1) & ~(page - 1);
  size_t len = large ? want + huge : want;  // room to align the start to 2 MiB
  void* base = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return false;
  auto* p = static_cast<std::byte*>(base);
  if (large) {
    p = reinterpret_cast<std::byte*>((reinterpret_cast<uintptr_t>(base) + huge - 1) & ~(huge - 1));
    madvise(p, want, MADV_HUGEPAGE);  // advice only: without THP it still works
  }
  this->~region();
  _base = base;
  _len = len;
  _p = p;
  return true;
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

const table::slot* table::find(uint64_t h, const char* key, size_t len) const {
  uint8_t want = ctrl_byte(h);
  uint16_t tag = uint16_t(h >> 48);
  for (uint64_t pos = h & _mask;; pos = (pos + 1) & _mask) {
    uint8_t c = _ctrl[pos];
    if (c == 0) return nullptr;
    if (c != want) continue;
    const slot& s = _slots[pos];
    if (s.tag == tag && s.len == len && std::memcmp(key_of(s), key, len) == 0) return &s;
  }
}

rule table::lookup(std::string_view domain) const {
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  if (_count == 0 || domain.empty()) return default_rule();
  // No key is longer than max_key, so only the last max_key characters of a longer name can
  // hold one: look at that window, where the leftmost (cut) label is no candidate and the
  // whole name can match no exact key. Its suffixes still match: a 300-character subdomain
  // of a forced ".bank.example" is forced, never the default because of its length.
  bool cut = domain.size() > max_name;
  if (cut) domain.remove_prefix(domain.size() - max_key);
  size_t len = domain.size();

  // Lower-case into a stack buffer (with the padding word loads need), a word at a time.
  char buf[max_key + pad];
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, domain.data() + i, 8);
    w = lower_word(w);
    std::memcpy(buf + i, &w, 8);
  }
  for (; i < len; ++i) buf[i] = lower(domain[i]);
  std::memset(buf + len, 0, pad);

  // Note where each label starts; an empty label is not a domain name (a window may start
  // with the dot that ends its cut label).
  uint16_t starts[max_labels];
  size_t labels = 1;
  starts[0] = 0;
  for (size_t at = 0; at < len; at += 8) {
    uint64_t w;
    std::memcpy(&w, buf + at, 8);
    for (uint64_t m = dots_of(w); m; m &= m - 1) {
      size_t dot = at + size_t(__builtin_ctzll(m)) / 8;
      if (starts[labels - 1] == dot && !(cut && dot == 0)) return default_rule();
      if (labels == max_labels) return default_rule();  // unreachable without empty labels
      starts[labels++] = uint16_t(dot + 1);
    }
  }
  if (starts[labels - 1] == len) return default_rule();
  size_t first = cut ? 1 : 0;  // the cut label is no candidate

  // One right-to-left pass: hashes[k] covers labels k..labels-1.
  uint64_t hashes[max_labels];
  hashes[0] = 0;  // always written below (labels >= 1); silences -Wmaybe-uninitialized
  uint64_t h = k0;
  size_t end = len;
  for (size_t k = labels; k-- > first;) {
    h = add_label(h, buf + starts[k], end - starts[k]);
    hashes[k] = finish(h, k != 0);
    end = starts[k] - 1;
  }
  // Touch every candidate's slot first so the cache misses overlap.
  for (size_t k = first; k < labels; ++k) {
    __builtin_prefetch(&_ctrl[hashes[k] & _mask]);
    __builtin_prefetch(&_slots[hashes[k] & _mask]);
  }

  const slot* s = cut ? nullptr : find(hashes[0], buf, len);
  for (size_t k = 1; !s && k < labels; ++k) {
    size_t from = starts[k] - 1;  // the dot in front of label k belongs to the suffix key
    s = find(hashes[k], buf + from, len - from);
  }
  if (s) return rule{_policies[s->policy - 1], std::string_view(key_of(*s), s->len)};
  return default_rule();
}

}  // namespace sr::policy
