// Accept path: caps (total, per client IP, drain) are checked before a session
// exists; a refused client gets one 421 line and is closed at once. Deadlines are scanned
// on the shard's tick: O(connections) every 100 ms is cheaper than a timer per
// connection at these counts and needs no allocation.
#include "sealrelay/server/server.hh"

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "connection.hh"
#include "sealrelay/server/auth.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/util/cidr.hh"
#include "sealrelay/util/log.hh"

namespace sr::server {
namespace {
constexpr size_t chunk_size = 16 * 1024;
constexpr unsigned ring_entries = 1024;
constexpr uint16_t buffer_group = 1;
}  // namespace

void inbound_tls_counts::established(std::string_view version) {
  // wolfSSL names TLS 1.0 "TLSv1".
  static constexpr std::string_view known[] = {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"};
  if (version == "TLSv1.0") version = "TLSv1";
  size_t i = 0;
  while (i < std::size(known) && known[i] != version) ++i;
  ++by_version[i];  // i == 4: anything else
}

uint32_t connection_cap(uint64_t max_connections, uint64_t fd_limit) {
  const uint64_t reserve = std::min<uint64_t>(512, fd_limit / 4);
  const uint64_t room = fd_limit > reserve ? fd_limit - reserve : 1;
  return uint32_t(std::min<uint64_t>({max_connections, room, UINT32_MAX}));
}

namespace {
uint32_t cap_for_this_process(uint64_t max_connections) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return uint32_t(max_connections);
  return connection_cap(max_connections, rl.rlim_cur);
}
}  // namespace

shared_state::shared_state(const config::config& c)
    : cfg(c),
      shards(c.server.shards ? c.server.shards : std::min(core::online_cpus(), 256u)),  // queue ids: 2 hex digits
      max_connections(cap_for_this_process(c.limits.max_connections)) {}

shard_server::shard_server(core::shard& sh, shared_state& st, message_store& store)
    : _shard(sh), _st(st), _store(store) {}

shard_server::~shard_server() {
  _conns.delete_all();  // connections still open at exit are abandoned with the process
}

status shard_server::prepare() {
  const auto& cfg = _st.cfg;
  _pool = std::make_unique<net::chunk_pool>(chunk_size, ring_entries + 256);
  _ring = std::make_unique<net::buffer_ring>(*_pool, ring_entries, buffer_group);
  // After a large message: free chunks beyond the pool's first slack go back to the OS.
  _shard.on_release_memory([this] { _pool->trim(256); });
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
  return {};
}

status shard_server::listen() {
  if (_shard.index() == 0 && _st.max_connections < _st.cfg.limits.max_connections)
    SR_WARN("limits.max_connections = %llu is more than the descriptor limit (RLIMIT_NOFILE) allows: "
            "inbound connections are capped at %u, the rest get 421 4.3.2",
            static_cast<unsigned long long>(_st.cfg.limits.max_connections), _st.max_connections);
  for (const auto& l : _st.cfg.listen) {
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
  auto got = net::accepted_peer(fd);
  if (!got) return;
  const sockaddr_storage& peer = *got;
  _st.stats.connections_total.fetch_add(1, std::memory_order_relaxed);

  bool relay_allowed = false;
  if (li.entry->mode == config::listen_mode::relay)
    for (const auto& net : li.entry->allow_relay_from)
      if (net.contains(reinterpret_cast<const sockaddr*>(&peer))) relay_allowed = true;

  const auto& lim = _st.cfg.limits;
  auto [slot, total, per_ip] = _st.conns.add(peer);
  const std::string& host = _st.cfg.server.hostname;
  std::string refusal;
  if (_draining || _st.draining.load(std::memory_order_relaxed)) {
    refusal = "421 4.3.2 " + host + " Service shutting down, closing transmission channel\r\n";
  } else if (_st.max_connections && total > _st.max_connections) {
    refusal = "421 4.3.2 " + host + " Too many connections, try again later\r\n";
  } else if (lim.max_conns_per_ip && per_ip > lim.max_conns_per_ip) {
    std::string ip = address_to_string(reinterpret_cast<const sockaddr*>(&peer));
    SR_INFO("%s: refused, %u connections from this address", ip.c_str(), per_ip - 1);
    refusal = "421 4.7.0 " + host + " Error: too many connections from " + ip + "\r\n";
  } else if (_script) {
    refusal = _script->admit(*li.entry);
  }
  if (!refusal.empty()) {
    // A refused client costs one send and one close, here and now: no session, and its
    // descriptor is back at once (a flood of refused clients that kept theirs open until
    // they read the reply would eat the descriptors the cap keeps for the spool and
    // deliveries). The reply fits the new socket's empty send buffer; the kernel sends it
    // before the FIN.
    _st.stats.connections_refused.fetch_add(1, std::memory_order_relaxed);
    (void)::send(fd, refusal.data(), refusal.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::close(fd);
    _st.conns.remove(slot);
    return;
  }
  // Only replies flow to an SMTP client, a few KiB at a time. Autotuned, the kernel's send
  // buffer of a client that stops reading grows to tcp_wmem's maximum (4 MiB here: 3.1 MiB
  // queued per such connection was measured by the abuse drill), kernel memory our 64 KiB
  // bound on unsent replies does not see. Fixed at 32 KiB (the kernel doubles it), the
  // relay stops reading from such a client after ~128 KiB of unread replies in all.
  const int sndbuf = 32 * 1024;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  auto* c = new connection(*this, li, fd, peer, relay_allowed);
  _conns.push_front(c);
  c->set_ip_slot(slot);
  c->start();
}

void shard_server::on_connection_closed(connection* c) {
  _conns.erase(c);
  if (_script) _script->closed(*c->listener().entry);
  _st.conns.remove(c->ip_slot());
  delete c;
}

void shard_server::on_tick() {
  uint64_t now = _shard.now_ms();
  _ring->refill();
  _conns.for_each([now](connection* c) {  // c may close during the check
    c->resume_recv_if_starved();
    c->check_deadline(now);
  });
}

void shard_server::begin_drain() {
  if (_draining) return;
  _draining = true;
  for (auto& li : _listeners) li->sock->stop();
  _conns.for_each([](connection* c) { c->begin_drain(); });
  if (_auth) _auth->release_delayed();  // a held-back 535 must not outlast the drain
}

bool shard_server::idle() const { return _conns.size() == 0 && _store.in_flight() == 0; }

void shard_server::abort_all() {
  _conns.for_each([](connection* c) { c->force_close(); });
}

}  // namespace sr::server
