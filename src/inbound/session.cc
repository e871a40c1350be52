// Inbound SMTP session state machine. Commands are dispatched from a verb table; replies
// are formatted into one reused string and handed to events::send() one at a time, in
// order, so pipelined commands get pipelined replies. Body bytes go through the in-place
// DATA scanner. Security rules: only CRLF.CRLF ends a body (bare CR/LF never does), and
// nothing received in the same buffer after STARTTLS is executed (CVE-2011-0411).
// Submission (RFC 4954, RFC 6409): AUTH only under TLS (538 5.7.11 before), MAIL only
// after AUTH, the password handed to the engine once and wiped here.
#include "sealrelay/inbound/session.hh"

#include <string.h>  // explicit_bzero

#include <cassert>
#include <charconv>
#include <cstring>

#include "sealrelay/smtp/reply.hh"
#include "sealrelay/smtp/sasl.hh"

namespace sr::inbound {

using smtp::data_scanner;

namespace {

// Echo client text into a reply without letting it end or fake a reply line.
void append_printable(std::string& out, std::string_view s) {
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    out.push_back(u >= 32 && u < 127 ? c : '?');
  }
}

// Overwrite a secret so it does not linger in freed or reused memory.
void wipe(std::string& s) {
  if (!s.empty()) explicit_bzero(s.data(), s.size());
  s.clear();
}

}  // namespace

const session::command_entry session::_commands[] = {
    // verb        handler              before_helo before_tls junk
    {"EHLO", &session::on_ehlo, true, true, true},
    {"HELO", &session::on_helo, true, true, true},
    {"MAIL", &session::on_mail, false, false, false},
    {"RCPT", &session::on_rcpt, false, true, false},
    {"DATA", &session::on_data, false, true, false},
    {"RSET", &session::on_rset, true, true, true},
    {"NOOP", &session::on_noop, true, true, true},
    {"QUIT", &session::on_quit, true, true, false},
    {"HELP", &session::on_help, true, true, true},
    {"VRFY", &session::on_vrfy, true, true, true},
    {"EXPN", &session::on_vrfy, true, true, true},
    {"STARTTLS", &session::on_starttls, true, true, false},
    // AUTH answers 538 itself before TLS (RFC 4954 §4), whatever require_tls says.
    {"AUTH", &session::on_auth, false, true, false},
};
const size_t session::_command_count = std::size(session::_commands);

const char* session::to_string(state s) {
  switch (s) {
    case state::pre_helo: return "pre-helo";
    case state::ready: return "ready";
    case state::mail: return "mail";
    case state::rcpt: return "rcpt";
    case state::data: return "data";
    case state::wait_result: return "wait-result";
    case state::tls_pending: return "tls-pending";
    case state::auth: return "auth";
    case state::auth_wait: return "auth-wait";
    case state::closed: return "closed";
  }
  return "?";
}

session::session(const session_params& params, events& ev)
    : _params(params), _hostname(params.hostname), _ev(ev), _tls(params.tls_active) {
  _params.hostname = _hostname;
  // Room for the longest usual reply (the EHLO list, ~150 bytes) without regrowing; _tmp
  // only builds error replies and grows on first use. Every idle session pays for these
  // (issue 11: idle TLS sessions in <= 32 KiB).
  _out.reserve(256);
}

void session::transition(state to) {
  // Legal moves, one bit per target state (indexed by the source state).
  auto bit = [](state s) { return 1u << unsigned(s); };
  static constexpr unsigned closed_bit = 1u << unsigned(state::closed);
  unsigned legal = 0;
  switch (_state) {
    case state::pre_helo: legal = bit(state::ready) | bit(state::tls_pending); break;
    case state::ready:
      legal = bit(state::ready) | bit(state::mail) | bit(state::tls_pending) | bit(state::auth) |
              bit(state::auth_wait);
      break;
    case state::mail: legal = bit(state::ready) | bit(state::rcpt); break;
    case state::rcpt: legal = bit(state::ready) | bit(state::rcpt) | bit(state::data); break;
    case state::data: legal = bit(state::ready) | bit(state::wait_result); break;
    case state::wait_result: legal = bit(state::ready); break;
    case state::tls_pending: legal = bit(state::pre_helo); break;
    case state::auth: legal = bit(state::auth) | bit(state::auth_wait) | bit(state::ready); break;
    case state::auth_wait: legal = bit(state::ready); break;
    case state::closed: legal = 0; break;
  }
  legal |= _state == state::closed ? 0 : closed_bit;
  assert((legal & bit(to)) != 0 && "illegal inbound session transition");
  (void)legal;
  _state = to;
}

bool session::waiting_for_command() const {
  return _state == state::pre_helo || _state == state::ready || _state == state::mail ||
         _state == state::rcpt || _state == state::auth;
}

void session::reply(std::string_view line) {
  _out.clear();
  _out.append(line);
  _out.append("\r\n");
  _ev.send(_out);
}

void session::reply_error(std::string_view line) {
  reply(line);
  if (_params.max_errors != 0 && ++_errors >= _params.max_errors) {
    _tmp.clear();
    _tmp.append("421 4.7.0 ").append(_hostname).append(" Error: too many errors");
    close_with(_tmp);
  }
}

void session::close_with(std::string_view line) {
  if (_state == state::closed) return;
  if (!line.empty()) reply(line);
  if (_state == state::data && !_data_aborted) {
    _data_aborted = true;
    _ev.abort_message();
  }
  transition(state::closed);
  _ev.close();
}

void session::greet(std::string_view refuse_reply) {
  if (!refuse_reply.empty()) {
    close_with(refuse_reply);
    return;
  }
  _out.clear();
  _out.append("220 ").append(_hostname).append(" ESMTP sealrelay\r\n");
  _ev.send(_out);
}

size_t session::feed(std::span<std::byte> in) {
  const size_t n = in.size();
  size_t pos = 0;
  while (pos < n) {
    switch (_state) {
      case state::closed:
      case state::tls_pending:
        return n;  // ignored; after STARTTLS nothing from this plaintext buffer may run
      case state::wait_result:
      case state::auth_wait:
        return pos;
      case state::data: {
        data_scanner::result r = _scanner.scan(in.subspan(pos));
        if (r.body_len != 0) _ev.body(in.subspan(pos, r.body_len));
        if (_scanner.err() != data_scanner::error::none && !_data_aborted) {
          _data_aborted = true;
          _ev.abort_message();
        }
        pos += r.consumed;
        if (r.done) finish_data();
        continue;
      }
      case state::pre_helo:
      case state::ready:
      case state::mail:
      case state::rcpt:
      case state::auth:
        break;
    }
    const char* base = reinterpret_cast<const char*>(in.data()) + pos;
    const size_t avail = n - pos;
    const char* lf = static_cast<const char*>(std::memchr(base, '\n', avail));
    const size_t seg = lf ? size_t(lf - base) : avail;
    std::string_view line;
    if (!_line_overflow) {
      if (_line_len + seg > _line.size()) {
        _line_overflow = true;
      } else if (lf && _line_len == 0) {
        line = std::string_view(base, seg);  // whole line in this buffer: no copy
      } else {
        std::memcpy(_line.data() + _line_len, base, seg);
        _line_len += seg;
        line = std::string_view(_line.data(), _line_len);
      }
    }
    pos += seg;
    if (!lf) return n;  // partial line kept (or discarded when over the limit)
    ++pos;
    bool overflow = _line_overflow;
    _line_len = 0;
    _line_overflow = false;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (overflow || line.size() > smtp::max_command_line - 2) {
      if (_state == state::auth) abandon_auth();
      reply_error("500 5.5.2 Error: line too long");
      continue;
    }
    if (_state == state::auth) {
      on_auth_response(line);
      continue;
    }
    const unsigned tls_epoch = _tls_epoch;
    process_line(line);
    // STARTTLS accepted: nothing after it in this plaintext buffer may run, even if the
    // engine already called tls_established() from inside start_tls().
    if (_tls_epoch != tls_epoch) return n;
  }
  return pos;
}

void session::process_line(std::string_view line) {
  if (line.empty()) {
    reply_error("500 5.5.2 Error: bad syntax");
    return;
  }
  smtp::command_line cmd = smtp::split_command(line);
  const command_entry* e =
      smtp::find_verb(std::span<const command_entry>(_commands, _command_count), cmd.verb);
  if (e == nullptr) {
    reply_error("500 5.5.2 Error: command not recognized");
    return;
  }
  if (!e->allowed_before_helo && _state == state::pre_helo) {
    reply_error("503 5.5.1 Error: send HELO/EHLO first");
    return;
  }
  if (!e->allowed_before_tls && _params.require_tls && !_tls) {
    reply_error("530 5.7.0 Must issue a STARTTLS command first");
    return;
  }
  // Reply-only commands cost us a reply each and move no mail: a client that sends
  // nothing else would hold the connection (and its reply buffer) forever.
  if (e->junk && _params.max_junk_commands != 0 && ++_junk > _params.max_junk_commands) {
    _tmp.clear();
    _tmp.append("421 4.7.0 ").append(_hostname).append(" Error: too many commands without a message");
    close_with(_tmp);
    return;
  }
  (this->*(e->handler))(cmd.arg);
}

void session::reset_transaction() {
  _env.mail_from.clear();
  _env.rcpt_to.clear();
  _env.declared_size = 0;
  _env.body_8bitmime = false;
  _env.requiretls = false;
  _rcpt_attempts = 0;
  _data_aborted = false;
}

void session::maybe_shutdown() {
  if (_shutdown_pending && (_state == state::ready || _state == state::pre_helo)) {
    _tmp.clear();
    _tmp.append("421 4.3.2 ").append(_hostname).append(" Error: service shutting down");
    close_with(_tmp);
  }
}

// EHLO/HELO: any printable token is accepted as the client's name (as Postfix does by
// default); control characters and spaces are refused so the name is safe in Received:.
void session::greet_client(std::string_view arg, bool esmtp) {
  bool ok = !arg.empty();
  for (char c : arg) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 32 || u >= 127) ok = false;
  }
  if (!ok) {
    reply_error(esmtp ? "501 5.5.4 Syntax: EHLO hostname" : "501 5.5.4 Syntax: HELO hostname");
    return;
  }
  reset_transaction();  // RFC 5321 4.1.4: EHLO/HELO also resets a transaction
  _env.helo.assign(arg);
  _env.esmtp = esmtp;
  transition(state::ready);
  _out.clear();
  if (!esmtp) {
    smtp::append_reply(_out, 250, {}, _hostname);
    _ev.send(_out);
    return;
  }
  char size[24];
  auto [end, ec] = std::to_chars(size, size + sizeof size, _params.max_message_size);
  (void)ec;
  std::string_view size_sv(size, size_t(end - size));
  _out.append("250-").append(_hostname).append("\r\n");
  _out.append("250-PIPELINING\r\n");
  _out.append("250-SIZE ").append(size_sv).append("\r\n");
  _out.append("250-8BITMIME\r\n");
  if (_params.starttls_available && !_tls) _out.append("250-STARTTLS\r\n");
  // RFC 8689 §2: offered only once the session is encrypted.
  if (_params.requiretls && _tls) _out.append("250-REQUIRETLS\r\n");
  // Never offered in the clear: a client that sees no AUTH will not send its password.
  if (_params.submission && _tls) _out.append("250-").append(smtp::sasl_ehlo_keyword).append("\r\n");
  _out.append("250 ENHANCEDSTATUSCODES\r\n");
  _ev.send(_out);
}

void session::on_ehlo(std::string_view arg) { greet_client(arg, true); }
void session::on_helo(std::string_view arg) { greet_client(arg, false); }

void session::on_mail(std::string_view arg) {
  if (_state == state::mail || _state == state::rcpt) {
    reply_error("503 5.5.1 Error: nested MAIL command");
    return;
  }
  if (_params.submission && _env.auth_user.empty()) {
    reply_error("530 5.7.0 Authentication required");
    return;
  }
  smtp::mail_parse p = smtp::parse_mail_from(arg);
  switch (p.err) {
    case smtp::path_error::none: break;
    case smtp::path_error::syntax: reply_error("501 5.5.4 Syntax: MAIL FROM:<address>"); return;
    case smtp::path_error::unknown_param:
    case smtp::path_error::bad_param:
      _tmp.clear();
      _tmp.append(smtp::reply_for(p.err)).append(": ");
      append_printable(_tmp, p.bad_param.substr(0, 64));
      reply_error(_tmp);
      return;
    default: reply_error(smtp::reply_for(p.err)); return;
  }
  if (p.value.requiretls && !(_tls && _params.requiretls)) {
    // RFC 8689 §2: REQUIRETLS is only valid on a session that is itself encrypted.
    reply_error("530 5.7.10 REQUIRETLS needs a TLS session");
    return;
  }
  if (p.value.has_size && p.value.size > _params.max_message_size) {
    reply("552 5.3.4 Message size exceeds fixed limit");
    return;
  }
  if (_params.submission && !_ev.sender_allowed(p.value.address)) {
    // As Postfix's reject_sender_login_mismatch words it.
    _tmp.clear();
    _tmp.append("553 5.7.1 <");
    append_printable(_tmp, p.value.address);
    _tmp.append(">: Sender address rejected: not owned by user ");
    append_printable(_tmp, std::string_view(_env.auth_user).substr(0, 100));  // a reply line <= 512
    reply(_tmp);
    return;
  }
  _env.mail_from.assign(p.value.address);
  _env.declared_size = p.value.size;
  _env.body_8bitmime = p.value.body == smtp::body_type::eight_bit_mime;
  _env.requiretls = p.value.requiretls;
  _rcpt_attempts = 0;
  transition(state::mail);
  reply("250 2.1.0 Ok");
}

void session::on_rcpt(std::string_view arg) {
  if (_state != state::mail && _state != state::rcpt) {
    reply_error("503 5.5.1 Error: need MAIL command");
    return;
  }
  ++_rcpt_attempts;
  smtp::rcpt_parse p = smtp::parse_rcpt_to(arg);
  switch (p.err) {
    case smtp::path_error::none: break;
    case smtp::path_error::syntax: reply_error("501 5.5.4 Syntax: RCPT TO:<address>"); return;
    case smtp::path_error::unknown_param:
    case smtp::path_error::bad_param:
      _tmp.clear();
      _tmp.append(smtp::reply_for(p.err)).append(": ");
      append_printable(_tmp, p.bad_param.substr(0, 64));
      reply_error(_tmp);
      return;
    default: reply_error(smtp::reply_for(p.err)); return;
  }
  if (_env.rcpt_to.size() >= _params.max_recipients) {
    reply("452 4.5.3 Too many recipients");
    return;
  }
  if (!_params.relay_allowed && _env.auth_user.empty()) {
    _out.clear();
    _out.append("554 5.7.1 <").append(p.value.address).append(">: Relay access denied\r\n");
    _ev.send(_out);
    return;
  }
  if (_ev.recipient_suppressed(p.value.address)) {
    // 5.1.1 as for an unknown mailbox: the address bounced as one (or the operator said so).
    _out.clear();
    _out.append("550 5.1.1 <").append(p.value.address).append(">: Recipient address suppressed\r\n");
    _ev.send(_out);
    return;
  }
  _env.rcpt_to.emplace_back(p.value.address);
  if (_state != state::rcpt) transition(state::rcpt);
  reply("250 2.1.5 Ok");
}

void session::on_data(std::string_view arg) {
  if (!arg.empty()) {
    reply_error("501 5.5.4 Syntax: DATA");
    return;
  }
  if (_state != state::rcpt) {
    // Every RCPT refused: say so (as Postfix does) rather than blame the sequence.
    reply_error(_state == state::mail && _rcpt_attempts > 0 ? "554 5.5.1 Error: no valid recipients"
                                                            : "503 5.5.1 Error: need RCPT command");
    return;
  }
  _scanner.reset(_params.max_message_size);
  _data_aborted = false;
  _env.tls = _tls;
  transition(state::data);
  reply("354 End data with <CR><LF>.<CR><LF>");
  _ev.begin_message(_env);
}

void session::finish_data() {
  data_scanner::error err = _scanner.err();
  if (err != data_scanner::error::none) {
    reset_transaction();
    transition(state::ready);
    reply(data_scanner::reply_for(err));
    maybe_shutdown();
    return;
  }
  transition(state::wait_result);
  _ev.end_message(_env);  // may call message_result() before returning
}

void session::message_result(std::string_view queue_id) {
  if (_state != state::wait_result) return;  // e.g. timed out meanwhile
  reset_transaction();
  transition(state::ready);
  if (queue_id.empty()) {
    reply("452 4.3.1 Insufficient system storage");
  } else {
    _junk = 0;  // a message went through: the client is doing real work
    _out.clear();
    _out.append("250 2.0.0 Ok: queued as ").append(queue_id).append("\r\n");
    _ev.send(_out);
  }
  maybe_shutdown();
}

void session::message_refused(std::string_view line) {
  if (_state != state::wait_result) return;
  reset_transaction();
  transition(state::ready);
  if (line.substr(0, 3) == "421") {
    close_with(line);  // 421: the server closes the channel (RFC 5321 §3.8)
    return;
  }
  reply(line);
  maybe_shutdown();
}

void session::on_rset(std::string_view arg) {
  if (!arg.empty()) {
    reply_error("501 5.5.4 Syntax: RSET");
    return;
  }
  reset_transaction();
  if (_state == state::mail || _state == state::rcpt) transition(state::ready);
  reply("250 2.0.0 Ok");
  maybe_shutdown();
}

void session::on_noop(std::string_view) { reply("250 2.0.0 Ok"); }

void session::on_quit(std::string_view arg) {
  if (!arg.empty()) {
    reply_error("501 5.5.4 Syntax: QUIT");
    return;
  }
  close_with("221 2.0.0 Bye");
}

void session::on_help(std::string_view) {
  reply(_params.submission ? "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP STARTTLS AUTH"
                           : "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP STARTTLS");
}

void session::on_vrfy(std::string_view) { reply("502 5.5.1 Error: command disabled"); }

void session::on_starttls(std::string_view arg) {
  if (_tls) {
    reply_error("503 5.5.1 Error: TLS already active");
    return;
  }
  if (!_params.starttls_available) {
    reply_error("502 5.5.1 Error: command not implemented");
    return;
  }
  if (!arg.empty()) {
    reply_error("501 5.5.4 Syntax: STARTTLS");
    return;
  }
  if (_state == state::mail || _state == state::rcpt) {
    reply_error("503 5.5.1 Error: MAIL transaction in progress");
    return;
  }
  transition(state::tls_pending);
  ++_tls_epoch;
  reply("220 2.0.0 Ready to start TLS");
  _ev.start_tls();
}

void session::tls_established() {
  if (_state != state::tls_pending) return;
  _tls = true;
  reset_transaction();
  _env.helo.clear();
  _env.esmtp = false;
  _env.auth_user.clear();  // never set before TLS; nothing learned in the clear survives
  _line_len = 0;
  _line_overflow = false;
  transition(state::pre_helo);  // RFC 3207: forget everything learned before TLS
  maybe_shutdown();
}

void session::timeout() {
  if (_state == state::closed) return;
  _tmp.clear();
  _tmp.append("421 4.4.2 ").append(_hostname).append(" Error: timeout exceeded");
  close_with(_tmp);
}

void session::input_overflow() {
  if (_state == state::closed) return;
  _tmp.clear();
  _tmp.append("421 4.7.0 ").append(_hostname).append(" Error: too much pipelined input");
  close_with(_tmp);
}

bool session::shutdown() {
  if (_state == state::closed) return true;
  if (_state == state::pre_helo || _state == state::ready || _state == state::tls_pending ||
      _state == state::auth) {
    _tmp.clear();
    _tmp.append("421 4.3.2 ").append(_hostname).append(" Error: service shutting down");
    close_with(_tmp);
    return true;
  }
  _shutdown_pending = true;
  return false;
}

// AUTH mechanism [initial-response] (RFC 4954). Relay listeners do not offer it (as Postfix
// with smtpd_sasl_auth_enable = no); submission listeners only under TLS.
void session::on_auth(std::string_view arg) {
  if (!_params.submission) {
    reply_error("503 5.5.1 Error: authentication not enabled");
    return;
  }
  if (!_tls) {
    reply_error(smtp::sasl_reply::encryption_required);
    return;
  }
  if (!_env.auth_user.empty()) {
    reply_error(smtp::sasl_reply::already);
    return;
  }
  if (_state != state::ready) {
    reply_error(smtp::sasl_reply::in_transaction);
    return;
  }
  smtp::auth_parse p = smtp::parse_auth(arg);
  if (p.error != smtp::auth_error::none) {
    reply_error(smtp::reply_of(p.error));
    return;
  }
  if (p.cmd.mech == smtp::sasl_mech::plain) {
    if (p.cmd.initial) {
      auto c = smtp::parse_plain(*p.cmd.initial);
      wipe(*p.cmd.initial);
      if (!c) {
        reply_error(smtp::sasl_reply::failed);
        return;
      }
      submit_auth(c->user, c->password);
      return;
    }
    _auth_step = auth_step::plain;
    transition(state::auth);
    reply(smtp::sasl_reply::empty_challenge);
    return;
  }
  // LOGIN: an initial response is the user name (what Outlook and swaks send).
  transition(state::auth);
  if (p.cmd.initial) {
    _auth_name = std::move(*p.cmd.initial);
    _auth_step = auth_step::login_password;
    reply(smtp::sasl_reply::login_password);
  } else {
    _auth_step = auth_step::login_user;
    reply(smtp::sasl_reply::login_username);
  }
}

// One client response line while a 334 is outstanding: "*" cancels, else strict base64.
void session::on_auth_response(std::string_view line) {
  smtp::response_parse r = smtp::parse_response(line);
  if (r.error != smtp::auth_error::none) {
    wipe(r.data);
    abandon_auth();
    reply_error(smtp::reply_of(r.error));
    return;
  }
  switch (_auth_step) {
    case auth_step::plain: {
      auto c = smtp::parse_plain(r.data);
      wipe(r.data);
      if (!c) {
        abandon_auth();
        reply_error(smtp::sasl_reply::failed);
        return;
      }
      submit_auth(c->user, c->password);
      return;
    }
    case auth_step::login_user:
      _auth_name = std::move(r.data);
      _auth_step = auth_step::login_password;
      transition(state::auth);
      reply(smtp::sasl_reply::login_password);
      return;
    case auth_step::login_password: {
      std::string user = std::move(_auth_name);
      submit_auth(user, r.data);
      return;
    }
  }
}

// Hand the credentials to the engine; the password is wiped once check_auth() returns.
void session::submit_auth(std::string_view user, std::string& password) {
  std::string name(user);
  _auth_name = std::move(name);
  transition(state::auth_wait);
  _ev.check_auth(_auth_name, password);  // may call auth_result() before returning
  wipe(password);
}

void session::abandon_auth() {
  wipe(_auth_name);
  if (_state == state::auth) transition(state::ready);
}

void session::auth_result(auth_answer a) {
  if (_state != state::auth_wait) return;  // timed out or closed meanwhile
  transition(state::ready);
  switch (a) {
    case auth_answer::ok:
      _env.auth_user = std::move(_auth_name);
      _auth_name.clear();
      reply(smtp::sasl_reply::ok);
      break;
    case auth_answer::failed:
      wipe(_auth_name);
      reply_error(smtp::sasl_reply::failed);
      break;
    case auth_answer::busy:
      wipe(_auth_name);
      reply(smtp::sasl_reply::temp_failure);
      break;
    case auth_answer::close:
      wipe(_auth_name);
      close_with(smtp::sasl_reply::too_many);
      return;
  }
  maybe_shutdown();
}

}  // namespace sr::inbound
