// The RSA signing pool: an RSA-2048 signature costs ~1.5 ms (bench/dkim_bench), too long
// for a shard loop that serves thousands of sessions, so shards hash the message and build
// the field (signer::prepare, cheap) and hand only the digest here. Each worker owns its
// own copy of every RSA key (a wolfCrypt key is scratch for one operation at a time); the
// signature comes back as a callback on the asking shard's thread after a wake(). Ed25519
// (~50 µs) is signed inline and never comes here. Bounded: a full queue is refused at once
// and the caller signs inline instead. The threads, queue and per-shard answers are
// core::worker_pool's.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/core/worker_pool.hh"
#include "sealrelay/dkim/signers.hh"
#include "sealrelay/tls/sign.hh"

namespace sr::dkim {

class sign_pool {
 public:
  // The answer: the signature, or nullopt when the key operation failed.
  using done_fn = std::function<void(std::optional<std::vector<uint8_t>>)>;

  // Load every RSA entry's key once per worker; null (and no threads) when no entry is
  // RSA. The error names the entry like signers::load.
  static result<std::unique_ptr<sign_pool>> create(std::span<const key_entry> entries, unsigned threads = 2,
                                                   size_t max_queued = 4096);
  ~sign_pool() = default;  // joins the workers; answers not delivered yet are dropped
  sign_pool(const sign_pool&) = delete;
  sign_pool& operator=(const sign_pool&) = delete;

  // Let `sh` receive answers: call on `sh`'s thread before its first sign().
  void attach(core::shard& sh) { _pool.attach(sh); }
  // Sign `digest` with entry `entry`'s key on a worker; `done` runs later on `sh`'s
  // thread. False (and `done` never runs) when the queue is full or the entry is not RSA.
  bool sign(core::shard& sh, size_t entry, const tls::sha256_digest& digest, done_fn done);
  // Whether entry `entry` is signed here (its key is RSA).
  bool handles(size_t entry) const { return entry < _rsa.size() && _rsa[entry]; }
  size_t in_flight() const { return _pool.in_flight(); }

 private:
  struct job {
    size_t entry = 0;
    tls::sha256_digest digest{};
  };
  using keyring = std::vector<std::optional<tls::signing_key>>;  // by entry; RSA only
  sign_pool(std::vector<keyring> keys, size_t max_queued);

  std::vector<bool> _rsa;      // by entry
  std::vector<keyring> _keys;  // one per worker, used only by that worker
  // Last: destroyed (workers joined) before the keyrings they use.
  core::worker_pool<job, std::optional<std::vector<uint8_t>>> _pool;
};

}  // namespace sr::dkim
