// The control socket's wire format (sealrelay-queue <-> the running daemon), I/O-free.
// One request per connection: a single line "COMMAND [TARGET] [dsn]\n" of at most
// max_request_bytes; the daemon answers with one JSON object and closes. A reply is
// {"ok":true,...} (the command's fields) or {"ok":false,"error":"..."}.
// The tool's argv is turned into a request here too (parse_args), so the usage rules and
// the wire rules are one piece of code, tested without a daemon.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "sealrelay/util/result.hh"

namespace sr::control {

inline constexpr size_t max_request_bytes = 1024;
// What the tool reads of a reply at most (a list of a very large queue).
inline constexpr size_t max_reply_bytes = 256u << 20;
// The socket's name under server.state_dir.
inline constexpr std::string_view socket_name = "control.sock";

enum class command : uint8_t { list, show, flush, hold, release, remove, requeue, stats };
// Return the wire and command-line name ("delete" for remove).
std::string_view to_string(command c);

struct request {
  command cmd = command::list;
  std::string target;         // queue id (16 upper-case hex) or domain (lower case); "" = none
  bool all_deferred = false;  // delete --all-deferred
  bool dsn = false;           // delete ... --dsn
  bool json = false;          // tool side only (list/show/stats --json): not on the wire
};

// Return whether `s` is a queue id (16 upper-case hex digits; the spool's format).
bool is_queue_id(std::string_view s);

// Return the request line (with its '\n').
std::string encode(const request& r);
// Parse a request line (without its '\n'); the error says what is wrong.
sr::result<request> decode(std::string_view line);

// Parse the tool's COMMAND and its arguments (after the global options); the error is a
// usage message (the tool exits 2 with it).
sr::result<request> parse_args(std::span<const std::string> args);

// Return {"ok":false,"error":WHY} with its '\n'.
std::string error_reply(std::string_view why);

}  // namespace sr::control
