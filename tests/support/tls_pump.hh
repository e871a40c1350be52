// Test helper: two in-memory TLS endpoints wired back to back, with optional random
// chunking of the ciphertext "wire" and of read buffers to exercise partial records.
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>
#include <random>
#include <vector>

#include "sealrelay/tls/session.hh"

namespace sr::tls::testing {

struct endpoint {
  session s;
  std::vector<std::byte> received;  // decrypted application data
  int hs = 0;                       // last handshake() result
  int rd = 0;                       // last read() result <= 0
};

struct wire {
  std::mt19937* rng = nullptr;  // null: deliver whole buffers
  size_t max_chunk = 1;

  size_t chunk(size_t avail) {
    if (!rng) return avail;
    std::uniform_int_distribution<size_t> d(1, max_chunk);
    return std::min(avail, d(*rng));
  }

  // Let the endpoint process what it was fed: handshake, then drain decrypted data.
  void step(endpoint& e) {
    if (!e.s.handshake_done()) {
      e.hs = e.s.handshake();
      if (e.hs != 1) return;
    }
    std::array<std::byte, 16384> buf;
    for (;;) {
      size_t n = chunk(buf.size());
      int r = e.s.read(std::span(buf).first(n));
      if (r <= 0) {
        e.rd = r;
        return;
      }
      e.received.insert(e.received.end(), buf.begin(), buf.begin() + r);
    }
  }

  // Move all of from's pending ciphertext to `to`, in chunks.
  bool deliver(endpoint& from, endpoint& to) {
    bool moved = false;
    while (!from.s.pending_output().empty()) {
      auto p = from.s.pending_output();
      size_t n = chunk(p.size());
      to.s.feed(p.first(n));
      step(to);
      from.s.consume_output(n);  // only after the call: the span was lent to it
      moved = true;
    }
    return moved;
  }

  // Run both directions until the wire is quiet.
  void pump(endpoint& a, endpoint& b) {
    for (int i = 0; i < 1000; ++i) {
      bool m1 = deliver(a, b);
      bool m2 = deliver(b, a);
      if (!m1 && !m2) return;
    }
  }
};

}  // namespace sr::tls::testing
