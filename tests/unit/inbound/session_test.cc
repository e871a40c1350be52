// Inbound session: every reply code of the contract, pipelining, byte-split independence,
// DATA smuggling patterns, STARTTLS injection discard and the 512/1000-octet limits.
#include "sealrelay/inbound/session.hh"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using sr::inbound::envelope;
using sr::inbound::session;
using sr::inbound::session_params;

// Records everything the session tells the engine as one transcript.
struct recorder : sr::inbound::events {
  std::string replies;       // all reply bytes, in order
  std::vector<std::string> log;  // events, with bodies collapsed into one entry per message
  std::vector<std::string> messages;  // bodies passed to end_message
  std::string body_acc;
  envelope last_env;
  session* s = nullptr;
  bool sync_result = false;  // answer end_message() from inside the callback
  int queue_seq = 0;

  void send(std::string_view b) override {
    replies.append(b);
    log.push_back("S:" + std::string(b));
  }
  void start_tls() override { log.push_back("TLS"); }
  void begin_message(const envelope& e) override {
    log.push_back("BEGIN from=" + e.mail_from + " n=" + std::to_string(e.rcpt_to.size()));
    body_acc.clear();
  }
  void body(std::span<std::byte> b) override {
    body_acc.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  void end_message(const envelope& e) override {
    last_env = e;
    messages.push_back(body_acc);
    log.push_back("END body=" + body_acc);
    if (sync_result) s->message_result("Q" + std::to_string(++queue_seq));
  }
  void abort_message() override { log.push_back("ABORT"); }
  void close() override { log.push_back("CLOSE"); }

  std::vector<std::string> reply_lines() const {
    std::vector<std::string> out;
    size_t start = 0;
    while (start < replies.size()) {
      size_t e = replies.find("\r\n", start);
      if (e == std::string::npos) break;
      out.push_back(replies.substr(start, e - start));
      start = e + 2;
    }
    return out;
  }
  std::string last_reply() const {
    auto l = reply_lines();
    return l.empty() ? "" : l.back();
  }
};

session_params relay_params() {
  session_params p;
  p.hostname = "relay.test";
  p.relay_allowed = true;
  p.starttls_available = true;
  p.max_message_size = 10000;
  return p;
}

// Feeds `input` in pieces cut at `cuts`; when the session stops for message_result()
// the harness answers and feeds the rest, as the engine would.
struct harness {
  recorder rec;
  session s;
  int results = 0;
  explicit harness(session_params p = relay_params()) : s(p, rec) {
    rec.s = &s;
    s.greet();
  }
  void feed(std::string input, std::vector<size_t> cuts = {}) {
    cuts.push_back(input.size());
    size_t start = 0;
    for (size_t end : cuts) {
      while (start < end) {
        auto* p = reinterpret_cast<std::byte*>(input.data()) + start;
        size_t used = s.feed(std::span<std::byte>(p, end - start));
        start += used;
        if (s.current_state() == session::state::wait_result) {
          if (start < end) {
            ASSERT_EQ(s.feed(std::span<std::byte>(p + used, end - start)), 0u);
          }
          s.message_result("Q" + std::to_string(++results));
        } else {
          ASSERT_EQ(start, end);
        }
      }
    }
  }
  // Reply lines after the greeting.
  std::vector<std::string> replies() const {
    auto l = rec.reply_lines();
    if (!l.empty()) l.erase(l.begin());
    return l;
  }
};

std::string code(const std::string& line) { return line.substr(0, 9); }

const std::string ehlo_reply_lines = "250-relay.test|250-PIPELINING|250-SIZE 10000|250-8BITMIME|"
                                     "250-STARTTLS|250 ENHANCEDSTATUSCODES";

std::string join(const std::vector<std::string>& v) {
  std::string o;
  for (auto& s : v) o += (o.empty() ? "" : "|") + s;
  return o;
}

TEST(session, greeting) {
  harness h;
  EXPECT_EQ(h.rec.replies, "220 relay.test ESMTP sealrelay\r\n");
  EXPECT_TRUE(h.s.waiting_for_command());
}

TEST(session, greeting_refusal_closes) {
  recorder rec;
  session s(relay_params(), rec);
  s.greet("421 4.7.0 relay.test Error: too many connections");
  EXPECT_EQ(rec.replies, "421 4.7.0 relay.test Error: too many connections\r\n");
  EXPECT_TRUE(s.closed());
  EXPECT_EQ(rec.log.back(), "CLOSE");
}

TEST(session, ehlo_advertises_extensions) {
  harness h;
  h.feed("EHLO client.example\r\n");
  EXPECT_EQ(join(h.replies()), ehlo_reply_lines);
  harness h2;
  h2.feed("HELO client.example\r\n");
  EXPECT_EQ(join(h2.replies()), "250 relay.test");
}

TEST(session, no_starttls_advertised_when_unavailable_or_active) {
  auto p = relay_params();
  p.starttls_available = false;
  harness h(p);
  h.feed("EHLO c\r\n");
  EXPECT_EQ(h.rec.replies.find("STARTTLS"), std::string::npos);
  auto q = relay_params();
  q.tls_active = true;
  harness h2(q);
  h2.feed("EHLO c\r\nSTARTTLS\r\n");
  EXPECT_EQ(h2.rec.replies.find("250-STARTTLS"), std::string::npos);
  EXPECT_EQ(code(h2.replies().back()), "503 5.5.1");
}

TEST(session, full_transaction) {
  harness h;
  h.feed("EHLO c.example\r\nMAIL FROM:<a@c.example> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<b@d.example>\r\n"
         "DATA\r\n");
  h.feed("Subject: hi\r\n\r\n..dot\r\n.\r\n");
  h.feed("QUIT\r\n");
  auto r = h.replies();
  ASSERT_EQ(r.size(), 11u);
  EXPECT_EQ(r[6], "250 2.1.0 Ok");
  EXPECT_EQ(r[7], "250 2.1.5 Ok");
  EXPECT_EQ(r[8], "354 End data with <CR><LF>.<CR><LF>");
  EXPECT_EQ(r[9], "250 2.0.0 Ok: queued as Q1");
  EXPECT_EQ(r[10], "221 2.0.0 Bye");
  ASSERT_EQ(h.rec.messages.size(), 1u);
  EXPECT_EQ(h.rec.messages[0], "Subject: hi\r\n\r\n.dot\r\n");
  EXPECT_EQ(h.rec.last_env.mail_from, "a@c.example");
  EXPECT_EQ(h.rec.last_env.rcpt_to, std::vector<std::string>{"b@d.example"});
  EXPECT_EQ(h.rec.last_env.declared_size, 100u);
  EXPECT_TRUE(h.rec.last_env.body_8bitmime);
  EXPECT_TRUE(h.rec.last_env.esmtp);
  EXPECT_EQ(h.rec.last_env.helo, "c.example");
  EXPECT_FALSE(h.rec.last_env.tls);
  EXPECT_TRUE(h.s.closed());
}

TEST(session, stops_reading_until_message_result) {
  recorder rec;
  session s(relay_params(), rec);
  s.greet();
  std::string in = "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@d.example>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n";
  auto* p = reinterpret_cast<std::byte*>(in.data());
  size_t used = s.feed(std::span<std::byte>(p, in.size()));
  EXPECT_EQ(used, in.size() - 6);
  EXPECT_EQ(s.current_state(), session::state::wait_result);
  EXPECT_FALSE(s.waiting_for_command());
  EXPECT_EQ(s.feed(std::span<std::byte>(p + used, 6)), 0u);
  s.message_result("");
  EXPECT_EQ(rec.last_reply(), "452 4.3.1 Insufficient system storage");
  EXPECT_EQ(s.feed(std::span<std::byte>(p + used, 6)), 6u);
  EXPECT_EQ(rec.last_reply(), "250 2.0.0 Ok");
}

TEST(session, pipelined_group_with_sync_result) {
  harness h;
  h.rec.sync_result = true;
  h.feed("EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
         "one\r\n.\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<e@d.example>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n");
  auto r = h.replies();
  std::vector<std::string> want = {"250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.1.5 Ok", "354 End data with <CR><LF>.<CR><LF>",
                                   "250 2.0.0 Ok: queued as Q1", "250 2.1.0 Ok", "250 2.1.5 Ok",
                                   "354 End data with <CR><LF>.<CR><LF>", "250 2.0.0 Ok: queued as Q2", "221 2.0.0 Bye"};
  ASSERT_EQ(r.size(), 6 + want.size());
  EXPECT_EQ(std::vector<std::string>(r.begin() + 6, r.end()), want);
  EXPECT_EQ(h.rec.messages, (std::vector<std::string>{"one\r\n", "two\r\n"}));
}

// One conversation fed whole, and split at every byte boundary, must give identical output.
TEST(session, split_at_every_byte_boundary_is_identical) {
  const std::string conv =
      "EHLO c.example\r\nNOOP\r\nMAIL FROM:<a@c.example> SIZE=20\r\nRCPT TO:<b@d.example>\r\n"
      "RCPT TO:<bad>\r\nDATA\r\nFrom: a\r\n\r\n..stuffed\r\n\r\n.\r\n"
      "MAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\nbare\nlf\r\n.\r\n"
      "BOGUS\r\nRSET\r\nQUIT\r\n";
  harness whole;
  whole.feed(conv);
  ASSERT_TRUE(whole.s.closed());
  ASSERT_EQ(whole.rec.messages.size(), 1u);
  EXPECT_EQ(whole.rec.messages[0], "From: a\r\n\r\n.stuffed\r\n\r\n");
  for (size_t cut = 1; cut < conv.size(); ++cut) {
    harness h;
    h.feed(conv, {cut});
    ASSERT_EQ(h.rec.replies, whole.rec.replies) << "cut at " << cut;
    ASSERT_EQ(h.rec.messages, whole.rec.messages) << "cut at " << cut;
  }
  harness bytewise;
  std::vector<size_t> cuts;
  for (size_t i = 1; i < conv.size(); ++i) cuts.push_back(i);
  bytewise.feed(conv, cuts);
  EXPECT_EQ(bytewise.rec.replies, whole.rec.replies);
  EXPECT_EQ(bytewise.rec.messages, whole.rec.messages);
}

TEST(session, sequence_errors) {
  harness h;
  h.feed("MAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n");
  auto r = h.replies();
  ASSERT_EQ(r.size(), 3u);
  for (auto& l : r) EXPECT_EQ(code(l), "503 5.5.1");
  harness h2;
  h2.feed("EHLO c\r\nRCPT TO:<b@d.example>\r\nDATA\r\nMAIL FROM:<a@c.example>\r\nDATA\r\n"
          "MAIL FROM:<a@c.example>\r\n");
  r = h2.replies();
  ASSERT_EQ(r.size(), 6u + 5u);
  EXPECT_EQ(r[6], "503 5.5.1 Error: need MAIL command");
  EXPECT_EQ(r[7], "503 5.5.1 Error: need RCPT command");
  EXPECT_EQ(r[8], "250 2.1.0 Ok");
  EXPECT_EQ(r[9], "503 5.5.1 Error: need RCPT command");
  EXPECT_EQ(r[10], "503 5.5.1 Error: nested MAIL command");
}

TEST(session, syntax_errors_and_unknown_commands) {
  harness h;
  h.feed("EHLO\r\nEHLO c\r\nMAIL TO:<a@b.example>\r\nMAIL FROM:<bad>\r\nMAIL FROM:<a@b.example> FOO=1\r\n"
         "MAIL FROM:<a@b.example>\r\nRCPT TO:<bad>\r\nRCPT TO:<b@b.example> NOTIFY=NEVER\r\nRCPT FROM:<x@y.z>\r\n"
         "XYZZY\r\n\r\nVRFY root\r\nEXPN list\r\nHELP\r\nNOOP\r\nRSET x\r\nDATA x\r\n");
  auto r = h.rec.reply_lines();
  std::vector<std::string> codes;
  for (auto& l : r) codes.push_back(code(l));
  std::vector<std::string> want = {"220 relay", "501 5.5.4", "250-relay", "250-PIPEL", "250-SIZE ", "250-8BITM",
                                   "250-START", "250 ENHAN", "501 5.5.4", "501 5.1.7", "555 5.5.4", "250 2.1.0",
                                   "501 5.1.3", "555 5.5.4", "501 5.5.4", "500 5.5.2", "500 5.5.2", "502 5.5.1",
                                   "502 5.5.1", "214 2.0.0", "250 2.0.0", "501 5.5.4", "501 5.5.4"};
  EXPECT_EQ(codes, want);
  EXPECT_EQ(r[10], "555 5.5.4 Unsupported option: FOO=1");
}

TEST(session, case_insensitive_verbs) {
  harness h;
  h.feed("ehlo c\r\nmail from:<a@c.example>\r\nRcPt To:<b@d.example>\r\ndata\r\n.\r\nquit\r\n");
  auto r = h.replies();
  EXPECT_EQ(r[6], "250 2.1.0 Ok");
  EXPECT_EQ(r[7], "250 2.1.5 Ok");
  EXPECT_EQ(code(r[8]), "354 End d");
  EXPECT_EQ(r[9], "250 2.0.0 Ok: queued as Q1");
  EXPECT_EQ(r[10], "221 2.0.0 Bye");
}

TEST(session, relay_denied) {
  auto p = relay_params();
  p.relay_allowed = false;
  harness h(p);
  h.feed("EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n");
  auto r = h.replies();
  EXPECT_EQ(r[7], "554 5.7.1 <b@d.example>: Relay access denied");
  EXPECT_EQ(r[8], "554 5.5.1 Error: no valid recipients");
}

TEST(session, recipient_domain_over_253_octets) {
  std::string d253;
  while (d253.size() < 253 - 12) d253 += std::string(40, 'x') + ".";
  d253 += std::string(253 - d253.size(), 'y');
  harness h;
  h.feed("EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@z" + d253 + ">\r\nRCPT TO:<b@" +
         d253 + ">\r\nDATA\r\n.\r\n");
  auto r = h.replies();
  ASSERT_GE(r.size(), 11u);
  EXPECT_EQ(code(r[7]), "501 5.1.3") << r[7];
  EXPECT_EQ(code(r[8]), "250 2.1.5") << r[8];
  ASSERT_EQ(h.rec.last_env.rcpt_to.size(), 1u);
  EXPECT_EQ(h.rec.last_env.rcpt_to[0], "b@" + d253);
}

TEST(session, too_many_recipients) {
  auto p = relay_params();
  p.max_recipients = 2;
  harness h(p);
  h.feed("EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<1@d.example>\r\nRCPT TO:<2@d.example>\r\n"
         "RCPT TO:<3@d.example>\r\nDATA\r\n.\r\n");
  auto r = h.replies();
  EXPECT_EQ(r[9], "452 4.5.3 Too many recipients");
  EXPECT_EQ(h.rec.last_env.rcpt_to.size(), 2u);
}

TEST(session, declared_size_over_limit) {
  harness h;
  h.feed("EHLO c\r\nMAIL FROM:<a@c.example> SIZE=10001\r\nMAIL FROM:<a@c.example> SIZE=10000\r\n");
  auto r = h.replies();
  EXPECT_EQ(r[6], "552 5.3.4 Message size exceeds fixed limit");
  EXPECT_EQ(r[7], "250 2.1.0 Ok");
}

TEST(session, body_over_size_limit_rejected_at_final_dot) {
  auto p = relay_params();
  p.max_message_size = 10;
  harness h(p);
  std::string prefix = "EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n";
  h.feed(prefix + "12345678\r\n.\r\n");  // exactly 10
  EXPECT_EQ(h.replies().back(), "250 2.0.0 Ok: queued as Q1");
  h.feed("MAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n123456789\r\n.\r\nNOOP\r\n");
  auto r = h.replies();
  EXPECT_EQ(r[r.size() - 2], "552 5.3.4 Message size exceeds fixed limit");
  EXPECT_EQ(r.back(), "250 2.0.0 Ok");
  EXPECT_EQ(h.rec.messages.size(), 1u);
  EXPECT_EQ(h.rec.log[h.rec.log.size() - 3], "ABORT");
}

TEST(session, require_tls) {
  auto p = relay_params();
  p.require_tls = true;
  harness h(p);
  h.feed("EHLO c\r\nMAIL FROM:<a@c.example>\r\n");
  EXPECT_EQ(h.replies().back(), "530 5.7.0 Must issue a STARTTLS command first");
  h.feed("STARTTLS\r\n");
  EXPECT_EQ(h.replies().back(), "220 2.0.0 Ready to start TLS");
  h.s.tls_established();
  h.feed("EHLO c\r\nMAIL FROM:<a@c.example>\r\n");
  EXPECT_EQ(h.replies().back(), "250 2.1.0 Ok");
}

TEST(session, starttls_errors) {
  auto p = relay_params();
  p.starttls_available = false;
  harness h(p);
  h.feed("EHLO c\r\nSTARTTLS\r\n");
  EXPECT_EQ(code(h.replies().back()), "502 5.5.1");
  harness h2;
  h2.feed("EHLO c\r\nSTARTTLS now\r\n");
  EXPECT_EQ(code(h2.replies().back()), "501 5.5.4");
  h2.feed("STARTTLS\r\n");
  h2.s.tls_established();
  h2.feed("EHLO c\r\nSTARTTLS\r\n");
  EXPECT_EQ(code(h2.replies().back()), "503 5.5.1");
}

// CVE-2011-0411: commands pipelined after STARTTLS in the plaintext buffer are discarded.
TEST(session, starttls_discards_injected_commands) {
  harness h;
  std::string in = "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@c.example>\r\nRCPT TO:<x@d.example>\r\n";
  auto* p = reinterpret_cast<std::byte*>(in.data());
  EXPECT_EQ(h.s.feed(std::span<std::byte>(p, in.size())), in.size());
  EXPECT_EQ(h.replies().back(), "220 2.0.0 Ready to start TLS");
  EXPECT_EQ(h.rec.log.back(), "TLS");
  EXPECT_EQ(h.s.current_state(), session::state::tls_pending);
  h.s.tls_established();
  EXPECT_TRUE(h.s.tls());
  // Whatever came before the handshake is forgotten: MAIL needs a fresh EHLO.
  h.feed("MAIL FROM:<a@c.example>\r\n");
  EXPECT_EQ(h.replies().back(), "503 5.5.1 Error: send HELO/EHLO first");
  h.feed("EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n.\r\n");
  EXPECT_EQ(h.replies().back(), "250 2.0.0 Ok: queued as Q1");
  EXPECT_TRUE(h.rec.last_env.tls);
  EXPECT_EQ(h.rec.replies.find("evil"), std::string::npos);
}

TEST(session, starttls_discards_partial_line_too) {
  harness h;
  h.feed("EHLO c\r\nSTARTTLS\r\nMAIL FROM:<ev");
  h.s.tls_established();
  h.feed("EHLO c\r\n");
  EXPECT_EQ(h.replies().back(), "250 ENHANCEDSTATUSCODES");
  EXPECT_EQ(h.rec.replies.find("250-STARTTLS", h.rec.replies.find("220 2.0.0")), std::string::npos);
}

// Each smuggling pattern yields exactly ONE message attempt, rejected; nothing after the fake
// end-of-data runs as a command.
TEST(session, smuggling_patterns_yield_one_rejected_message) {
  for (const char* trick : {"\n.\r\n", "\r\n.\n", "\r.\r\n", "\n.\n", "\r.\r", "\n..\r\n"}) {
    harness h;
    std::string in = std::string("EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n") +
                     "Subject: x\r\n\r\nbody" + trick +
                     "MAIL FROM:<evil@c.example>\r\nRCPT TO:<victim@d.example>\r\nDATA\r\nsmuggled\r\n" +
                     ".\r\nQUIT\r\n";
    h.feed(in);
    SCOPED_TRACE(testing::PrintToString(std::string(trick)));
    int begins = 0, ends = 0, aborts = 0;
    for (auto& e : h.rec.log) {
      begins += e.rfind("BEGIN", 0) == 0;
      ends += e.rfind("END", 0) == 0;
      aborts += e == "ABORT";
    }
    EXPECT_EQ(begins, 1);
    EXPECT_EQ(ends, 0);
    EXPECT_EQ(aborts, 1);
    auto r = h.replies();
    ASSERT_EQ(r.size(), 6u + 5u);
    EXPECT_EQ(code(r[9]), "550 5.6.0");
    EXPECT_EQ(r[10], "221 2.0.0 Bye");
  }
}

TEST(session, dot_unstuffing_and_empty_message) {
  harness h;
  h.feed("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n.\r\n");
  ASSERT_EQ(h.rec.messages.size(), 1u);
  EXPECT_EQ(h.rec.messages[0], "");
  h.feed("MAIL FROM:<>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n...\r\n..\r\n.x\r\n.\r\n");
  ASSERT_EQ(h.rec.messages.size(), 2u);
  EXPECT_EQ(h.rec.messages[1], "..\r\n.\r\nx\r\n");
}

TEST(session, command_line_limit_512) {
  harness h;
  h.feed("EHLO c\r\n");
  // "NOOP " + filler: exactly 510 octets + CRLF = 512 is accepted, 513 is not.
  std::string at = "NOOP " + std::string(505, 'x');
  ASSERT_EQ(at.size() + 2, 512u);
  h.feed(at + "\r\n");
  EXPECT_EQ(h.replies().back(), "250 2.0.0 Ok");
  h.feed(at + "x\r\n");
  EXPECT_EQ(h.replies().back(), "500 5.5.2 Error: line too long");
  // The rest of an over-long line is discarded, not executed, even when split.
  std::string longline = "NOOP " + std::string(600, 'y') + " QUIT\r\nNOOP\r\n";
  h.feed(longline, {100, 511, 512, 513, 600});
  auto r = h.replies();
  EXPECT_EQ(r[r.size() - 2], "500 5.5.2 Error: line too long");
  EXPECT_EQ(r.back(), "250 2.0.0 Ok");
  EXPECT_FALSE(h.s.closed());
}

TEST(session, body_line_limit_1000) {
  harness h;
  std::string prefix = "MAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n";
  h.feed("EHLO c\r\n" + prefix + std::string(998, 'a') + "\r\n.\r\n");
  EXPECT_EQ(h.replies().back(), "250 2.0.0 Ok: queued as Q1");
  h.feed(prefix + std::string(999, 'a') + "\r\n.\r\n");
  EXPECT_EQ(code(h.replies().back()), "500 5.5.2");
  EXPECT_EQ(h.rec.messages.size(), 1u);
}

TEST(session, too_many_errors) {
  auto p = relay_params();
  p.max_errors = 3;
  harness h(p);
  h.feed("FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n");
  auto r = h.replies();
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[3], "421 4.7.0 relay.test Error: too many errors");
  EXPECT_TRUE(h.s.closed());
  EXPECT_EQ(h.rec.log.back(), "CLOSE");
}

TEST(session, timeout_and_input_after_close) {
  harness h;
  h.feed("EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\npartial");
  EXPECT_TRUE(h.s.in_data());
  h.s.timeout();
  EXPECT_EQ(h.replies().back(), "421 4.4.2 relay.test Error: timeout exceeded");
  EXPECT_EQ(h.rec.log[h.rec.log.size() - 2], "ABORT");
  EXPECT_EQ(h.rec.log.back(), "CLOSE");
  size_t n = h.rec.log.size();
  h.feed("NOOP\r\nQUIT\r\n");
  EXPECT_EQ(h.rec.log.size(), n);
}

TEST(session, input_overflow_replies_421_4_7_0_and_closes) {
  harness h;
  h.feed("EHLO c\r\n");
  h.s.input_overflow();
  EXPECT_EQ(h.replies().back(), "421 4.7.0 relay.test Error: too much pipelined input");
  EXPECT_TRUE(h.s.closed());
  EXPECT_EQ(h.rec.log.back(), "CLOSE");
}

TEST(session, quit_ignores_rest) {
  harness h;
  h.feed("QUIT\r\nNOOP\r\n");
  EXPECT_EQ(h.replies(), std::vector<std::string>{"221 2.0.0 Bye"});
  EXPECT_TRUE(h.s.closed());
}

TEST(session, shutdown_idle_and_after_transaction) {
  harness h;
  h.feed("EHLO c\r\n");
  EXPECT_TRUE(h.s.shutdown());
  EXPECT_EQ(h.replies().back(), "421 4.3.2 relay.test Error: service shutting down");
  EXPECT_TRUE(h.s.closed());

  harness t;
  t.feed("EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\nx\r\n");
  EXPECT_FALSE(t.s.shutdown());
  EXPECT_FALSE(t.s.closed());
  t.feed(".\r\nNOOP\r\n");
  auto r = t.replies();
  EXPECT_EQ(r[r.size() - 2], "250 2.0.0 Ok: queued as Q1");
  EXPECT_EQ(r.back(), "421 4.3.2 relay.test Error: service shutting down");
  EXPECT_TRUE(t.s.closed());
}

TEST(session, ehlo_resets_transaction) {
  harness h;
  h.feed("EHLO c\r\nMAIL FROM:<a@c.example>\r\nEHLO c\r\nRCPT TO:<b@d.example>\r\n");
  EXPECT_EQ(h.replies().back(), "503 5.5.1 Error: need MAIL command");
}

TEST(session, rset_resets_transaction) {
  harness h;
  h.feed("EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nRSET\r\nDATA\r\n");
  auto r = h.replies();
  EXPECT_EQ(r[r.size() - 2], "250 2.0.0 Ok");
  EXPECT_EQ(r.back(), "503 5.5.1 Error: need RCPT command");
}

TEST(session, bare_lf_terminated_commands_accepted) {
  harness h;
  h.feed("EHLO c\nNOOP\n");
  EXPECT_EQ(h.replies().back(), "250 2.0.0 Ok");
}

TEST(session, every_reply_is_crlf_terminated_with_three_digits) {
  harness h;
  h.feed("EHLO c\r\nFOO\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\nx\n\r\n.\r\nQUIT\r\n");
  for (auto& l : h.rec.reply_lines()) {
    ASSERT_GE(l.size(), 3u);
    EXPECT_TRUE(isdigit(l[0]) && isdigit(l[1]) && isdigit(l[2])) << l;
  }
  EXPECT_EQ(h.rec.replies.substr(h.rec.replies.size() - 2), "\r\n");
}

}  // namespace

namespace {

// An engine that completes the handshake from inside start_tls() must still not see the
// commands that followed STARTTLS in the plaintext buffer executed.
struct eager_tls : recorder {
  void start_tls() override {
    recorder::start_tls();
    s->tls_established();
  }
};

TEST(session, starttls_discard_survives_reentrant_tls_established) {
  eager_tls rec;
  session s(relay_params(), rec);
  rec.s = &s;
  s.greet();
  std::string in = "EHLO c\r\nSTARTTLS\r\nEHLO evil\r\nMAIL FROM:<evil@c.example>\r\n";
  auto* p = reinterpret_cast<std::byte*>(in.data());
  EXPECT_EQ(s.feed(std::span<std::byte>(p, in.size())), in.size());
  EXPECT_EQ(rec.last_reply(), "220 2.0.0 Ready to start TLS");
  EXPECT_EQ(s.current_state(), session::state::pre_helo);
  EXPECT_TRUE(s.tls());
}

}  // namespace

namespace {

// Found by the fuzzer: an unsupported parameter echoed in 555 must not inject a reply line.
TEST(session, echoed_parameter_is_sanitised) {
  harness h;
  h.feed("EHLO c\r\nMAIL FROM:<a@c.example> BODY=8BITMIME\rP\r\n");
  auto r = h.replies();
  EXPECT_EQ(r.back(), "501 5.5.4 Bad parameter syntax: BODY=8BITMIME?P");
  h.feed("MAIL FROM:<a@c.example> X-FOO=\x01\xff\r\n");
  EXPECT_EQ(h.replies().back(), "501 5.5.4 Bad parameter syntax: X-FOO=??");
}

}  // namespace

// RFC 8689 §2: REQUIRETLS is offered only under TLS, accepted only under TLS, and travels
// in the envelope; without the keyword the envelope says false.
TEST(session, requiretls_only_under_tls) {
  harness h;
  h.feed("EHLO c\r\n");
  EXPECT_EQ(h.rec.replies.find("REQUIRETLS"), std::string::npos);
  h.feed("MAIL FROM:<a@c.example> REQUIRETLS\r\n");
  EXPECT_EQ(h.replies().back(), "530 5.7.10 REQUIRETLS needs a TLS session");
  EXPECT_EQ(h.s.current_state(), session::state::ready);
  h.feed("STARTTLS\r\n");
  h.s.tls_established();
  h.feed("EHLO c\r\n");
  EXPECT_NE(h.rec.replies.find("250-REQUIRETLS\r\n"), std::string::npos);
  h.feed("MAIL FROM:<a@c.example> SIZE=10 REQUIRETLS\r\nRCPT TO:<b@d.example>\r\nDATA\r\nx\r\n.\r\n");
  EXPECT_EQ(code(h.replies().back()), "250 2.0.0");
  EXPECT_TRUE(h.rec.last_env.requiretls);
  EXPECT_TRUE(h.rec.last_env.tls);
  h.feed("MAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\ny\r\n.\r\n");
  EXPECT_EQ(code(h.replies().back()), "250 2.0.0");
  EXPECT_FALSE(h.rec.last_env.requiretls);
  h.feed("MAIL FROM:<a@c.example> REQUIRETLS REQUIRETLS\r\n");
  EXPECT_EQ(code(h.replies().back()), "501 5.5.4");
  h.feed("MAIL FROM:<a@c.example> REQUIRETLS=yes\r\n");
  EXPECT_EQ(code(h.replies().back()), "501 5.5.4");
}

TEST(session, requiretls_can_be_switched_off) {
  auto p = relay_params();
  p.tls_active = true;
  p.requiretls = false;
  harness h(p);
  h.feed("EHLO c\r\nMAIL FROM:<a@c.example> REQUIRETLS\r\n");
  EXPECT_EQ(h.rec.replies.find("250-REQUIRETLS"), std::string::npos);
  EXPECT_EQ(h.replies().back(), "530 5.7.10 REQUIRETLS needs a TLS session");
}
