// A provided-buffer ring (IORING_REGISTER_PBUF_RING) filled with pool chunks.
// The kernel picks a buffer per multishot recv completion; take() hands the chunk
// to the caller and frees its buffer id; refill() puts fresh chunks back. With
// liburing 2.3 there is no io_uring_setup_buf_ring, so the ring memory is mmapped
// and registered by hand.
#pragma once
#include <liburing.h>

#include <cstdint>
#include <vector>

#include "sealrelay/net/chunk.hh"

namespace sr::net {

class buffer_ring {
 public:
  buffer_ring(chunk_pool& pool, unsigned entries_pow2, uint16_t group_id);
  ~buffer_ring();
  buffer_ring(const buffer_ring&) = delete;
  buffer_ring& operator=(const buffer_ring&) = delete;

  // Register with `ring` and fill every slot; false (with errno-style code) on failure.
  int register_with(io_uring& ring);
  uint16_t group_id() const { return _group; }
  // Take the chunk the kernel filled for buffer id `bid` (refs == 1, caller owns it).
  chunk* take(uint16_t bid);
  // Put fresh chunks into every free slot (call after handling a batch of CQEs).
  void refill();
  // Number of buffers currently available to the kernel.
  unsigned available() const { return _entries - unsigned(_free_bids.size()); }

 private:
  chunk_pool& _pool;
  unsigned _entries;
  uint16_t _group;
  io_uring* _ring = nullptr;
  io_uring_buf_ring* _br = nullptr;
  size_t _br_bytes = 0;
  std::vector<chunk*> _by_bid;
  std::vector<uint16_t> _free_bids;
};

}  // namespace sr::net
