// Fixed-size, refcounted receive chunks and the per-shard pool they come from.
// Invariant: a chunk is in exactly one place — the pool's free list (refs == 0),
// the kernel's provided-buffer ring, or held by one or more owners (refs >= 1).
// Message bodies keep references to the chunks they were received into (zero copy).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace sr::net {

struct chunk {
  std::byte* data;
  uint32_t refs = 0;
  chunk* next_free = nullptr;
};

// Pools allocate in slabs ("malloc at boot, pools at runtime") and never shrink.
class chunk_pool {
 public:
  chunk_pool(size_t chunk_size, size_t initial_count);
  ~chunk_pool();
  chunk_pool(const chunk_pool&) = delete;
  chunk_pool& operator=(const chunk_pool&) = delete;

  size_t chunk_size() const { return _size; }
  // Take a chunk with refs == 1 (grows the pool by a slab when empty).
  chunk* get();
  // Add a reference.
  static void retain(chunk* c) { ++c->refs; }
  // Drop a reference; the chunk returns to the free list at zero.
  void release(chunk* c) {
    if (--c->refs == 0) {
      c->next_free = _free;
      _free = c;
      ++_free_count;
    }
  }
  // Give the pages of free chunks back to the OS (MADV_DONTNEED), all but the `keep` most
  // recently freed (the next get()s take those): after a burst that grew the pool (a large
  // message's input queued while its disk write was in flight), RSS goes back down; a
  // trimmed chunk costs page faults when it is used again. Returns the chunks trimmed.
  size_t trim(size_t keep);
  size_t total() const { return _total; }
  size_t free_count() const { return _free_count; }

 private:
  void grow(size_t count);
  size_t _size;
  chunk* _free = nullptr;
  size_t _free_count = 0;
  size_t _total = 0;
  std::vector<std::byte*> _slabs;
  std::vector<chunk*> _headers;
};

}  // namespace sr::net
