// Turns a parsed API request into the RFC 5322 message the spool intake takes: the raw
// form normalised (CRLF, Date and Message-ID added when missing), the structured form built
// as MIME (text/html as multipart/alternative, attachments in multipart/mixed as base64,
// RFC 2047 subject, RFC 2231 file names, 7bit/8bit/quoted-printable chosen per part).
// Pure: the caller gives the time, the host name and a unique id.
#pragma once
#include <ctime>
#include <string>
#include <string_view>

#include "sealrelay/api/request.hh"

namespace sr::api {

struct build_params {
  std::string_view hostname;  // right side of Message-ID (server.hostname)
  std::string_view unique;    // left side of Message-ID and in MIME boundaries: letters and
                              // digits only (e.g. the queue id), unique per message
  std::time_t now = 0;        // Date:
};

// Recipients beyond this many are not listed in To: (it says "undisclosed-recipients:;"):
// one stored body for a bulk request must not show every recipient to every other one.
inline constexpr std::size_t max_listed_recipients = 50;

struct built_message {
  std::string text;        // the message, CRLF line ends, no line over 998 octets
  bool eight_bit = false;  // some octet >= 0x80 (the spool meta's BODY=8BITMIME)
};

// Build the message for `r` (validated by parse_request); a 400/413 error when the raw
// content breaks RFC 5322 line rules or the result exceeds `l.max_message_size`.
struct build_result {
  std::optional<built_message> message;
  api_error err;
  bool ok() const { return message.has_value(); }
};
build_result build_message(const message_request& r, const build_params& p, const limits& l);

// Encode `s` as RFC 2047 B encoded-words (UTF-8) when it is not printable ASCII, each word
// at most 68 octets, words joined by CRLF SP (a folded header value); `s` as is otherwise.
std::string encode_header_text(std::string_view s, std::size_t first_line_used);

}  // namespace sr::api
