// Symmetric sealing for data at rest (the escrow store): wolfCrypt's RNG, AES-256-GCM,
// HKDF-SHA256, SHA-256 and a constant-time compare, over plain bytes so no wolfSSL type
// leaves src/tls/. A sealed blob is nonce (12 random bytes) || ciphertext || tag (16); a
// key is never used for more than 2^32 seals (random nonces), which the escrow's one key
// per message keeps far away. Safe to call from any thread (one RNG per thread).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "sealrelay/util/result.hh"

namespace sr::tls {

inline constexpr std::size_t seal_key_size = 32;    // AES-256
inline constexpr std::size_t seal_nonce_size = 12;  // 96-bit GCM nonce, prepended
inline constexpr std::size_t seal_tag_size = 16;    // GCM tag, appended
inline constexpr std::size_t seal_overhead = seal_nonce_size + seal_tag_size;

using seal_key = std::array<uint8_t, seal_key_size>;
using sha256_digest = std::array<uint8_t, 32>;

// Fill `out` from wolfCrypt's DRBG (seeded from the OS); an error only if the RNG fails.
status random_bytes(std::span<uint8_t> out);

// Encrypt `plaintext` under `key`, authenticating `associated` too; returns
// nonce || ciphertext || tag (plaintext.size() + seal_overhead bytes).
result<std::vector<uint8_t>> seal(const seal_key& key, std::span<const uint8_t> plaintext,
                                  std::span<const uint8_t> associated);

// Decrypt what seal() made; an error when the key, the associated data or any byte of
// `sealed` differs (nothing of the plaintext is returned then).
result<std::vector<uint8_t>> open(const seal_key& key, std::span<const uint8_t> sealed,
                                  std::span<const uint8_t> associated);

// A keyed AES-256-GCM context for many messages under one key (the spool's records): the
// key schedule and GHASH key are computed once, not per message. The caller supplies every
// nonce and must never repeat one under the key. Not safe to share between threads: one per
// owner (a spool partition, a reader, the sidecar's handler). Movable.
class gcm_cipher {
 public:
  // Set up `key`; an error only when wolfCrypt refuses it.
  static result<gcm_cipher> make(const seal_key& key);
  gcm_cipher(gcm_cipher&&) noexcept;
  gcm_cipher& operator=(gcm_cipher&&) noexcept;
  ~gcm_cipher();
  // Encrypt `data` in place and write its tag; false only when wolfCrypt fails.
  bool encrypt(std::span<uint8_t> data, std::span<const uint8_t, seal_nonce_size> nonce,
               std::span<const uint8_t> associated, std::span<uint8_t, seal_tag_size> tag);
  // Decrypt `data` in place when `tag` authenticates it and `associated`; false otherwise
  // (then `data` is wiped: no unauthenticated plaintext is left behind).
  bool decrypt(std::span<uint8_t> data, std::span<const uint8_t, seal_nonce_size> nonce,
               std::span<const uint8_t> associated, std::span<const uint8_t, seal_tag_size> tag);

 private:
  struct impl;
  explicit gcm_cipher(impl* p) : _p(p) {}
  impl* _p = nullptr;
};

// Derive `length` bytes with HKDF-SHA256 (RFC 5869) from a secret, a salt and a context.
result<std::vector<uint8_t>> hkdf_sha256(std::span<const uint8_t> secret,
                                         std::span<const uint8_t> salt,
                                         std::span<const uint8_t> info, std::size_t length);

// Derive a sealing key with HKDF-SHA256 (32 bytes of hkdf_sha256).
result<seal_key> derive_seal_key(std::span<const uint8_t> secret, std::span<const uint8_t> salt,
                                 std::span<const uint8_t> info);

// Hash `data` with SHA-256.
sha256_digest sha256(std::span<const uint8_t> data);

// Compare two byte strings in time that depends only on their lengths.
bool equal_constant_time(std::span<const uint8_t> a, std::span<const uint8_t> b);

}  // namespace sr::tls
