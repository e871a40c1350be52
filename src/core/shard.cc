// The loop: submit + wait (bounded by the next tick) in one io_uring_enter, reap all
// CQEs, run ticks. SINGLE_ISSUER + DEFER_TASKRUN keep completions on this thread and
// batched; if the kernel refuses those flags we fall back to a plain ring.
#include "sealrelay/core/shard.hh"

#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "sealrelay/util/log.hh"
#include "sealrelay/util/memory.hh"

namespace sr::core {

class shard::wake_completion final : public completion {
 public:
  explicit wake_completion(shard& s) : _s(s) {}
  void on_complete(int res, unsigned) override {
    (void)res;
    _s.run_wake_fns();
    if (!_s._stopping) _s.arm_wake_read();
  }

 private:
  shard& _s;
};

shard::shard(const options& opt) : _opt(opt) {}

shard::~shard() {
  if (_ring_ok) io_uring_queue_exit(&_ring);
  // The ring is gone with every operation on it: what only their CQEs would have freed.
  for (auto& [key, free_fn] : _orphans) free_fn();
  if (_event_fd >= 0) ::close(_event_fd);
  delete _wake_c;
}

unsigned online_cpus() {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? unsigned(n) : 1;
}

bool shard::init() {
  if (_opt.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(_opt.cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
      SR_WARN("shard %u: cannot pin to cpu %d", _opt.index, _opt.cpu);
  }
  io_uring_params p{};
  p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
            IORING_SETUP_SUBMIT_ALL;
  p.cq_entries = _opt.entries * 4;
  int rc = io_uring_queue_init_params(_opt.entries, &_ring, &p);
  if (rc < 0) {
    // Older kernels: COOP_TASKRUN is the next best thing; then a plain ring.
    p = {};
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
    p.cq_entries = _opt.entries * 4;
    rc = io_uring_queue_init_params(_opt.entries, &_ring, &p);
    if (rc < 0) {
      p = {};
      p.flags = IORING_SETUP_CQSIZE;
      p.cq_entries = _opt.entries * 4;
      rc = io_uring_queue_init_params(_opt.entries, &_ring, &p);
    }
  }
  if (rc < 0) {
    SR_ERROR("shard %u: io_uring_queue_init: %s", _opt.index, strerror(-rc));
    return false;
  }
  _ring_ok = true;
  io_uring_register_ring_fd(&_ring);  // saves an fget per enter; optional
  _event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (_event_fd < 0) return false;
  _wake_c = new wake_completion(*this);
  refresh_now();
  _next_tick_ms = _now_ms + _opt.tick_ms;
  arm_wake_read();
  return true;
}

io_uring_sqe* shard::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&_ring);
  while (!s) {
    io_uring_submit(&_ring);
    s = io_uring_get_sqe(&_ring);
  }
  return s;
}

void shard::arm_wake_read() {
  io_uring_sqe* s = sqe(_wake_c);
  io_uring_prep_read(s, _event_fd, &_event_buf, sizeof _event_buf, 0);
}

void shard::wake() {
  uint64_t one = 1;
  ssize_t w = ::write(_event_fd, &one, sizeof one);
  (void)w;
}

void shard::run_wake_fns() {
  for (auto& fn : _wake_fns) fn();
}

void shard::refresh_now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  _now_ms = uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1'000'000;
}

void shard::release_memory_soon() {
  if (_release_posted) return;
  _release_posted = true;
  post([this] {
    _release_posted = false;
    for (auto& fn : _release_fns) fn();
    util::release_memory();
  });
}

void shard::run() {
  while (!_stopping) {
    refresh_now();
    uint64_t wait_ms = _next_tick_ms > _now_ms ? _next_tick_ms - _now_ms : 0;
    if (!_posted.empty()) wait_ms = 0;
    __kernel_timespec ts{.tv_sec = int64_t(wait_ms / 1000), .tv_nsec = int64_t(wait_ms % 1000) * 1'000'000};
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_submit_and_wait_timeout(&_ring, &cqe, 1, &ts, nullptr);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
      SR_WARN("shard %u: io_uring wait: %s", _opt.index, strerror(-rc));
    unsigned head, n = 0;
    io_uring_for_each_cqe(&_ring, head, cqe) {
      ++n;
      uint64_t ud = cqe->user_data;
      if (ud == ignore_cqe) continue;
      if (ud == mailbox_cqe) {
        run_wake_fns();
        continue;
      }
      reinterpret_cast<completion*>(ud)->on_complete(cqe->res, cqe->flags);
    }
    io_uring_cq_advance(&_ring, n);
    _cqes += n;
    while (!_posted.empty()) {
      _running.swap(_posted);
      for (auto& fn : _running) fn();
      _running.clear();
    }
    refresh_now();
    if (_now_ms >= _next_tick_ms) {
      _next_tick_ms = _now_ms + _opt.tick_ms;
      for (auto& fn : _tick_fns) fn();
    }
  }
  io_uring_submit(&_ring);
}

}  // namespace sr::core
