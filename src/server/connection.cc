// Input path: chunk -> (tls::stream decrypts into a pool chunk) -> _in -> session.feed().
// The session stops consuming while a message is being made durable; input that
// arrives meanwhile waits in _in (bounded) and is fed after the store answers.
#include "connection.hh"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "sealrelay/server/auth.hh"
#include "sealrelay/server/server.hh"
#include "sealrelay/smtp/received.hh"
#include "sealrelay/tls/session.hh"
#include "sealrelay/util/cidr.hh"
#include "sealrelay/util/log.hh"

namespace sr::server {
namespace {
// Input queued while the session waits for the store; more is abuse (a client may
// pipeline commands after the final dot, but not megabytes of them).
constexpr size_t max_queued_pieces = 64;
// Replies the client has not read yet. Past this, the session is fed no more input and
// the socket is not read until the client drains them (pipelined NOOP/EHLO floods).
constexpr size_t max_unsent_output = 64 * 1024;
// Large messages: past spill_threshold body bytes (and once the header section is known,
// so DKIM can say whether it signs: it then hashes the bytes as they stream), the body streams to a spool body file in writes of at
// least spill_write bytes; with a write in flight and spill_cap bytes filled again, input
// waits. So a message holds two buffers of about spill_cap bytes, not its size.
constexpr size_t spill_threshold = 128 * 1024;
constexpr size_t spill_write = 64 * 1024;
constexpr size_t spill_cap = 64 * 1024;
constexpr size_t net_chunk_bytes = 16 * 1024;  // one feed may overshoot the cap by this

inbound::session_params make_params(shard_server& srv, const listener_info& li, bool relay_allowed) {
  const auto& cfg = srv.shared().cfg;
  inbound::session_params p;
  p.hostname = cfg.server.hostname;
  p.max_message_size = cfg.limits.max_message_size;
  p.max_recipients = cfg.limits.max_recipients;
  p.max_errors = cfg.limits.max_errors;
  p.max_junk_commands = cfg.limits.max_junk_commands;
  p.starttls_available = li.entry->tls == config::listen_tls::starttls && srv.tls_server();
  p.require_tls = li.entry->require_tls;
  p.relay_allowed = relay_allowed;
  p.tls_active = li.entry->tls == config::listen_tls::implicit;
  p.submission = li.entry->mode == config::listen_mode::submission;
  return p;
}
}  // namespace

connection::connection(shard_server& srv, const listener_info& li, int fd,
                       const sockaddr_storage& peer, bool relay_allowed)
    : tls::stream(srv.shard(), srv.buffers(), srv.pool(), fd),
      _srv(srv),
      _li(li),
      _session(make_params(srv, li, relay_allowed), *this),
      _implicit_tls(li.entry->tls == config::listen_tls::implicit),
      _peer_ip(address_to_string(reinterpret_cast<const sockaddr*>(&peer))) {}

connection::~connection() {
  release_message();
  release_input();
}

void connection::start() {
  _last_input_ms = _shard.now_ms();
  if (_implicit_tls) {
    if (!open_tls()) return;
  } else {
    _session.greet();
    flush();
  }
  start_recv();
}

void connection::on_plain(net::chunk* c, size_t len) {
  _last_input_ms = _shard.now_ms();
  if (_in.size() - _in_head >= max_queued_pieces && !recv_paused()) {
    _pool.release(c);
    _session.input_overflow();  // a flood while we wait: drop the client
    return;
  }
  _in.push_back({c, 0, uint32_t(len)});
  pump();
}

void connection::on_tls_ready() {
  _last_input_ms = _shard.now_ms();
  _srv.shared().stats.tls_handshakes.fetch_add(1, std::memory_order_relaxed);
  _srv.tls_counts().established(tls()->version());
  if (_implicit_tls) _session.greet();
  else _session.tls_established();
}

void connection::on_tls_failed() {
  _srv.shared().stats.tls_failures.fetch_add(1, std::memory_order_relaxed);
  ++_srv.tls_counts().failed;
  SR_INFO("%s: TLS handshake failed: %s (wolfSSL %d)", _peer_ip.c_str(), tls()->failure_reason(),
          tls()->error_code());
  stream::close();  // sends the alert wolfSSL queued
}

bool connection::output_full() const {
  return unsent() > max_unsent_output;
}

void connection::pump() {
  while (_in_head < _in.size() && !_awaiting_store && !_session.closed() && !output_full() &&
         !spill_blocked()) {
    piece& p = _in[_in_head];
    _feeding = p.c;
    size_t n = _session.feed(std::span<std::byte>(p.c->data + p.off, p.len));
    _feeding = nullptr;
    p.off += uint32_t(n);
    p.len -= uint32_t(n);
    if (p.len == 0) {
      _pool.release(p.c);
      ++_in_head;
    } else if (!_awaiting_store && !_session.closed()) {
      break;  // the session wants more bytes than this piece had left (should not happen)
    }
    if (_discard_queued) {
      // STARTTLS: whatever the client sent before the handshake is dropped unread
      // (CVE-2011-0411); the session already ignored the rest of its own buffer.
      _discard_queued = false;
      release_input();
      break;
    }
  }
  if (_in_head == _in.size()) {
    _in.clear();
    _in_head = 0;
  }
  if (_session.in_data() && _phase_started_ms == 0) _phase_started_ms = _shard.now_ms();
  if (!_session.in_data() && !tls_handshaking()) _phase_started_ms = 0;
  // A command line begun but not finished runs on the (shorter) command timeout.
  if (!_session.partial_command()) _partial_since_ms = 0;
  else if (!_partial_since_ms) _partial_since_ms = _shard.now_ms();
  if (_session.closed()) {
    release_input();
    stream::close();
  } else if (output_full() || spill_blocked()) {
    pause_recv();  // on_drained() or the body file write resumes
  }
}

void connection::on_drained() {
  // Most connections wait here for the client's next command, many of them for minutes:
  // keep no room for the largest send so far (the handshake flight, a long reply).
  trim_send_buffers(512);
  if (!recv_paused() || closing()) return;
  pump();
  flush();
  if (!output_full() && !spill_blocked() && !closing()) resume_recv();
}

void connection::on_end(int err) {
  if (err == tls::session::failed || err == tls::session::closed) {
    stream::close();  // a bad record or close_notify after the handshake
  } else if (!_awaiting_store) {
    abort_message();
    stream::close();
  }
  // With a store write in flight we close in on_stored().
}

void connection::on_closed() { _srv.on_connection_closed(this); }

void connection::send(std::string_view bytes) { tls::stream::send(bytes); }

void connection::start_tls() {
  // The 220 is already queued in plaintext; everything after it is TLS. Bytes the
  // client pipelined after STARTTLS were discarded by the session; queued pieces
  // after the current one go too (pump() drops them once feed() returns).
  _discard_queued = true;
  open_tls();
}

bool connection::open_tls() {
  auto s = tls::session::accept(*_srv.tls_server());
  if (!s) {
    SR_ERROR("%s: cannot create a TLS session: %s", _peer_ip.c_str(), s.err().c_str());
    stream::close(true);
    return false;
  }
  tls::stream::start_tls(std::move(s.value()));
  _phase_started_ms = _shard.now_ms();
  return true;
}

void connection::begin_message(const inbound::envelope& env) {
  release_message();
  _queue_id = _srv.store().next_queue_id();
  smtp::received_info ri;
  ri.helo = env.helo;
  ri.client_ip = _peer_ip;
  ri.hostname = _srv.shared().cfg.server.hostname;
  ri.queue_id = _queue_id;
  ri.esmtp = env.esmtp;
  ri.tls = env.tls;
  if (tls() && env.tls) {
    ri.tls_version = tls()->version();
    ri.cipher = tls()->cipher();
    ri.cipher_bits = unsigned(tls()->cipher_bits());
    ri.cipher_alg_bits = ri.cipher_bits;
  }
  if (env.rcpt_to.size() == 1) ri.single_rcpt = env.rcpt_to[0];
  ri.authenticated = !env.auth_user.empty();
  // As Postfix's smtpd_sasl_authenticated_header (auth.authenticated_header).
  if (_srv.shared().cfg.auth.authenticated_header) ri.auth_sender = env.auth_user;
  ri.when = std::time(nullptr);
  smtp::append_received(_received, ri);
  _iov.push_back({_received.data(), _received.size()});
  _reserve = spool::body_file::reserve_for(env.mail_from.size(), env.rcpt_to, _received.size());
  // A message announced large (SIZE=) streams as soon as its header section is known:
  // no receive chunks are held for it meanwhile, and the read-ahead is bounded from now.
  _spill_at = spill_threshold;
  if (env.declared_size > spill_threshold) {
    _spill_at = 1;
    clamp_rcvbuf();
    set_recv_paced(true);
  }
  _phase_started_ms = _shard.now_ms();
}

void connection::body(std::span<std::byte> bytes) {
  if (bytes.empty()) return;
  _headers.feed(bytes);
  if (_spill) {
    // Streaming: bytes are copied into the fill buffer at once, so no receive chunk is
    // kept (the pool never grows for a large message); a full buffer goes to the file.
    if (_spill->failed) return;  // the body file failed: the rest is read and dropped
    if (_spill->signer) _spill->signer->feed(bytes);
    _spill->fill.insert(_spill->fill.end(), bytes.begin(), bytes.end());
    if (_spill->fill.size() >= spill_write && !_spill->file->busy()) start_spill_write();
    return;
  }
  if (_held.empty() || _held.back() != _feeding) {
    net::chunk_pool::retain(_feeding);
    _held.push_back(_feeding);
  }
  iovec& last = _iov.back();
  if (_iov.size() > 1 && static_cast<std::byte*>(last.iov_base) + last.iov_len == bytes.data()) {
    last.iov_len += bytes.size();  // contiguous with the previous span: extend it
  } else {
    _iov.push_back({bytes.data(), bytes.size()});
  }
  _gathered += bytes.size();
  if (_gathered >= _spill_at && !_no_spill) maybe_spill();
}

void connection::clamp_rcvbuf() {
  // The socket's receive buffer bounds what waits in the kernel while a disk write holds
  // the input back (the paced recv keeps it out of pool chunks; autotuned, the buffer
  // would grow to megabytes of kernel memory per connection and advertise that window to
  // the client). 64 KiB still fills a loopback or LAN pipe; the client simply waits for
  // the disk. Done once per connection, for large messages only.
  if (_rcvbuf_clamped) return;
  _rcvbuf_clamped = true;
  const int rcvbuf = 64 * 1024;
  ::setsockopt(fd(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
}

bool connection::spill_blocked() const {
  return _spill && _spill->file->busy() && _spill->fill.size() >= spill_cap;
}

void connection::maybe_spill() {
  if (_spill || _end_env) return;
  if (!_headers.complete() && !_headers.truncated()) return;  // DKIM chooses by From:
  std::string path = _srv.store().body_file_path(_queue_id, _headers);
  if (path.empty()) {
    _no_spill = true;
    set_recv_paced(false);  // held whole in memory anyway: read at full speed
    return;
  }
  // DKIM: room for the field in the body file's gap (sparse: costs no disk). h= names at
  // most every field of the header section, so twice its size plus the fixed tags bounds
  // it; a longer field (a header section past what header_section keeps) is dropped.
  auto signer = _srv.store().signer_for(_headers);
  const size_t field_room = signer ? 4096 + 2 * _headers.text().size() : 0;
  auto f = spool::body_file::create(_shard, std::move(path), _reserve + (field_room + 4095) / 4096 * 4096,
                                    _srv.store().body_file_keys());
  if (!f) {
    SR_WARN("%s: %s: kept in memory: %s", _peer_ip.c_str(), _queue_id.c_str(), f.err().c_str());
    _no_spill = true;
    set_recv_paced(false);
    return;
  }
  _spill = std::make_shared<spill>();
  _spill->file = std::move(*f);
  clamp_rcvbuf();  // no SIZE= announced it: now
  _spill->signer = std::move(signer);
  _spill->field_room = field_room;
  // Paced recv: while the disk write holds the input back, the rest of the body waits in
  // the kernel's socket queue, not in receive chunks (with multishot, each resume pulled
  // the whole queue into chunks: up to 47 chunks per connection measured).
  set_recv_paced(true);
  _spill->fill.reserve(spill_cap + 2 * net_chunk_bytes);
  _spill->flight.reserve(spill_cap + 2 * net_chunk_bytes);
  // What was gathered in receive chunks moves to the fill buffer: the chunks go back.
  for (size_t i = 1; i < _iov.size(); ++i) {
    auto p = static_cast<const std::byte*>(_iov[i].iov_base);
    if (_spill->signer) _spill->signer->feed({p, _iov[i].iov_len});
    _spill->fill.insert(_spill->fill.end(), p, p + _iov[i].iov_len);
  }
  _iov.resize(1);
  _gathered = 0;
  for (auto* c : _held) _pool.release(c);
  _held.clear();
  start_spill_write();
}

void connection::start_spill_write() {
  // The fill buffer becomes the write in flight; the other (written) one fills next.
  auto sp = _spill;
  std::swap(sp->fill, sp->flight);
  sp->fill.clear();
  sp->iov = iovec{sp->flight.data(), sp->flight.size()};
  hold();
  sp->file->append({&sp->iov, 1}, [this, sp](bool ok) {
    if (!ok) sp->failed = true;
    if (sp == _spill) on_spill_written(ok);  // else the message was dropped meanwhile
    unhold();  // last: may complete a pending close
  });
}

void connection::on_spill_written(bool ok) {
  if (!ok) _spill->fill.clear();
  if (_end_env) {
    if (ok && !_spill->fill.empty()) start_spill_write();
    else finish_large();
    return;
  }
  if (ok && _spill->fill.size() >= spill_write) start_spill_write();
  if (closing()) return;
  pump();
  flush();
  if (recv_paused() && !output_full() && !spill_blocked()) resume_recv();
}

void connection::finish_large() {
  inbound::envelope env = std::move(*_end_env);
  _end_env.reset();
  if (_spill->failed) {
    SR_WARN("%s: %s: body file failed: answering 452", _peer_ip.c_str(), _queue_id.c_str());
    _shard.post([this] { on_stored(false); });  // never from inside the session's feed
    return;
  }
  if (!_spill->signer) return submit_large(env);
  // The DKIM-Signature field goes above the Received: header (as dkim::signing_intake puts
  // it for a message in memory); an RSA signature answers later, on this shard.
  auto sp = _spill;
  sp->signer->finish([this, sp, env = std::move(env)](std::string field) {
    if (sp != _spill) return;  // cannot happen while the store is awaited; be safe
    if (field.size() > sp->field_room) {
      SR_WARN("%s: %s: DKIM-Signature field of %zu bytes does not fit: stored unsigned", _peer_ip.c_str(),
              _queue_id.c_str(), field.size());
      field.clear();
    }
    sp->field = std::move(field);
    submit_large(env);
  });
}

void connection::submit_large(const inbound::envelope& env) {
  size_t n = 0;
  if (!_spill->field.empty()) _spill->prefix[n++] = {_spill->field.data(), _spill->field.size()};
  _spill->prefix[n++] = _iov[0];
  _srv.store().submit_large(_queue_id, env, _headers, std::span<const iovec>(_spill->prefix.data(), n),
                            *_spill->file, this);
}

// Submission: the From: field must name only addresses the user may send as (what a
// recipient's mail program shows is what the user proved). One From: field; an address
// list we cannot read, or a header section too long to see it, is refused too.
std::string connection::from_refusal(const inbound::envelope& env) const {
  std::string why;
  auto refuse = [&](std::string_view addr, std::string_view what) {
    why = "553 5.7.1 ";
    if (!addr.empty()) why.append("<").append(addr).append(">: ");
    why.append(what).append(" not owned by user ").append(std::string_view(env.auth_user).substr(0, 100));
    for (char& c : why)
      if (static_cast<unsigned char>(c) < 32 || static_cast<unsigned char>(c) >= 127) c = '?';
  };
  if (_headers.truncated() && !_headers.field("from")) {
    refuse({}, "From: header past the header size limit,");
    return why;
  }
  size_t n = _headers.count("from");
  if (n == 0) return why;  // nothing shown to the recipient that could name someone else
  if (n > 1) {
    refuse({}, "More than one From: header:");
    return why;
  }
  auto addrs = smtp::mailbox_addresses(*_headers.field("from"));
  if (addrs.empty()) {
    refuse({}, "From: header unreadable or");
    return why;
  }
  for (const auto& a : addrs)
    if (!_auth_user || !auth::sender_allowed(*_auth_user, a)) {
      refuse(a.size() > 256 ? a.substr(0, 256) : a, "From: header address");
      return why;
    }
  return why;
}

void connection::end_message(const inbound::envelope& env) {
  if (!env.auth_user.empty()) {
    if (std::string why = from_refusal(env); !why.empty()) {
      SR_INFO("%s: %s: message refused: %s", _peer_ip.c_str(), _queue_id.c_str(), why.c_str());
      release_message();
      _session.message_refused(why);  // nothing was stored
      return;
    }
  }
  if (auto* script = _srv.script()) {
    if (std::string why = script->end_message(*_li.entry, env); !why.empty()) {
      release_message();
      _session.message_refused(why);  // nothing was stored; a 421 closes the session
      return;
    }
  }
  _awaiting_store = true;
  hold();
  if (_spill) {
    // The rest of the body goes to the file first; a write in flight calls finish_large().
    _end_env = env;
    if (_spill->file->busy()) return;
    if (!_spill->fill.empty() && !_spill->failed) start_spill_write();
    else finish_large();
    return;
  }
  _srv.store().submit(_queue_id, env, _headers, _iov, this);
}

void connection::on_stored(bool ok) {
  _awaiting_store = false;
  if (ok) _srv.shared().stats.messages_accepted.fetch_add(1, std::memory_order_relaxed);
  else _srv.shared().stats.messages_rejected.fetch_add(1, std::memory_order_relaxed);
  if (!closing()) _session.message_result(ok ? std::string_view(_queue_id) : std::string_view());
  release_message();
  if (!closing()) {
    pump();
    flush();
  }
  unhold();  // may complete a pending close
}

void connection::abort_message() { release_message(); }

void connection::close() { stream::close(); }

void connection::check_auth(std::string_view user, std::string_view password) {
  authenticator* a = _srv.auth();
  if (!_alive) _alive = std::make_shared<bool>(true);
  std::weak_ptr<bool> alive = _alive;
  auto done = [this, alive](inbound::session::auth_answer ans, const auth::user* u) {
    if (alive.expired() || closing()) return;
    if (u) _auth_user = *u;
    _session.auth_result(ans);
    pump();  // input the client pipelined after AUTH waited for this answer
    flush();
  };
  if (!a) {
    _shard.post([done] { done(inbound::session::auth_answer::busy, nullptr); });
    return;
  }
  a->check(_peer_ip, _li.entry->address, user, password, std::move(done));
}

bool connection::sender_allowed(std::string_view address) {
  return _auth_user && auth::sender_allowed(*_auth_user, address);
}

bool connection::recipient_suppressed(std::string_view address) {
  auto* f = _srv.filter();
  return f && f->refuse(address);
}

void connection::release_message() {
  for (auto* c : _held) _pool.release(c);
  _held.clear();
  _iov.clear();
  _received.clear();
  _headers.clear();
  _gathered = 0;
  _no_spill = false;
  set_recv_paced(false);  // commands and small messages: multishot again
  if (_spill) _shard.release_memory_soon();  // its write buffers: back to the OS
  _spill.reset();  // a write in flight keeps it until its completion
  _end_env.reset();
}

void connection::release_input() {
  for (size_t i = _in_head; i < _in.size(); ++i) _pool.release(_in[i].c);
  _in.clear();
  _in_head = 0;
}

void connection::check_deadline(uint64_t now) {
  const auto& lim = _srv.shared().cfg.limits;
  if (closing()) {
    // A graceful close waits for the last replies; a client that never reads them
    // gets the command timeout, then the socket is shut down under the stuck send.
    if (!_closing_since_ms) _closing_since_ms = now;
    else if (now - _closing_since_ms >= uint64_t(lim.command_timeout.count())) stream::close(true);
    return;
  }
  if (_awaiting_store) return;
  uint64_t limit;
  uint64_t since;
  if (tls_handshaking()) {
    limit = uint64_t(lim.command_timeout.count());
    since = _phase_started_ms;
  } else if (_session.in_data()) {
    limit = uint64_t(lim.data_timeout.count());
    since = _phase_started_ms ? _phase_started_ms : _last_input_ms;
  } else if (_partial_since_ms) {
    limit = uint64_t(lim.command_timeout.count());
    since = _partial_since_ms;
  } else {
    limit = uint64_t(lim.idle_timeout.count());
    since = _last_input_ms;
  }
  if (now - since < limit) return;
  if (tls_handshaking()) {
    stream::close(true);
    return;
  }
  _session.timeout();
  flush();
  if (_session.closed()) stream::close();
}

void connection::begin_drain() {
  if (closing()) return;
  if (tls_handshaking() || _session.shutdown()) {
    flush();
    stream::close();
  } else {
    flush();
  }
}

}  // namespace sr::server
