// tls::seal/open (AES-256-GCM), HKDF-SHA256 against RFC 5869's vectors, SHA-256 against
// FIPS 180-2's, the RNG and the constant-time compare.
#include "sealrelay/tls/seal.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <string_view>

namespace sr::tls {
namespace {

std::vector<uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }

std::vector<uint8_t> hex(std::string_view h) {
  std::vector<uint8_t> out;
  auto nib = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<uint8_t>(nib(h[i]) << 4 | nib(h[i + 1])));
  return out;
}

seal_key key_of(uint8_t fill) {
  seal_key k;
  k.fill(fill);
  return k;
}

TEST(Seal, RoundTrip) {
  const auto key = key_of(7);
  const auto msg = bytes("Subject: lab results\r\n\r\nall fine\r\n");
  const auto ad = bytes("record-1");
  auto sealed = seal(key, msg, ad);
  ASSERT_TRUE(sealed) << sealed.err();
  EXPECT_EQ(sealed->size(), msg.size() + seal_overhead);
  // The plaintext does not appear in the sealed bytes.
  EXPECT_EQ(std::search(sealed->begin(), sealed->end(), msg.begin(), msg.begin() + 8),
            sealed->end());
  auto opened = open(key, *sealed, ad);
  ASSERT_TRUE(opened) << opened.err();
  EXPECT_EQ(*opened, msg);
}

TEST(Seal, EmptyPlaintextRoundTrips) {
  auto sealed = seal(key_of(1), {}, {});
  ASSERT_TRUE(sealed);
  EXPECT_EQ(sealed->size(), seal_overhead);
  auto opened = open(key_of(1), *sealed, {});
  ASSERT_TRUE(opened) << opened.err();
  EXPECT_TRUE(opened->empty());
}

TEST(Seal, TamperedBytesAreRefused) {
  const auto key = key_of(9);
  const auto msg = bytes("a message worth protecting");
  auto sealed = seal(key, msg, {});
  ASSERT_TRUE(sealed);
  // Flip one bit in the nonce, in the ciphertext and in the tag: each is refused.
  for (std::size_t at : {std::size_t{0}, seal_nonce_size + 3, sealed->size() - 1}) {
    auto bad = *sealed;
    bad[at] ^= 0x01;
    auto opened = open(key, bad, {});
    EXPECT_FALSE(opened) << "flipped byte " << at << " was accepted";
  }
  // Truncated and too short.
  auto cut = *sealed;
  cut.pop_back();
  EXPECT_FALSE(open(key, cut, {}));
  EXPECT_FALSE(open(key, std::span<const uint8_t>(sealed->data(), seal_overhead - 1), {}));
}

TEST(Seal, WrongAssociatedDataIsRefused) {
  const auto key = key_of(3);
  auto sealed = seal(key, bytes("body"), bytes("record-A"));
  ASSERT_TRUE(sealed);
  EXPECT_FALSE(open(key, *sealed, bytes("record-B")));
  EXPECT_FALSE(open(key, *sealed, {}));
  EXPECT_TRUE(open(key, *sealed, bytes("record-A")));
}

TEST(Seal, WrongKeyIsRefused) {
  auto sealed = seal(key_of(3), bytes("body"), {});
  ASSERT_TRUE(sealed);
  auto other = key_of(3);
  other[31] ^= 0x80;
  auto opened = open(other, *sealed, {});
  ASSERT_FALSE(opened);
  EXPECT_NE(opened.err().find("authentication"), std::string::npos) << opened.err();
}

TEST(Seal, NoncesDifferBetweenCalls) {
  const auto key = key_of(5);
  const auto msg = bytes("same message");
  auto a = seal(key, msg, {});
  auto b = seal(key, msg, {});
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(std::equal(a->begin(), a->begin() + seal_nonce_size, b->begin()));
  EXPECT_NE(*a, *b);
}

// RFC 5869 appendix A.1 (basic test case with SHA-256).
TEST(Hkdf, Rfc5869Case1) {
  auto okm = hkdf_sha256(hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
                         hex("000102030405060708090a0b0c"), hex("f0f1f2f3f4f5f6f7f8f9"), 42);
  ASSERT_TRUE(okm) << okm.err();
  EXPECT_EQ(*okm, hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                      "34007208d5b887185865"));
}

// RFC 5869 appendix A.3 (zero-length salt and info).
TEST(Hkdf, Rfc5869Case3EmptySaltAndInfo) {
  auto okm = hkdf_sha256(hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"), {}, {}, 42);
  ASSERT_TRUE(okm) << okm.err();
  EXPECT_EQ(*okm, hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
                      "9d201395faa4b61a96c8"));
}

TEST(Hkdf, DeriveSealKeyDependsOnEveryInput) {
  const auto secret = bytes("secret");
  const auto salt = bytes("salt");
  const auto info = bytes("info");
  auto k = derive_seal_key(secret, salt, info);
  ASSERT_TRUE(k);
  auto first32 = hkdf_sha256(secret, salt, info, 32);
  ASSERT_TRUE(first32);
  EXPECT_TRUE(std::equal(k->begin(), k->end(), first32->begin()));
  EXPECT_NE(*k, *derive_seal_key(bytes("secreT"), salt, info));
  EXPECT_NE(*k, *derive_seal_key(secret, bytes("salT"), info));
  EXPECT_NE(*k, *derive_seal_key(secret, salt, bytes("infO")));
  EXPECT_FALSE(hkdf_sha256(secret, salt, info, 0));
  EXPECT_FALSE(hkdf_sha256(secret, salt, info, 255 * 32 + 1));
}

TEST(Sha256, KnownAnswers) {
  auto abc = sha256(bytes("abc"));
  auto want = hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(std::equal(abc.begin(), abc.end(), want.begin(), want.end()));
  auto empty = sha256({});
  want = hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_TRUE(std::equal(empty.begin(), empty.end(), want.begin(), want.end()));
}

TEST(Random, FillsAndDiffers) {
  std::vector<uint8_t> a(64), b(64);
  ASSERT_TRUE(random_bytes(a));
  ASSERT_TRUE(random_bytes(b));
  EXPECT_NE(a, b);
  EXPECT_NE(a, std::vector<uint8_t>(64, 0));
  // More than one DRBG block in one call.
  std::vector<uint8_t> big(200000);
  ASSERT_TRUE(random_bytes(big));
  EXPECT_NE(std::vector<uint8_t>(big.end() - 64, big.end()), std::vector<uint8_t>(64, 0));
}

TEST(EqualConstantTime, ComparesBytesAndLengths) {
  EXPECT_TRUE(equal_constant_time(bytes("abc"), bytes("abc")));
  EXPECT_FALSE(equal_constant_time(bytes("abc"), bytes("abd")));
  EXPECT_FALSE(equal_constant_time(bytes("abc"), bytes("ab")));
  EXPECT_TRUE(equal_constant_time({}, {}));
}

}  // namespace
}  // namespace sr::tls
