// The control thread never touches shard-owned state: it queues the request in each
// shard's inbox and wakes the shard; the shard copies what it has into a shard_answer.
// Replies are built here by hand (util/json.hh's escaper), one JSON object per reply.
#include "sealrelay/relay/control.hh"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>

#include "sealrelay/spool/partition.hh"
#include "sealrelay/util/duration.hh"
#include "sealrelay/util/json.hh"

namespace sr::relay {

control_hub::control_hub(unsigned shards) {
  for (unsigned i = 0; i < shards; ++i) _slots.push_back(std::make_unique<slot>());
}

void control_hub::attach(unsigned i, core::shard& sh, handler h) {
  auto& s = *_slots[i];
  {
    std::lock_guard lk(s.mu);
    s.sh = &sh;
    s.h = std::move(h);
  }
  sh.on_wake([this, i] { drain(i); });
  sh.on_tick([this, i] { drain(i); });  // a wake that raced attach
  sh.post([this, i] { drain(i); });     // what came before
}

void control_hub::detach(unsigned i) {
  auto& s = *_slots[i];
  std::deque<std::shared_ptr<control_call>> lost;
  {
    std::lock_guard lk(s.mu);
    s.sh = nullptr;
    s.h = nullptr;
    s.gone = true;
    lost.swap(s.inbox);
    s.queued.store(0, std::memory_order_release);
  }
  // Requests this shard will never answer: counted as answered without a part (reported
  // missing), so the control thread does not wait its whole timeout while the relay stops.
  for (auto& call : lost) {
    std::lock_guard lk(call->mu);
    ++call->answered;
    call->cv.notify_all();
  }
}

void control_hub::drain(unsigned i) {
  auto& s = *_slots[i];
  if (s.queued.load(std::memory_order_acquire) == 0) return;
  for (;;) {
    std::shared_ptr<control_call> call;
    handler h;
    {
      std::lock_guard lk(s.mu);
      if (s.inbox.empty() || !s.h) return;
      call = std::move(s.inbox.front());
      s.inbox.pop_front();
      s.queued.store(s.inbox.size(), std::memory_order_release);
      h = s.h;
    }
    shard_answer a;
    h(call->req, a);
    std::lock_guard lk(call->mu);
    call->parts[i] = std::move(a);
    ++call->answered;
    call->cv.notify_all();
  }
}

std::shared_ptr<control_call> control_hub::ask_all(const control::request& req, std::chrono::milliseconds timeout) {
  auto call = std::make_shared<control_call>(req, _slots.size());
  size_t absent = 0;
  for (auto& sp : _slots) {
    std::lock_guard lk(sp->mu);
    if (sp->gone) {  // stopped: it cannot answer
      ++absent;
      continue;
    }
    sp->inbox.push_back(call);  // a shard still starting answers once attached
    sp->queued.store(sp->inbox.size(), std::memory_order_release);
    if (sp->sh) sp->sh->wake();  // under the lock: detach() cannot free the shard meanwhile
  }
  std::unique_lock lk(call->mu);
  call->cv.wait_for(lk, timeout, [&] { return call->answered + absent == call->parts.size(); });
  return call;
}

namespace {

constexpr auto shard_timeout = std::chrono::seconds(5);
constexpr size_t header_read_limit = 64 * 1024;
constexpr uint64_t audit_scan_limit = 256ull << 20;  // show: the last 256 MiB of the audit log
constexpr size_t audit_lines_limit = 1000;

// One message as the jobs of every shard add up to.
struct message_view {
  const job_snapshot* first = nullptr;
  std::vector<const job_snapshot*> jobs;
};

// Jobs grouped by queue id, oldest message first.
std::vector<message_view> by_message(const control_call& call) {
  std::map<std::string, message_view> m;
  for (const auto& p : call.parts)
    if (p)
      for (const auto& j : p->jobs) {
        auto& v = m[j.queue_id];
        if (!v.first) v.first = &j;
        v.jobs.push_back(&j);
      }
  std::vector<message_view> out;
  out.reserve(m.size());
  for (auto& [id, v] : m) out.push_back(std::move(v));
  std::stable_sort(out.begin(), out.end(), [](const message_view& a, const message_view& b) {
    return a.first->received_ms < b.first->received_ms;
  });
  return out;
}

// Where a message stands as a whole: the most advanced of its jobs' states.
std::string message_state(const message_view& v) {
  static const char* order[] = {"active", "ready", "deferred", "held"};
  for (const char* s : order)
    for (const auto* j : v.jobs)
      if (j->state == s) return s;
  return v.first->state;
}

std::string reason_of(const job_snapshot::rcpt& r) {
  if (!r.last_reply.empty()) return r.last_reply;
  return r.last_reason;
}

void append_message(std::string& out, const message_view& v) {
  const auto& f = *v.first;
  const uint64_t now = unix_ms();
  uint64_t next = UINT64_MAX;
  for (const auto* j : v.jobs)
    if (j->state == "deferred") next = std::min(next, j->next_attempt_ms);
  out += "{\"queue_id\":";
  append_json_string(out, f.queue_id);
  out += ",\"size\":" + std::to_string(f.size);
  out += ",\"received_ms\":" + std::to_string(f.received_ms);
  out += ",\"age_s\":" + std::to_string(now > f.received_ms ? (now - f.received_ms) / 1000 : 0);
  out += ",\"from\":";
  append_json_string(out, f.from);
  out += ",\"msg_id\":";
  append_json_string(out, f.msg_id);
  out += ",\"state\":";
  append_json_string(out, message_state(v));
  out += ",\"next_attempt_ms\":" + std::to_string(next == UINT64_MAX ? 0 : next);
  out += ",\"recipients\":[";
  bool first = true;
  for (const auto* j : v.jobs)
    for (const auto& r : j->rcpts) {
      if (!first) out += ',';
      first = false;
      out += "{\"address\":";
      append_json_string(out, r.address);
      out += ",\"domain\":";
      append_json_string(out, j->domain);
      out += ",\"state\":";
      append_json_string(out, j->state);
      out += ",\"attempts\":" + std::to_string(r.attempts);
      out += ",\"last_reason\":";
      append_json_string(out, reason_of(r));
      out += ",\"next_attempt_ms\":" + std::to_string(j->next_attempt_ms) + "}";
    }
  out += "]}";
}

// Shards that did not answer: "" when all did.
std::string missing(const control_call& call) {
  std::string out;
  for (size_t i = 0; i < call.parts.size(); ++i)
    if (!call.parts[i]) out += (out.empty() ? "" : ",") + std::to_string(i);
  return out;
}

std::string list_reply(const control_call& call) {
  std::string out = "{\"ok\":true,\"messages\":[";
  bool first = true;
  for (const auto& v : by_message(call)) {
    if (!first) out += ',';
    first = false;
    append_message(out, v);
  }
  return out + "]}\n";
}

void append_counts(std::string& out, const char* name, const std::map<std::string, uint64_t>& m) {
  out += ",\"";
  out += name;
  out += "\":{";
  bool first = true;
  for (const auto& [k, n] : m) {
    if (!first) out += ',';
    first = false;
    append_json_string(out, k);
    out += ":" + std::to_string(n);
  }
  out += "}";
}

// A reason as stats counts it: a remote reply by its codes ("451 4.7.1"), so that replies
// naming each recipient still add up; our own reasons by their token.
std::string reason_key(const job_snapshot::rcpt& r) {
  if (r.last_reply.empty()) return r.last_reason.empty() ? "none" : r.last_reason;
  std::string key = r.last_reply.substr(0, 3);
  if (r.last_reply.size() > 5 && r.last_reply[3] == ' ' && std::isdigit(static_cast<unsigned char>(r.last_reply[4]))) {
    size_t sp = r.last_reply.find(' ', 4);
    key += " " + r.last_reply.substr(4, (sp == std::string::npos ? r.last_reply.size() : sp) - 4);
  }
  return key;
}

std::string stats_reply(const control_call& call) {
  std::map<std::string, uint64_t> by_state, by_domain, by_reason, msg_state;
  uint64_t recipients = 0, bytes = 0;
  auto msgs = by_message(call);
  for (const auto& v : msgs) {
    ++msg_state[message_state(v)];
    bytes += v.first->size;
    for (const auto* j : v.jobs)
      for (const auto& r : j->rcpts) {
        ++recipients;
        ++by_state[j->state];
        ++by_domain[j->domain];
        if (r.attempts) ++by_reason[reason_key(r)];
      }
  }
  std::string out = "{\"ok\":true,\"messages\":" + std::to_string(msgs.size()) +
                    ",\"recipients\":" + std::to_string(recipients) + ",\"bytes\":" + std::to_string(bytes);
  append_counts(out, "messages_by_state", msg_state);
  append_counts(out, "recipients_by_state", by_state);
  append_counts(out, "recipients_by_domain", by_domain);
  append_counts(out, "recipients_by_reason", by_reason);
  return out + "}\n";
}

// The header section of the message (up to header_read_limit bytes of it).
std::string read_headers(const job_snapshot& j, std::shared_ptr<const spool::keyring> keys) {
  spool::recovered_message m;
  m.segment = j.segment;
  m.offset = j.offset;
  m.length = std::min<uint64_t>(j.size, header_read_limit);
  m.meta.queue_id = j.queue_id;
  std::string text = spool::read_message(m, std::move(keys));
  size_t end = text.find("\r\n\r\n");
  if (end != std::string::npos) text.resize(end + 2);
  else if (text.size() > header_read_limit) text.resize(header_read_limit);
  return text;
}

// The audit lines of `queue_id` (the last audit_scan_limit bytes of the log).
std::vector<std::string> audit_lines(const std::string& file, const std::string& queue_id) {
  std::vector<std::string> out;
  if (file.empty()) return out;
  std::FILE* f = std::fopen(file.c_str(), "re");
  if (!f) return out;
  const std::string needle = "\"queue_id\":\"" + queue_id + "\"";
  if (std::fseek(f, 0, SEEK_END) == 0) {
    long size = std::ftell(f);
    if (size > long(audit_scan_limit)) {
      std::fseek(f, size - long(audit_scan_limit), SEEK_SET);
      int c;
      while ((c = std::fgetc(f)) != EOF && c != '\n') {}  // to the next whole line
    } else {
      std::fseek(f, 0, SEEK_SET);
    }
  }
  char* line = nullptr;
  size_t cap = 0;
  ssize_t n;
  while ((n = ::getline(&line, &cap, f)) > 0) {
    std::string_view l(line, size_t(n));
    if (l.find(needle) == std::string_view::npos) continue;
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.remove_suffix(1);
    out.emplace_back(l);
    if (out.size() > audit_lines_limit) out.erase(out.begin());
  }
  std::free(line);
  std::fclose(f);
  return out;
}

std::string show_reply(const control_call& call, const config::config& cfg,
                       std::shared_ptr<const spool::keyring> keys) {
  auto msgs = by_message(call);
  if (msgs.empty()) return control::error_reply("no queued message " + call.req.target);
  std::string out = "{\"ok\":true,\"message\":";
  append_message(out, msgs.front());
  out.pop_back();  // the closing brace: the show fields follow
  out += ",\"home_shard\":" + std::to_string(msgs.front().first->home);
  out += ",\"headers\":";
  append_json_string(out, read_headers(*msgs.front().first, std::move(keys)));
  out += ",\"audit\":[";
  bool first = true;
  for (const auto& l : audit_lines(cfg.audit.file, call.req.target)) {
    if (!first) out += ',';
    first = false;
    append_json_string(out, l);
  }
  return out + "]}}\n";
}

std::string action_reply(const control_call& call) {
  size_t matched = 0, applied = 0, pending = 0;
  for (const auto& p : call.parts)
    if (p) {
      matched += p->matched;
      applied += p->applied;
      pending += p->pending;
    }
  const auto& r = call.req;
  if (matched == 0) {
    std::string what = r.all_deferred ? "no deferred message"
                       : r.target.empty() ? "the queue is empty"
                       : control::is_queue_id(r.target) ? "no queued message " + r.target
                                                        : "no queued message for domain " + r.target;
    return control::error_reply(what);
  }
  std::string out = "{\"ok\":true,\"command\":";
  append_json_string(out, control::to_string(r.cmd));
  out += ",\"matched\":" + std::to_string(matched) + ",\"applied\":" + std::to_string(applied) +
         ",\"pending\":" + std::to_string(pending) + "}\n";
  return out;
}

}  // namespace

std::string answer_control(control_hub& hub, const config::config& cfg,
                           std::shared_ptr<const spool::keyring> keys, const control::request& req) {
  auto call = hub.ask_all(req, shard_timeout);
  std::lock_guard lk(call->mu);  // late answers wait until this reply is built
  if (std::string m = missing(*call); !m.empty())
    return control::error_reply("shard(s) " + m + " did not answer (within " +
                                std::to_string(shard_timeout.count()) + " s): the relay is starting or stopping" +
                                (req.cmd == control::command::list || req.cmd == control::command::stats ||
                                         req.cmd == control::command::show
                                     ? ""
                                     : "; the command may have taken effect on the others"));
  switch (req.cmd) {
    case control::command::list: return list_reply(*call);
    case control::command::stats: return stats_reply(*call);
    case control::command::show: return show_reply(*call, cfg, std::move(keys));
    default: return action_reply(*call);
  }
}

}  // namespace sr::relay
