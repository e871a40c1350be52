// Internal to src/tls: one wolfCrypt DRBG per thread, seeded on first use, shared by the
// sealing code (random_bytes) and the signers (RSA blinding). Null when seeding failed: the
// caller then fails rather than using weak randomness.
#pragma once
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/random.h>

namespace sr::tls {

inline WC_RNG* this_thread_rng() {
  struct holder {
    WC_RNG rng{};
    bool ok = false;
    holder() { ok = wc_InitRng(&rng) == 0; }
    ~holder() {
      if (ok) wc_FreeRng(&rng);
    }
    holder(const holder&) = delete;
    holder& operator=(const holder&) = delete;
  };
  thread_local holder h;
  return h.ok ? &h.rng : nullptr;
}

}  // namespace sr::tls
