// Input path: chunk -> (tls::stream decrypts) -> _in -> http::request_parser. While a
// message is being stored, input waits in _in (reading pauses past a bound) and is parsed
// after the answer, so pipelined requests are answered in order. An answer that ends the
// connection is followed by lingering: the write side is shut and input dropped until the
// client closes (or a second passes), so an unread request body never turns our answer
// into a reset the client would see instead of it.
#include "connection.hh"

#include <sys/socket.h>

#include <ctime>

#include "sealrelay/api/response.hh"
#include "sealrelay/inject/compose.hh"
#include "sealrelay/inject/server.hh"
#include "sealrelay/tls/session.hh"
#include "sealrelay/util/log.hh"
#include "sealrelay/util/text.hh"

namespace sr::inject {
namespace {
// Pipelined input kept while a message is stored; past it, reading pauses until the answer.
constexpr std::size_t max_buffered_while_storing = 256 * 1024;
// How long a closing answer waits for the client's FIN before the socket is closed anyway.
constexpr uint64_t linger_ms = 1000;
// How long a graceful close may wait for a client that does not read our last answer.
constexpr uint64_t closing_grace_ms = 5000;

http::limits parser_limits(const options& o) {
  http::limits l;
  l.max_body = api::max_body_bytes(o.limits);
  return l;
}

std::string http_error_text(http::error e, std::size_t max_body) {
  if (e == http::error::body_too_large)
    return "the request body is larger than " + std::to_string(max_body) + " bytes";
  return std::string("malformed HTTP request (") + http::to_string(e) + ")";
}
}  // namespace

connection::connection(shard_server& srv, int fd, std::string peer_ip, unsigned ip_slot)
    : tls::stream(srv.shard(), srv.buffers(), srv.pool(), fd),
      _srv(srv),
      _peer_ip(std::move(peer_ip)),
      _ip_slot(ip_slot),
      _req(std::make_unique<http::request_parser>(parser_limits(srv.opt()))) {}

connection::~connection() = default;

void connection::start() {
  _last_activity_ms = _shard.now_ms();
  if (_srv.opt().tls) {
    auto s = tls::session::accept(*_srv.tls_context());
    if (!s) {
      SR_ERROR("http: %s: cannot create a TLS session: %s", _peer_ip.c_str(), s.err().c_str());
      stream::close(true);
      return;
    }
    _phase_started_ms = _shard.now_ms();
    if (!start_tls(std::move(s.value()))) {
      stream::close();
      return;
    }
  }
  start_recv();
}

void connection::refuse(uint16_t code, std::string_view error) {
  // Answered at the first request's head (after the TLS handshake on HTTPS): a client
  // hears why instead of seeing a reset.
  _refusal = api::api_error{code, std::string(error), ""};
  start();
}

void connection::on_plain(net::chunk* c, size_t len) {
  _last_activity_ms = _shard.now_ms();
  if (_state == state::lingering || closing()) {
    _pool.release(c);
    return;
  }
  if (_request_started_ms == 0 && _in_off == _in.size()) _request_started_ms = _shard.now_ms();
  _in.append(reinterpret_cast<const char*>(c->data), len);
  _pool.release(c);
  if (_state == state::storing) {
    if (_in.size() - _in_off > max_buffered_while_storing && !recv_paused()) pause_recv();
    return;
  }
  pump();
}

void connection::on_tls_ready() { _last_activity_ms = _shard.now_ms(); }

void connection::on_tls_failed() {
  SR_INFO("http: %s: TLS handshake failed: %s (wolfSSL %d)", _peer_ip.c_str(), tls()->failure_reason(),
          tls()->error_code());
  stream::close();  // sends the alert wolfSSL queued
}

void connection::on_end(int err) {
  // A client that half-closes after its requests (EOF or close_notify) still gets the
  // answers of the message being stored and of the requests pipelined behind it; a recv
  // error or a bad record ends the connection now (a store in flight keeps the object
  // alive through hold(), and its answer is dropped).
  if (_state == state::storing && (err == 0 || err == tls::session::closed)) {
    _peer_done = true;
    return;
  }
  stream::close();
}

void connection::on_closed() { _srv.on_connection_closed(this); }

void connection::on_drained() {
  if (!_close_after || _state == state::lingering) return;
  if (_peer_done) {
    stream::close();  // nothing more will come: no need to linger
    return;
  }
  _state = state::lingering;
  _phase_started_ms = _shard.now_ms();
  _in.clear();
  _in_off = 0;
  ::shutdown(fd(), SHUT_WR);
  if (recv_paused()) resume_recv();
}

void connection::pump() {
  while (_state == state::reading && !_close_after && !closing()) {
    std::string_view avail(_in.data() + _in_off, _in.size() - _in_off);
    if (!avail.empty()) _in_off += _req->feed(avail);
    http::parse_status st = _req->status();
    if (st == http::parse_status::failed) {
      http::error e = _req->err();
      respond_error({uint16_t(http::status_for(e)), http_error_text(e, api::max_body_bytes(_srv.opt().limits)), ""},
                    true);
      return;
    }
    if (!_head_checked && _req->head_done()) {
      _head_checked = true;
      if (!check_head()) return;
    }
    if (st == http::parse_status::done) {
      handle_request();
      continue;
    }
    if (_in_off == _in.size()) {
      _in.clear();
      _in_off = 0;
    }
    // The client half-closed while a message was stored: once its pipelined requests are
    // answered, nothing more can come (the answers queued still go out: a graceful close).
    if (_peer_done) stream::close();
    return;
  }
}

bool connection::check_head() {
  if (_refusal) {
    respond_error(*_refusal, true);
    return false;
  }
  if (_req->path() != "/api/v1/messages") {
    respond_error({404, "no such resource; POST /api/v1/messages", ""}, true);
    return false;
  }
  if (_req->method() != "POST") {
    respond_error({405, "use POST", ""}, true, false, true);
    return false;
  }
  const api::token_set* tokens = _srv.tokens();
  if (!tokens) {
    respond_error({503, "no tokens loaded", ""}, true);
    return false;
  }
  api::auth_outcome a = tokens->check(_req->find("Authorization"), &_token_index);
  if (a != api::auth_outcome::ok) {
    SR_INFO("http: %s: %s %s refused: %s token", _peer_ip.c_str(), std::string(_req->method()).c_str(),
            std::string(_req->path()).c_str(), api::to_string(a));
    respond_error(api::auth_error(a), true, api::status_for(a) == 401);
    return false;
  }
  if (auto e = api::check_content_type(_req->find("Content-Type"))) {
    respond_error(*e, true);
    return false;
  }
  // curl asks before sending a body over 1 KiB; answering at once saves it a second's wait.
  if (auto ex = _req->find("Expect"); ex && iequals(*ex, "100-continue") &&
                                      _req->status() == http::parse_status::need_more)
    send("HTTP/1.1 100 Continue\r\n\r\n");
  flush();
  return true;
}

void connection::handle_request() {
  const options& o = _srv.opt();
  bool keep_alive = _req->keep_alive();
  api::parse_result parsed = api::parse_request(_req->body(), o.limits);
  if (!parsed.ok()) {
    respond_error(parsed.err, !keep_alive);
    next_request();
    return;
  }
  _queue_id = _srv.intake().next_queue_id();
  compose_params cp;
  cp.hostname = o.hostname;
  cp.queue_id = _queue_id;
  cp.client_ip = _peer_ip;
  cp.token_index = _token_index;
  cp.tls = tls_on();
  if (tls()) {
    cp.tls_version = tls()->version();
    cp.cipher = tls()->cipher();
    cp.cipher_bits = unsigned(tls()->cipher_bits());
  }
  cp.now = std::time(nullptr);
  compose_result c = compose(*parsed.request, cp, o.limits);
  if (!c.ok()) {
    respond_error(c.err, !keep_alive);
    next_request();
    return;
  }
  _rcpt_count = c.message->meta.rcpts.size();
  _keep_alive = keep_alive;
  next_request();  // the body's memory goes now, not after the store
  _state = state::storing;
  hold();
  _srv.intake().submit_owned(std::move(c.message->meta), std::move(c.message->text),
                             [this](bool ok) { on_stored(ok); });
}

void connection::on_stored(bool ok) {
  _state = state::reading;
  if (ok) {
    _srv.count_accepted(_rcpt_count);
    SR_INFO("http: %s: %s: queued %s for %zu recipient%s", _peer_ip.c_str(), token_name(_token_index).c_str(),
            _queue_id.c_str(), _rcpt_count, _rcpt_count == 1 ? "" : "s");
  } else {
    SR_WARN("http: %s: %s could not be stored", _peer_ip.c_str(), _queue_id.c_str());
  }
  if (!closing()) {
    if (ok) {
      respond(202, api::accepted_body(std::span<const std::string>(&_queue_id, 1)), !_keep_alive);
    } else {
      respond_error({503, "the message could not be stored; try again later", ""}, true);
    }
    if (recv_paused() && !_peer_done) resume_recv();
    pump();
  }
  unhold();  // may complete a pending close
}

void connection::respond(uint16_t code, std::string_view body, bool close, bool www_authenticate,
                         bool allow_post) {
  if (_srv.draining()) close = true;
  http::header fields[4];
  std::size_t n = 0;
  fields[n++] = {"Content-Type", "application/json"};
  fields[n++] = {"Cache-Control", "no-store"};
  if (www_authenticate) fields[n++] = {"WWW-Authenticate", "Bearer realm=\"sealrelay\""};
  if (allow_post) fields[n++] = {"Allow", "POST"};
  std::string out;
  http::write_response(out, code, std::span<const http::header>(fields, n), body, !close);
  send(out);
  flush();
  _srv.count_response(code);
  _last_activity_ms = _shard.now_ms();
  if (close) _close_after = true;
}

void connection::respond_error(const api::api_error& e, bool close, bool www_authenticate, bool allow_post) {
  respond(e.status, api::error_body(e), close, www_authenticate, allow_post);
}

void connection::next_request() {
  _req->reset();
  _head_checked = false;
  _request_started_ms = _in_off < _in.size() ? _shard.now_ms() : 0;
}

void connection::check_deadline(uint64_t now) {
  const options& o = _srv.opt();
  if (closing()) {
    if (!_closing_since_ms) _closing_since_ms = now;
    else if (now - _closing_since_ms >= closing_grace_ms) stream::close(true);
    return;
  }
  switch (_state) {
    case state::storing:
      return;
    case state::lingering:
      if (now - _phase_started_ms >= linger_ms) stream::close();
      return;
    case state::reading:
      break;
  }
  if (tls_handshaking()) {
    if (now - _phase_started_ms >= o.handshake_timeout_ms) stream::close(true);
    return;
  }
  if (_close_after) {
    // The last answer is queued but the client does not take it.
    if (now - _last_activity_ms >= o.read_timeout_ms) stream::close(true);
    return;
  }
  if (_request_started_ms) {
    if (now - _request_started_ms >= o.read_timeout_ms)
      respond_error({408, "the request took too long to arrive", ""}, true);
  } else if (now - _last_activity_ms >= o.idle_timeout_ms) {
    stream::close();
  }
}

void connection::begin_drain() {
  if (closing() || _close_after) return;
  if (_state == state::reading && _request_started_ms == 0 && !tls_handshaking()) stream::close();
  else if (tls_handshaking()) stream::close(true);
  // Otherwise the request in progress gets its answer, with Connection: close.
}

}  // namespace sr::inject
