// A job sent to its own shard skips the mailbox; one sent elsewhere is moved into a
// shard_msg, so ownership of the job crosses the ring with it and the sender keeps no
// pointer into it. The mailbox never refuses a message (overflow queue), so a
// dispatch never needs a retry loop.
#include "sealrelay/queue/dispatch.hh"

#include <algorithm>
#include <cctype>

#include "sealrelay/queue/scheduler.hh"
#include "sealrelay/util/log.hh"

namespace sr::queue {

std::string domain_of(const std::string& address) {
  auto at = address.rfind('@');
  if (at == std::string::npos) return {};
  std::string d = address.substr(at + 1);
  for (auto& c : d) c = char(std::tolower(static_cast<unsigned char>(c)));
  while (!d.empty() && d.back() == '.') d.pop_back();
  return d;
}

unsigned owner_shard(const std::string& domain, unsigned shards) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a: stable across runs and builds
  for (unsigned char c : domain) h = (h ^ c) * 1099511628211ull;
  return shards ? unsigned(h % shards) : 0;
}

std::vector<std::unique_ptr<job>> split_by_domain(spooled_message m, std::span<const uint32_t> done) {
  std::vector<std::unique_ptr<job>> jobs;
  for (uint32_t i = 0; i < m.rcpts.size(); ++i) {
    if (std::find(done.begin(), done.end(), i) != done.end()) continue;
    std::string d = domain_of(m.rcpts[i]);
    job* j = nullptr;
    for (auto& x : jobs)
      if (x->domain == d) j = x.get();
    if (!j) {
      auto nj = std::make_unique<job>();
      nj->domain = std::move(d);
      j = nj.get();
      jobs.push_back(std::move(nj));
    }
    job_rcpt r;
    r.address = std::move(m.rcpts[i]);
    r.index = i;
    if (i < m.attempts.size()) r.attempts = m.attempts[i];  // numbering continues after a restart
    if (i < m.held.size() && m.held[i]) j->held = true;      // held before a restart
    j->rcpts.push_back(std::move(r));
  }
  for (size_t k = 0; k < jobs.size(); ++k) {
    job& nj = *jobs[k];
    nj.kind = m.kind;
    nj.home = m.home;
    nj.offset = m.offset;
    nj.length = m.length;
    nj.received_ms = m.received_ms;
    nj.body_8bitmime = m.body_8bitmime;
    nj.requiretls = m.requiretls;
    nj.tls_required_no = m.tls_required_no;
    if (k + 1 < jobs.size()) {
      nj.queue_id = m.queue_id;
      nj.segment = m.segment;
      nj.mail_from = m.mail_from;
      nj.msg_id = m.msg_id;
    } else {
      nj.queue_id = std::move(m.queue_id);
      nj.segment = std::move(m.segment);
      nj.mail_from = std::move(m.mail_from);
      nj.msg_id = std::move(m.msg_id);
    }
  }
  return jobs;
}

std::string_view to_string(shard_msg_kind k) {
  switch (k) {
    case shard_msg_kind::deliver_job: return "deliver-job";
    case shard_msg_kind::mark_done: return "mark-done";
    case shard_msg_kind::record_attempts: return "record-attempts";
    case shard_msg_kind::record_hold: return "record-hold";
  }
  return "unknown";
}

dispatcher::dispatcher(core::shard& sh, shard_mailboxes& boxes, scheduler& sched, mark_done_fn mark_done)
    : _shard(sh), _boxes(boxes), _sched(sched), _mark_done(std::move(mark_done)) {}

void dispatcher::attach() {
  _boxes.attach(_shard.index(), _shard, [this](shard_msg&& m) { on_message(std::move(m)); });
}

void dispatcher::dispatch(spooled_message m, std::span<const uint32_t> done) {
  for (auto& j : split_by_domain(std::move(m), done)) send_job(std::move(j));
}

void dispatcher::send_job(std::unique_ptr<job> j) {
  unsigned owner = owner_shard(j->domain, _boxes.shards());  // before j moves (argument order)
  send_job_to(owner, std::move(j));
}

void dispatcher::send_job_to(unsigned owner, std::unique_ptr<job> j) {
  if (owner == _shard.index()) {
    _sched.enqueue(std::move(j));
    return;
  }
  shard_msg m;
  m.kind = shard_msg_kind::deliver_job;
  m.job_to_queue = std::move(j);
  _boxes.send(_shard, owner, std::move(m));
}

void dispatcher::send_done(unsigned home, const std::string& queue_id, std::vector<uint32_t> indices) {
  if (home == _shard.index()) {
    _mark_done(queue_id, std::move(indices));
    return;
  }
  shard_msg m;
  m.kind = shard_msg_kind::mark_done;
  m.queue_id = queue_id;
  m.indices = std::move(indices);
  _boxes.send(_shard, home, std::move(m));
}

void dispatcher::send_attempts(unsigned home, const std::string& queue_id,
                               std::vector<std::pair<uint32_t, uint32_t>> counts) {
  if (home == _shard.index()) {
    if (_record_attempts) _record_attempts(queue_id, std::move(counts));
    return;
  }
  shard_msg m;
  m.kind = shard_msg_kind::record_attempts;
  m.queue_id = queue_id;
  m.counts = std::move(counts);
  _boxes.send(_shard, home, std::move(m));
}

void dispatcher::send_hold(unsigned home, const std::string& queue_id, std::vector<uint32_t> indices,
                           bool held) {
  if (home == _shard.index()) {
    if (_record_hold) _record_hold(queue_id, std::move(indices), held);
    return;
  }
  shard_msg m;
  m.kind = shard_msg_kind::record_hold;
  m.queue_id = queue_id;
  m.indices = std::move(indices);
  m.held = held;
  _boxes.send(_shard, home, std::move(m));
}

void dispatcher::on_message(shard_msg&& m) {
  switch (m.kind) {
    case shard_msg_kind::deliver_job:
      if (m.job_to_queue) _sched.enqueue(std::move(m.job_to_queue));
      return;
    case shard_msg_kind::mark_done:
      _mark_done(m.queue_id, std::move(m.indices));
      return;
    case shard_msg_kind::record_attempts:
      if (_record_attempts) _record_attempts(m.queue_id, std::move(m.counts));
      return;
    case shard_msg_kind::record_hold:
      if (_record_hold) _record_hold(m.queue_id, std::move(m.indices), m.held);
      return;
  }
  SR_WARN("queue: cross-shard message of unknown kind %u ignored", unsigned(m.kind));
}

}  // namespace sr::queue
