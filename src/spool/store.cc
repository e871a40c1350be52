// A batch is a chain of linked SQEs: writev pieces at increasing offsets, then
// fdatasync. If a write fails or is short the kernel cancels the rest of the chain;
// partition::complete() then fails every message of the batch and cuts the segment
// back, so nothing after it is ever written behind garbage. DONE and ATTEMPTS records
// no client waits for ride on the next message batch's fsync; alone, they are written
// lazy_delay_ms later (under load one fsync in eight was for them alone: issue 11; a crash
// inside that window repeats the deliveries it covers: issue 12's drill, store.hh).
#include "sealrelay/spool/store.hh"

#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "sealrelay/util/log.hh"
#include "sealrelay/util/duration.hh"

namespace sr::spool {

store::store(core::shard& sh, std::unique_ptr<spool::partition> part,
                         duration commit_interval)
    : _shard(sh), _part(std::move(part)), _interval(commit_interval) {
  _timer_op.self = this;
  _lazy_op.self = this;
}

store::~store() {
  // The shard stops once no message awaits its answer; DONE and ATTEMPTS records may
  // still be staged or in flight (their bytes are ours). Write them synchronously so a
  // restart neither repeats finished deliveries nor loses attempt counts. Rewriting an
  // in-flight batch puts the same bytes at the same offsets.
  if (_in_flight != 0) return;
  if (_batch) {
    auto [w, f] = spool::partition::write_and_sync(_batch);
    _part->complete(_batch, w, f, _outcomes);
    _batch = nullptr;
  }
  _part->flush(_outcomes);
  for (auto& p : _adopted) p->flush(_outcomes);
}

void store::submit(spool::message_meta meta, std::span<const iovec> data,
                         spool::intake_client* client) {
  ++_in_flight;
  if (meta.received_ms == 0) meta.received_ms = unix_ms();
  if (!_part->stage(meta, data, client)) {
    SR_WARN("spool: message %s does not fit the record format", meta.queue_id.c_str());
    if (meta.external_body) ::unlink(_part->body_path(meta.queue_id).c_str());
    _failed_now.push_back(client);
  } else if (_on_durable) {
    _meta.emplace_back(client, std::move(meta));
  }
  schedule_commit();
}

// A message we generated ourselves; it owns its bytes until they are durable.
struct store::internal_msg final : spool::intake_client {
  std::string text;
  iovec iov;
  std::function<void(bool)> stored;
  void on_stored(bool ok) override {
    if (!ok) SR_ERROR("spool: could not store a generated message (%s)", text.size() ? "DSN or report" : "empty");
    auto cb = std::move(stored);
    delete this;
    if (cb) cb(ok);
  }
};

void store::submit_owned(spool::message_meta meta, std::string text,
                               std::function<void(bool)> stored) {
  auto* m = new internal_msg;
  m->text = std::move(text);
  m->iov = iovec{m->text.data(), m->text.size()};
  m->stored = std::move(stored);
  if (meta.queue_id.empty()) meta.queue_id = _part->next_queue_id();
  submit(std::move(meta), std::span<const iovec>(&m->iov, 1), m);
}

spool::partition& store::partition_of(const std::string& queue_id) {
  // A queue id names the shard whose partition stored it (hex digits 8-9).
  if (_adopted.empty() || queue_id.size() != spool::queue_id_len) return *_part;
  unsigned shard = 0;
  for (char c : std::string_view(queue_id).substr(8, 2))
    shard = shard * 16 + unsigned(c >= 'A' ? c - 'A' + 10 : c - '0');
  for (auto& p : _adopted)
    if (p->shard() == shard) return *p;
  return *_part;
}

void store::flush_adopted() {
  // Records for adopted partitions are rare (mail left over after server.shards was
  // lowered), so they are written synchronously, in one batch per partition per round.
  if (_adopted_flush_posted) return;
  _adopted_flush_posted = true;
  _shard.post([this] {
    _adopted_flush_posted = false;
    spool::partition::outcome_list out;
    for (auto& p : _adopted)
      if (p->staged_records() > 0 && !p->flush(out))
        SR_ERROR("spool %s: could not write DONE/ATTEMPTS records", p->dir().c_str());
  });
}

void store::mark_done(const std::string& queue_id, const std::vector<uint32_t>& indices) {
  spool::partition& p = partition_of(queue_id);
  p.mark_done(queue_id, indices);
  if (&p == _part.get()) schedule_lazy_commit();
  else flush_adopted();
}

void store::record_attempts(const std::string& queue_id,
                                  std::span<const std::pair<uint32_t, uint32_t>> counts) {
  spool::partition& p = partition_of(queue_id);
  p.record_attempts(queue_id, counts);
  if (&p == _part.get()) schedule_lazy_commit();
  else flush_adopted();
}

void store::record_hold(const std::string& queue_id, std::span<const uint32_t> indices, bool held) {
  spool::partition& p = partition_of(queue_id);
  p.record_hold(queue_id, indices, held);
  if (&p == _part.get()) schedule_lazy_commit();
  else flush_adopted();
}

void store::schedule_commit() {
  if (_batch) return;  // finish_batch() commits what gathered meanwhile
  if (_interval.count() > 0 && !_timer_armed && _failed_now.empty()) {
    // Wait a little so that messages finishing together share one fsync.
    _timer_armed = true;
    _timer_ts.tv_sec = _interval.count() / 1000;
    _timer_ts.tv_nsec = (_interval.count() % 1000) * 1'000'000;
    io_uring_prep_timeout(_shard.sqe(&_timer_op), &_timer_ts, 0, 0);
    return;
  }
  if (_timer_armed || _commit_posted) return;
  // Interval 0: commit after this batch of completions, so the messages finished by
  // them still share the fsync.
  _commit_posted = true;
  _shard.post([this] {
    _commit_posted = false;
    commit_now();
  });
}

void store::schedule_lazy_commit(int64_t delay_ms) {
  // A batch in flight, an armed commit timer or a posted commit takes these records along.
  if (_batch || _timer_armed || _commit_posted || _lazy_armed) return;
  _lazy_armed = true;
  _lazy_ts.tv_sec = delay_ms / 1000;
  _lazy_ts.tv_nsec = (delay_ms % 1000) * 1'000'000;
  io_uring_prep_timeout(_shard.sqe(&_lazy_op), &_lazy_ts, 0, 0);
}

void store::op::on_complete(int res, unsigned) { self->on_op(this, res); }

void store::on_op(op* o, int res) {
  if (o == &_timer_op) {
    _timer_armed = false;
    commit_now();
    return;
  }
  if (o == &_lazy_op) {
    _lazy_armed = false;
    commit_now();  // nothing when a message batch took the records meanwhile
    return;
  }
  size_t idx = size_t(o - _ops.data());
  if (idx + 1 == _ops.size()) {
    _fsync_res = res;  // the fsync is last in the chain
  } else if (res < 0) {
    if (!_write_err) _write_err = res;
  } else {
    _written += res;
  }
  if (--_ops_pending == 0) finish_batch();
}

void store::commit_now() {
  if (!_failed_now.empty()) {
    auto failed = std::move(_failed_now);
    _failed_now.clear();
    for (auto* c : failed) {
      --_in_flight;
      c->on_stored(false);  // never staged: no meta
    }
  }
  if (_batch) return;
  spool::batch* b = _part->take_batch();
  if (!b) return;
  if (b->error) {
    _part->complete(b, -b->error, -b->error, _outcomes);
    deliver(_outcomes);
    if (_part->staged_records() > 0) schedule_lazy_commit(retry_after_failure_ms);  // carried
    return;
  }
  _batch = b;
  _written = 0;
  _write_err = 0;
  _fsync_res = 0;
  _ops.assign(b->pieces.size() + 1, op{});
  for (auto& o : _ops) o.self = this;
  for (size_t i = 0; i < b->pieces.size(); ++i) {
    const auto& p = b->pieces[i];
    io_uring_sqe* s = _shard.sqe(&_ops[i]);
    io_uring_prep_writev(s, b->fd, p.iov, unsigned(p.iovcnt), p.offset);
    s->flags |= IOSQE_IO_LINK;
  }
  io_uring_sqe* s = _shard.sqe(&_ops.back());
  io_uring_prep_fsync(s, b->fd, IORING_FSYNC_DATASYNC);
  _ops_pending = unsigned(_ops.size());
}

void store::finish_batch() {
  spool::batch* b = _batch;
  int64_t wr = _write_err ? _write_err : _written;
  int fs = _fsync_res;
  if (wr >= 0 && uint64_t(wr) != b->size && fs == -ECANCELED) fs = 0;  // short write: complete() sees it
  if (_write_err || fs < 0)
    SR_ERROR("spool: batch of %llu bytes failed (write %lld, fsync %d): answering 452",
             (unsigned long long)b->size, (long long)wr, fs);
  const bool failed = _write_err || fs < 0 || wr != int64_t(b->size);
  _part->complete(b, wr, fs, _outcomes);
  _batch = nullptr;
  deliver(_outcomes);
  if (_part->staged_messages() > 0 || !_failed_now.empty()) commit_now();
  // A failed batch's DONE/ATTEMPTS records are carried to the next one (partition): alone,
  // they are tried again a second later, not in a loop against a full disk.
  else if (_part->staged_records() > 0) schedule_lazy_commit(failed ? retry_after_failure_ms : lazy_delay_ms);
}

spool::message_meta* store::find_meta(void* cookie) {
  // Batches complete in staging order: the wanted entry is almost always at the head.
  for (size_t i = _meta_head; i < _meta.size(); ++i)
    if (_meta[i].first == cookie) return &_meta[i].second;
  return nullptr;
}

void store::drop_meta(void* cookie) {
  for (size_t i = _meta_head; i < _meta.size(); ++i)
    if (_meta[i].first == cookie) {
      _meta[i].first = nullptr;
      _meta[i].second = {};
      break;
    }
  while (_meta_head < _meta.size() && _meta[_meta_head].first == nullptr) ++_meta_head;
  if (_meta_head == _meta.size()) {
    _meta.clear();  // keeps the capacity
    _meta_head = 0;
  } else if (_meta_head >= 64 && _meta_head * 2 >= _meta.size()) {
    _meta.erase(_meta.begin(), _meta.begin() + ptrdiff_t(_meta_head));
    _meta_head = 0;
  }
}

void store::deliver(spool::partition::outcome_list& outcomes) {
  if (_on_durable) {
    // Queue what became durable before answering, so a 250 never precedes the job.
    for (const auto& loc : _part->last_locations())
      if (spool::message_meta* m = find_meta(loc.cookie)) _on_durable(*m, loc);
    for (auto& [cookie, ok] : outcomes)
      if (cookie) drop_meta(cookie);
  }
  for (auto& [cookie, ok] : outcomes) {
    if (!cookie) continue;
    --_in_flight;
    static_cast<intake_client*>(cookie)->on_stored(ok);
  }
  outcomes.clear();
}

}  // namespace sr::spool
