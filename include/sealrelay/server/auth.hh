// Submission AUTH as a shard serves it (issue 10 item 1): the users file as every shard
// sees it (`user_directory`, replaced on SIGHUP), and a shard's `authenticator` that puts
// a connection's credentials through the brute-force brake (auth::limiter, one per shard:
// no locks), the process-wide worker pool (auth::hasher: a shard never hashes), and the
// brake's delay (a deadline checked on the shard's tick: the shard keeps serving everyone
// else while one client waits). Every outcome is reported once (audit, metrics).
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/auth/hasher.hh"
#include "sealrelay/auth/limiter.hh"
#include "sealrelay/auth/users.hh"
#include "sealrelay/core/shard.hh"
#include "sealrelay/inbound/session.hh"

namespace sr::server {

// The current users. A snapshot is taken (a mutex and a shared_ptr copy) once per AUTH:
// never on the data path. Connections already authenticated keep what they were given.
class user_directory {
 public:
  explicit user_directory(auth::users u);
  std::shared_ptr<const auth::users> current() const;
  // Make `u` current (SIGHUP); checks already running finish against the old users.
  void publish(auth::users u);

 private:
  mutable std::mutex _mu;
  std::shared_ptr<const auth::users> _users;
};

// What became of one AUTH.
enum class auth_outcome : uint8_t {
  success,       // 235
  failure,       // 535 (unknown user or wrong password; the reason tells which)
  rate_limited,  // 421 and close: too many failures for this client or user
  busy,          // 454: the checkers' queue is full
};
// Return the audit/metrics token: "success", "failure", "rate_limited", "busy".
const char* to_string(auth_outcome o);

// One AUTH outcome as reported (views valid during the call only). No password, ever.
struct auth_event {
  auth_outcome outcome = auth_outcome::failure;
  std::string_view user;       // as the client gave it
  std::string_view client_ip;
  std::string_view listener;   // the [[listen]] address
  std::string_view reason;     // "bad_password", "unknown_user", "too_many_failures",
                               // "checkers_busy"; "" on success
  std::chrono::milliseconds delay{0};  // how long the 535 was held back
};

struct auth_counters {
  uint64_t success = 0, failure = 0, rate_limited = 0, busy = 0;
};

class authenticator {
 public:
  // The answer to a check: what the session replies, and on success the user's entry
  // (copied: a SIGHUP does not change an open session's rights).
  using done_fn = std::function<void(inbound::session::auth_answer, const auth::user*)>;

  // `h` must be attached to `sh` (on its thread) before the first check.
  authenticator(core::shard& sh, auth::hasher& h, const user_directory& users,
                auth::limiter_options o = {});
  ~authenticator();
  authenticator(const authenticator&) = delete;
  authenticator& operator=(const authenticator&) = delete;

  // Report every outcome to `f` (on this shard's thread).
  void on_event(std::function<void(const auth_event&)> f) { _report = std::move(f); }
  // Check `user`/`password` for client `ip` on `listener`; `done` always runs later, on this
  // shard (never from inside check()). The caller guards against having gone meanwhile.
  void check(std::string_view ip, std::string_view listener, std::string_view user,
             std::string_view password, done_fn done);
  // Answer every held-back failure now (drain: nothing waits out a delay).
  void release_delayed();
  const auth_counters& counters() const { return _counters; }

 private:
  struct delayed {
    uint64_t due_ms;
    done_fn done;
  };
  void report(auth_outcome o, std::string_view user, std::string_view ip, std::string_view listener,
              std::string_view reason, std::chrono::milliseconds delay = {});
  void on_tick();

  core::shard& _shard;
  auth::hasher& _hasher;
  const user_directory& _users;
  auth::limiter _limiter;
  std::function<void(const auth_event&)> _report;
  std::vector<delayed> _delayed;  // 535s held back by the limiter, answered on the tick
  auth_counters _counters;
  std::shared_ptr<bool> _alive;   // hasher answers arriving after destruction are dropped
};

}  // namespace sr::server
