// sealrelay-queue's requests inside the relay (issue 13). The control socket's thread
// (control::server) hands each request to every shard through this hub (a mutex-guarded
// inbox per shard plus the shard's eventfd wake: the one path from a non-shard thread into
// a shard's queue), waits a bounded time for their answers, and merges them: a message
// with recipients in several domains has one job on each owner shard, listed as one entry.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "sealrelay/config/config.hh"
#include "sealrelay/control/protocol.hh"
#include "sealrelay/core/shard.hh"

namespace sr::spool {
class keyring;
}

namespace sr::relay {

// A job as a shard reports it (data, copied on the shard's thread).
struct job_snapshot {
  struct rcpt {
    std::string address;
    unsigned attempts = 0;
    std::string last_reply;   // remote reply, "" when none
    std::string last_reason;  // our reason token when there is no reply ("" = none)
  };
  std::string queue_id, domain, from, msg_id, segment, state;
  unsigned home = 0;
  uint64_t received_ms = 0, size = 0, offset = 0, next_attempt_ms = 0;  // next: unix ms, 0 = due
  std::vector<rcpt> rcpts;
};

// One shard's answer.
struct shard_answer {
  std::vector<job_snapshot> jobs;           // list, show, stats
  size_t matched = 0, applied = 0, pending = 0;  // the other commands
};

// Answers of the shards to one request; shared with the shards, so an answer that comes
// after the control thread stopped waiting lands here harmlessly.
struct control_call {
  control_call(control::request r, size_t shards) : req(std::move(r)), parts(shards) {}
  const control::request req;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::optional<shard_answer>> parts;  // per shard
  size_t answered = 0;
};

class control_hub {
 public:
  explicit control_hub(unsigned shards);
  // Shard `i` answers requests with `handler` (on its own thread; writes its fragment).
  using handler = std::function<void(const control::request&, shard_answer& out)>;
  void attach(unsigned i, core::shard& sh, handler h);
  // Shard `i` is going away: requests to it are no longer delivered (answers time out).
  void detach(unsigned i);
  // Send `req` to every shard and wait up to `timeout` for all answers.
  std::shared_ptr<control_call> ask_all(const control::request& req, std::chrono::milliseconds timeout);
  unsigned shards() const { return unsigned(_slots.size()); }

 private:
  struct slot {
    std::mutex mu;
    core::shard* sh = nullptr;  // null until attached and after detach
    bool gone = false;          // detached: requests are no longer queued
    // inbox.size(), readable without the lock: drain() runs on every wake of the shard (each
    // cross-shard message), and almost always finds nothing.
    std::atomic<size_t> queued{0};
    handler h;
    std::deque<std::shared_ptr<control_call>> inbox;
  };
  void drain(unsigned i);
  std::vector<std::unique_ptr<slot>> _slots;
};

// Answer `req` (the control server's handler): ask the shards through `hub`, merge, and
// for show also read the message's headers from the spool (`keys` for a sealed one) and
// its lines from the audit log (audit.file). Returns the reply line.
std::string answer_control(control_hub& hub, const config::config& cfg,
                           std::shared_ptr<const spool::keyring> keys, const control::request& req);

}  // namespace sr::relay
