// tls::peer_chain: the chain a client saw, as plain data, from an in-memory handshake
// against the committed test PKI (tests/certs): names, issuer, validity, DER, and nothing
// before the handshake.
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

}  // namespace
