// Bounded single-producer single-consumer ring: the only way data crosses shards.
// Invariant: head is written only by the consumer, tail only by the producer; each
// sits on its own cache line. Capacity is a power of two.
#pragma once
#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>

namespace sr::core {

template <typename T>
class spsc_ring {
 public:
  explicit spsc_ring(size_t capacity_pow2)
      : _mask(capacity_pow2 - 1), _slots(new T[capacity_pow2]) {}

  // Producer: append `v`; false when full (the caller keeps it and retries later).
  bool try_push(T&& v) {
    size_t t = _tail.load(std::memory_order_relaxed);
    if (t - _head_cache == _mask + 1) {
      _head_cache = _head.load(std::memory_order_acquire);
      if (t - _head_cache == _mask + 1) return false;
    }
    _slots[t & _mask] = std::move(v);
    _tail.store(t + 1, std::memory_order_release);
    return true;
  }
  // Consumer: take the oldest element, if any.
  std::optional<T> try_pop() {
    size_t h = _head.load(std::memory_order_relaxed);
    if (h == _tail_cache) {
      _tail_cache = _tail.load(std::memory_order_acquire);
      if (h == _tail_cache) return std::nullopt;
    }
    std::optional<T> v(std::move(_slots[h & _mask]));
    _head.store(h + 1, std::memory_order_release);
    return v;
  }
  size_t capacity() const { return _mask + 1; }

 private:
  const size_t _mask;
  std::unique_ptr<T[]> _slots;
  alignas(64) std::atomic<size_t> _head{0};
  size_t _tail_cache = 0;   // consumer's view of _tail
  alignas(64) std::atomic<size_t> _tail{0};
  size_t _head_cache = 0;   // producer's view of _head
};

}  // namespace sr::core
