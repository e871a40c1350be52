// The wire protocol between sealrelay and its fallback sidecar (issue 9: "a versioned,
// length-prefixed protocol" over fallback.socket). Pure codec: frames in, frames out, no I/O.
// A frame is a 4-byte big-endian length (of what follows, at most max_frame), a version
// byte, a type byte and the type's fields: integers big-endian, strings and lists as a
// 4-byte count and their items. The message itself never crosses the socket: a hand-off
// names its spool record (segment, offset, length) and the sidecar reads it there.
// Decoding is strict: a wrong version, an unknown type, a short or over-long field, or
// trailing bytes end the connection (decoder::failed()).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace sr::fallback::wire {

inline constexpr uint8_t version = 1;
inline constexpr uint32_t max_frame = 1u << 20;  // a hand-off with 1,000 recipients fits easily

// One fallback method of a chain (DESIGN.md §4 `fallback`).
enum class method : uint8_t { pgp = 1, smime = 2, escrow = 3, defer = 4 };

// What became of one recipient (DESIGN.md §5 outcome); sent only once it is durable.
enum class outcome : uint8_t {
  pgp = 1,          // encrypted to the recipient's key and spooled for delivery
  smime = 2,        // encrypted to the recipient's certificate and spooled
  escrowed = 3,     // stored in escrow, the notice spooled
  defer = 4,        // the chain reached "defer": keep the message, retry over TLS
  failed = 5,       // the sidecar could not handle it now (store down, ...): keep and retry
};

// engine -> sidecar, first frame: who is talking.
struct hello {
  uint32_t engine_pid = 0;
  std::string node;  // server.hostname
};
// sidecar -> engine, the answer to hello.
struct hello_ok {
  std::string sidecar_version;
};
// engine -> sidecar: one message of one recipient domain to handle.
struct handoff {
  uint64_t request_id = 0;          // echoed in the result; unique per engine connection
  std::string queue_id, from, domain;
  std::vector<std::string> rcpts;   // without <>
  std::string segment;              // the spool record holding the message
  uint64_t offset = 0, length = 0;
  uint8_t reason = 0;               // report::reason of the TLS failure
  std::vector<method> chain;        // the policy's fallback chain, in order
};
// A mail the sidecar made (PGP/MIME, S/MIME, escrow notice, code mail) for the engine to
// spool through its intake API: the finished RFC 5322 bytes are in the file `path` (under
// the sidecar's outbox, complete before the frame is sent); the engine reads it, spools it
// and then unlinks it. `kind` is a report::message_kind value (the spool record's kind).
struct output {
  uint8_t kind = 0;
  std::string from;                 // envelope sender ("" = null sender)
  std::vector<std::string> rcpts;   // without <>
  std::string msg_id;               // its Message-ID without <> (audit)
  std::string path;
};
// sidecar -> engine: what became of every recipient of a hand-off, in its rcpts order, and
// the mails that must be durable in the spool before those outcomes count. The engine
// spools every output first and only then marks the recipients done; if it cannot, every
// recipient stays queued (handled again later: twice at worst, never zero times).
struct result {
  uint64_t request_id = 0;
  std::vector<outcome> outcomes;
  std::string detail;               // for the log ("no key for bob@…, escrowed")
  std::vector<output> outputs;
};
// sidecar -> engine: spool one mail that no hand-off asked for (the portal's code mail).
struct submit {
  uint64_t submit_id = 0;           // echoed in submitted; unique per sidecar connection
  output mail;
};
// engine -> sidecar: the answer to submit, once the mail is durable (ok) or refused.
struct submitted {
  uint64_t submit_id = 0;
  bool ok = false;
  std::string detail;               // why not, when !ok
};
// engine -> sidecar: the sender retracts every escrowed copy of a Message-ID (the admin
// endpoint POST /escrow/retract).
struct retract {
  uint64_t request_id = 0;
  std::string msg_id;               // without <>
};
// sidecar -> engine: the answer to retract.
struct retracted {
  uint64_t request_id = 0;
  bool ok = false;                  // false: the store failed (detail says why)
  uint32_t count = 0;               // escrow records retracted (0: none had that Message-ID)
  std::string detail;
};
// Either side: liveness.
struct ping {
  uint64_t nonce = 0;
};
struct pong {
  uint64_t nonce = 0;
};

using frame = std::variant<hello, hello_ok, handoff, result, ping, pong, submit, submitted,
                           retract, retracted>;

// Append the encoding of `f` to `out`.
void encode(const frame& f, std::string& out);

// Splits a byte stream into frames.
class decoder {
 public:
  // Add received bytes.
  void feed(std::string_view bytes) { _buf.append(bytes); }
  // Return the next complete frame, or nullopt when more bytes are needed or the stream
  // is broken (then failed() says why and every later call returns nullopt).
  std::optional<frame> next();
  bool failed() const { return !_error.empty(); }
  const std::string& error() const { return _error; }

 private:
  std::string _buf;
  size_t _off = 0;
  std::string _error;
};

}  // namespace sr::fallback::wire
