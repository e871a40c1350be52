// handoff::client on a real shard against a scripted sidecar: a thread serving the unix
// socket with the real wire codec. What is checked is the crash-safety contract: the
// recipients are answered only after the result's mails are durable (the intake here
// answers when the test says so), a mail file outside the outbox is never read, a lost
// link or a late answer keeps every recipient queued, and a `submit` is answered once
// spooled. Also the admin endpoint's retraction request parser.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>

#include "sealrelay/core/shard.hh"
#include "sealrelay/handoff/client.hh"
#include "support/temp_dir.hh"

namespace sr::handoff {
namespace {

namespace fs = std::filesystem;
namespace wire = fallback::wire;
using policy::handoff_outcome;

// The intake: records what is spooled; answers at once, or refuses addresses named in `refuse`.
struct fake_intake final : spool::intake {
  std::vector<spool::message_meta> metas;
  std::vector<std::string> texts;
  std::string refuse;
  unsigned n = 0;
  std::string next_queue_id() override { return "Q" + std::to_string(n++); }
  void submit(spool::message_meta, std::span<const iovec>, spool::intake_client*) override {}
  void submit_owned(spool::message_meta meta, std::string text, std::function<void(bool)> stored) override {
    bool ok = meta.rcpts.empty() || meta.rcpts[0] != refuse;
    metas.push_back(meta);
    texts.push_back(text);
    stored(ok);
  }
  size_t in_flight() const override { return 0; }
};

struct answer final : policy::handoff_completion {
  std::vector<handoff_outcome> got;
  int calls = 0;
  std::function<void()> then;
  void handoff_done(std::span<const handoff_outcome> o) override {
    got.assign(o.begin(), o.end());
    ++calls;
    if (then) then();
  }
};

// A scripted sidecar: accepts one engine at a time, answers hello, and hands every other
// frame to `on_frame`, which may send frames back or close the link.
class fake_sidecar {
 public:
  using handler = std::function<void(fake_sidecar&, wire::frame&)>;
  fake_sidecar(std::string path, handler h) : _path(std::move(path)), _h(std::move(h)) {
    _fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, _path.data(), _path.size());
    EXPECT_EQ(::bind(_fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    EXPECT_EQ(::listen(_fd, 8), 0);
    _thread = std::thread([this] { serve(); });
  }
  ~fake_sidecar() {
    _stop = true;
    _thread.join();
    ::close(_fd);
  }
  void send(const wire::frame& f) {
    std::string out;
    wire::encode(f, out);
    if (_conn >= 0) (void)!::send(_conn, out.data(), out.size(), MSG_NOSIGNAL);
  }
  void close_link() {
    if (_conn >= 0) ::close(_conn);
    _conn = -1;
  }
  std::atomic<int> hellos{0};

 private:
  void serve() {
    while (!_stop) {
      pollfd p{_conn >= 0 ? _conn : _fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      if (_conn < 0) {
        _conn = ::accept(_fd, nullptr, nullptr);
        _dec = wire::decoder();
        continue;
      }
      char buf[4096];
      ssize_t n = ::recv(_conn, buf, sizeof buf, 0);
      if (n <= 0) {
        close_link();
        continue;
      }
      _dec.feed(std::string_view(buf, size_t(n)));
      while (_conn >= 0) {
        auto f = _dec.next();
        if (!f) break;
        if (std::holds_alternative<wire::hello>(*f)) {
          ++hellos;
          send(wire::hello_ok{"fake 1"});
        } else {
          _h(*this, *f);
        }
      }
    }
    close_link();
  }
  std::string _path;
  handler _h;
  int _fd = -1, _conn = -1;
  std::atomic<bool> _stop{false};
  wire::decoder _dec;
  std::thread _thread;
};

class handoff_client : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(_sh.init()) << "io_uring unavailable";
    fs::create_directories(outbox());
  }
  std::string sock() const { return (_dir.path() / "fb.sock").string(); }
  fs::path outbox() const { return _dir.path() / "outbox"; }
  client::options opts() const {
    client::options o;
    o.socket = sock();
    o.outbox = outbox().string();
    o.node = "relay.test";
    o.reconnect_ms = 50;
    return o;
  }
  std::string write_mail(const std::string& name, const std::string& text) {
    std::string p = (outbox() / name).string();
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  // Run the loop until `done()` or 5 s; false at the deadline.
  bool run_until(std::function<bool()> done, std::function<void()> first) {
    uint64_t deadline = 0;
    bool ok = false;
    _sh.on_tick([&] {
      if (done()) {
        ok = true;
        _sh.stop();
      } else if (_sh.now_ms() > deadline) {
        _sh.stop();
      }
    });
    _sh.post([&] {
      deadline = _sh.now_ms() + 5000;
      first();
    });
    _sh.run();
    return ok;
  }
  policy::handoff_request request(const policy::effective_policy& p,
                                  std::span<const std::string_view> rcpts) {
    policy::handoff_request r;
    r.queue_id = "6B0AD79A01000000";
    r.from = "alice@sender.test";
    r.recipients = rcpts;
    r.domain = "bank.test";
    r.segment = "var/spool/0/00000001.seg";  // relative: made absolute from the cwd
    r.offset = 4096;
    r.length = 100;
    r.reason = report::reason::starttls_not_offered;
    r.policy = &p;
    return r;
  }

  // Hand `req` off on the first tick the link is up (its views must outlive the loop).
  void hand_off_once_up(client& c, policy::handoff_request req, answer& done) {
    _sh.on_tick([this, &c, req, &done, sent = false]() mutable {
      if (!sent && c.up()) {
        sent = true;
        c.hand_off(req, done);
      }
    });
  }

  sr::test::temp_dir _dir{"sr-handoff", "/tmp"};
  core::shard _sh{core::shard::options{.tick_ms = 10}};
  fake_intake _intake;
};

TEST_F(handoff_client, outcomes_arrive_only_after_every_mail_is_spooled) {
  std::string pgp = write_mail("1.eml", "Subject: ...\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n");
  std::string notice = write_mail("2.eml", "Subject: Secure message from alice@sender.test\r\n\r\nlink\r\n");
  std::string evil = "/etc/passwd";
  wire::handoff seen;
  fake_sidecar sc(sock(), [&](fake_sidecar& s, wire::frame& f) {
    auto& h = std::get<wire::handoff>(f);
    seen = h;
    wire::result r;
    r.request_id = h.request_id;
    r.outcomes = {wire::outcome::pgp, wire::outcome::escrowed, wire::outcome::smime, wire::outcome::defer};
    r.outputs = {{4, h.from, {"a@bank.test"}, "m1@relay.test", pgp},
                 {2, h.from, {"b@bank.test"}, "m2@relay.test", notice},
                 {5, h.from, {"c@bank.test"}, "m3@relay.test", evil}};  // outside the outbox
    s.send(r);
  });
  client c(_sh, _intake, opts());
  policy::effective_policy p;
  p.fallback.methods = {policy::fallback_method::pgp, policy::fallback_method::smime,
                        policy::fallback_method::escrow, policy::fallback_method::defer};
  p.fallback.size = 4;
  std::string_view rcpts[] = {"a@bank.test", "b@bank.test", "c@bank.test", "d@bank.test"};
  answer done;
  ASSERT_TRUE(run_until([&] { return done.calls > 0; }, [&] {
    c.start();
    // Not linked yet: answered unavailable at once, nothing sent.
    answer early;
    c.hand_off(request(p, rcpts), early);
    EXPECT_EQ(early.got, std::vector<handoff_outcome>(4, handoff_outcome::unavailable));
    _sh.on_tick([&, sent = false]() mutable {
      if (!sent && c.up()) {
        sent = true;
        c.hand_off(request(p, rcpts), done);
      }
    });
  }));
  EXPECT_EQ(done.calls, 1);
  // c@ named a file outside the outbox: never read, kept queued; d@ deferred by the chain.
  EXPECT_EQ(done.got, (std::vector<handoff_outcome>{handoff_outcome::pgp, handoff_outcome::escrowed,
                                                    handoff_outcome::unavailable, handoff_outcome::defer}));
  ASSERT_EQ(_intake.metas.size(), 2u);
  EXPECT_EQ(_intake.metas[0].kind, report::message_kind::pgp);
  EXPECT_EQ(_intake.metas[0].rcpts, std::vector<std::string>{"a@bank.test"});
  EXPECT_EQ(_intake.metas[0].mail_from, "alice@sender.test");
  EXPECT_EQ(_intake.metas[1].kind, report::message_kind::escrow_notice);
  EXPECT_EQ(_intake.texts[1], "Subject: Secure message from alice@sender.test\r\n\r\nlink\r\n");
  // The spooled files are gone; what the hand-off named reached the sidecar.
  EXPECT_FALSE(fs::exists(pgp));
  EXPECT_FALSE(fs::exists(notice));
  EXPECT_TRUE(fs::exists(evil));
  EXPECT_EQ(seen.queue_id, "6B0AD79A01000000");
  EXPECT_EQ(seen.rcpts.size(), 4u);
  EXPECT_EQ(seen.segment, fs::current_path().string() + "/var/spool/0/00000001.seg");
  EXPECT_EQ(seen.offset, 4096u);
  EXPECT_EQ(seen.length, 100u);
  EXPECT_EQ(seen.chain, (std::vector<wire::method>{wire::method::pgp, wire::method::smime,
                                                   wire::method::escrow, wire::method::defer}));
}

TEST_F(handoff_client, a_mail_the_spool_refuses_keeps_its_recipient_queued) {
  std::string m = write_mail("1.eml", "x\r\n");
  fake_sidecar sc(sock(), [&](fake_sidecar& s, wire::frame& f) {
    auto& h = std::get<wire::handoff>(f);
    s.send(wire::result{h.request_id, {wire::outcome::escrowed}, "", {{2, "", {"a@bank.test"}, "n@r", m}}});
  });
  _intake.refuse = "a@bank.test";
  client c(_sh, _intake, opts());
  policy::effective_policy p;
  p.fallback.methods[0] = policy::fallback_method::escrow;
  p.fallback.size = 1;
  std::string_view rcpts[] = {"a@bank.test"};
  answer done;
  ASSERT_TRUE(run_until([&] { return done.calls > 0; }, [&] {
    c.start();
    hand_off_once_up(c, request(p, rcpts), done);
  }));
  EXPECT_EQ(done.got, std::vector<handoff_outcome>{handoff_outcome::unavailable});
  EXPECT_EQ(c.stats().outputs_failed, 1u);
}

TEST_F(handoff_client, a_lost_link_answers_every_pending_hand_off_unavailable) {
  fake_sidecar sc(sock(), [&](fake_sidecar& s, wire::frame&) { s.close_link(); });  // dies mid-hand-off
  client c(_sh, _intake, opts());
  policy::effective_policy p;
  p.fallback.methods[0] = policy::fallback_method::escrow;
  p.fallback.size = 1;
  std::string_view rcpts[] = {"a@bank.test", "b@bank.test"};
  answer done;
  ASSERT_TRUE(run_until([&] { return done.calls > 0 && sc.hellos >= 2; }, [&] {
    c.start();
    hand_off_once_up(c, request(p, rcpts), done);
  }));
  EXPECT_EQ(done.got, std::vector<handoff_outcome>(2, handoff_outcome::unavailable));
  EXPECT_TRUE(_intake.metas.empty());
  EXPECT_GE(c.stats().disconnects, 1u);  // and it linked again (hellos >= 2)
}

TEST_F(handoff_client, a_late_answer_is_deferred_and_its_mails_dropped) {
  std::string m = write_mail("1.eml", "x\r\n");
  std::atomic<uint64_t> id{0};
  fake_sidecar sc(sock(), [&](fake_sidecar&, wire::frame& f) { id = std::get<wire::handoff>(f).request_id; });
  auto o = opts();
  o.answer_timeout_ms = 100;
  client c(_sh, _intake, o);
  policy::effective_policy p;
  p.fallback.methods[0] = policy::fallback_method::escrow;
  p.fallback.size = 1;
  std::string_view rcpts[] = {"a@bank.test"};
  answer done;
  ASSERT_TRUE(run_until([&] { return done.calls > 0; }, [&] {
    c.start();
    hand_off_once_up(c, request(p, rcpts), done);
  }));
  EXPECT_EQ(done.got, std::vector<handoff_outcome>{handoff_outcome::unavailable});
  EXPECT_EQ(c.stats().timed_out, 1u);
  EXPECT_EQ(c.pending(), 0u);
  (void)m;
}

TEST_F(handoff_client, a_submit_is_answered_once_spooled) {
  std::string m = write_mail("code.eml", "Subject: Your code for a secure message\r\n\r\n123456\r\n");
  std::atomic<bool> answered{false}, ok{false};
  fake_sidecar sc(sock(), [&](fake_sidecar&, wire::frame& f) {
    if (auto* s = std::get_if<wire::submitted>(&f)) {
      ok = s->ok && s->submit_id == 9;
      answered = true;
    }
  });
  client c(_sh, _intake, opts());
  ASSERT_TRUE(run_until([&] { return answered.load(); }, [&] {
    c.start();
    _sh.on_tick([&, sent = false]() mutable {
      if (!sent && c.up()) {
        sent = true;
        sc.send(wire::submit{9, {2, "", {"a@bank.test"}, "c@relay.test", m}});
      }
    });
  }));
  EXPECT_TRUE(ok);
  ASSERT_EQ(_intake.metas.size(), 1u);
  EXPECT_EQ(_intake.metas[0].rcpts, std::vector<std::string>{"a@bank.test"});
  EXPECT_FALSE(fs::exists(m));
}

TEST(handoff_retract, the_request_body_is_parsed_strictly) {
  auto ok = retract_request_msg_id(R"( {"msg_id": "<abc.1@sender.test>"} )");
  ASSERT_TRUE(ok) << ok.err();
  EXPECT_EQ(ok.value(), "abc.1@sender.test");
  auto esc = retract_request_msg_id(R"({"msg_id":"a\/b@x"})");
  ASSERT_TRUE(esc);
  EXPECT_EQ(esc.value(), "a/b@x");
  for (const char* bad : {"", "{}", R"({"msg_id": 5})", R"({"msg_id": ""})", R"({"id": "a@b"})",
                          R"({"msg_id": "a@b", "x": 1})", R"({"msg_id": "a b@c"})",
                          R"({"msg_id": "a\u0041@b"})", R"({"msg_id": "a@b"} x)", "[\"a@b\"]"})
    EXPECT_FALSE(retract_request_msg_id(bad)) << bad;
}

}  // namespace
}  // namespace sr::handoff
