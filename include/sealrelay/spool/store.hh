// spool::store, the relay's message store: a spool partition written through the
// shard's io_uring; every producer reaches it through spool::intake. Group commit: every message that finishes DATA while a batch is being
// written (or within limits.commit_interval) rides on the next single writev chain +
// fdatasync; their 250s go out when that fsync completes.
#pragma once
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/spool/intake.hh"
#include "sealrelay/spool/partition.hh"
#include "sealrelay/util/duration.hh"

namespace sr::spool {

// The relay's store: inbound SMTP (through server::intake_store) and every other
// producer reach the same partition through its intake API.
class store final : public intake {
 public:
  store(core::shard& sh, std::unique_ptr<spool::partition> part, duration commit_interval);
  ~store() override;

  // How long DONE/ATTEMPTS records wait for a message batch to ride on before they are
  // written alone. A kill -9 inside this window repeats the deliveries it covers, so it
  // is short: at 100 ms, one kill while the relay drained a backlog with no mail coming in
  // repeated 870 of 3,000 deliveries (tools/drill-faults); at 5 ms, a handful. Under inbound
  // load a message batch nearly always comes sooner, so it costs few fsyncs of their own.
  static constexpr int64_t lazy_delay_ms = 5;
  // After a failed batch (disk full) its DONE/ATTEMPTS records are tried again this much later.
  static constexpr int64_t retry_after_failure_ms = 1000;

  std::string next_queue_id() override { return _part->next_queue_id(); }
  void submit(spool::message_meta meta, std::span<const iovec> data,
              spool::intake_client* client) override;
  void submit_owned(spool::message_meta meta, std::string text,
                    std::function<void(bool)> stored) override;
  size_t in_flight() const override { return _in_flight; }
  std::string body_file_path(std::string_view queue_id, std::string_view) override {
    return _part->body_path(queue_id);
  }
  std::shared_ptr<const keyring> body_file_keys() override { return _part->keys(); }
  spool::partition& partition() { return *_part; }
  // Take over the partition of a shard that no longer runs (server.shards was lowered):
  // its messages are delivered from here; DONE/ATTEMPTS records for them go back to it.
  void adopt(std::unique_ptr<spool::partition> p) { _adopted.push_back(std::move(p)); }

  // Called for every message once durable, with where it landed (queues it for delivery).
  // The meta is the store's own copy, dropped after the call: the callee may move from it.
  using durable_fn = std::function<void(spool::message_meta&, const spool::message_location&)>;
  void on_durable(durable_fn fn) { _on_durable = std::move(fn); }
  // Recipients `indices` of `queue_id` are final: append a DONE record (group commit).
  void mark_done(const std::string& queue_id, const std::vector<uint32_t>& indices);
  // Record (recipient index, attempts so far) of a pending message (group commit).
  void record_attempts(const std::string& queue_id, std::span<const std::pair<uint32_t, uint32_t>> counts);
  // Record that recipients `indices` of `queue_id` are held or released (HOLD record).
  void record_hold(const std::string& queue_id, std::span<const uint32_t> indices, bool held);
  // Messages found in the spool at start-up, not yet finished (for the queue).
  std::vector<spool::recovered_message> recovered;

 private:
  struct op final : core::completion {
    store* self;
    void on_complete(int res, unsigned flags) override;
  };
  void schedule_commit();
  void schedule_lazy_commit(int64_t delay_ms = lazy_delay_ms);
  void commit_now();
  void on_op(op* o, int res);
  void finish_batch();
  void deliver(spool::partition::outcome_list& outcomes);
  spool::partition& partition_of(const std::string& queue_id);
  void flush_adopted();

  core::shard& _shard;
  std::unique_ptr<spool::partition> _part;
  std::vector<std::unique_ptr<spool::partition>> _adopted;  // no new messages go there
  bool _adopted_flush_posted = false;
  duration _interval;
  size_t _in_flight = 0;
  bool _commit_posted = false;
  bool _timer_armed = false;

  spool::batch* _batch = nullptr;   // in flight
  std::vector<op> _ops;             // one per writev piece + fsync
  unsigned _ops_pending = 0;
  int64_t _written = 0;
  int _write_err = 0;
  int _fsync_res = 0;
  op _timer_op;
  __kernel_timespec _timer_ts{};
  op _lazy_op;                      // DONE/ATTEMPTS records alone: written after lazy_delay
  __kernel_timespec _lazy_ts{};
  bool _lazy_armed = false;
  spool::partition::outcome_list _outcomes;
  // Metas of staged and in-flight messages, in staging order (the order batches complete
  // in), each until its outcome: a FIFO, no allocation per message once warm.
  std::vector<std::pair<void*, spool::message_meta>> _meta;
  size_t _meta_head = 0;             // entries before it are answered
  spool::message_meta* find_meta(void* cookie);
  void drop_meta(void* cookie);
  durable_fn _on_durable;
  struct internal_msg;
  std::vector<intake_client*> _failed_now;  // stage() refused: answered on the next post
};

}  // namespace sr::spool
