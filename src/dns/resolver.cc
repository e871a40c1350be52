// The resolver's I/O and bookkeeping. Each server has one connected UDP socket with a
// recv always armed; a query is matched by id (then by question, in parse_answer) and
// moves to the next server on timeout (tick), SERVFAIL/REFUSED or ICMP refusal, and to
// TCP on TC=1. One query per (name, type) is in flight; later askers wait on it. Every
// io_uring operation is an object that outlives its CQE: the UDP receive lives in its
// server (orphaned, not freed, if the resolver goes first), sends and TCP connections
// free themselves.
#include "sealrelay/dns/resolver.hh"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <span>
#include <unordered_map>

#include "packet.hh"
#include "sealrelay/util/log.hh"

namespace sr::dns {

const char* to_string(status s) {
  switch (s) {
    case status::ok: return "ok";
    case status::nodata: return "nodata";
    case status::nxdomain: return "nxdomain";
    case status::null_mx: return "null_mx";
    case status::temp_fail: return "temp_fail";
    case status::bad_name: return "bad_name";
  }
  return "?";
}

namespace {

constexpr size_t udp_buf_size = 65536;
constexpr uint64_t sweep_interval_ms = 30'000;

struct cache_key {
  std::string name;  // canonical ("mx.example.")
  uint16_t type = 0;
  bool operator==(const cache_key&) const = default;
};
struct key_hash {
  size_t operator()(const cache_key& k) const noexcept {
    return std::hash<std::string>{}(k.name) * 31 + k.type;
  }
};

// One (name, type) outcome as cached; outcome::server_fail stands for a temporary
// failure and is never cached.
struct entry {
  outcome kind = outcome::server_fail;
  bool ad = false;
  std::vector<rdata> records;
  std::string target;  // outcome::cname
  uint64_t expires_ms = 0;
};

const entry& temp_failure() {
  static const entry e;
  return e;
}

socklen_t addr_len(const sockaddr_storage& ss) {
  return ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

std::string addr_text(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET6) {
    const auto& s6 = reinterpret_cast<const sockaddr_in6&>(ss);
    inet_ntop(AF_INET6, &s6.sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(s6.sin6_port));
  }
  const auto& s4 = reinterpret_cast<const sockaddr_in&>(ss);
  inet_ntop(AF_INET, &s4.sin_addr, buf, sizeof buf);
  return std::string(buf) + ":" + std::to_string(ntohs(s4.sin_port));
}

std::string strip_dot(std::string_view name) {
  if (name.size() > 1 && name.back() == '.') name.remove_suffix(1);
  return std::string(name);
}

// An IP literal ("192.0.2.1", "2001:db8::1", "[2001:db8::1]") as an address, port 0.
bool parse_literal(std::string_view host, sockaddr_storage& out) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty() || host.size() >= INET6_ADDRSTRLEN) return false;
  char buf[INET6_ADDRSTRLEN];
  memcpy(buf, host.data(), host.size());
  buf[host.size()] = 0;
  out = {};
  auto* s4 = reinterpret_cast<sockaddr_in*>(&out);
  if (inet_pton(AF_INET, buf, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    return true;
  }
  auto* s6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (inet_pton(AF_INET6, buf, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    return true;
  }
  return false;
}

}  // namespace

using entry_cb = std::function<void(const entry&, bool ad)>;
struct server;
struct query;

// The receive armed on a server's UDP socket.
struct udp_recv_op final : core::completion {
  server* srv = nullptr;
  void on_complete(int res, unsigned flags) override;
};

// A configured server and its connected UDP socket.
struct server {
  resolver::impl* owner = nullptr;  // null once the resolver is gone (then the CQE frees us)
  core::shard* sh = nullptr;        // adopted us when the owner went (core::shard::adopt)
  unsigned index = 0;
  sockaddr_storage addr{};
  std::string text;
  int fd = -1;
  bool armed = false;
  udp_recv_op op;
  std::unique_ptr<uint8_t[]> buf{new uint8_t[udp_buf_size]};
};

// One UDP send; owns its copy of the query so the query may finish first.
struct udp_send_op final : core::completion {
  std::vector<uint8_t> wire;
  void on_complete(int, unsigned) override { delete this; }
};

// A TCP exchange for a truncated answer: connect, send length-prefixed query, read
// one length-prefixed response. Frees itself; abort() detaches it from its query.
struct tcp_conn final : core::completion {
  enum class step : uint8_t {
    connecting,  // connect SQE in flight
    sending,     // writing the 2-byte length and the query
    receiving,   // reading until the length prefix and the whole message are in
  };
  tcp_conn(resolver::impl& o, core::shard& s, query* q, const sockaddr_storage& a)
      : owner(o), sh(s), q(q), addr(a) {}
  bool start(const std::vector<uint8_t>& wire);
  void abort();
  void on_complete(int res, unsigned flags) override;

 private:
  void arm_send();
  void arm_recv();
  void done(bool ok);

  resolver::impl& owner;
  core::shard& sh;
  query* q;
  sockaddr_storage addr;
  int fd = -1;
  step st = step::connecting;
  bool inflight = false;
  bool aborted = false;
  std::vector<uint8_t> out;
  size_t out_off = 0;
  std::vector<uint8_t> in;
  size_t in_len = 0;
  size_t need = 0;
};

// One question on the wire, with everyone waiting for its answer.
struct query {
  cache_key key;
  uint16_t id = 0;
  std::vector<uint8_t> wire;
  unsigned server = 0;       // index of the server asked now
  unsigned tries = 0;        // UDP sends so far; the TCP follow-up belongs to its send
  uint64_t deadline_ms = 0;  // of the current try
  tcp_conn* tcp = nullptr;
  std::vector<std::function<void(const entry&)>> waiters;
};

struct resolver::impl : std::enable_shared_from_this<resolver::impl> {
  impl(core::shard& s, resolver_options o) : sh(s), opt(std::move(o)) {
    if (opt.attempts == 0) opt.attempts = 1;
    if (opt.timeout_ms < 100) opt.timeout_ms = 100;
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != sizeof seed) seed = uint64_t(time(nullptr)) ^ uintptr_t(this);
    rng.seed(seed);
  }
  ~impl();

  sr::status start();
  void fetch(cache_key key, unsigned depth, bool ad, entry_cb cb);
  void follow(const entry& e, uint16_t type, unsigned depth, bool ad, entry_cb cb);
  void send_udp(query& q);
  void start_tcp(query& q);
  void next_server(query& q);
  void finish(query& q, const entry& e, uint32_t ttl);
  void on_udp(server& s, int res);
  void on_udp_packet(server& s, std::span<const uint8_t> bytes);
  void on_tcp_result(query* q, bool ok, std::span<const uint8_t> bytes);
  void arm_recv(server& s);
  void tick();
  void sweep();
  void store(const cache_key& k, entry e, uint32_t ttl);
  uint16_t fresh_id();
  template <typename R>
  void deliver(std::function<void(const R&)> cb, R r) {
    sh.post([cb = std::move(cb), r = std::move(r)] { cb(r); });
  }

  core::shard& sh;
  resolver_options opt;
  resolver_stats st;
  bool started = false;
  std::vector<server*> servers;
  unsigned preferred = 0;  // first server for new queries; moves on when it times out
  std::unordered_map<uint16_t, query*> by_id;
  std::unordered_map<cache_key, std::unique_ptr<query>, key_hash> inflight;
  std::unordered_map<cache_key, entry, key_hash> cache;
  uint64_t next_sweep_ms = 0;
  std::mt19937_64 rng;      // MX shuffling
  uint16_t ids[256] = {};   // query ids from getrandom(), refilled in batches
  size_t ids_pos = 256;
};

// ---- UDP ----------------------------------------------------------------------------

void udp_recv_op::on_complete(int res, unsigned) {
  server* s = srv;
  s->armed = false;
  if (!s->owner) {
    s->sh->disown(s);
    delete s;
    return;
  }
  s->owner->on_udp(*s, res);
}

void resolver::impl::arm_recv(server& s) {
  io_uring_sqe* sqe = sh.sqe(&s.op);
  io_uring_prep_recv(sqe, s.fd, s.buf.get(), udp_buf_size, 0);
  s.armed = true;
}

void resolver::impl::on_udp(server& s, int res) {
  if (res == -ECANCELED || res == -EBADF) return;
  if (res > 0) {
    on_udp_packet(s, std::span<const uint8_t>(s.buf.get(), size_t(res)));
  } else if (res == -ECONNREFUSED) {
    // ICMP port unreachable: nobody serves DNS there; move its queries on at once.
    std::vector<uint16_t> moved;
    for (auto& [id, q] : by_id)
      if (q->server == s.index && !q->tcp) moved.push_back(id);
    for (uint16_t id : moved)
      if (auto it = by_id.find(id); it != by_id.end()) next_server(*it->second);
  }
  if (started && !s.armed && s.owner) arm_recv(s);
}

void resolver::impl::on_udp_packet(server& s, std::span<const uint8_t> bytes) {
  if (bytes.size() < 12) return;
  uint16_t id = uint16_t(bytes[0] << 8 | bytes[1]);
  auto it = by_id.find(id);
  if (it == by_id.end()) return;
  query& q = *it->second;
  answer a = parse_answer(bytes, q.key.name, q.key.type, opt.max_ttl_s, opt.max_negative_ttl_s);
  switch (a.kind) {
    case outcome::malformed:
      return;  // not an answer to our question (stale or spoofed): keep waiting
    case outcome::truncated:
      if (q.server == s.index && !q.tcp) start_tcp(q);
      return;
    case outcome::server_fail:
      if (q.server == s.index && !q.tcp) next_server(q);
      return;
    default: {
      // A late answer from a server asked before is as good as the current one's.
      entry e;
      e.kind = a.kind;
      e.ad = a.ad;
      e.records = std::move(a.records);
      e.target = std::move(a.target);
      finish(q, e, a.ttl);
    }
  }
}

void resolver::impl::send_udp(query& q) {
  server& s = *servers[q.server];
  ++q.tries;
  q.deadline_ms = sh.now_ms() + opt.timeout_ms;
  ++st.udp_queries;
  auto* op = new udp_send_op;
  op->wire = q.wire;
  io_uring_sqe* sqe = sh.sqe(op);
  io_uring_prep_send(sqe, s.fd, op->wire.data(), op->wire.size(), 0);
}

// ---- TCP ----------------------------------------------------------------------------

bool tcp_conn::start(const std::vector<uint8_t>& wire) {
  fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  out.reserve(wire.size() + 2);
  out.push_back(uint8_t(wire.size() >> 8));
  out.push_back(uint8_t(wire.size()));
  out.insert(out.end(), wire.begin(), wire.end());
  io_uring_sqe* sqe = sh.sqe(this);
  io_uring_prep_connect(sqe, fd, reinterpret_cast<const sockaddr*>(&addr), addr_len(addr));
  inflight = true;
  return true;
}

void tcp_conn::arm_send() {
  io_uring_sqe* sqe = sh.sqe(this);
  io_uring_prep_send(sqe, fd, out.data() + out_off, out.size() - out_off, MSG_NOSIGNAL);
  inflight = true;
}

void tcp_conn::arm_recv() {
  io_uring_sqe* sqe = sh.sqe(this);
  io_uring_prep_recv(sqe, fd, in.data() + in_len, in.size() - in_len, 0);
  inflight = true;
}

void tcp_conn::abort() {
  q = nullptr;
  aborted = true;
  if (!inflight) {
    if (fd >= 0) ::close(fd);
    delete this;
    return;
  }
  io_uring_sqe* sqe = sh.sqe();
  io_uring_prep_cancel(sqe, this, 0);
  io_uring_sqe_set_data64(sqe, core::ignore_cqe);
}

void tcp_conn::done(bool ok) {
  query* target = q;
  target->tcp = nullptr;
  ::close(fd);
  fd = -1;
  std::span<const uint8_t> msg;
  if (ok) msg = std::span<const uint8_t>(in.data() + 2, need - 2);
  owner.on_tcp_result(target, ok, msg);
  delete this;
}

void tcp_conn::on_complete(int res, unsigned) {
  inflight = false;
  if (aborted) {
    if (fd >= 0) ::close(fd);
    delete this;
    return;
  }
  switch (st) {
    case step::connecting:
      if (res < 0) return done(false);
      st = step::sending;
      return arm_send();
    case step::sending:
      if (res <= 0) return done(false);
      out_off += size_t(res);
      if (out_off < out.size()) return arm_send();
      st = step::receiving;
      in.resize(2 + 65535);
      return arm_recv();
    case step::receiving:
      if (res <= 0) return done(false);
      in_len += size_t(res);
      if (in_len >= 2 && need == 0) need = 2 + (size_t(in[0]) << 8 | in[1]);
      if (need != 0 && in_len >= need) return done(need > 2 + 12);
      return arm_recv();
  }
}

void resolver::impl::start_tcp(query& q) {
  ++st.tcp_queries;
  auto* c = new tcp_conn(*this, sh, &q, servers[q.server]->addr);
  if (!c->start(q.wire)) {
    delete c;
    return next_server(q);
  }
  q.tcp = c;
  q.deadline_ms = sh.now_ms() + opt.timeout_ms;
}

void resolver::impl::on_tcp_result(query* q, bool ok, std::span<const uint8_t> bytes) {
  if (!ok) return next_server(*q);
  answer a = parse_answer(bytes, q->key.name, q->key.type, opt.max_ttl_s, opt.max_negative_ttl_s);
  if (a.id != q->id || a.kind == outcome::malformed || a.kind == outcome::truncated ||
      a.kind == outcome::server_fail)
    return next_server(*q);
  entry e;
  e.kind = a.kind;
  e.ad = a.ad;
  e.records = std::move(a.records);
  e.target = std::move(a.target);
  finish(*q, e, a.ttl);
}

// ---- queries, cache, CNAMEs -----------------------------------------------------------

uint16_t resolver::impl::fresh_id() {
  for (;;) {
    if (ids_pos == std::size(ids)) {
      if (getrandom(ids, sizeof ids, GRND_NONBLOCK) != ssize_t(sizeof ids))
        for (auto& v : ids) v = uint16_t(rng());
      ids_pos = 0;
    }
    uint16_t id = ids[ids_pos++];
    if (!by_id.count(id)) return id;
  }
}

void resolver::impl::next_server(query& q) {
  if (q.tcp) {
    q.tcp->abort();
    q.tcp = nullptr;
  }
  if (q.tries >= servers.size() * opt.attempts) return finish(q, temp_failure(), 0);
  q.server = (q.server + 1) % unsigned(servers.size());
  send_udp(q);
}

void resolver::impl::finish(query& q, const entry& e, uint32_t ttl) {
  if (q.tcp) {
    q.tcp->abort();
    q.tcp = nullptr;
  }
  by_id.erase(q.id);
  auto node = inflight.extract(q.key);  // keeps the query alive while waiters run
  auto waiters = std::move(q.waiters);
  if (e.kind != outcome::server_fail) store(q.key, e, ttl);
  for (auto& w : waiters) w(e);
}

void resolver::impl::store(const cache_key& k, entry e, uint32_t ttl) {
  if (ttl == 0 || opt.max_cache_entries == 0) return;
  if (cache.size() >= opt.max_cache_entries) {
    sweep();
    if (cache.size() >= opt.max_cache_entries) cache.erase(cache.begin());
  }
  e.expires_ms = sh.now_ms() + uint64_t(ttl) * 1000;
  cache.insert_or_assign(k, std::move(e));
}

void resolver::impl::sweep() {
  uint64_t now = sh.now_ms();
  std::erase_if(cache, [now](const auto& kv) { return kv.second.expires_ms <= now; });
}

void resolver::impl::fetch(cache_key key, unsigned depth, bool ad, entry_cb cb) {
  if (auto it = cache.find(key); it != cache.end()) {
    if (it->second.expires_ms > sh.now_ms()) {
      ++st.cache_hits;
      return follow(it->second, key.type, depth, ad, std::move(cb));
    }
    cache.erase(it);
  }
  ++st.cache_misses;
  auto waiter = [this, type = key.type, depth, ad, cb = std::move(cb)](const entry& e) {
    follow(e, type, depth, ad, cb);
  };
  if (auto it = inflight.find(key); it != inflight.end()) {
    ++st.coalesced;
    it->second->waiters.push_back(std::move(waiter));
    return;
  }
  auto q = std::make_unique<query>();
  q->id = fresh_id();
  if (!started || servers.empty() || !build_query(key.name, key.type, q->id, q->wire))
    return waiter(temp_failure());
  q->key = std::move(key);
  q->server = preferred;
  q->waiters.push_back(std::move(waiter));
  query& ref = *q;
  by_id.emplace(ref.id, &ref);
  inflight.emplace(ref.key, std::move(q));
  send_udp(ref);
}

void resolver::impl::follow(const entry& e, uint16_t type, unsigned depth, bool ad, entry_cb cb) {
  bool chain_ad = ad && e.ad;
  if (e.kind != outcome::cname) return cb(e, e.kind == outcome::server_fail ? false : chain_ad);
  if (depth >= max_cname_depth) return cb(temp_failure(), false);
  std::string target = e.target;  // copy: fetch may change the cache under `e`
  fetch({std::move(target), type}, depth + 1, chain_ad, std::move(cb));
}

void resolver::impl::tick() {
  uint64_t now = sh.now_ms();
  std::vector<uint16_t> due;
  for (auto& [id, q] : by_id)
    if (q->deadline_ms <= now) due.push_back(id);
  for (uint16_t id : due) {
    auto it = by_id.find(id);
    if (it == by_id.end() || it->second->deadline_ms > now) continue;
    query& q = *it->second;
    ++st.timeouts;
    if (q.server == preferred && servers.size() > 1) preferred = (preferred + 1) % unsigned(servers.size());
    next_server(q);
  }
  if (now >= next_sweep_ms) {
    next_sweep_ms = now + sweep_interval_ms;
    sweep();
  }
}

// ---- start-up and teardown ----------------------------------------------------------

sr::status resolver::impl::start() {
  if (started) return sr::status::success();
  std::vector<std::string> list = opt.servers;
  if (list.empty()) list = servers_from_resolv_conf(opt.resolv_conf);
  if (list.empty()) list.push_back("127.0.0.1:53");  // glibc's default when none is named
  for (const std::string& text : list) {
    auto addr = parse_server(text);
    if (!addr) return sr::error{"dns server '" + text + "': " + addr.err()};
    int fd = ::socket(addr->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&*addr), addr_len(*addr)) != 0) {
      SR_WARN("dns server %s unusable: %s", text.c_str(), strerror(errno));
      if (fd >= 0) ::close(fd);
      continue;
    }
    // One receive is armed at a time: answers to a burst of lookups (a queue of thousands
    // of new domains, each with MX, A/AAAA and MTA-STS TXT questions) wait in the socket
    // buffer, and the default (~208 KiB) drops them, turning into timeouts and retries.
    // 4 MiB holds tens of thousands of answers; as root the rmem_max cap does not apply.
    int rcvbuf = 4 << 20;
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    auto* s = new server;
    s->owner = this;
    s->index = unsigned(servers.size());
    s->addr = *addr;
    s->text = addr_text(*addr);
    s->fd = fd;
    s->op.srv = s;
    servers.push_back(s);
  }
  if (servers.empty()) return sr::error{"no usable dns server"};
  started = true;
  for (server* s : servers) arm_recv(*s);
  sh.on_tick([w = weak_from_this()] {
    if (auto self = w.lock()) self->tick();
  });
  return sr::status::success();
}

resolver::impl::~impl() {
  started = false;
  for (auto& [key, q] : inflight)
    if (q->tcp) {
      q->tcp->abort();
      q->tcp = nullptr;
    }
  inflight.clear();
  by_id.clear();
  for (server* s : servers) {
    if (s->armed) {
      // The armed recv still points at `s`: let its (cancelled) CQE free it.
      s->owner = nullptr;
      s->sh = &sh;
      sh.adopt(s, [s] { delete s; });  // a shard stopped before that CQE frees it
      io_uring_sqe* sqe = sh.sqe();
      io_uring_prep_cancel(sqe, &s->op, 0);
      io_uring_sqe_set_data64(sqe, core::ignore_cqe);
      ::close(s->fd);
    } else {
      ::close(s->fd);
      delete s;
    }
  }
}

// ---- public API ---------------------------------------------------------------------

resolver::resolver(core::shard& sh, resolver_options opt)
    : _impl(std::make_shared<impl>(sh, std::move(opt))) {}

resolver::~resolver() = default;

sr::status resolver::start() { return _impl->start(); }

void resolver::lookup_mx(std::string_view domain, std::function<void(const mx_result&)> cb) {
  impl& m = *_impl;
  auto name = canonical_name(domain);
  if (!name) return m.deliver(std::move(cb), mx_result{.status = status::bad_name});
  std::string self = strip_dot(*name);
  m.fetch({*name, rrtype::mx}, 0, true, [&m, self, cb = std::move(cb)](const entry& e, bool ad) {
    mx_result r;
    r.ad = ad;
    switch (e.kind) {
      case outcome::records: {
        for (const rdata& d : e.records)
          if (d.data != ".") r.hosts.push_back({strip_dot(d.data), d.pref});
        // RFC 7505: "0 ." alone means no mail; a "." beside real hosts is just skipped.
        if (r.hosts.empty()) {
          r.status = status::null_mx;
          break;
        }
        r.status = status::ok;
        std::stable_sort(r.hosts.begin(), r.hosts.end(),
                         [](const mx_host& a, const mx_host& b) { return a.preference < b.preference; });
        // RFC 5321 §5.1: spread the load over hosts of equal preference.
        for (auto i = r.hosts.begin(); i != r.hosts.end();) {
          auto j = std::find_if(i, r.hosts.end(), [&](const mx_host& h) { return h.preference != i->preference; });
          std::shuffle(i, j, m.rng);
          i = j;
        }
        break;
      }
      case outcome::nodata:
        r.status = status::ok;
        r.implicit = true;
        r.hosts.push_back({self, 0});
        break;
      case outcome::nxdomain: r.status = status::nxdomain; break;
      default: r.status = status::temp_fail; r.ad = false; break;
    }
    m.deliver(cb, std::move(r));
  });
}

void resolver::lookup_addrs(std::string_view host, std::function<void(const addr_result&)> cb) {
  impl& m = *_impl;
  addr_result lit;
  if (parse_literal(host, lit.addrs.emplace_back())) {
    lit.status = status::ok;
    return m.deliver(std::move(cb), std::move(lit));
  }
  auto name = canonical_name(host);
  if (!name) return m.deliver(std::move(cb), addr_result{.status = status::bad_name});
  struct join {
    unsigned pending = 2;
    outcome kind[2] = {};
    bool ad[2] = {};
    std::vector<sockaddr_storage> addrs[2];
    std::function<void(const addr_result&)> cb;
  };
  auto j = std::make_shared<join>();
  j->cb = std::move(cb);
  auto part = [&m, j](int slot) {
    return [&m, j, slot](const entry& e, bool ad) {
      j->kind[slot] = e.kind;
      j->ad[slot] = ad;
      if (e.kind == outcome::records)
        for (const rdata& d : e.records) {
          sockaddr_storage ss{};
          if (slot == 0 && d.data.size() == 4) {
            auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
            s4->sin_family = AF_INET;
            memcpy(&s4->sin_addr, d.data.data(), 4);
          } else if (slot == 1 && d.data.size() == 16) {
            auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
            s6->sin6_family = AF_INET6;
            memcpy(&s6->sin6_addr, d.data.data(), 16);
          } else {
            continue;
          }
          j->addrs[slot].push_back(ss);
        }
      if (--j->pending) return;
      addr_result r;
      auto failed = [](outcome k) { return k != outcome::records && k != outcome::nodata && k != outcome::nxdomain; };
      // AD over the families that answered: a family that failed (SERVFAIL, bogus, timeout)
      // adds no address, so it must not make validated addresses of the other family look
      // insecure — an attacker who breaks the AAAA answer would otherwise switch DANE off.
      bool answered = false;
      r.ad = true;
      for (int k = 0; k < 2; ++k)
        if (!failed(j->kind[k])) {
          answered = true;
          r.ad = r.ad && j->ad[k];
        }
      r.ad = r.ad && answered;
      r.addrs = std::move(j->addrs[0]);
      r.addrs.insert(r.addrs.end(), j->addrs[1].begin(), j->addrs[1].end());
      if (!r.addrs.empty()) r.status = status::ok;
      else if (failed(j->kind[0]) || failed(j->kind[1])) r.status = status::temp_fail;
      else if (j->kind[0] == outcome::nxdomain && j->kind[1] == outcome::nxdomain) r.status = status::nxdomain;
      else r.status = status::nodata;
      if (r.status == status::temp_fail) r.ad = false;
      m.deliver(j->cb, std::move(r));
    };
  };
  m.fetch({*name, rrtype::a}, 0, true, part(0));
  m.fetch({*name, rrtype::aaaa}, 0, true, part(1));
}

namespace {
// Map a generic outcome to the status set of TXT/TLSA lookups.
status simple_status(outcome k, bool has_records) {
  switch (k) {
    case outcome::records: return has_records ? status::ok : status::nodata;
    case outcome::nodata: return status::nodata;
    case outcome::nxdomain: return status::nxdomain;
    default: return status::temp_fail;
  }
}
}  // namespace

void resolver::lookup_txt(std::string_view name, std::function<void(const txt_result&)> cb) {
  impl& m = *_impl;
  auto canon = canonical_name(name);
  if (!canon) return m.deliver(std::move(cb), txt_result{.status = status::bad_name});
  m.fetch({*canon, rrtype::txt}, 0, true, [&m, cb = std::move(cb)](const entry& e, bool ad) {
    txt_result r;
    if (e.kind == outcome::records)
      for (const rdata& d : e.records) r.texts.push_back(d.data);
    r.status = simple_status(e.kind, !r.texts.empty());
    r.ad = r.status != status::temp_fail && ad;
    m.deliver(cb, std::move(r));
  });
}

void resolver::lookup_tlsa(std::string_view name, std::function<void(const tlsa_result&)> cb) {
  impl& m = *_impl;
  auto canon = canonical_name(name);
  if (!canon) return m.deliver(std::move(cb), tlsa_result{.status = status::bad_name});
  m.fetch({*canon, rrtype::tlsa}, 0, true, [&m, cb = std::move(cb)](const entry& e, bool ad) {
    tlsa_result r;
    if (e.kind == outcome::records)
      for (const rdata& d : e.records) r.records.emplace_back(d.data.begin(), d.data.end());
    r.status = simple_status(e.kind, !r.records.empty());
    r.ad = r.status != status::temp_fail && ad;
    m.deliver(cb, std::move(r));
  });
}

resolver_stats resolver::stats() const {
  resolver_stats s = _impl->st;
  s.cache_entries = _impl->cache.size();
  return s;
}

std::vector<std::string> resolver::servers() const {
  std::vector<std::string> out;
  for (const server* s : _impl->servers) out.push_back(s->text);
  return out;
}

void resolver::clear_cache() { _impl->cache.clear(); }

// ---- configuration helpers ----------------------------------------------------------

std::vector<std::string> servers_from_resolv_conf(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (auto c = line.find_first_of("#;"); c != std::string::npos) line.resize(c);
    size_t p = line.find_first_not_of(" \t");
    if (p == std::string::npos || line.compare(p, 10, "nameserver") != 0) continue;
    p += 10;
    if (p >= line.size() || (line[p] != ' ' && line[p] != '\t')) continue;
    p = line.find_first_not_of(" \t", p);
    if (p == std::string::npos) continue;
    size_t e = line.find_first_of(" \t\r", p);
    std::string addr = line.substr(p, e == std::string::npos ? std::string::npos : e - p);
    std::string text = addr.find(':') != std::string::npos ? "[" + addr + "]:53" : addr + ":53";
    if (parse_server(text)) out.push_back(text);
  }
  return out;
}

sr::result<sockaddr_storage> parse_server(std::string_view text) {
  std::string host, port = "53";
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return sr::error{"missing ']'"};
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return sr::error{"expected ':port' after ']'"};
      port = rest.substr(1);
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    size_t colon = text.find(':');
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  } else {
    host = text;  // "ip" or a bare IPv6 address
  }
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit) ||
      std::stoul(port) == 0 || std::stoul(port) > 65535)
    return sr::error{"bad port '" + port + "'"};
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (host.empty() || getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res)
    return sr::error{"not an IP address: '" + host + "'"};
  sockaddr_storage ss{};
  memcpy(&ss, res->ai_addr, std::min<size_t>(res->ai_addrlen, sizeof ss));
  freeaddrinfo(res);
  return ss;
}

}  // namespace sr::dns
