// Cross-shard mailboxes: one SPSC ring per (sender, receiver) pair, and a msg_ring
// CQE on the receiver's io_uring to wake it (no eventfd, no lock). Messages are
// small move-only commands; the receiver drains its rings in its on_wake handler.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "core/shard.hh"
#include "core/spsc_ring.hh"

namespace sr::core {

// A unit of cross-shard work, run on the receiving shard.
using message = std::function<void()>;

class mailboxes {
 public:
  explicit mailboxes(unsigned shards, size_t ring_capacity = 1024);
  // Register shard `i` once its ring exists (called on shard i's thread).
  void attach(unsigned i, shard& s);
  // Send `m` from shard `from` to shard `to`; false when that ring is full.
  bool send(shard& from, unsigned to, message m);
  // Run every message waiting for shard `to` (on shard `to`'s thread); returns count.
  size_t drain(unsigned to);

 private:
  unsigned _n;
  std::vector<std::unique_ptr<spsc_ring<message>>> _rings;  // index from * n + to
  std::vector<std::atomic<int>> _ring_fds;
};

}  // namespace sr::core
