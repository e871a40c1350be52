// Inbound SMTP session (RFC 5321 server side) as an I/O-free state machine:
// the engine feeds received bytes and gets replies and events back through `events`.
// It never blocks and never allocates per byte; message body bytes are reported as
// spans into the caller's input buffer (dot-unstuffed in place), so the engine can
// hand the very same receive chunks to the spool (zero-copy).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/smtp/command.hh"
#include "sealrelay/smtp/data_scanner.hh"

namespace sr::inbound {

// What the session needs to know about its listener and peer; fixed per connection.
struct session_params {
  std::string_view hostname;          // our EHLO / greeting name (copied by the session)
  uint64_t max_message_size = 50ull << 20;
  unsigned max_recipients = 1000;
  unsigned max_errors = 20;           // bad/unknown commands before "421 4.7.0" and close
  unsigned max_junk_commands = 100;   // EHLO/HELO/RSET/NOOP/HELP/VRFY between messages before 421 (0 = no cap)
  bool starttls_available = false;    // advertise STARTTLS (listener tls=starttls, not yet in TLS)
  bool require_tls = false;           // refuse MAIL before STARTTLS (530 5.7.0)
  bool relay_allowed = false;         // client is in allow_relay_from (relay mode)
  bool tls_active = false;            // implicit TLS listener: already encrypted at start
  bool requiretls = true;             // advertise and accept REQUIRETLS under TLS (RFC 8689)
  // mode = "submission": AUTH PLAIN/LOGIN offered and accepted only under TLS; MAIL needs a
  // successful AUTH (530 5.7.0), its sender must be the user's (events::sender_allowed,
  // 553 5.7.1), and an authenticated client may relay (relay_allowed is not consulted).
  bool submission = false;
};

// The envelope of one transaction; valid from begin_message() to end/abort.
struct envelope {
  std::string helo;                   // as given in EHLO/HELO
  bool esmtp = false;                 // EHLO (vs HELO)
  std::string mail_from;              // without <>, "" for the null sender
  std::vector<std::string> rcpt_to;   // without <>
  uint64_t declared_size = 0;         // MAIL FROM SIZE=, 0 when absent
  bool body_8bitmime = false;         // BODY=8BITMIME
  bool tls = false;                   // transaction happened under TLS
  bool requiretls = false;            // MAIL FROM ... REQUIRETLS (RFC 8689; only under TLS)
  std::string auth_user;              // the AUTHenticated user (submission); "" = none.
                                      // Kept across transactions (not reset by RSET/EHLO)
};

// Callbacks the engine implements. All views are valid only during the call.
class events {
 public:
  virtual ~events() = default;
  // Queue reply bytes for the client (complete CRLF-terminated reply lines).
  virtual void send(std::string_view bytes) = 0;
  // STARTTLS accepted ("220" already queued): flush it, then start the TLS handshake.
  virtual void start_tls() = 0;
  // DATA accepted ("354" queued): a message body follows.
  virtual void begin_message(const envelope& env) = 0;
  // Unstuffed body bytes with CRLF line ends, pointing into the fed buffer.
  virtual void body(std::span<std::byte> bytes) = 0;
  // Final dot seen and the body passed every check: make it durable, then call
  // session::message_result(). The session reads no input until then.
  virtual void end_message(const envelope& env) = 0;
  // The body is rejected (bare LF/CR, too long, over size) or the connection ends
  // mid-message: discard what body() handed over. Called when the problem is found
  // (the reject reply follows at the final dot), or on timeout()/shutdown in DATA.
  virtual void abort_message() = 0;
  // Close the connection after flushing queued replies.
  virtual void close() = 0;
  // Submission AUTH: check `user`'s `password` and answer with session::auth_result()
  // (later, or from inside). The session reads no input until then. `password` is wiped
  // when the call returns: copy what must outlive it. Only sessions with params.submission
  // raise it.
  virtual void check_auth(std::string_view user, std::string_view password) {
    (void)user;
    (void)password;
  }
  // Submission: whether the authenticated user (envelope::auth_user) may use `address`
  // (without <>, "" = the null sender) as MAIL FROM. Only asked with params.submission.
  virtual bool sender_allowed(std::string_view address) {
    (void)address;
    return false;
  }
  // Whether `address` (without <>) is on the suppression list with action "refuse": then
  // RCPT is answered "550 5.1.1 <address>: Recipient address suppressed" (issue 14).
  virtual bool recipient_suppressed(std::string_view address) {
    (void)address;
    return false;
  }
};

class session {
 public:
  // Where the session is; every input byte is interpreted according to it.
  enum class state : uint8_t {
    pre_helo,     // connected (or TLS just established): EHLO/HELO expected
    ready,        // greeted, no transaction
    mail,         // MAIL accepted, no recipient yet
    rcpt,         // at least one recipient accepted
    data,         // between 354 and the final dot (body bytes, not commands)
    wait_result,  // end_message() raised; no input read until message_result()
    tls_pending,  // 220 to STARTTLS sent; input is discarded until tls_established()
    auth,         // a 334 challenge sent: the next line is a SASL response, not a command
    auth_wait,    // check_auth() raised; no input read until auth_result()
    closed,       // QUIT, 421, close(): input is ignored
  };
  // The engine's answer to check_auth().
  enum class auth_answer : uint8_t {
    ok,      // 235 2.7.0: the session is authenticated as that user
    failed,  // 535 5.7.8 (the engine already waited the limiter's delay)
    busy,    // 454 4.7.0: the password checkers are full, try again later
    close,   // 421 4.7.0 too many failures, and close
  };
  static const char* to_string(state s);

  // `params.hostname` is copied; `ev` must outlive the session.
  session(const session_params& params, events& ev);
  // Queue the 220 greeting, or, when `refuse_reply` is non-empty, that reply (a complete
  // line without CRLF, e.g. "421 4.7.0 host Error: too many connections") and close.
  void greet(std::string_view refuse_reply = {});
  // Consume input; returns bytes consumed. Fewer than offered only while waiting for
  // message_result(); after close (or STARTTLS) the rest of the input is consumed and ignored.
  // Bytes are modified in place (dot-unstuffing).
  size_t feed(std::span<std::byte> in);
  // The outcome of end_message(): queue "250 2.0.0 Ok: queued as ID" or, when
  // `queue_id` is empty, "452 4.3.1 Insufficient system storage". May be called from
  // inside end_message().
  void message_result(std::string_view queue_id);
  // Refuse the message of end_message() with `reply` (a complete line without CRLF, e.g.
  // "553 5.7.1 ..." when its From: is not the user's) instead of storing it. May be
  // called from inside end_message(). A "421" reply also closes the session.
  void message_refused(std::string_view reply);
  // The outcome of check_auth(); ignored unless the session waits for it. May be called
  // from inside check_auth().
  void auth_result(auth_answer a);
  // TLS handshake done (after start_tls): the session resets to the pre-EHLO state.
  void tls_established();
  // Reply "421 4.4.2 ... timeout" and close (the engine's timers decide when).
  void timeout();
  // Reply "421 4.7.0 ... too much pipelined input" and close: the client sent more than
  // the engine holds while a message is being stored (the engine decides when).
  void input_overflow();
  // Reply "421 4.3.2 ... shutting down" and close when not inside a transaction.
  // Returns true when the session closed now, false when it will close after the
  // current transaction ends.
  bool shutdown();

  state current_state() const { return _state; }
  // True while the client is expected to send a command (idle timer applies).
  bool waiting_for_command() const;
  // True between 354 and the final dot.
  bool in_data() const { return _state == state::data; }
  bool closed() const { return _state == state::closed; }
  // A command line has begun but its CRLF has not arrived (command timeout applies).
  bool partial_command() const { return _line_len > 0 || _line_overflow; }
  // TLS is active (implicit listener or after tls_established()).
  bool tls() const { return _tls; }
  // Protocol errors counted so far (toward max_errors).
  unsigned errors() const { return _errors; }
  // The authenticated user ("" before a successful AUTH).
  const std::string& auth_user() const { return _env.auth_user; }

  // One row of the verb dispatch table (Postfix-style; the table is in session.cc).
  struct command_entry {
    std::string_view verb;                          // upper case
    void (session::*handler)(std::string_view arg);
    bool allowed_before_helo;                       // else 503 5.5.1 before EHLO/HELO
    bool allowed_before_tls;                        // else 530 5.7.0 when require_tls
    bool junk;                                      // reply-only: counts toward max_junk_commands
  };

 private:
  static const command_entry _commands[];
  static const size_t _command_count;
  void transition(state to);
  void reply(std::string_view line);  // one complete reply line without CRLF
  void reply_error(std::string_view line);  // a protocol error: counts toward max_errors
  void close_with(std::string_view line);
  void process_line(std::string_view line);
  void reset_transaction();
  void finish_data();
  void maybe_shutdown();

  void on_ehlo(std::string_view arg);
  void on_helo(std::string_view arg);
  void on_mail(std::string_view arg);
  void on_rcpt(std::string_view arg);
  void on_data(std::string_view arg);
  void on_rset(std::string_view arg);
  void on_noop(std::string_view arg);
  void on_quit(std::string_view arg);
  void on_help(std::string_view arg);
  void on_vrfy(std::string_view arg);
  void on_starttls(std::string_view arg);
  void on_auth(std::string_view arg);
  void on_auth_response(std::string_view line);
  void submit_auth(std::string_view user, std::string& password);
  void abandon_auth();
  void greet_client(std::string_view arg, bool esmtp);

  session_params _params;
  std::string _hostname;
  events& _ev;
  state _state = state::pre_helo;
  bool _tls = false;
  bool _shutdown_pending = false;
  bool _data_aborted = false;  // abort_message() already raised for this body
  unsigned _errors = 0;
  unsigned _junk = 0;       // junk commands since the last queued message
  unsigned _tls_epoch = 0;  // bumped at each accepted STARTTLS
  unsigned _rcpt_attempts = 0;  // RCPTs tried in this transaction (accepted or not)
  envelope _env;
  // AUTH in progress: which response the client owes, and the user named so far.
  enum class auth_step : uint8_t { plain, login_user, login_password };
  auth_step _auth_step = auth_step::plain;
  std::string _auth_name;
  smtp::data_scanner _scanner;
  std::string _out;  // the reply being sent, reused
  std::string _tmp;  // a reply line being built (never aliases _out), reused
  // A command line split across feeds (at most 511 bytes: 510 text + CR).
  std::array<char, smtp::max_command_line - 1> _line{};
  size_t _line_len = 0;
  bool _line_overflow = false;  // over 512 octets: discard up to LF, then 500 5.5.2
};

}  // namespace sr::inbound
