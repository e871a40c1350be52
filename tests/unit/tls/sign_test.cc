// tls/sign.hh: SHA-256 streaming against the FIPS 180-2 vectors, and signatures of a
// digest checked by `openssl pkeyutl -verify` (RSA PKCS#1 v1.5 with SHA-256 DigestInfo;
// Ed25519 over the 32 digest bytes, -rawin), keys made by openssl genpkey.
#include <gtest/gtest.h>

#include <string>

#include "sealrelay/tls/sign.hh"
#include "support/cert_files.hh"
#include "support/file_io.hh"
#include "support/temp_dir.hh"

namespace {

using sr::test::run_pipeline;
using sr::test::shell_quote;

std::string hex(const sr::tls::sha256_digest& d) {
  static const char* x = "0123456789abcdef";
  std::string s;
  for (uint8_t b : d) {
    s += x[b >> 4];
    s += x[b & 15];
  }
  return s;
}

TEST(TlsSign, Sha256StreamVectors) {
  sr::tls::sha256_stream h;
  h.update(std::string_view("abc"));
  EXPECT_EQ(hex(h.finish()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // finish() starts over; pieces hash like the whole.
  EXPECT_EQ(hex(h.finish()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string s = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  for (std::size_t cut = 0; cut <= s.size(); cut += 7) {
    h.update(std::string_view(s).substr(0, cut));
    h.update(std::string_view(s).substr(cut));
    EXPECT_EQ(hex(h.finish()), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  }
}

TEST(TlsSign, SignaturesVerifyWithOpenssl) {
  sr::test::temp_dir dir("sealrelay-sign");
  const std::string d = dir.path().string();
  auto sh = [&](const std::string& cmd) { return run_pipeline("cd " + shell_quote(d) + " && " + cmd); };
  if (!sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem 2>/dev/null && "
          "openssl genpkey -algorithm ed25519 -out ed.pem 2>/dev/null && "
          "openssl pkey -in rsa.pem -pubout -out rsa.pub && openssl pkey -in ed.pem -pubout -out ed.pub"))
    GTEST_SKIP() << "openssl genpkey failed or is missing";
  sr::tls::sha256_stream h;
  h.update(std::string_view("message to sign"));
  const auto digest = h.finish();
  sr::test::write_file(dir.path() / "digest.bin",
                       std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
  struct kase {
    const char* key;
    sr::tls::key_kind kind;
    unsigned bits;
    std::size_t sig_size;
    const char* verify;
  };
  for (const kase& c : {kase{"rsa", sr::tls::key_kind::rsa, 2048, 256,
                             "openssl pkeyutl -verify -pubin -inkey rsa.pub -pkeyopt digest:sha256 "
                             "-in digest.bin -sigfile sig.bin"},
                        kase{"ed", sr::tls::key_kind::ed25519, 256, 64,
                             "openssl pkeyutl -verify -pubin -inkey ed.pub -rawin -in digest.bin "
                             "-sigfile sig.bin"}}) {
    auto key = sr::tls::signing_key::load_pem_file(d + "/" + c.key + ".pem");
    ASSERT_TRUE(key.ok()) << key.err();
    EXPECT_EQ(key->kind(), c.kind);
    EXPECT_EQ(key->bits(), c.bits);
    auto sig = key->sign_digest(digest);
    ASSERT_TRUE(sig.ok()) << sig.err();
    ASSERT_EQ(sig->size(), c.sig_size);
    sr::test::write_file(dir.path() / "sig.bin",
                         std::string_view(reinterpret_cast<const char*>(sig->data()), sig->size()));
    EXPECT_TRUE(sh(std::string(c.verify) + " >/dev/null")) << c.key;
    // One bit off in the signature: openssl refuses it.
    (*sig)[10] ^= 1;
    sr::test::write_file(dir.path() / "sig.bin",
                         std::string_view(reinterpret_cast<const char*>(sig->data()), sig->size()));
    EXPECT_FALSE(sh(std::string(c.verify) + " >/dev/null 2>&1")) << c.key;
  }
}

}  // namespace
