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

}  // namespace
}  // namespace sr::integ
