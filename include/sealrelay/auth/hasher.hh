// The password-check worker pool (issue 10: "hashing runs off the shard loop, in a small
// worker pool whose result comes back as a completion"). A shard hands a password and a
// crypt(3) hash to check(); a worker thread runs auth::verify_password (yescrypt takes tens
// of milliseconds by design) and the answer runs as a callback on that shard's thread after
// a wake() (eventfd), so a shard never blocks on a hash. Bounded: a full queue is refused at
// once (the session answers 454, try later): the bound counts checks until their answer ran. Passwords are wiped from memory once checked.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sealrelay/core/shard.hh"

namespace sr::auth {

class hasher {
 public:
  explicit hasher(unsigned threads = 2, size_t max_queued = 1024);
  ~hasher();  // joins the workers; answers not delivered yet are dropped
  hasher(const hasher&) = delete;
  hasher& operator=(const hasher&) = delete;

  // Let `sh` receive answers: call on `sh`'s thread before its first check().
  void attach(core::shard& sh);
  // Check `password` against `hash` on a worker; `done(ok)` runs later on `sh`'s thread.
  // False (and `done` never runs) when the queue is full.
  bool check(core::shard& sh, std::string password, std::string hash, std::function<void(bool)> done);
  // Checks accepted and not answered yet (queued, hashing, or waiting for their shard).
  size_t in_flight() const;

 private:
  struct inbox;
  struct job {
    inbox* to = nullptr;
    std::string password, hash;
    std::function<void(bool)> done;
  };
  void work();
  inbox* inbox_of(core::shard& sh);

  size_t _max;
  size_t _in_flight = 0;  // under _mu; the bound of check()
  mutable std::mutex _mu;
  std::condition_variable _cv;
  std::deque<job> _jobs;
  bool _stopping = false;
  std::vector<std::unique_ptr<inbox>> _inboxes;  // one per attached shard
  std::vector<std::thread> _threads;
};

}  // namespace sr::auth
