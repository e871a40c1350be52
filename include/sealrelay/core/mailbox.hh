// Cross-shard mailboxes: one SPSC ring per (sender, receiver) pair carrying typed,
// move-only messages (never closures: a message is data the receiver interprets with
// its own state), and a msg_ring CQE on the receiver's io_uring to wake it. send()
// never fails: when the ring is full the message waits in the sender's overflow queue
// (same order), and the receiver, once it drained that ring, wakes the sender to flush.
#pragma once
#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/core/spsc_ring.hh"

namespace sr::core {

// The type-independent half: who is attached, wakes, and the "ring was full" flags.
class mailbox_wiring {
 public:
  explicit mailbox_wiring(unsigned shards);
  unsigned shards() const { return _n; }
  // Remember shard `i`'s ring so that others can wake it (on shard i's thread).
  void attach_ring(unsigned i, shard& s);
  // Wake shard `to` from `from`'s own ring (no-op when `to` is not attached yet).
  void wake(shard& from, unsigned to);
  // Sender `from` found its ring to `to` full: ask `to` to wake it after draining.
  void want_space(unsigned from, unsigned to) { flag(from, to).store(true, std::memory_order_release); }
  // Receiver side: true once per want_space() of that pair.
  bool take_want_space(unsigned from, unsigned to) {
    return flag(from, to).exchange(false, std::memory_order_acq_rel);
  }
  shard* attached(unsigned i) const { return _shards[i]; }

 private:
  std::atomic<bool>& flag(unsigned from, unsigned to) { return _want_space[size_t(from) * _n + to]; }
  unsigned _n;
  std::vector<std::atomic<int>> _ring_fds;
  std::unique_ptr<std::atomic<bool>[]> _want_space;  // index from * n + to
  std::vector<shard*> _shards;                        // each written once by its own thread
};

// Mailboxes carrying messages of type T (default-constructible, movable).
template <typename T>
class mailboxes {
 public:
  using handler = std::function<void(T&&)>;

  explicit mailboxes(unsigned shards, size_t ring_capacity = 1024)
      : _wiring(shards), _handlers(shards), _overflow(size_t(shards) * shards) {
    _rings.reserve(size_t(shards) * shards);
    for (size_t i = 0; i < size_t(shards) * shards; ++i)
      _rings.push_back(std::make_unique<spsc_ring<T>>(ring_capacity));
  }

  // Register shard `i` and what it does with each message it receives (on shard i's
  // thread, once). Messages sent before this wait in the rings: none is lost.
  void attach(unsigned i, shard& s, handler h) {
    _handlers[i] = std::move(h);
    _wiring.attach_ring(i, s);
    s.on_wake([this, i] { service(i); });
    s.on_tick([this, i] { service(i); });  // safety net for a wake that raced attach
    s.post([this, i] { service(i); });     // what was sent before we attached
  }

  // Send `m` from shard `from` (on its thread) to shard `to`. Never drops: a full
  // ring puts `m` in the overflow queue, flushed when the receiver made room.
  void send(shard& from, unsigned to, T m) {
    unsigned f = from.index();
    auto& over = _overflow[slot(f, to)];
    if (over.empty() && _rings[slot(f, to)]->try_push(std::move(m))) {
      notify(from, to);
      return;
    }
    over.push_back(std::move(m));
    flush_pair(from, to);
  }

  // Messages shard `from` holds back because its rings are full (on its thread).
  size_t backlog(unsigned from) const {
    size_t n = 0;
    for (unsigned to = 0; to < _wiring.shards(); ++to) n += _overflow[slot(from, to)].size();
    return n;
  }
  size_t ring_capacity() const { return _rings.front()->capacity(); }
  unsigned shards() const { return _wiring.shards(); }

  // Drain what waits for shard `me` and flush `me`'s overflow (on `me`'s thread).
  void service(unsigned me) {
    drain(me);
    flush(me);
  }

 private:
  size_t slot(unsigned from, unsigned to) const { return size_t(from) * _wiring.shards() + to; }

  void drain(unsigned to) {
    if (!_handlers[to]) return;
    for (unsigned from = 0; from < _wiring.shards(); ++from) {
      auto& ring = *_rings[slot(from, to)];
      while (auto m = ring.try_pop()) _handlers[to](std::move(*m));
      // The sender holds messages back for lack of room: tell it there is room now.
      if (_wiring.take_want_space(from, to)) {
        shard* me = _wiring.attached(to);
        if (from == to) flush(to);
        else if (me) _wiring.wake(*me, from);
      }
    }
  }

  void flush(unsigned from) {
    shard* me = _wiring.attached(from);
    if (!me) return;
    for (unsigned to = 0; to < _wiring.shards(); ++to)
      if (!_overflow[slot(from, to)].empty()) flush_pair(*me, to);
  }

  // Move what fits from the overflow queue into the ring. When some stays behind, raise
  // the want-space flag and look once more: the receiver may have drained between our
  // last push and the flag and would not wake us (the tick flushes in any case).
  void flush_pair(shard& from, unsigned to) {
    unsigned f = from.index();
    auto& over = _overflow[slot(f, to)];
    auto& ring = *_rings[slot(f, to)];
    bool moved = false;
    for (int round = 0; round < 2 && !over.empty(); ++round) {
      while (!over.empty() && ring.try_push(std::move(over.front()))) {
        over.pop_front();
        moved = true;
      }
      if (!over.empty() && round == 0) _wiring.want_space(f, to);
    }
    if (moved) notify(from, to);
  }

  // Make shard `to` drain soon.
  void notify(shard& from, unsigned to) {
    unsigned f = from.index();
    if (to != f) _wiring.wake(from, to);
    else from.post([this, f] { service(f); });
  }

  mailbox_wiring _wiring;
  std::vector<handler> _handlers;
  std::vector<std::unique_ptr<spsc_ring<T>>> _rings;  // index from * n + to
  std::vector<std::deque<T>> _overflow;               // owned by the sender's thread
};

}  // namespace sr::core
