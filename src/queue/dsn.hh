// Delivery status notifications (RFC 3464 inside RFC 6522 multipart/report): the
// bounce a sender gets when recipients fail permanently or time out in the queue.
// Pure text building; the queue spools the result as a new message from <>.
#pragma once
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace sr::queue {

struct dsn_recipient {
  std::string address;       // the original recipient
  std::string status;        // enhanced status code, "5.1.1"
  std::string diagnostic;    // the remote's reply ("550 5.1.1 <x>: unknown user"), or ours
  std::string remote_mta;    // MX host that answered, "" when none did
  std::string action = "failed";  // "failed" (or "delayed" for warnings)
};

struct dsn_input {
  std::string_view reporting_mta;   // our hostname
  std::string_view queue_id;        // of the original message
  std::string_view original_sender; // envelope sender (the DSN goes there)
  std::time_t arrival = 0;          // when we accepted the original
  std::time_t now = 0;
  std::string_view original_message;  // its bytes; only the header section is returned
  std::vector<dsn_recipient> recipients;
  std::string_view reason_text;     // a human sentence for the first part
  // RFC 8689 §5: the original asked for REQUIRETLS, and this DSN goes out as ordinary
  // mail, so nothing of the original is returned (not even its header section); only its
  // Message-ID (below) says which message it was.
  bool redacted = false;
  std::string_view original_msg_id;  // without <>; named in the redacted DSN's text
};

// Return the whole DSN message (headers + multipart body, CRLF line ends).
std::string build_dsn(const dsn_input& in);

// At most this much of the original is read back from the spool for a DSN: the header
// section is all it returns, and a 40 MB message must not be loaded to quote its headers
// (Postfix bounds the same way with header_size_limit / bounce_size_limit).
inline constexpr uint64_t dsn_original_read_limit = 256 * 1024;

// Return the header section of a message (up to and including the empty line). Without
// an empty line (a header section longer than what was read, or no body) only whole lines
// are returned: up to and including the last CRLF, or nothing.
std::string_view header_section(std::string_view message);

}  // namespace sr::queue
