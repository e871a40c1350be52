// tls::context / tls::session / tls::session_cache driven over in-memory buffers with the
// committed test PKI (tests/certs): handshakes per version, data integrity under random
// record splitting, certificate verdicts, resumption, and clean failures.
#include <malloc.h>

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>

#include "support/tls_pump.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/session.hh"
#include "sealrelay/tls/session_cache.hh"

namespace {

using namespace sr::tls;
using sr::tls::testing::endpoint;
using sr::tls::testing::wire;

std::string cert(const char* name) { return std::string(SR_TEST_CERTS) + "/" + name; }

context server_ctx(const char* stem = "server", tls_version min = tls_version::v1_2,
                   tls_version max = tls_version::v1_3) {
  auto r = context::server(cert((std::string(stem) + ".crt").c_str()),
                           cert((std::string(stem) + ".key").c_str()), min, max);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err());
  return std::move(*r);
}

context client_ctx(bool trust_ca = true, tls_version min = tls_version::v1_2,
                   tls_version max = tls_version::v1_3) {
  auto r = context::client(trust_ca ? cert("ca.crt") : "", min, max);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err());
  return std::move(*r);
}

endpoint server_end(const context& c) {
  auto r = session::accept(c);
  EXPECT_TRUE(r.ok());
  return endpoint{std::move(*r)};
}

endpoint client_end(const context& c, std::string_view host, session_cache* cache = nullptr) {
  auto r = session::connect(c, host, cache);
  EXPECT_TRUE(r.ok());
  return endpoint{std::move(*r)};
}

// Start the client's handshake and run the wire until quiet.
void handshake(endpoint& cli, endpoint& srv, wire w = {}) {
  cli.hs = cli.s.handshake();
  w.pump(cli, srv);
}

std::vector<std::byte> bytes(std::string_view s) {
  auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

cert_verdict verdict_for(const char* server_stem, std::string_view host, bool trust_ca = true) {
  context sctx = server_ctx(server_stem);
  context cctx = client_ctx(trust_ca);
  endpoint srv = server_end(sctx), cli = client_end(cctx, host);
  handshake(cli, srv);
  EXPECT_EQ(cli.hs, 1) << "handshake must succeed: verdicts are recorded, not enforced";
  EXPECT_EQ(srv.hs, 1);
  return cli.s.verdict();
}

TEST(tls_context, reports_bad_files) {
  EXPECT_FALSE(context::server(cert("missing.crt"), cert("server.key"), tls_version::v1_2).ok());
  auto r = context::server(cert("server.crt"), cert("expired.key"), tls_version::v1_2);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.err().find("does not match"), std::string::npos) << r.err();
  EXPECT_FALSE(context::client(cert("missing.crt"), tls_version::v1_2).ok());
  EXPECT_FALSE(context::client("", tls_version::v1_3, tls_version::v1_2).ok());
}

TEST(tls_session, role_must_match_context) {
  context sctx = server_ctx();
  context cctx = client_ctx();
  EXPECT_FALSE(session::connect(sctx, "mx.test").ok());
  EXPECT_FALSE(session::accept(cctx).ok());
}

TEST(tls_session, handshake_tls13) {
  context sctx = server_ctx();
  context cctx = client_ctx();
  endpoint srv = server_end(sctx), cli = client_end(cctx, "mx.test");
  handshake(cli, srv);
  ASSERT_EQ(cli.hs, 1);
  ASSERT_EQ(srv.hs, 1);
  EXPECT_EQ(cli.s.version(), "TLSv1.3");
  EXPECT_EQ(srv.s.version(), "TLSv1.3");
  EXPECT_EQ(cli.s.cipher(), srv.s.cipher());
  EXPECT_EQ(cli.s.cipher().substr(0, 4), "TLS_") << cli.s.cipher();
  EXPECT_EQ(cli.s.cipher().find('-'), std::string_view::npos) << "IANA names use '_'";
  EXPECT_GE(cli.s.cipher_bits(), 128);
  EXPECT_EQ(cli.s.cipher_bits(), srv.s.cipher_bits());
  EXPECT_FALSE(cli.s.resumed());
  EXPECT_EQ(cli.s.verdict(), cert_verdict::verified);
  EXPECT_NE(cli.s.peer_subject().find("CN=mx.test"), std::string::npos) << cli.s.peer_subject();
  EXPECT_EQ(srv.s.verdict(), cert_verdict::none);
  EXPECT_TRUE(cli.s.pending_output().empty());
  EXPECT_TRUE(srv.s.pending_output().empty());
}

TEST(tls_session, handshake_forced_tls12) {
  context sctx = server_ctx();
  context cctx = client_ctx(true, tls_version::v1_2, tls_version::v1_2);
  endpoint srv = server_end(sctx), cli = client_end(cctx, "mx.test");
  handshake(cli, srv);
  ASSERT_EQ(cli.hs, 1);
  ASSERT_EQ(srv.hs, 1);
  EXPECT_EQ(cli.s.version(), "TLSv1.2");
  EXPECT_EQ(srv.s.version(), "TLSv1.2");
  EXPECT_EQ(cli.s.cipher().substr(0, 16), "TLS_ECDHE_ECDSA_") << cli.s.cipher();
  EXPECT_EQ(cli.s.cipher(), srv.s.cipher());
  EXPECT_GE(cli.s.cipher_bits(), 128);
  EXPECT_EQ(cli.s.verdict(), cert_verdict::verified);
}

TEST(tls_session, handshake_byte_by_byte_and_moved_mid_way) {
  context sctx = server_ctx();
  context cctx = client_ctx();
  std::mt19937 rng(7);
  wire one{&rng, 1};
  endpoint srv = server_end(sctx), cli = client_end(cctx, "mx.test");
  cli.hs = cli.s.handshake();
  one.deliver(cli, srv);  // ClientHello, one byte at a time
  // Moving a session must re-point wolfSSL's callbacks at the new object.
  endpoint srv2{std::move(srv.s)};
  one.pump(cli, srv2);
  EXPECT_EQ(cli.hs, 1);
  EXPECT_EQ(srv2.hs, 1);
  EXPECT_EQ(cli.s.verdict(), cert_verdict::verified);
}

TEST(tls_session, data_both_ways_with_random_splits) {
  for (tls_version max : {tls_version::v1_3, tls_version::v1_2}) {
    SCOPED_TRACE(to_string(max));
    context sctx = server_ctx();
    context cctx = client_ctx(true, tls_version::v1_2, max);
    endpoint srv = server_end(sctx), cli = client_end(cctx, "mx.test");
    std::mt19937 rng(42);
    wire w{&rng, 3000};
    handshake(cli, srv, w);
    ASSERT_EQ(cli.hs, 1);
    ASSERT_EQ(srv.hs, 1);

    auto hello = bytes("EHLO client.test\r\n");
    ASSERT_EQ(cli.s.write(hello), static_cast<int>(hello.size()));
    w.pump(cli, srv);
    EXPECT_EQ(srv.received, hello);
    auto reply = bytes("250 mx.test\r\n");
    ASSERT_EQ(srv.s.write(reply), static_cast<int>(reply.size()));
    w.pump(cli, srv);
    EXPECT_EQ(cli.received, reply);

    // 1 MiB each way, written in random sizes, carried in random chunks.
    std::vector<std::byte> big(1 << 20);
    for (auto& b : big) b = static_cast<std::byte>(rng());
    srv.received.clear();
    cli.received.clear();
    std::uniform_int_distribution<size_t> wsize(1, 70000);
    for (size_t off = 0; off < big.size();) {
      size_t n = std::min(big.size() - off, wsize(rng));
      ASSERT_EQ(cli.s.write(std::span(big).subspan(off, n)), static_cast<int>(n));
      ASSERT_EQ(srv.s.write(std::span(big).subspan(off, n)), static_cast<int>(n));
      off += n;
      if (rng() % 3 == 0) w.pump(cli, srv);  // sometimes let output pile up
    }
    w.pump(cli, srv);
    EXPECT_EQ(srv.received.size(), big.size());
    EXPECT_TRUE(srv.received == big);
    EXPECT_EQ(cli.received.size(), big.size());
    EXPECT_TRUE(cli.received == big);
    EXPECT_EQ(cli.rd, session::want_input);
    EXPECT_EQ(srv.rd, session::want_input);
  }
}

TEST(tls_session, shutdown_reaches_peer_as_closed) {
  context sctx = server_ctx();
  context cctx = client_ctx();
  endpoint srv = server_end(sctx), cli = client_end(cctx, "mx.test");
  handshake(cli, srv);
  ASSERT_EQ(srv.hs, 1);
  auto quit = bytes("QUIT\r\n");
  ASSERT_EQ(cli.s.write(quit), 6);
  cli.s.shutdown();
  wire{}.pump(cli, srv);
  EXPECT_EQ(srv.received, quit);
  EXPECT_EQ(srv.rd, session::closed);
}

TEST(tls_session, eof_without_close_notify_fails_read) {
  context sctx = server_ctx();
  context cctx = client_ctx();
  endpoint srv = server_end(sctx), cli = client_end(cctx, "mx.test");
  handshake(cli, srv);
  ASSERT_EQ(srv.hs, 1);
  srv.s.feed_eof();
  std::array<std::byte, 64> buf;
  EXPECT_LT(srv.s.read(buf), 0);
}

TEST(tls_verdict, verified_with_the_ca) {
  EXPECT_EQ(verdict_for("server", "mx.test"), cert_verdict::verified);
  EXPECT_EQ(verdict_for("server", "relay1.mx.test"), cert_verdict::verified);  // wildcard
  EXPECT_EQ(verdict_for("server", "localhost"), cert_verdict::verified);
  EXPECT_EQ(verdict_for("server", "127.0.0.3"), cert_verdict::verified);  // IP SAN
}

TEST(tls_verdict, untrusted_without_the_ca) {
  EXPECT_EQ(verdict_for("server", "mx.test", false), cert_verdict::untrusted);
}

TEST(tls_verdict, untrusted_self_signed) {
  EXPECT_EQ(verdict_for("selfsigned", "mx.test"), cert_verdict::untrusted);
}

TEST(tls_verdict, name_mismatch) {
  EXPECT_EQ(verdict_for("wrongname", "mx.test"), cert_verdict::name_mismatch);
  EXPECT_EQ(verdict_for("server", "other.example"), cert_verdict::name_mismatch);
  EXPECT_EQ(verdict_for("server", "a.b.mx.test"), cert_verdict::name_mismatch);  // one label only
  EXPECT_EQ(verdict_for("server", "127.0.0.10"), cert_verdict::name_mismatch);
}

TEST(tls_verdict, expired) {
  EXPECT_EQ(verdict_for("expired", "mx.test"), cert_verdict::expired);
}

TEST(tls_verdict, tokens) {
  EXPECT_STREQ(to_string(cert_verdict::verified), "verified");
  EXPECT_STREQ(to_string(cert_verdict::untrusted), "cert-untrusted");
  EXPECT_STREQ(to_string(cert_verdict::expired), "cert-expired");
  EXPECT_STREQ(to_string(cert_verdict::name_mismatch), "cert-name-mismatch");
}

// Connect to mx.test through the cache and exchange one command/reply, so the client
// also processes a TLS 1.3 ticket that follows the handshake.
endpoint connect_and_talk(const context& sctx, const context& cctx, session_cache& cache,
                          endpoint& srv) {
  srv = server_end(sctx);
  endpoint cli = client_end(cctx, "mx.test", &cache);
  handshake(cli, srv);
  EXPECT_EQ(cli.hs, 1);
  EXPECT_EQ(srv.hs, 1);
  auto reply = bytes("220 mx.test ready\r\n");
  EXPECT_EQ(srv.s.write(reply), static_cast<int>(reply.size()));
  wire{}.pump(cli, srv);
  EXPECT_EQ(cli.received, reply);
  return cli;
}

TEST(tls_resumption, second_connection_resumes_via_cache) {
  for (tls_version max : {tls_version::v1_3, tls_version::v1_2}) {
    SCOPED_TRACE(to_string(max));
    context sctx = server_ctx();
    context cctx = client_ctx(true, tls_version::v1_2, max);
    session_cache cache(4);
    endpoint srv1 = server_end(sctx);
    endpoint cli1 = connect_and_talk(sctx, cctx, cache, srv1);
    EXPECT_FALSE(cli1.s.resumed());
    ASSERT_EQ(cache.size(), 1u);

    endpoint srv2 = server_end(sctx);
    endpoint cli2 = connect_and_talk(sctx, cctx, cache, srv2);
    EXPECT_TRUE(cli2.s.resumed());
    EXPECT_TRUE(srv2.s.resumed());
    EXPECT_EQ(cli2.s.version(), to_string(max));
    // No certificate travels on resumption: the verdict comes from the cache.
    EXPECT_EQ(cli2.s.verdict(), cert_verdict::verified);
    EXPECT_NE(cli2.s.peer_subject().find("CN=mx.test"), std::string::npos);

    // Another host does not resume from mx.test's entry.
    endpoint srv3 = server_end(sctx);
    endpoint cli3 = client_end(cctx, "localhost", &cache);
    handshake(cli3, srv3);
    EXPECT_EQ(cli3.hs, 1);
    EXPECT_FALSE(cli3.s.resumed());
  }
}

// Each shard builds its own server context; a client's next connection may land on any
// shard. The ticket keys are process-wide, so a ticket from one context resumes on another.
TEST(tls_resumption, ticket_from_one_server_context_resumes_on_another) {
  for (tls_version max : {tls_version::v1_3, tls_version::v1_2}) {
    SCOPED_TRACE(to_string(max));
    context shard0 = server_ctx();
    context shard1 = server_ctx();
    context cctx = client_ctx(true, tls_version::v1_2, max);
    session_cache cache(4);
    endpoint srv1 = server_end(shard0);
    endpoint cli1 = connect_and_talk(shard0, cctx, cache, srv1);
    EXPECT_FALSE(cli1.s.resumed());
    ASSERT_EQ(cache.size(), 1u);
    endpoint srv2 = server_end(shard1);
    endpoint cli2 = connect_and_talk(shard1, cctx, cache, srv2);
    EXPECT_TRUE(cli2.s.resumed());
    EXPECT_TRUE(srv2.s.resumed());
    // And back on the first context with the ticket the second one issued.
    endpoint srv3 = server_end(shard0);
    endpoint cli3 = connect_and_talk(shard0, cctx, cache, srv3);
    EXPECT_TRUE(cli3.s.resumed());
  }
}

TEST(tls_resumption, resumed_session_keeps_the_original_verdict) {
  context sctx = server_ctx("wrongname");
  context cctx = client_ctx();
  session_cache cache;
  endpoint srv1 = server_end(sctx);
  endpoint cli1 = connect_and_talk(sctx, cctx, cache, srv1);
  EXPECT_EQ(cli1.s.verdict(), cert_verdict::name_mismatch);
  endpoint srv2 = server_end(sctx);
  endpoint cli2 = connect_and_talk(sctx, cctx, cache, srv2);
  EXPECT_TRUE(cli2.s.resumed());
  EXPECT_EQ(cli2.s.verdict(), cert_verdict::name_mismatch);
}

TEST(tls_resumption, cache_evicts_least_recently_used) {
  context sctx = server_ctx();
  context cctx = client_ctx();
  session_cache cache(2);
  for (const char* host : {"a.mx.test", "b.mx.test", "a.mx.test", "c.mx.test"}) {
    endpoint srv = server_end(sctx);
    endpoint cli = client_end(cctx, host, &cache);
    handshake(cli, srv);
    ASSERT_EQ(cli.hs, 1);
  }
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_NE(cache.find("a.mx.test"), nullptr);
  EXPECT_EQ(cache.find("b.mx.test"), nullptr);
  EXPECT_NE(cache.find("c.mx.test"), nullptr);
  cache.erase("a.mx.test");
  EXPECT_EQ(cache.find("a.mx.test"), nullptr);
}

TEST(tls_failure, garbage_client_hello_fails_cleanly) {
  context sctx = server_ctx();
  for (std::string_view junk : {std::string_view("EHLO client.test\r\nMAIL FROM:<a@b>\r\n"),
                                std::string_view("\x16\x03\x01\x00\x05garbage-garbage", 20)}) {
    endpoint srv = server_end(sctx);
    auto in = bytes(junk);
    srv.s.feed(in);
    EXPECT_LT(srv.s.handshake(), 0);
    EXPECT_STREQ(srv.s.failure_reason(), "handshake-failed");
    EXPECT_NE(srv.s.error_code(), 0);
    // Further calls keep failing without touching the (gone) input.
    std::array<std::byte, 16> out;
    EXPECT_LT(srv.s.read(out), 0);
    EXPECT_LT(srv.s.handshake(), 0);
  }
}

TEST(tls_failure, random_ciphertext_after_handshake_fails_read) {
  context sctx = server_ctx();
  context cctx = client_ctx();
  endpoint srv = server_end(sctx), cli = client_end(cctx, "mx.test");
  handshake(cli, srv);
  ASSERT_EQ(srv.hs, 1);
  std::vector<std::byte> rec = {std::byte{0x17}, std::byte{0x03}, std::byte{0x03},
                                std::byte{0x00}, std::byte{0x20}};
  rec.resize(5 + 32, std::byte{0x5a});
  srv.s.feed(rec);
  std::array<std::byte, 64> out;
  EXPECT_EQ(srv.s.read(out), session::failed);
}

TEST(tls_failure, tls13_only_server_rejects_tls12_only_client) {
  context sctx = server_ctx("server", tls_version::v1_3);
  context cctx = client_ctx(true, tls_version::v1_2, tls_version::v1_2);
  endpoint srv = server_end(sctx), cli = client_end(cctx, "mx.test");
  handshake(cli, srv);
  EXPECT_LT(srv.hs, 0);
  EXPECT_LT(cli.hs, 0);
  EXPECT_STREQ(srv.s.failure_reason(), "old-protocol");
  EXPECT_STREQ(cli.s.failure_reason(), "old-protocol");
  EXPECT_FALSE(cli.s.handshake_done());
  EXPECT_EQ(cli.s.verdict(), cert_verdict::none);
}

// Heap held per idle server session after the handshake (clients freed, wire drained).
TEST(tls_memory, idle_server_session_is_small) {
  constexpr int n = 200;
  context sctx = server_ctx();
  context cctx = client_ctx();
  std::vector<endpoint> servers;
  servers.reserve(n);
  // Warm up wolfSSL's lazily built, process-wide state first (FP_ECC fixed-point tables
  // fill over the first few handshakes), so the delta is per-session memory only.
  for (int i = 0; i < 20; ++i) {
    endpoint srv = server_end(sctx), cli = client_end(cctx, "mx.test");
    handshake(cli, srv);
  }
  size_t before = mallinfo2().uordblks;
  for (int i = 0; i < n; ++i) {
    endpoint srv = server_end(sctx);
    endpoint cli = client_end(cctx, "mx.test");
    handshake(cli, srv);
    ASSERT_EQ(srv.hs, 1);
    servers.push_back(std::move(srv));
  }
  size_t after = mallinfo2().uordblks;
  double per = double(after - before) / n;
  RecordProperty("heap_bytes_per_idle_session", static_cast<int>(per));
  printf("heap per idle TLS 1.3 server session: %.0f bytes\n", per);
  EXPECT_LT(per, 64 * 1024);
}

}  // namespace
