// Recipient bookkeeping happens here and only here: a recipient is final once it is
// delivered or bounced (then DONE goes home); deferred ones stay in the job with
// their attempt count. Bounces to the null sender are dropped, as RFC 5321 §4.5.5
// requires (no DSN about a DSN).
#include "sealrelay/queue/scheduler.hh"

#include <algorithm>
#include <chrono>
#include <ctime>

#include "dsn.hh"
#include "sealrelay/util/log.hh"
#include "sealrelay/util/duration.hh"

namespace sr::queue {

scheduler::scheduler(core::shard& sh, const config::config& cfg, home_link link)
    : _shard(sh), _cfg(cfg), _link(std::move(link)) {
  _shard.on_tick([this] { on_tick(); });
  set_shards(1);
  _rules = std::make_unique<backoff_rules>(_cfg);
}

scheduler::~scheduler() = default;

domain_state& scheduler::domain(const std::string& name, lane l, const config::pool_entry* pool,
                                const config::shaping_entry* shaping) {
  // A NUL cannot occur in a domain name: a domain's other queues never collide.
  static const char* const suffix[] = {"", "opportunistic", "requiretls", "tls-required-no"};
  std::string key = l == lane::mail ? name : name + std::string(1, '\0') + suffix[size_t(l)];
  if (pool) key += std::string(1, '\0') + "pool=" + pool->name;
  if (shaping) key += std::string(1, '\0') + "shaping=" + shaping->name;
  auto& slot = _domains[key];
  if (!slot) {
    slot = std::make_unique<domain_state>();
    slot->name = name;
    slot->pool = pool;
    slot->opportunistic_only = l == lane::reports;
    slot->requiretls = l == lane::requiretls;
    slot->tls_required_no = l == lane::tls_required_no;
    site_state& s = site_for(name, shaping);
    slot->site = &s;
    slot->max_conns = s.entry ? s.max_connections : std::max(1u, _cfg.outbound.max_conns_per_domain);
    slot->messages_per_conn = s.messages_per_conn;
    s.domains.push_back(slot.get());
  }
  return *slot;
}

site_state& scheduler::site_for(const std::string& domain, const config::shaping_entry* e) {
  // An entry is one site, except "*": each domain its own (as unshaped domains are).
  bool shared = e && e->shared();
  std::string key = shared ? e->name : std::string(1, '\0') + domain;
  auto& slot = _sites[key];
  if (!slot) {
    slot = std::make_unique<site_state>();
    site_state& s = *slot;
    s.entry = e;
    s.name = shared ? e->name : domain;
    s.metric = e ? size_t(e - _cfg.shaping.data()) : _cfg.shaping.size();  // else "default"
    // Unshaped: no limit over the domain's queues together, each keeps its own as before.
    s.max_connections = e && e->max_connections ? e->max_connections
                        : e ? std::max(1u, _cfg.outbound.max_conns_per_domain)
                            : UINT32_MAX;
    s.messages_per_conn = std::max(1u, e && e->max_messages_per_conn ? e->max_messages_per_conn
                                                                     : _cfg.outbound.messages_per_conn);
    s.retry = e && !e->retry.empty() ? &e->retry : &_cfg.outbound.retry;
    uint64_t now = _shard.now_ms();
    s.configured_rate = e ? e->max_message_rate.per_second() : 0;
    s.messages.set_rate(s.configured_rate, now);
    s.connections.set_rate(e ? e->max_connection_rate.per_second() : 0, now);
    s.minute_start_ms = now;
  }
  return *slot;
}

domain_state& scheduler::domain_of(const job& j) {
  // Reports, notices and the fallback's re-encrypted mail go out under plain opportunistic
  // policy (a forced domain's PGP copy must not be handed to the fallback again).
  bool report = j.kind != message_kind::message && j.kind != message_kind::dsn;
  if (report) return domain(j.domain, lane::reports, j.pool, j.shaping);
  // RFC 8689 §3: with REQUIRETLS, a TLS-Required header field is ignored.
  if (j.requiretls) return domain(j.domain, lane::requiretls, j.pool, j.shaping);
  if (j.tls_required_no) return domain(j.domain, lane::tls_required_no, j.pool, j.shaping);
  return domain(j.domain, lane::mail, j.pool, j.shaping);
}

const config::pool_entry* scheduler::choose_pool(const job& j) const {
  return config::pool_for(_cfg, j.domain, queue::domain_of(j.mail_from), j.shaping);
}

bool scheduler::place(std::unique_ptr<job>& j) {
  if (!j->shaping_known) {
    const config::shaping_entry* e = config::shaping_for_domain(_cfg, j->domain, false);
    if (!e && _mx_lookup && config::has_mx_shaping(_cfg) && !config::find_route(_cfg, j->domain)) {
      auto it = _mx_sites.find(j->domain);
      if (it == _mx_sites.end() || it->second.until_ms <= _shard.now_ms()) {
        auto& waiting = _resolving[j->domain];
        waiting.push_back(std::move(j));
        if (waiting.size() == 1) {
          std::string d = waiting.back()->domain;
          _mx_lookup(d, [this, d](bool ok, std::vector<std::string> hosts) { mx_known(d, ok, hosts); });
        }
        return false;
      }
      e = it->second.entry;
    }
    if (!e) e = config::shaping_for_domain(_cfg, j->domain, true);
    j->shaping = e;
    j->shaping_known = true;
  }
  if (j->shaping && j->shaping->shared() && _shards > 1 && _link.forward_job) {
    unsigned owner = owner_shard("shaping:" + j->shaping->name, _shards);
    if (owner != _shard.index()) {
      _link.forward_job(owner, std::move(j));
      return false;
    }
  }
  return true;
}

void scheduler::mx_known(const std::string& domain, bool ok, const std::vector<std::string>& hosts) {
  const config::shaping_entry* e = nullptr;
  for (const auto& h : hosts)  // in preference order: the first host that matches decides
    if ((e = config::shaping_for_mx(_cfg, h))) break;
  // An answer holds an hour; a failed lookup a minute (meanwhile the domain is unshaped).
  _mx_sites[domain] = {e, _shard.now_ms() + (ok ? 3'600'000 : 60'000)};
  auto it = _resolving.find(domain);
  if (it == _resolving.end()) return;
  auto jobs = std::move(it->second);
  _resolving.erase(it);
  for (auto& j : jobs) enqueue(std::move(j));
}

void scheduler::enqueue(std::unique_ptr<job> j) {
  if (!place(j)) return;
  job* raw = j.get();
  raw->pool = choose_pool(*raw);
  _jobs.emplace(raw, std::move(j));
  if (raw->received_ms && (_oldest_ms == 0 || raw->received_ms < _oldest_ms)) _oldest_ms = raw->received_ms;
  if (raw->held) return;  // held before a restart (HOLD record): waits for release
  if (raw->next_attempt_ms > _shard.now_ms()) {
    _deferred.emplace(raw->next_attempt_ms, raw);
    return;
  }
  auto& d = domain_of(*raw);
  d.ready.push_back(raw);
  kick(d);
}

uint64_t scheduler::oldest_received_ms(uint64_t now_ms) {
  if (_oldest_scanned == 0 || now_ms >= _oldest_scanned + oldest_rescan_ms) {
    _oldest_scanned = now_ms ? now_ms : 1;
    uint64_t oldest = 0;
    for (const auto& [raw, j] : _jobs)
      if (j->received_ms && (oldest == 0 || j->received_ms < oldest)) oldest = j->received_ms;
    _oldest_ms = oldest;
  }
  return _jobs.empty() ? 0 : _oldest_ms;
}

void scheduler::kick(domain_state& d) {
  if (!_conn || _paused) return;
  site_state& s = *d.site;
  const uint64_t now = _shard.now_ms();
  // Idle connections first: they are already through TCP, EHLO and TLS. Each wake() takes
  // a job (and a message token) at once, or parks again.
  while (!d.ready.empty() && !d.idle.empty() && s.messages.available(now)) {
    idle_waiter* w = d.idle.front();
    d.idle.pop_front();
    w->wake();
  }
  // Open another connection while more jobs can go now than connections about to take one
  // (opening, or between transactions). Under a message rate only the tokens there are can
  // go, and a connection of another queue of the site may be the one to take them.
  // (Another domain's idle connection cannot carry this one's mail: only this queue's
  // count as free; several queues of a site may so open a connection for the same token,
  // within max_connections and the connection rate.)
  while (!d.ready.empty() && d.active < d.max_conns && s.active < s.max_connections) {
    unsigned free_conns = d.active > d.in_progress ? d.active - d.in_progress : 0;
    uint64_t can_go = std::min<uint64_t>(d.ready.size(), s.messages.whole(now));
    if (can_go <= free_conns) break;
    if (!s.connections.available(now)) break;
    s.connections.take(now);
    ++d.active;
    ++s.active;
    ++metric(s).connections;
    _conn->open(d);
  }
  // The site's connections are all open, and idle ones of another domain hold slots this
  // one needs: close one (as Postfix's connection cache gives up a cached connection).
  if (!d.ready.empty() && d.active == 0 && s.active >= s.max_connections) retire_idle(s, d);
  // Ready jobs left behind by a limit that time lifts (a token, a connection slot): the
  // tick kicks this site again.
  if (!d.ready.empty() && (s.entry || s.messages.limited())) wait_on(s);
}

void scheduler::retire_idle(site_state& s, const domain_state& need) {
  for (domain_state* o : s.domains)
    if (o != &need && o->ready.empty() && !o->idle.empty()) {
      idle_waiter* w = o->idle.front();
      o->idle.pop_front();
      w->retire();  // its connection_closed() frees the slot and kicks the site
      return;
    }
}

void scheduler::wait_on(site_state& s) {
  if (s.waiting) return;
  s.waiting = true;
  _waiting.push_back(&s);
}

void scheduler::kick_site(site_state& s) {
  const size_t n = s.domains.size();
  const uint64_t now = _shard.now_ms();
  if (s.connections.limited()) {
    // Connections are what is scarce (max_connection_rate), and one carries the mail of one
    // domain: the queues with the most ready mail go first, so each new connection carries
    // as much as it can (round-robin gave a provider's rate away to connections that took a
    // message or two; tools/bench-shaping, provider 05). Every queue still gets its turn:
    // the longest queue changes as mail comes in and goes out.
    std::vector<domain_state*> order;
    for (domain_state* d : s.domains)
      if (!d->ready.empty()) order.push_back(d);
    std::stable_sort(order.begin(), order.end(),
                     [](const domain_state* a, const domain_state* b) { return a->ready.size() > b->ready.size(); });
    for (domain_state* d : order) {
      kick(*d);
      if (!s.messages.available(now)) {
        wait_on(s);
        return;
      }
    }
    return;
  }
  for (size_t k = 0; k < n; ++k) {
    domain_state& d = *s.domains[(s.next_domain + k) % n];
    if (d.ready.empty()) continue;
    kick(d);
    if (!s.messages.available(now)) {
      // Out of tokens: the next kick starts after this queue, so every domain of a shared
      // site gets its turn; the queues not reached (or this one, emptied by the last
      // token) may still hold ready jobs, so the next tick comes back.
      s.next_domain = (s.next_domain + k + 1) % n;
      wait_on(s);
      return;
    }
  }
}

void scheduler::unpark(domain_state& d, idle_waiter* w) {
  auto it = std::find(d.idle.begin(), d.idle.end(), w);
  if (it != d.idle.end()) d.idle.erase(it);
}

job* scheduler::take(domain_state& d) { return take_job(d, true); }

job* scheduler::take_unmetered(domain_state& d) { return take_job(d, false); }

job* scheduler::take_job(domain_state& d, bool metered) {
  site_state& s = *d.site;
  const uint64_t now = _shard.now_ms();
  while (!d.ready.empty() && !_paused) {
    if (metered && !s.messages.available(now)) {
      wait_on(s);
      return nullptr;
    }
    job* j = d.ready.front();
    d.ready.pop_front();
    if (_screen && screen_out(j)) continue;  // every recipient suppressed: nothing to send
    if (metered) {
      s.messages.take(now);
      s.count_message(now);
    }
    ++s.in_progress;
    ++d.in_progress;
    j->in_flight = true;
    j->unmetered = !metered;
    return j;
  }
  return nullptr;
}

bool scheduler::screen_out(job* j) {
  std::vector<job_rcpt> removed;
  for (const auto& r : j->rcpts)
    if (_screen->suppressed(r.address)) removed.push_back(r);
  if (removed.empty()) return false;
  _screen->screened(*j, removed);
  _stats.suppressed += removed.size();
  std::vector<uint32_t> done;
  done.reserve(removed.size());
  for (const auto& r : removed) done.push_back(r.index);
  if (_link.mark_done) _link.mark_done(j->home, j->queue_id, std::move(done));
  std::erase_if(j->rcpts, [&](const job_rcpt& r) {
    return std::any_of(removed.begin(), removed.end(), [&](const job_rcpt& x) { return x.index == r.index; });
  });
  if (!j->rcpts.empty()) return false;
  _jobs.erase(j);
  return true;
}

void scheduler::give_back(job* j) {
  auto& d = domain_of(*j);
  --d.in_progress;
  --d.site->in_progress;
  if (!j->unmetered) d.site->messages.refund();  // it never went out: its token is still due
  j->unmetered = false;
  j->in_flight = false;
  if (j->delete_after) {
    delete_now(j, j->delete_after == 2);
    return;
  }
  if (j->held) return;
  d.ready.push_front(j);
}

void scheduler::connection_closed(domain_state& d) {
  site_state& s = *d.site;
  bool site_was_full = s.active >= s.max_connections;
  --d.active;
  --s.active;
  --metric(s).connections;
  if (site_was_full && s.entry) {
    // The destination was at max_connections: the MX may not have seen this close yet (the
    // FIN is on its way), and a new connection now would be one too many for an MX that
    // counts strictly (tools/bench-shaping saw 421 greetings for it). The next tick, at
    // most 100 ms on, opens the next one, for this domain or another of the destination.
    wait_on(s);
    return;
  }
  kick(d);
}

void scheduler::pause(bool paused) {
  if (_paused == paused) return;
  _paused = paused;
  if (paused) return;
  std::vector<domain_state*> ready;  // kick() may add domains (DSNs): collect first
  for (auto& [name, d] : _domains)
    if (!d->ready.empty()) ready.push_back(d.get());
  for (auto* d : ready) kick(*d);
}

uint64_t scheduler::retry_delay_ms(unsigned attempts, const std::vector<duration>* schedule) const {
  const auto& r = schedule ? *schedule : _cfg.outbound.retry;
  if (r.empty()) return 60'000;
  size_t i = attempts == 0 ? 0 : std::min<size_t>(attempts - 1, r.size() - 1);
  return uint64_t(r[i].count());
}

void scheduler::expire(const job& j, std::span<rcpt_result> results) const {
  if (unix_ms() < j.received_ms + uint64_t(_cfg.outbound.max_queue_age.count())) return;
  for (auto& r : results) {
    if (r.outcome != rcpt_outcome::deferred) continue;
    r.outcome = rcpt_outcome::bounced;
    r.status = "4.4.7";
    r.reason = report::reason::expired;
  }
}

void scheduler::finish(job* j, std::span<const rcpt_result> given) {
  auto& d = domain_of(*j);
  --d.in_progress;
  --d.site->in_progress;
  j->unmetered = false;
  j->in_flight = false;
  if (!_rules->empty())
    for (const auto& r : given)
      if (r.outcome == rcpt_outcome::deferred || r.outcome == rcpt_outcome::bounced)
        if (!r.reply.empty() && (r.reply[0] == '4' || r.reply[0] == '5')) {
          check_backoff(*d.site, j->domain, r.reply);
          break;  // one reply per transaction: the rest of its recipients say the same
        }
  // Callers that audit pass one result per recipient and have called expire() first: then
  // the results are read where they are (no copy of their strings per delivery).
  std::vector<rcpt_result> own;
  std::span<const rcpt_result> results = given;
  bool expiring = false;
  if (unix_ms() >= j->received_ms + uint64_t(_cfg.outbound.max_queue_age.count()))
    for (const auto& r : given) expiring |= r.outcome == rcpt_outcome::deferred;
  if (given.size() != j->rcpts.size() || expiring) {
    own.assign(given.begin(), given.end());
    own.resize(j->rcpts.size());  // a missing result is a deferral
    expire(*j, own);
    results = own;
  }
  std::vector<uint32_t> done;
  std::vector<const job_rcpt*> bounced;
  std::vector<rcpt_result> bounce_why;
  std::vector<job_rcpt> remaining;
  std::vector<uint32_t> after_dsn;  // bounced recipients: done once their DSN is durable
  const bool sends_dsn = !j->mail_from.empty() && j->kind != message_kind::dsn;
  for (size_t i = 0; i < j->rcpts.size(); ++i) {
    job_rcpt& r = j->rcpts[i];
    const rcpt_result& res = i < results.size() ? results[i] : rcpt_result{};
    ++r.attempts;
    // Kept for a later DSN: only a recipient still pending or bounced now needs them.
    if (res.outcome == rcpt_outcome::deferred || res.outcome == rcpt_outcome::bounced) {
      if (!res.reply.empty()) r.last_reply = res.reply;
      if (!res.mx.empty()) r.last_mx = res.mx;
      r.last_reason = res.reason;
    }
    switch (res.outcome) {
      case rcpt_outcome::delivered:
        ++_stats.delivered;
        done.push_back(r.index);
        break;
      case rcpt_outcome::bounced: {
        ++_stats.bounced;
        (sends_dsn ? after_dsn : done).push_back(r.index);
        bounced.push_back(&r);
        rcpt_result why = res;
        if (res.reason == report::reason::expired)
          why.reply = "message expired after " + format_duration(_cfg.outbound.max_queue_age) +
                      " in the queue; last error: " + (r.last_reply.empty() ? "none" : r.last_reply);
        bounce_why.push_back(std::move(why));
        break;
      }
      case rcpt_outcome::escrowed:
      case rcpt_outcome::pgp:
      case rcpt_outcome::smime:
        ++_stats.handed_off;
        done.push_back(r.index);
        break;
      case rcpt_outcome::deferred:
        ++_stats.deferred;
        remaining.push_back(r);
        break;
      case rcpt_outcome::dropped:
        // Exclusive policy: gone for good; the sender hears of it only when asked.
        ++_stats.dropped;
        (sends_dsn && res.notify_sender ? after_dsn : done).push_back(r.index);
        if (res.notify_sender) {
          bounced.push_back(&r);
          rcpt_result why = res;
          why.status = "5.7.10";
          why.reply = "dropped: the recipient's TLS policy forbids delivery without acceptable TLS (" +
                      std::string(report::to_string(res.reason)) + ")";
          bounce_why.push_back(std::move(why));
        }
        break;
    }
  }
  if (!bounced.empty()) bounce(*j, bounced, bounce_why, std::move(after_dsn));
  if (!done.empty() && _link.mark_done) _link.mark_done(j->home, j->queue_id, std::move(done));
  if (remaining.empty()) {
    _jobs.erase(j);
    kick(d);
    return;
  }
  unsigned attempts = 0;
  for (auto& r : remaining) attempts = std::max(attempts, r.attempts);
  if (_link.record_attempts) {
    std::vector<std::pair<uint32_t, uint32_t>> counts;
    counts.reserve(remaining.size());
    for (auto& r : remaining) counts.emplace_back(r.index, r.attempts);
    _link.record_attempts(j->home, j->queue_id, std::move(counts));
  }
  j->rcpts = std::move(remaining);
  j->body.clear();
  j->body.shrink_to_fit();  // a deferred message waits on disk, not in memory
  j->next_attempt_ms = _shard.now_ms() + retry_delay_ms(attempts, d.site->retry);
  if (j->delete_after) {
    // Deleted by the operator during this attempt: what it delivered stays delivered.
    delete_now(j, j->delete_after == 2);
  } else if (!j->held) {  // held during this attempt: waits for release
    _deferred.emplace(j->next_attempt_ms, j);
  }
  kick(d);
}

void scheduler::bounce(job& j, std::vector<const job_rcpt*> failed, std::span<const rcpt_result> why,
                       std::vector<uint32_t> finish_after) {
  if (j.mail_from.empty() || j.kind == message_kind::dsn) {
    SR_INFO("%s: %zu recipients bounced; no DSN to the null sender", j.queue_id.c_str(), failed.size());
    return;
  }
  std::vector<dsn_recipient> recipients;
  for (size_t i = 0; i < failed.size(); ++i) {
    dsn_recipient r;
    r.address = failed[i]->address;
    r.status = why[i].status.empty() ? (why[i].outcome == rcpt_outcome::bounced ? "5.0.0" : "4.0.0")
                                     : why[i].status;
    r.diagnostic = why[i].reply.empty() ? "delivery failed" : why[i].reply;
    r.remote_mta = why[i].mx;
    recipients.push_back(std::move(r));
  }
  ++_stats.dsn_sent;
  // Everything the DSN needs is copied: the job may be gone when the bytes arrive.
  auto send = [this, home = j.home, qid = j.queue_id, from = j.mail_from,
               arrival = std::time_t(j.received_ms / 1000), recipients = std::move(recipients),
               finish_after = std::move(finish_after), redacted = j.requiretls,
               msg_id = j.msg_id](std::string_view original) {
    dsn_input in;
    in.redacted = redacted;
    in.original_msg_id = msg_id;
    in.reporting_mta = _cfg.server.hostname;
    in.queue_id = qid;
    in.original_sender = from;
    in.arrival = arrival;
    in.now = std::time(nullptr);
    in.original_message = original;
    in.recipients = recipients;
    if (!_link.spool_dsn) return;
    _link.spool_dsn(home, build_dsn(in), from, [this, home, qid, idx = finish_after](bool durable) {
      if (!durable) {
        // The original stays pending in the spool: a restart retries and bounces it again.
        SR_ERROR("%s: the DSN could not be stored; the original stays in the spool", qid.c_str());
        return;
      }
      if (!idx.empty() && _link.mark_done) _link.mark_done(home, qid, idx);
    });
  };
  if (j.requiretls) {
    // RFC 8689 §5: the DSN is ordinary mail, so it returns nothing of the original.
    send({});
    return;
  }
  if (!j.body.empty() || j.length == 0 || !_load) {
    send(j.body);
    return;
  }
  // The DSN returns the original's headers: read them back from the spool first, only
  // the start of the message (a large message is never loaded whole for its bounce).
  auto copy = std::make_shared<job>();
  copy->queue_id = j.queue_id;
  copy->home = j.home;
  copy->segment = j.segment;
  copy->offset = j.offset;
  copy->length = std::min<uint64_t>(j.length, dsn_original_read_limit);
  _load(copy.get(), [copy, send = std::move(send)](bool ok) {
    send(ok ? std::string_view(copy->body) : std::string_view());
  });
}

void scheduler::check_backoff(site_state& s, const std::string& domain, std::string_view reply) {
  const config::backoff_rule* rule = _rules->match(reply);
  if (!rule) return;
  const uint64_t now = _shard.now_ms();
  const uint64_t until = now + uint64_t(rule->lasts.count());
  const bool was = s.backed_off(now);
  // Many connections see the same deferral at once: within a minute of the last lowering a
  // match only extends it; later, the lowered rate was still too high: lower again.
  if (was && now < s.backoff_lowered_ms + 60'000) {
    s.backoff_until_ms = std::max(s.backoff_until_ms, until);
    return;
  }
  double before = was ? s.backoff_rate : (s.configured_rate > 0 ? s.configured_rate : s.observed_rate(now));
  double after = std::max(1.0 / 60.0, before * rule->factor);
  s.backoff_rate = after;
  s.backoff_until_ms = std::max(s.backoff_until_ms, until);
  s.backoff_lowered_ms = now;
  ++metric(s).backoffs;
  s.messages.set_rate(after, now);
  publish_rate(s);
  if (!was) _backed_off.push_back(&s);
  SR_INFO("shaping: %s: back-off (%s): %llu/h -> %llu/h for %s after \"%.*s\"", s.name.c_str(), rule->label.c_str(),
          (unsigned long long)per_hour(was || s.configured_rate > 0 ? before : 0), (unsigned long long)per_hour(after),
          format_duration(rule->lasts).c_str(), int(std::min<size_t>(reply.size(), 200)), reply.data());
  if (_on_shaping) {
    shaping_event ev;
    ev.destination = s.name;
    ev.domain = domain;
    ev.rule = rule->label;
    ev.reply = std::string(reply);
    ev.rate_per_hour = per_hour(after);
    // An unshaped site had no limit before its first back-off.
    ev.previous_rate_per_hour = was || s.configured_rate > 0 ? per_hour(before) : 0;
    ev.until_unix_ms = unix_ms() + (s.backoff_until_ms - now);
    _on_shaping(ev);
  }
}

void scheduler::refresh_rate(site_state& s, uint64_t now) {
  if (s.backoff_until_ms == 0 || s.backoff_until_ms > now) return;
  uint64_t before = per_hour(s.backoff_rate);
  s.backoff_until_ms = 0;
  s.backoff_rate = 0;
  s.messages.set_rate(s.configured_rate, now);
  publish_rate(s);
  SR_INFO("shaping: %s: back-off over, %llu/h again", s.name.c_str(), (unsigned long long)per_hour(s.configured_rate));
  if (_on_shaping) {
    shaping_event ev;
    ev.restore = true;
    ev.destination = s.name;
    ev.rate_per_hour = per_hour(s.configured_rate);
    ev.previous_rate_per_hour = before;
    _on_shaping(ev);
  }
}

shaping_stats& scheduler::metric(const site_state& s) { return _metrics[s.metric]; }

void scheduler::publish_rate(const site_state& s) {
  // A "*" entry's and the unshaped domains' series have no one rate (0).
  if (s.entry && s.entry->shared()) metric(s).rate_per_hour = per_hour(s.messages.rate());
}

void scheduler::set_shards(unsigned n) {
  _shards = n ? n : 1;
  // One series per [[shaping]] entry, then "default". A shared entry's rate is reported by
  // the one shard that owns it (a scrape sums the shards): its configured rate until a
  // back-off changes it.
  _metrics.assign(_cfg.shaping.size() + 1, shaping_stats{});
  for (size_t i = 0; i < _cfg.shaping.size(); ++i) {
    const auto& e = _cfg.shaping[i];
    if (e.shared() && owner_shard("shaping:" + e.name, _shards) == _shard.index())
      _metrics[i].rate_per_hour = per_hour(e.max_message_rate.per_second());
  }
}

void scheduler::on_tick() {
  uint64_t now = _shard.now_ms();
  if (now >= _mx_pruned_ms + 60'000) {  // MX answers past their hour: forget them
    _mx_pruned_ms = now;
    std::erase_if(_mx_sites, [now](const auto& kv) { return kv.second.until_ms <= now; });
  }
  if (!_backed_off.empty())
    std::erase_if(_backed_off, [&](site_state* s) {
      refresh_rate(*s, now);
      return s->backoff_until_ms == 0;
    });
  if (!_waiting.empty()) {
    // Sites whose ready jobs waited for a token or a connection slot: kick them; those
    // that still wait put themselves back on the list.
    std::vector<site_state*> waiting;
    waiting.swap(_waiting);
    for (site_state* s : waiting) s->waiting = false;
    for (site_state* s : waiting) kick_site(*s);
  }
  std::vector<domain_state*> touched;
  while (!_deferred.empty() && _deferred.begin()->first <= now) {
    job* j = _deferred.begin()->second;
    _deferred.erase(_deferred.begin());
    auto& d = domain_of(*j);
    d.ready.push_back(j);
    touched.push_back(&d);
  }
  for (auto* d : touched) kick(*d);
}

const char* to_string(job_state s) {
  switch (s) {
    case job_state::ready: return "ready";
    case job_state::deferred: return "deferred";
    case job_state::held: return "held";
    case job_state::active: return "active";
  }
  return "unknown";
}

void scheduler::for_each_job(const std::function<void(const job&, job_state, uint64_t)>& fn) const {
  const uint64_t now = _shard.now_ms(), wall = unix_ms();
  for (const auto& [raw, j] : _jobs) {
    job_state st = j->in_flight ? job_state::active
                   : j->held    ? job_state::held
                   : j->next_attempt_ms > now ? job_state::deferred
                                              : job_state::ready;
    uint64_t next = st == job_state::deferred ? wall + (j->next_attempt_ms - now) : 0;
    fn(*j, st, next);
  }
}

std::vector<job*> scheduler::select(const job_selector& sel) const {
  const uint64_t now = _shard.now_ms();
  std::vector<job*> out;
  for (const auto& [raw, j] : _jobs) {
    bool match = sel.all;
    if (!sel.queue_id.empty()) match = j->queue_id == sel.queue_id;
    else if (!sel.domain.empty()) match = j->domain == sel.domain;
    else if (sel.all_deferred) match = !j->held && !j->in_flight && j->next_attempt_ms > now;
    if (match) out.push_back(raw);
  }
  // _jobs is unordered: act in arrival order so that a flush keeps the oldest first.
  std::sort(out.begin(), out.end(), [](const job* a, const job* b) {
    return a->received_ms != b->received_ms ? a->received_ms < b->received_ms : a->queue_id < b->queue_id;
  });
  return out;
}

void scheduler::detach(job* j) {
  auto& d = domain_of(*j);
  if (auto it = std::find(d.ready.begin(), d.ready.end(), j); it != d.ready.end()) d.ready.erase(it);
  _deferred.erase({j->next_attempt_ms, j});
}

void scheduler::make_due(job* j) {
  j->next_attempt_ms = 0;
  auto& d = domain_of(*j);
  d.ready.push_back(j);
  kick(d);
}

void scheduler::persist_hold(const job& j, bool held) {
  if (!_link.record_hold) return;
  std::vector<uint32_t> idx;
  idx.reserve(j.rcpts.size());
  for (const auto& r : j.rcpts) idx.push_back(r.index);
  _link.record_hold(j.home, j.queue_id, std::move(idx), held);
}

control_result scheduler::hold(const job_selector& sel) {
  control_result res;
  for (job* j : select(sel)) {
    ++res.matched;
    if (j->held) continue;
    j->held = true;
    persist_hold(*j, true);
    if (j->in_flight) {
      ++res.pending;  // finish() / give_back() leave it held
      continue;
    }
    detach(j);
    ++res.applied;
  }
  return res;
}

control_result scheduler::release(const job_selector& sel) {
  control_result res;
  for (job* j : select(sel)) {
    ++res.matched;
    if (!j->held) continue;
    j->held = false;
    persist_hold(*j, false);
    ++res.applied;
    if (!j->in_flight) make_due(j);
  }
  return res;
}

control_result scheduler::flush(const job_selector& sel) {
  control_result res;
  const uint64_t now = _shard.now_ms();
  for (job* j : select(sel)) {
    ++res.matched;
    if (j->held || j->in_flight || j->next_attempt_ms <= now) continue;  // already due (or held)
    detach(j);
    make_due(j);
    ++res.applied;
  }
  return res;
}

control_result scheduler::requeue(const job_selector& sel) {
  control_result res;
  for (job* j : select(sel)) {
    ++res.matched;
    for (auto& r : j->rcpts) r.attempts = 0;
    if (j->held) {
      j->held = false;
      persist_hold(*j, false);
    }
    ++res.applied;
    if (j->in_flight) continue;  // its attempt is running: finish() schedules it
    detach(j);
    make_due(j);
  }
  return res;
}

control_result scheduler::remove(const job_selector& sel, bool dsn) {
  control_result res;
  for (job* j : select(sel)) {
    ++res.matched;
    if (j->in_flight) {
      j->delete_after = dsn ? 2 : 1;
      ++res.pending;
      continue;
    }
    detach(j);
    delete_now(j, dsn);
    ++res.applied;
  }
  return res;
}

void scheduler::delete_now(job* j, bool dsn) {
  if (_on_delete) _on_delete(*j);
  _stats.deleted += j->rcpts.size();
  std::vector<uint32_t> idx;
  for (const auto& r : j->rcpts) idx.push_back(r.index);
  const bool sends_dsn = dsn && !j->mail_from.empty() && j->kind != message_kind::dsn;
  if (sends_dsn) {
    std::vector<const job_rcpt*> failed;
    std::vector<rcpt_result> why;
    for (const auto& r : j->rcpts) {
      failed.push_back(&r);
      rcpt_result w;
      w.outcome = rcpt_outcome::bounced;
      w.status = "5.0.0";
      w.reply = "deleted from the queue by the operator" +
                (r.last_reply.empty() ? std::string() : "; last error: " + r.last_reply);
      w.mx = r.last_mx;
      why.push_back(std::move(w));
    }
    bounce(*j, std::move(failed), why, std::move(idx));  // DONE once the DSN is durable
  } else if (_link.mark_done) {
    _link.mark_done(j->home, j->queue_id, std::move(idx));
  }
  _jobs.erase(j);
}

}  // namespace sr::queue
