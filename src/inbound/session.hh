// Inbound SMTP session (RFC 5321 server side) as an I/O-free state machine:
// the engine feeds received bytes and gets replies and events back through `events`.
// It never blocks and never allocates per byte; message body bytes are reported as
// spans into the caller's input buffer (dot-unstuffed in place), so the engine can
// hand the very same receive chunks to the spool (zero-copy).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sr::inbound {

// What the session needs to know about its listener and peer; fixed per connection.
struct session_params {
  std::string_view hostname;          // our EHLO / greeting name
  uint64_t max_message_size = 50ull << 20;
  unsigned max_recipients = 1000;
  unsigned max_errors = 20;           // bad/unknown commands before "421 4.7.0" and close
  bool starttls_available = false;    // advertise STARTTLS (listener tls=starttls, not yet in TLS)
  bool require_tls = false;           // refuse MAIL before STARTTLS (530 5.7.0)
  bool relay_allowed = false;         // client is in allow_relay_from (relay mode)
  bool tls_active = false;            // implicit TLS listener: already encrypted at start
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
  // mid-message: discard what body() handed over.
  virtual void abort_message() = 0;
  // Close the connection after flushing queued replies.
  virtual void close() = 0;
};

class session {
 public:
  session(const session_params& params, events& ev);
  // Queue the 220 greeting (or a 421/554 refusal when `refuse_reason` is non-empty).
  void greet();
  // Consume input; returns bytes consumed. Fewer than offered only while waiting for
  // message_result() or after close; the caller feeds the rest later.
  // Bytes are modified in place (dot-unstuffing).
  size_t feed(std::span<std::byte> in);
  // The outcome of end_message(): queue "250 2.0.0 Ok: queued as ID" or, when
  // `queue_id` is empty, "452 4.3.1 Insufficient system storage".
  void message_result(std::string_view queue_id);
  // TLS handshake done (after start_tls): the session resets to the pre-EHLO state.
  void tls_established();
  // Reply "421 4.4.2 ... timeout" and close (the engine's timers decide when).
  void timeout();
  // Reply "421 4.3.2 ... shutting down" and close when not inside a transaction.
  // Returns true when the session closed now, false when it will close after the
  // current transaction ends.
  bool shutdown();

  enum class state : uint8_t;  // defined in session.cc-visible header
  // True while the client is expected to send a command (idle timer applies).
  bool waiting_for_command() const;
  // True between 354 and the final dot.
  bool in_data() const;
  bool closed() const;

 private:
  struct impl;
  // The implementation decides the layout; the engine only uses the API above.
};

}  // namespace sr::inbound
