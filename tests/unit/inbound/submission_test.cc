// Inbound session on a submission listener (issue 10): AUTH PLAIN/LOGIN only under TLS,
// 538 before it, the asynchronous check (no input read until auth_result()), 535/454/421,
// MAIL only after AUTH and only with the user's sender, relay listeners without AUTH.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sealrelay/inbound/session.hh"

namespace {

using sr::inbound::envelope;
using sr::inbound::session;
using sr::inbound::session_params;
using answer = session::auth_answer;

// The engine side: records replies and the credentials asked for; answers on demand.
struct engine : sr::inbound::events {
  std::string replies;
  std::vector<std::string> checks;  // "user/password" per check_auth()
  std::vector<std::string> ended;   // envelopes at end_message: "from>rcpt|auth_user"
  std::string allowed_sender = "alice@example.org";
  session* s = nullptr;
  bool closed = false;

  void send(std::string_view b) override { replies.append(b); }
  void start_tls() override {}
  void begin_message(const envelope&) override {}
  void body(std::span<std::byte>) override {}
  void end_message(const envelope& e) override {
    ended.push_back(e.mail_from + ">" + (e.rcpt_to.empty() ? "" : e.rcpt_to[0]) + "|" + e.auth_user);
  }
  void abort_message() override {}
  void close() override { closed = true; }
  void check_auth(std::string_view user, std::string_view password) override {
    checks.push_back(std::string(user) + "/" + std::string(password));
  }
  bool sender_allowed(std::string_view a) override { return a == allowed_sender; }

  // Reply lines since the last call.
  std::vector<std::string> take() {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t e; (e = replies.find("\r\n", start)) != std::string::npos; start = e + 2)
      out.push_back(replies.substr(start, e - start));
    replies.erase(0, start);
    return out;
  }
  std::string last() {
    auto l = take();
    return l.empty() ? "" : l.back();
  }
};

session_params submission_params(bool tls = true) {
  session_params p;
  p.hostname = "relay.test";
  p.submission = true;
  p.tls_active = tls;  // as on an implicit-TLS listener
  p.starttls_available = !tls;
  return p;
}

struct fixture {
  engine ev;
  session s;
  explicit fixture(session_params p = submission_params()) : s(p, ev) {
    ev.s = &s;
    s.greet();
    ev.take();
  }
  // Feed `text`; return how many bytes the session took.
  size_t feed(std::string text) {
    buf = std::move(text);
    return s.feed(std::span<std::byte>(reinterpret_cast<std::byte*>(buf.data()), buf.size()));
  }
  std::string buf;
};

// base64 of "\0alice@example.org\0secret", "alice@example.org", "secret".
const std::string plain_alice = "AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==";
const std::string b64_alice = "YWxpY2VAZXhhbXBsZS5vcmc=";
const std::string b64_secret = "c2VjcmV0";

std::string join(const std::vector<std::string>& v) {
  std::string o;
  for (auto& x : v) o += (o.empty() ? "" : "|") + x;
  return o;
}

TEST(submission, ehlo_offers_auth_only_under_tls) {
  fixture plain(submission_params(false));
  plain.feed("EHLO c\r\n");
  EXPECT_EQ(join(plain.ev.take()).find("AUTH"), std::string::npos);
  fixture tls;
  tls.feed("EHLO c\r\n");
  EXPECT_EQ(join(tls.ev.take()),
            "250-relay.test|250-PIPELINING|250-SIZE 52428800|250-8BITMIME|250-REQUIRETLS|"
            "250-AUTH PLAIN LOGIN|250 ENHANCEDSTATUSCODES");
}

TEST(submission, auth_before_tls_is_538_and_mail_needs_auth) {
  fixture g(submission_params(false));
  g.feed("EHLO c\r\n");
  g.ev.take();
  g.feed("AUTH PLAIN " + plain_alice + "\r\n");
  EXPECT_EQ(g.ev.last(), "538 5.7.11 Encryption required for requested authentication mechanism");
  g.feed("MAIL FROM:<alice@example.org>\r\n");
  EXPECT_EQ(g.ev.last(), "530 5.7.0 Authentication required");
  EXPECT_TRUE(g.ev.checks.empty());  // the password never reached the engine
}

TEST(submission, plain_initial_response_waits_for_the_answer) {
  fixture f;
  f.feed("EHLO c\r\n");
  f.ev.take();
  std::string in = "AUTH PLAIN " + plain_alice + "\r\nMAIL FROM:<alice@example.org>\r\n";
  size_t used = f.feed(in);
  // The session stops right after the AUTH line: MAIL waits for the answer.
  EXPECT_EQ(used, in.find("MAIL"));
  EXPECT_EQ(f.s.current_state(), session::state::auth_wait);
  EXPECT_FALSE(f.s.waiting_for_command());
  ASSERT_EQ(f.ev.checks, std::vector<std::string>{"alice@example.org/secret"});
  EXPECT_TRUE(f.ev.take().empty());
  f.s.auth_result(answer::ok);
  EXPECT_EQ(f.ev.last(), "235 2.7.0 Authentication successful");
  EXPECT_EQ(f.s.auth_user(), "alice@example.org");
  f.feed("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@far.example>\r\nDATA\r\nhi\r\n.\r\n");
  EXPECT_EQ(join(f.ev.take()), "250 2.1.0 Ok|250 2.1.5 Ok|354 End data with <CR><LF>.<CR><LF>");
  ASSERT_EQ(f.ev.ended.size(), 1u);
  EXPECT_EQ(f.ev.ended[0], "alice@example.org>bob@far.example|alice@example.org");
}

TEST(submission, plain_with_continuation) {
  fixture f;
  f.feed("EHLO c\r\nAUTH PLAIN\r\n");
  EXPECT_EQ(f.ev.last(), "334 ");
  EXPECT_EQ(f.s.current_state(), session::state::auth);
  EXPECT_TRUE(f.s.waiting_for_command());
  f.feed(plain_alice + "\r\n");
  ASSERT_EQ(f.ev.checks.size(), 1u);
  f.s.auth_result(answer::ok);
  EXPECT_EQ(f.ev.last(), "235 2.7.0 Authentication successful");
}

TEST(submission, login_exchange_like_thunderbird) {
  fixture f;
  f.feed("EHLO c\r\n");
  f.ev.take();
  f.feed("AUTH LOGIN\r\n");
  EXPECT_EQ(f.ev.last(), "334 VXNlcm5hbWU6");
  f.feed(b64_alice + "\r\n");
  EXPECT_EQ(f.ev.last(), "334 UGFzc3dvcmQ6");
  f.feed(b64_secret + "\r\n");
  ASSERT_EQ(f.ev.checks, std::vector<std::string>{"alice@example.org/secret"});
  f.s.auth_result(answer::ok);
  EXPECT_EQ(f.ev.last(), "235 2.7.0 Authentication successful");
}

TEST(submission, login_with_initial_user_and_split_bytes) {
  fixture f;
  f.feed("EHLO c\r\n");
  f.ev.take();
  std::string all = "AUTH LOGIN " + b64_alice + "\r\n" + b64_secret + "\r\n";
  for (char c : all) f.feed(std::string(1, c));  // one byte at a time
  ASSERT_EQ(f.ev.checks, std::vector<std::string>{"alice@example.org/secret"});
  EXPECT_EQ(f.ev.last(), "334 UGFzc3dvcmQ6");
}

TEST(submission, answers_of_the_engine) {
  fixture f;
  f.feed("EHLO c\r\n");
  f.ev.take();
  f.feed("AUTH PLAIN " + plain_alice + "\r\n");
  f.s.auth_result(answer::failed);
  EXPECT_EQ(f.ev.last(), "535 5.7.8 Authentication credentials invalid");
  EXPECT_EQ(f.s.auth_user(), "");
  f.feed("MAIL FROM:<alice@example.org>\r\n");
  EXPECT_EQ(f.ev.last(), "530 5.7.0 Authentication required");
  f.feed("AUTH PLAIN " + plain_alice + "\r\n");
  f.s.auth_result(answer::busy);
  EXPECT_EQ(f.ev.last(), "454 4.7.0 Temporary authentication failure");
  f.feed("AUTH PLAIN " + plain_alice + "\r\n");
  f.s.auth_result(answer::close);
  EXPECT_EQ(f.ev.last(), "421 4.7.0 Too many authentication failures, closing connection");
  EXPECT_TRUE(f.s.closed());
  EXPECT_TRUE(f.ev.closed);
  f.s.auth_result(answer::ok);  // late: ignored
  EXPECT_TRUE(f.ev.take().empty());
}

TEST(submission, answer_from_inside_check_auth) {
  struct sync_engine : engine {
    void check_auth(std::string_view u, std::string_view p) override {
      engine::check_auth(u, p);
      s->auth_result(answer::ok);
    }
  };
  sync_engine ev;
  session s(submission_params(), ev);
  ev.s = &s;
  s.greet();
  std::string in = "EHLO c\r\nAUTH PLAIN " + plain_alice + "\r\nMAIL FROM:<alice@example.org>\r\n";
  EXPECT_EQ(s.feed(std::span<std::byte>(reinterpret_cast<std::byte*>(in.data()), in.size())), in.size());
  EXPECT_EQ(ev.last(), "250 2.1.0 Ok");
}

TEST(submission, cancel_bad_base64_bad_plain_and_mechanisms) {
  fixture f;
  f.feed("EHLO c\r\n");
  f.ev.take();
  f.feed("AUTH LOGIN\r\n*\r\n");
  EXPECT_EQ(f.ev.last(), "501 5.0.0 Authentication cancelled");
  f.feed("AUTH PLAIN\r\n%%%\r\n");
  EXPECT_EQ(f.ev.last(), "501 5.5.2 Cannot decode response");
  f.feed("AUTH PLAIN " + b64_alice + "\r\n");  // not user\0user\0password
  EXPECT_EQ(f.ev.last(), "535 5.7.8 Authentication credentials invalid");
  f.feed("AUTH CRAM-MD5\r\n");
  EXPECT_EQ(f.ev.last(), "504 5.5.4 Unrecognized authentication type");
  f.feed("AUTH\r\n");
  EXPECT_EQ(f.ev.last(), "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
  EXPECT_TRUE(f.ev.checks.empty());
  EXPECT_EQ(f.s.current_state(), session::state::ready);
}

TEST(submission, over_long_response_leaves_the_exchange) {
  fixture f;
  f.feed("EHLO c\r\nAUTH PLAIN\r\n");
  f.ev.take();
  f.feed(std::string(600, 'A') + "\r\nNOOP\r\n");
  EXPECT_EQ(join(f.ev.take()), "500 5.5.2 Error: line too long|250 2.0.0 Ok");
  EXPECT_TRUE(f.ev.checks.empty());
}

TEST(submission, auth_twice_before_helo_and_in_transaction) {
  fixture f;
  f.feed("AUTH PLAIN " + plain_alice + "\r\n");
  EXPECT_EQ(f.ev.last(), "503 5.5.1 Error: send HELO/EHLO first");
  f.feed("EHLO c\r\nAUTH PLAIN " + plain_alice + "\r\n");
  f.s.auth_result(answer::ok);
  f.ev.take();
  f.feed("AUTH PLAIN " + plain_alice + "\r\n");
  EXPECT_EQ(f.ev.last(), "503 5.5.1 Already authenticated");
  // RSET and a new EHLO keep the authentication (as Postfix does).
  f.feed("RSET\r\nEHLO c\r\nMAIL FROM:<alice@example.org>\r\n");
  EXPECT_EQ(f.ev.last(), "250 2.1.0 Ok");
}

TEST(submission, sender_must_be_the_users) {
  fixture f;
  f.feed("EHLO c\r\nAUTH PLAIN " + plain_alice + "\r\n");
  f.s.auth_result(answer::ok);
  f.ev.take();
  f.feed("MAIL FROM:<ceo@example.org>\r\n");
  EXPECT_EQ(f.ev.last(),
            "553 5.7.1 <ceo@example.org>: Sender address rejected: not owned by user alice@example.org");
  f.feed("MAIL FROM:<>\r\n");
  EXPECT_EQ(f.ev.last().substr(0, 9), "553 5.7.1");
  f.feed("RCPT TO:<bob@far.example>\r\n");
  EXPECT_EQ(f.ev.last(), "503 5.5.1 Error: need MAIL command");
}

TEST(submission, refused_message_gets_the_engines_reply) {
  struct refusing : engine {
    void end_message(const envelope& e) override {
      engine::end_message(e);
      s->message_refused("553 5.7.1 From: not owned by user alice@example.org");
    }
  };
  refusing ev;
  session s(submission_params(), ev);
  ev.s = &s;
  s.greet();
  s.auth_result(answer::ok);  // not waiting: ignored
  std::string in = "EHLO c\r\nAUTH PLAIN " + plain_alice + "\r\n";
  s.feed(std::span<std::byte>(reinterpret_cast<std::byte*>(in.data()), in.size()));
  s.auth_result(answer::ok);
  ev.take();
  in = "MAIL FROM:<alice@example.org>\r\nRCPT TO:<b@far.example>\r\nDATA\r\nFrom: x@y\r\n\r\nhi\r\n.\r\nNOOP\r\n";
  EXPECT_EQ(s.feed(std::span<std::byte>(reinterpret_cast<std::byte*>(in.data()), in.size())), in.size());
  auto l = ev.take();
  ASSERT_GE(l.size(), 2u);
  EXPECT_EQ(l[l.size() - 2], "553 5.7.1 From: not owned by user alice@example.org");
  EXPECT_EQ(l.back(), "250 2.0.0 Ok");
}

// A 421 refusal (a throttling peer: sealrelay-sink --defer-every) closes the channel, as
// RFC 5321 §3.8 says of 421: nothing after it is answered.
TEST(submission, refused_with_421_closes_the_session) {
  struct deferring : engine {
    void end_message(const envelope& e) override {
      engine::end_message(e);
      s->message_refused("421 4.7.0 Try again later, closing connection");
    }
  };
  deferring ev;
  session s(submission_params(), ev);
  ev.s = &s;
  s.greet();
  std::string in = "EHLO c\r\nAUTH PLAIN " + plain_alice + "\r\n";
  s.feed(std::span<std::byte>(reinterpret_cast<std::byte*>(in.data()), in.size()));
  s.auth_result(answer::ok);
  ev.take();
  in = "MAIL FROM:<alice@example.org>\r\nRCPT TO:<b@far.example>\r\nDATA\r\nFrom: x@y\r\n\r\nhi\r\n.\r\nNOOP\r\n";
  s.feed(std::span<std::byte>(reinterpret_cast<std::byte*>(in.data()), in.size()));
  auto l = ev.take();
  ASSERT_FALSE(l.empty());
  EXPECT_EQ(l.back(), "421 4.7.0 Try again later, closing connection");
  EXPECT_TRUE(ev.closed);
  EXPECT_TRUE(s.closed());
}

TEST(submission, relay_listener_offers_no_auth) {
  session_params p;
  p.hostname = "relay.test";
  p.tls_active = true;
  p.relay_allowed = true;
  engine ev;
  session s(p, ev);
  s.greet();
  std::string in = "EHLO c\r\nAUTH PLAIN " + plain_alice + "\r\nMAIL FROM:<anyone@else.example>\r\n";
  s.feed(std::span<std::byte>(reinterpret_cast<std::byte*>(in.data()), in.size()));
  auto l = join(ev.take());
  EXPECT_EQ(l.find("AUTH PLAIN LOGIN"), std::string::npos);
  EXPECT_NE(l.find("503 5.5.1 Error: authentication not enabled"), std::string::npos);
  EXPECT_TRUE(l.ends_with("250 2.1.0 Ok"));  // relay rules as before: no sender check
  EXPECT_TRUE(ev.checks.empty());
}

TEST(submission, shutdown_waits_for_the_answer) {
  fixture f;
  f.feed("EHLO c\r\nAUTH PLAIN " + plain_alice + "\r\n");
  f.ev.take();
  EXPECT_FALSE(f.s.shutdown());
  f.s.auth_result(answer::ok);
  auto l = f.ev.take();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0], "235 2.7.0 Authentication successful");
  EXPECT_EQ(l[1].substr(0, 9), "421 4.3.2");
  EXPECT_TRUE(f.s.closed());
}

}  // namespace
