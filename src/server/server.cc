// Accept path: caps (total, per client IP, drain) are checked before a session
// exists; a refused client gets one 421 line and is closed. Deadlines are scanned
// on the shard's tick: O(connections) every 100 ms is cheaper than a timer per
// connection at these counts and needs no allocation.
#include "server/server.hh"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "admin/metrics.hh"
#include "audit/writer.hh"
#include "core/mailbox.hh"
#include "delivery/agent.hh"
#include "dns/resolver.hh"
#include "policy/registry.hh"
#include "queue/scheduler.hh"
#include "server/connection.hh"
#include "server/spool_store.hh"
#include "spool/partition.hh"
#include "tls/context.hh"
#include "util/log.hh"

namespace sr::server {
namespace {
constexpr size_t chunk_size = 16 * 1024;
constexpr unsigned ring_entries = 1024;
constexpr uint16_t buffer_group = 1;

unsigned ip_hash(const sockaddr_storage& ss) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    mix(reinterpret_cast<const uint8_t*>(&in->sin_addr), 4);
  } else {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    mix(reinterpret_cast<const uint8_t*>(&in6->sin6_addr), 16);
  }
  return unsigned(h ^ (h >> 32)) & (shared_state::ip_slots - 1);
}
}  // namespace

shared_state::shared_state(const config::config& c)
    : cfg(c),
      shards(c.server.shards ? c.server.shards : core::online_cpus()),
      servers(shards),
      per_ip(new std::atomic<uint32_t>[ip_slots]) {
  for (unsigned i = 0; i < ip_slots; ++i) per_ip[i].store(0, std::memory_order_relaxed);
}

shard_server::shard_server(core::shard& sh, shared_state& st, store_factory make_store)
    : _shard(sh), _st(st), _make_store(std::move(make_store)) {}

shard_server::~shard_server() {
  _agent.reset();  // before the policy reader it points at
  _policy_reader.reset();
  if (_st.deliver && _shard.index() < _st.servers.size()) _st.servers[_shard.index()] = nullptr;
  // Connections still open at exit are abandoned with the process; free them.
  while (_conns) {
    connection* c = _conns;
    _conns = c->next;
    delete c;
  }
}

status shard_server::start() {
  const auto& cfg = _st.cfg;
  _pool = std::make_unique<net::chunk_pool>(chunk_size, ring_entries + 256);
  _ring = std::make_unique<net::buffer_ring>(*_pool, ring_entries, buffer_group);
  if (int rc = _ring->register_with(_shard.ring()); rc < 0)
    return error{std::string("io_uring provided buffers: ") + strerror(-rc)};
  bool need_tls = false;
  for (const auto& l : cfg.listen) need_tls |= l.tls != config::listen_tls::none;
  if (need_tls) {
    auto ctx = tls::context::server(cfg.tls.cert_file, cfg.tls.key_file,
                                    tls::tls_version(int(cfg.tls.min_version)));
    if (!ctx) return error{ctx.err()};
    _tls_ctx = std::make_unique<tls::context>(std::move(ctx.value()));
  }
  _store = _make_store(_shard);
  if (!_store) return error{"cannot open the spool"};
  if (_st.deliver)
    if (status s = start_delivery(); !s) return s;
  for (const auto& l : cfg.listen) {
    auto fd = net::open_listen_socket(l.addr, l.addr_len);
    if (!fd) return error{l.address + ": " + fd.err()};
    auto li = std::make_unique<listener_info>();
    li->entry = &l;
    listener_info* raw = li.get();
    li->sock = std::make_unique<net::listener>(_shard, *fd, [this, raw](int cfd) { on_accept(*raw, cfd); });
    li->sock->arm();
    _listeners.push_back(std::move(li));
  }
  _shard.on_tick([this] { on_tick(); });
  return {};
}

void shard_server::on_accept(listener_info& li, int fd) {
  sockaddr_storage peer{};
  socklen_t plen = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) < 0) {
    ::close(fd);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  _st.stats.connections_total.fetch_add(1, std::memory_order_relaxed);

  bool relay_allowed = false;
  if (li.entry->mode == config::listen_mode::relay)
    for (const auto& net : li.entry->allow_relay_from)
      if (net.contains(reinterpret_cast<const sockaddr*>(&peer))) relay_allowed = true;

  auto* c = new connection(*this, li, fd, peer, relay_allowed);
  c->next = _conns;
  if (_conns) _conns->prev = c;
  _conns = c;
  ++_conn_count;

  const auto& lim = _st.cfg.limits;
  unsigned slot = ip_hash(peer);
  uint32_t total = _st.connections.fetch_add(1, std::memory_order_relaxed) + 1;
  uint32_t per_ip = _st.per_ip[slot].fetch_add(1, std::memory_order_relaxed) + 1;
  c->set_ip_slot(slot);
  const std::string& host = _st.cfg.server.hostname;
  if (_draining || _st.draining.load(std::memory_order_relaxed)) {
    _st.stats.connections_refused.fetch_add(1, std::memory_order_relaxed);
    c->refuse("421 4.3.2 " + host + " Service shutting down, closing transmission channel\r\n");
  } else if (lim.max_connections && total > lim.max_connections) {
    _st.stats.connections_refused.fetch_add(1, std::memory_order_relaxed);
    c->refuse("421 4.3.2 " + host + " Too many connections, try again later\r\n");
  } else if (lim.max_conns_per_ip && per_ip > lim.max_conns_per_ip) {
    _st.stats.connections_refused.fetch_add(1, std::memory_order_relaxed);
    SR_INFO("%s: refused, %u connections from this address", c->peer_ip().c_str(), per_ip - 1);
    c->refuse("421 4.7.0 " + host + " Error: too many connections from " + c->peer_ip() + "\r\n");
  } else {
    c->start();
  }
}

void shard_server::on_connection_closed(connection* c) {
  if (c->prev) c->prev->next = c->next;
  else _conns = c->next;
  if (c->next) c->next->prev = c->prev;
  --_conn_count;
  _st.connections.fetch_sub(1, std::memory_order_relaxed);
  _st.per_ip[c->ip_slot()].fetch_sub(1, std::memory_order_relaxed);
  delete c;
}

void shard_server::on_tick() {
  uint64_t now = _shard.now_ms();
  if (_st.metrics) publish_metrics();
  _ring->refill();
  for (connection* c = _conns; c;) {
    connection* next = c->next;  // c may close (not free) during the check
    c->resume_recv_if_starved();
    c->check_deadline(now);
    c = next;
  }
}

void shard_server::begin_drain() {
  if (_draining) return;
  _draining = true;
  for (auto& li : _listeners) li->sock->stop();
  for (connection* c = _conns; c;) {
    connection* next = c->next;
    c->begin_drain();
    c = next;
  }
}

bool shard_server::idle() const { return _conn_count == 0 && (!_store || _store->in_flight() == 0); }

void shard_server::abort_all() {
  for (connection* c = _conns; c;) {
    connection* next = c->next;
    c->force_close();
    c = next;
  }
}

}  // namespace sr::server

namespace sr::server {

status shard_server::start_delivery() {
  const auto& cfg = _st.cfg;
  auto* store = dynamic_cast<spool_store*>(_store.get());
  if (!store) return error{"delivery needs the spool store"};
  dns::resolver_options ro;
  ro.servers = cfg.dns.resolvers;
  _resolver = std::make_unique<dns::resolver>(_shard, ro);
  if (status s = _resolver->start(); !s) return error{"dns: " + s.err()};
  if (_st.audit_fd >= 0) {
    audit::writer::options ao;
    if (_st.metrics) {
      ao.dropped_cell = &_st.metrics->audit_dropped.cell(_shard.index());
      ao.write_errors_cell = &_st.metrics->audit_write_errors.cell(_shard.index());
      ao.failing_cell = &_st.metrics->audit_failing.cell(_shard.index());
    }
    _audit = std::make_unique<audit::writer>(_shard, _st.audit_fd, ao);
  }

  unsigned me = _shard.index();
  queue::home_link link;
  link.mark_done = [this, me](unsigned home, const std::string& qid, std::vector<uint32_t> idx) {
    if (home == me) {
      static_cast<spool_store&>(*_store).mark_done(qid, idx);
      return;
    }
    shared_state* st = &_st;
    _st.mail->send(_shard, home, [st, home, qid, idx = std::move(idx)] {
      if (auto* srv = st->servers[home].load()) static_cast<spool_store&>(srv->store()).mark_done(qid, idx);
    });
  };
  link.spool_dsn = [this, me](unsigned home, std::string text, std::string rcpt) {
    spool::message_meta meta;
    meta.mail_from = "";
    meta.rcpts = {std::move(rcpt)};
    // DSNs are spooled here, on the shard that decided the bounce (its own partition).
    (void)home;
    (void)me;
    static_cast<spool_store&>(*_store).submit_internal(std::move(meta), std::move(text));
  };
  _sched = std::make_unique<queue::scheduler>(_shard, cfg, std::move(link));
  _agent = std::make_unique<delivery::agent>(_shard, cfg, *_sched, *_resolver, *_pool, *_ring, _audit.get());
  if (status s = _agent->start(); !s) return s;
  _sched->set_connector(_agent.get());
  if (_st.policies) {
    // This shard's view of the policy table: refreshed on every tick (a wait-free
    // pointer load), so a SIGHUP reaches new delivery attempts within 100 ms.
    _policy_reader = std::make_unique<policy::reader>(*_st.policies);
    _agent->set_policies(_policy_reader.get());
    _shard.on_tick([this] {
      _policy_reader->refresh();
      _st.policies->try_reclaim();
    });
  }

  store->on_durable([this](const spool::message_meta& meta, const spool::message_location& loc) {
    dispatch(meta, loc);
  });
  _st.servers[me] = this;
  _st.mail->attach(me, _shard);
  _shard.on_tick([this, me] { _st.mail->drain(me); });

  // Messages accepted before a restart: queue their unfinished recipients.
  auto recovered = std::move(store->recovered);
  store->recovered.clear();
  for (const auto& m : recovered) {
    spool::message_location loc{nullptr, m.segment, m.offset, m.length};
    dispatch(m.meta, loc, m.done_rcpts);
  }
  if (!recovered.empty()) SR_INFO("queue: %zu recovered messages queued for delivery", recovered.size());
  return {};
}

void shard_server::dispatch(const spool::message_meta& meta, const spool::message_location& loc,
                            const std::vector<uint32_t>& done) {
  // One job per recipient domain, in first-seen order.
  std::vector<std::unique_ptr<queue::job>> jobs;
  for (uint32_t i = 0; i < meta.rcpts.size(); ++i) {
    if (std::find(done.begin(), done.end(), i) != done.end()) continue;
    std::string d = queue::domain_of(meta.rcpts[i]);
    queue::job* j = nullptr;
    for (auto& x : jobs)
      if (x->domain == d) j = x.get();
    if (!j) {
      auto nj = std::make_unique<queue::job>();
      nj->kind = meta.mail_from.empty() && meta.rcpts.size() == 1 ? queue::message_kind::dsn
                                                                   : queue::message_kind::message;
      nj->queue_id = meta.queue_id;
      nj->home = _shard.index();
      nj->segment = loc.segment;
      nj->offset = loc.offset;
      nj->length = loc.length;
      nj->mail_from = meta.mail_from;
      nj->domain = d;
      nj->received_ms = meta.received_ms;
      nj->body_8bitmime = meta.body_8bitmime;
      j = nj.get();
      jobs.push_back(std::move(nj));
    }
    queue::job_rcpt r;
    r.address = meta.rcpts[i];
    r.index = i;
    j->rcpts.push_back(std::move(r));
  }
  for (auto& j : jobs) send_job(j.release());
}

void shard_server::send_job(queue::job* j) {
  unsigned owner = queue::owner_shard(j->domain, _st.shards);
  if (owner == _shard.index()) {
    _sched->enqueue(std::unique_ptr<queue::job>(j));
    return;
  }
  shared_state* st = &_st;
  bool sent = _st.mail->send(_shard, owner, [st, owner, j] {
    if (auto* srv = st->servers[owner].load()) srv->scheduler()->enqueue(std::unique_ptr<queue::job>(j));
  });
  if (!sent) {
    // The ring to that shard is full: try again after this batch of completions.
    _shard.post([this, j] { send_job(j); });
  }
}

// Each shard copies its own counters into its cells of the registry (one writer per
// cell, relaxed stores): the admin thread never reads shard-owned state.
void shard_server::publish_metrics() {
  auto& m = *_st.metrics;
  unsigned me = _shard.index();
  m.connections_inbound.set(me, int64_t(_conn_count));
  if (me == 0) m.messages_accepted.cell(0).store(_st.stats.messages_accepted.load(std::memory_order_relaxed),
                                               std::memory_order_relaxed);
  if (_sched) {
    const auto& q = _sched->stats();
    m.messages_delivered.cell(me).store(q.delivered, std::memory_order_relaxed);
    m.messages_deferred.cell(me).store(q.deferred, std::memory_order_relaxed);
    m.messages_bounced.cell(me).store(q.bounced, std::memory_order_relaxed);
    m.messages_dropped.cell(me).store(q.dropped, std::memory_order_relaxed);
    m.queue_depth.set(me, int64_t(_sched->depth()));
  }
  if (_agent) {
    const auto& c = _agent->counters();
    m.connections_outbound.set(me, int64_t(_agent->open_links()));
    m.fallback_handoffs.cell(me).store(c.fallback_handoffs, std::memory_order_relaxed);
    m.deliveries("").cell(me).store(c.plain_deliveries, std::memory_order_relaxed);
    m.deliveries("TLSv1.3").cell(me).store(c.tls13, std::memory_order_relaxed);
    m.deliveries("TLSv1.2").cell(me).store(c.tls12, std::memory_order_relaxed);
    m.deliveries("other").cell(me).store(c.tls_other, std::memory_order_relaxed);
    m.store_tls_failures(me, c.tls_failures_by_reason);
  }
  if (_resolver) {
    auto r = _resolver->stats();
    m.dns_cache_hits.cell(me).store(r.cache_hits, std::memory_order_relaxed);
    m.dns_cache_misses.cell(me).store(r.cache_misses, std::memory_order_relaxed);
  }
}

void shard_server::flush_audit() {
  if (_audit) _audit->flush_and_wait();
}

}  // namespace sr::server
