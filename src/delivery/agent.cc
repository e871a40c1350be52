// The agent owns what every outbound connection of the shard shares: the TLS client
// context and session cache, the spool reader, the audit writer, and the tick
// that enforces connect and per-phase deadlines.
#include "sealrelay/delivery/agent.hh"


#include <algorithm>
#include <cctype>
#include <cstring>

#include "link.hh"
#include "walk.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/session_cache.hh"
#include "sealrelay/util/log.hh"

namespace sr::delivery {

audit::record job_record(const queue::job& j, const queue::job_rcpt& rc) {
  audit::record r;
  r.queue_id = j.queue_id;
  if (!j.msg_id.empty()) r.msg_id = j.msg_id;
  r.kind = j.kind;
  r.from = j.mail_from;
  r.rcpt = rc.address;
  r.domain = j.domain;
  r.attempt = rc.attempts + 1;
  return r;
}

agent::agent(core::shard& sh, const config::config& cfg, queue::scheduler& sched, dns::resolver& res,
             net::chunk_pool& pool, net::buffer_ring& ring, audit::writer* audit)
    : _shard(sh), _cfg(cfg), _sched(sched), _res(res), _pool(pool), _ring(ring), _audit(audit), _spool_reader(sh) {
  _sources.reserve(cfg.pools.size());
  for (const auto& p : cfg.pools) _sources.emplace_back(p);
}

const config::pool_address* agent::next_source(const config::pool_entry& pool, int family) {
  for (auto& s : _sources)
    if (&s.pool() == &pool) return s.next(family);
  return nullptr;
}

agent::~agent() = default;

status agent::start() {
  // Opportunistic delivery takes whatever TLS the MX speaks (as Postfix "may" does):
  // any TLS beats plaintext. Certificates are checked against tls.ca_file and recorded.
  auto ctx = tls::context::client(_cfg.tls.ca_file, tls::tls_version::v1_0);
  if (!ctx) ctx = tls::context::client(_cfg.tls.ca_file, tls::tls_version::v1_2);
  if (!ctx) return error{"outbound TLS: " + ctx.err()};
  _tls = std::make_unique<tls::context>(std::move(ctx.value()));
  _tls_cache = std::make_unique<tls::session_cache>(1024);
  _shard.on_tick([this] { on_tick(); });
  _sched.set_body_loader([this](queue::job* j, std::function<void(bool)> done) { load(j, std::move(done)); });
  // Every attempt is audited (HIPAA): while the audit log cannot keep up, no new
  // transaction starts on this shard; those under way still write their records.
  if (_audit) _audit->on_pressure([this](bool full) { _sched.pause(full); });
  return {};
}

void agent::open(queue::domain_state& d) {
  auto* a = new attempt(*this, d);
  add(a);
  a->start();
}

void agent::remove(link* l) {
  auto it = std::find(_links.begin(), _links.end(), l);
  if (it != _links.end()) {
    *it = _links.back();
    _links.pop_back();
  }
}

void agent::remove(attempt* a) {
  auto it = std::find(_attempts.begin(), _attempts.end(), a);
  if (it != _attempts.end()) {
    *it = _attempts.back();
    _attempts.pop_back();
  }
}

void agent::on_tick() {
  uint64_t now = _shard.now_ms();
  if (now / 1000 != _handoff_second) {
    _handoff_second = now / 1000;
    if (_handoff_suppressed)
      SR_INFO("%llu more messages handed to the fallback (lines not logged; see "
              "sealrelay_fallback_handoffs_total and the audit log)",
              (unsigned long long)_handoff_suppressed);
    _handoff_suppressed = 0;
    _handoff_logged = 0;
  }
  // Copies: a check may close a link or finish an attempt (removing it from the list).
  std::vector<link*> links = _links;
  // A link's recv that found the shared buffer ring empty (ENOBUFS: many inbound
  // connections holding chunks at once) is re-armed by nobody else: without this the
  // link never reads the server's next reply and sits until its phase timeout (seen as
  // 5 of 100 large messages stuck after their 250). As shard_server::on_tick does.
  _ring.refill();
  for (link* l : links) l->resume_recv_if_starved();
  for (link* l : links) l->check_deadline(now);
  std::vector<attempt*> attempts = _attempts;
  for (attempt* a : attempts)
    if (std::find(_attempts.begin(), _attempts.end(), a) != _attempts.end()) a->check_deadline(now);
}

void agent::load(queue::job* j, std::function<void(bool)> done) {
  // The spool's reader opens and pins the segment; delivery never touches its files.
  j->body.resize(j->length);
  _spool_reader.read(spool::body_ref{j->segment, j->offset, j->length}, j->body.data(), std::move(done));
}

static audit::outcome to_audit(queue::rcpt_outcome o) {
  switch (o) {
    case queue::rcpt_outcome::delivered: return audit::outcome::delivered;
    case queue::rcpt_outcome::deferred: return audit::outcome::deferred;
    case queue::rcpt_outcome::bounced: return audit::outcome::bounced;
    case queue::rcpt_outcome::dropped: return audit::outcome::dropped;
    case queue::rcpt_outcome::escrowed: return audit::outcome::escrowed;
    case queue::rcpt_outcome::pgp: return audit::outcome::pgp;
    case queue::rcpt_outcome::smime: return audit::outcome::smime;
  }
  return audit::outcome::deferred;
}

void agent::complete(queue::job* j, std::span<queue::rcpt_result> res, const link_info& li) {
  if (res.size() != j->rcpts.size()) {
    std::vector<queue::rcpt_result> own(res.begin(), res.end());
    own.resize(j->rcpts.size());  // a missing result is a deferral
    complete(j, own, li);
    return;
  }
  _sched.expire(*j, res);
  for (size_t i = 0; i < res.size(); ++i) {
    if (res[i].outcome != queue::rcpt_outcome::bounced) continue;
    auto cls = bounce_class_of(res[i], li);
    ++_counters.bounces_by_class[size_t(cls)];
    // Only a remote's permanent answer lists an address: never an expiry (its last reply was
    // a 4xx) nor our own give-up.
    const auto& reply = res[i].reply;
    if (_suppression && cls == report::bounce_class::bad_mailbox && res[i].reason != report::reason::expired &&
        reply.size() >= 3 && reply[0] == '5' && std::isdigit((unsigned char)reply[1]) &&
        std::isdigit((unsigned char)reply[2]))
      _suppression->add_bounced(j->rcpts[i].address, reply);
  }
  audit_job(*j, res, li);
  _sched.finish(j, res);
}

void agent::set_suppression(delivery::suppression* s) {
  _suppression = s;
  _sched.set_screen(s ? static_cast<queue::recipient_screen*>(this) : nullptr);
}

bool agent::suppressed(std::string_view address) { return _suppression && _suppression->suppressed(address); }

void agent::screened(const queue::job& j, std::span<const queue::job_rcpt> removed) {
  if (!_audit) return;
  // No host is contacted: the record says which policy would have applied, and nothing else.
  config::tls_policy pol = _cfg.outbound.default_policy;
  report::policy_source src = report::policy_source::default_policy;
  if (_policies) {
    const auto& p = _policies->lookup(j.domain).policy;
    pol = p.tls;
    src = p.source;
  }
  for (const auto& rc : removed) {
    audit::record r = job_record(j, rc);
    r.policy = pol;
    r.source = src;
    r.outcome = audit::outcome::suppressed;
    _audit->append(r);
  }
}

report::bounce_class agent::bounce_class_of(const queue::rcpt_result& rr, const link_info& li) {
  bool remote = rr.reply.size() >= 3 && std::isdigit((unsigned char)rr.reply[0]) &&
                std::isdigit((unsigned char)rr.reply[1]) && std::isdigit((unsigned char)rr.reply[2]);
  report::bounce_facts f;
  f.reason = rr.reason != report::reason::none ? rr.reason : remote ? report::reason::remote_5xx : li.reason;
  f.status = rr.status;
  if (remote) f.reply = rr.reply;
  return report::classify_bounce(f);
}

void agent::report_session(const link_end& e) {
  if (e.kind == outbound::close_kind::tls_failed) ++_counters.tls_failures_by_reason[size_t(e.reason)];
}

// One message at the fallback: owns what the answer needs (the job stays taken from the
// scheduler, so nothing frees it meanwhile), and deletes itself once answered.
struct agent::handoff_op final : policy::handoff_completion {
  agent* ag;
  queue::job* j;
  policy::effective_policy policy;
  link_info li;

  void handoff_done(std::span<const policy::handoff_outcome> per_rcpt) override {
    using policy::handoff_outcome;
    std::vector<queue::rcpt_result> res(j->rcpts.size());
    // The hand-off's own audit record: no host was contacted for it.
    link_info h;
    h.policy = li.policy;
    h.source = li.source;
    h.reason = li.reason;
    size_t handled = 0;
    for (size_t i = 0; i < res.size(); ++i) {
      auto& r = res[i];
      handoff_outcome o = i < per_rcpt.size() ? per_rcpt[i] : handoff_outcome::unavailable;
      r.mx = li.mx;
      r.status = "4.7.10";
      r.reason = li.reason;
      if (o != handoff_outcome::unavailable && o != handoff_outcome::defer) ++handled;
      switch (o) {
        case handoff_outcome::unavailable:
          r.outcome = queue::rcpt_outcome::deferred;
          r.reason = report::reason::fallback_unavailable;
          r.reply = "fallback unavailable: kept queued, retried over TLS";
          break;
        case handoff_outcome::defer:
          r.outcome = queue::rcpt_outcome::deferred;
          r.reason = li.reason;
          r.reply = "fallback chain says defer: kept queued, retried over TLS";
          break;
        case handoff_outcome::escrowed: r.outcome = queue::rcpt_outcome::escrowed; break;
        case handoff_outcome::pgp: r.outcome = queue::rcpt_outcome::pgp; break;
        case handoff_outcome::smime: r.outcome = queue::rcpt_outcome::smime; break;
      }
    }
    // Bulk mail to a forced domain whose MX lost TLS would log a line per message per
    // retry; the agent lets a few through per second and sums up the rest.
    if (ag->may_log_handoff())
      SR_INFO("%s: handed to the fallback (%s, every MX failed for TLS: %s): %zu of %zu recipients "
              "handled, the rest kept queued", j->queue_id.c_str(), j->domain.c_str(),
              std::string(report::to_string(li.reason)).c_str(), handled, res.size());
    agent* a = ag;
    queue::job* job = j;
    delete this;
    a->complete(job, res, h);
  }
};

void agent::hand_off(queue::job* j, const policy::effective_policy& p, const link_info& li) {
  auto* op = new handoff_op;
  op->ag = this;
  op->j = j;
  op->policy = p;
  op->li = li;
  std::vector<std::string_view> rcpts;
  rcpts.reserve(j->rcpts.size());
  for (const auto& r : j->rcpts) rcpts.push_back(r.address);
  policy::handoff_request req;
  req.queue_id = j->queue_id;
  req.from = j->mail_from;
  req.recipients = rcpts;
  req.domain = j->domain;
  req.segment = j->segment;
  req.offset = j->offset;
  req.length = j->length;
  req.reason = li.reason;
  req.policy = &op->policy;
  ++_counters.fallback_handoffs;
  _fallback->hand_off(req, *op);  // may answer (and free op) before returning
}

void agent::audit_job(const queue::job& j, std::span<const queue::rcpt_result> res, const link_info& li) {
  if (!_audit) return;
  for (size_t i = 0; i < j.rcpts.size() && i < res.size(); ++i) {
    const auto& rr = res[i];
    audit::record r = job_record(j, j.rcpts[i]);
    if (!li.mx.empty()) r.mx = li.mx;
    if (!li.ip.empty()) r.ip = li.ip;
    if (!li.source_ip.empty()) r.source_ip = li.source_ip;
    r.policy = li.policy;
    r.source = li.source;
    r.tls = li.tls;
    if (li.tls) {
      r.tls_version = li.tls_version;
      r.cipher = li.cipher;
      r.cipher_bits = li.cipher_bits;
      r.cert = li.cert_ok ? audit::cert_status::verified : audit::cert_status::invalid;
    }
    r.outcome = to_audit(rr.outcome);
    using report::reason;
    reason why = reason::none;
    if (rr.outcome != queue::rcpt_outcome::delivered && rr.outcome != queue::rcpt_outcome::escrowed &&
        rr.outcome != queue::rcpt_outcome::pgp && rr.outcome != queue::rcpt_outcome::smime) {
      if (!rr.status.empty() && rr.reply.size() >= 3 && (rr.reply[0] == '4' || rr.reply[0] == '5'))
        why = rr.reply[0] == '4' ? reason::remote_4xx : reason::remote_5xx;
      else
        why = li.reason;
    } else if (li.tls && !li.cert_ok) {
      why = li.cert_reason;  // delivered over TLS whose certificate did not verify
    } else if (!li.tls) {
      why = li.reason;       // delivered in the clear: why (starttls_not_offered, ...)
    } else if (li.sts_testing != reason::none) {
      why = li.sts_testing;  // MTA-STS testing: what enforce would have refused
    }
    if (rr.reason != reason::none) why = rr.reason;
    r.reason = why;
    // Only a remote's reply ("421 4.3.2 ..."), never our own wording of a local failure.
    if (rr.reply.size() >= 3 && std::isdigit((unsigned char)rr.reply[0]) &&
        std::isdigit((unsigned char)rr.reply[1]) && std::isdigit((unsigned char)rr.reply[2]))
      r.smtp_reply = rr.reply;
    if (rr.outcome == queue::rcpt_outcome::bounced) r.bounce_class = bounce_class_of(rr, li);
    _audit->append(r);
  }
}

}  // namespace sr::delivery
