// A message's header section (RFC 5322 §2.2), collected from the body bytes as the
// client sends them, so the engine can read the fields it acts on (From: for submission's
// sender check and DKIM's signing domain, TLS-Required: for RFC 8689, Message-ID: for the
// audit) without a second pass over the spooled message. Only the header section is
// copied (bounded by `cap`); bytes after the empty line are looked at once and ignored.
#pragma once
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sr::smtp {

class header_section {
 public:
  explicit header_section(size_t cap = 256 * 1024) : _cap(cap) {}

  // Forget the previous message.
  void clear();
  // Body bytes (CRLF lines, dot-unstuffed), in order; cheap once complete() or truncated().
  void feed(std::span<const std::byte> bytes);
  // The empty line that ends the section has been seen (a message without a body and
  // without that line is not complete: its fields are still readable).
  bool complete() const { return _complete; }
  // The section is longer than `cap`: the fields past it are not seen.
  bool truncated() const { return _truncated; }
  // The header fields as received (CRLF lines), without the empty line.
  std::string_view text() const { return std::string_view(_text).substr(0, _end); }

  // The first field named `name` (case-insensitive): its value unfolded (CRLFs removed)
  // and trimmed of surrounding white space; nullopt when absent.
  std::optional<std::string> field(std::string_view name) const;
  // How many fields are named `name`.
  size_t count(std::string_view name) const;

 private:
  template <class F>
  void each_field(F&& f) const;

  size_t _cap;
  std::string _text;
  size_t _end = 0;  // length of the fields in _text (up to the last complete CRLF)
  bool _complete = false;
  bool _truncated = false;
};

// The record meta a message's header section gives (inbound SMTP and the HTTP API alike):
// its Message-ID without angle brackets and white space ("" when absent or over 998
// octets, RFC 5322's line limit), and whether it asks "TLS-Required: No" (RFC 8689 §3).
std::string message_id(const header_section& h);
bool tls_required_no(const header_section& h);

// The addresses of an address-list value (From:, Sender:, To:): "Name <a@b>, c@d (C)",
// groups ("team: a@b, c@d;"), quoted local parts and comments handled. Each address is
// returned as written (local@domain) without angle brackets; an empty vector when none
// could be read.
std::vector<std::string> mailbox_addresses(std::string_view value);

}  // namespace sr::smtp
