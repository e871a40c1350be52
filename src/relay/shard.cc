// Start-up order matters: the spool is recovered first, the delivery side is built
// and attached to the mailboxes before any recovered message is dispatched (so a job
// never waits on a shard that cannot take it: it waits in a ring or an overflow
// queue), and the listeners open last, once an accepted message has somewhere to go.
#include "sealrelay/relay/shard.hh"

#include "sealrelay/handoff/client.hh"

#include <chrono>
#include <ctime>
#include <tuple>

#include "sealrelay/admin/metrics.hh"
#include "sealrelay/audit/writer.hh"
#include "sealrelay/delivery/agent.hh"
#include "sealrelay/dkim/intake.hh"
#include "sealrelay/dkim/pool.hh"
#include "sealrelay/dns/resolver.hh"
#include "sealrelay/handoff/client.hh"
#include "sealrelay/https/client.hh"
#include "sealrelay/inject/server.hh"
#include "sealrelay/policy/registry.hh"
#include "sealrelay/queue/job.hh"
#include "sealrelay/queue/scheduler.hh"
#include "sealrelay/relay/control.hh"
#include "sealrelay/server/auth.hh"
#include "sealrelay/server/store.hh"
#include "sealrelay/spool/store.hh"
#include "sealrelay/spool/keyring.hh"
#include "sealrelay/spool/partition.hh"
#include "sealrelay/sts/cache.hh"
#include "sealrelay/suppress/list.hh"
#include "sealrelay/sts/https_fetcher.hh"
#include "sealrelay/sts/resolver.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/tlsrpt/reporter.hh"
#include "sealrelay/tlsrpt/sts_fetcher.hh"
#include "sealrelay/util/log.hh"

namespace sr::relay {

process_state::process_state(const config::config& c)
    : cfg(c), inbound(c), mail(inbound.shards), dkim_keys(relay::dkim_keys(c)) {}

std::vector<dkim::key_entry> dkim_keys(const config::config& cfg) {
  std::vector<dkim::key_entry> v;
  for (const auto& d : cfg.dkim) {
    dkim::key_entry e;
    e.domain = d.domain;
    e.selector = d.selector;
    e.key_file = d.key_file;
    e.headers = d.headers;
    e.kind = d.algorithm == config::dkim_algorithm::ed25519_sha256 ? tls::key_kind::ed25519 : tls::key_kind::rsa;
    v.push_back(std::move(e));
  }
  return v;
}

status check_dkim(const config::config& cfg) {
  const auto keys = dkim_keys(cfg);
  for (size_t i = 0; i < keys.size(); ++i) {
    std::string warning;
    auto s = dkim::make_signer(keys[i], &warning);
    if (!s) return error{std::to_string(cfg.dkim[i].line) + ": dkim[" + std::to_string(i) + "]." + s.err()};
    if (!warning.empty())
      SR_WARN("dkim[%zu].key_file: %s (d=%s): %s", i, keys[i].key_file.c_str(), keys[i].domain.c_str(), warning.c_str());
  }
  return {};
}

// One shard's suppression list (issue 14): lookups in the snapshot (suppress::reader, no
// lock), additions handed to the list's writer thread, and this shard's counts for /metrics.
struct shard_root::suppression_view final : server::recipient_filter, delivery::suppression {
  suppression_view(suppress::list& l, bool refuse_at_rcpt) : list(l), rd(l), refuse_at_rcpt(refuse_at_rcpt) {}
  bool refuse(std::string_view address) override {
    if (!refuse_at_rcpt || !rd.suppressed(address)) return false;
    ++refused;
    return true;
  }
  bool suppressed(std::string_view address) override {
    if (!rd.suppressed(address)) return false;
    ++dropped;
    return true;
  }
  void add_bounced(std::string_view address, std::string_view reply) override {
    if (!rd.suppressed(address)) list.add_async(address, reply);
  }
  suppress::list& list;
  suppress::reader rd;
  bool refuse_at_rcpt;
  uint64_t refused = 0, dropped = 0;
};

shard_root::shard_root(core::shard& sh, process_state& ps) : _shard(sh), _ps(ps) {}

shard_root::~shard_root() {
  if (_ps.control) _ps.control->detach(_shard.index());
}

status shard_root::start() {
  if (status s = open_spool(); !s) return s;
  _server = std::make_unique<server::shard_server>(_shard, _ps.inbound, *_inbound_store);
  if (status s = _server->prepare(); !s) return s;
  start_suppression();
  if (status s = start_delivery(); !s) return s;
  start_auth();
  if (status s = _server->listen(); !s) return s;
  if (_ps.http) {
    // The HTTP API submits through the same intake as SMTP: the same record, queue,
    // policy and audit follow.
    _http = std::make_unique<inject::shard_server>(_shard, *_ps.http, _server->buffers(), _server->pool(), intake());
    if (status s = _http->start(); !s) return s;
  }
  return {};
}

// The suppression list ([suppression]): action "refuse" answers RCPT with 550 5.1.1 on
// every listener; with either action the agent drops listed recipients before delivery
// (mail queued before its address was listed, the HTTP API's) and lists bad-mailbox bounces.
void shard_root::start_suppression() {
  if (!_ps.suppression) return;
  bool refuse = _ps.cfg.suppression.action == config::suppression_action::refuse;
  _suppression = std::make_unique<suppression_view>(*_ps.suppression, refuse);
  _server->set_recipient_filter(_suppression.get());
}

// Start an audit line that is no recipient record (kind "auth", "shaping"): `line` becomes
// {"ts":"<now>","kind":"<kind>" and the caller adds its fields and "}\n".
static void begin_event_line(std::string& line, const char* kind) {
  line.clear();
  line += "{\"ts\":\"";
  audit::append_timestamp(audit::now_unix_ms(), line);
  line += "\",\"kind\":\"";
  line += kind;
  line += "\"";
}

// Submission AUTH: this shard's brake and its view of the users; every outcome becomes one
// audit line (kind "auth", never the password) and a count in /metrics.
void shard_root::start_auth() {
  if (!_ps.hasher || !_ps.users) return;
  _ps.hasher->attach(_shard);
  const auto& a = _ps.cfg.auth;
  auth::limiter_options lo;
  lo.max_failures = a.max_failures;
  lo.base_delay = a.failure_delay;
  _auth = std::make_unique<server::authenticator>(_shard, *_ps.hasher, *_ps.users, lo);
  _auth->on_event([this, line = std::string()](const server::auth_event& e) mutable {
    if (!_audit) return;
    begin_event_line(line, "auth");
    line += ",\"outcome\":\"";
    line += server::to_string(e.outcome);
    line += "\",\"user\":";
    audit::append_json_string(e.user, line);
    line += ",\"ip\":";
    audit::append_json_string(e.client_ip, line);
    line += ",\"listener\":";
    audit::append_json_string(e.listener, line);
    line += ",\"reason\":";
    if (e.reason.empty()) line += "null";
    else audit::append_json_string(e.reason, line);
    line += ",\"delay_ms\":" + std::to_string(e.delay.count()) + "}\n";
    _audit->append_line(line);
  });
  _server->set_authenticator(_auth.get());
}

// Shaping (issue 14): [[shaping]] mx entries need each domain's MX hosts (this shard's
// resolver, its cache shared with delivery); every back-off change is one audit line
// (kind "shaping").
void shard_root::start_shaping() {
  if (config::has_mx_shaping(_ps.cfg))
    _sched->set_mx_lookup([this](const std::string& domain, std::function<void(bool, std::vector<std::string>)> done) {
      _resolver->lookup_mx(domain, [done = std::move(done)](const dns::mx_result& r) {
        std::vector<std::string> hosts;
        for (const auto& h : r.hosts) hosts.push_back(h.name);  // config::shaping_for_mx ignores case
        done(r.status != dns::status::temp_fail, std::move(hosts));
      });
    });
  _sched->on_shaping([this, line = std::string()](const queue::shaping_event& e) mutable {
    if (!_audit) return;
    begin_event_line(line, "shaping");
    line += ",\"event\":\"";
    line += e.restore ? "restore" : "backoff";
    line += "\",\"destination\":";
    audit::append_json_string(e.destination, line);
    if (!e.restore) {
      line += ",\"domain\":";
      audit::append_json_string(e.domain, line);
      line += ",\"rule\":";
      audit::append_json_string(e.rule, line);
      line += ",\"reply\":";
      audit::append_json_string(e.reply, line);
    }
    line += ",\"rate_per_hour\":" + std::to_string(e.rate_per_hour);
    line += ",\"previous_rate_per_hour\":" + std::to_string(e.previous_rate_per_hour);
    if (!e.restore) {
      line += ",\"until\":\"";
      audit::append_timestamp(int64_t(e.until_unix_ms), line);
      line += "\"";
    }
    line += "}\n";
    _audit->append_line(line);
  });
}

status shard_root::open_spool() {
  const auto& cfg = _ps.cfg;
  spool::recovered_set rec;
  auto part = spool::partition::open(cfg.server.state_dir, _shard.index(), &rec,
                                     spool::default_segment_limit, _ps.spool_keys);
  if (!part) return error{"spool: " + part.err()};
  _store = std::make_unique<spool::store>(_shard, std::move(part.value()), cfg.limits.commit_interval);
  if (!_ps.dkim_keys.empty()) {
    // This shard's own signers (a signer is not thread safe), from the keys checked at start.
    auto signers = dkim::signers::load(_ps.dkim_keys);
    if (!signers) return error{"dkim: " + signers.err()};
    if (_ps.dkim_pool) _ps.dkim_pool->attach(_shard);
    _signing = std::make_unique<dkim::signing_intake>(_shard, *_store, std::move(*signers), _ps.dkim_pool);
  }
  _inbound_store = std::make_unique<server::intake_store>(intake());
  // Partitions of shards that no longer run (server.shards lowered, or shards = 0 on a
  // smaller machine): shard i adopts every partition j >= shards with j % shards == i,
  // so no accepted message is stranded.
  const unsigned n = _ps.inbound.shards, me = _shard.index();
  auto on_disk = spool::partition::shards_on_disk(cfg.server.state_dir);
  if (!on_disk) return error{"spool: " + on_disk.err()};
  for (unsigned other : on_disk.value()) {
    if (other < n || other % n != me) continue;
    size_t before = rec.messages.size();
    auto adopted = spool::partition::open(cfg.server.state_dir, other, &rec,
                                          spool::default_segment_limit, _ps.spool_keys);
    if (!adopted) return error{"spool: " + adopted.err()};
    SR_INFO("spool: partition %u adopted (server.shards = %u): %zu messages to deliver", other, n,
            rec.messages.size() - before);
    _store->adopt(std::move(adopted.value()));
  }
  if (rec.discarded_bytes)
    SR_WARN("spool: discarded %llu bytes (%u corrupt records skipped, the rest torn tails of "
            "unacknowledged writes)",
            (unsigned long long)rec.discarded_bytes, rec.records_skipped);
  _ps.recovered += rec.messages.size();
  _store->recovered = std::move(rec.messages);
  return {};
}

bool needs_sidecar(const config::config& cfg) {
  for (const auto& p : cfg.policies)
    if (p.tls == config::tls_policy::forced)
      for (const auto& m : p.fallback)
        if (m != "defer") return true;
  return false;
}

status shard_root::start_delivery() {
  const auto& cfg = _ps.cfg;
  dns::resolver_options ro;
  ro.servers = cfg.dns.resolvers;
  _resolver = std::make_unique<dns::resolver>(_shard, ro);
  if (status s = _resolver->start(); !s) return error{"dns: " + s.err()};
  if (_ps.audit_fd >= 0) {
    audit::writer::options ao;
    ao.torn = &_ps.audit_torn;
    if (_ps.metrics) {
      ao.dropped_cell = &_ps.metrics->audit_dropped.cell(_shard.index());
      ao.write_errors_cell = &_ps.metrics->audit_write_errors.cell(_shard.index());
      ao.failing_cell = &_ps.metrics->audit_failing.cell(_shard.index());
    }
    _audit = std::make_unique<audit::writer>(_shard, _ps.audit_fd, ao);
  }

  queue::home_link link;
  link.mark_done = [this](unsigned home, const std::string& qid, std::vector<uint32_t> idx) {
    _dispatch->send_done(home, qid, std::move(idx));
  };
  link.record_attempts = [this](unsigned home, const std::string& qid,
                                std::vector<std::pair<uint32_t, uint32_t>> counts) {
    _dispatch->send_attempts(home, qid, std::move(counts));
  };
  link.spool_dsn = [this](unsigned, std::string text, std::string rcpt,
                          std::function<void(bool)> stored) {
    // DSNs are spooled here, on the shard that decided the bounce (its own partition),
    // through the same intake as relayed mail.
    spool::message_meta meta;
    meta.kind = spool::message_kind::dsn;
    meta.mail_from = "";
    meta.rcpts = {std::move(rcpt)};
    intake().submit_owned(std::move(meta), std::move(text), std::move(stored));
  };
  link.record_hold = [this](unsigned home, const std::string& qid, std::vector<uint32_t> idx, bool held) {
    _dispatch->send_hold(home, qid, std::move(idx), held);
  };
  link.forward_job = [this](unsigned owner, std::unique_ptr<queue::job> j) {
    _dispatch->send_job_to(owner, std::move(j));
  };
  _sched = std::make_unique<queue::scheduler>(_shard, cfg, std::move(link));
  _sched->set_shards(_ps.inbound.shards);
  start_shaping();
  _sched->on_delete([this](const queue::job& j) { audit_deleted(j); });
  _dispatch = std::make_unique<queue::dispatcher>(
      _shard, _ps.mail, *_sched,
      [this](const std::string& qid, std::vector<uint32_t> idx) { _store->mark_done(qid, idx); });
  _dispatch->on_record_attempts([this](const std::string& qid, std::vector<std::pair<uint32_t, uint32_t>> c) {
    _store->record_attempts(qid, c);
  });
  _dispatch->on_record_hold([this](const std::string& qid, std::vector<uint32_t> idx, bool held) {
    _store->record_hold(qid, idx, held);
  });
  if (_ps.policies) _policy_reader = std::make_unique<policy::reader>(*_ps.policies);
  _agent = std::make_unique<delivery::agent>(_shard, cfg, *_sched, *_resolver, _server->pool(),
                                             _server->buffers(), _audit.get());
  _agent->spool_reader().set_keys(_ps.spool_keys);  // sealed segments ([spool] keys)
  if (status s = _agent->start(); !s) return s;
  _sched->set_connector(_agent.get());
  if (_suppression) _agent->set_suppression(_suppression.get());
  if (status s = start_tlsrpt(); !s) return s;
  if (_ps.sidecar) {
    handoff::client::options ho;
    ho.socket = cfg.fallback.socket;
    ho.outbox = cfg.server.state_dir + "/fallback/outbox";
    ho.node = cfg.server.hostname;
    _handoff = std::make_unique<handoff::client>(_shard, intake(), std::move(ho), _ps.sidecar);
    _handoff->start();
    _agent->set_fallback(_handoff.get());
  }
  if (_policy_reader) {
    // This shard's view of the policy table: refreshed on every tick (a wait-free
    // pointer load), so a SIGHUP reaches new delivery attempts within 100 ms.
    _agent->set_policies(_policy_reader.get());
    _shard.on_tick([this] {
      _policy_reader->refresh();
      _ps.policies->try_reclaim();
    });
  }
  if (cfg.mta_sts.enabled)
    if (status s = start_mta_sts(); !s) return s;

  _store->on_durable([this](spool::message_meta& meta, const spool::message_location& loc) {
    queue_durable(meta, loc, {});
  });
  _dispatch->attach();

  // Messages accepted before a restart: queue their unfinished recipients.
  auto recovered = std::move(_store->recovered);
  _store->recovered.clear();
  for (auto& m : recovered) {
    spool::message_location loc{nullptr, m.segment, m.offset, m.length};
    queue_durable(m.meta, loc, m.done_rcpts);
  }
  if (!recovered.empty()) SR_INFO("queue: %zu recovered messages queued for delivery", recovered.size());
  if (_ps.metrics) _shard.on_tick([this] { publish_metrics(); });
  if (_ps.control)
    _ps.control->attach(_shard.index(), _shard,
                        [this](const control::request& r, shard_answer& out) { on_control(r, out); });
  return {};
}

void shard_root::on_control(const control::request& r, shard_answer& out) {
  using control::command;
  if (r.cmd == command::list || r.cmd == command::stats || r.cmd == command::show) {
    _sched->for_each_job([&](const queue::job& j, queue::job_state st, uint64_t next) {
      if (r.cmd == command::show && j.queue_id != r.target) return;
      job_snapshot s;
      s.queue_id = j.queue_id;
      s.domain = j.domain;
      s.from = j.mail_from;
      s.msg_id = j.msg_id;
      s.state = queue::to_string(st);
      s.home = j.home;
      s.received_ms = j.received_ms;
      s.size = j.length;
      s.next_attempt_ms = next;
      if (r.cmd == command::show) {
        s.segment = j.segment;
        s.offset = j.offset;
      }
      for (const auto& x : j.rcpts)
        s.rcpts.push_back({x.address, x.attempts, x.last_reply,
                           x.last_reason == report::reason::none ? std::string()
                                                                 : std::string(report::to_string(x.last_reason))});
      out.jobs.push_back(std::move(s));
    });
    return;
  }
  queue::job_selector sel;
  if (r.all_deferred) sel.all_deferred = true;
  else if (control::is_queue_id(r.target)) sel.queue_id = r.target;
  else if (!r.target.empty()) sel.domain = r.target;
  else sel.all = true;
  queue::control_result res;
  switch (r.cmd) {
    case command::flush: res = _sched->flush(sel); break;
    case command::hold: res = _sched->hold(sel); break;
    case command::release: res = _sched->release(sel); break;
    case command::requeue: res = _sched->requeue(sel); break;
    case command::remove: res = _sched->remove(sel, r.dsn); break;
    default: break;
  }
  out.matched = res.matched;
  out.applied = res.applied;
  out.pending = res.pending;
}

void shard_root::audit_deleted(const queue::job& j) {
  SR_INFO("%s: %zu recipients (%s) deleted by the operator", j.queue_id.c_str(), j.rcpts.size(), j.domain.c_str());
  if (!_audit) return;
  for (const auto& rc : j.rcpts) {
    audit::record r = delivery::job_record(j, rc);
    r.policy = _ps.cfg.outbound.default_policy;
    r.outcome = audit::outcome::deleted;
    _audit->append(r);
  }
}

// MTA-STS (src/sts): this shard's policy cache (loaded from state_dir: only the domains
// this shard owns), the HTTPS client that fetches policies (TLS 1.2+, certificates checked
// against tls.ca_file), and the resolver that every delivery attempt asks first.
status shard_root::start_mta_sts() {
  const auto& cfg = _ps.cfg;
  std::string why;
  https::client* c = https_client(&why);
  if (!c) return error{"mta-sts: HTTPS client: " + why};
  _sts_fetcher = std::make_unique<sts::https_fetcher>(*c, uint16_t(cfg.mta_sts.https_port));
  _sts_cache = std::make_unique<sts::cache>(cfg.server.state_dir + "/mta-sts", _shard.index());
  const unsigned n = _ps.inbound.shards, me = _shard.index();
  if (status s = _sts_cache->load(int64_t(::time(nullptr)),
                                  [n, me](std::string_view d) { return queue::owner_shard(std::string(d), n) == me; });
      !s)
    return s;
  if (_sts_cache->size()) SR_INFO("mta-sts: %zu cached policies loaded", _sts_cache->size());
  policy::effective_policy fallback;
  fallback.tls = cfg.outbound.default_policy;
  sts::resolver_options so;
  if (!cfg.routes.empty())
    so.routed = [&cfg](std::string_view d) { return config::find_route(cfg, d) != nullptr; };
  // TLS-RPT counts policies that could not be had (sts-policy-fetch-error, ...).
  sts::fetcher* fetcher = _sts_fetcher.get();
  if (_tlsrpt) {
    _sts_report_fetcher = std::make_unique<tlsrpt::reporting_fetcher>(*_sts_fetcher, _tlsrpt.get());
    fetcher = _sts_report_fetcher.get();
  }
  _sts = std::make_unique<sts::resolver>(*_resolver, *fetcher, *_sts_cache, _policy_reader.get(), fallback,
                                         std::move(so));
  _agent->set_policy_resolver(_sts.get());
  // Proactive refresh of cached policies (RFC 8461 §10.2), every 10 s (the tick is 100 ms).
  _shard.on_tick([this, ticks = 0u]() mutable {
    if (++ticks % 100 == 0) _sts->refresh_due();
  });
  return {};
}

// TLS-RPT: the reporter hears of every session of this shard's agent and sends the
// reports of the domains this shard owns (their sessions all run here).
status shard_root::start_tlsrpt() {
  const auto& cfg = _ps.cfg;
  if (!cfg.tlsrpt.enabled) return {};
  tlsrpt::reporter_options o;
  o.organization = cfg.tlsrpt.organization;
  o.contact = cfg.tlsrpt.contact;
  o.submitter = cfg.server.hostname;
  o.from = cfg.tlsrpt.from.empty() ? "noreply-tlsrpt@" + cfg.server.hostname : cfg.tlsrpt.from;
  o.interval_ms = cfg.tlsrpt.interval.count();
  o.state_dir = cfg.server.state_dir + "/tlsrpt";
  o.shard = _shard.index();
  o.shards = _ps.inbound.shards;
  // https: rua URIs: a POST of the gzip report through the shard's HTTPS client (the
  // certificate must chain to tls.ca_file and name the host; no redirects; a 2xx answer).
  tlsrpt::post_fn post;
  std::string why;
  if (https::client* c = https_client(&why)) {
    post = [c](tlsrpt::post_request r, std::function<void(bool, const std::string&)> done) {
      https::request q;
      q.method = "POST";
      q.host = std::move(r.host);
      q.port = r.port;
      q.path = std::move(r.path);
      q.content_type = "application/tlsrpt+gzip";
      q.body = std::move(r.body);
      c->fetch(std::move(q), [done = std::move(done)](const https::response& a) {
        bool ok = a.fail == https::failure::none;
        done(ok, ok ? std::string() : std::string(https::to_string(a.fail)) + (a.detail.empty() ? "" : ": " + a.detail));
      });
    };
  } else {
    SR_WARN("tlsrpt: no HTTPS client (%s): https: report URIs are skipped", why.c_str());
  }
  _tlsrpt = std::make_unique<tlsrpt::reporter>(_shard, *_resolver, intake(), std::move(o), std::move(post));
  if (status s = _tlsrpt->start(); !s) return error{"tlsrpt: " + s.err()};
  _agent->set_session_observer(_tlsrpt.get());
  return {};
}

// Where this shard's mail enters the spool: through the DKIM signer when [[dkim]] is set.
spool::intake& shard_root::intake() {
  if (_signing) return *_signing;
  return *_store;
}

// The shard's HTTPS client, built on first use (null with the reason when the TLS context
// cannot be made).
https::client* shard_root::https_client(std::string* why) {
  if (_https) return _https.get();
  auto ctx = tls::context::client(_ps.cfg.tls.ca_file, tls::tls_version::v1_2);
  if (!ctx) {
    if (why) *why = ctx.err();
    return nullptr;
  }
  _https_ctx = std::make_unique<tls::context>(std::move(ctx.value()));
  _https = std::make_unique<https::client>(_shard, *_resolver, _server->buffers(), _server->pool(), *_https_ctx);
  return _https.get();
}

void shard_root::queue_durable(spool::message_meta& meta, const spool::message_location& loc,
                               std::span<const uint32_t> done) {
  // `meta` is dropped after this call (the store's copy, or a recovered record): its
  // strings move on into the jobs, no copy per message.
  queue::spooled_message m;
  m.kind = meta.kind;
  // A v1 record has no kind: there a message from <> to one recipient is one of our DSNs
  // (no DSN about a DSN).
  if (meta.kind == queue::message_kind::message && meta.mail_from.empty() && meta.rcpts.size() == 1)
    m.kind = queue::message_kind::dsn;
  m.msg_id = std::move(meta.msg_id);
  m.attempts = std::move(meta.attempts);
  m.held = std::move(meta.held);
  m.queue_id = std::move(meta.queue_id);
  m.home = _shard.index();
  m.segment = loc.segment;
  m.offset = loc.offset;
  m.length = loc.length;
  m.mail_from = std::move(meta.mail_from);
  m.rcpts = std::move(meta.rcpts);
  m.received_ms = meta.received_ms;
  m.body_8bitmime = meta.body_8bitmime;
  m.requiretls = meta.requiretls;
  m.tls_required_no = meta.tls_required_no && !meta.requiretls;  // RFC 8689 §3: REQUIRETLS wins
  _dispatch->dispatch(std::move(m), done);
}

void shard_root::begin_drain() {
  _server->begin_drain();
  if (_http) _http->begin_drain();
}

bool shard_root::idle() const { return _server->idle() && (!_http || _http->idle()); }

void shard_root::abort_all() {
  _server->abort_all();
  if (_http) _http->abort_all();
}

size_t shard_root::connection_count() const {
  return (_server ? _server->connection_count() : 0) + (_http ? _http->connection_count() : 0);
}

void shard_root::finish() {
  if (_tlsrpt) _tlsrpt->finish();
  if (_audit) _audit->flush_and_wait();
}

// Each shard copies its own counters into its cells of the registry (one writer per
// cell, relaxed stores): the admin thread never reads shard-owned state.
void shard_root::publish_metrics() {
  auto& m = *_ps.metrics;
  unsigned me = _shard.index();
  m.connections_inbound.set(me, int64_t(_server->connection_count()));
  if (_http) {
    static_assert(std::size(admin::http_code_labels) == inject::counted_codes_size);
    const auto& h = _http->stats();
    for (size_t i = 0; i < inject::counted_codes_size; ++i)
      m.http_requests[i].cell(me).store(h.requests_by_code[i], std::memory_order_relaxed);
    m.http_connections.set(me, int64_t(_http->connection_count()));
  }
  if (me == 0)
    m.messages_accepted.cell(0).store(_ps.inbound.stats.messages_accepted.load(std::memory_order_relaxed),
                                      std::memory_order_relaxed);
  const auto& q = _sched->stats();
  m.messages_delivered.cell(me).store(q.delivered, std::memory_order_relaxed);
  m.messages_deferred.cell(me).store(q.deferred, std::memory_order_relaxed);
  m.messages_bounced.cell(me).store(q.bounced, std::memory_order_relaxed);
  m.messages_dropped.cell(me).store(q.dropped, std::memory_order_relaxed);
  m.queue_depth.set(me, int64_t(_sched->depth()));
  if (me < m.queue_oldest_age.size()) {
    uint64_t oldest = _sched->oldest_received_ms(_shard.now_ms());
    auto now = uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count());
    m.queue_oldest_age[me].set(me, oldest && now > oldest ? int64_t((now - oldest) / 1000) : 0);
  }
  {
    static_assert(std::size(admin::inbound_tls_labels) == std::tuple_size_v<decltype(server::inbound_tls_counts::by_version)>);
    const auto& t = _server->tls_counts();
    for (size_t i = 0; i < t.by_version.size(); ++i)
      m.inbound_tls_handshakes[i].cell(me).store(t.by_version[i], std::memory_order_relaxed);
    m.inbound_tls_failures.cell(me).store(t.failed, std::memory_order_relaxed);
  }
  if (_signing) {
    const auto& d = _signing->stats();
    m.dkim_signed.cell(me).store(d.signed_inline + d.signed_pool, std::memory_order_relaxed);
    m.dkim_failed.cell(me).store(d.failed, std::memory_order_relaxed);
  }
  const auto& c = _agent->counters();
  m.connections_outbound.set(me, int64_t(_agent->open_links()));
  m.fallback_handoffs.cell(me).store(c.fallback_handoffs, std::memory_order_relaxed);
  if (_handoff) {
    const auto& h = _handoff->stats();
    m.fallback_link_up.set(me, _handoff->up() ? 1 : 0);
    m.fallback_pending.set(me, int64_t(_handoff->pending()));
    m.fallback_unavailable.cell(me).store(h.unavailable, std::memory_order_relaxed);
    m.fallback_outcome_pgp.cell(me).store(h.outcomes_pgp, std::memory_order_relaxed);
    m.fallback_outcome_smime.cell(me).store(h.outcomes_smime, std::memory_order_relaxed);
    m.fallback_outcome_escrowed.cell(me).store(h.outcomes_escrowed, std::memory_order_relaxed);
    m.fallback_outcome_defer.cell(me).store(h.outcomes_defer, std::memory_order_relaxed);
    if (me == 0 && _ps.sidecar)
      m.fallback_restarts.cell(0).store(_ps.sidecar->restarts.load(std::memory_order_relaxed),
                                        std::memory_order_relaxed);
  }
  m.deliveries("").cell(me).store(c.plain_deliveries, std::memory_order_relaxed);
  m.deliveries("TLSv1.3").cell(me).store(c.tls13, std::memory_order_relaxed);
  m.deliveries("TLSv1.2").cell(me).store(c.tls12, std::memory_order_relaxed);
  m.deliveries("other").cell(me).store(c.tls_other, std::memory_order_relaxed);
  m.store_tls_failures(me, c.tls_failures_by_reason);
  static_assert(std::tuple_size_v<decltype(c.bounces_by_class)> == std::extent_v<decltype(admin::relay_metrics::bounces_by_class)>);
  for (size_t i = 0; i < c.bounces_by_class.size(); ++i)
    m.bounces_by_class[i].cell(me).store(c.bounces_by_class[i], std::memory_order_relaxed);
  {
    const auto& sites = _sched->shaping_metrics();
    for (size_t i = 0; i < sites.size() && i < m.shaping_backoffs.size(); ++i) {
      m.shaping_backoffs[i].cell(me).store(sites[i].backoffs, std::memory_order_relaxed);
      m.shaping_rate[i].set(me, int64_t(sites[i].rate_per_hour));
      m.shaping_connections[i].set(me, int64_t(sites[i].connections));
    }
  }
  if (_suppression) {
    m.suppressed_refused.cell(me).store(_suppression->refused, std::memory_order_relaxed);
    m.suppressed_dropped.cell(me).store(_suppression->dropped, std::memory_order_relaxed);
    if (me == 0) {
      m.suppression_entries.set(0, int64_t(_ps.suppression->current()->size()));
      m.suppression_added.cell(0).store(_ps.suppression->added_by_bounces(), std::memory_order_relaxed);
    }
  }
  static_assert(std::size(admin::policy_labels) == delivery::delivery_counters::policies &&
                std::size(admin::policy_source_labels) == delivery::delivery_counters::policy_sources);
  static_assert(size_t(config::tls_policy::exclusive) == 2 &&
                size_t(report::policy_source::requiretls) == 4);
  for (size_t i = 0; i < c.delivered_by_policy.size(); ++i)
    m.deliveries_by_policy[i].cell(me).store(c.delivered_by_policy[i], std::memory_order_relaxed);
  auto r = _resolver->stats();
  m.dns_cache_hits.cell(me).store(r.cache_hits, std::memory_order_relaxed);
  m.dns_cache_misses.cell(me).store(r.cache_misses, std::memory_order_relaxed);
  if (_auth) {
    const auto& ac = _auth->counters();
    m.auth_success.cell(me).store(ac.success, std::memory_order_relaxed);
    m.auth_failure.cell(me).store(ac.failure, std::memory_order_relaxed);
    m.auth_rate_limited.cell(me).store(ac.rate_limited, std::memory_order_relaxed);
    m.auth_busy.cell(me).store(ac.busy, std::memory_order_relaxed);
  }
  if (_sts) {
    m.mta_sts_fetches.cell(me).store(_sts->stats().fetches, std::memory_order_relaxed);
    m.mta_sts_fetch_failures.cell(me).store(_sts->stats().fetch_failures, std::memory_order_relaxed);
    m.mta_sts_policies.set(me, int64_t(_sts_cache->size()));
  }
}

}  // namespace sr::relay
