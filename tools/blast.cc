// sealrelay-blast: SMTP load generator on the relay's own engine (io_uring shards,
// provided buffers, wolfSSL over memory). N connections, each sending M messages of
// a given size (optionally over STARTTLS or implicit TLS, optionally pipelined);
// prints msgs/s and DATA-end -> 250 latency percentiles. --hold keeps sessions open
// and idle (after STARTTLS and EHLO) for memory measurements. Loops are bounded by
// count and by --time-limit. Each message starts with `X-Blast-Ts: <CLOCK_MONOTONIC ns>`
// (sent as its own small piece before the shared body) so sealrelay-sink --latency
// can measure send -> delivered through a relay on the same machine.
// --resume offers each new TLS connection the session ticket of the previous one (as an
// MTA's session cache does); --barrier holds every session after its handshake until all
// are up, so N sessions are really concurrent before the first message; --sources K binds
// connections over 127.0.0.1 .. 127.0.0.K so many connections do not run out of ports.
// SIGINT ends the run as the time limit does (sessions QUIT) and the result is printed: a
// script can stop a background stream exactly when its own phase ends (SIGTERM still kills).
// --log-accepted FILE writes one line per message that got its 250, `<X-Blast-Ts> <first
// recipient> <queue id>`, so a fault drill can check each acknowledged message arrived
// (sealrelay-sink --latency-dump writes the same X-Blast-Ts and recipient per arrival);
// FILE.refused gets `<code> <text>` per message refused after its data.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/net/buffer_ring.hh"
#include "sealrelay/tls/stream.hh"
#include "sealrelay/smtp/reply.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/session.hh"
#include "sealrelay/tls/session_cache.hh"
#include "sealrelay/util/cidr.hh"
#include "sealrelay/util/duration.hh"
#include "sealrelay/util/log.hh"

namespace {

std::atomic<bool> g_stop_signal{false};  // SIGINT: wind down and report
extern "C" void on_stop_signal(int) { g_stop_signal.store(true); }

struct options {
  std::string server = "127.0.0.1:2525";
  std::string server_ip;         // the address part of server (session cache key)
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  unsigned connections = 10;
  unsigned messages = 100;       // per connection
  size_t size = 10 * 1024;
  unsigned rcpts = 1;
  bool starttls = false;
  bool implicit_tls = false;
  bool pipelining = false;
  bool declare_size = false;     // MAIL FROM:<...> SIZE=<bytes> (RFC 1870), as Postfix sends it
  std::string from = "blast@sender.test";
  std::string to_domain = "rcpt.test";
  unsigned domains = 0;          // > 0: recipients spread over d0.test .. d<K-1>.test
  bool spread_domains = false;   // domains in run order (every domain once before any twice)
  std::string ehlo = "blast.test";
  unsigned shards = 1;
  double time_limit_s = 300;
  double hold_s = -1;            // >= 0: hold idle sessions this long, send nothing
  unsigned max_connecting = 256; // connects in flight per shard
  double rate = 0;               // messages/s across all shards; 0 = as fast as possible
  bool json = false;
  bool quiet = false;
  bool resume = false;           // offer the previous connection's TLS session
  bool barrier = false;          // start messages only when every session is up
  unsigned sources = 1;          // source addresses 127.0.0.1 .. 127.0.0.<sources>
  std::string log_accepted;      // non-empty: write each acknowledged message's key here
};

struct totals {
  std::atomic<uint64_t> sent{0}, failed{0}, sessions_ok{0}, sessions_failed{0}, established{0};
  std::atomic<uint64_t> last_250_ns{0};  // when the most recent message was accepted
  std::atomic<uint64_t> handshakes{0}, resumed{0};  // TLS handshakes done, of which resumed
  std::atomic<uint64_t> peak_live{0};    // most sessions up at the barrier's release
  std::atomic<bool> go{false};           // --barrier: released
};

std::string build_message(const options& o) {
  std::string m;
  m += "From: <" + o.from + ">\r\nTo: <user@" + o.to_domain + ">\r\n";
  m += "Subject: sealrelay-blast test message\r\nMessage-ID: <blast@sealrelay.test>\r\n";
  m += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
  static const char line[] =
      "The quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ.";
  while (m.size() + 2 < o.size) {
    size_t n = std::min(sizeof line - 1, o.size - m.size() - 2);
    m.append(line, n);
    m += "\r\n";
  }
  m += ".\r\n";  // the message ends with CRLF, then the final dot line
  return m;
}

class blast_shard;

class client final : public sr::tls::stream {
 public:
  client(blast_shard& bs, int fd, unsigned id);
  // Start reading the greeting (after the TLS handshake with --tls).
  void begin();
  // Send the next transaction now that the rate limiter allows it.
  void resume_txn();
  // End a held (or any idle) session with QUIT.
  void release_hold() {
    if (_phase == phase::hold) {
      finish_ok();
      flush();
    }
  }
  bool finished() const { return _finished; }
  // --barrier: every session is up (or the wait ended): start sending.
  void release_barrier();

 private:
  enum class phase : uint8_t { greeting, ehlo, starttls, handshake, ehlo2, barrier, txn, body, hold, quit, done };
  void on_plain(sr::net::chunk* c, size_t len) override;
  void on_tls_ready() override;
  void on_tls_failed() override;
  void on_end(int) override;
  void on_closed() override;
  void send_line(std::string_view s) { send(s); }
  // Send the shared body from _body_off in pieces, at most body_window unsent at a time
  // (a 40 MB message to 100 connections would otherwise be copied and encrypted whole
  // into each connection's output: gigabytes in blast, not the load we measure).
  void pump_body();
  void on_drained() override { pump_body(); }
  bool begin_tls();
  void handle(std::string_view bytes);
  void on_reply(const sr::smtp::reply& r);
  void start_txn();
  void send_txn();
  void fail_session(const char* why);
  void finish_ok();
  // --log-accepted: remember `<ts> <first rcpt> <queue id>` of the message just acknowledged.
  void log_accepted(const sr::smtp::reply& r);

  blast_shard& _bs;
  unsigned _id;
  phase _phase = phase::greeting;
  sr::smtp::reply_parser _parser;
  bool _server_pipelining = false;
  unsigned _sent = 0;
  unsigned _expect = 0;      // replies outstanding in the current transaction
  std::vector<std::string> _cmds;  // MAIL, RCPT..., DATA of the current transaction
  size_t _next_cmd = 0;
  bool _txn_failed = false;
  uint64_t _t_dot_ns = 0;
  bool _finished = false;
  size_t _body_off = SIZE_MAX;  // next byte of the body to send; SIZE_MAX: none pending
};

constexpr size_t body_window = 256 * 1024;

uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

class blast_shard {
 public:
  blast_shard(const options& o, totals& t, const std::string& msg, unsigned index, unsigned conns)
      : opt(o), tot(t), message(msg), _index(index), _conns(conns) {}
  unsigned index() const { return _index; }

  void run() {
    run_loop();
    exited = true;
  }

  void run_loop() {
    sr::core::shard::options so;
    so.index = _index;
    so.tick_ms = opt.rate > 0 ? 1 : 20;  // pace offered load smoothly, not in bursts
    shard = std::make_unique<sr::core::shard>(so);
    if (!shard->init()) {
      tot.sessions_failed += _conns;
      return;
    }
    pool = std::make_unique<sr::net::chunk_pool>(16 * 1024, 512);
    ring = std::make_unique<sr::net::buffer_ring>(*pool, 256, 1);
    if (ring->register_with(shard->ring()) < 0) {
      std::fprintf(stderr, "blast: cannot register buffers\n");
      tot.sessions_failed += _conns;
      return;
    }
    if (opt.starttls || opt.implicit_tls) {
      auto ctx = sr::tls::context::client("", sr::tls::tls_version::v1_2);
      if (!ctx) {
        std::fprintf(stderr, "blast: %s\n", ctx.err().c_str());
        return;
      }
      tls_ctx = std::make_unique<sr::tls::context>(std::move(ctx.value()));
      // One entry: the session of the connection that finished its handshake last.
      if (opt.resume) tls_cache = std::make_unique<sr::tls::session_cache>(1);
    }
    latencies_us.reserve(size_t(_conns) * opt.messages);
    _deadline_ms = shard->now_ms() + uint64_t(opt.time_limit_s * 1000);
    shard->on_tick([this] { tick(); });
    tick();
    shard->run();
  }

  // Rate limiting: a client asks for a token before each transaction; without one
  // it waits in _waiting until the tick adds tokens.
  bool take_token(client* c) {
    if (opt.rate <= 0) return true;
    if (_tokens >= 1) {
      _tokens -= 1;
      return true;
    }
    _waiting.push_back(c);
    return false;
  }
  void connection_done() {
    ++_done;
    --_live;
  }
  void connected() { --_connecting; }

  const options& opt;
  totals& tot;
  const std::string& message;
  std::unique_ptr<sr::core::shard> shard;
  std::unique_ptr<sr::net::chunk_pool> pool;
  std::unique_ptr<sr::net::buffer_ring> ring;
  std::unique_ptr<sr::tls::context> tls_ctx;
  std::unique_ptr<sr::tls::session_cache> tls_cache;
  std::vector<uint32_t> latencies_us;
  std::vector<std::string> accepted;   // --log-accepted lines, written by this shard only
  std::vector<std::string> refused;    // and the final-dot refusals ("452 4.3.1 ...")
  std::atomic<bool> stopping{false};   // time limit or main thread: wind down
  std::atomic<bool> exited{false};

 private:
  struct connect_op final : sr::core::completion {
    blast_shard* bs;
    client* c;
    int fd;
    void on_complete(int res, unsigned) override {
      bs->connected();
      if (res < 0) {
        bs->tot.sessions_failed++;
        ::close(fd);
        bs->connection_done();
        delete c;
      } else {
        c->begin();
      }
      delete this;
    }
  };

  void tick() {
    ring->refill();
    uint64_t now = shard->now_ms();
    if (opt.rate > 0) {
      double per_ms = opt.rate / double(opt.shards) / 1000.0;
      if (_last_tick_ms) _tokens = std::min(_tokens + per_ms * double(now - _last_tick_ms), per_ms * 100 + 1);
      _last_tick_ms = now;
      while (_tokens >= 1 && _wait_head < _waiting.size()) {
        client* c = _waiting[_wait_head++];
        if (!c) continue;
        _tokens -= 1;
        c->resume_txn();
      }
      if (_wait_head == _waiting.size()) {
        _waiting.clear();
        _wait_head = 0;
      }
    }
    if (now >= _deadline_ms && !stopping) {
      stopping = true;
      std::fprintf(stderr, "\nblast: time limit reached, stopping\n");
    }
    if (stopping && !_released) {
      _released = true;
      for (auto* c : _all) c->release_hold();
    }
    if (opt.barrier && !_barrier_done && (tot.go || stopping)) {
      _barrier_done = true;
      for (size_t i = 0; i < _all.size(); ++i) _all[i]->release_barrier();
    }
    // --resume: the first connection gets its ticket before the others start, so every
    // later one has a session to offer (an MTA's cache is warm after its first contact).
    bool primed = !tls_cache || tls_cache->size() > 0 || _done > 0;
    while (!stopping && _started < _conns && _connecting < opt.max_connecting &&
           (primed || _started == 0))
      start_one();
    if (_done == _conns || (stopping && _live == 0)) shard->stop();
    if (stopping && !_killed && now >= _deadline_ms + 5000) {
      _killed = true;  // sessions that did not end within 5 s of the limit
      for (auto* c : _all)
        if (!c->finished()) c->close(true);
    }
  }

  void start_one() {
    int fd = ::socket(opt.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      std::fprintf(stderr, "blast: socket: %s\n", strerror(errno));
      stopping = true;
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.sources > 1 && opt.addr.ss_family == AF_INET) {
      // Source 127.0.0.(1 + n % K), port picked at connect (no bind-time port reservation).
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      sockaddr_in src{};
      src.sin_family = AF_INET;
      src.sin_addr.s_addr = htonl(0x7f000001u + (_started * opt.shards + _index) % opt.sources);
      if (::bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) < 0) {
        std::fprintf(stderr, "blast: bind: %s\n", strerror(errno));
        ::close(fd);
        stopping = true;
        return;
      }
    }
    auto* c = new client(*this, fd, _started);
    _all.push_back(c);
    ++_started;
    ++_connecting;
    ++_live;
    auto* op = new connect_op;
    op->bs = this;
    op->c = c;
    op->fd = fd;
    io_uring_prep_connect(shard->sqe(op), fd, reinterpret_cast<const sockaddr*>(&opt.addr), opt.addr_len);
  }

  unsigned _index, _conns;
  unsigned _started = 0, _connecting = 0, _live = 0, _done = 0;
  uint64_t _deadline_ms = 0;
  bool _killed = false;
  bool _released = false;
  bool _barrier_done = false;
  std::vector<client*> _all;
  double _tokens = 1;
  uint64_t _last_tick_ms = 0;
  std::vector<client*> _waiting;
  size_t _wait_head = 0;
 public:
  void forget(client* c) {
    for (size_t i = _wait_head; i < _waiting.size(); ++i)
      if (_waiting[i] == c) _waiting[i] = nullptr;
    auto it = std::find(_all.begin(), _all.end(), c);
    if (it != _all.end()) {
      *it = _all.back();
      _all.pop_back();
    }
  }
};

client::client(blast_shard& bs, int fd, unsigned id)
    : sr::tls::stream(*bs.shard, *bs.ring, *bs.pool, fd), _bs(bs), _id(id) {}

void client::release_barrier() {
  if (_phase != phase::barrier || closing() || _finished) return;
  if (_bs.opt.messages == 0) {
    finish_ok();
  } else {
    start_txn();
  }
  flush();
}

void client::begin() {
  if (_bs.opt.implicit_tls && !begin_tls()) return;
  start_recv();
}

// Put a client TLS session on the stream; its ClientHello goes out now.
bool client::begin_tls() {
  // With --resume the cache key is the server's address (an IP: no SNI, no name check
  // that matters here; blast trusts no CA anyway).
  auto s = _bs.tls_cache ? sr::tls::session::connect(*_bs.tls_ctx, _bs.opt.server_ip, _bs.tls_cache.get())
                         : sr::tls::session::connect(*_bs.tls_ctx, "");
  if (!s) {
    fail_session("tls session");
    return false;
  }
  _phase = phase::handshake;
  if (!start_tls(std::move(s.value()))) {
    fail_session(tls()->failure_reason());
    return false;
  }
  return true;
}

void client::pump_body() {
  const std::string& m = _bs.message;
  while (_body_off < m.size() && unsent() < body_window && !closing()) {
    size_t n = std::min(body_window, m.size() - _body_off);
    send(std::string_view(m).substr(_body_off, n));
    _body_off += n;
    flush();
  }
  if (_body_off >= m.size()) _body_off = SIZE_MAX;
}

void client::on_plain(sr::net::chunk* c, size_t len) {
  handle(std::string_view(reinterpret_cast<const char*>(c->data), len));
  _pool.release(c);
}

void client::on_tls_ready() {
  _bs.tot.handshakes++;
  if (tls()->resumed()) _bs.tot.resumed++;
  if (_bs.opt.implicit_tls) {
    _phase = phase::greeting;
  } else {
    _phase = phase::ehlo2;
    send_line("EHLO " + _bs.opt.ehlo + "\r\n");
  }
}

void client::on_tls_failed() { fail_session(tls()->failure_reason()); }

void client::handle(std::string_view bytes) {
  while (!bytes.empty() && !closing()) {
    size_t used = 0;
    auto st = _parser.feed(bytes, used);
    bytes.remove_prefix(used);
    if (st == sr::smtp::reply_parser::status::error) return fail_session("bad reply");
    if (st == sr::smtp::reply_parser::status::need_more) return;
    on_reply(_parser.get());
    _parser.next();
  }
}

void client::resume_txn() {
  if (closing() || _finished) return;
  send_txn();
  flush();
}

void client::start_txn() {
  if (!_bs.take_token(this)) return;
  send_txn();
}

void client::send_txn() {
  const auto& o = _bs.opt;
  _txn_failed = false;
  _cmds.clear();
  _cmds.push_back("MAIL FROM:<" + o.from + ">" +
                  (o.declare_size ? " SIZE=" + std::to_string(_bs.message.size()) : std::string()) + "\r\n");
  for (unsigned r = 0; r < o.rcpts; ++r) {
    // Consecutive messages of one connection rotate through the domains, so every
    // domain sees load from every connection (a relay queues per domain).
    // --spread-domains: connection k takes the k-th block of messages * rcpts domains,
    // so a run of C x M messages reaches min(K, C x M x R) distinct domains.
    char rcpt[320];
    uint64_t seq = o.spread_domains
                       ? (uint64_t(_id) * o.shards + _bs.index()) * o.messages * o.rcpts + uint64_t(_sent) * o.rcpts + r
                       : uint64_t(_id) + uint64_t(_sent) * o.rcpts + r;
    int n = o.domains ? std::snprintf(rcpt, sizeof rcpt, "RCPT TO:<u%ur%u@d%u.test>\r\n", _id, r,
                                      unsigned(seq % o.domains))
                      : std::snprintf(rcpt, sizeof rcpt, "RCPT TO:<u%ur%u@%s>\r\n", _id, r, o.to_domain.c_str());
    _cmds.emplace_back(rcpt, size_t(std::min(n, int(sizeof rcpt) - 1)));
  }
  _cmds.push_back("DATA\r\n");
  _expect = o.rcpts + 2;
  _phase = phase::txn;
  if (o.pipelining && _server_pipelining) {
    // One write for the whole group (RFC 2920); replies come back in order.
    std::string all;
    for (auto& c : _cmds) all += c;
    send_line(all);
    _next_cmd = _cmds.size();
  } else {
    send_line(_cmds[0]);
    _next_cmd = 1;
  }
}

void client::on_reply(const sr::smtp::reply& r) {
  const auto& o = _bs.opt;
  switch (_phase) {
    case phase::greeting:
      if (r.code() != 220) return fail_session("greeting");
      send_line("EHLO " + o.ehlo + "\r\n");
      _phase = phase::ehlo;
      return;
    case phase::ehlo:
    case phase::ehlo2: {
      if (r.code() != 250) return fail_session("EHLO refused");
      for (size_t i = 0; i < r.line_count(); ++i)
        if (r.line(i).substr(0, 10) == "PIPELINING") _server_pipelining = true;
      if (_phase == phase::ehlo && o.starttls) {
        send_line("STARTTLS\r\n");
        _phase = phase::starttls;
        return;
      }
      _bs.tot.established++;
      if (o.hold_s >= 0) {
        _phase = phase::hold;
        return;
      }
      if (o.barrier && !_bs.tot.go) {
        _phase = phase::barrier;
        return;
      }
      if (o.messages == 0) return finish_ok();
      start_txn();
      return;
    }
    case phase::starttls: {
      if (r.code() != 220) return fail_session("STARTTLS refused");
      begin_tls();
      return;
    }
    case phase::txn:
      if (r.code() >= 400) _txn_failed = true;
      if (--_expect > 0) {
        if (_next_cmd < _cmds.size()) send_line(_cmds[_next_cmd++]);
        return;
      }
      if (r.code() != 354 || _txn_failed) {
        _bs.tot.failed++;
        if (r.code() == 354) {
          send_line(".\r\n");  // end the unwanted DATA without content
          _phase = phase::body;
          _txn_failed = true;
          return;
        }
        send_line("RSET\r\n");
        _expect = 0;
        return finish_ok();
      }
      _t_dot_ns = mono_ns();
      {
        // The per-message timestamp goes out as its own piece; the body is the
        // shared prebuilt message.
        char ts[48];
        int n = std::snprintf(ts, sizeof ts, "X-Blast-Ts: %" PRIu64 "\r\n", _t_dot_ns);
        send_line(std::string_view(ts, size_t(n)));
      }
      _body_off = 0;
      _phase = phase::body;
      pump_body();
      return;
    case phase::body:
      if (!_txn_failed) {
        if (r.code() == 250) {
          uint64_t now = mono_ns();
          _bs.tot.sent++;
          _bs.tot.last_250_ns.store(now, std::memory_order_relaxed);
          _bs.latencies_us.push_back(uint32_t((now - _t_dot_ns) / 1000));
          if (!o.log_accepted.empty()) log_accepted(r);
        } else {
          _bs.tot.failed++;
          if (!o.log_accepted.empty() && r.line_count())
            _bs.refused.push_back(std::to_string(r.code()) + " " + std::string(r.line(0)));
        }
      }
      if (++_sent < o.messages && !_bs.stopping) {
        start_txn();
      } else {
        finish_ok();
      }
      return;
    case phase::quit:
      _phase = phase::done;
      close();
      return;
    default:
      return;
  }
}

void client::log_accepted(const sr::smtp::reply& r) {
  // _cmds[1] is "RCPT TO:<addr>\r\n"; the queue id follows "queued as " when the server says.
  std::string_view rc = _cmds.size() > 1 ? std::string_view(_cmds[1]) : std::string_view();
  size_t lt = rc.find('<'), gt = rc.rfind('>');
  rc = lt != rc.npos && gt != rc.npos && gt > lt ? rc.substr(lt + 1, gt - lt - 1) : std::string_view("-");
  std::string_view last = r.line_count() ? r.line(r.line_count() - 1) : std::string_view();
  size_t at = last.find("queued as ");
  std::string_view qid = at == last.npos ? std::string_view("-") : last.substr(at + 10);
  while (!qid.empty() && (qid.back() == '\r' || qid.back() == '\n' || qid.back() == ' ')) qid.remove_suffix(1);
  size_t sp = qid.find(' ');
  if (sp != qid.npos) qid = qid.substr(0, sp);
  std::string line = std::to_string(_t_dot_ns);
  line.append(" ").append(rc).append(" ").append(qid.empty() ? "-" : qid);
  _bs.accepted.push_back(std::move(line));
}

void client::finish_ok() {
  _bs.tot.sessions_ok++;
  send_line("QUIT\r\n");
  _phase = phase::quit;
  _finished = true;
}

void client::fail_session(const char* why) {
  if (!_finished) {
    _bs.tot.sessions_failed++;
    static std::atomic<int> reported{0};
    if (reported++ < 5) std::fprintf(stderr, "blast: session %u failed: %s\n", _id, why);
  }
  _finished = true;
  close(true);
}

void client::on_end(int) {
  if (!_finished && _phase != phase::done) fail_session("connection closed by server");
  close();
}

void client::on_closed() {
  _bs.connection_done();
  _bs.forget(this);
  delete this;
}

int usage() {
  std::fputs(
      "usage: sealrelay-blast [options]\n"
      "  --server IP:PORT      relay to load (127.0.0.1:2525)\n"
      "  --connections N       concurrent connections (10)\n"
      "  --messages M          messages per connection (100)\n"
      "  --size BYTES          message size (10240)\n"
      "  --rcpts R             recipients per message (1)\n"
      "  --starttls            STARTTLS before sending\n"
      "  --tls                 implicit TLS (port 465 style)\n"
      "  --pipelining          send MAIL/RCPT/DATA in one write\n"
      "  --declare-size        MAIL FROM with SIZE=<message bytes> (RFC 1870)\n"
      "  --shards S            client threads (1)\n"
      "  --hold SECONDS        open sessions (after STARTTLS+EHLO), hold them idle, then QUIT\n"
      "  --time-limit SECONDS  stop after this long (300)\n"
      "  --rate N              offered load: N messages/s in all (default: as fast as possible)\n"
      "  --from ADDR --to-domain DOMAIN --ehlo NAME\n"
      "  --domains K           spread recipients over d0.test .. d<K-1>.test\n"
      "  --spread-domains      domains in run order: every one of the K once before any twice\n"
      "  --resume              offer each TLS connection the previous one's session ticket\n"
      "  --barrier             send nothing until every session is up (all concurrent)\n"
      "  --sources K           connect from 127.0.0.1 .. 127.0.0.K (many connections)\n"
      "  --max-connecting N    connects in flight per shard (256)\n"
      "  --log-accepted FILE   one line per message that got a 250: X-Blast-Ts, first rcpt, queue id\n"
      "  --json                print the result as one JSON object\n"
      "  --quiet               no progress bar\n",
      stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "blast: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--server") o.server = next();
    else if (a == "--connections") o.connections = unsigned(std::atoi(next()));
    else if (a == "--messages") o.messages = unsigned(std::atoi(next()));
    else if (a == "--size") o.size = size_t(std::atoll(next()));
    else if (a == "--rcpts") o.rcpts = unsigned(std::atoi(next()));
    else if (a == "--starttls") o.starttls = true;
    else if (a == "--tls") o.implicit_tls = true;
    else if (a == "--pipelining") o.pipelining = true;
    else if (a == "--declare-size") o.declare_size = true;
    else if (a == "--shards") o.shards = unsigned(std::max(1, std::atoi(next())));
    else if (a == "--hold") o.hold_s = std::atof(next());
    else if (a == "--time-limit") o.time_limit_s = std::atof(next());
    else if (a == "--rate") o.rate = std::atof(next());
    else if (a == "--from") o.from = next();
    else if (a == "--to-domain") o.to_domain = next();
    else if (a == "--domains") o.domains = unsigned(std::atoi(next()));
    else if (a == "--spread-domains") o.spread_domains = true;
    else if (a == "--ehlo") o.ehlo = next();
    else if (a == "--json") o.json = true;
    else if (a == "--resume") o.resume = true;
    else if (a == "--barrier") o.barrier = true;
    else if (a == "--sources") o.sources = unsigned(std::clamp(std::atoi(next()), 1, 250));
    else if (a == "--max-connecting") o.max_connecting = unsigned(std::max(1, std::atoi(next())));
    else if (a == "--quiet") o.quiet = true;
    else if (a == "--log-accepted") o.log_accepted = next();
    else return usage();
  }
  auto ep = sr::parse_endpoint(o.server, &o.addr_len);
  if (!ep) {
    std::fprintf(stderr, "blast: bad --server '%s' (want IP:PORT)\n", o.server.c_str());
    return 2;
  }
  o.addr = *ep;
  o.server_ip = o.server.substr(0, o.server.rfind(':'));
  if (o.connections == 0 || o.rcpts == 0 || o.size < 200) {
    std::fprintf(stderr, "blast: --connections and --rcpts must be > 0, --size >= 200\n");
    return 2;
  }
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_stop_signal);
  sr::set_log_level(sr::log_level::warn);

  const std::string message = build_message(o);
  totals tot;
  o.shards = std::min(o.shards, o.connections);
  std::vector<std::unique_ptr<blast_shard>> shards;
  for (unsigned s = 0; s < o.shards; ++s) {
    unsigned n = o.connections / o.shards + (s < o.connections % o.shards ? 1 : 0);
    shards.push_back(std::make_unique<blast_shard>(o, tot, message, s, n));
  }
  uint64_t t0 = mono_ns();
  std::vector<std::thread> threads;
  for (auto& s : shards) threads.emplace_back([&s] { s->run(); });

  bool tty = isatty(2) && !o.quiet && !o.json;
  uint64_t total_msgs = uint64_t(o.connections) * o.messages;
  bool hold_announced = false;
  uint64_t hold_until = 0;
  unsigned polls = 0;
  uint64_t barrier_seen = 0, barrier_since = mono_ns();
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    uint64_t sent = tot.sent, failed = tot.failed;
    if (g_stop_signal.load())
      for (auto& s : shards) s->stopping = true;
    if (o.hold_s >= 0) {
      uint64_t est = tot.established;
      if (!hold_announced && est + tot.sessions_failed >= o.connections) {
        hold_announced = true;
        std::printf("established %" PRIu64 " sessions (%" PRIu64 " failed); holding %.0fs\n", est,
                    uint64_t(tot.sessions_failed), o.hold_s);
        std::fflush(stdout);
        hold_until = mono_ns() + uint64_t(o.hold_s * 1e9);
      }
      if (hold_announced && mono_ns() >= hold_until)
        for (auto& s : shards) s->stopping = true;
    }
    if (o.barrier && !tot.go) {
      // Release when every session is up or failed, or when none came up for 3 s (a relay
      // that caps its sessions: the rest wait in its listen backlog).
      uint64_t up = tot.established + tot.sessions_failed;
      if (up != barrier_seen) {
        barrier_seen = up;
        barrier_since = mono_ns();
      }
      if (up >= o.connections || (up > 0 && mono_ns() - barrier_since > 3'000'000'000ull)) {
        tot.peak_live = uint64_t(tot.established);
        tot.go = true;
        if (!o.json && !o.quiet)
          std::printf("barrier: %" PRIu64 " sessions up, sending\n", uint64_t(tot.established));
      }
    }
    if (tty && ++polls % 10 == 0) {  // redraw every 200 ms
      double pct = total_msgs ? 100.0 * double(sent + failed) / double(total_msgs) : 0;
      int bar = int(pct / 2.5);
      double el = double(mono_ns() - t0) / 1e9;
      std::fprintf(stderr, "\r[%-40.*s] %5.1f%% %8" PRIu64 " sent %6" PRIu64 " failed %7.0f msg/s",
                   bar, "########################################", pct, sent, failed,
                   el > 0 ? double(sent) / el : 0.0);
    }
    bool all_exited = true;
    for (auto& s : shards) all_exited &= s->exited.load();
    if (all_exited) break;
  }
  for (auto& t : threads) t.join();
  // The rate counts from the first connect to the last accepted message, so the
  // poll interval and the QUITs do not dilute it.
  uint64_t t_end = tot.last_250_ns.load();
  double elapsed = double((t_end > t0 ? t_end : mono_ns()) - t0) / 1e9;
  if (tty) std::fputc('\n', stderr);

  if (!o.log_accepted.empty()) {
    FILE* f = std::fopen(o.log_accepted.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "blast: cannot write %s: %s\n", o.log_accepted.c_str(), std::strerror(errno));
      return 1;
    }
    for (auto& s : shards)
      for (const auto& l : s->accepted) std::fprintf(f, "%s\n", l.c_str());
    FILE* g = std::fopen((o.log_accepted + ".refused").c_str(), "w");
    if (g) {
      for (auto& s : shards)
        for (const auto& l : s->refused) std::fprintf(g, "%s\n", l.c_str());
    }
    if (std::fclose(f) != 0 || !g || std::fclose(g) != 0) {
      std::fprintf(stderr, "blast: cannot write %s: %s\n", o.log_accepted.c_str(), std::strerror(errno));
      return 1;
    }
  }
  std::vector<uint32_t> lat;
  for (auto& s : shards) lat.insert(lat.end(), s->latencies_us.begin(), s->latencies_us.end());
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) -> double {
    if (lat.empty()) return 0;
    size_t i = std::min(lat.size() - 1, size_t(p / 100.0 * double(lat.size())));
    return lat[i] / 1000.0;
  };
  uint64_t sent = tot.sent;
  double rate = elapsed > 0 ? double(sent) / elapsed : 0;
  if (o.json) {
    std::printf(
        "{\"sent\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"sessions_failed\":%" PRIu64
        ",\"seconds\":%.3f,\"msgs_per_s\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
        "\"p999_ms\":%.3f,\"max_ms\":%.3f,\"t0_ns\":%" PRIu64 ",\"last_250_ns\":%" PRIu64
        ",\"handshakes\":%" PRIu64 ",\"resumed\":%" PRIu64 ",\"concurrent\":%" PRIu64 "}\n",
        sent, uint64_t(tot.failed), uint64_t(tot.sessions_failed), elapsed, rate, pct(50), pct(90),
        pct(99), pct(99.9), lat.empty() ? 0.0 : lat.back() / 1000.0, t0, t_end,
        uint64_t(tot.handshakes), uint64_t(tot.resumed), uint64_t(tot.peak_live));
  } else {
    std::printf("sent %" PRIu64 " messages (%" PRIu64 " failed, %" PRIu64
                " sessions failed) in %.2fs: %.0f msgs/s\n",
                sent, uint64_t(tot.failed), uint64_t(tot.sessions_failed), elapsed, rate);
    std::printf("TLS handshakes %" PRIu64 ", resumed %" PRIu64 "\n", uint64_t(tot.handshakes),
                uint64_t(tot.resumed));
    std::printf("DATA-end -> 250 latency: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n",
                pct(50), pct(90), pct(99), pct(99.9), lat.empty() ? 0.0 : lat.back() / 1000.0);
  }
  return (tot.failed || tot.sessions_failed) ? 1 : 0;
}
