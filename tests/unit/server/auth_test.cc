// server::authenticator on a real shard with the real worker pool: answers always come
// later (never from inside check()), a success hands over the user's entry, an unknown user
// and a wrong password are told apart only in the report, the limiter's delay holds a 535
// back on the shard's tick (the loop keeps turning), the limit closes, and a client over it
// gets no more checks; release_delayed() answers held-back failures at once (drain), and a
// full pool answers busy. user_directory swaps the users for the checks that follow.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sealrelay/server/auth.hh"
#include "support/cert_files.hh"

namespace sr::server {
namespace {

using answer = inbound::session::auth_answer;
using namespace std::chrono_literals;

std::string yescrypt(const std::string& password) {
  auto out = test::run_pipeline("printf %s " + test::shell_quote(password) + " | mkpasswd -s -m yescrypt");
  std::string h = out.value_or("");
  while (!h.empty() && (h.back() == '\n' || h.back() == '\r')) h.pop_back();
  return h;
}

// An auth_event with its own strings (the event's views live only during the call).
struct event_copy {
  auth_outcome outcome;
  std::string user, client_ip, listener, reason;
  std::chrono::milliseconds delay;
};

struct outcome {
  answer a;
  std::string user;  // the entry handed over on success
  uint64_t after_ms;  // since the check began
  bool sync;         // answered from inside check()
};

// Runs `steps` one after another on a shard, each started when the previous one answered.
struct rig {
  core::shard sh{core::shard::options{.tick_ms = 5}};
  std::vector<event_copy> events;
  std::vector<outcome> outcomes;
  unsigned ticks = 0;

  void run(authenticator& a, std::vector<std::function<void(std::function<void()>)>> steps) {
    size_t next = 0;
    std::function<void()> go = [&] {
      if (next == steps.size()) {
        sh.stop();
        return;
      }
      steps[next++](go);
    };
    uint64_t deadline = 0;
    sh.on_tick([&] {
      ++ticks;
      if (sh.now_ms() > deadline) sh.stop();
    });
    a.on_event([this](const auth_event& e) {
      events.push_back({e.outcome, std::string(e.user), std::string(e.client_ip), std::string(e.listener),
                        std::string(e.reason), e.delay});
    });
    sh.post([&] {
      deadline = sh.now_ms() + 20000;
      go();
    });
    sh.run();
  }
  // A step: check `user`/`password` and record the answer.
  std::function<void(std::function<void()>)> check(authenticator& a, std::string user, std::string pw) {
    return [this, &a, user, pw](std::function<void()> then) {
      uint64_t start = sh.now_ms();
      auto inside = std::make_shared<bool>(true);
      a.check("192.0.2.7", "127.0.0.1:587", user, pw, [this, start, inside, then](answer ans, const auth::user* u) {
        outcomes.push_back({ans, u ? u->name : "", sh.now_ms() - start, *inside});
        then();
      });
      *inside = false;
    };
  }
};

TEST(server_auth, answers_delays_limit_and_reports) {
  std::string h = yescrypt("right");
  ASSERT_FALSE(h.empty()) << "mkpasswd (whois) missing";
  auto users = auth::users::parse("alice@example.org:" + h + "\n", "users");
  ASSERT_TRUE(users) << users.err();
  user_directory dir(std::move(users.value()));
  rig r;
  ASSERT_TRUE(r.sh.init()) << "io_uring unavailable";
  auth::hasher pool(2, 16);
  pool.attach(r.sh);
  auth::limiter_options lo;
  lo.free_tries = 2;
  lo.base_delay = 200ms;
  lo.max_failures = 4;
  authenticator a(r.sh, pool, dir, lo);
  r.run(a, {r.check(a, "alice@example.org", "right"), r.check(a, "alice@example.org", "wrong"),
            r.check(a, "nobody@example.org", "x"), r.check(a, "alice@example.org", "wrong"),
            r.check(a, "alice@example.org", "wrong"), r.check(a, "alice@example.org", "right")});
  ASSERT_EQ(r.outcomes.size(), 6u);
  for (const auto& o : r.outcomes) EXPECT_FALSE(o.sync);
  EXPECT_EQ(r.outcomes[0].a, answer::ok);
  EXPECT_EQ(r.outcomes[0].user, "alice@example.org");
  EXPECT_EQ(r.outcomes[1].a, answer::failed);
  EXPECT_EQ(r.outcomes[2].a, answer::failed);
  EXPECT_EQ(r.outcomes[3].a, answer::failed);  // the third failure: held back 200 ms
  EXPECT_GE(r.outcomes[3].after_ms, 190u);
  EXPECT_EQ(r.outcomes[4].a, answer::close);  // the fourth: 421
  EXPECT_EQ(r.outcomes[5].a, answer::close);  // over the limit: no check, even the right password
  EXPECT_GT(r.ticks, 10u);                     // the loop turned while answers were held back

  ASSERT_EQ(r.events.size(), 6u);
  EXPECT_EQ(r.events[0].outcome, auth_outcome::success);
  EXPECT_EQ(r.events[1].reason, "bad_password");
  EXPECT_EQ(r.events[2].reason, "unknown_user");
  EXPECT_EQ(r.events[2].user, "nobody@example.org");
  EXPECT_EQ(r.events[3].delay, 200ms);
  EXPECT_EQ(r.events[4].outcome, auth_outcome::rate_limited);
  EXPECT_EQ(r.events[5].outcome, auth_outcome::rate_limited);
  EXPECT_EQ(r.events[5].reason, "too_many_failures");
  EXPECT_EQ(r.events[5].client_ip, "192.0.2.7");
  EXPECT_EQ(r.events[5].listener, "127.0.0.1:587");
  const auth_counters& c = a.counters();
  EXPECT_EQ(c.success, 1u);
  EXPECT_EQ(c.failure, 3u);
  EXPECT_EQ(c.rate_limited, 2u);
}

TEST(server_auth, drain_answers_held_back_failures_and_reload_swaps_users) {
  std::string h = yescrypt("pw");
  ASSERT_FALSE(h.empty());
  auto bob = auth::users::parse("bob:" + h + ":bob@example.org\n", "users");
  ASSERT_TRUE(bob) << bob.err();
  user_directory dir(std::move(bob.value()));
  rig r;
  ASSERT_TRUE(r.sh.init()) << "io_uring unavailable";
  auth::hasher pool(1, 16);
  pool.attach(r.sh);
  auth::limiter_options lo;
  lo.free_tries = 0;
  lo.base_delay = 20s;  // would outlast the test: release_delayed() must answer it
  authenticator a(r.sh, pool, dir, lo);
  r.run(a, {[&](std::function<void()> then) {
              r.check(a, "bob", "wrong")(then);
              // Once the hash answered (its 535 now held back), drain.
              r.sh.on_tick([&a, &r, done = false]() mutable {
                if (!done && !r.events.empty()) {
                  done = true;
                  a.release_delayed();
                }
              });
            },
            [&](std::function<void()> then) {
              dir.publish(auth::users::parse("carol:" + h + ":carol@example.org\n", "users").value());
              r.check(a, "carol", "pw")(then);
            }});
  ASSERT_EQ(r.outcomes.size(), 2u);
  EXPECT_EQ(r.outcomes[0].a, answer::failed);
  EXPECT_LT(r.outcomes[0].after_ms, 5000u);
  EXPECT_EQ(r.outcomes[1].a, answer::ok);  // the new file's user
  EXPECT_EQ(r.outcomes[1].user, "carol");
}

TEST(server_auth, a_full_pool_answers_busy) {
  auto bob = auth::users::parse("bob@example.org:" + yescrypt("pw") + "\n", "users");
  ASSERT_TRUE(bob) << bob.err();
  user_directory dir(std::move(bob.value()));
  rig r;
  ASSERT_TRUE(r.sh.init()) << "io_uring unavailable";
  auth::hasher pool(1, 0);  // no room at all
  pool.attach(r.sh);
  authenticator a(r.sh, pool, dir);
  r.run(a, {r.check(a, "bob@example.org", "pw")});
  ASSERT_EQ(r.outcomes.size(), 1u);
  EXPECT_EQ(r.outcomes[0].a, answer::busy);
  EXPECT_FALSE(r.outcomes[0].sync);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].outcome, auth_outcome::busy);
  EXPECT_EQ(r.events[0].reason, "checkers_busy");
}

}  // namespace
}  // namespace sr::server
