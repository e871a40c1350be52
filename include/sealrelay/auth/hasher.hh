// The password-check worker pool (issue 10: "hashing runs off the shard loop, in a small
// worker pool whose result comes back as a completion"). A shard hands a password and a
// crypt(3) hash to check(); a worker thread runs auth::verify_password (yescrypt takes tens
// of milliseconds by design) and the answer runs as a callback on that shard's thread after
// a wake() (eventfd), so a shard never blocks on a hash (the machinery is core::worker_pool).
// Bounded: a full queue is refused at once (the session answers 454, try later): the bound
// counts checks until their answer ran. Passwords are wiped from memory once checked.
#pragma once
#include <cstddef>
#include <functional>
#include <string>

#include "sealrelay/core/shard.hh"
#include "sealrelay/core/worker_pool.hh"

namespace sr::auth {

class hasher {
 public:
  explicit hasher(unsigned threads = 2, size_t max_queued = 1024);
  ~hasher() = default;  // joins the workers; answers not delivered yet are dropped
  hasher(const hasher&) = delete;
  hasher& operator=(const hasher&) = delete;

  // Let `sh` receive answers: call on `sh`'s thread before its first check().
  void attach(core::shard& sh) { _pool.attach(sh); }
  // Check `password` against `hash` on a worker; `done(ok)` runs later on `sh`'s thread.
  // False (and `done` never runs) when the queue is full.
  bool check(core::shard& sh, std::string password, std::string hash, std::function<void(bool)> done);
  // Checks accepted and not answered yet (queued, hashing, or waiting for their shard).
  size_t in_flight() const { return _pool.in_flight(); }

 private:
  struct job {
    std::string password, hash;
  };
  core::worker_pool<job, bool> _pool;
};

}  // namespace sr::auth
