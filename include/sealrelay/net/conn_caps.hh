// Open-connection counts shared by every shard of one kind of listener (the SMTP server,
// the HTTP API), for the caps checked at accept: the total, and per client address by a
// hash of its bytes (FNV-1a) folded onto a fixed table, so counting allocates nothing and
// a collision only makes the cap stricter for the colliding addresses. Relaxed atomics: a
// cap may be off by a connection racing on another shard, never drift.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace sr::net {

class conn_caps {
 public:
  // `slots`: size of the per-address table, a power of two.
  explicit conn_caps(unsigned slots) : _mask(slots - 1), _per_ip(new std::atomic<uint32_t>[slots]) {
    for (unsigned i = 0; i < slots; ++i) _per_ip[i].store(0, std::memory_order_relaxed);
  }

  struct counts {
    unsigned slot;    // give back to remove() when the connection closes
    uint32_t total;   // open connections, this one included
    uint32_t per_ip;  // open connections from this address (or a colliding one), this one included
  };
  // Count a new connection from `peer`.
  counts add(const sockaddr_storage& peer) {
    unsigned slot = slot_of(peer);
    uint32_t total = _total.fetch_add(1, std::memory_order_relaxed) + 1;
    uint32_t per_ip = _per_ip[slot].fetch_add(1, std::memory_order_relaxed) + 1;
    return {slot, total, per_ip};
  }
  // The connection counted by add() with this slot closed.
  void remove(unsigned slot) {
    _total.fetch_sub(1, std::memory_order_relaxed);
    _per_ip[slot].fetch_sub(1, std::memory_order_relaxed);
  }
  uint32_t total() const { return _total.load(std::memory_order_relaxed); }

 private:
  unsigned slot_of(const sockaddr_storage& ss) const {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&](const uint8_t* p, size_t n) {
      for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
    };
    if (ss.ss_family == AF_INET)
      mix(reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr), 4);
    else
      mix(reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr), 16);
    return unsigned(h ^ (h >> 32)) & _mask;
  }

  std::atomic<uint32_t> _total{0};
  unsigned _mask;
  std::unique_ptr<std::atomic<uint32_t>[]> _per_ip;
};

}  // namespace sr::net
