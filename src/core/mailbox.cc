// Wake-up uses IORING_OP_MSG_RING from the sender's own ring: the receiver sees a
// CQE tagged mailbox_cqe and drains. A shard sending to itself skips the ring.
#include "core/mailbox.hh"

namespace sr::core {

mailboxes::mailboxes(unsigned shards, size_t ring_capacity) : _n(shards), _ring_fds(shards) {
  _rings.reserve(size_t(shards) * shards);
  for (unsigned i = 0; i < shards * shards; ++i)
    _rings.push_back(std::make_unique<spsc_ring<message>>(ring_capacity));
  for (auto& fd : _ring_fds) fd.store(-1);
}

void mailboxes::attach(unsigned i, shard& s) {
  _ring_fds[i].store(s.ring_fd(), std::memory_order_release);
  s.on_wake([this, i] { drain(i); });
}

bool mailboxes::send(shard& from, unsigned to, message m) {
  if (!_rings[size_t(from.index()) * _n + to]->try_push(std::move(m))) return false;
  if (to == from.index()) return true;  // drained at this shard's next wake or tick
  int fd = _ring_fds[to].load(std::memory_order_acquire);
  if (fd < 0) return true;  // receiver not started yet: it drains on its first wake
  io_uring_sqe* s = from.sqe();
  io_uring_prep_msg_ring(s, fd, 0, mailbox_cqe, 0);
  io_uring_sqe_set_data64(s, ignore_cqe);
  return true;
}

size_t mailboxes::drain(unsigned to) {
  size_t n = 0;
  for (unsigned from = 0; from < _n; ++from) {
    auto& ring = *_rings[size_t(from) * _n + to];
    while (auto m = ring.try_pop()) {
      (*m)();
      ++n;
    }
  }
  return n;
}

}  // namespace sr::core
