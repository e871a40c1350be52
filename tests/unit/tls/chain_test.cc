// tls::peer_chain: the chain a client saw, as plain data, from an in-memory handshake
// against the committed test PKI (tests/certs): names, issuer, validity, DER, nothing
// before the handshake, and the chain kept by the client session only.
#include <gtest/gtest.h>

#include <string>

#include "sealrelay/tls/chain.hh"
#include "sealrelay/tls/context.hh"
#include "support/tls_pump.hh"

namespace {

using namespace sr::tls;
using sr::tls::testing::endpoint;
using sr::tls::testing::wire;

std::string cert(const std::string& name) { return std::string(SR_TEST_CERTS) + "/" + name; }

// Handshake a client (trusting the test CA) with a server using tests/certs/<stem>; the chain.
std::vector<cert_info> chain_of(const std::string& stem) {
  auto sctx = context::server(cert(stem + ".crt"), cert(stem + ".key"), tls_version::v1_2);
  auto cctx = context::client(cert("ca.crt"), tls_version::v1_0);
  EXPECT_TRUE(sctx.ok() && cctx.ok());
  if (!sctx.ok() || !cctx.ok()) return {};
  auto srv_s = session::accept(*sctx);
  auto cli_s = session::connect(*cctx, "mx.test");
  EXPECT_TRUE(srv_s.ok() && cli_s.ok());
  endpoint srv{std::move(*srv_s)}, cli{std::move(*cli_s)};
  EXPECT_TRUE(peer_chain(cli.s).empty()) << "no chain before the handshake";
  cli.hs = cli.s.handshake();
  wire{}.pump(cli, srv);
  EXPECT_EQ(cli.hs, 1);
  return peer_chain(cli.s);
}

TEST(tls_chain, leaf_names_issuer_and_validity) {
  auto chain = chain_of("server");
  ASSERT_GE(chain.size(), 1u);
  const cert_info& leaf = chain[0];
  EXPECT_NE(leaf.subject.find("CN=mx.test"), std::string::npos) << leaf.subject;
  EXPECT_NE(leaf.issuer.find("CN=sealrelay test CA"), std::string::npos) << leaf.issuer;
  ASSERT_GE(leaf.names.size(), 4u);
  EXPECT_EQ(leaf.names[0], "localhost");
  EXPECT_EQ(leaf.names[1], "mx.test");
  EXPECT_EQ(leaf.names[2], "*.mx.test");
  EXPECT_EQ(leaf.names[3], "127.0.0.1");  // IP addresses after the DNS names
  EXPECT_EQ(leaf.not_before.size(), 20u) << leaf.not_before;
  EXPECT_LT(leaf.not_before_s, leaf.not_after_s);
  EXPECT_EQ(leaf.not_after.substr(0, 4), "2126");
  EXPECT_GT(leaf.der.size(), 100u);
  EXPECT_EQ(leaf.der[0], 0x30);  // a DER SEQUENCE
}

TEST(tls_chain, expired_dates_and_wrong_name) {
  auto expired = chain_of("expired");
  ASSERT_GE(expired.size(), 1u);
  EXPECT_EQ(expired[0].not_before, "2000-01-01T00:00:00Z");
  EXPECT_EQ(expired[0].not_after, "2001-01-01T00:00:00Z");
  EXPECT_EQ(expired[0].not_after_s, 978307200);
  auto wrong = chain_of("wrongname");
  ASSERT_GE(wrong.size(), 1u);
  ASSERT_EQ(wrong[0].names.size(), 1u);
  EXPECT_EQ(wrong[0].names[0], "wrong.example");
}

// The client keeps the chain the server sent (the library keeps none: see
// tools/build-wolfssl); the server keeps nothing, as no client certificate came.
TEST(tls_chain, client_keeps_the_chain_as_sent_server_keeps_none) {
  auto sctx = context::server(cert("server.crt"), cert("server.key"), tls_version::v1_2);
  auto cctx = context::client(cert("ca.crt"), tls_version::v1_2);
  ASSERT_TRUE(sctx.ok() && cctx.ok());
  endpoint srv{std::move(*session::accept(*sctx))}, cli{std::move(*session::connect(*cctx, "mx.test"))};
  cli.hs = cli.s.handshake();
  wire{}.pump(cli, srv);
  ASSERT_EQ(cli.hs, 1);
  EXPECT_EQ(cli.s.verdict(), cert_verdict::verified);
  EXPECT_NE(cli.s.peer_subject().find("CN=mx.test"), std::string::npos);
  const auto& certs = cli.s.peer_certificates();
  ASSERT_GE(certs.size(), 1u);
  auto chain = peer_chain(cli.s);
  ASSERT_EQ(chain.size(), certs.size());
  EXPECT_EQ(chain[0].der, certs[0]);
  EXPECT_TRUE(srv.s.peer_certificates().empty());
  EXPECT_TRUE(peer_chain(srv.s).empty());
}

}  // namespace
