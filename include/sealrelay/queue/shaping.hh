// Per-destination shaping (issue 14 items 1 and 2): the token buckets, connection count and
// back-off state of one destination (a [[shaping]] entry, or one unshaped domain), and the
// compiled back-off rules. A site lives on the one shard that schedules all its mail
// (scheduler.hh), so nothing here is shared between threads: no lock, no atomic.
#pragma once
#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/config/config.hh"

namespace sr::queue {

struct domain_state;

// Tokens refill at `rate` per second up to one second's worth (at least 1): a destination
// gets its rate, with no burst beyond a second of it. Starts full. Time is the shard's
// monotonic ms; rate 0 = no limit (every take succeeds).
class token_bucket {
 public:
  // Change the rate, keeping the tokens earned so far (capped at the new capacity).
  void set_rate(double per_second, uint64_t now_ms);
  double rate() const { return _rate; }
  bool limited() const { return _rate > 0; }
  // Whole tokens available now (a large number when unlimited).
  uint64_t whole(uint64_t now_ms);
  bool available(uint64_t now_ms) { return whole(now_ms) > 0; }
  void take(uint64_t now_ms);
  // Put back a token taken for work that did not happen (capped at the capacity).
  void refund();

 private:
  void refill(uint64_t now_ms);
  double _rate = 0, _capacity = 1, _tokens = 1;
  uint64_t _last_ms = 0;
};

// One destination's limits and state (scheduler-owned).
struct site_state {
  const config::shaping_entry* entry = nullptr;  // null: an unshaped domain (back-off only)
  std::string name;         // the entry's name, or the domain
  size_t metric = 0;        // index of its metric series (entries in order, then "default")
  unsigned max_connections = 0;   // over all its domain queues; UINT_MAX = per queue only
  unsigned messages_per_conn = 1;
  const std::vector<duration>* retry = nullptr;
  token_bucket messages, connections;
  unsigned active = 0;       // connections open or opening
  unsigned in_progress = 0;  // jobs taken and not finished
  std::vector<domain_state*> domains;  // its queues, for kicks after a wait
  size_t next_domain = 0;              // round-robin start among them
  bool waiting = false;                // on the scheduler's list of sites to kick per tick
  // Adaptive back-off: while backoff_until_ms is in the future, the message rate is
  // backoff_rate (per second) instead of the configured one.
  double configured_rate = 0;          // per second; 0 = no limit
  double backoff_rate = 0;
  uint64_t backoff_until_ms = 0, backoff_lowered_ms = 0;
  // Messages taken in the current and the previous minute: the rate an unshaped site
  // delivered at, which a back-off lowers.
  uint64_t minute_start_ms = 0;
  uint32_t this_minute = 0, last_minute = 0;

  // Count one message transaction taken now.
  void count_message(uint64_t now_ms) {
    roll_minute(now_ms);
    ++this_minute;
  }
  // Start a new minute when the current one is over.
  void roll_minute(uint64_t now_ms);
  // Messages per second delivered over the last minute (at least 1/min).
  double observed_rate(uint64_t now_ms);
  bool backed_off(uint64_t now_ms) const { return backoff_until_ms > now_ms; }
};

// The operator's [[backoff]] rules, then (outbound.backoff_defaults) the built-in ones,
// compiled once per shard.
class backoff_rules {
 public:
  explicit backoff_rules(const config::config& cfg);
  // The first rule whose pattern occurs in `reply`, or null.
  const config::backoff_rule* match(std::string_view reply) const;
  bool empty() const { return _rules.empty(); }

 private:
  std::vector<std::pair<const config::backoff_rule*, std::regex>> _rules;
};

// The built-in rules: the deferral replies the large mailbox providers publish for
// "slow down" (Gmail, Yahoo/AOL, Microsoft, Apple, Comcast, ...).
const std::vector<config::backoff_rule>& builtin_backoff_rules();

// The message rate of a site for the audit line: per hour, rounded (0 = no limit).
uint64_t per_hour(double per_second);

}  // namespace sr::queue
