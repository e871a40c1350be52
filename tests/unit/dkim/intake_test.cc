// dkim::signing_intake on a real shard in front of a recording intake: a message in
// several iovecs (our Received: first, the body split anywhere) from a signing domain is
// stored with its DKIM-Signature on top and verifies with dkimpy (RSA through the worker
// pool, Ed25519 inline); other domains pass untouched; submit_owned (our DSNs, reports) is
// signed too; clients hear "stored" only after the inner intake answered, and in_flight()
// counts messages waiting for their signature; a full pool means signing inline. Also:
// from_domain and the signer set.
#include <gtest/gtest.h>

#include <ctime>
#include <string>
#include <vector>

#include "sealrelay/dkim/intake.hh"
#include "sealrelay/dkim/pool.hh"
#include "sealrelay/dkim/signers.hh"
#include "test_keys.hh"

namespace {

using namespace sr;

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

using sr::test::dkim::suite_keys;
using sr::test::dkim::verify;

std::vector<dkim::key_entry> entries() {
  return {{.domain = "rsa.example", .selector = "r1", .key_file = suite_keys().rsa_pem},
          {.domain = "ed.example", .selector = "e1", .key_file = suite_keys().ed_pem, .kind = tls::key_kind::ed25519}};
}

// The spool's stand-in: keeps what it was given as one string and answers on the next post.
struct recording_intake final : spool::intake {
  core::shard& sh;
  std::vector<std::string> stored;
  size_t waiting = 0;
  explicit recording_intake(core::shard& s) : sh(s) {}
  std::string next_queue_id() override { return "Q1"; }
  void submit(spool::message_meta, std::span<const iovec> data, spool::intake_client* c) override {
    std::string t;
    for (const auto& v : data) t.append(static_cast<const char*>(v.iov_base), v.iov_len);
    stored.push_back(std::move(t));
    ++waiting;
    sh.post([this, c] {
      --waiting;
      c->on_stored(true);
    });
  }
  void submit_owned(spool::message_meta, std::string text, std::function<void(bool)> done) override {
    stored.push_back(std::move(text));
    ++waiting;
    sh.post([this, done] {
      --waiting;
      done(true);
    });
  }
  size_t in_flight() const override { return waiting; }
};

struct client final : spool::intake_client {
  int answers = 0;
  void on_stored(bool ok) override { answers += ok ? 1 : 100; }
};

std::string message(const std::string& from_domain) {
  std::string body;
  for (int i = 0; i < 200; ++i) body += "line " + std::to_string(i) + "   with  spaces \t\r\n";
  return "From: \"Sender\" <someone@" + from_domain + ">\r\nTo: rcpt@dest.example\r\nSubject: s\r\n"
         "Date: Mon, 07 Dec 2026 04:00:00 +0000\r\nMessage-ID: <" + from_domain + "@x>\r\n\r\n" + body + "\r\n\r\n";
}

TEST(dkim_from_domain, first_address_of_the_from_field) {
  auto dom = [](const std::string& m) {
    const std::span<const std::byte> one{reinterpret_cast<const std::byte*>(m.data()), m.size()};
    return dkim::from_domain({&one, 1});
  };
  EXPECT_EQ(dom("Received: x\r\nFROM :  Alice <a@Example.ORG>\r\n\r\nbody From: b@c.d\r\n"), "example.org");
  EXPECT_EQ(dom("From: \"Team\"\r\n <team@x.test>, b@y.test\r\n\r\n"), "x.test");
  EXPECT_EQ(dom("To: a@b.c\r\n\r\nFrom: a@b.c\r\n"), "");
  EXPECT_EQ(dom("From: nobody\r\n\r\n"), "");
}

TEST(dkim_signing_intake, signs_at_intake_rsa_on_the_pool_ed25519_inline) {
  if (!suite_keys().ok) GTEST_SKIP() << "openssl genpkey failed or is missing";
  core::shard sh(core::shard::options{.tick_ms = 5});
  ASSERT_TRUE(sh.init()) << "io_uring unavailable";
  auto pool = dkim::sign_pool::create(entries(), 2);
  ASSERT_TRUE(pool.ok()) << pool.err();
  ASSERT_TRUE(*pool);
  EXPECT_TRUE((*pool)->handles(0));
  EXPECT_FALSE((*pool)->handles(1));
  (*pool)->attach(sh);
  auto set = dkim::signers::load(entries());
  ASSERT_TRUE(set.ok()) << set.err();
  recording_intake inner(sh);
  dkim::signing_intake in(sh, inner, std::move(*set), pool->get());

  const std::string received = "Received: from client by relay.example with ESMTPS id Q1\r\n";
  const std::vector<std::string> texts = {message("rsa.example"), message("ED.example"), message("other.example")};
  std::vector<client> clients(3);
  std::vector<std::vector<iovec>> iovs(3);
  size_t waiting_for_signature = 0;
  bool owned_done = false;
  uint64_t deadline = 0;
  sh.post([&] {
    deadline = sh.now_ms() + 20000;
    for (size_t i = 0; i < texts.size(); ++i) {
      // Received: first, then the message cut into odd pieces (a CRLF split across two).
      iovs[i].push_back({const_cast<char*>(received.data()), received.size()});
      for (size_t off = 0; off < texts[i].size(); off += 1001)
        iovs[i].push_back({const_cast<char*>(texts[i].data()) + off, std::min<size_t>(1001, texts[i].size() - off)});
      in.submit({}, iovs[i], &clients[i]);
    }
    // The RSA message waits for the pool; the others went straight through.
    waiting_for_signature = in.in_flight() - inner.in_flight();
    in.submit_owned({}, message("rsa.example"), [&](bool ok) { owned_done = ok; });
  });
  sh.on_tick([&] {
    if ((clients[0].answers && clients[1].answers && clients[2].answers && owned_done && in.in_flight() == 0) ||
        sh.now_ms() > deadline)
      sh.stop();
  });
  sh.run();
  EXPECT_EQ(waiting_for_signature, 1u);
  for (const auto& c : clients) EXPECT_EQ(c.answers, 1);
  EXPECT_TRUE(owned_done);
  EXPECT_EQ(in.in_flight(), 0u);
  EXPECT_EQ(in.stats().signed_pool, 2u);
  EXPECT_EQ(in.stats().signed_inline, 1u);
  ASSERT_EQ(inner.stored.size(), 4u);

  std::string diag;
  for (const auto& s : inner.stored) {
    if (contains(s, "<other.example@x>")) {
      EXPECT_EQ(s, received + texts[2]);  // untouched
      continue;
    }
    const bool ed = contains(s, "<ED.example@x>");
    SCOPED_TRACE(s.substr(0, 400));
    ASSERT_TRUE(s.starts_with(ed ? "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=ed.example; s=e1;"
                                 : "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=rsa.example; s=r1;"));
    int rc = verify(s, ed ? suite_keys().ed_txt : suite_keys().rsa_txt, &diag);
    if (rc == 77) GTEST_SKIP() << diag;
    EXPECT_EQ(rc, 0) << diag;
  }
}

TEST(dkim_signing_intake, streamed_messages_are_signed_from_their_pieces) {
  // A large message streamed to a body file: signer_for() by the header section, bytes fed
  // as they stream, finish() answers with the field (RSA from the pool, on the shard).
  if (!suite_keys().ok) GTEST_SKIP() << "openssl genpkey failed or is missing";
  core::shard sh(core::shard::options{.tick_ms = 5});
  ASSERT_TRUE(sh.init()) << "io_uring unavailable";
  auto pool = dkim::sign_pool::create(entries(), 1);
  ASSERT_TRUE(pool.ok()) << pool.err();
  (*pool)->attach(sh);
  auto set = dkim::signers::load(entries());
  ASSERT_TRUE(set.ok()) << set.err();
  recording_intake inner(sh);
  dkim::signing_intake in(sh, inner, std::move(*set), pool->get());

  const std::vector<std::string> texts = {message("rsa.example"), message("ED.example")};
  EXPECT_EQ(in.signer_for(message("other.example").substr(0, message("other.example").find("\r\n\r\n") + 4)), nullptr);
  std::vector<std::string> fields(texts.size());
  std::vector<bool> done(texts.size());
  bool was_inline[2] = {false, false};
  uint64_t deadline = 0;
  std::vector<std::unique_ptr<spool::stream_signer>> signers;
  sh.post([&] {
    deadline = sh.now_ms() + 20000;
    for (size_t i = 0; i < texts.size(); ++i) {
      auto s = in.signer_for(texts[i].substr(0, texts[i].find("\r\n\r\n") + 4));
      ASSERT_TRUE(s);
      for (size_t off = 0; off < texts[i].size(); off += 333)
        s->feed({reinterpret_cast<const std::byte*>(texts[i].data()) + off, std::min<size_t>(333, texts[i].size() - off)});
      s->finish([&, i](std::string f) {
        fields[i] = std::move(f);
        done[i] = true;
      });
      was_inline[i] = done[i];
      signers.push_back(std::move(s));
    }
  });
  sh.on_tick([&] {
    if ((done[0] && done[1]) || sh.now_ms() > deadline) sh.stop();
  });
  sh.run();
  EXPECT_FALSE(was_inline[0]);  // RSA: on the pool
  EXPECT_TRUE(was_inline[1]);   // Ed25519: inline
  EXPECT_EQ(in.stats().signed_pool, 1u);
  EXPECT_EQ(in.stats().signed_inline, 1u);
  EXPECT_EQ(in.in_flight(), 0u);
  std::string diag;
  for (size_t i = 0; i < texts.size(); ++i) {
    ASSERT_TRUE(done[i]);
    ASSERT_TRUE(fields[i].starts_with("DKIM-Signature: v=1;")) << fields[i];
    int rc = verify(fields[i] + texts[i], i == 0 ? suite_keys().rsa_txt : suite_keys().ed_txt, &diag);
    if (rc == 77) GTEST_SKIP() << diag;
    EXPECT_EQ(rc, 0) << diag;
  }
}

TEST(dkim_signers, sign_owned_and_bad_entries) {
  if (!suite_keys().ok) GTEST_SKIP() << "openssl genpkey failed or is missing";
  auto set = dkim::signers::load(entries());
  ASSERT_TRUE(set.ok()) << set.err();
  std::string m = message("ed.example"), n = message("nowhere.example");
  EXPECT_TRUE(set->sign_owned(m, std::time(nullptr)));
  EXPECT_FALSE(set->sign_owned(n, std::time(nullptr)));
  EXPECT_EQ(n, message("nowhere.example"));
  std::string diag;
  int rc = verify(m, suite_keys().ed_txt, &diag);
  if (rc != 77) {
    EXPECT_EQ(rc, 0) << diag;
  }

  auto bad = entries();
  bad[1].kind = tls::key_kind::rsa;  // an Ed25519 key configured as rsa-sha256
  auto r = dkim::signers::load(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.err().starts_with("dkim[1].algorithm:")) << r.err();
  bad = entries();
  bad[0].key_file = suite_keys().dir.path().string() + "/missing.pem";
  r = dkim::signers::load(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.err().starts_with("dkim[0].key_file:")) << r.err();
}

}  // namespace

namespace {

// A full pool (bound 0 here) is no reason to go unsigned: the shard signs inline.
TEST(dkim_signing_intake, full_pool_signs_inline) {
  if (!suite_keys().ok) GTEST_SKIP() << "openssl genpkey failed or is missing";
  core::shard sh(core::shard::options{.tick_ms = 5});
  ASSERT_TRUE(sh.init()) << "io_uring unavailable";
  auto pool = dkim::sign_pool::create(entries(), 1, 0);
  ASSERT_TRUE(pool.ok() && *pool) << (pool.ok() ? "" : pool.err());
  (*pool)->attach(sh);
  auto set = dkim::signers::load(entries());
  ASSERT_TRUE(set.ok()) << set.err();
  recording_intake inner(sh);
  dkim::signing_intake in(sh, inner, std::move(*set), pool->get());
  bool done = false;
  uint64_t deadline = 0;
  sh.post([&] {
    deadline = sh.now_ms() + 10000;
    in.submit_owned({}, message("rsa.example"), [&](bool ok) { done = ok; });
  });
  sh.on_tick([&] {
    if (done || sh.now_ms() > deadline) sh.stop();
  });
  sh.run();
  ASSERT_TRUE(done);
  EXPECT_EQ(in.stats().signed_inline, 1u);
  EXPECT_EQ(in.stats().signed_pool, 0u);
  ASSERT_EQ(inner.stored.size(), 1u);
  std::string diag;
  int rc = verify(inner.stored[0], suite_keys().rsa_txt, &diag);
  if (rc == 77) GTEST_SKIP() << diag;
  EXPECT_EQ(rc, 0) << diag;
}

}  // namespace
