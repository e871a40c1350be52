// Outbound SMTP client state machine. Replies are handled strictly in order: each phase
// expects exactly one reply, and with PIPELINING the whole MAIL/RCPT/DATA group is already
// on the wire, so the handlers only record outcomes instead of sending the next command.
// Recipient outcomes: a failed RCPT keeps its own reply; every other recipient gets the
// message-level reply (MAIL, DATA, final dot, 421, or the connection failure).
#include "sealrelay/outbound/session.hh"

#include <cassert>
#include <string>

#include "sealrelay/outbound/body.hh"
#include "sealrelay/smtp/command.hh"

namespace sr::outbound {

namespace {

// Join the reply's lines with a space into `out`; return the length of its enhanced
// code prefix (0 unless its class digit matches the reply code, as Postfix checks).
size_t format_reply(const smtp::reply& r, std::string& out) {
  out.clear();
  for (size_t i = 0; i < r.line_count(); ++i) {
    if (i) out.push_back(' ');
    out.append(r.line(i));
  }
  std::string_view e = r.enhanced();
  if (!e.empty() && e[0] == char('0' + r.code() / 100)) return e.size();
  return 0;
}

// The outcome of a refusal: 5xx is permanent, anything else (4xx, odd codes) is retried.
rcpt_status fail_status(unsigned code) {
  return code / 100 == 5 ? rcpt_status::bounced : rcpt_status::deferred;
}

report::reason remote_token(unsigned code) {
  switch (code / 100) {
    case 4: return report::reason::remote_4xx;
    case 5: return report::reason::remote_5xx;
    default: return report::reason::protocol_error;
  }
}

// `r`, or `fallback` when the decider gave no reason.
report::reason or_default(report::reason r, report::reason fallback) {
  return r == report::reason::none ? fallback : r;
}

bool has_line_break(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

}  // namespace

const char* to_string(phase p) {
  switch (p) {
    case phase::greeting: return "greeting";
    case phase::ehlo: return "ehlo";
    case phase::helo: return "helo";
    case phase::starttls: return "starttls";
    case phase::tls_handshake: return "tls_handshake";
    case phase::idle: return "idle";
    case phase::rset: return "rset";
    case phase::mail: return "mail";
    case phase::rcpt: return "rcpt";
    case phase::data: return "data";
    case phase::dot: return "dot";
    case phase::quit: return "quit";
    case phase::closed: return "closed";
  }
  return "?";
}

unsigned rfc5321_timeout_s(phase p) {
  switch (p) {
    case phase::idle:
    case phase::closed: return 0;
    case phase::rset: return 20;
    case phase::data: return 120;
    case phase::dot: return 600;
    default: return 300;
  }
}

const char* to_string(stage s) {
  switch (s) {
    case stage::local: return "local";
    case stage::mail: return "mail";
    case stage::rcpt: return "rcpt";
    case stage::data: return "data";
    case stage::dot: return "dot";
    case stage::connection: return "connection";
  }
  return "?";
}

const char* to_string(rcpt_status s) {
  switch (s) {
    case rcpt_status::delivered: return "delivered";
    case rcpt_status::deferred: return "deferred";
    case rcpt_status::bounced: return "bounced";
  }
  return "?";
}

const char* to_string(close_kind k) {
  switch (k) {
    case close_kind::quit: return "quit";
    case close_kind::remote: return "remote";
    case close_kind::tls_policy: return "tls_policy";
    case close_kind::undecided: return "undecided";
    case close_kind::tls_failed: return "tls_failed";
    case close_kind::protocol: return "protocol";
    case close_kind::lost: return "lost";
    case close_kind::timeout: return "timeout";
  }
  return "?";
}

session::batch::batch(session& s) : _s(s) { ++_s._depth; }
session::batch::~batch() {
  if (--_s._depth == 0) _s.flush();
}

session::session(const session_params& params, events& ev, tls_decider& decider)
    : _hostname(params.hostname), _ev(ev), _decider(decider) {}

void session::transition(outbound::phase to) {
  // Legal moves, one bit per target phase (indexed by the source phase).
  auto bit = [](outbound::phase p) { return 1u << unsigned(p); };
  using P = outbound::phase;
  unsigned legal = 0;
  switch (_phase) {
    case P::greeting: legal = bit(P::ehlo) | bit(P::quit); break;
    case P::ehlo: legal = bit(P::helo) | bit(P::starttls) | bit(P::idle) | bit(P::quit); break;
    case P::helo: legal = bit(P::starttls) | bit(P::idle) | bit(P::quit); break;
    case P::starttls: legal = bit(P::tls_handshake) | bit(P::idle) | bit(P::quit); break;
    case P::tls_handshake: legal = bit(P::ehlo) | bit(P::quit); break;
    case P::idle: legal = bit(P::idle) | bit(P::rset) | bit(P::mail) | bit(P::quit); break;
    case P::rset: legal = bit(P::mail); break;
    case P::mail: legal = bit(P::rcpt) | bit(P::idle); break;
    case P::rcpt: legal = bit(P::rcpt) | bit(P::data) | bit(P::idle); break;
    case P::data: legal = bit(P::dot) | bit(P::idle); break;
    case P::dot: legal = bit(P::idle); break;
    case P::quit: legal = 0; break;
    case P::closed: legal = 0; break;
  }
  if (_phase != P::closed) legal |= bit(P::closed);
  assert((legal & bit(to)) != 0 && "illegal outbound session transition");
  (void)legal;
  _phase = to;
}

void session::flush() {
  if (_out.empty()) return;
  _ev.send(_out);
  _out.clear();
}

// ---- input -------------------------------------------------------------------------------

void session::feed(std::string_view in) {
  batch b(*this);
  while (!in.empty()) {
    if (_phase == outbound::phase::closed || _phase == outbound::phase::tls_handshake) return;
    size_t used = 0;
    smtp::reply_parser::status st = _parser.feed(in, used);
    in.remove_prefix(used);
    if (st == smtp::reply_parser::status::error) {
      if (_phase == outbound::phase::quit)
        finish_close();
      else
        fail_connection(close_kind::protocol, report::reason::protocol_error, nullptr);
      return;
    }
    if (st == smtp::reply_parser::status::need_more) return;
    on_reply(_parser.get());
    _parser.next();
    if (_drop_input) {
      // Bytes after the 220 to STARTTLS were sent in plaintext before the handshake: a
      // response-injection attempt or a broken server. Never read them as post-TLS replies.
      _drop_input = false;
      return;
    }
  }
}

void session::on_reply(const smtp::reply& r) {
  if (_phase == outbound::phase::quit) {  // 221, or anything: we are leaving either way
    finish_close();
    return;
  }
  if (r.code() == 421) {  // the server is closing the channel (RFC 5321 3.8): no QUIT
    fail_connection(close_kind::remote, report::reason::remote_4xx, &r);
    return;
  }
  switch (_phase) {
    case outbound::phase::greeting: on_greeting(r); break;
    case outbound::phase::ehlo: on_ehlo(r); break;
    case outbound::phase::helo: on_helo(r); break;
    case outbound::phase::starttls: on_starttls(r); break;
    case outbound::phase::rset: on_rset(r); break;
    case outbound::phase::mail: on_mail(r); break;
    case outbound::phase::rcpt: on_rcpt(r); break;
    case outbound::phase::data: on_data(r); break;
    case outbound::phase::dot: on_dot(r); break;
    case outbound::phase::idle:  // a reply nobody asked for: out of sync
      fail_connection(close_kind::protocol, report::reason::protocol_error, &r);
      break;
    case outbound::phase::tls_handshake:
    case outbound::phase::quit:
    case outbound::phase::closed: break;  // input is not read in these phases
  }
}

// ---- connection set-up -------------------------------------------------------------------

void session::on_greeting(const smtp::reply& r) {
  if (r.code() == 220) {
    send_ehlo();
    return;
  }
  // 554 (or another refusal): RFC 5321 3.1 has the client QUIT and the server wait for it.
  close_with(r.code() / 100 == 4 || r.code() / 100 == 5 ? close_kind::remote : close_kind::protocol,
             remote_token(r.code()), &r, true);
}

void session::send_ehlo() {
  _out.append("EHLO ").append(_hostname).append("\r\n");
  transition(outbound::phase::ehlo);
}

void session::on_ehlo(const smtp::reply& r) {
  if (r.code() / 100 == 2) {
    parse_capabilities(r);
    after_greeting_exchange();
  } else if (r.code() == 500 || r.code() == 502) {  // no ESMTP: RFC 5321 3.2 HELO fallback
    _out.append("HELO ").append(_hostname).append("\r\n");
    transition(outbound::phase::helo);
  } else {
    close_with(close_kind::remote, remote_token(r.code()), &r, true);
  }
}

void session::on_helo(const smtp::reply& r) {
  if (r.code() / 100 == 2) {
    _caps = capabilities{};
    after_greeting_exchange();
  } else {
    close_with(close_kind::remote, remote_token(r.code()), &r, true);
  }
}

void session::parse_capabilities(const smtp::reply& r) {
  _caps = capabilities{};
  _caps.esmtp = true;
  for (size_t i = 1; i < r.line_count(); ++i) {  // line 0 is the server's name
    std::string_view l = r.line(i);
    size_t sp = l.find(' ');
    std::string_view kw = l.substr(0, sp);
    std::string_view arg = sp == std::string_view::npos ? std::string_view{} : l.substr(sp + 1);
    if (smtp::iequals(kw, "PIPELINING")) {
      _caps.pipelining = true;
    } else if (smtp::iequals(kw, "SIZE")) {
      _caps.size = true;
      uint64_t n = 0;
      for (char c : arg) {
        if (c < '0' || c > '9') break;
        n = n > (UINT64_MAX - 9) / 10 ? UINT64_MAX : n * 10 + unsigned(c - '0');
      }
      _caps.size_limit = n;
    } else if (smtp::iequals(kw, "8BITMIME")) {
      _caps.eight_bit_mime = true;
    } else if (smtp::iequals(kw, "STARTTLS")) {
      _caps.starttls = true;
    } else if (smtp::iequals(kw, "ENHANCEDSTATUSCODES")) {
      _caps.enhanced_status_codes = true;
    } else if (smtp::iequals(kw, "CHUNKING")) {
      _caps.chunking = true;
    } else if (smtp::iequals(kw, "REQUIRETLS")) {
      _caps.requiretls = true;
    }
  }
}

void session::after_greeting_exchange() {
  if (_tls) {  // the post-TLS EHLO: only what it offers is left to judge
    decision<tls_action> d = _decider.on_secure_ehlo(_caps.requiretls);
    if (d.action == tls_action::proceed) {
      go_idle();
    } else {
      close_with(d.action == tls_action::abort ? close_kind::tls_policy : close_kind::undecided,
                 or_default(d.reason, report::reason::requiretls_not_offered), nullptr, true);
    }
    return;
  }
  decision<ehlo_action> d = _decider.on_ehlo(_caps.starttls);
  switch (d.action) {
    case ehlo_action::starttls:
      _out.append("STARTTLS\r\n");
      transition(outbound::phase::starttls);
      break;
    case ehlo_action::proceed_plain: go_idle(); break;
    case ehlo_action::abort:
      close_with(close_kind::tls_policy, or_default(d.reason, report::reason::starttls_not_offered),
                 nullptr, true);
      break;
  }
}

void session::on_starttls(const smtp::reply& r) {
  if (r.code() == 220) {
    transition(outbound::phase::tls_handshake);
    _drop_input = true;
    flush();
    _ev.start_tls();  // may call tls_done() at once: touch nothing after this
    return;
  }
  decision<refused_action> d = _decider.on_starttls_refused(r);
  if (d.action == refused_action::proceed_plain) {
    go_idle();  // RFC 3207 4: the EHLO state stands when STARTTLS is refused
  } else {
    close_with(close_kind::tls_policy, or_default(d.reason, report::reason::starttls_refused), &r, true);
  }
}

void session::tls_done(const tls_outcome& outcome) {
  batch b(*this);
  if (_phase != outbound::phase::tls_handshake) return;
  _tls = true;  // from here on every byte (QUIT too) goes through TLS
  _caps = capabilities{};
  _parser.next();
  decision<tls_action> d = _decider.on_tls(outcome);
  switch (d.action) {
    case tls_action::proceed:
      send_ehlo();  // RFC 3207 4.2: discard what the server said before, ask again
      break;
    case tls_action::abort:
      close_with(close_kind::tls_policy, or_default(d.reason, report::reason::tls_rejected), nullptr, true);
      break;
    case tls_action::defer:
      close_with(close_kind::undecided, or_default(d.reason, report::reason::local), nullptr, true);
      break;
  }
}

void session::tls_failed(report::reason reason) {
  batch b(*this);
  if (_phase != outbound::phase::tls_handshake) return;
  close_with(close_kind::tls_failed, or_default(reason, report::reason::handshake_failed), nullptr, false);
}

void session::go_idle() {
  transition(outbound::phase::idle);
  _ev.idle();  // may call send_message() or quit() re-entrantly
}

// ---- transactions ------------------------------------------------------------------------

bool session::send_message(const message& msg) {
  batch b(*this);
  if (_phase != outbound::phase::idle || _active || _in_done || msg.rcpts.empty()) return false;
  if (has_line_break(msg.mail_from)) return false;
  // RFC 8689 §4.2.1: REQUIRETLS mail never goes to a server that did not offer it over TLS.
  if (msg.requiretls && !(_tls && _caps.requiretls)) return false;
  for (std::string_view r : msg.rcpts)
    if (has_line_break(r)) return false;

  _msg = msg;
  _active = true;
  _mail_failed = _lone_dot = _body_sent = _rset_sent = false;
  _rcpt_next = _accepted = 0;
  _msg_where = stage::dot;
  _msg_code = 0;
  _msg_text.clear();
  _msg_enh_len = 0;
  if (_slots.size() < msg.rcpts.size()) _slots.resize(msg.rcpts.size());
  for (size_t i = 0; i < msg.rcpts.size(); ++i) {
    slot& s = _slots[i];
    s.status = rcpt_status::deferred;
    s.where = stage::rcpt;
    s.final = false;
    s.own = false;
    s.code = 0;
    s.text.clear();
    s.enh_len = 0;
  }

  uint64_t size = msg.stream_size;
  for (const iovec& v : msg.body) size += v.iov_len;
  _body_size = size;
  if (_caps.size && _caps.size_limit != 0 && size > _caps.size_limit) {
    // RFC 1870 6: do not send what the server said it will refuse; Postfix bounces (5.3.4).
    std::string text = "5.3.4 message size " + std::to_string(size) + " exceeds size limit " +
                       std::to_string(_caps.size_limit) + " of server";
    set_message_local(stage::local, 552, "5.3.4", text);
    settle_pending(stage::local, rcpt_status::bounced);
    end_transaction(true);
    return true;
  }

  _pipelined = _caps.pipelining;
  if (_need_rset) {
    _out.append("RSET\r\n");
    _rset_sent = true;
    _need_rset = false;
  }
  if (!_rset_sent || _pipelined) send_mail();
  if (_pipelined) {  // RFC 2920: RSET, MAIL, every RCPT and DATA in one group, one send()
    for (size_t i = 0; i < msg.rcpts.size(); ++i) send_rcpt(i);
    _out.append("DATA\r\n");
  }
  transition(_rset_sent ? outbound::phase::rset : outbound::phase::mail);
  return true;
}

void session::send_mail() {
  _out.append("MAIL FROM:<").append(_msg.mail_from).append(">");
  if (_caps.size) _out.append(" SIZE=").append(std::to_string(_body_size));
  // Without 8BITMIME on the server the bytes still go as they are (no MIME downgrade).
  if (_msg.eight_bit && _caps.eight_bit_mime) _out.append(" BODY=8BITMIME");
  if (_msg.requiretls) _out.append(" REQUIRETLS");
  _out.append("\r\n");
}

void session::send_rcpt(size_t i) {
  _out.append("RCPT TO:<").append(_msg.rcpts[i]).append(">\r\n");
}

void session::on_rset(const smtp::reply&) {
  // Only a 421 (handled before) matters: MAIL's own reply says whether the server is usable.
  transition(outbound::phase::mail);
  if (!_pipelined) send_mail();
}

void session::on_mail(const smtp::reply& r) {
  if (r.code() / 100 == 2) {
    transition(outbound::phase::rcpt);
    if (!_pipelined) send_rcpt(0);
    return;
  }
  _mail_failed = true;
  set_message_reply(stage::mail, r);
  settle_pending(stage::mail, fail_status(r.code()));
  if (_pipelined) {
    transition(outbound::phase::rcpt);  // the RCPT and DATA replies still come (RFC 2920 3.1)
  } else {
    _need_rset = true;
    end_transaction(true);
  }
}

void session::on_rcpt(const smtp::reply& r) {
  size_t i = _rcpt_next++;
  if (!_mail_failed) {
    slot& s = _slots[i];
    s.code = r.code();
    s.enh_len = format_reply(r, s.text);
    if (r.code() / 100 == 2) {
      ++_accepted;
    } else {
      s.final = true;
      s.own = true;
      s.where = stage::rcpt;
      s.status = fail_status(r.code());
    }
  }
  size_t n = _msg.rcpts.size();
  if (_rcpt_next < n) {
    transition(outbound::phase::rcpt);
    if (!_pipelined) send_rcpt(_rcpt_next);
    return;
  }
  if (!_mail_failed && _accepted == 0) set_message_reply(stage::rcpt, r);
  if (_pipelined) {
    transition(outbound::phase::data);
  } else if (_accepted > 0) {
    _out.append("DATA\r\n");
    transition(outbound::phase::data);
  } else {
    _need_rset = true;
    end_transaction(true);
  }
}

void session::on_data(const smtp::reply& r) {
  bool go = !_mail_failed && _accepted > 0;
  if (r.code() / 100 == 3) {
    if (go) {
      _iov.clear();
      if (_msg.stream_size == 0) stuff_body(_msg.body, _iov);
      flush();
      transition(outbound::phase::dot);
      _body_sent = true;
      _ev.send_body(_iov);
    } else {
      // RFC 2920 3.1: DATA accepted although no recipient was: "the client SHOULD send a
      // single dot". An empty message to nobody, and not one byte of the real one.
      _lone_dot = true;
      _out.append(".\r\n");
      transition(outbound::phase::dot);
    }
    return;
  }
  if (go) {
    set_message_reply(stage::data, r);
    settle_pending(stage::data, fail_status(r.code()));
  }
  _need_rset = true;
  end_transaction(true);
}

void session::on_dot(const smtp::reply& r) {
  if (_lone_dot) {  // every outcome is already final; the server state is odd: RSET next
    _need_rset = true;
    end_transaction(true);
    return;
  }
  set_message_reply(stage::dot, r);
  settle_pending(stage::dot, r.code() / 100 == 2 ? rcpt_status::delivered : fail_status(r.code()));
  end_transaction(true);  // the transaction is over either way: no RSET needed
}

void session::set_message_reply(stage where, const smtp::reply& r) {
  _msg_where = where;
  _msg_code = r.code();
  _msg_enh_len = format_reply(r, _msg_text);
}

void session::set_message_local(stage where, unsigned code, std::string_view enhanced,
                                std::string_view text) {
  _msg_where = where;
  _msg_code = code;
  _msg_text.assign(text);
  _msg_enh_len = text.substr(0, enhanced.size()) == enhanced ? enhanced.size() : 0;
}

void session::settle_pending(stage where, rcpt_status status) {
  for (size_t i = 0; i < _msg.rcpts.size(); ++i) {
    slot& s = _slots[i];
    if (s.final) continue;
    s.final = true;
    s.own = false;
    s.where = where;
    s.status = status;
  }
}

bool session::any_pending() const {
  for (size_t i = 0; i < _msg.rcpts.size(); ++i)
    if (!_slots[i].final) return true;
  return false;
}

void session::end_transaction(bool then_idle) {
  size_t n = _msg.rcpts.size();
  _results.resize(n);
  txn_result t;
  for (size_t i = 0; i < n; ++i) {
    const slot& s = _slots[i];
    rcpt_result& o = _results[i];
    o.status = s.status;
    o.where = s.where;
    if (s.own) {
      o.code = s.code;
      o.text = s.text;
      o.enhanced = o.text.substr(0, s.enh_len);
    } else {
      o.code = _msg_code;
      o.text = _msg_text;
      o.enhanced = o.text.substr(0, _msg_enh_len);
    }
    switch (s.status) {
      case rcpt_status::delivered: ++t.delivered; break;
      case rcpt_status::deferred: ++t.deferred; break;
      case rcpt_status::bounced: ++t.bounced; break;
    }
  }
  t.rcpts = std::span<const rcpt_result>(_results.data(), n);
  t.where = _msg_where;
  t.code = _msg_code;
  t.text = _msg_text;
  t.enhanced = t.text.substr(0, _msg_enh_len);
  t.body_sent = _body_sent;
  _active = false;
  ++_transactions;
  flush();
  _in_done = true;  // send_message()/quit() wait for idle(): the views above are still in use
  _ev.transaction_done(t);
  _in_done = false;
  if (then_idle) go_idle();
}

bool session::quit() {
  batch b(*this);
  if (_phase != outbound::phase::idle || _in_done) return false;
  close_with(close_kind::quit, report::reason::quit, nullptr, true);
  return true;
}

// ---- endings -----------------------------------------------------------------------------

void session::timeout() {
  batch b(*this);
  if (_phase == outbound::phase::closed) return;
  if (_phase == outbound::phase::quit)
    finish_close();
  else
    fail_connection(close_kind::timeout, report::reason::timeout, nullptr);
}

void session::connection_lost() {
  batch b(*this);
  if (_phase == outbound::phase::closed) return;
  if (_phase == outbound::phase::quit)
    finish_close();
  else
    fail_connection(close_kind::lost, report::reason::connection_lost, nullptr);
}

void session::fail_connection(close_kind kind, report::reason reason, const smtp::reply* r) {
  if (_active) {
    if (any_pending()) {
      if (r) {
        stage where = _phase == outbound::phase::rcpt ? stage::rcpt
                      : _phase == outbound::phase::data ? stage::data
                      : _phase == outbound::phase::dot  ? stage::dot
                                                        : stage::mail;
        set_message_reply(where, *r);
      } else {
        // RFC 3463: 4.4.2 bad connection, 4.5.0 protocol error. Rare path: allocation is fine.
        std::string_view enh = kind == close_kind::protocol ? "4.5.0" : "4.4.2";
        std::string text = std::string(enh) + " " + std::string(report::to_string(reason)) + " in phase " +
                           to_string(_phase);
        set_message_local(stage::connection, 0, enh, text);
      }
      settle_pending(_msg_where, rcpt_status::deferred);
    }
    end_transaction(false);
  }
  close_with(kind, reason, r, false);
}

void session::close_with(close_kind kind, report::reason reason, const smtp::reply* r,
                         bool send_quit) {
  _close_kind = kind;
  _close_reason = reason;
  if (r) {
    _close_code = r->code();
    _close_enh_len = format_reply(*r, _close_text);
  } else {
    _close_code = 0;
    _close_text.clear();
    _close_enh_len = 0;
  }
  if (send_quit) {
    _out.append("QUIT\r\n");
    transition(outbound::phase::quit);
  } else {
    finish_close();
  }
}

void session::finish_close() {
  flush();
  transition(outbound::phase::closed);
  close_info c;
  c.kind = _close_kind;
  c.reason = _close_reason;
  c.code = _close_code;
  c.text = _close_text;
  c.enhanced = c.text.substr(0, _close_enh_len);
  _ev.closed(c);
}

}  // namespace sr::outbound
