// sidecar::server in-process, with test engines on its unix socket: submit_mail() (what the
// portal calls to spool a code mail) — answered ok, refused, no engine connected, the engine
// gone while waiting, a timeout, several callers at once spread over the engines — and a
// hand-off answered on the connection it came from while another engine talks.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>
#include <vector>

#include "sidecar/server.hh"
#include "support/temp_dir.hh"

namespace sr::sidecar {
namespace {

namespace wire = fallback::wire;
using namespace std::chrono_literals;

// One engine connection (blocking socket, reads bounded by poll).
class engine {
 public:
  explicit engine(const std::string& path) {
    for (int i = 0; i < 200 && _fd < 0; ++i) {
      int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) _fd = fd;
      else {
        ::close(fd);
        std::this_thread::sleep_for(10ms);
      }
    }
  }
  ~engine() { close(); }
  void close() {
    if (_fd >= 0) ::close(_fd);
    _fd = -1;
  }
  bool send(const wire::frame& f) {
    std::string b;
    wire::encode(f, b);
    return ::send(_fd, b.data(), b.size(), MSG_NOSIGNAL) == ssize_t(b.size());
  }
  std::optional<wire::frame> next(std::chrono::milliseconds timeout = 10s) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto f = _dec.next()) return f;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      pollfd p{_fd, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, int(left.count())) <= 0) return std::nullopt;
      char buf[4096];
      ssize_t n = ::recv(_fd, buf, sizeof buf, 0);
      if (n <= 0) return std::nullopt;
      _dec.feed(std::string_view(buf, size_t(n)));
    }
  }
  bool hello() {
    if (!send(wire::hello{1, "relay.test"})) return false;
    auto f = next();
    return f && std::holds_alternative<wire::hello_ok>(*f);
  }
  // Answer the next submit with `ok`; its submit, or nullopt when none came.
  std::optional<wire::submit> answer_submit(bool ok, std::chrono::milliseconds timeout = 10s) {
    auto f = next(timeout);
    if (!f || !std::holds_alternative<wire::submit>(*f)) return std::nullopt;
    auto s = std::get<wire::submit>(*f);
    send(wire::submitted{s.submit_id, ok, ok ? "" : "spool full"});
    return s;
  }
  bool connected() const { return _fd >= 0; }

 private:
  int _fd = -1;
  wire::decoder _dec;
};

class server_test : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(_dir.path() / "outbox");
    // An output two hours old (its engine died before spooling it) and a fresh one.
    std::ofstream(_dir.path() / "outbox" / "old.eml") << "x";
    std::ofstream(_dir.path() / "outbox" / "new.eml") << "x";
    std::filesystem::last_write_time(_dir.path() / "outbox" / "old.eml",
                                     std::filesystem::file_time_type::clock::now() - 2h);
    server_options o;
    o.socket_path = (_dir.path() / "fb.sock").string();
    o.handler.outbox_dir = (_dir.path() / "outbox").string();
    o.handler.state_dir = _dir.path().string();
    o.handler.hostname = "relay.test";
    o.handler.portal_url = "https://portal.test";
    _srv = std::make_unique<server>(o, nullptr);
    auto s = _srv->open();
    ASSERT_TRUE(s.ok()) << s.err();
    _loop = std::thread([this] { _srv->run(); });
  }
  void TearDown() override {
    if (_srv) _srv->stop();
    if (_loop.joinable()) _loop.join();
    _srv.reset();
  }
  std::string socket() const { return (_dir.path() / "fb.sock").string(); }
  // Wait until `n` engines completed hello (bounded).
  bool engines(size_t n) {
    for (int i = 0; i < 500; ++i) {
      if (_srv->engines() == n) return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
  static wire::output mail(const std::string& rcpt) {
    return wire::output{2, "", {rcpt}, "code-1@relay.test", "/outbox/code.eml"};
  }

  test::temp_dir _dir{"srsc"};
  std::unique_ptr<server> _srv;
  std::thread _loop;
};

TEST_F(server_test, the_sweep_removes_only_stale_outputs) {
  auto old = _dir.path() / "outbox" / "old.eml";
  for (int i = 0; i < 500 && std::filesystem::exists(old); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(std::filesystem::exists(old));
  EXPECT_TRUE(std::filesystem::exists(_dir.path() / "outbox" / "new.eml"));
}

TEST_F(server_test, submit_without_an_engine_is_false_at_once) {
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(_srv->submit_mail(mail("a@dest.test"), 5s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  engine e(socket());  // connected, but no hello yet: not an engine to use
  ASSERT_TRUE(e.connected());
  EXPECT_FALSE(_srv->submit_mail(mail("a@dest.test"), 200ms));
}

TEST_F(server_test, submit_waits_for_submitted) {
  engine e(socket());
  ASSERT_TRUE(e.hello());
  ASSERT_TRUE(engines(1));
  std::optional<wire::submit> seen;
  std::thread eng([&] {
    seen = e.answer_submit(true);
    e.answer_submit(false);
  });
  auto fn = _srv->submitter();
  EXPECT_TRUE(fn(mail("a@dest.test"), 10s));
  EXPECT_FALSE(fn(mail("b@dest.test"), 10s)) << "the engine refused it";
  eng.join();
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->mail.kind, 2);
  EXPECT_EQ(seen->mail.rcpts, std::vector<std::string>{"a@dest.test"});
  EXPECT_EQ(seen->mail.path, "/outbox/code.eml");
  EXPECT_EQ(seen->mail.msg_id, "code-1@relay.test");
}

TEST_F(server_test, submit_times_out_and_a_late_answer_is_harmless) {
  engine e(socket());
  ASSERT_TRUE(e.hello());
  ASSERT_TRUE(engines(1));
  EXPECT_FALSE(_srv->submit_mail(mail("a@dest.test"), 200ms));
  auto f = e.next();
  ASSERT_TRUE(f && std::holds_alternative<wire::submit>(*f));
  ASSERT_TRUE(e.send(wire::submitted{std::get<wire::submit>(*f).submit_id, true, ""}));
  ASSERT_TRUE(e.send(wire::ping{3}));
  auto p = e.next();
  ASSERT_TRUE(p && std::holds_alternative<wire::pong>(*p)) << "the connection survives a late answer";
}

TEST_F(server_test, submit_fails_when_the_engine_goes_away) {
  engine e(socket());
  ASSERT_TRUE(e.hello());
  ASSERT_TRUE(engines(1));
  std::thread eng([&] {
    auto f = e.next();  // the submit arrives; the engine dies instead of answering
    e.close();
  });
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(_srv->submit_mail(mail("a@dest.test"), 20s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s) << "answered when the link dropped, not at the timeout";
  eng.join();
  EXPECT_TRUE(engines(0));
}

TEST_F(server_test, cancel_submits_answers_waiting_and_later_submits_at_once) {
  engine e(socket());
  ASSERT_TRUE(e.hello());
  ASSERT_TRUE(engines(1));
  std::thread canceller([&] {
    auto f = e.next();  // the submit arrived; the sidecar stops before the engine answers
    _srv->cancel_submits();
  });
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(_srv->submit_mail(mail("a@dest.test"), 20s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s) << "answered at the cancel, not at the timeout";
  canceller.join();
  t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(_srv->submit_mail(mail("b@dest.test"), 20s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

TEST_F(server_test, concurrent_submits_spread_over_engines) {
  engine a(socket()), b(socket());
  ASSERT_TRUE(a.hello());
  ASSERT_TRUE(b.hello());
  ASSERT_TRUE(engines(2));
  constexpr int per = 4;
  std::atomic<int> answered_a{0}, answered_b{0};
  std::atomic<bool> stop{false};
  auto serve = [&stop](engine& e, std::atomic<int>& n) {
    for (int i = 0; i < 1000 && !stop; ++i)
      if (e.answer_submit(true, 50ms)) ++n;
  };
  std::thread ta([&] { serve(a, answered_a); }), tb([&] { serve(b, answered_b); });
  std::atomic<int> ok{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 2 * per; ++i)
    callers.emplace_back([&, i] { ok += _srv->submit_mail(mail("r" + std::to_string(i) + "@dest.test"), 10s); });
  for (auto& t : callers) t.join();
  EXPECT_EQ(ok.load(), 2 * per);
  stop = true;
  ta.join();
  tb.join();
  EXPECT_EQ(answered_a + answered_b, 2 * per);
  EXPECT_GT(answered_a.load(), 0);
  EXPECT_GT(answered_b.load(), 0);
}

}  // namespace
}  // namespace sr::sidecar
