// Submission AUTH on a shard (auth.hh). An unknown user is checked against a fixed dummy
// hash of the same scheme as mkpasswd's default, so the answer takes as long as for a
// known user with a wrong password (no user enumeration by timing).
#include "sealrelay/server/auth.hh"

#include <algorithm>

namespace sr::server {
namespace {
// yescrypt of a random, forgotten password (mkpasswd -m yescrypt).
constexpr const char* dummy_hash = "$y$j9T$CK.8dKJjVemQj8bNu1xx5/$DnfDxl4JW5qGiyhPpA3VG8hwW9NDWTdLSJUdlmDhaS6";
using answer = inbound::session::auth_answer;
}  // namespace

const char* to_string(auth_outcome o) {
  switch (o) {
    case auth_outcome::success: return "success";
    case auth_outcome::failure: return "failure";
    case auth_outcome::rate_limited: return "rate_limited";
    case auth_outcome::busy: return "busy";
  }
  return "?";
}

user_directory::user_directory(auth::users u) : _users(std::make_shared<const auth::users>(std::move(u))) {}

std::shared_ptr<const auth::users> user_directory::current() const {
  std::lock_guard lk(_mu);
  return _users;
}

void user_directory::publish(auth::users u) {
  auto fresh = std::make_shared<const auth::users>(std::move(u));
  std::lock_guard lk(_mu);
  _users.swap(fresh);
}  // the old users are freed here, outside no reader (readers hold their own copy)

authenticator::authenticator(core::shard& sh, auth::hasher& h, const user_directory& users,
                             auth::limiter_options o)
    : _shard(sh), _hasher(h), _users(users), _limiter(o), _alive(std::make_shared<bool>(true)) {
  _shard.on_tick([this, alive = std::weak_ptr<bool>(_alive)] {
    if (!alive.expired()) on_tick();
  });
}

authenticator::~authenticator() = default;

void authenticator::report(auth_outcome o, std::string_view user, std::string_view ip,
                           std::string_view listener, std::string_view reason,
                           std::chrono::milliseconds delay) {
  switch (o) {
    case auth_outcome::success: ++_counters.success; break;
    case auth_outcome::failure: ++_counters.failure; break;
    case auth_outcome::rate_limited: ++_counters.rate_limited; break;
    case auth_outcome::busy: ++_counters.busy; break;
  }
  if (!_report) return;
  auth_event e;
  e.outcome = o;
  e.user = user;
  e.client_ip = ip;
  e.listener = listener;
  e.reason = reason;
  e.delay = delay;
  _report(e);
}

void authenticator::check(std::string_view ip, std::string_view listener, std::string_view user,
                          std::string_view password, done_fn done) {
  const uint64_t now = _shard.now_ms();
  // Over the limit already (e.g. reconnected after a 421): no more guesses, no hash.
  if (_limiter.before(ip, user, now).close) {
    report(auth_outcome::rate_limited, user, ip, listener, "too_many_failures");
    _shard.post([done = std::move(done)] { done(answer::close, nullptr); });
    return;
  }
  auto users = _users.current();
  const auth::user* u = users->find(user);
  std::string hash = u ? u->hash : std::string(dummy_hash);
  auto on_checked = [this, alive = std::weak_ptr<bool>(_alive), users, u, ip = std::string(ip),
                     listener = std::string(listener), name = std::string(user),
                     done](bool ok) mutable {
    if (alive.expired()) return;
    if (ok && u) {
      _limiter.succeeded(name);
      report(auth_outcome::success, name, ip, listener, "");
      done(answer::ok, u);
      return;
    }
    auth::verdict v = _limiter.failed(ip, name, _shard.now_ms());
    const char* why = u ? "bad_password" : "unknown_user";
    if (v.close) {
      report(auth_outcome::rate_limited, name, ip, listener, why);
      done(answer::close, nullptr);
      return;
    }
    report(auth_outcome::failure, name, ip, listener, why, v.delay);
    if (v.delay.count() > 0) _delayed.push_back({_shard.now_ms() + uint64_t(v.delay.count()), std::move(done)});
    else done(answer::failed, nullptr);
  };
  if (!_hasher.check(_shard, std::string(password), std::move(hash), std::move(on_checked))) {
    report(auth_outcome::busy, user, ip, listener, "checkers_busy");
    _shard.post([done = std::move(done)] { done(answer::busy, nullptr); });
  }
}

void authenticator::on_tick() {
  if (_delayed.empty()) return;
  const uint64_t now = _shard.now_ms();
  // Take the due ones out first: an answer may start another check (pipelined AUTH).
  std::vector<done_fn> due;
  auto it = std::partition(_delayed.begin(), _delayed.end(), [now](const delayed& d) { return d.due_ms > now; });
  for (auto i = it; i != _delayed.end(); ++i) due.push_back(std::move(i->done));
  _delayed.erase(it, _delayed.end());
  for (auto& d : due) d(answer::failed, nullptr);
}

void authenticator::release_delayed() {
  auto all = std::move(_delayed);
  _delayed.clear();
  for (auto& d : all) d.done(answer::failed, nullptr);
}

}  // namespace sr::server
