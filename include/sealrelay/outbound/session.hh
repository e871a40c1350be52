// Outbound SMTP client session (RFC 5321, 3207, 2920, 1870, 1652) for one TCP connection
// to one MX host, as an I/O-free state machine: the engine feeds received bytes and gets
// command bytes, body iovecs and events back through `events`. TLS decisions are asked of
// a `tls_decider` at three points (tls_decider.hh); the session owns no socket, timer or
// TLS object. Everything one call wants sent leaves as a single send() (one pipelined
// group = one send), so with TCP_NODELAY each group is one segment and Nagle never waits.
#pragma once
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/outbound/tls_decider.hh"
#include "sealrelay/smtp/reply.hh"

namespace sr::outbound {

// Fixed for the connection.
struct session_params {
  std::string_view hostname;  // our EHLO/HELO name (copied by the session)
};

// What the last EHLO announced; reset by STARTTLS (RFC 3207 4.2: forget pre-TLS state).
struct capabilities {
  bool esmtp = false;                  // EHLO accepted (false after the HELO fallback)
  bool pipelining = false;             // RFC 2920
  bool size = false;                   // RFC 1870
  uint64_t size_limit = 0;             // "SIZE n"; 0 = no fixed limit announced
  bool eight_bit_mime = false;         // RFC 1652
  bool starttls = false;               // RFC 3207
  bool enhanced_status_codes = false;  // RFC 2034
  bool chunking = false;               // RFC 3030: recorded, never used (no BDAT)
  bool requiretls = false;             // RFC 8689 (only meaningful over TLS)
};

// One message to send. Everything it points to must stay valid until transaction_done();
// the body bytes until the engine has finished writing what send_body() handed it.
struct message {
  std::string_view mail_from;                // without <>; "" = null sender
  std::span<const std::string_view> rcpts;   // without <>; at least one; results keep this order
  std::span<const iovec> body;               // raw bytes: CRLF line ends, NOT dot-stuffed
  bool eight_bit = false;                    // received as BODY=8BITMIME
  bool requiretls = false;                   // MAIL FROM ... REQUIRETLS (RFC 8689): only over TLS
                                             // to a server that offered it, else refused
  // A large message the engine streams itself (body empty): its size for SIZE=; at the
  // 354 the session calls send_body() with no iovecs and the engine sends the body
  // dot-stuffed and terminated (outbound/body.hh's stuff_window/stuff_end) in windows.
  uint64_t stream_size = 0;
};

// Final state of a recipient after a transaction.
enum class rcpt_status : uint8_t {
  delivered,  // the final dot got 2xx
  deferred,   // 4xx (or the connection failed): retry later
  bounced,    // 5xx: permanent
};

// Where a result came from (which reply decided it).
enum class stage : uint8_t {
  local,       // decided here without asking the server (SIZE over the server's limit)
  mail,        // reply to MAIL FROM
  rcpt,        // reply to this recipient's RCPT TO (or, message-level: every RCPT failed)
  data,        // reply to DATA
  dot,         // reply to the end-of-data dot
  connection,  // no reply: timeout, lost connection, protocol error
};
const char* to_string(stage s);
const char* to_string(rcpt_status s);

// One recipient's outcome. `text` is the whole reply, lines joined by a space, without the
// code; `enhanced` is its leading RFC 3463 code (a prefix of text) or "" when absent.
struct rcpt_result {
  rcpt_status status = rcpt_status::deferred;
  stage where = stage::rcpt;
  unsigned code = 0;  // 0 when no reply applies (stage connection without a reply)
  std::string_view enhanced;
  std::string_view text;
};

// A finished transaction; every view is valid only during transaction_done().
struct txn_result {
  std::span<const rcpt_result> rcpts;  // one per message::rcpts, same order
  // The message-level reply: the final dot's, or the failing MAIL/DATA reply, or the last
  // RCPT reply when every recipient failed, or the local/connection reason.
  stage where = stage::dot;
  unsigned code = 0;
  std::string_view enhanced;
  std::string_view text;
  bool body_sent = false;  // message bytes went out (send_body was raised)
  unsigned delivered = 0, deferred = 0, bounced = 0;
};

// Why the connection ended.
enum class close_kind : uint8_t {
  quit,        // quit() after idle: the normal end
  remote,      // the server refused: bad greeting, EHLO/HELO failure, 421 at any point
  tls_policy,  // the tls_decider said abort (QUIT was sent, no MAIL ever was)
  undecided,   // the tls_decider said defer: it cannot judge the session (QUIT sent, no MAIL);
               // an ordinary retry, never a TLS failure
  tls_failed,  // the engine reported tls_failed()
  protocol,    // malformed or unexpected reply (no QUIT once the stream is out of sync)
  lost,        // connection_lost(): EOF or I/O error
  timeout,     // timeout(): the engine's phase timer fired
};
const char* to_string(close_kind k);

// The closed() event; views valid only during the call.
struct close_info {
  close_kind kind = close_kind::quit;
  report::reason reason = report::reason::none;  // quit, remote_4xx, remote_5xx, protocol_error,
                              // connection_lost, timeout, the decider's or tls_failed()'s reason
  unsigned code = 0;          // the remote reply behind it (greeting, EHLO, STARTTLS, 421), 0 if none
  std::string_view enhanced;
  std::string_view text;      // that reply's text, lines joined by a space
};

// Callbacks the engine implements. Do not destroy the session inside one (post it).
class events {
 public:
  virtual ~events() = default;
  // Write command bytes (complete CRLF lines; one pipelined group at a time). The view is
  // valid only during the call.
  virtual void send(std::string_view bytes) = 0;
  // Write the dot-stuffed, terminated message. The iovec array stays valid until the next
  // send_message() or the session's end; the bytes are the message's and static strings.
  // Empty for a message with stream_size: the engine sends the body from its own source.
  virtual void send_body(std::span<const iovec> iov) = 0;
  // STARTTLS got 220: run the client handshake, then call tls_done() or tls_failed().
  // Any plaintext received after the 220 has already been dropped (RFC 3207 6).
  virtual void start_tls() = 0;
  // A transaction ended; the outcome of every recipient is final for this attempt. Start
  // the next one from idle(), not from here (send_message() refuses). After a
  // 421 or a failure without reply, closed() follows instead of idle().
  virtual void transaction_done(const txn_result& result) = 0;
  // Ready for send_message() or quit(); may call either from inside this callback.
  virtual void idle() = 0;
  // The session is over: flush what was sent, then close the socket. Always the last event.
  virtual void closed(const close_info& info) = 0;
};

// Where the session is; each phase except idle/tls_handshake/closed waits for one reply.
// rfc5321_timeout_s() gives the timeout RFC 5321 4.5.3.2 (or Postfix) uses for it.
enum class phase : uint8_t {
  greeting,       // connected, waiting for the 220 banner (4.5.3.2.1: 5 min)
  ehlo,           // EHLO sent (Postfix smtp_helo_timeout: 5 min)
  helo,           // HELO sent after EHLO got 500/502 (5 min)
  starttls,       // STARTTLS sent, waiting for 220 (5 min)
  tls_handshake,  // start_tls() raised; waiting for tls_done()/tls_failed() (engine: 5 min)
  idle,           // nothing outstanding; send_message() or quit() (engine's reuse limit)
  rset,           // RSET sent before the next MAIL (Postfix smtp_rset_timeout: 20 s)
  mail,           // MAIL FROM reply expected next (4.5.3.2.2: 5 min)
  rcpt,           // an RCPT TO reply expected next (4.5.3.2.3: 5 min)
  data,           // DATA sent, waiting for 354 (4.5.3.2.4: 2 min)
  dot,            // body handed to send_body(), waiting for the final reply (4.5.3.2.6: 10 min;
                  // the engine applies 4.5.3.2.5's 3 min per body write)
  quit,           // QUIT sent, waiting for 221 or EOF (5 min)
  closed,         // closed() raised; everything is ignored
};
const char* to_string(phase p);
// The timeout in seconds for `p` (0 for idle and closed: the engine decides).
unsigned rfc5321_timeout_s(phase p);

class session {
 public:
  // `hostname` is copied; `ev` and `decider` must outlive the session.
  session(const session_params& params, events& ev, tls_decider& decider);
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  // Consume received bytes (any split). In tls_handshake and closed the input is dropped.
  void feed(std::string_view in);
  // Report the handshake after start_tls(): asks the decider, then EHLO again or QUIT.
  void tls_done(const tls_outcome& outcome);
  // Report a failed handshake: closed(tls_failed, reason) without QUIT (the peer is mid-TLS).
  void tls_failed(report::reason reason);
  // Start a transaction (only in idle, with at least one recipient and no CR/LF/NUL in any
  // address; false otherwise). RSET goes first when the previous transaction ended before
  // its final-dot reply. A body over the server's SIZE limit is bounced here (5.3.4):
  // transaction_done() and idle() are then raised from inside this call.
  bool send_message(const message& msg);
  // Send QUIT (only in idle; false otherwise); closed(quit) follows the 221 or EOF.
  bool quit();
  // The engine's timer for the current phase fired: pending recipients are deferred, closed(timeout).
  void timeout();
  // EOF or I/O error: pending recipients are deferred, closed(lost) (or the QUIT reason).
  void connection_lost();

  // Where the session is (the engine picks its timer from it).
  outbound::phase phase() const { return _phase; }
  // True once tls_done() reported a handshake: every later byte (QUIT too) is encrypted.
  bool tls_active() const { return _tls; }
  // The capabilities of the current EHLO (empty before it and after HELO).
  const capabilities& caps() const { return _caps; }
  // True when the next send_message() starts with RSET.
  bool rset_pending() const { return _need_rset; }
  // Transactions finished on this connection (for messages_per_conn).
  unsigned transactions() const { return _transactions; }

 private:
  // One recipient of the current transaction (reused across transactions).
  struct slot {
    rcpt_status status = rcpt_status::deferred;
    stage where = stage::rcpt;
    bool final = false;   // outcome known (failed RCPT, or decided by a later stage)
    bool own = false;     // decided by its own RCPT reply (else by the message-level reply)
    unsigned code = 0;
    std::string text;     // the RCPT reply's text
    size_t enh_len = 0;
  };
  // Flushes `_out` as one send() when the outermost public call returns.
  struct batch {
    explicit batch(session& s);
    ~batch();
    session& _s;
  };

  void transition(outbound::phase to);
  void flush();
  void on_reply(const smtp::reply& r);
  void on_greeting(const smtp::reply& r);
  void on_ehlo(const smtp::reply& r);
  void on_helo(const smtp::reply& r);
  void on_starttls(const smtp::reply& r);
  void on_rset(const smtp::reply& r);
  void on_mail(const smtp::reply& r);
  void on_rcpt(const smtp::reply& r);
  void on_data(const smtp::reply& r);
  void on_dot(const smtp::reply& r);
  void after_greeting_exchange();
  void go_idle();
  void send_ehlo();
  void send_mail();
  void send_rcpt(size_t i);
  void parse_capabilities(const smtp::reply& r);
  // Settle every recipient not final yet with the message-level reply in _msg_*.
  void settle_pending(stage where, rcpt_status status);
  void set_message_reply(stage where, const smtp::reply& r);
  void set_message_local(stage where, unsigned code, std::string_view enhanced, std::string_view text);
  // Raise transaction_done and reset the transaction; then idle() when `then_idle`.
  void end_transaction(bool then_idle);
  bool any_pending() const;
  // Close: with QUIT (wait for 221) or at once; `r` is the reply behind it, if any.
  void close_with(close_kind kind, report::reason reason, const smtp::reply* r, bool send_quit);
  void finish_close();
  // A reply ended the connection from the server's side (421), or a failure without reply.
  void fail_connection(close_kind kind, report::reason reason, const smtp::reply* r);

  std::string _hostname;
  events& _ev;
  tls_decider& _decider;
  outbound::phase _phase = outbound::phase::greeting;
  smtp::reply_parser _parser;
  capabilities _caps;
  bool _tls = false;
  bool _need_rset = false;
  bool _in_done = false;     // inside transaction_done(): no new transaction or QUIT yet
  bool _drop_input = false;  // STARTTLS 220 seen: the rest of this feed is plaintext injection
  unsigned _depth = 0;       // nesting of public calls (flush at the outermost)
  unsigned _transactions = 0;
  std::string _out;          // command bytes of the current call, one send()

  // The current transaction.
  message _msg;
  bool _active = false;      // between send_message() and transaction_done()
  bool _pipelined = false;
  bool _rset_sent = false;   // this transaction began with RSET
  bool _mail_failed = false;
  bool _lone_dot = false;    // DATA got 354 with no recipient accepted: "." only (RFC 2920 3.1)
  bool _body_sent = false;
  uint64_t _body_size = 0;   // body bytes before stuffing (SIZE=)
  size_t _rcpt_next = 0;     // index of the next RCPT reply
  size_t _accepted = 0;      // RCPTs answered 2xx
  std::vector<slot> _slots;
  std::vector<rcpt_result> _results;
  std::vector<iovec> _iov;
  stage _msg_where = stage::dot;
  unsigned _msg_code = 0;
  std::string _msg_text;
  size_t _msg_enh_len = 0;

  // Why the connection ends (kept while QUIT is in flight).
  close_kind _close_kind = close_kind::quit;
  report::reason _close_reason = report::reason::none;
  unsigned _close_code = 0;
  std::string _close_text;
  size_t _close_enh_len = 0;
};

}  // namespace sr::outbound
