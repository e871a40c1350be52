// SMTP command-line codec (RFC 5321 4.1): split a line (CRLF already removed) into verb and
// argument, look verbs up case-insensitively in a caller's dispatch table, and parse the
// MAIL FROM / RCPT TO paths and ESMTP parameters we support (SIZE, BODY, REQUIRETLS). Pure functions
// over string_views: no I/O, no allocation; results point into the input line.
#pragma once
#include <cstdint>
#include <span>
#include <string_view>

namespace sr::smtp {

// Command lines are at most 512 octets including CRLF (RFC 5321 4.5.3.1.4).
inline constexpr size_t max_command_line = 512;

struct command_line {
  std::string_view verb;  // as sent (case preserved)
  std::string_view arg;   // after the first run of spaces; trailing spaces removed
};

// Split `line` at the first space. The verb is never empty unless the line is blank.
command_line split_command(std::string_view line);

// Compare ASCII case-insensitively; `upper` must be upper case.
bool iequals(std::string_view s, std::string_view upper);

// Find the table entry whose `.verb` equals `verb` (case-insensitive), or nullptr.
// Entries are `{verb, handler, allowed_before_helo, ...}` structs owned by the caller.
template <typename Entry>
const Entry* find_verb(std::span<const Entry> table, std::string_view verb) {
  for (const Entry& e : table)
    if (iequals(verb, e.verb)) return &e;
  return nullptr;
}

enum class body_type : uint8_t { none, seven_bit, eight_bit_mime };

// Why a MAIL/RCPT argument was refused; reply_for() gives the SMTP reply.
enum class path_error : uint8_t {
  none,
  syntax,          // not "FROM:<...>" / "TO:<...>"             -> 501 5.5.4
  bad_sender,      // malformed reverse-path                    -> 501 5.1.7
  bad_recipient,   // malformed forward-path (or <>)            -> 501 5.1.3
  unknown_param,   // ESMTP keyword we do not support           -> 555 5.5.4
  bad_param,       // SIZE/BODY/REQUIRETLS with a bad value, or repeated -> 501 5.5.4
};

struct mail_from {
  std::string_view address;  // without <>; empty for the null sender
  uint64_t size = 0;         // SIZE=, 0 when absent; UINT64_MAX when it overflows
  bool has_size = false;
  body_type body = body_type::none;
  bool requiretls = false;   // REQUIRETLS (RFC 8689 §2): no value; the session checks TLS
};

struct rcpt_to {
  std::string_view address;  // without <>
};

struct mail_parse {
  path_error err = path_error::none;
  std::string_view bad_param;  // the offending "KEY[=VALUE]" for unknown_param/bad_param
  mail_from value;
};

struct rcpt_parse {
  path_error err = path_error::none;
  std::string_view bad_param;
  rcpt_to value;
};

// Parse the argument of MAIL ("FROM:<addr> [SIZE=n] [BODY=7BIT|8BITMIME] [REQUIRETLS]").
mail_parse parse_mail_from(std::string_view arg);
// Parse the argument of RCPT ("TO:<addr>"); no ESMTP parameters are supported.
rcpt_parse parse_rcpt_to(std::string_view arg);
// Check RFC 5321 Mailbox syntax (Local-part "@" Domain / address-literal), ASCII only.
bool valid_mailbox(std::string_view mailbox);
// Check a Domain (dot-separated LDH labels, at most 253 octets) as used in a mailbox or EHLO.
bool valid_domain(std::string_view domain);
// Check an address literal "[1.2.3.4]" / "[IPv6:...]" / "[tag:text]".
bool valid_address_literal(std::string_view lit);

// The SMTP reply (without CRLF) for a refused MAIL/RCPT argument.
std::string_view reply_for(path_error e);

}  // namespace sr::smtp
