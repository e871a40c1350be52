// Session ticket protection shared by every server context of the process (issue 11,
// item 5). wolfSSL's default keeps ticket keys per WOLFSSL_CTX, and each shard has its
// own context, so a client resuming on another shard (SO_REUSEPORT picks the shard per
// connection) fell back to a full handshake. Here one process-wide key set seals every
// ticket: ChaCha20-Poly1305 under the current key, named by a random 16-byte key name.
// The key rotates every `rotate_s`; the previous key still opens tickets for one more
// period, so a ticket stays usable for at least the lifetime hint we give clients and at
// most two periods. A lock guards the key set; it is taken once per ticket seal or open
// (a handshake), never on the data path.
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>

#include <array>
#include <chrono>
#include <cstring>
#include <mutex>

#include "ticket_keys.hh"
#include "thread_rng.hh"

namespace sr::tls {
namespace {

constexpr int64_t rotate_s = 3600;       // a key seals tickets for one hour
constexpr int ticket_hint_s = 3600;      // lifetime told to clients: within two periods

struct key {
  std::array<uint8_t, WOLFSSL_TICKET_NAME_SZ> name{};
  std::array<uint8_t, CHACHA20_POLY1305_AEAD_KEYSIZE> secret{};
  bool set = false;
};

struct key_set {
  std::mutex mu;
  key current, previous;
  int64_t current_since = 0;  // steady clock, seconds
};

key_set& keys() {
  static key_set ks;
  return ks;
}

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool fresh_key(key& k) {
  WC_RNG* rng = this_thread_rng();
  if (!rng) return false;
  if (wc_RNG_GenerateBlock(rng, k.name.data(), k.name.size()) != 0 ||
      wc_RNG_GenerateBlock(rng, k.secret.data(), k.secret.size()) != 0)
    return false;
  k.set = true;
  return true;
}

// Copy out the sealing key (rotating when due) or the key named `name`; false when none.
bool pick(key& out, const uint8_t* name) {
  auto& ks = keys();
  std::lock_guard lock(ks.mu);
  int64_t now = now_s();
  if (!ks.current.set || now - ks.current_since >= rotate_s) {
    key next;
    if (!fresh_key(next)) return false;
    // Two periods since the last rotation (an idle process): the old key is past use too.
    ks.previous = ks.current.set && now - ks.current_since < 2 * rotate_s ? ks.current : key{};
    ks.current = next;
    ks.current_since = now;
  }
  if (!name) {
    out = ks.current;
    return true;
  }
  for (const key* k : {&ks.current, &ks.previous})
    if (k->set && std::memcmp(k->name.data(), name, k->name.size()) == 0) {
      out = *k;
      return true;
    }
  return false;
}

int ticket_cb(WOLFSSL*, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
              unsigned char iv[WOLFSSL_TICKET_IV_SZ], unsigned char mac[WOLFSSL_TICKET_MAC_SZ],
              int enc, unsigned char* ticket, int ticket_len, int* out_len, void*) {
  static_assert(WOLFSSL_TICKET_IV_SZ >= CHACHA20_POLY1305_AEAD_IV_SIZE);
  static_assert(WOLFSSL_TICKET_MAC_SZ >= CHACHA20_POLY1305_AEAD_AUTHTAG_SIZE);
  if (ticket_len < 0) return WOLFSSL_TICKET_RET_REJECT;
  key k;
  if (enc) {
    WC_RNG* rng = this_thread_rng();
    if (!pick(k, nullptr) || !rng ||
        wc_RNG_GenerateBlock(rng, iv, WOLFSSL_TICKET_IV_SZ) != 0)
      return WOLFSSL_TICKET_RET_FATAL;
    std::memcpy(key_name, k.name.data(), k.name.size());
    std::memset(mac, 0, WOLFSSL_TICKET_MAC_SZ);
    if (wc_ChaCha20Poly1305_Encrypt(k.secret.data(), iv, key_name, WOLFSSL_TICKET_NAME_SZ, ticket,
                                    word32(ticket_len), ticket, mac) != 0)
      return WOLFSSL_TICKET_RET_FATAL;
    *out_len = ticket_len;
    return WOLFSSL_TICKET_RET_OK;
  }
  // Unknown or expired key name: a full handshake, not an error.
  if (!pick(k, key_name)) return WOLFSSL_TICKET_RET_REJECT;
  if (wc_ChaCha20Poly1305_Decrypt(k.secret.data(), iv, key_name, WOLFSSL_TICKET_NAME_SZ, ticket,
                                  word32(ticket_len), mac, ticket) != 0)
    return WOLFSSL_TICKET_RET_REJECT;
  *out_len = ticket_len;
  return WOLFSSL_TICKET_RET_OK;
}

}  // namespace

bool use_shared_ticket_keys(WOLFSSL_CTX* ctx) {
  return wolfSSL_CTX_set_TicketEncCb(ctx, ticket_cb) == WOLFSSL_SUCCESS &&
         wolfSSL_CTX_set_TicketHint(ctx, ticket_hint_s) == WOLFSSL_SUCCESS;
}

}  // namespace sr::tls
