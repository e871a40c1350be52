// Wake-up uses IORING_OP_MSG_RING from the sender's own ring: the receiver sees a
// CQE tagged mailbox_cqe and services its mailboxes in its on_wake handlers. The
// same path carries the receiver's "room again" wake back to a blocked sender.
#include "sealrelay/core/mailbox.hh"

namespace sr::core {

mailbox_wiring::mailbox_wiring(unsigned shards)
    : _n(shards), _ring_fds(shards), _want_space(new std::atomic<bool>[size_t(shards) * shards]),
      _shards(shards, nullptr) {
  for (auto& fd : _ring_fds) fd.store(-1);
  for (size_t i = 0; i < size_t(shards) * shards; ++i) _want_space[i].store(false);
}

void mailbox_wiring::attach_ring(unsigned i, shard& s) {
  _shards[i] = &s;
  _ring_fds[i].store(s.ring_fd(), std::memory_order_release);
}

void mailbox_wiring::wake(shard& from, unsigned to) {
  int fd = _ring_fds[to].load(std::memory_order_acquire);
  if (fd < 0) return;  // not attached yet: it services its rings when it attaches
  io_uring_sqe* s = from.sqe();
  io_uring_prep_msg_ring(s, fd, 0, mailbox_cqe, 0);
  io_uring_sqe_set_data64(s, ignore_cqe);
}

}  // namespace sr::core
