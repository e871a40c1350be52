// One fetch = DNS A/AAAA -> TCP connect (each address in turn) -> TLS (SNI = host; the
// verdict must be "verified") -> one request with "Connection: close" -> the response
// parsed by http::response_parser under max_body. A fetch object lives until its own
// operations (DNS callback, connect CQE, connection) are over, which may be after its
// callback ran or after the client is gone; the callback runs at most once, never after
// the client's destructor.
#include "sealrelay/https/client.hh"

#include "sealrelay/util/text.hh"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "sealrelay/dns/resolver.hh"
#include "sealrelay/http/message.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/session.hh"
#include "sealrelay/tls/stream.hh"

namespace sr::https {

const char* to_string(failure f) {
  switch (f) {
    case failure::none: return "none";
    case failure::dns: return "dns";
    case failure::connect: return "connect";
    case failure::tls: return "tls";
    case failure::cert: return "cert";
    case failure::timeout: return "timeout";
    case failure::status: return "status";
    case failure::redirect: return "redirect";
    case failure::content_type: return "content-type";
    case failure::too_large: return "too-large";
    case failure::protocol: return "protocol";
    case failure::local: return "local";
  }
  return "?";
}

namespace {
class fetch_op;
}

// What the client and its fetches share; the shard's tick function keeps it alive after
// the client is gone (alive = false then, and the tick does nothing).
struct client::state {
  core::shard& sh;
  dns::resolver& res;
  net::buffer_ring& br;
  net::chunk_pool& pool;
  const tls::context& ctx;
  bool alive = true;
  std::vector<fetch_op*> live;  // fetches whose callback has not run yet
};

namespace {

using done_fn = std::function<void(const response&)>;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The media type of a Content-Type value, without parameters ("text/plain; charset=x").
std::string_view media_type(std::string_view v) { return trim(v.substr(0, v.find(';'))); }

bool has_ctl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

class conn;

class fetch_op final : public core::completion {
 public:
  fetch_op(std::shared_ptr<client::state> st, request r, done_fn done)
      : _st(std::move(st)), _r(std::move(r)), _done(std::move(done)) {
    _deadline = _st->sh.now_ms() + _r.timeout_ms;
  }

  void start();
  // The connect CQE.
  void on_complete(int res, unsigned) override;
  void check_deadline(uint64_t now);
  // The client is going away: drop the callback and end what is in flight.
  void detach() {
    _done = nullptr;
    _finished = true;
    end_io();
    maybe_delete();
  }
  // Refuse a request that cannot be sent (bad method, host or path): the callback runs
  // from the shard's posted work, never inside client::fetch().
  void reject(std::string detail) {
    ++_pending;
    _st->sh.post([this, d = std::move(detail)] {
      fail(failure::local, d);
      release();
    });
  }
  void resume_recv_if_starved();

  // From the connection.
  void on_tls_ready(const tls::session& s);
  void on_tls_failed(const tls::session& s);
  void on_plain(std::string_view bytes);
  void on_end(int err, bool handshaking);
  void on_conn_closed();

 private:
  void on_addrs(const dns::addr_result& r);
  void try_connect();
  void evaluate();
  void finish(response resp);
  void fail(failure f, std::string detail) {
    response resp;
    resp.fail = f;
    resp.detail = std::move(detail);
    if (_parser && _parser->code() > 0) resp.status = unsigned(_parser->code());
    finish(std::move(resp));
  }
  void end_io();
  void release() {
    --_pending;
    maybe_delete();
  }
  void maybe_delete() {
    if (_finished && _pending == 0) delete this;
  }

  std::shared_ptr<client::state> _st;
  request _r;
  done_fn _done;
  uint64_t _deadline = 0;
  unsigned _pending = 0;  // DNS lookup, connect, connection: each holds the object
  bool _finished = false;
  std::vector<sockaddr_storage> _addrs;
  size_t _next_addr = 0;
  std::string _connect_error;
  int _connect_fd = -1;
  bool _connecting = false;
  conn* _conn = nullptr;
  std::optional<http::response_parser> _parser;
};

// The TLS connection of one fetch; deletes itself once closed.
class conn final : public tls::stream {
 public:
  conn(fetch_op& f, client::state& st, int fd) : tls::stream(st.sh, st.br, st.pool, fd), _f(&f) {}
  // Start reading and send the ClientHello: "" when under way, else why not.
  std::string begin(client::state& st, const std::string& host) {
    auto s = tls::session::connect(st.ctx, host);
    if (!s) return "cannot create a TLS session: " + s.err();
    start_recv();
    if (!start_tls(std::move(s.value()))) return tls()->failure_reason()[0] ? tls()->failure_reason() : "handshake-failed";
    return {};
  }
  using tls::stream::send;

 private:
  void on_plain(net::chunk* c, size_t len) override {
    std::string_view b(reinterpret_cast<const char*>(c->data), len);
    if (_f && !closing()) _f->on_plain(b);
    _pool.release(c);
  }
  void on_tls_ready() override {
    if (_f) _f->on_tls_ready(*tls());
  }
  void on_tls_failed() override {
    if (_f) _f->on_tls_failed(*tls());
  }
  void on_end(int err) override {
    if (_f) _f->on_end(err, tls_handshaking());
    close(true);
  }
  void on_closed() override {
    fetch_op* f = _f;
    delete this;
    if (f) f->on_conn_closed();
  }

  fetch_op* _f;
};

void fetch_op::start() {
  ++_pending;
  _st->res.lookup_addrs(_r.host, [this](const dns::addr_result& r) {
    on_addrs(r);
    release();
  });
}

void fetch_op::on_addrs(const dns::addr_result& r) {
  if (_finished) return;
  if (r.status != dns::status::ok || r.addrs.empty()) {
    fail(failure::dns, std::string(dns::to_string(r.status == dns::status::ok ? dns::status::nodata : r.status)));
    return;
  }
  _addrs = r.addrs;
  try_connect();
}

void fetch_op::try_connect() {
  while (_next_addr < _addrs.size()) {
    sockaddr_storage& a = _addrs[_next_addr++];
    socklen_t len = sizeof(sockaddr_in6);
    if (a.ss_family == AF_INET) {
      reinterpret_cast<sockaddr_in&>(a).sin_port = htons(_r.port);
      len = sizeof(sockaddr_in);
    } else {
      reinterpret_cast<sockaddr_in6&>(a).sin6_port = htons(_r.port);
    }
    int fd = ::socket(a.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      _connect_error = strerror(errno);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    _connect_fd = fd;
    _connecting = true;
    ++_pending;
    io_uring_prep_connect(_st->sh.sqe(this), fd, reinterpret_cast<const sockaddr*>(&a), len);
    return;
  }
  fail(failure::connect, _connect_error.empty() ? "no address" : _connect_error);
}

void fetch_op::on_complete(int res, unsigned) {
  _connecting = false;
  int fd = _connect_fd;
  _connect_fd = -1;
  if (_finished || res < 0) {
    ::close(fd);
    if (!_finished) {
      _connect_error = strerror(-res);
      try_connect();
    }
    release();
    return;
  }
  // The connect's hold passes to the connection.
  _conn = new conn(*this, *_st, fd);
  if (std::string why = _conn->begin(*_st, _r.host); !why.empty())
    fail(_conn->tls() ? failure::tls : failure::local, why);
}

void fetch_op::check_deadline(uint64_t now) {
  if (!_finished && now >= _deadline) fail(failure::timeout, "no complete response within " + std::to_string(_r.timeout_ms) + " ms");
}

void fetch_op::resume_recv_if_starved() {
  if (_conn) _conn->resume_recv_if_starved();
}

void fetch_op::on_tls_ready(const tls::session& s) {
  if (_finished) return;
  if (s.verdict() != tls::cert_verdict::verified) {
    fail(failure::cert, tls::to_string(s.verdict()));
    return;
  }
  if (s.version() != "TLSv1.2" && s.version() != "TLSv1.3") {
    fail(failure::tls, "old-protocol " + std::string(s.version()));
    return;
  }
  http::limits lim;
  lim.max_body = _r.max_body;
  _parser.emplace(lim);
  std::string host = _r.port == 443 ? _r.host : _r.host + ":" + std::to_string(_r.port);
  std::vector<http::header> fields{{"User-Agent", "sealrelay"}};
  if (_r.method == "POST" && !_r.content_type.empty()) fields.push_back({"Content-Type", _r.content_type});
  std::string out;
  http::write_request(out, _r.method, _r.path, host, fields, _r.body, false);
  _conn->send(out);
  _conn->flush();
}

void fetch_op::on_tls_failed(const tls::session& s) {
  if (_finished) return;
  fail(failure::tls, s.failure_reason()[0] ? s.failure_reason() : "handshake-failed");
}

void fetch_op::on_plain(std::string_view bytes) {
  if (_finished || !_parser) return;
  _parser->feed(bytes);
  if (_parser->status() != http::parse_status::need_more) evaluate();
}

void fetch_op::on_end(int err, bool handshaking) {
  if (_finished) return;
  if (handshaking || !_parser) {
    fail(failure::tls, err < 0 ? std::string("handshake: ") + strerror(-err) : "handshake: connection closed");
    return;
  }
  if (_parser->status() == http::parse_status::need_more) _parser->feed_eof();
  if (_parser->status() == http::parse_status::done || _parser->status() == http::parse_status::failed) {
    evaluate();
    return;
  }
  fail(failure::protocol, err < 0 ? strerror(-err) : "connection closed before the response ended");
}

void fetch_op::on_conn_closed() {
  _conn = nullptr;
  if (!_finished) fail(failure::protocol, "connection lost");
  release();
}

// A whole response (or a refused one): apply RFC 8461 §3.3.
void fetch_op::evaluate() {
  const http::response_parser& p = *_parser;
  if (p.status() == http::parse_status::failed) {
    if (p.err() == http::error::body_too_large)
      fail(failure::too_large, "body over " + std::to_string(_r.max_body) + " bytes");
    else
      fail(failure::protocol, http::to_string(p.err()));
    return;
  }
  response resp;
  resp.status = unsigned(p.code());
  if (auto ct = p.find("Content-Type")) resp.content_type = std::string(*ct);
  if (resp.status >= 300 && resp.status < 400) {
    auto loc = p.find("Location");
    fail(failure::redirect, "HTTP " + std::to_string(resp.status) + " to " + std::string(loc ? *loc : "(no Location)"));
    return;
  }
  bool ok = _r.method == "POST" ? resp.status >= 200 && resp.status < 300 : resp.status == 200;
  if (!ok) {
    fail(failure::status, "HTTP " + std::to_string(resp.status));
    return;
  }
  if (_r.method != "POST" && !_r.expect_content_type.empty() &&
      !sr::iequals(media_type(resp.content_type), media_type(_r.expect_content_type))) {
    resp.fail = failure::content_type;
    resp.detail = "Content-Type " + (resp.content_type.empty() ? std::string("(none)") : resp.content_type);
    finish(std::move(resp));
    return;
  }
  resp.body = std::string(p.body());
  finish(std::move(resp));
}

// Stop what is in flight; each operation's end releases its hold on the object.
void fetch_op::end_io() {
  if (_connecting) {
    io_uring_sqe* s = _st->sh.sqe();
    io_uring_prep_cancel(s, this, 0);
    io_uring_sqe_set_data64(s, core::ignore_cqe);
  }
  if (_conn && !_conn->closing()) _conn->close(true);
}

void fetch_op::finish(response resp) {
  if (_finished) return;
  _finished = true;
  auto& live = _st->live;
  if (auto it = std::find(live.begin(), live.end(), this); it != live.end()) live.erase(it);
  end_io();
  // Keep the object across the callback (it may start fetches or destroy the client).
  ++_pending;
  if (_done && _st->alive) {
    done_fn done = std::move(_done);
    _done = nullptr;
    done(resp);
  }
  release();
}

}  // namespace

client::client(core::shard& sh, dns::resolver& res, net::buffer_ring& br, net::chunk_pool& pool,
               const tls::context& ctx)
    : _st(std::make_shared<state>(state{sh, res, br, pool, ctx, true, {}})) {
  std::weak_ptr<state> w = _st;
  sh.on_tick([w] {
    auto st = w.lock();
    if (!st || !st->alive) return;
    uint64_t now = st->sh.now_ms();
    // A copy: a deadline (and its callback) may end other fetches or the client.
    std::vector<fetch_op*> live = st->live;
    for (fetch_op* f : live) {
      if (!st->alive) return;
      if (std::find(st->live.begin(), st->live.end(), f) == st->live.end()) continue;
      f->resume_recv_if_starved();
      f->check_deadline(now);
    }
  });
}

client::~client() {
  _st->alive = false;
  std::vector<fetch_op*> live;
  live.swap(_st->live);
  for (fetch_op* f : live) f->detach();
}

void client::fetch(request r, std::function<void(const response&)> done) {
  std::string bad;
  if (r.method != "GET" && r.method != "POST") bad = "method " + r.method + " not supported";
  else if (r.host.empty() || has_ctl(r.host) || r.host.find_first_of(" /") != std::string::npos) bad = "bad host";
  else if (r.path.empty() || r.path[0] != '/' || has_ctl(r.path) || r.path.find(' ') != std::string::npos) bad = "bad path";
  else if (has_ctl(r.content_type)) bad = "bad content type";
  else if (r.port == 0) bad = "port 0";
  auto* f = new fetch_op(_st, std::move(r), std::move(done));
  _st->live.push_back(f);
  if (!bad.empty()) f->reject(bad);
  else f->start();
}

size_t client::in_flight() const { return _st->live.size(); }

}  // namespace sr::https
