// Outbound session: scripted servers for every path of the contract. Each test asserts on
// the exact bytes the session asked to send (and how many send() calls carried them), the
// per-recipient outcomes, and the close reason; byte-split independence; zero-copy
// dot-stuffing that never writes the stored message.
#include "sealrelay/outbound/session.hh"

#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sealrelay/inbound/session.hh"
#include "sealrelay/outbound/body.hh"

namespace {

using namespace sr::outbound;
using sr::outbound::phase;

struct rcpt_copy {
  rcpt_status status;
  stage where;
  unsigned code;
  std::string enhanced, text;
  bool operator==(const rcpt_copy&) const = default;
};
struct txn_copy {
  std::vector<rcpt_copy> rcpts;
  stage where;
  unsigned code;
  std::string enhanced, text;
  bool body_sent;
  unsigned delivered, deferred, bounced;
  bool operator==(const txn_copy&) const = default;
};
struct close_copy {
  close_kind kind;
  std::string reason;
  unsigned code;
  std::string enhanced, text;
  bool operator==(const close_copy&) const = default;
};

std::string flatten(std::span<const iovec> iov) {
  std::string s;
  for (const iovec& v : iov) s.append(static_cast<const char*>(v.iov_base), v.iov_len);
  return s;
}

// Records everything the session tells the engine.
struct recorder : events {
  std::vector<std::string> sends;         // one entry per send() call
  std::string wire;                       // every byte asked to be written, in order
  std::vector<std::vector<iovec>> bodies; // iovecs as handed over
  std::vector<std::string> log;           // event order
  std::vector<txn_copy> txns;
  std::optional<close_copy> closed_info;
  int start_tls_calls = 0;
  int idle_calls = 0;
  std::function<void()> on_idle;
  std::function<void()> on_start_tls;

  void send(std::string_view b) override {
    sends.emplace_back(b);
    wire.append(b);
    log.push_back("send");
  }
  void send_body(std::span<const iovec> iov) override {
    bodies.emplace_back(iov.begin(), iov.end());
    wire.append(flatten(iov));
    log.push_back("body");
  }
  void start_tls() override {
    ++start_tls_calls;
    log.push_back("start_tls");
    if (on_start_tls) on_start_tls();
  }
  void transaction_done(const txn_result& r) override {
    txn_copy t{{}, r.where, r.code, std::string(r.enhanced), std::string(r.text), r.body_sent,
               r.delivered, r.deferred, r.bounced};
    for (const rcpt_result& x : r.rcpts)
      t.rcpts.push_back({x.status, x.where, x.code, std::string(x.enhanced), std::string(x.text)});
    txns.push_back(std::move(t));
    log.push_back("done");
  }
  void idle() override {
    ++idle_calls;
    log.push_back("idle");
    if (on_idle) on_idle();
  }
  void closed(const close_info& c) override {
    EXPECT_FALSE(closed_info.has_value()) << "closed() raised twice";
    closed_info = close_copy{c.kind, std::string(sr::report::to_string(c.reason)), c.code, std::string(c.enhanced),
                             std::string(c.text)};
    log.push_back("closed");
  }
};

// A decider whose answers a test sets, recording what it was asked.
struct scripted_decider : tls_decider {
  decision<ehlo_action> ehlo{ehlo_action::starttls};
  bool plain_when_not_offered = true;  // starttls only when offered (unless ehlo says abort)
  decision<refused_action> refused{refused_action::proceed_plain};
  decision<tls_action> tls{tls_action::proceed};
  std::vector<bool> ehlo_calls;
  std::vector<unsigned> refused_codes;
  std::vector<std::string> tls_seen;  // "version cipher bits"

  decision<ehlo_action> on_ehlo(bool offered) override {
    ehlo_calls.push_back(offered);
    if (ehlo.action == ehlo_action::starttls && !offered && plain_when_not_offered)
      return {ehlo_action::proceed_plain};
    return ehlo;
  }
  decision<refused_action> on_starttls_refused(const sr::smtp::reply& r) override {
    refused_codes.push_back(r.code());
    return refused;
  }
  decision<tls_action> on_tls(const tls_outcome& o) override {
    tls_seen.push_back(std::string(o.version) + " " + std::string(o.cipher) + " " +
                       std::to_string(o.cipher_bits));
    return tls;
  }
};

// A message whose storage the test owns; `pieces` splits the body at those offsets.
struct msg_store {
  std::string from;
  std::vector<std::string> rcpt_s;
  std::vector<std::string_view> rcpts;
  std::string body;
  std::vector<iovec> iov;
  message m;

  msg_store(std::string f, std::vector<std::string> r, std::string b,
            std::vector<size_t> cuts = {}, bool eight_bit = false)
      : from(std::move(f)), rcpt_s(std::move(r)), body(std::move(b)) {
    for (const std::string& s : rcpt_s) rcpts.push_back(s);
    size_t prev = 0;
    cuts.push_back(body.size());
    for (size_t c : cuts) {
      iov.push_back(iovec{body.data() + prev, c - prev});
      prev = c;
    }
    m.mail_from = from;
    m.rcpts = rcpts;
    m.body = iov;
    m.eight_bit = eight_bit;
  }
};

const char* k_ehlo_plain = "250-mx.example\r\n250-SIZE 10000000\r\n250 8BITMIME\r\n";
const char* k_ehlo_pipe =
    "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n250 ENHANCEDSTATUSCODES\r\n";
const char* k_ehlo_tls =
    "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n250-STARTTLS\r\n250 8BITMIME\r\n";

struct harness {
  recorder ev;
  scripted_decider dec;
  session s{session_params{"relay.example"}, ev, dec};

  // Greet and EHLO with `ehlo_reply`; leaves the session idle (when the decider lets it).
  void open(std::string_view ehlo_reply) {
    s.feed("220 mx.example ESMTP\r\n");
    EXPECT_EQ(ev.sends.back(), "EHLO relay.example\r\n");
    s.feed(ehlo_reply);
  }
};

// ---- plain delivery ----------------------------------------------------------------------

TEST(OutboundSession, PlainDeliveryWithoutPipeliningOneCommandPerReply) {
  harness h;
  h.dec.ehlo = {ehlo_action::proceed_plain};
  h.open(k_ehlo_plain);
  ASSERT_EQ(h.s.phase(), phase::idle);
  EXPECT_EQ(h.ev.idle_calls, 1);
  EXPECT_TRUE(h.s.caps().size);
  EXPECT_FALSE(h.s.caps().pipelining);

  msg_store m("a@src.example", {"b@dst.example", "c@dst.example"}, "Subject: x\r\n\r\nhi\r\n");
  ASSERT_TRUE(h.s.send_message(m.m));
  EXPECT_EQ(h.s.phase(), phase::mail);
  EXPECT_EQ(h.ev.sends.back(), "MAIL FROM:<a@src.example> SIZE=18\r\n");
  h.s.feed("250 2.1.0 Ok\r\n");
  EXPECT_EQ(h.ev.sends.back(), "RCPT TO:<b@dst.example>\r\n");
  EXPECT_EQ(h.s.phase(), phase::rcpt);
  h.s.feed("250 2.1.5 Ok\r\n");
  EXPECT_EQ(h.ev.sends.back(), "RCPT TO:<c@dst.example>\r\n");
  h.s.feed("250 2.1.5 Ok\r\n");
  EXPECT_EQ(h.ev.sends.back(), "DATA\r\n");
  EXPECT_EQ(h.s.phase(), phase::data);
  h.s.feed("354 End data with <CR><LF>.<CR><LF>\r\n");
  EXPECT_EQ(h.s.phase(), phase::dot);
  ASSERT_EQ(h.ev.bodies.size(), 1u);
  EXPECT_EQ(flatten(h.ev.bodies[0]), "Subject: x\r\n\r\nhi\r\n.\r\n");
  h.s.feed("250 2.0.0 Ok: queued as ABC\r\n");

  ASSERT_EQ(h.ev.txns.size(), 1u);
  const txn_copy& t = h.ev.txns[0];
  EXPECT_EQ(t.delivered, 2u);
  EXPECT_TRUE(t.body_sent);
  EXPECT_EQ(t.where, stage::dot);
  EXPECT_EQ(t.code, 250u);
  EXPECT_EQ(t.text, "2.0.0 Ok: queued as ABC");
  EXPECT_EQ(t.enhanced, "2.0.0");
  for (const rcpt_copy& r : t.rcpts) {
    EXPECT_EQ(r.status, rcpt_status::delivered);
    EXPECT_EQ(r.where, stage::dot);
    EXPECT_EQ(r.text, "2.0.0 Ok: queued as ABC");
  }
  EXPECT_EQ(h.s.phase(), phase::idle);
  EXPECT_FALSE(h.s.rset_pending());
  EXPECT_EQ(h.s.transactions(), 1u);

  std::vector<std::string> expect = {"EHLO relay.example\r\n",
                                     "MAIL FROM:<a@src.example> SIZE=18\r\n",
                                     "RCPT TO:<b@dst.example>\r\n", "RCPT TO:<c@dst.example>\r\n",
                                     "DATA\r\n"};
  EXPECT_EQ(h.ev.sends, expect);
}

TEST(OutboundSession, PipelinedGroupIsOneSendAndRepliesAreProcessedInOrder) {
  harness h;
  h.open(k_ehlo_pipe);
  ASSERT_EQ(h.s.phase(), phase::idle);
  size_t before = h.ev.sends.size();
  msg_store m("a@src.example", {"b@dst.example", "c@dst.example", "d@dst.example"}, "x\r\n");
  ASSERT_TRUE(h.s.send_message(m.m));
  ASSERT_EQ(h.ev.sends.size(), before + 1) << "the pipelined group must be ONE send()";
  EXPECT_EQ(h.ev.sends.back(),
            "MAIL FROM:<a@src.example> SIZE=3\r\nRCPT TO:<b@dst.example>\r\n"
            "RCPT TO:<c@dst.example>\r\nRCPT TO:<d@dst.example>\r\nDATA\r\n");
  EXPECT_EQ(h.s.phase(), phase::mail);
  // Replies arrive in pieces; nothing more is sent until 354.
  h.s.feed("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
  EXPECT_EQ(h.s.phase(), phase::rcpt);
  h.s.feed("250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n");
  EXPECT_EQ(h.s.phase(), phase::data);
  EXPECT_EQ(h.ev.sends.size(), before + 1);
  EXPECT_TRUE(h.ev.bodies.empty());
  h.s.feed("354 go\r\n");
  ASSERT_EQ(h.ev.bodies.size(), 1u);
  EXPECT_EQ(flatten(h.ev.bodies[0]), "x\r\n.\r\n");
  h.s.feed("250 2.0.0 queued\r\n");
  ASSERT_EQ(h.ev.txns.size(), 1u);
  EXPECT_EQ(h.ev.txns[0].delivered, 3u);
  EXPECT_EQ(h.ev.sends.size(), before + 1);
}

TEST(OutboundSession, AllPipelinedRepliesInOneFeed) {
  harness h;
  h.open(k_ehlo_pipe);
  msg_store m("", {"b@dst.example"}, "x\r\n");
  ASSERT_TRUE(h.s.send_message(m.m));
  EXPECT_EQ(h.ev.sends.back(), "MAIL FROM:<> SIZE=3\r\nRCPT TO:<b@dst.example>\r\nDATA\r\n");
  h.s.feed("250 ok\r\n250 ok\r\n354 go\r\n");
  ASSERT_EQ(h.ev.bodies.size(), 1u);
  h.s.feed("250 ok\r\n");
  ASSERT_EQ(h.ev.txns.size(), 1u);
  EXPECT_EQ(h.ev.txns[0].rcpts[0].status, rcpt_status::delivered);
  // Without ENHANCEDSTATUSCODES-looking text the enhanced code is empty.
  EXPECT_EQ(h.ev.txns[0].enhanced, "");
}

// ---- STARTTLS and the decider ------------------------------------------------------------

TEST(OutboundSession, StartTlsOfferedThenEhloAgainAndPreTlsCapabilitiesForgotten) {
  harness h;
  h.open(k_ehlo_tls);
  ASSERT_EQ(h.dec.ehlo_calls, std::vector<bool>{true});
  EXPECT_EQ(h.ev.sends.back(), "STARTTLS\r\n");
  EXPECT_EQ(h.s.phase(), phase::starttls);
  EXPECT_EQ(h.ev.idle_calls, 0);
  h.s.feed("220 2.0.0 Ready to start TLS\r\n");
  EXPECT_EQ(h.ev.start_tls_calls, 1);
  EXPECT_EQ(h.s.phase(), phase::tls_handshake);
  EXPECT_FALSE(h.s.tls_active());
  size_t sends = h.ev.sends.size();

  tls_outcome o{"TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, cert_verdict::invalid, sr::report::reason::cert_untrusted};
  h.s.tls_done(o);
  ASSERT_EQ(h.dec.tls_seen.size(), 1u);
  EXPECT_EQ(h.dec.tls_seen[0], "TLSv1.3 TLS_AES_256_GCM_SHA384 256");
  EXPECT_TRUE(h.s.tls_active());
  ASSERT_EQ(h.ev.sends.size(), sends + 1);
  EXPECT_EQ(h.ev.sends.back(), "EHLO relay.example\r\n");
  EXPECT_EQ(h.s.phase(), phase::ehlo);
  EXPECT_FALSE(h.s.caps().pipelining) << "pre-TLS capabilities must be forgotten";

  // The post-TLS EHLO has no PIPELINING: the session must not pipeline.
  h.s.feed("250-mx.example\r\n250 SIZE 5000\r\n");
  EXPECT_EQ(h.dec.ehlo_calls.size(), 1u) << "no decision point after TLS is up";
  ASSERT_EQ(h.s.phase(), phase::idle);
  EXPECT_FALSE(h.s.caps().pipelining);
  EXPECT_FALSE(h.s.caps().starttls);
  EXPECT_EQ(h.s.caps().size_limit, 5000u);
  msg_store m("a@x.example", {"b@y.example", "c@y.example"}, "hi\r\n");
  ASSERT_TRUE(h.s.send_message(m.m));
  EXPECT_EQ(h.ev.sends.back(), "MAIL FROM:<a@x.example> SIZE=4\r\n");
  h.s.feed("250 ok\r\n");
  EXPECT_EQ(h.ev.sends.back(), "RCPT TO:<b@y.example>\r\n");
}

TEST(OutboundSession, PlaintextAfterStartTls220IsDroppedNotReadAsReplies) {
  harness h;
  h.open(k_ehlo_tls);
  // A response-injection attempt: a fake post-TLS EHLO reply in the same segment as the 220.
  h.s.feed("220 Ready\r\n250-evil\r\n250 PIPELINING\r\n");
  EXPECT_EQ(h.s.phase(), phase::tls_handshake);
  h.s.feed("250 more plaintext while the handshake runs\r\n");  // ignored too
  h.s.tls_done(tls_outcome{"TLSv1.2", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 256});
  EXPECT_EQ(h.s.phase(), phase::ehlo) << "the injected 250 must not answer our EHLO";
  EXPECT_EQ(h.ev.idle_calls, 0);
  h.s.feed("250 mx.example\r\n");
  EXPECT_EQ(h.s.phase(), phase::idle);
  EXPECT_FALSE(h.s.caps().pipelining);
}

TEST(OutboundSession, HandshakeCompletedInsideStartTlsCallback) {
  harness h;
  h.ev.on_start_tls = [&] { h.s.tls_done(tls_outcome{"TLSv1.3", "TLS_AES_128_GCM_SHA256", 128}); };
  h.open(k_ehlo_tls);
  h.s.feed("220 Ready\r\n250 injected\r\n");
  EXPECT_EQ(h.s.phase(), phase::ehlo);
  EXPECT_EQ(h.ev.sends.back(), "EHLO relay.example\r\n");
  EXPECT_EQ(h.ev.idle_calls, 0);
}

TEST(OutboundSession, StartTlsNotOfferedUnderAbortingDeciderQuitsWithoutMail) {
  harness h;
  h.dec.ehlo = {ehlo_action::abort, sr::report::reason::starttls_not_offered};
  bool tried = false;
  msg_store m("a@x.example", {"b@y.example"}, "secret\r\n");
  h.ev.on_idle = [&] { tried = h.s.send_message(m.m); };
  h.open(k_ehlo_pipe);
  EXPECT_EQ(h.dec.ehlo_calls, std::vector<bool>{false});
  EXPECT_EQ(h.ev.idle_calls, 0) << "an aborted connection never becomes idle";
  EXPECT_FALSE(tried);
  EXPECT_FALSE(h.s.send_message(m.m));
  EXPECT_EQ(h.ev.sends.back(), "QUIT\r\n");
  EXPECT_EQ(h.s.phase(), phase::quit);
  EXPECT_FALSE(h.ev.closed_info.has_value()) << "closed() waits for the 221";
  h.s.feed("221 2.0.0 Bye\r\n");
  ASSERT_TRUE(h.ev.closed_info.has_value());
  EXPECT_EQ(h.ev.closed_info->kind, close_kind::tls_policy);
  EXPECT_EQ(h.ev.closed_info->reason, "starttls-not-offered");
  EXPECT_EQ(h.s.phase(), phase::closed);
  EXPECT_EQ(h.ev.wire.find("MAIL"), std::string::npos);
  EXPECT_EQ(h.ev.wire.find("secret"), std::string::npos);
  EXPECT_TRUE(h.ev.bodies.empty());
  EXPECT_TRUE(h.ev.txns.empty());
}

TEST(OutboundSession, AbortWithoutReasonGetsThePointsDefaultToken) {
  harness h;
  h.dec.ehlo = {ehlo_action::abort};
  h.open(k_ehlo_plain);
  h.s.connection_lost();  // the server hung up instead of answering QUIT
  ASSERT_TRUE(h.ev.closed_info.has_value());
  EXPECT_EQ(h.ev.closed_info->kind, close_kind::tls_policy) << "the QUIT reason is kept";
  EXPECT_EQ(h.ev.closed_info->reason, "starttls-not-offered");
}

TEST(OutboundSession, StartTls454ProceedsPlainUnderOpportunistic) {
  recorder ev;
  opportunistic_decider dec;
  session s(session_params{"relay.example"}, ev, dec);
  s.feed("220 mx\r\n");
  s.feed(k_ehlo_tls);
  EXPECT_EQ(ev.sends.back(), "STARTTLS\r\n");
  s.feed("454 4.7.0 TLS not available due to local problem\r\n");
  ASSERT_EQ(s.phase(), phase::idle);
  EXPECT_FALSE(s.tls_active());
  EXPECT_EQ(ev.start_tls_calls, 0);
  EXPECT_TRUE(s.caps().pipelining) << "the EHLO state stands after a refused STARTTLS";
  msg_store m("a@x.example", {"b@y.example"}, "x\r\n");
  ASSERT_TRUE(s.send_message(m.m));
  EXPECT_EQ(ev.sends.back().rfind("MAIL FROM:<a@x.example>", 0), 0u);
}

TEST(OutboundSession, StartTls454UnderStrictDeciderQuitsWithTheReply) {
  harness h;
  h.dec.refused = {refused_action::abort, sr::report::reason::starttls_refused};
  h.open(k_ehlo_tls);
  h.s.feed("454 4.7.0 TLS not available\r\n");
  EXPECT_EQ(h.dec.refused_codes, std::vector<unsigned>{454});
  EXPECT_EQ(h.ev.sends.back(), "QUIT\r\n");
  h.s.feed("221 bye\r\n");
  ASSERT_TRUE(h.ev.closed_info.has_value());
  EXPECT_EQ(*h.ev.closed_info, (close_copy{close_kind::tls_policy, "starttls-refused", 454, "4.7.0",
                                           "4.7.0 TLS not available"}));
  EXPECT_EQ(h.ev.wire.find("MAIL"), std::string::npos);
}

TEST(OutboundSession, TlsOutcomeRejectedQuitsOverTlsWithoutMail) {
  harness h;
  h.dec.tls = {tls_action::abort, sr::report::reason::weak_cipher};
  h.open(k_ehlo_tls);
  h.s.feed("220 go\r\n");
  h.s.tls_done(tls_outcome{"TLSv1.2", "TLS_RSA_WITH_3DES_EDE_CBC_SHA", 112});
  EXPECT_TRUE(h.s.tls_active()) << "the QUIT goes through the TLS session";
  EXPECT_EQ(h.ev.sends.back(), "QUIT\r\n");
  h.s.feed("221 bye\r\n");
  ASSERT_TRUE(h.ev.closed_info.has_value());
  EXPECT_EQ(h.ev.closed_info->kind, close_kind::tls_policy);
  EXPECT_EQ(h.ev.closed_info->reason, "weak-cipher");
  EXPECT_EQ(h.ev.wire.find("MAIL"), std::string::npos);
  EXPECT_EQ(h.ev.idle_calls, 0);
}

// A decider that cannot judge the session (verify = "dane" before DANE exists) defers: QUIT,
// no MAIL, and a close kind the engine never counts as the MX's TLS failure.
TEST(OutboundSession, TlsOutcomeDeferredQuitsWithoutMailAndIsNoTlsFailure) {
  harness h;
  h.dec.tls = {tls_action::defer, sr::report::reason::tlsa_lookup_failed};
  h.open(k_ehlo_tls);
  h.s.feed("220 go\r\n");
  h.s.tls_done(tls_outcome{"TLSv1.3", "TLS_AES_256_GCM_SHA384", 256});
  EXPECT_EQ(h.ev.sends.back(), "QUIT\r\n");
  h.s.feed("221 bye\r\n");
  ASSERT_TRUE(h.ev.closed_info.has_value());
  EXPECT_EQ(h.ev.closed_info->kind, close_kind::undecided);
  EXPECT_EQ(h.ev.closed_info->reason, "tlsa-lookup-failed");
  EXPECT_EQ(h.ev.wire.find("MAIL"), std::string::npos);
  EXPECT_STREQ(to_string(close_kind::undecided), "undecided");
}

TEST(OutboundSession, HandshakeFailureClosesWithoutQuit) {
  harness h;
  h.open(k_ehlo_tls);
  h.s.feed("220 go\r\n");
  size_t sends = h.ev.sends.size();
  h.s.tls_failed(sr::report::reason::handshake_failed);
  EXPECT_EQ(h.ev.sends.size(), sends) << "nothing plaintext after STARTTLS was accepted";
  ASSERT_TRUE(h.ev.closed_info.has_value());
  EXPECT_EQ(h.ev.closed_info->kind, close_kind::tls_failed);
  EXPECT_EQ(h.ev.closed_info->reason, "handshake-failed");
  h.s.tls_done(tls_outcome{});  // late report: ignored
  EXPECT_EQ(h.s.phase(), phase::closed);
}

TEST(OutboundSession, HeloServerOffersNoStartTlsDecision) {
  harness h;
  h.s.feed("220 old.example\r\n");
  h.s.feed("502 5.5.2 Command not implemented\r\n");
  EXPECT_EQ(h.ev.sends.back(), "HELO relay.example\r\n");
  EXPECT_EQ(h.s.phase(), phase::helo);
  h.s.feed("250 old.example\r\n");
  EXPECT_EQ(h.dec.ehlo_calls, std::vector<bool>{false});
  ASSERT_EQ(h.s.phase(), phase::idle);
  EXPECT_FALSE(h.s.caps().esmtp);
  msg_store m("a@x.example", {"b@y.example"}, "x\r\n", {}, true);
  ASSERT_TRUE(h.s.send_message(m.m));
  EXPECT_EQ(h.ev.sends.back(), "MAIL FROM:<a@x.example>\r\n") << "no ESMTP parameters to HELO";
}

TEST(OutboundSession, Ehlo500FallsBackToHeloButOther5xxCloses) {
  {
    harness h;
    h.s.feed("220 x\r\n");
    h.s.feed("500 5.5.1 what\r\n");
    EXPECT_EQ(h.ev.sends.back(), "HELO relay.example\r\n");
  }
  {
    harness h;
    h.s.feed("220 x\r\n");
    h.s.feed("550 5.7.1 go away\r\n");
    EXPECT_EQ(h.ev.sends.back(), "QUIT\r\n");
    EXPECT_EQ(h.ev.wire.find("HELO"), std::string::npos);
    h.s.feed("221 bye\r\n");
    ASSERT_TRUE(h.ev.closed_info.has_value());
    EXPECT_EQ(*h.ev.closed_info,
              (close_copy{close_kind::remote, "remote-5xx", 550, "5.7.1", "5.7.1 go away"}));
  }
  {
    harness h;
    h.s.feed("220 x\r\n");
    h.s.feed("451 4.3.2 later\r\n");
    EXPECT_EQ(h.ev.sends.back(), "QUIT\r\n");
    h.s.feed("221 bye\r\n");
    EXPECT_EQ(h.ev.closed_info->reason, "remote-4xx");
  }
}

// ---- per-recipient outcomes ---------------------------------------------------------------

txn_copy run_mixed(bool pipelining) {
  harness h;
  h.dec.ehlo = {ehlo_action::proceed_plain};
  h.open(pipelining ? k_ehlo_pipe : k_ehlo_plain);
  msg_store m("a@x.example", {"ok@y.example", "later@y.example", "gone@y.example"}, "x\r\n");
  EXPECT_TRUE(h.s.send_message(m.m));
  h.s.feed("250 2.1.0 Ok\r\n");
  h.s.feed("250 2.1.5 Ok\r\n");
  h.s.feed("450 4.2.1 <later@y.example>: mailbox busy\r\n");
  h.s.feed("550-5.1.1 <gone@y.example>: no such user\r\n550 5.1.1 see https://err\r\n");
  h.s.feed("354 go\r\n");
  EXPECT_EQ(h.ev.bodies.size(), 1u);
  h.s.feed("250 2.0.0 Ok: queued as Q1\r\n");
  EXPECT_EQ(h.ev.txns.size(), 1u);
  EXPECT_FALSE(h.s.rset_pending());
  return h.ev.txns.empty() ? txn_copy{} : h.ev.txns[0];
}

TEST(OutboundSession, MixedRecipientResults) {
  for (bool pipe : {false, true}) {
    SCOPED_TRACE(pipe ? "pipelined" : "one by one");
    txn_copy t = run_mixed(pipe);
    ASSERT_EQ(t.rcpts.size(), 3u);
    EXPECT_EQ(t.rcpts[0], (rcpt_copy{rcpt_status::delivered, stage::dot, 250, "2.0.0",
                                     "2.0.0 Ok: queued as Q1"}));
    EXPECT_EQ(t.rcpts[1], (rcpt_copy{rcpt_status::deferred, stage::rcpt, 450, "4.2.1",
                                     "4.2.1 <later@y.example>: mailbox busy"}));
    EXPECT_EQ(t.rcpts[2],
              (rcpt_copy{rcpt_status::bounced, stage::rcpt, 550, "5.1.1",
                         "5.1.1 <gone@y.example>: no such user 5.1.1 see https://err"}));
    EXPECT_EQ(t.delivered, 1u);
    EXPECT_EQ(t.deferred, 1u);
    EXPECT_EQ(t.bounced, 1u);
    EXPECT_TRUE(t.body_sent);
  }
}

TEST(OutboundSession, TransientAtMailDefersEveryRecipientAndSendsNoRcpt) {
  harness h;
  h.dec.ehlo = {ehlo_action::proceed_plain};
  h.open(k_ehlo_plain);
  msg_store m("a@x.example", {"b@y.example", "c@y.example"}, "x\r\n");
  ASSERT_TRUE(h.s.send_message(m.m));
  h.s.feed("451 4.3.0 try later\r\n");
  EXPECT_EQ(h.ev.wire.find("RCPT"), std::string::npos);
  ASSERT_EQ(h.ev.txns.size(), 1u);
  const txn_copy& t = h.ev.txns[0];
  EXPECT_EQ(t.where, stage::mail);
  EXPECT_EQ(t.deferred, 2u);
  for (const rcpt_copy& r : t.rcpts)
    EXPECT_EQ(r, (rcpt_copy{rcpt_status::deferred, stage::mail, 451, "4.3.0", "4.3.0 try later"}));
  EXPECT_FALSE(t.body_sent);
  EXPECT_EQ(h.s.phase(), phase::idle);
  EXPECT_TRUE(h.s.rset_pending());
}

TEST(OutboundSession, TransientAtMailPipelinedConsumesTheGroupsRepliesAndSendsNoBody) {
  harness h;
  h.open(k_ehlo_pipe);
  msg_store m("a@x.example", {"b@y.example", "c@y.example"}, "x\r\n");
  ASSERT_TRUE(h.s.send_message(m.m));
  h.s.feed("452 4.3.1 insufficient storage\r\n");
  EXPECT_TRUE(h.ev.txns.empty()) << "the RCPT and DATA replies are still due";
  EXPECT_EQ(h.s.phase(), phase::rcpt);
  h.s.feed("503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n554 5.5.1 no valid recipients\r\n");
  ASSERT_EQ(h.ev.txns.size(), 1u);
  const txn_copy& t = h.ev.txns[0];
  EXPECT_EQ(t.where, stage::mail);
  for (const rcpt_copy& r : t.rcpts) {
    EXPECT_EQ(r.status, rcpt_status::deferred);
    EXPECT_EQ(r.code, 452u);
  }
  EXPECT_TRUE(h.ev.bodies.empty());
  EXPECT_EQ(h.s.phase(), phase::idle);
}

TEST(OutboundSession, PermanentAtDataBouncesAcceptedRecipientsOnly) {
  for (bool pipe : {false, true}) {
    SCOPED_TRACE(pipe ? "pipelined" : "one by one");
    harness h;
    h.dec.ehlo = {ehlo_action::proceed_plain};
    h.open(pipe ? k_ehlo_pipe : k_ehlo_plain);
    msg_store m("a@x.example", {"b@y.example", "c@y.example"}, "x\r\n");
    ASSERT_TRUE(h.s.send_message(m.m));
    h.s.feed("250 ok\r\n");
    h.s.feed("250 ok\r\n");
    h.s.feed("451 4.2.2 over quota\r\n");
    if (!pipe) {
      EXPECT_EQ(h.ev.sends.back(), "DATA\r\n");
    }
    h.s.feed("554 5.6.0 data refused\r\n");
    EXPECT_TRUE(h.ev.bodies.empty());
    ASSERT_EQ(h.ev.txns.size(), 1u);
    const txn_copy& t = h.ev.txns[0];
    EXPECT_EQ(t.where, stage::data);
    EXPECT_EQ(t.rcpts[0],
              (rcpt_copy{rcpt_status::bounced, stage::data, 554, "5.6.0", "5.6.0 data refused"}));
    EXPECT_EQ(t.rcpts[1].status, rcpt_status::deferred);
    EXPECT_EQ(t.rcpts[1].where, stage::rcpt);
    EXPECT_EQ(t.rcpts[1].code, 451u);
    EXPECT_FALSE(t.body_sent);
    EXPECT_TRUE(h.s.rset_pending());
  }
}

TEST(OutboundSession, TransientAtFinalDotDefersAcceptedRecipients) {
  harness h;
  h.open(k_ehlo_pipe);
  msg_store m("a@x.example", {"b@y.example", "c@y.example"}, "x\r\n");
  ASSERT_TRUE(h.s.send_message(m.m));
  h.s.feed("250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n");
  ASSERT_EQ(h.ev.bodies.size(), 1u);
  h.s.feed("451 4.3.0 queue write error\r\n");
  ASSERT_EQ(h.ev.txns.size(), 1u);
  const txn_copy& t = h.ev.txns[0];
  EXPECT_EQ(t.where, stage::dot);
  EXPECT_EQ(t.rcpts[0], (rcpt_copy{rcpt_status::deferred, stage::dot, 451, "4.3.0",
                                   "4.3.0 queue write error"}));
  EXPECT_EQ(t.rcpts[1].status, rcpt_status::bounced);
  EXPECT_TRUE(t.body_sent);
  EXPECT_FALSE(h.s.rset_pending()) << "the dot ends the transaction on the server";
}

TEST(OutboundSession, AllRecipientsRejectedOneByOneSendsNoDataNoBody) {
  harness h;
  h.dec.ehlo = {ehlo_action::proceed_plain};
  h.open(k_ehlo_plain);
  msg_store m("a@x.example", {"b@y.example", "c@y.example"}, "secret body\r\n");
  ASSERT_TRUE(h.s.send_message(m.m));
  h.s.feed("250 ok\r\n550 5.1.1 no b\r\n");
  h.s.feed("550 5.1.1 no c\r\n");
  EXPECT_EQ(h.ev.wire.find("DATA"), std::string::npos);
  EXPECT_EQ(h.ev.wire.find("secret"), std::string::npos);
  ASSERT_EQ(h.ev.txns.size(), 1u);
  EXPECT_EQ(h.ev.txns[0].where, stage::rcpt);
  EXPECT_EQ(h.ev.txns[0].text, "5.1.1 no c");
  EXPECT_EQ(h.ev.txns[0].bounced, 2u);
  EXPECT_EQ(h.ev.txns[0].rcpts[0].text, "5.1.1 no b");
  EXPECT_TRUE(h.s.rset_pending());
}

TEST(OutboundSession, AllRecipientsRejectedPipelinedDataRefused) {
  harness h;
  h.open(k_ehlo_pipe);
  msg_store m("a@x.example", {"b@y.example"}, "secret body\r\n");
  ASSERT_TRUE(h.s.send_message(m.m));
  h.s.feed("250 ok\r\n450 4.7.1 greylisted\r\n554 5.5.1 Error: no valid recipients\r\n");
  EXPECT_TRUE(h.ev.bodies.empty());
  EXPECT_EQ(h.ev.wire.find("secret"), std::string::npos);
  ASSERT_EQ(h.ev.txns.size(), 1u);
  EXPECT_EQ(h.ev.txns[0].rcpts[0].status, rcpt_status::deferred);
  EXPECT_EQ(h.ev.txns[0].where, stage::rcpt);
  EXPECT_TRUE(h.s.rset_pending());
}

TEST(OutboundSession, AllRecipientsRejectedPipelinedButDataAcceptedSendsOnlyADot) {
  harness h;
  h.open(k_ehlo_pipe);
  msg_store m("a@x.example", {"b@y.example"}, "secret body\r\n");
  ASSERT_TRUE(h.s.send_message(m.m));
  size_t sends = h.ev.sends.size();
  h.s.feed("250 ok\r\n550 5.1.1 no\r\n354 go ahead anyway\r\n");
  EXPECT_TRUE(h.ev.bodies.empty());
  ASSERT_EQ(h.ev.sends.size(), sends + 1);
  EXPECT_EQ(h.ev.sends.back(), ".\r\n");
  EXPECT_EQ(h.s.phase(), phase::dot);
  EXPECT_TRUE(h.ev.txns.empty());
  h.s.feed("250 2.0.0 queued (to nobody)\r\n");
  ASSERT_EQ(h.ev.txns.size(), 1u);
  EXPECT_EQ(h.ev.txns[0].rcpts[0].status, rcpt_status::bounced) << "the dot reply changes nothing";
  EXPECT_EQ(h.ev.txns[0].where, stage::rcpt);
  EXPECT_FALSE(h.ev.txns[0].body_sent);
  EXPECT_EQ(h.ev.wire.find("secret"), std::string::npos);
  EXPECT_TRUE(h.s.rset_pending());
}

// ---- body --------------------------------------------------------------------------------

bool points_into(const iovec& v, const std::string& buf) {
  const char* p = static_cast<const char*>(v.iov_base);
  return p >= buf.data() && p + v.iov_len <= buf.data() + buf.size();
}

TEST(OutboundBody, DotStuffingIsZeroCopyAndLeavesTheMessageUntouched) {
  std::string body = ".first\r\nplain\r\n..two\r\nend.\r\n.\r\nx.y\r\n.";
  const std::string original = body;
  iovec whole{body.data(), body.size()};
  std::vector<iovec> out;
  size_t n = stuff_body(std::span<const iovec>(&whole, 1), out);
  std::string got = flatten(out);
  EXPECT_EQ(got, "..first\r\nplain\r\n...two\r\nend.\r\n..\r\nx.y\r\n..\r\n.\r\n");
  EXPECT_EQ(n, got.size());
  EXPECT_EQ(body, original);
  size_t inside = 0, bytes_inside = 0;
  for (const iovec& v : out) {
    if (points_into(v, body)) {
      ++inside;
      bytes_inside += v.iov_len;
    } else {
      // Only the inserted dots and the terminator come from elsewhere, and are tiny.
      std::string s(static_cast<const char*>(v.iov_base), v.iov_len);
      EXPECT_TRUE(s == "." || s == ".\r\n" || s == "\r\n.\r\n" || s == "\n.\r\n") << s;
    }
  }
  EXPECT_EQ(bytes_inside, body.size()) << "every message byte is referenced, none copied";
  EXPECT_EQ(inside, 4u);  // split at the 3 stuffed dots not at the very start
}

TEST(OutboundBody, LineStartsAreTrackedAcrossPieces) {
  std::string body = "a\r\n.b\r\n.c\r\nd";
  // Cut right after the LF (next piece starts with '.'), inside CRLF, and before a dot.
  for (size_t cut = 0; cut <= body.size(); ++cut) {
    for (size_t cut2 = cut; cut2 <= body.size(); ++cut2) {
      iovec v[3] = {{body.data(), cut}, {body.data() + cut, cut2 - cut},
                    {body.data() + cut2, body.size() - cut2}};
      std::vector<iovec> out;
      stuff_body(std::span<const iovec>(v, 3), out);
      ASSERT_EQ(flatten(out), "a\r\n..b\r\n..c\r\nd\r\n.\r\n") << cut << "," << cut2;
    }
  }
}

TEST(OutboundBody, WindowsStuffLikeOneBodyAtEveryCut) {
  // A large message is sent a window at a time: the line state (a dot after a CRLF
  // split between windows, a final CRLF split) must carry over, so every cut gives the
  // bytes stuff_body() gives for the whole body.
  for (std::string body : {std::string("a\r\n.b\r\n.c\r\nd"), std::string(".x\r\n\r\n.\r\n"),
                           std::string("abc\r\n"), std::string("abc\r"), std::string("")}) {
    iovec whole{body.data(), body.size()};
    std::vector<iovec> ref;
    stuff_body(std::span<const iovec>(&whole, 1), ref);
    for (size_t cut = 0; cut <= body.size(); ++cut) {
      stuff_state st;
      std::vector<iovec> out;
      iovec w1{body.data(), cut}, w2{body.data() + cut, body.size() - cut};
      stuff_window(std::span<const iovec>(&w1, 1), out, st);
      stuff_window(std::span<const iovec>(&w2, 1), out, st);
      stuff_end(out, st);
      ASSERT_EQ(flatten(out), flatten(ref)) << "cut " << cut << " of \"" << body << "\"";
    }
  }
}

TEST(OutboundBody, TerminatorForEveryEnding) {
  auto run = [](std::string body) {
    iovec v{body.data(), body.size()};
    std::vector<iovec> out;
    stuff_body(std::span<const iovec>(&v, 1), out);
    return flatten(out);
  };
  EXPECT_EQ(run(""), ".\r\n");
  EXPECT_EQ(run("abc\r\n"), "abc\r\n.\r\n");
  EXPECT_EQ(run("abc"), "abc\r\n.\r\n");
  EXPECT_EQ(run("abc\r"), "abc\r\n.\r\n");
  EXPECT_EQ(run("abc\n"), "abc\n\r\n.\r\n");  // a bare LF is not a CRLF line end
  EXPECT_EQ(run("."), "..\r\n.\r\n");
  EXPECT_EQ(run("\r\n"), "\r\n.\r\n");
  // The final CRLF split across pieces still counts.
  std::string b = "abc\r\n";
  iovec v[2] = {{b.data(), 4}, {b.data() + 4, 1}};
  std::vector<iovec> out;
  stuff_body(std::span<const iovec>(v, 2), out);
  EXPECT_EQ(flatten(out), "abc\r\n.\r\n");
}

TEST(OutboundSession, BodyIsDotStuffedFromTheStoredPiecesWithoutCopy) {
  harness h;
  h.open(k_ehlo_pipe);
  msg_store m("a@x.example", {"b@y.example"}, "Subject: s\r\n\r\n.leading\r\nno end", {16, 17});
  const std::string original = m.body;
  ASSERT_TRUE(h.s.send_message(m.m));
  EXPECT_NE(h.ev.sends.back().find("SIZE=30"), std::string::npos) << "SIZE counts unstuffed bytes";
  h.s.feed("250 ok\r\n250 ok\r\n354 go\r\n");
  ASSERT_EQ(h.ev.bodies.size(), 1u);
  EXPECT_EQ(flatten(h.ev.bodies[0]), "Subject: s\r\n\r\n..leading\r\nno end\r\n.\r\n");
  EXPECT_EQ(m.body, original);
  size_t bytes_inside = 0;
  for (const iovec& v : h.ev.bodies[0])
    if (points_into(v, m.body)) bytes_inside += v.iov_len;
  EXPECT_EQ(bytes_inside, m.body.size());
}

// ---- EHLO parsing, SIZE and 8BITMIME ------------------------------------------------------

TEST(OutboundSession, MultilineEhloCapabilities) {
  harness h;
  h.dec.ehlo = {ehlo_action::proceed_plain};
  h.s.feed("220 mx\r\n");
  h.s.feed(
      "250-mx.example Hello relay [192.0.2.1]\r\n250-pipelining\r\n250-SIZE 1000\r\n"
      "250-8BITMIME\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-AUTH PLAIN LOGIN\r\n"
      "250-CHUNKING\r\n250 SMTPUTF8\r\n");
  ASSERT_EQ(h.s.phase(), phase::idle);
  const capabilities& c = h.s.caps();
  EXPECT_TRUE(c.esmtp);
  EXPECT_TRUE(c.pipelining) << "keywords are case-insensitive";
  EXPECT_TRUE(c.size);
  EXPECT_EQ(c.size_limit, 1000u);
  EXPECT_TRUE(c.eight_bit_mime);
  EXPECT_TRUE(c.starttls);
  EXPECT_TRUE(c.enhanced_status_codes);
  EXPECT_TRUE(c.chunking);
  EXPECT_EQ(h.dec.ehlo_calls, std::vector<bool>{true});

  msg_store m("a@x.example", {"b@y.example"}, "8bit \xc3\xa9\r\n", {}, true);
  ASSERT_TRUE(h.s.send_message(m.m));
  EXPECT_EQ(h.ev.sends.back().substr(0, h.ev.sends.back().find("\r\n") + 2),
            "MAIL FROM:<a@x.example> SIZE=9 BODY=8BITMIME\r\n");
  EXPECT_EQ(h.ev.wire.find("BDAT"), std::string::npos);
}

TEST(OutboundSession, SizeParameterAndLimitWithoutLimit) {
  harness h;
  h.dec.ehlo = {ehlo_action::proceed_plain};
  h.open("250-mx\r\n250 SIZE\r\n");
  EXPECT_TRUE(h.s.caps().size);
  EXPECT_EQ(h.s.caps().size_limit, 0u);
  std::string big(5000, 'x');
  msg_store m("a@x.example", {"b@y.example"}, big, {}, true);
  ASSERT_TRUE(h.s.send_message(m.m));
  EXPECT_EQ(h.ev.sends.back(), "MAIL FROM:<a@x.example> SIZE=5000\r\n") << "no 8BITMIME offered";
}

TEST(OutboundSession, MessageOverTheServersSizeLimitBouncesLocally) {
  harness h;
  h.dec.ehlo = {ehlo_action::proceed_plain};
  h.open("250-mx\r\n250 SIZE 10\r\n");
  size_t sends = h.ev.sends.size();
  msg_store m("a@x.example", {"b@y.example"}, "this is longer than ten\r\n");
  ASSERT_TRUE(h.s.send_message(m.m));
  EXPECT_EQ(h.ev.sends.size(), sends) << "nothing goes to the server";
  ASSERT_EQ(h.ev.txns.size(), 1u);
  EXPECT_EQ(h.ev.txns[0].where, stage::local);
  EXPECT_EQ(h.ev.txns[0].rcpts[0].status, rcpt_status::bounced);
  EXPECT_EQ(h.ev.txns[0].rcpts[0].enhanced, "5.3.4");
  EXPECT_EQ(h.s.phase(), phase::idle);
  EXPECT_FALSE(h.s.rset_pending());
  EXPECT_EQ(h.ev.idle_calls, 2);
}

TEST(OutboundSession, NoNewTransactionFromInsideTransactionDone) {
  struct rec : recorder {
    session* s = nullptr;
    const message* next = nullptr;
    bool send_ok = true, quit_ok = true;
    void transaction_done(const txn_result& r) override {
      recorder::transaction_done(r);
      send_ok = s->send_message(*next);
      quit_ok = s->quit();
    }
  } ev;
  scripted_decider dec;
  dec.ehlo = {ehlo_action::proceed_plain};
  session s(session_params{"relay.example"}, ev, dec);
  ev.s = &s;
  msg_store big("a@x.example", {"b@y.example"}, "more than ten bytes\r\n");
  ev.next = &big.m;
  s.feed("220 mx\r\n250-mx\r\n250 SIZE 10\r\n");
  ASSERT_TRUE(s.send_message(big.m));  // bounced locally: transaction_done inside this call
  EXPECT_FALSE(ev.send_ok);
  EXPECT_FALSE(ev.quit_ok);
  EXPECT_EQ(s.phase(), phase::idle);
  EXPECT_EQ(ev.txns.size(), 1u);
}

TEST(OutboundSession, SendMessageRefusesBadCallsAndCommandInjection) {
  harness h;
  h.dec.ehlo = {ehlo_action::proceed_plain};
  msg_store early("a@x.example", {"b@y.example"}, "x\r\n");
  EXPECT_FALSE(h.s.send_message(early.m)) << "not before the session is idle";
  h.open(k_ehlo_pipe);
  msg_store none("a@x.example", {}, "x\r\n");
  EXPECT_FALSE(h.s.send_message(none.m));
  msg_store evil("a@x.example", {"b@y.example>\r\nRCPT TO:<c@z.example"}, "x\r\n");
  EXPECT_FALSE(h.s.send_message(evil.m));
  msg_store evil_from("a@x\r\nRSET", {"b@y.example"}, "x\r\n");
  EXPECT_FALSE(h.s.send_message(evil_from.m));
  EXPECT_EQ(h.ev.wire.find("MAIL"), std::string::npos);
  msg_store ok("a@x.example", {"b@y.example"}, "x\r\n");
  EXPECT_TRUE(h.s.send_message(ok.m));
  EXPECT_FALSE(h.s.send_message(ok.m)) << "one transaction at a time";
  EXPECT_FALSE(h.s.quit()) << "no QUIT in the middle of a transaction";
}

// ---- connection reuse, QUIT, endings ------------------------------------------------------

TEST(OutboundSession, ReuseSendsRsetOnlyAfterAFailedTransaction) {
  harness h;
  h.open(k_ehlo_pipe);
  msg_store m1("a@x.example", {"b@y.example"}, "one\r\n");
  msg_store m2("a@x.example", {"c@y.example"}, "two\r\n");
  msg_store m3("a@x.example", {"d@y.example"}, "three\r\n");

  ASSERT_TRUE(h.s.send_message(m1.m));
  h.s.feed("250 ok\r\n250 ok\r\n354 go\r\n250 queued 1\r\n");
  ASSERT_EQ(h.ev.txns.size(), 1u);
  EXPECT_FALSE(h.s.rset_pending());

  ASSERT_TRUE(h.s.send_message(m2.m));
  EXPECT_EQ(h.ev.sends.back(), "MAIL FROM:<a@x.example> SIZE=5\r\nRCPT TO:<c@y.example>\r\nDATA\r\n")
      << "no RSET after a completed transaction";
  h.s.feed("250 ok\r\n250 ok\r\n451 4.3.0 no DATA now\r\n");
  ASSERT_EQ(h.ev.txns.size(), 2u);
  EXPECT_EQ(h.ev.txns[1].rcpts[0].status, rcpt_status::deferred);
  EXPECT_TRUE(h.s.rset_pending());

  size_t sends = h.ev.sends.size();
  ASSERT_TRUE(h.s.send_message(m3.m));
  ASSERT_EQ(h.ev.sends.size(), sends + 1);
  EXPECT_EQ(h.ev.sends.back(),
            "RSET\r\nMAIL FROM:<a@x.example> SIZE=7\r\nRCPT TO:<d@y.example>\r\nDATA\r\n")
      << "RSET leads the pipelined group";
  EXPECT_EQ(h.s.phase(), phase::rset);
  h.s.feed("250 2.0.0 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued 3\r\n");
  ASSERT_EQ(h.ev.txns.size(), 3u);
  EXPECT_EQ(h.ev.txns[2].rcpts[0].status, rcpt_status::delivered);
  EXPECT_EQ(h.ev.txns[2].text, "queued 3");
  EXPECT_EQ(h.s.transactions(), 3u);
  EXPECT_EQ(flatten(h.ev.bodies.back()), "three\r\n.\r\n");
  EXPECT_FALSE(h.s.rset_pending()) << "one RSET per failed transaction, not from then on";

  msg_store m4("a@x.example", {"e@y.example"}, "four\r\n");
  ASSERT_TRUE(h.s.send_message(m4.m));
  EXPECT_EQ(h.ev.sends.back(), "MAIL FROM:<a@x.example> SIZE=6\r\nRCPT TO:<e@y.example>\r\nDATA\r\n");
  h.s.feed("250 ok\r\n250 ok\r\n354 go\r\n250 queued 4\r\n");
  ASSERT_EQ(h.ev.txns.size(), 4u);

  ASSERT_TRUE(h.s.quit());
  EXPECT_EQ(h.ev.sends.back(), "QUIT\r\n");
  h.s.feed("221 2.0.0 Bye\r\n");
  ASSERT_TRUE(h.ev.closed_info.has_value());
  EXPECT_EQ(h.ev.closed_info->kind, close_kind::quit);
  EXPECT_EQ(h.ev.closed_info->reason, "quit");
}

TEST(OutboundSession, ReuseWithoutPipeliningWaitsForTheRsetReply) {
  harness h;
  h.dec.ehlo = {ehlo_action::proceed_plain};
  h.open(k_ehlo_plain);
  msg_store m1("a@x.example", {"b@y.example"}, "one\r\n");
  msg_store m2("a@x.example", {"c@y.example"}, "two\r\n");
  ASSERT_TRUE(h.s.send_message(m1.m));
  h.s.feed("250 ok\r\n550 5.1.1 no\r\n");
  ASSERT_EQ(h.ev.txns.size(), 1u);
  ASSERT_TRUE(h.s.send_message(m2.m));
  EXPECT_EQ(h.ev.sends.back(), "RSET\r\n");
  EXPECT_EQ(h.s.phase(), phase::rset);
  h.s.feed("250 ok\r\n");
  EXPECT_EQ(h.ev.sends.back(), "MAIL FROM:<a@x.example> SIZE=5\r\n");
  h.s.feed("250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n");
  ASSERT_EQ(h.ev.txns.size(), 2u);
  EXPECT_EQ(h.ev.txns[1].rcpts[0].status, rcpt_status::delivered);
}

TEST(OutboundSession, EngineSendsTheNextMessageFromInsideIdle) {
  harness h;
  msg_store m1("a@x.example", {"b@y.example"}, "one\r\n");
  msg_store m2("a@x.example", {"c@y.example"}, "two\r\n");
  std::vector<const message*> queue = {&m1.m, &m2.m};
  h.ev.on_idle = [&] {
    if (queue.empty())
      h.s.quit();
    else {
      EXPECT_TRUE(h.s.send_message(*queue.front()));
      queue.erase(queue.begin());
    }
  };
  h.open(k_ehlo_pipe);
  // EHLO reply, then the first group in one send() at the end of that feed.
  EXPECT_EQ(h.ev.sends.back(), "MAIL FROM:<a@x.example> SIZE=5\r\nRCPT TO:<b@y.example>\r\nDATA\r\n");
  h.s.feed("250 ok\r\n250 ok\r\n354 go\r\n250 one\r\n");
  EXPECT_EQ(h.ev.sends.back(), "MAIL FROM:<a@x.example> SIZE=5\r\nRCPT TO:<c@y.example>\r\nDATA\r\n");
  h.s.feed("250 ok\r\n250 ok\r\n354 go\r\n250 two\r\n");
  EXPECT_EQ(h.ev.sends.back(), "QUIT\r\n");
  h.s.feed("221 bye\r\n");
  ASSERT_TRUE(h.ev.closed_info.has_value());
  EXPECT_EQ(h.ev.txns.size(), 2u);
  std::vector<std::string> expect_log = {"send", "idle", "send", "body", "done", "idle", "send",
                                         "body", "done", "idle", "send", "closed"};
  EXPECT_EQ(h.ev.log, expect_log);
}

TEST(OutboundSession, QuitOnlyWhenIdleAndEofDuringQuitIsNormal) {
  harness h;
  EXPECT_FALSE(h.s.quit()) << "not before the greeting";
  h.dec.ehlo = {ehlo_action::proceed_plain};
  h.open(k_ehlo_plain);
  ASSERT_TRUE(h.s.quit());
  EXPECT_FALSE(h.s.quit());
  EXPECT_EQ(h.s.phase(), phase::quit);
  h.s.connection_lost();
  ASSERT_TRUE(h.ev.closed_info.has_value());
  EXPECT_EQ(h.ev.closed_info->kind, close_kind::quit);
  h.s.feed("221 late\r\n");  // ignored after closed
  h.s.timeout();
  EXPECT_EQ(h.s.phase(), phase::closed);
}

TEST(OutboundSession, GreetingRefusedWith554QuitsAndReportsTheReply) {
  harness h;
  h.s.feed("554 5.7.1 mx.example: no mail from you\r\n");
  EXPECT_EQ(h.ev.sends, std::vector<std::string>{"QUIT\r\n"});
  EXPECT_EQ(h.s.phase(), phase::quit);
  h.s.feed("221 bye\r\n");
  ASSERT_TRUE(h.ev.closed_info.has_value());
  EXPECT_EQ(*h.ev.closed_info, (close_copy{close_kind::remote, "remote-5xx", 554, "5.7.1",
                                           "5.7.1 mx.example: no mail from you"}));
  EXPECT_EQ(h.ev.idle_calls, 0);
  EXPECT_TRUE(h.dec.ehlo_calls.empty());
}

TEST(OutboundSession, Greeting421ClosesWithoutQuit) {
  harness h;
  h.s.feed("421 4.3.2 too busy\r\n");
  EXPECT_TRUE(h.ev.sends.empty());
  ASSERT_TRUE(h.ev.closed_info.has_value());
  EXPECT_EQ(*h.ev.closed_info,
            (close_copy{close_kind::remote, "remote-4xx", 421, "4.3.2", "4.3.2 too busy"}));
}

TEST(OutboundSession, Reply421MidTransactionDefersPendingRecipientsAndCloses) {
  harness h;
  h.open(k_ehlo_pipe);
  msg_store m("a@x.example", {"b@y.example", "c@y.example", "d@y.example"}, "x\r\n");
  ASSERT_TRUE(h.s.send_message(m.m));
  h.s.feed("250 ok\r\n550 5.1.1 no b\r\n250 ok\r\n421 4.4.2 shutting down\r\n250 never read\r\n");
  ASSERT_EQ(h.ev.txns.size(), 1u);
  const txn_copy& t = h.ev.txns[0];
  EXPECT_EQ(t.rcpts[0].status, rcpt_status::bounced);
  EXPECT_EQ(t.rcpts[0].text, "5.1.1 no b");
  EXPECT_EQ(t.rcpts[1], (rcpt_copy{rcpt_status::deferred, stage::rcpt, 421, "4.4.2",
                                   "4.4.2 shutting down"}));
  EXPECT_EQ(t.rcpts[2].status, rcpt_status::deferred);
  EXPECT_EQ(t.rcpts[2].code, 421u);
  ASSERT_TRUE(h.ev.closed_info.has_value());
  EXPECT_EQ(h.ev.closed_info->reason, "remote-4xx");
  EXPECT_EQ(h.ev.wire.find("QUIT"), std::string::npos);
  EXPECT_EQ(h.ev.log.back(), "closed");
  EXPECT_EQ(h.ev.log[h.ev.log.size() - 2], "done");
}

TEST(OutboundSession, TimeoutOrLossDuringTheBodyDefersTheAcceptedRecipients) {
  for (bool lost : {false, true}) {
    harness h;
    h.open(k_ehlo_pipe);
    msg_store m("a@x.example", {"b@y.example", "c@y.example"}, "x\r\n");
    ASSERT_TRUE(h.s.send_message(m.m));
    h.s.feed("250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n");
    EXPECT_EQ(h.s.phase(), phase::dot);
    EXPECT_EQ(rfc5321_timeout_s(h.s.phase()), 600u);
    if (lost)
      h.s.connection_lost();
    else
      h.s.timeout();
    ASSERT_EQ(h.ev.txns.size(), 1u);
    const txn_copy& t = h.ev.txns[0];
    EXPECT_EQ(t.where, stage::connection);
    EXPECT_EQ(t.rcpts[0].status, rcpt_status::deferred);
    EXPECT_EQ(t.rcpts[0].where, stage::connection);
    EXPECT_EQ(t.rcpts[0].code, 0u);
    EXPECT_EQ(t.rcpts[0].enhanced, "4.4.2");
    EXPECT_EQ(t.rcpts[1].status, rcpt_status::bounced);
    ASSERT_TRUE(h.ev.closed_info.has_value());
    EXPECT_EQ(h.ev.closed_info->kind, lost ? close_kind::lost : close_kind::timeout);
    EXPECT_EQ(h.ev.closed_info->reason, lost ? "connection-lost" : "timeout");
    EXPECT_EQ(h.ev.wire.find("QUIT"), std::string::npos);
  }
}

TEST(OutboundSession, MalformedOrUnsolicitedRepliesCloseAsProtocolErrors) {
  {
    harness h;
    h.open(k_ehlo_pipe);
    h.s.feed("250 nobody asked\r\n");
    ASSERT_TRUE(h.ev.closed_info.has_value());
    EXPECT_EQ(h.ev.closed_info->kind, close_kind::protocol);
  }
  {
    harness h;
    h.open(k_ehlo_pipe);
    h.s.feed("421 4.4.2 idle timeout\r\n");  // a server dropping an idle cached connection
    ASSERT_TRUE(h.ev.closed_info.has_value());
    EXPECT_EQ(h.ev.closed_info->reason, "remote-4xx");
  }
  {
    harness h;
    h.open(k_ehlo_pipe);
    msg_store m("a@x.example", {"b@y.example"}, "x\r\n");
    ASSERT_TRUE(h.s.send_message(m.m));
    h.s.feed("250 ok\r\nHTTP/1.1 400 Bad Request\r\n");
    ASSERT_EQ(h.ev.txns.size(), 1u);
    EXPECT_EQ(h.ev.txns[0].rcpts[0].status, rcpt_status::deferred);
    EXPECT_EQ(h.ev.txns[0].rcpts[0].enhanced, "4.5.0");
    ASSERT_TRUE(h.ev.closed_info.has_value());
    EXPECT_EQ(h.ev.closed_info->reason, "protocol-error");
  }
}

TEST(OutboundSession, PhaseNamesAndTimeouts) {
  EXPECT_STREQ(to_string(phase::greeting), "greeting");
  EXPECT_STREQ(to_string(phase::tls_handshake), "tls_handshake");
  EXPECT_STREQ(to_string(phase::dot), "dot");
  EXPECT_STREQ(to_string(stage::connection), "connection");
  EXPECT_STREQ(to_string(close_kind::tls_policy), "tls_policy");
  EXPECT_EQ(rfc5321_timeout_s(phase::greeting), 300u);
  EXPECT_EQ(rfc5321_timeout_s(phase::data), 120u);
  EXPECT_EQ(rfc5321_timeout_s(phase::idle), 0u);
  harness h;
  EXPECT_EQ(h.s.phase(), phase::greeting);
}

// ---- byte-split independence --------------------------------------------------------------

// A whole server transcript for a reused, pipelined connection with mixed outcomes; the
// engine side sends queued messages from idle() and quits when none is left.
struct transcript_run {
  std::string wire;
  std::vector<txn_copy> txns;
  std::optional<close_copy> closed;
  std::vector<std::string> bodies;
};

const char* k_transcript =
    "220-mx.example ESMTP\r\n220 second greeting line\r\n"
    "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250 ENHANCEDSTATUSCODES\r\n"
    // message 1: one accepted, one deferred, one bounced, delivered
    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n450 4.2.1 busy\r\n550-5.1.1 no such\r\n550 5.1.1 user\r\n"
    "354 go\r\n250 2.0.0 Ok: queued as A\r\n"
    // message 2: DATA refused -> RSET before message 3
    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.6.0 no\r\n"
    // message 3: RSET, then delivered
    "250 2.0.0 reset\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n250 2.0.0 Ok: queued as C\r\n"
    "221 2.0.0 Bye\r\n";

transcript_run run_transcript(const std::vector<std::string_view>& chunks) {
  recorder ev;
  opportunistic_decider dec;
  session s(session_params{"relay.example"}, ev, dec);
  msg_store m1("a@x.example", {"b@y.example", "c@y.example", "d@y.example"}, ".dot\r\nbody one\r\n");
  msg_store m2("a@x.example", {"e@y.example"}, "body two\r\n");
  msg_store m3("", {"f@y.example"}, "body three", {4});
  std::vector<const message*> queue = {&m1.m, &m2.m, &m3.m};
  ev.on_idle = [&] {
    if (queue.empty()) {
      s.quit();
    } else {
      s.send_message(*queue.front());
      queue.erase(queue.begin());
    }
  };
  for (std::string_view c : chunks) s.feed(c);
  transcript_run r{ev.wire, ev.txns, ev.closed_info, {}};
  for (auto& b : ev.bodies) r.bodies.push_back(flatten(b));
  return r;
}

TEST(OutboundSession, RepliesSplitAtEveryByteBoundaryGiveTheSameOutcome) {
  std::string_view all = k_transcript;
  transcript_run ref = run_transcript({all});
  ASSERT_EQ(ref.txns.size(), 3u);
  ASSERT_TRUE(ref.closed.has_value());
  EXPECT_EQ(ref.closed->kind, close_kind::quit);
  EXPECT_EQ(ref.txns[0].delivered, 1u);
  EXPECT_EQ(ref.txns[0].deferred, 1u);
  EXPECT_EQ(ref.txns[0].bounced, 1u);
  EXPECT_EQ(ref.txns[0].rcpts[2].text, "5.1.1 no such 5.1.1 user");
  EXPECT_EQ(ref.txns[1].rcpts[0].status, rcpt_status::bounced);
  EXPECT_EQ(ref.txns[2].rcpts[0].status, rcpt_status::delivered);
  EXPECT_EQ(ref.wire,
            "EHLO relay.example\r\n"
            "MAIL FROM:<a@x.example> SIZE=16\r\nRCPT TO:<b@y.example>\r\nRCPT TO:<c@y.example>\r\n"
            "RCPT TO:<d@y.example>\r\nDATA\r\n"
            "..dot\r\nbody one\r\n.\r\n"
            "MAIL FROM:<a@x.example> SIZE=10\r\nRCPT TO:<e@y.example>\r\nDATA\r\n"
            "RSET\r\nMAIL FROM:<> SIZE=10\r\nRCPT TO:<f@y.example>\r\nDATA\r\n"
            "body three\r\n.\r\n"
            "QUIT\r\n");

  for (size_t k = 0; k <= all.size(); ++k) {
    transcript_run r = run_transcript({all.substr(0, k), all.substr(k)});
    ASSERT_EQ(r.wire, ref.wire) << "split at " << k;
    ASSERT_EQ(r.txns, ref.txns) << "split at " << k;
    ASSERT_EQ(r.closed, ref.closed) << "split at " << k;
    ASSERT_EQ(r.bodies, ref.bodies) << "split at " << k;
  }
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < all.size(); ++i) bytes.push_back(all.substr(i, 1));
  transcript_run r = run_transcript(bytes);
  EXPECT_EQ(r.wire, ref.wire);
  EXPECT_EQ(r.txns, ref.txns);
  EXPECT_EQ(r.closed, ref.closed);
}

TEST(OutboundSession, WithoutPipeliningTheSameRepliesGiveTheSameBytesAndOutcome) {
  // The replies of the transcript come in the same order one by one, so only the grouping
  // of the sends differs: the byte stream and every outcome must be identical.
  std::string plain = k_transcript;
  std::string_view pipe_line = "250-PIPELINING\r\n";
  plain.erase(plain.find(pipe_line), pipe_line.size());
  transcript_run ref = run_transcript({std::string_view(k_transcript)});
  for (size_t k = 0; k <= plain.size(); k += 7) {
    std::string_view all = plain;
    transcript_run r = run_transcript({all.substr(0, k), all.substr(k)});
    ASSERT_EQ(r.wire, ref.wire) << "split at " << k;
    ASSERT_EQ(r.txns, ref.txns) << "split at " << k;
  }
}

TEST(OutboundSession, BareLfRepliesParseLikeCrlf) {
  std::string lf;
  for (char c : std::string_view(k_transcript))
    if (c != '\r') lf.push_back(c);
  transcript_run ref = run_transcript({std::string_view(k_transcript)});
  transcript_run r = run_transcript({std::string_view(lf)});
  EXPECT_EQ(r.wire, ref.wire);
  EXPECT_EQ(r.txns, ref.txns);
}

// ---- against the project's own server session --------------------------------------------

// Pumps bytes between this client and sealrelay's inbound session (both I/O-free), with a
// pretend TLS layer: both sides are told the handshake succeeded.
struct loop_server : sr::inbound::events {
  std::string to_client;
  std::vector<std::string> messages;
  std::string cur;
  std::vector<std::string> rcpts_seen;
  sr::inbound::session* srv = nullptr;
  bool tls_requested = false;
  void send(std::string_view b) override { to_client.append(b); }
  void start_tls() override { tls_requested = true; }
  void begin_message(const sr::inbound::envelope&) override { cur.clear(); }
  void body(std::span<std::byte> b) override {
    cur.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  void end_message(const sr::inbound::envelope& e) override {
    messages.push_back(cur);
    rcpts_seen = e.rcpt_to;
    std::string id = std::to_string(messages.size());
    id.insert(id.begin(), 'Q');  // (not "Q" + s: GCC 12 warns falsely on that)
    srv->message_result(id);
  }
  void abort_message() override {}
  void close() override {}
};

TEST(OutboundSession, InteroperatesWithTheInboundSessionIncludingStartTls) {
  loop_server sv;
  sr::inbound::session_params sp;
  sp.hostname = "mx.example";
  sp.starttls_available = true;
  sp.relay_allowed = true;
  sr::inbound::session srv(sp, sv);
  sv.srv = &srv;

  recorder ev;
  opportunistic_decider dec;
  session cl(session_params{"relay.example"}, ev, dec);
  msg_store m1("a@x.example", {"b@y.example", "c@y.example"},
               "Subject: t\r\n\r\n.starts with a dot\r\n..two\r\n.\r\nlast", {20, 21});
  msg_store m2("a@x.example", {"d@y.example"}, "second\r\n");
  std::vector<const message*> queue = {&m1.m, &m2.m};
  ev.on_idle = [&] {
    if (queue.empty()) {
      cl.quit();
    } else {
      ASSERT_TRUE(cl.send_message(*queue.front()));
      queue.erase(queue.begin());
    }
  };
  size_t sent_upto = 0;
  srv.greet();
  for (int guard = 0; guard < 100 && !ev.closed_info; ++guard) {
    if (!sv.to_client.empty()) {
      std::string b;
      b.swap(sv.to_client);
      cl.feed(b);
    }
    if (ev.start_tls_calls == 1 && !cl.tls_active()) {
      ASSERT_TRUE(sv.tls_requested);
      srv.tls_established();
      cl.tls_done(tls_outcome{"TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256", 256, cert_verdict::verified});
    }
    if (sent_upto < ev.wire.size()) {
      std::string b = ev.wire.substr(sent_upto);
      sent_upto = ev.wire.size();
      srv.feed(std::span<std::byte>(reinterpret_cast<std::byte*>(b.data()), b.size()));
    }
  }
  ASSERT_TRUE(ev.closed_info.has_value());
  EXPECT_EQ(ev.closed_info->kind, close_kind::quit);
  EXPECT_TRUE(cl.tls_active());
  ASSERT_EQ(sv.messages.size(), 2u);
  EXPECT_EQ(sv.messages[0], m1.body + "\r\n") << "unstuffed by the server: the original bytes";
  EXPECT_EQ(sv.messages[1], m2.body);
  ASSERT_EQ(ev.txns.size(), 2u);
  EXPECT_EQ(ev.txns[0].delivered, 2u);
  EXPECT_EQ(ev.txns[1].delivered, 1u);
  EXPECT_NE(ev.txns[1].text.find("Q2"), std::string::npos);
  EXPECT_EQ(ev.wire.find("RSET"), std::string::npos);
}

}  // namespace

// RFC 8689: after TLS the decider is asked about the EHLO's REQUIRETLS offer; a REQUIRETLS
// message carries the MAIL parameter and is refused on a session that lacks it.
TEST(OutboundSession, RequireTlsAskedAfterTlsEhloAndSentAsMailParameter) {
  struct rt_decider : scripted_decider {
    std::vector<bool> secure_calls;
    bool require = true;
    decision<tls_action> on_secure_ehlo(bool offered) override {
      secure_calls.push_back(offered);
      if (require && !offered) return {tls_action::abort, sr::report::reason::requiretls_not_offered};
      return {tls_action::proceed};
    }
  };
  {
    recorder ev;
    rt_decider dec;
    session s{session_params{"relay.example"}, ev, dec};
    s.feed("220 mx.example ESMTP\r\n");
    s.feed(k_ehlo_tls);
    EXPECT_TRUE(dec.secure_calls.empty()) << "not asked before TLS";
    s.feed("220 go\r\n");
    s.tls_done(tls_outcome{"TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, cert_verdict::verified});
    s.feed("250-mx.example\r\n250-REQUIRETLS\r\n250 SIZE 5000\r\n");
    ASSERT_EQ(dec.secure_calls, std::vector<bool>{true});
    ASSERT_EQ(s.phase(), phase::idle);
    EXPECT_TRUE(s.caps().requiretls);
    msg_store m("a@x.example", {"b@y.example"}, "hi\r\n");
    m.m.requiretls = true;
    ASSERT_TRUE(s.send_message(m.m));
    EXPECT_EQ(ev.sends.back(), "MAIL FROM:<a@x.example> SIZE=4 REQUIRETLS\r\n");
  }
  {
    recorder ev;
    rt_decider dec;
    session s{session_params{"relay.example"}, ev, dec};
    s.feed("220 mx.example ESMTP\r\n");
    s.feed(k_ehlo_tls);
    s.feed("220 go\r\n");
    s.tls_done(tls_outcome{"TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, cert_verdict::verified});
    s.feed("250-mx.example\r\n250 SIZE 5000\r\n");
    EXPECT_EQ(ev.sends.back(), "QUIT\r\n");
    s.feed("221 bye\r\n");
    ASSERT_TRUE(ev.closed_info.has_value());
    EXPECT_EQ(ev.closed_info->kind, close_kind::tls_policy);
    EXPECT_EQ(ev.closed_info->reason, "requiretls-not-offered");
    EXPECT_EQ(ev.wire.find("MAIL"), std::string::npos);
  }
  {
    // A session that never saw REQUIRETLS over TLS refuses a REQUIRETLS message outright.
    recorder ev;
    rt_decider dec;
    dec.require = false;
    session s{session_params{"relay.example"}, ev, dec};
    s.feed("220 mx.example ESMTP\r\n");
    s.feed("250-mx.example\r\n250-REQUIRETLS\r\n250 SIZE 5000\r\n");
    ASSERT_EQ(s.phase(), phase::idle);
    msg_store m("a@x.example", {"b@y.example"}, "hi\r\n");
    m.m.requiretls = true;
    EXPECT_FALSE(s.send_message(m.m)) << "plaintext, even though the EHLO named REQUIRETLS";
    EXPECT_EQ(ev.wire.find("MAIL"), std::string::npos);
  }
}
