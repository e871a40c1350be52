// A shard: one pinned thread owning one io_uring and everything driven by it.
// Every in-flight operation is a `completion` whose address is the SQE's user_data;
// the loop reaps CQEs and calls on_complete(). Other threads reach a shard only
// through wake() (eventfd) and the cross-shard mailboxes (mailbox.hh).
#pragma once
#include <liburing.h>

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

namespace sr::core {

// An operation in flight; the object must outlive its CQE(s).
class completion {
 public:
  // Handle one CQE of this operation (multishot operations get several).
  virtual void on_complete(int res, unsigned flags) = 0;

 protected:
  ~completion() = default;
};

// user_data values that are not completion pointers.
inline constexpr uint64_t ignore_cqe = 0;     // fire-and-forget (e.g. close)
inline constexpr uint64_t mailbox_cqe = 1;    // msg_ring wake from another shard

class shard {
 public:
  struct options {
    unsigned index = 0;
    unsigned entries = 4096;   // SQ size; CQ is 4x
    int cpu = -1;              // pin to this CPU (-1 = no pinning)
    unsigned tick_ms = 100;    // tick period for timers
  };
  explicit shard(const options& opt);
  ~shard();
  shard(const shard&) = delete;
  shard& operator=(const shard&) = delete;

  // Create the ring and pin the calling thread; must run on the shard's own thread.
  bool init();
  unsigned index() const { return _opt.index; }
  io_uring& ring() { return _ring; }
  int ring_fd() const { return _ring.ring_fd; }

  // Get an SQE, submitting queued ones first when the SQ is full; never null.
  io_uring_sqe* sqe();
  // Get an SQE bound to `c` (user_data = c).
  io_uring_sqe* sqe(completion* c) {
    io_uring_sqe* s = sqe();
    io_uring_sqe_set_data(s, c);
    return s;
  }

  // Monotonic milliseconds, refreshed once per loop iteration.
  uint64_t now_ms() const { return _now_ms; }
  // Call `fn` on every tick (timers, deadline scans).
  void on_tick(std::function<void()> fn) { _tick_fns.push_back(std::move(fn)); }
  // Call `fn` after each wake() and each mailbox message (on the shard thread).
  void on_wake(std::function<void()> fn) { _wake_fns.push_back(std::move(fn)); }
  // Run `fn` on this shard after the current batch of completions (never re-entrant).
  void post(std::function<void()> fn) { _posted.push_back(std::move(fn)); }
  // After the current batch of completions, give memory freed since back to the OS: the
  // on_release_memory hooks (pools trim their free buffers), then util::release_memory on
  // this thread. Asked for after a large message; one round per batch however many ask.
  void release_memory_soon();
  void on_release_memory(std::function<void()> fn) { _release_fns.push_back(std::move(fn)); }
  // Run the loop until stop() is called on this thread.
  void run();
  void stop() { _stopping = true; }
  // Wake the shard from any thread (eventfd); the on_wake handlers run.
  void wake();
  // An object whose only owner is an operation in flight (its owner went away and the
  // operation's CQE frees it): adopt() it so that a shard destroyed before that CQE is
  // reaped frees it after io_uring_queue_exit (which has cancelled the operation); the CQE's
  // handler disown()s it before freeing it itself. Without this every such object leaked
  // when a shard stopped (LeakSanitizer, issue 12: the resolver's armed UDP servers).
  void adopt(const void* key, std::function<void()> free_fn) { _orphans[key] = std::move(free_fn); }
  void disown(const void* key) { _orphans.erase(key); }
  // Count of CQEs handled (for tests and metrics).
  uint64_t cqes_handled() const { return _cqes; }

 private:
  void arm_wake_read();
  void run_wake_fns();
  void refresh_now();

  options _opt;
  io_uring _ring{};
  bool _ring_ok = false;
  bool _stopping = false;
  bool _release_posted = false;
  int _event_fd = -1;
  uint64_t _event_buf = 0;
  uint64_t _now_ms = 0;
  uint64_t _next_tick_ms = 0;
  uint64_t _cqes = 0;
  std::vector<std::function<void()>> _tick_fns;
  std::vector<std::function<void()>> _wake_fns;
  std::vector<std::function<void()>> _release_fns;
  std::vector<std::function<void()>> _posted, _running;
  std::unordered_map<const void*, std::function<void()>> _orphans;
  class wake_completion;
  wake_completion* _wake_c = nullptr;
};

// Number of online CPUs (>= 1).
unsigned online_cpus();

}  // namespace sr::core
