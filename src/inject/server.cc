// Accept path: the caps (draining, connections per process and per client address) are
// checked before a connection serves anything; a refused client gets a 503 JSON answer
// to its first request. Deadlines are scanned on the shard's tick (every 100 ms), as the
// SMTP server does: cheaper than a timer per connection, and no allocation.
#include "sealrelay/inject/server.hh"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "connection.hh"
#include "sealrelay/util/cidr.hh"
#include "sealrelay/util/log.hh"

namespace sr::inject {

shared_state::shared_state(options o) : opt(std::move(o)), tokens(opt.tokens_file) {}

std::size_t code_index(uint16_t code) {
  for (std::size_t i = 0; i + 1 < counted_codes_size; ++i)
    if (counted_codes[i] == code) return i;
  return counted_codes_size - 1;
}

status check_listen(std::string_view listen, bool tls) {
  socklen_t len = 0;
  auto addr = sr::parse_endpoint(listen, &len);
  if (!addr) return error{"not an ip:port address: " + std::string(listen)};
  if (tls) return {};
  bool loopback = false;
  if (addr->ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&*addr);
    loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  } else if (addr->ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&*addr);
    loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127);
  }
  if (!loopback)
    return error{"plain HTTP (tls = false) is allowed only on a loopback address, not " + std::string(listen)};
  return {};
}

status token_source::reload() {
  auto set = api::token_set::load(_path);
  if (!set) return error{set.err()};
  auto fresh = std::make_shared<const api::token_set>(std::move(set.value()));
  {
    std::lock_guard<std::mutex> lock(_mu);
    _set = std::move(fresh);
  }
  _generation.fetch_add(1, std::memory_order_acq_rel);
  return {};
}

std::shared_ptr<const api::token_set> token_source::current() const {
  std::lock_guard<std::mutex> lock(_mu);
  return _set;
}

shard_server::shard_server(core::shard& sh, shared_state& st, net::buffer_ring& buffers, net::chunk_pool& pool,
                           spool::intake& intake)
    : _shard(sh), _st(st), _buffers(buffers), _pool(pool), _intake(intake) {}

shard_server::~shard_server() {
  _conns.delete_all();  // connections still open at exit are abandoned with the process
}

status shard_server::start() {
  const options& o = _st.opt;
  if (status s = check_listen(o.listen, o.tls); !s) return error{"http.listen: " + s.err()};
  socklen_t len = 0;
  auto addr = sr::parse_endpoint(o.listen, &len);
  if (o.tls) {
    auto ctx = tls::context::server(o.cert_file, o.key_file, o.min_tls_version);
    if (!ctx) return error{"http: " + ctx.err()};
    _tls = std::make_unique<tls::context>(std::move(ctx.value()));
  }
  auto fd = net::open_listen_socket(*addr, len);
  if (!fd) return error{"http.listen: " + o.listen + ": " + fd.err()};
  _listener = std::make_unique<net::listener>(_shard, *fd, [this](int cfd) { on_accept(cfd); });
  _listener->arm();
  _tokens = _st.tokens.current();
  _tokens_generation = _st.tokens.generation();
  _shard.on_tick([this] { on_tick(); });
  return {};
}

void shard_server::on_accept(int fd) {
  auto got = net::accepted_peer(fd);
  if (!got) return;
  const sockaddr_storage& peer = *got;
  std::string ip = address_to_string(reinterpret_cast<const sockaddr*>(&peer));
  auto [slot, total, per_ip] = _st.conns.add(peer);
  auto* c = new connection(*this, fd, ip, slot);
  _conns.push_front(c);
  const options& o = _st.opt;
  if (_draining || _st.draining.load(std::memory_order_relaxed)) {
    c->refuse(503, "shutting down; try again later");
  } else if (o.max_connections && total > o.max_connections) {
    c->refuse(503, "too many connections; try again later");
  } else if (o.max_conns_per_ip && per_ip > o.max_conns_per_ip) {
    SR_INFO("http: %s: refused, %u connections from this address", ip.c_str(), per_ip - 1);
    c->refuse(503, "too many connections from your address; try again later");
  } else {
    c->start();
  }
}

void shard_server::on_connection_closed(connection* c) {
  _conns.erase(c);
  _st.conns.remove(c->ip_slot());
  delete c;
}

void shard_server::count_accepted(std::size_t recipients) {
  ++_stats.messages_accepted;
  _stats.recipients_accepted += recipients;
  if (_st.messages_accepted) _st.messages_accepted->fetch_add(1, std::memory_order_relaxed);
}

void shard_server::on_tick() {
  if (uint64_t g = _st.tokens.generation(); g != _tokens_generation) {
    _tokens = _st.tokens.current();  // SIGHUP loaded a new tokens file
    _tokens_generation = g;
  }
  uint64_t now = _shard.now_ms();
  _conns.for_each([now](connection* c) {  // c may close during the check
    c->resume_recv_if_starved();
    c->check_deadline(now);
  });
}

void shard_server::begin_drain() {
  if (_draining) return;
  _draining = true;
  if (_listener) _listener->stop();
  _conns.for_each([](connection* c) { c->begin_drain(); });
}

void shard_server::abort_all() {
  _conns.for_each([](connection* c) { c->force_close(); });
}

}  // namespace sr::inject
