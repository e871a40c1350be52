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

// Return the header section of a message (up to and including the empty line).
std::string_view header_section(std::string_view message);

}  // namespace sr::queue
