// The DKIM signer against an independent verifier: dkimpy (Debian python3-dkim, run by
// tests/tools/dkim_verify.py with the public key as a TXT record from a file), keys made
// by `openssl genpkey` (RSA 2048, RSA 1024, Ed25519). Folded headers, 8-bit bodies, empty
// bodies, long lines, chunk chains split anywhere; a tampered body or header, or an added
// From, must fail. Skips (with the reason) when dkimpy or openssl is missing.
#include <gtest/gtest.h>

#include <ctime>
#include <regex>
#include <string>
#include <vector>

#include "sealrelay/dkim/signer.hh"
#include "sealrelay/tls/sign.hh"
#include "support/cert_files.hh"
#include "support/file_io.hh"
#include "support/temp_dir.hh"
#include "test_keys.hh"

namespace {

using sr::dkim::message_hash;
using sr::dkim::signer;
using sr::dkim::signer_config;
using sr::test::run_pipeline;
using sr::test::shell_quote;
using sr::test::write_file;

using sr::test::dkim::suite_keys;
using sr::test::dkim::verify;

signer make_signer(const std::string& pem_file, std::vector<std::string> headers = {}) {
  auto key = sr::tls::signing_key::load_pem_file(pem_file);
  EXPECT_TRUE(key.ok()) << (key.ok() ? "" : key.err());
  signer_config c;
  c.domain = "example.org";
  c.selector = "sel2026";
  if (!headers.empty()) c.headers = std::move(headers);
  auto s = signer::create(std::move(c), std::move(*key));
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.err());
  return std::move(*s);
}

std::string sign(signer& s, const std::string& msg) {
  auto r = s.sign(msg, std::time(nullptr));
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err());
  return r.ok() ? *r : std::string();
}

const std::string plain =
    "From: Alice <alice@example.org>\r\n"
    "To: bob@example.net\r\n"
    "Subject: hello\r\n"
    "Date: Mon, 07 Dec 2026 02:40:00 +0000\r\n"
    "Message-ID: <1@example.org>\r\n"
    "\r\n"
    "Hello Bob.\r\n";

const std::string folded =
    "Received: from a by b; Mon, 07 Dec 2026 02:40:00 +0000\r\n"
    "From: \"Alice  Q.\"\r\n\t<alice@example.org>\r\n"
    "To: bob@example.net,\r\n  carol@example.net,\r\n\tdave@example.net\r\n"
    "Cc: eve@example.net\r\n"
    "Subject: a subject that goes on and on,\r\n folded over   lines  \t\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain;\r\n charset=\"utf-8\"\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "X-Other: not signed\r\n"
    "\r\n"
    "Gr\xc3\xbc\xc3\x9f" "e  aus  M\xc3\xbc" "nchen \t \r\n"
    "\r\n"
    "Latin-1 too: \xe9\xe8\xff\r\n"
    "\r\n\r\n";

class DkimSigner : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!suite_keys().ok) GTEST_SKIP() << suite_keys().why;
    const int probe = verify("From: a@b\r\n\r\n", "v=DKIM1; p=");
    if (probe == 77) GTEST_SKIP() << "python3-dkim (dkimpy) is not installed (tools/install-deps)";
  }
  sr::test::dkim::keys& k() { return suite_keys(); }
};

std::vector<std::string> messages() {
  std::string long_lines =
      "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: long\r\n\r\n";
  for (int i = 0; i < 20; ++i) long_lines += std::string(1000 + i * 37, static_cast<char>('a' + i)) + " \t\r\n";
  return {plain, folded,
          "From: alice@example.org\r\nSubject: empty body\r\n\r\n",         // empty body
          "From: alice@example.org\r\nSubject: no body at all\r\n",         // no empty line
          "From: alice@example.org\r\nSubject: blank\r\n\r\n\r\n\r\n\r\n",  // only empty lines
          long_lines};
}

TEST_F(DkimSigner, RsaSignaturesVerifyWithDkimpy) {
  signer s = make_signer(k().rsa_pem);
  EXPECT_EQ(s.algorithm(), "rsa-sha256");
  for (const auto& m : messages()) {
    const std::string h = sign(s, m);
    std::string diag;
    EXPECT_EQ(verify(h + m, k().rsa_txt, &diag), 0) << diag << h + m;
  }
}

TEST_F(DkimSigner, Ed25519SignaturesVerifyWithDkimpy) {
  signer s = make_signer(k().ed_pem);
  EXPECT_EQ(s.algorithm(), "ed25519-sha256");
  for (const auto& m : messages()) {
    const std::string h = sign(s, m);
    EXPECT_NE(h.find("a=ed25519-sha256;"), std::string::npos);
    std::string diag;
    EXPECT_EQ(verify(h + m, k().ed_txt, &diag), 0) << diag << h + m;
  }
}

TEST_F(DkimSigner, PkcsOneAndShortRsaKeysLoad) {
  std::string warning;
  auto k1024 = sr::tls::signing_key::load_pem_file(k().rsa1024_pem, &warning);
  ASSERT_TRUE(k1024.ok()) << k1024.err();
  EXPECT_EQ(k1024->bits(), 1024u);
  EXPECT_NE(warning.find("2048"), std::string::npos) << warning;
  warning.clear();
  auto pkcs1 = sr::tls::signing_key::load_pem_file(k().rsa_pkcs1_pem, &warning);
  ASSERT_TRUE(pkcs1.ok()) << pkcs1.err();
  EXPECT_EQ(pkcs1->bits(), 2048u);
  EXPECT_TRUE(warning.empty());
  // The PKCS#1 file holds the same key as rsa.pem: its signature verifies under rsa.pem's TXT.
  signer s = make_signer(k().rsa_pkcs1_pem);
  EXPECT_EQ(verify(sign(s, plain) + plain, k().rsa_txt), 0);
}

TEST_F(DkimSigner, BadKeysAreRefused) {
  const auto d = k().dir.path();
  ASSERT_TRUE(run_pipeline("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:768 -out " +
                           shell_quote((d / "rsa768.pem").string()) + " 2>/dev/null"));
  auto small = sr::tls::signing_key::load_pem_file((d / "rsa768.pem").string());
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.err().find("1024"), std::string::npos) << small.err();
  write_file(d / "junk.pem", "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n");
  EXPECT_FALSE(sr::tls::signing_key::load_pem_file((d / "junk.pem").string()).ok());
  EXPECT_FALSE(sr::tls::signing_key::load_pem_file((d / "missing.pem").string()).ok());
  ASSERT_TRUE(run_pipeline("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " +
                           shell_quote((d / "ec.pem").string()) + " 2>/dev/null"));
  EXPECT_FALSE(sr::tls::signing_key::load_pem_file((d / "ec.pem").string()).ok());
}

TEST_F(DkimSigner, TamperedMessagesFail) {
  for (const auto* file : {&k().rsa_pem, &k().ed_pem}) {
    const std::string& txt = file == &k().rsa_pem ? k().rsa_txt : k().ed_txt;
    signer s = make_signer(*file);
    const std::string signed_msg = sign(s, folded) + folded;
    ASSERT_EQ(verify(signed_msg, txt), 0);
    std::string body = signed_msg;
    body.replace(body.find("Latin-1"), 1, "l");
    EXPECT_EQ(verify(body, txt), 1) << "body changed";
    std::string subject = signed_msg;
    subject.replace(subject.find("on and on"), 2, "in");
    EXPECT_EQ(verify(subject, txt), 1) << "subject changed";
    // Over-signed From: a second From added on top breaks the signature.
    EXPECT_EQ(verify("From: mallory@example.com\r\n" + signed_msg, txt), 1) << "From added";
    // An unsigned field may be added (X-Other is not in h=), and relaxed WSP changes pass.
    EXPECT_EQ(verify("X-Added: yes\r\n" + signed_msg, txt), 0);
    std::string ws = signed_msg;
    ws.replace(ws.find("Subject: a"), 10, "Subject:   a");
    EXPECT_EQ(verify(ws, txt), 0) << "relaxed header WSP";
    // Another key's record does not verify.
    EXPECT_EQ(verify(signed_msg, file == &k().rsa_pem ? k().ed_txt : k().rsa_txt), 1);
  }
}

TEST_F(DkimSigner, ChunkChainsSignLikeTheWholeMessage) {
  // Ed25519 is deterministic: every split of the message must give the same field.
  signer s = make_signer(k().ed_pem);
  const std::string whole = sign(s, folded);
  const auto bytes = reinterpret_cast<const std::byte*>(folded.data());
  const std::size_t blank = folded.find("\r\n\r\n");
  // Every split point near the header/body boundary, plus a few inside headers and body.
  std::vector<std::size_t> cuts;
  for (std::size_t i = blank - 3; i <= blank + 6; ++i) cuts.push_back(i);
  for (std::size_t i : {0ul, 1ul, 17ul, 100ul, folded.size() - 2, folded.size()}) cuts.push_back(i);
  for (std::size_t a : cuts) {
    for (std::size_t b : {a, a + 1, a + 7}) {
      if (b > folded.size()) continue;
      std::span<const std::byte> parts[3] = {{bytes, a}, {bytes + a, b - a}, {bytes + b, folded.size() - b}};
      auto r = s.sign(std::span<const std::span<const std::byte>>(parts, 3), 1796611200);
      ASSERT_TRUE(r.ok());
      auto ref = s.sign(folded, 1796611200);
      ASSERT_EQ(*r, *ref) << "cut at " << a << "," << b;
    }
  }
  EXPECT_EQ(verify(whole + folded, k().ed_txt), 0);
}

TEST_F(DkimSigner, MessageFedInPiecesSignsLikeTheWholeMessage) {
  // The streamed path (a large message hashed as it goes to its body file): bytes fed in
  // pieces of any size, down to one byte, give the field of the whole message.
  signer s = make_signer(k().ed_pem);
  auto ref = s.sign(folded, 1796611200);
  ASSERT_TRUE(ref.ok());
  const auto bytes = reinterpret_cast<const std::byte*>(folded.data());
  for (std::size_t step : {1ul, 2ul, 3ul, 7ul, 64ul, folded.size()}) {
    message_hash m;
    for (std::size_t i = 0; i < folded.size(); i += step) m.feed({bytes + i, std::min(step, folded.size() - i)});
    auto p = s.prepare(m, 1796611200);
    ASSERT_TRUE(p.ok()) << p.err();
    auto f = s.finish(std::move(*p));
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(*f, *ref) << "pieces of " << step;
  }
  // A header section past 1 MiB is refused, as for a message in memory.
  message_hash big;
  const std::string huge = "From: <a@ed.test>\r\nX: " + std::string(1 << 20, 'x') + "\r\n\r\nbody\r\n";
  big.feed({reinterpret_cast<const std::byte*>(huge.data()), huge.size()});
  EXPECT_FALSE(s.prepare(big, 0).ok());
  // The in-memory path still reuses its scratch and gives the same field afterwards.
  EXPECT_EQ(*s.sign(folded, 1796611200), *ref);
}

TEST_F(DkimSigner, FieldIsFoldedAndNamesOnlyPresentHeaders) {
  signer s = make_signer(k().rsa_pem);
  const std::string h = sign(s, folded);
  // Lines of at most 78 columns (HTAB counted as 8), each continuation starting with HTAB.
  std::size_t pos = 0;
  int lines = 0;
  while (pos < h.size()) {
    const std::size_t e = h.find("\r\n", pos);
    ASSERT_NE(e, std::string::npos);
    std::string line = h.substr(pos, e - pos);
    std::size_t cols = line.size() + (line.starts_with("\t") ? 7 : 0);
    EXPECT_LE(cols, 78u) << line;
    if (lines > 0) {
      EXPECT_TRUE(line.starts_with("\t")) << line;
    }
    pos = e + 2;
    ++lines;
  }
  EXPECT_GT(lines, 4);
  EXPECT_TRUE(h.starts_with("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;"));
  std::string unfolded = std::regex_replace(h, std::regex("\r\n\t"), "");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(unfolded, m, std::regex("h=([^;]*);")));
  EXPECT_EQ(m[1].str(),
            "from:from:subject:to:cc:mime-version:content-type:content-transfer-encoding");
  EXPECT_EQ(unfolded.find("x-other"), std::string::npos);
  EXPECT_EQ(unfolded.find("received"), std::string::npos);
}

TEST_F(DkimSigner, EmptyBodyHashIsTheRfcValue) {
  signer s = make_signer(k().ed_pem);
  for (const std::string m : {"From: a@example.org\r\n\r\n", "From: a@example.org\r\n",
                              "From: a@example.org\r\n\r\n\r\n \r\n"}) {
    // SHA-256 of the empty string: the relaxed hash of an empty body (RFC 6376 §3.4.4).
    EXPECT_NE(sign(s, m).find("bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;"), std::string::npos) << m;
  }
}

TEST_F(DkimSigner, ConfiguredListAndDuplicateFields) {
  signer s = make_signer(k().rsa_pem, {"From", "Subject", "Received"});
  const std::string m = "Received: one\r\nReceived: two\r\n" + plain;
  const std::string h = sign(s, m);
  std::string unfolded = std::regex_replace(h, std::regex("\r\n\t"), "");
  EXPECT_NE(unfolded.find("h=from:from:subject:received:received;"), std::string::npos) << h;
  EXPECT_EQ(verify(h + m, k().rsa_txt), 0);
  // Reordering the two Received fields breaks it (instances are signed bottom up).
  const std::string swapped = "Received: two\r\nReceived: one\r\n" + plain;
  EXPECT_EQ(verify(h + swapped, k().rsa_txt), 1);
}

TEST_F(DkimSigner, PrepareOnOneKeySignOnAnother) {
  // The split the relay may use: hash on the shard, the RSA operation on a worker with
  // its own key object loaded from the same file.
  signer s = make_signer(k().rsa_pem);
  auto worker_key = sr::tls::signing_key::load_pem_file(k().rsa_pem);
  ASSERT_TRUE(worker_key.ok());
  for (const auto& m : messages()) {
    auto p = s.prepare(std::span<const std::span<const std::byte>>(), 0);  // no message: no From
    EXPECT_FALSE(p.ok());
    const std::span<const std::byte> one{reinterpret_cast<const std::byte*>(m.data()), m.size()};
    p = s.prepare(std::span<const std::span<const std::byte>>(&one, 1), std::time(nullptr));
    ASSERT_TRUE(p.ok()) << p.err();
    EXPECT_TRUE(p->field.ends_with("b="));
    auto sig = worker_key->sign_digest(p->digest);
    ASSERT_TRUE(sig.ok()) << sig.err();
    const std::string field = signer::complete(std::move(*p), *sig);
    std::string diag;
    EXPECT_EQ(verify(field + m, k().rsa_txt, &diag), 0) << diag << field;
  }
}

TEST_F(DkimSigner, BadConfigAndMessagesAreRefused) {
  auto key = [&] { return std::move(*sr::tls::signing_key::load_pem_file(k().ed_pem)); };
  EXPECT_FALSE(signer::create({.domain = "exa mple.org", .selector = "s"}, key()).ok());
  EXPECT_FALSE(signer::create({.domain = "example.org", .selector = "s;x=1"}, key()).ok());
  EXPECT_FALSE(signer::create({.domain = "example.org", .selector = "s", .headers = {"subject"}}, key()).ok());
  EXPECT_FALSE(
      signer::create({.domain = "example.org", .selector = "s", .headers = {"from", "bad:name"}}, key()).ok());
  signer s = make_signer(k().ed_pem);
  EXPECT_FALSE(s.sign("Subject: no from\r\n\r\nbody\r\n", 0).ok());
}

}  // namespace
