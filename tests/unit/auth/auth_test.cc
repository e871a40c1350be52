// auth: the users file (format, errors with their line, permissions), password checks
// against hashes made by Debian's `mkpasswd` (yescrypt by default, SHA-512, bcrypt) and
// `openssl passwd`, sender patterns, and the worker pool answering on a real shard while
// the shard's loop keeps running.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>

#include "sealrelay/auth/hasher.hh"
#include "sealrelay/auth/limiter.hh"
#include "sealrelay/auth/users.hh"
#include "support/cert_files.hh"
#include "support/file_io.hh"
#include "support/temp_dir.hh"

namespace sr::auth {
namespace {

using sr::test::run_pipeline;
using sr::test::shell_quote;

// `mkpasswd -m METHOD` of `password` (the hash an operator would write), without the newline.
std::string mkpasswd(const std::string& password, const std::string& method = "") {
  auto out = run_pipeline("printf %s " + shell_quote(password) + " | mkpasswd -s" +
                          (method.empty() ? "" : " -m " + method));
  if (!out) return "";
  std::string h = *out;
  while (!h.empty() && (h.back() == '\n' || h.back() == '\r')) h.pop_back();
  return h;
}

TEST(auth_users, mkpasswd_hashes_of_every_common_scheme_verify) {
  for (const char* method : {"", "sha-512", "bcrypt"}) {
    SCOPED_TRACE(method);
    std::string h = mkpasswd("c0rrect horse", method);
    ASSERT_FALSE(h.empty()) << "mkpasswd (Debian package whois) missing?";
    if (*method == 0) EXPECT_EQ(h.rfind("$y$", 0), 0u) << h;  // yescrypt is the default
    EXPECT_TRUE(verify_password("c0rrect horse", h));
    EXPECT_FALSE(verify_password("c0rrect horsE", h));
    EXPECT_FALSE(verify_password("", h));
    EXPECT_FALSE(verify_password(std::string("c0rrect horse\0x", 15), h));
  }
  auto o = run_pipeline("openssl passwd -6 -salt abcdefgh 'open sesame'");
  ASSERT_TRUE(o);
  std::string h = o->substr(0, o->find('\n'));
  EXPECT_TRUE(verify_password("open sesame", h));
  EXPECT_FALSE(verify_password("open sesam", h));
  EXPECT_FALSE(verify_password("x", "*"));
  EXPECT_FALSE(verify_password("x", "not-a-hash"));
}

TEST(auth_users, the_file_format_and_its_errors) {
  std::string y = mkpasswd("pw1");
  std::string s6 = mkpasswd("pw2", "sha-512");
  auto u = users::parse("# submission users\n\nalice@example.org:" + y + "\n"
                        "app:" + s6 + ":news-*@example.org, billing@example.org\r\n",
                        "users");
  ASSERT_TRUE(u) << u.err();
  EXPECT_EQ(u->size(), 2u);
  const user* a = u->find("alice@example.org");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->line, 3);
  EXPECT_TRUE(a->senders.empty());
  const user* app = u->find("app");
  ASSERT_TRUE(app);
  EXPECT_EQ(app->senders, (std::vector<std::string>{"news-*@example.org", "billing@example.org"}));
  EXPECT_FALSE(u->find("bob@example.org"));

  struct bad {
    std::string text, error;
  };
  const bad cases[] = {
      {"alice@example.org\n", "users:1: expected user:crypt-hash[:allowed-sender-pattern]"},
      {"\n:" + y + "\n", "users:2: expected user:crypt-hash[:allowed-sender-pattern]"},
      {"alice@example.org:\n", "users:1: user alice@example.org: empty hash"},
      {"alice@example.org:plaintext\n",
       "users:1: user alice@example.org: not a hash crypt(3) can check (make one with mkpasswd)"},
      {"app:" + y + "\n",
       "users:1: user app: a user name that is not an address needs a sender pattern (user:hash:pattern)"},
      {"a@x.org:" + y + ":a@x.org,,b@x.org\n", "users:1: user a@x.org: bad sender pattern \"\""},
      {"a@x.org:" + y + "\na@x.org:" + y + "\n", "users:2: user a@x.org is listed twice"},
      {"a b@x.org:" + y + "\n", "users:1: a user name has no spaces"},
  };
  for (const auto& c : cases) {
    auto r = users::parse(c.text, "users");
    ASSERT_FALSE(r) << c.text;
    EXPECT_EQ(r.err(), c.error);
  }
}

TEST(auth_users, a_file_others_may_read_is_refused) {
  sr::test::temp_dir d;
  auto path = (d.path() / "users").string();
  sr::test::write_file(path, "alice@example.org:" + mkpasswd("pw") + "\n");
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto r = users::load(path);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err(), path + ": permissions 0644 are too open: a secret must be accessible by its owner only (chmod 600 " + path + ")");
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  auto ok = users::load(path);
  ASSERT_TRUE(ok) << ok.err();
  EXPECT_TRUE(ok->find("alice@example.org"));
  EXPECT_FALSE(users::load((d.path() / "missing").string()));
}

TEST(auth_users, senders_a_user_may_use) {
  user own{"alice@Example.org", "h", {}, 1};
  EXPECT_TRUE(sender_allowed(own, "alice@example.org"));
  EXPECT_TRUE(sender_allowed(own, "alice@EXAMPLE.ORG"));
  EXPECT_FALSE(sender_allowed(own, "Alice@example.org"));  // the local part is exact
  EXPECT_FALSE(sender_allowed(own, "bob@example.org"));
  EXPECT_FALSE(sender_allowed(own, ""));
  user app{"app", "h", {"news-*@example.org", "billing@example.org"}, 2};
  EXPECT_TRUE(sender_allowed(app, "news-december@example.org"));
  EXPECT_TRUE(sender_allowed(app, "news-@Example.Org"));
  EXPECT_TRUE(sender_allowed(app, "billing@example.org"));
  EXPECT_FALSE(sender_allowed(app, "news@example.org"));
  EXPECT_FALSE(sender_allowed(app, "news-x@example.org.evil.test"));
  EXPECT_FALSE(sender_allowed(app, "ceo@example.org"));
  user any{"relay", "h", {"*@example.org"}, 3};
  EXPECT_TRUE(sender_allowed(any, "x@example.org"));
  EXPECT_FALSE(sender_allowed(any, "x@example.org@evil.test"));
  EXPECT_FALSE(sender_allowed(any, "x@sub.example.org"));
}

// The pool answers on the shard's own thread, while the loop keeps turning (ticks go on
// during the slow yescrypt checks), and refuses work beyond its queue bound at once.
TEST(auth_hasher, answers_come_back_on_the_shard_and_the_loop_keeps_running) {
  core::shard sh(core::shard::options{.tick_ms = 5});
  ASSERT_TRUE(sh.init()) << "io_uring unavailable";
  std::string h = mkpasswd("secret");
  ASSERT_FALSE(h.empty());
  hasher pool(2, 8);
  pool.attach(sh);
  std::thread::id loop_thread = std::this_thread::get_id();
  int answered = 0, right = 0, refused = 0;
  unsigned ticks = 0;
  bool wrong_thread = false;
  uint64_t deadline = 0;
  sh.on_tick([&] {
    ++ticks;
    if (answered == 8 || sh.now_ms() > deadline) sh.stop();
  });
  sh.post([&] {
    deadline = sh.now_ms() + 20000;
    for (int i = 0; i < 10; ++i) {
      bool queued = pool.check(sh, i % 2 ? "secret" : "wrong", h, [&, i](bool ok) {
        wrong_thread = wrong_thread || std::this_thread::get_id() != loop_thread;
        ++answered;
        if (ok) ++right;
        EXPECT_EQ(ok, i % 2 == 1);
      });
      if (!queued) ++refused;
    }
  });
  sh.run();
  EXPECT_EQ(refused, 2);  // bound 8
  EXPECT_EQ(answered, 8);
  EXPECT_EQ(right, 4);
  EXPECT_FALSE(wrong_thread);
  EXPECT_GT(ticks, 2u);  // the loop ran while the workers hashed
}

}  // namespace
}  // namespace sr::auth

namespace sr::auth {
namespace {

TEST(auth_limiter, delays_grow_then_the_client_is_closed) {
  limiter l;  // 2 free, 1 s doubling to 30 s, close at 10
  uint64_t t = 1000;
  std::vector<long> delays;
  verdict v;
  for (int i = 0; i < 9; ++i) {
    v = l.failed("192.0.2.7", "alice@example.org", t);
    EXPECT_FALSE(v.close) << i;
    delays.push_back(long(v.delay.count()));
    t += 100;
  }
  EXPECT_EQ(delays, (std::vector<long>{0, 0, 1000, 2000, 4000, 8000, 16000, 30000, 30000}));
  EXPECT_TRUE(l.failed("192.0.2.7", "alice@example.org", t).close);
  // Reconnecting does not buy more tries: the address is over the limit before any check.
  EXPECT_TRUE(l.before("192.0.2.7", "", t).close);
  // Another client is not affected; the same user from elsewhere is (per-user counter).
  EXPECT_FALSE(l.before("192.0.2.8", "", t).close);
  EXPECT_TRUE(l.before("192.0.2.8", "alice@example.org", t).close);
  // Idle long enough, the counters start again.
  t += 16 * 60 * 1000;
  EXPECT_FALSE(l.before("192.0.2.7", "alice@example.org", t).close);
  EXPECT_EQ(l.failed("192.0.2.7", "alice@example.org", t).delay.count(), 0);
}

TEST(auth_limiter, ipv6_counts_by_64_and_success_clears_only_the_user) {
  limiter l(limiter_options{.free_tries = 0, .max_failures = 3});
  EXPECT_FALSE(l.failed("2001:db8:1:2::10", "a@x.org", 0).close);
  EXPECT_FALSE(l.before("2001:db8::1", "", 0).close);                  // another /64
  EXPECT_FALSE(l.failed("2001:db8:1:2:ffff::1", "b@x.org", 0).close);  // same /64
  EXPECT_TRUE(l.failed("2001:db8:1:2:0:0:0:99", "c@x.org", 0).close);
  EXPECT_FALSE(l.before("2001:db8:1:3::1", "", 0).close);              // the next /64
  EXPECT_TRUE(l.before("2001:0db8:0001:0002:0:0:0:1", "", 0).close);   // written longhand
  l.succeeded("a@x.org");
  EXPECT_TRUE(l.before("2001:db8:1:2::10", "", 0).close);              // the address stays
}

TEST(auth_limiter, memory_is_bounded) {
  limiter l(limiter_options{.max_keys = 100});
  for (int i = 0; i < 10'000; ++i) l.failed("198.51.100." + std::to_string(i % 250) + "/" + std::to_string(i), "", 0);
  EXPECT_LE(l.keys(), 100u);
}

}  // namespace
}  // namespace sr::auth
