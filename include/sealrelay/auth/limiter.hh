// Brute-force brake for submission AUTH (issue 10: "failures are rate-limited per client
// address and per user, with an increasing delay, then 421 and close"). Per shard (no
// locks; a client spread over shards gets at most shards x the budget). Each failed AUTH
// adds to the counters of its client address (IPv6 by /64) and of the user name tried; the
// next answer waits delay() — 0 for the first `free_tries` failures, then doubling from
// `base_delay` up to `max_delay` — and at `max_failures` the session is closed with 421.
// Counters decay: a key idle for `forget_after` starts again from zero. Memory is bounded
// by `max_keys` (the oldest keys are dropped first). A success clears the user's counter,
// not the address's (one good account must not launder a guessing client).
#pragma once
#include <chrono>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sr::auth {

struct limiter_options {
  unsigned free_tries = 2;
  std::chrono::milliseconds base_delay{1000};
  std::chrono::milliseconds max_delay{30'000};
  unsigned max_failures = 10;           // then 421 and close
  std::chrono::seconds forget_after{15 * 60};
  size_t max_keys = 100'000;
};

// What to do with the answer to a failed (or about to be tried) AUTH.
struct verdict {
  std::chrono::milliseconds delay{0};  // wait this long before answering 535
  bool close = false;                  // answer 421 4.7.0 and close instead
};

class limiter {
 public:
  explicit limiter(limiter_options o = {}) : _o(o) {}

  // The client `ip` (text form) failed to authenticate as `user` at `now_ms` (monotonic).
  verdict failed(std::string_view ip, std::string_view user, uint64_t now_ms);
  // Before checking a password: whether this client or user is already over the limit (a
  // brute-forcer must not get more checks by reconnecting).
  verdict before(std::string_view ip, std::string_view user, uint64_t now_ms);
  // `user` authenticated: forget its failures.
  void succeeded(std::string_view user);
  size_t keys() const { return _map.size(); }

 private:
  struct entry {
    unsigned failures = 0;
    uint64_t last_ms = 0;
    std::list<std::string>::iterator lru;
  };
  entry& touch(const std::string& key, uint64_t now_ms);
  verdict judge(unsigned failures) const;
  static std::string ip_key(std::string_view ip);

  limiter_options _o;
  std::unordered_map<std::string, entry> _map;
  std::list<std::string> _order;  // least recently used first
};

}  // namespace sr::auth
