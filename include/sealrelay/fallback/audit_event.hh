// The sidecar's audit lines (DESIGN.md §7: "one audit line per notice, code request, view,
// download, expiry and retraction"). They go to the relay's own audit.file, one JSON object
// per line like the engine's delivery records (§5), appended with one write() each under
// O_APPEND so they never interleave with the engine's lines; `kind` is "escrow" and
// `event` says what happened. Thread-safe: the sidecar's workers and portal threads share
// one log.
#pragma once
#include <mutex>
#include <string>
#include <string_view>

#include "sealrelay/util/result.hh"

namespace sr::fallback {

struct audit_event {
  // notice | code-request | code-wrong | code-locked | view | download | expiry |
  // retraction | refused (a portal request for an unknown/expired/retracted/locked link)
  std::string event;
  std::string queue_id;  // the relay's id of the escrowed message, when known
  std::string msg_id;    // Message-ID without <>
  std::string from;      // the escrowed message's sender
  std::string rcpt;      // its recipient (the escrow record's)
  std::string ip;        // the portal client's address ("" for engine-side events)
  std::string detail;    // e.g. the attachment name, "tries left 3", the store error
};

// Append one JSON line for `e` (ending in '\n'): ts, kind "escrow", event and every
// non-empty field, strings escaped and cut as the engine's audit does.
void format_audit_event(const audit_event& e, std::string& out);

class audit_log {
 public:
  // Open (create, append) `path`; "" = no audit (every write is dropped).
  static result<audit_log> open(const std::string& path);
  audit_log() = default;
  audit_log(audit_log&& o) noexcept : _fd(o._fd) { o._fd = -1; }
  audit_log& operator=(audit_log&& o) noexcept;
  audit_log(const audit_log&) = delete;
  ~audit_log();
  // Write one line; a failed write is logged (the event is not lost silently) and dropped.
  void write(const audit_event& e);

 private:
  explicit audit_log(int fd) : _fd(fd) {}
  int _fd = -1;
  std::mutex _mu;  // one formatting buffer per write; the write() itself is atomic
};

}  // namespace sr::fallback
