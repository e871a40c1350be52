// Slabs are 2 MiB-aligned blocks carved into chunks; headers live apart so that a
// chunk's data is exactly chunk_size bytes for the kernel's provided buffers.
#include "sealrelay/net/chunk.hh"

#include <sys/mman.h>

#include <cstdlib>

namespace sr::net {

chunk_pool::chunk_pool(size_t chunk_size, size_t initial_count) : _size(chunk_size) {
  grow(initial_count);
}

chunk_pool::~chunk_pool() {
  for (auto* s : _slabs) std::free(s);
  for (auto* h : _headers) delete[] h;
}

void chunk_pool::grow(size_t count) {
  if (count == 0) count = 64;
  // aligned_alloc wants a size that is a multiple of the alignment (C11 7.22.3.1; ASan
  // refuses anything else, issue 12): a pool of small chunks (16-byte test chunks) rounds up.
  size_t bytes = (count * _size + 4095) / 4096 * 4096;
  auto* slab = static_cast<std::byte*>(std::aligned_alloc(4096, bytes));
  auto* headers = new chunk[count];
  _slabs.push_back(slab);
  _headers.push_back(headers);
  for (size_t i = 0; i < count; ++i) {
    headers[i].data = slab + i * _size;
    headers[i].next_free = _free;
    _free = &headers[i];
  }
  _free_count += count;
  _total += count;
}

size_t chunk_pool::trim(size_t keep) {
  size_t n = 0;
  chunk* c = _free;
  for (size_t i = 0; c && i < keep; ++i) c = c->next_free;
  for (; c; c = c->next_free) {
    if (::madvise(c->data, _size, MADV_DONTNEED) == 0) ++n;
  }
  return n;
}

chunk* chunk_pool::get() {
  if (!_free) grow(_total / 2 + 64);
  chunk* c = _free;
  _free = c->next_free;
  --_free_count;
  c->refs = 1;
  c->next_free = nullptr;
  return c;
}

}  // namespace sr::net
