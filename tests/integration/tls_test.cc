// TLS on the inbound side: STARTTLS and implicit TLS with swaks and with our own wolfSSL
// client (which verifies the relay's certificate against tests/certs/ca.crt),
// require_tls, and the CVE-2011-0411 class: bytes pipelined after STARTTLS are discarded.
#include <gtest/gtest.h>

#include "support/harness.hh"

namespace sr::integ {
namespace {

relay_options with_listener(listener l) {
  relay_options o;
  o.listeners = {l};
  return o;
}

TEST(Tls, SwaksStartTlsDelivers) {
  relay r(with_listener({.tls = "starttls"}));
  ASSERT_TRUE(r.start()) << r.error();
  auto res = r.swaks({"--tls", "--from", "s@example.org", "--to", "t@example.net"});
  ASSERT_EQ(res.exit_code, 0) << res.output;
  EXPECT_NE(res.output.find("STARTTLS"), std::string::npos) << res.output;
  EXPECT_NE(res.output.find("TLS started"), std::string::npos) << res.output;
  // "<~" marks lines swaks received inside TLS.
  EXPECT_NE(res.output.find("<~  250 2.0.0 Ok: queued as"), std::string::npos) << res.output;
  EXPECT_TRUE(queued_id(res.output));
}

TEST(Tls, SwaksImplicitTlsDelivers) {
  relay_options o;
  o.listeners = {listener{.tls = "none"}, listener{.tls = "implicit"}};
  relay r(o);
  ASSERT_TRUE(r.start()) << r.error();
  auto res = r.swaks({"--tlsc", "--from", "s@example.org", "--to", "t@example.net"}, 1);
  ASSERT_EQ(res.exit_code, 0) << res.output;
  EXPECT_NE(res.output.find("TLS started"), std::string::npos) << res.output;
  EXPECT_NE(res.output.find("<~  220"), std::string::npos) << res.output;
  EXPECT_NE(res.output.find("<~  250 2.0.0 Ok: queued as"), std::string::npos) << res.output;
}

TEST(Tls, StartTlsVerifiedHandshakeResetsSession) {
  relay r(with_listener({.tls = "starttls"}));
  ASSERT_TRUE(r.start()) << r.error();
  raw_client c;
  std::string ehlo;
  ASSERT_TRUE(open_session(c, r.port(), &ehlo));
  EXPECT_NE(ehlo.find("STARTTLS"), std::string::npos) << ehlo;
  auto go = c.command("STARTTLS");
  ASSERT_TRUE(go);
  EXPECT_EQ(reply_code(*go), 220) << *go;
  ASSERT_TRUE(c.start_tls()) << "handshake failed (certificate must verify against tests/certs/ca.crt)";
  // RFC 3207: the session starts over; MAIL before a new EHLO is out of sequence.
  auto early = c.command("MAIL FROM:<s@example.org>");
  ASSERT_TRUE(early);
  EXPECT_EQ(reply_code(*early), 503) << *early;
  auto ehlo2 = c.command("EHLO client.test");
  ASSERT_TRUE(ehlo2);
  EXPECT_EQ(reply_code(*ehlo2), 250) << *ehlo2;
  EXPECT_EQ(ehlo2->find("STARTTLS"), std::string::npos) << *ehlo2;
  auto done = send_message(c, "s@example.org", {"t@example.net"}, "Subject: tls\r\n\r\nover tls\r\n");
  ASSERT_TRUE(done);
  EXPECT_TRUE(queued_id(*done)) << *done;
}

TEST(Tls, ImplicitTlsVerifiedHandshakeThenGreeting) {
  relay_options o;
  o.listeners = {listener{.tls = "none"}, listener{.tls = "implicit"}};
  relay r(o);
  ASSERT_TRUE(r.start()) << r.error();
  raw_client c;
  ASSERT_TRUE(c.connect(r.port(1)));
  ASSERT_TRUE(c.start_tls());
  auto greeting = c.read_reply();
  ASSERT_TRUE(greeting);
  EXPECT_EQ(reply_code(*greeting), 220) << *greeting;
  auto ehlo = c.command("EHLO client.test");
  ASSERT_TRUE(ehlo);
  EXPECT_EQ(reply_code(*ehlo), 250);
  EXPECT_EQ(ehlo->find("STARTTLS"), std::string::npos) << *ehlo;
  auto done = send_message(c, "s@example.org", {"t@example.net"}, "Subject: tls\r\n\r\nimplicit\r\n");
  ASSERT_TRUE(done);
  EXPECT_TRUE(queued_id(*done)) << *done;
}

TEST(Tls, RequireTlsRefusesMailBeforeStartTls) {
  relay r(with_listener({.tls = "starttls", .require_tls = true}));
  ASSERT_TRUE(r.start()) << r.error();
  raw_client c;
  ASSERT_TRUE(open_session(c, r.port()));
  auto refused = c.command("MAIL FROM:<s@example.org>");
  ASSERT_TRUE(refused);
  EXPECT_TRUE(starts_with(*refused, "530")) << *refused;
  EXPECT_NE(refused->find("5.7.0"), std::string::npos) << *refused;

  // swaks without --tls is refused at MAIL; with --tls it delivers.
  auto plain = r.swaks({"--from", "s@example.org", "--to", "t@example.net"});
  EXPECT_NE(plain.exit_code, 0) << plain.output;
  EXPECT_NE(plain.output.find("530"), std::string::npos) << plain.output;
  auto tls = r.swaks({"--tls", "--from", "s@example.org", "--to", "t@example.net"});
  EXPECT_EQ(tls.exit_code, 0) << tls.output;
  EXPECT_TRUE(queued_id(tls.output)) << tls.output;
}

TEST(Tls, BytesPipelinedAfterStartTlsAreDiscarded) {
  relay r(with_listener({.tls = "starttls"}));
  ASSERT_TRUE(r.start()) << r.error();
  raw_client c;
  ASSERT_TRUE(open_session(c, r.port()));
  // CVE-2011-0411: the injected RSET must never be answered, neither in clear nor in TLS.
  ASSERT_TRUE(c.send("STARTTLS\r\nRSET\r\n"));
  auto go = c.read_reply();
  ASSERT_TRUE(go);
  EXPECT_EQ(reply_code(*go), 220) << *go;
  std::string extra = c.read_for(500ms);   // only shows absence; the handshake below decides
  EXPECT_TRUE(extra.empty()) << "reply to the injected command before the handshake: " << extra;
  ASSERT_TRUE(c.start_tls()) << "handshake failed: the injected bytes were fed to TLS";
  auto ehlo = c.command("EHLO client.test");
  ASSERT_TRUE(ehlo);
  // The first reply inside TLS must be EHLO's (it names the relay), not RSET's 250.
  EXPECT_TRUE(starts_with(*ehlo, "250-relay.test") || starts_with(*ehlo, "250 relay.test")) << *ehlo;
  ASSERT_TRUE(c.send("QUIT\r\n"));
  auto tail = c.read_until_eof();
  ASSERT_EQ(tail.size(), 1u);
  EXPECT_EQ(reply_code(tail[0]), 221) << tail[0];
}

// Issue 11 item 5: a client that resumes its session on its next connection resumes even
// when SO_REUSEPORT hands that connection to another shard (the queue id's hex digits 8-9
// name the shard that stored the message). The ticket keys are process-wide.
TEST(Tls, ResumptionWorksAcrossShards) {
  relay_options o = with_listener({.tls = "starttls"});
  o.shards = 2;
  relay r(o);
  ASSERT_TRUE(r.start()) << r.error();
  // One STARTTLS session sending one message; returns the storing shard ("" on failure).
  auto one = [&](const tls_ticket& offer, tls_ticket* saved, bool* resumed) -> std::string {
    raw_client c;
    if (!open_session(c, r.port())) return "";
    auto go = c.command("STARTTLS");
    if (!go || reply_code(*go) != 220 || !c.start_tls(offer)) return "";
    *resumed = c.tls_resumed();
    auto ehlo = c.command("EHLO client.test");  // TLS 1.3: the ticket arrives with this reply
    if (!ehlo || reply_code(*ehlo) != 250) return "";
    if (saved) *saved = c.save_tls_session();
    auto done = send_message(c, "s@example.org", {"t@example.net"}, "Subject: resume\r\n\r\nx\r\n");
    auto id = done ? queued_id(*done) : std::nullopt;
    return id && id->size() >= 10 ? id->substr(8, 2) : "";
  };
  tls_ticket ticket;
  bool resumed = true;
  std::string first = one({}, &ticket, &resumed);
  ASSERT_FALSE(first.empty());
  EXPECT_FALSE(resumed);
  ASSERT_TRUE(ticket) << "no session ticket from the relay";
  // Offer the first connection's ticket until a connection lands on the other shard
  // (bounded; each lands on a shard by the kernel's hash of its source port).
  bool other_shard = false;
  for (int i = 0; i < 24 && !other_shard; ++i) {
    resumed = false;
    std::string shard = one(ticket, nullptr, &resumed);
    ASSERT_FALSE(shard.empty()) << "connection " << i;
    EXPECT_TRUE(resumed) << "connection " << i << " on shard " << shard << " (ticket from shard " << first << ")";
    other_shard = shard != first;
  }
  EXPECT_TRUE(other_shard) << "every connection landed on shard " << first;
}

}  // namespace
}  // namespace sr::integ
