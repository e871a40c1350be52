// tls::smime_envelope and load_smime_cert against the openssl command line: a recipient key
// and certificate made by openssl in a temp dir, the envelope opened by `openssl cms
// -decrypt` and its inner entity compared byte for byte with the original; a wrong key does
// not open it; an EC certificate and unsafe addresses are refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "sealrelay/tls/smime.hh"
#include "support/file_io.hh"
#include "support/cert_files.hh"
#include "support/temp_dir.hh"

namespace {

using sr::test::read_file;
using sr::test::write_file;

using sr::test::run_pipeline;
using sr::test::shell_quote;
using sr::tls::load_smime_cert;
using sr::tls::smime_address_safe;
using sr::tls::smime_envelope;



// A temp dir holding keys and self-signed certificates made by openssl.
class smime : public ::testing::Test {
 protected:
  std::string file(const std::string& name) const { return (_dir.path() / name).string(); }

  // Make <stem>.key and <stem>.crt: RSA-2048, or EC P-256 when `ec`; false when openssl fails.
  bool make_identity(const std::string& stem, const std::string& cn, bool ec = false) {
    std::string key = shell_quote(file(stem + ".key")), crt = shell_quote(file(stem + ".crt"));
    std::string gen = ec ? "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + key
                         : "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + key;
    return run_pipeline(gen + " 2>/dev/null && openssl req -x509 -new -key " + key + " -out " + crt +
                        " -days 30 -subj " + shell_quote("/CN=" + cn) + " 2>/dev/null")
        .has_value();
  }

  // What `openssl cms -decrypt` prints for the S/MIME message in `p7m_file`; nullopt when
  // it fails. `with_recip` names the certificate as well (-recip).
  std::optional<std::string> decrypt(const std::string& p7m_file, const std::string& stem,
                                     bool with_recip = true) {
    std::string cmd = "openssl cms -decrypt -in " + shell_quote(p7m_file) + " -inkey " +
                      shell_quote(file(stem + ".key"));
    if (with_recip) cmd += " -recip " + shell_quote(file(stem + ".crt"));
    return run_pipeline(cmd + " 2>/dev/null");
  }

  sr::test::temp_dir _dir{"sealrelay-smime"};
};

// A message with a text body and a base64 attachment, CRLF throughout.
const std::string message =
    "Received: from client.test by relay.test; Mon, 7 Dec 2026 00:00:00 +0000\r\n"
    "From: Alice <alice@bank.test>\r\n"
    "To: Bob <bob@clinic.test>\r\n"
    "Cc: carol@clinic.test\r\n"
    "Subject: Lab results for\r\n"
    " patient 4711\r\n"
    "Date: Mon, 7 Dec 2026 00:00:00 +0000\r\n"
    "Message-ID: <m1@bank.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Dear Bob, the results are attached. Gr\xc3\xbc\xc3\x9f\x65.\r\n"
    "\r\n"
    "--b1\r\n"
    "Content-Type: application/pdf; name=\"results.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "Content-Disposition: attachment; filename=\"results.pdf\"\r\n"
    "\r\n"
    "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSL0ZpbHRlci9GbGF0ZURl\r\n"
    "Y29kZT4+CnN0cmVhbQp4nDPQM1Qo5ypUMFAwALJMLU31jBQsTAz1LBSKUrnCtRTyuAIVAIJ0B+kK\r\n"
    "--b1--\r\n";

// The header of an S/MIME message `m` (up to and including the blank line) and its lines.
std::string header_of(const std::string& m) { return m.substr(0, m.find("\r\n\r\n") + 4); }

TEST_F(smime, openssl_opens_it_and_the_inner_entity_is_the_message) {
  ASSERT_TRUE(make_identity("bob", "bob@clinic.test"));
  auto env = smime_envelope(message, read_file(file("bob.crt")));
  ASSERT_TRUE(env.ok()) << env.err();
  write_file(file("m.eml"), *env);
  auto inner = decrypt(file("m.eml"), "bob");
  ASSERT_TRUE(inner.has_value()) << "openssl cms -decrypt failed";
  EXPECT_EQ(*inner, message);
  // Without -recip openssl tries the key on every recipient; it opens as well.
  auto again = decrypt(file("m.eml"), "bob", false);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, message);
}

TEST_F(smime, outer_header_keeps_addresses_and_hides_the_subject) {
  ASSERT_TRUE(make_identity("bob", "bob@clinic.test"));
  auto env = smime_envelope(message, read_file(file("bob.crt")));
  ASSERT_TRUE(env.ok()) << env.err();
  EXPECT_EQ(header_of(*env),
            "From: Alice <alice@bank.test>\r\n"
            "To: Bob <bob@clinic.test>\r\n"
            "Cc: carol@clinic.test\r\n"
            "Subject: ...\r\n"
            "Date: Mon, 7 Dec 2026 00:00:00 +0000\r\n"
            "Message-ID: <m1@bank.test>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment; filename=\"smime.p7m\"\r\n"
            "\r\n");
  EXPECT_EQ(env->find("4711"), std::string::npos) << "the subject leaked outside";
  EXPECT_EQ(env->find("Dear Bob"), std::string::npos);
  // The body: base64 lines of at most 76 characters, every line ending in CRLF.
  std::string body = env->substr(header_of(*env).size());
  ASSERT_FALSE(body.empty());
  ASSERT_EQ(body.substr(body.size() - 2), "\r\n");
  size_t pos = 0, lines = 0;
  while (pos < body.size()) {
    size_t eol = body.find("\r\n", pos);
    ASSERT_NE(eol, std::string::npos);
    std::string line = body.substr(pos, eol - pos);
    EXPECT_LE(line.size(), 76u);
    EXPECT_EQ(line.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="),
              std::string::npos);
    if (eol + 2 < body.size()) {
      EXPECT_EQ(line.size(), 76u) << "only the last line is short";
    }
    pos = eol + 2;
    ++lines;
  }
  EXPECT_GT(lines, 1u);
  EXPECT_EQ(env->find('\n'), env->find("\r\n") + 1) << "no bare LF";
}

// What openssl reads from the envelope: EnvelopedData, AES-256-CBC, RSA key transport.
TEST_F(smime, algorithms_are_aes256_and_rsa_key_transport) {
  ASSERT_TRUE(make_identity("bob", "bob@clinic.test"));
  auto env = smime_envelope(message, read_file(file("bob.crt")));
  ASSERT_TRUE(env.ok()) << env.err();
  write_file(file("m.eml"), *env);
  auto dump = run_pipeline("openssl cms -cmsout -print -in " + shell_quote(file("m.eml")));
  ASSERT_TRUE(dump.has_value());
  EXPECT_NE(dump->find("pkcs7-envelopedData"), std::string::npos) << *dump;
  EXPECT_NE(dump->find("aes-256-cbc"), std::string::npos) << *dump;
  EXPECT_NE(dump->find("d.ktri"), std::string::npos) << *dump;
  // wolfSSL 5.5 writes PKCS#1 v1.5 (rsaEncryption); RSAES-OAEP would be as welcome.
  EXPECT_TRUE(dump->find("rsaEncryption") != std::string::npos ||
              dump->find("rsaesOaep") != std::string::npos)
      << *dump;
}

TEST_F(smime, wrong_recipient_key_does_not_open_it) {
  ASSERT_TRUE(make_identity("bob", "bob@clinic.test"));
  ASSERT_TRUE(make_identity("eve", "eve@elsewhere.test"));
  auto env = smime_envelope(message, read_file(file("bob.crt")));
  ASSERT_TRUE(env.ok()) << env.err();
  write_file(file("m.eml"), *env);
  EXPECT_FALSE(decrypt(file("m.eml"), "eve").has_value()) << "eve's certificate is no recipient";
  // With only eve's key, openssl tries it on bob's recipient info: never the message.
  auto guess = decrypt(file("m.eml"), "eve", false);
  if (guess) {
    EXPECT_NE(*guess, message);
  }
}

// A larger message (about 300 KB, many AES blocks and a long DER length) with an RSA-4096
// recipient: the output buffer is sized right and openssl still gets every byte back.
TEST_F(smime, large_message_to_a_4096_bit_key) {
  std::string key = shell_quote(file("big.key")), crt = shell_quote(file("big.crt"));
  ASSERT_TRUE(run_pipeline("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out " + key +
                           " 2>/dev/null && openssl req -x509 -new -key " + key + " -out " + crt +
                           " -days 30 -subj /CN=big 2>/dev/null"));
  std::string big = "From: a@bank.test\r\nTo: big@clinic.test\r\nSubject: big\r\n\r\n";
  for (int i = 0; i < 5000; ++i) big += "line " + std::to_string(i) + " of a long report, padded to sixty bytes.\r\n";
  auto env = smime_envelope(big, read_file(file("big.crt")));
  ASSERT_TRUE(env.ok()) << env.err();
  write_file(file("m.eml"), *env);
  auto inner = decrypt(file("m.eml"), "big");
  ASSERT_TRUE(inner.has_value());
  EXPECT_EQ(*inner, big);
}

TEST_F(smime, bare_lf_is_canonicalised_to_crlf) {
  ASSERT_TRUE(make_identity("bob", "bob@clinic.test"));
  auto env = smime_envelope("From: a@bank.test\nTo: bob@clinic.test\n\nline one\nline two\r\n",
                            read_file(file("bob.crt")));
  ASSERT_TRUE(env.ok()) << env.err();
  EXPECT_EQ(header_of(*env).substr(0, 40), "From: a@bank.test\r\nTo: bob@clinic.test\r\n");
  write_file(file("m.eml"), *env);
  auto inner = decrypt(file("m.eml"), "bob");
  ASSERT_TRUE(inner.has_value());
  EXPECT_EQ(*inner, "From: a@bank.test\r\nTo: bob@clinic.test\r\n\r\nline one\r\nline two\r\n");
}

TEST_F(smime, ec_certificate_is_refused_with_a_clear_error) {
  ASSERT_TRUE(make_identity("ec", "bob@clinic.test", true));
  auto env = smime_envelope(message, read_file(file("ec.crt")));
  ASSERT_FALSE(env.ok());
  EXPECT_NE(env.err().find("EC key"), std::string::npos) << env.err();
  EXPECT_NE(env.err().find("RSA"), std::string::npos) << env.err();
}

TEST_F(smime, garbage_certificate_is_refused) {
  auto env = smime_envelope(message, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
  ASSERT_FALSE(env.ok());
  EXPECT_FALSE(smime_envelope(message, "").ok());
}

TEST_F(smime, load_reads_address_pem_from_the_directory) {
  ASSERT_TRUE(make_identity("bob", "bob@clinic.test"));
  std::string pem = read_file(file("bob.crt"));
  write_file(file("bob@clinic.test.pem"), pem);
  auto got = load_smime_cert(_dir.path().string(), "bob@clinic.test");
  ASSERT_TRUE(got.ok()) << got.err();
  EXPECT_EQ(*got, pem);
  EXPECT_TRUE(load_smime_cert(_dir.path().string() + "/", "bob@clinic.test").ok());
  auto missing = load_smime_cert(_dir.path().string(), "nobody@clinic.test");
  EXPECT_FALSE(missing.ok());
}

TEST_F(smime, unsafe_addresses_are_refused) {
  // Files an unsafe address could reach if it were used as a name.
  write_file(file("x.pem"), "secret");
  ASSERT_TRUE(std::filesystem::create_directory(file("certs")));
  std::string dir = file("certs");
  for (std::string bad : {std::string(""), std::string("../x"), std::string(".."), std::string("a/b"),
                          std::string("a..b@c.test"), std::string("a\nb@c.test"), std::string("a\rb"),
                          std::string("a\tb"), std::string("a\x7f"), std::string("a\0b", 3),
                          std::string(255, 'a')}) {
    EXPECT_FALSE(smime_address_safe(bad)) << shell_quote(bad);
    auto r = load_smime_cert(dir, bad);
    EXPECT_FALSE(r.ok()) << shell_quote(bad);
    if (!r.ok()) {
      EXPECT_NE(r.err().find("unsafe"), std::string::npos) << r.err();
    }
  }
  EXPECT_TRUE(smime_address_safe("bob@clinic.test"));
  EXPECT_TRUE(smime_address_safe("first.last+tag@sub.clinic.test"));
}

}  // namespace
