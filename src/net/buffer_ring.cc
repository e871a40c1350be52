// Buffer ids are slots; a slot is free between take() and the next refill().
#include "sealrelay/net/buffer_ring.hh"

#include <sys/mman.h>

#include <cerrno>

namespace sr::net {

buffer_ring::buffer_ring(chunk_pool& pool, unsigned entries_pow2, uint16_t group_id)
    : _pool(pool), _entries(entries_pow2), _group(group_id), _by_bid(entries_pow2, nullptr) {
  for (unsigned i = 0; i < _entries; ++i) _free_bids.push_back(uint16_t(_entries - 1 - i));
}

buffer_ring::~buffer_ring() {
  if (_ring && _br) io_uring_unregister_buf_ring(_ring, _group);
  if (_br) munmap(_br, _br_bytes);
  for (chunk* c : _by_bid)
    if (c) _pool.release(c);
}

int buffer_ring::register_with(io_uring& ring) {
  _br_bytes = _entries * sizeof(io_uring_buf);
  void* mem = mmap(nullptr, _br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return -errno;
  _br = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(_br);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(_br);
  reg.ring_entries = _entries;
  reg.bgid = _group;
  int rc = io_uring_register_buf_ring(&ring, &reg, 0);
  if (rc < 0) return rc;
  _ring = &ring;
  refill();
  return 0;
}

chunk* buffer_ring::take(uint16_t bid) {
  chunk* c = _by_bid[bid];
  _by_bid[bid] = nullptr;
  _free_bids.push_back(bid);
  return c;
}

void buffer_ring::refill() {
  if (_free_bids.empty()) return;
  int mask = io_uring_buf_ring_mask(_entries);
  int added = 0;
  while (!_free_bids.empty()) {
    uint16_t bid = _free_bids.back();
    _free_bids.pop_back();
    chunk* c = _pool.get();
    _by_bid[bid] = c;
    io_uring_buf_ring_add(_br, c->data, unsigned(_pool.chunk_size()), bid, mask, added++);
  }
  io_uring_buf_ring_advance(_br, added);
}

}  // namespace sr::net
