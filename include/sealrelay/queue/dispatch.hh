// Getting a spooled message to the shards that deliver it: split its unfinished
// recipients into one job per domain, and hand each job to the domain's owner shard
// (hash(domain) % shards) as a typed message through the cross-shard mailboxes.
// Finished recipients travel back to the message's home shard the same way. Nothing
// here touches another shard's objects: a message is data its receiver acts on.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/core/mailbox.hh"
#include "sealrelay/core/shard.hh"
#include "sealrelay/queue/job.hh"

namespace sr::queue {

class scheduler;

// A durable message as the queue needs it (the spool's view, translated by the caller).
struct spooled_message {
  message_kind kind = message_kind::message;
  std::string queue_id;
  unsigned home = 0;              // shard whose spool partition holds it
  std::string segment;            // where its bytes are
  uint64_t offset = 0, length = 0;
  std::string mail_from;          // "" = null sender
  std::vector<std::string> rcpts;
  uint64_t received_ms = 0;       // unix ms
  bool body_8bitmime = false;
  std::string msg_id;
  bool requiretls = false;        // RFC 8689 (see job.hh)
  bool tls_required_no = false;
  std::vector<uint32_t> attempts;  // per recipient, recovered from the spool (may be empty)
  std::vector<uint8_t> held;       // per recipient, 1 = held by the operator (HOLD records)
};

// Return one job per recipient domain, in first-seen order, for the recipients of `m`
// whose index is not in `done`. `m`'s strings move into the jobs (the last job takes the
// shared ones), so a message for one domain costs no string copy.
std::vector<std::unique_ptr<job>> split_by_domain(spooled_message m, std::span<const uint32_t> done);

// What one shard asks of another.
enum class shard_msg_kind : uint8_t {
  deliver_job,  // owner shard: queue `job_to_queue` for delivery
  mark_done,    // home shard: recipients `indices` of `queue_id` are final (DONE record)
  record_attempts,  // home shard: (index, attempts) of pending recipients (ATTEMPTS record)
  record_hold,      // home shard: recipients `indices` held / released (`held`; HOLD record)
};
std::string_view to_string(shard_msg_kind k);

struct shard_msg {
  shard_msg_kind kind = shard_msg_kind::deliver_job;
  std::unique_ptr<queue::job> job_to_queue;  // deliver_job
  std::string queue_id;            // mark_done
  std::vector<uint32_t> indices;   // mark_done
  std::vector<std::pair<uint32_t, uint32_t>> counts;  // record_attempts
  bool held = false;               // record_hold
};

using shard_mailboxes = core::mailboxes<shard_msg>;

// One shard's end of the queue's cross-shard traffic.
class dispatcher {
 public:
  // Write a DONE record for recipients of a message whose home is this shard.
  using mark_done_fn = std::function<void(const std::string& queue_id, std::vector<uint32_t> indices)>;
  dispatcher(core::shard& sh, shard_mailboxes& boxes, scheduler& sched, mark_done_fn mark_done);

  // Start receiving (on the shard thread, once the scheduler can take jobs).
  void attach();
  // Queue every unfinished recipient of `m` on the shards that own their domains (pass an
  // rvalue: its strings move into the jobs).
  void dispatch(spooled_message m, std::span<const uint32_t> done = {});
  // Queue `j` on its owner shard.
  void send_job(std::unique_ptr<job> j);
  // Queue `j` on shard `owner` (where its [[shaping]] destination lives).
  void send_job_to(unsigned owner, std::unique_ptr<job> j);
  // Tell `home` that recipients `indices` of `queue_id` are final.
  void send_done(unsigned home, const std::string& queue_id, std::vector<uint32_t> indices);
  // Record attempt counts at the home shard (set by the composition root).
  using record_attempts_fn =
      std::function<void(const std::string& queue_id, std::vector<std::pair<uint32_t, uint32_t>> counts)>;
  void on_record_attempts(record_attempts_fn fn) { _record_attempts = std::move(fn); }
  // Tell `home` how many attempts the pending recipients of `queue_id` have made.
  void send_attempts(unsigned home, const std::string& queue_id,
                     std::vector<std::pair<uint32_t, uint32_t>> counts);
  // Record held / released recipients at the home shard (set by the composition root).
  using record_hold_fn = std::function<void(const std::string& queue_id, std::vector<uint32_t> indices, bool held)>;
  void on_record_hold(record_hold_fn fn) { _record_hold = std::move(fn); }
  // Tell `home` that recipients `indices` of `queue_id` are held (or released).
  void send_hold(unsigned home, const std::string& queue_id, std::vector<uint32_t> indices, bool held);
  // Messages held back because a destination ring is full.
  size_t backlog() const { return _boxes.backlog(_shard.index()); }

 private:
  void on_message(shard_msg&& m);

  core::shard& _shard;
  shard_mailboxes& _boxes;
  scheduler& _sched;
  mark_done_fn _mark_done;
  record_attempts_fn _record_attempts;
  record_hold_fn _record_hold;
};

}  // namespace sr::queue
