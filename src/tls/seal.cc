// AES-256-GCM sealing, HKDF-SHA256, SHA-256 and the RNG over wolfCrypt (seal.hh). Every
// wolfCrypt object lives in an RAII holder; buffers holding key material are wiped.
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "sealrelay/tls/seal.hh"
#include "thread_rng.hh"

#include <algorithm>
#include <cstdlib>
#include <string>

namespace sr::tls {

namespace {

// An AES context with its key set; freed (and so wiped by wolfCrypt) on scope exit.
struct gcm {
  Aes aes{};
  bool inited = false;
  int rc = 0;
  explicit gcm(const seal_key& key) {
    rc = wc_AesInit(&aes, nullptr, INVALID_DEVID);
    if (rc != 0) return;
    inited = true;
    rc = wc_AesGcmSetKey(&aes, key.data(), static_cast<word32>(key.size()));
  }
  ~gcm() {
    if (inited) wc_AesFree(&aes);
  }
  gcm(const gcm&) = delete;
  gcm& operator=(const gcm&) = delete;
};

// Overwrite key material so it does not linger in freed memory.
void wipe(void* p, std::size_t n) {
  volatile uint8_t* v = static_cast<volatile uint8_t*>(p);
  while (n--) *v++ = 0;
}

bool fits_word32(std::size_t n) { return n <= 0xffffffffu; }

}  // namespace

status random_bytes(std::span<uint8_t> out) {
  WC_RNG* rng = this_thread_rng();
  if (!rng) return error{"random: wolfCrypt RNG could not be seeded"};
  while (!out.empty()) {
    const std::size_t n = std::min<std::size_t>(out.size(), RNG_MAX_BLOCK_LEN);
    if (int rc = wc_RNG_GenerateBlock(rng, out.data(), static_cast<word32>(n)); rc != 0)
      return error{"random: wolfCrypt RNG failed (" + std::to_string(rc) + ")"};
    out = out.subspan(n);
  }
  return status::success();
}

result<std::vector<uint8_t>> seal(const seal_key& key, std::span<const uint8_t> plaintext,
                                  std::span<const uint8_t> associated) {
  if (!fits_word32(plaintext.size()) || !fits_word32(associated.size()))
    return error{"seal: input too large"};
  gcm g(key);
  if (g.rc != 0) return error{"seal: AES-GCM key setup failed (" + std::to_string(g.rc) + ")"};
  std::vector<uint8_t> out(plaintext.size() + seal_overhead);
  uint8_t* nonce = out.data();
  uint8_t* body = nonce + seal_nonce_size;
  uint8_t* tag = body + plaintext.size();
  if (auto st = random_bytes({nonce, seal_nonce_size}); !st) return error{st.err()};
  int rc = wc_AesGcmEncrypt(&g.aes, body, plaintext.data(),
                            static_cast<word32>(plaintext.size()), nonce, seal_nonce_size,
                            tag, seal_tag_size, associated.data(),
                            static_cast<word32>(associated.size()));
  if (rc != 0) return error{"seal: AES-GCM encryption failed (" + std::to_string(rc) + ")"};
  return out;
}

result<std::vector<uint8_t>> open(const seal_key& key, std::span<const uint8_t> sealed,
                                  std::span<const uint8_t> associated) {
  if (sealed.size() < seal_overhead) return error{"open: sealed data too short"};
  if (!fits_word32(sealed.size()) || !fits_word32(associated.size()))
    return error{"open: input too large"};
  gcm g(key);
  if (g.rc != 0) return error{"open: AES-GCM key setup failed (" + std::to_string(g.rc) + ")"};
  const std::size_t body_size = sealed.size() - seal_overhead;
  const uint8_t* nonce = sealed.data();
  const uint8_t* body = nonce + seal_nonce_size;
  const uint8_t* tag = body + body_size;
  std::vector<uint8_t> out(body_size);
  int rc = wc_AesGcmDecrypt(&g.aes, out.data(), body, static_cast<word32>(body_size), nonce,
                            seal_nonce_size, tag, seal_tag_size, associated.data(),
                            static_cast<word32>(associated.size()));
  if (rc != 0) {
    // wolfCrypt has already written unauthenticated plaintext; do not hand it out.
    wipe(out.data(), out.size());
    if (rc == AES_GCM_AUTH_E) return error{"open: authentication failed"};
    return error{"open: AES-GCM decryption failed (" + std::to_string(rc) + ")"};
  }
  return out;
}

struct gcm_cipher::impl {
  gcm g;
  explicit impl(const seal_key& key) : g(key) {}
};

result<gcm_cipher> gcm_cipher::make(const seal_key& key) {
  auto* p = new impl(key);
  if (p->g.rc != 0) {
    int rc = p->g.rc;
    delete p;
    return error{"AES-GCM key setup failed (" + std::to_string(rc) + ")"};
  }
  return gcm_cipher(p);
}

gcm_cipher::gcm_cipher(gcm_cipher&& o) noexcept : _p(o._p) { o._p = nullptr; }

gcm_cipher& gcm_cipher::operator=(gcm_cipher&& o) noexcept {
  if (this != &o) {
    delete _p;
    _p = o._p;
    o._p = nullptr;
  }
  return *this;
}

gcm_cipher::~gcm_cipher() { delete _p; }

bool gcm_cipher::encrypt(std::span<uint8_t> data, std::span<const uint8_t, seal_nonce_size> nonce,
                         std::span<const uint8_t> associated,
                         std::span<uint8_t, seal_tag_size> tag) {
  if (!_p || !fits_word32(data.size()) || !fits_word32(associated.size())) return false;
  // wolfCrypt's GCM accepts out == in.
  return wc_AesGcmEncrypt(&_p->g.aes, data.data(), data.data(), static_cast<word32>(data.size()),
                          nonce.data(), seal_nonce_size, tag.data(), seal_tag_size,
                          associated.data(), static_cast<word32>(associated.size())) == 0;
}

bool gcm_cipher::decrypt(std::span<uint8_t> data, std::span<const uint8_t, seal_nonce_size> nonce,
                         std::span<const uint8_t> associated,
                         std::span<const uint8_t, seal_tag_size> tag) {
  if (!_p || !fits_word32(data.size()) || !fits_word32(associated.size())) return false;
  int rc = wc_AesGcmDecrypt(&_p->g.aes, data.data(), data.data(), static_cast<word32>(data.size()),
                            nonce.data(), seal_nonce_size, tag.data(), seal_tag_size,
                            associated.data(), static_cast<word32>(associated.size()));
  if (rc != 0) wipe(data.data(), data.size());
  return rc == 0;
}

result<std::vector<uint8_t>> hkdf_sha256(std::span<const uint8_t> secret,
                                         std::span<const uint8_t> salt,
                                         std::span<const uint8_t> info, std::size_t length) {
  // RFC 5869 §2.3: at most 255 blocks of output.
  if (length == 0 || length > 255 * WC_SHA256_DIGEST_SIZE)
    return error{"hkdf: output length out of range"};
  if (!fits_word32(secret.size()) || !fits_word32(salt.size()) || !fits_word32(info.size()))
    return error{"hkdf: input too large"};
  std::vector<uint8_t> out(length);
  int rc = wc_HKDF(WC_SHA256, secret.data(), static_cast<word32>(secret.size()),
                   salt.empty() ? nullptr : salt.data(), static_cast<word32>(salt.size()),
                   info.empty() ? nullptr : info.data(), static_cast<word32>(info.size()),
                   out.data(), static_cast<word32>(out.size()));
  if (rc != 0) return error{"hkdf: wolfCrypt HKDF failed (" + std::to_string(rc) + ")"};
  return out;
}

result<seal_key> derive_seal_key(std::span<const uint8_t> secret, std::span<const uint8_t> salt,
                                 std::span<const uint8_t> info) {
  auto bytes = hkdf_sha256(secret, salt, info, seal_key_size);
  if (!bytes) return error{bytes.err()};
  seal_key key;
  std::copy(bytes->begin(), bytes->end(), key.begin());
  wipe(bytes->data(), bytes->size());
  return key;
}

sha256_digest sha256(std::span<const uint8_t> data) {
  sha256_digest d{};
  // wolfCrypt's software SHA-256 fails only on invalid arguments; an input over 4 GiB is
  // hashed in pieces so that cannot happen either.
  wc_Sha256 ctx;
  if (wc_InitSha256(&ctx) != 0) std::abort();
  while (!data.empty()) {
    const std::size_t n = std::min<std::size_t>(data.size(), 1u << 30);
    if (wc_Sha256Update(&ctx, data.data(), static_cast<word32>(n)) != 0) std::abort();
    data = data.subspan(n);
  }
  if (wc_Sha256Final(&ctx, d.data()) != 0) std::abort();
  wc_Sha256Free(&ctx);
  return d;
}

bool equal_constant_time(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  if (a.size() != b.size()) return false;
  volatile uint8_t diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff = diff | (a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace sr::tls
