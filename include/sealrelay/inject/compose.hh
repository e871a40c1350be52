// The one place an HTTP API request becomes a spool message (DESIGN §7): the message built
// by api::build_message (raw content CRLF-normalised, or MIME), a Received: header that
// names the token by its position in the tokens file (never its value) and the HTTP(S) leg,
// and the record's meta: one record for every recipient, so a bulk request stores its body
// once. Pure: the caller gives the queue id, the time and the connection's facts.
#pragma once
#include <cstddef>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include "sealrelay/api/mime.hh"
#include "sealrelay/api/request.hh"
#include "sealrelay/spool/record.hh"

namespace sr::inject {

// What compose() needs besides the request: who sent it, over what, under which id.
struct compose_params {
  std::string_view hostname;     // server.hostname (Received: by, Message-ID right side)
  std::string_view queue_id;     // from the intake's next_queue_id()
  std::string_view client_ip;    // the HTTP client's address
  std::size_t token_index = 0;   // the token's 0-based position in http.tokens_file
  bool tls = false;              // HTTPS
  std::string_view tls_version;  // "TLSv1.3" (tls only)
  std::string_view cipher;       // IANA name (tls only)
  unsigned cipher_bits = 0;
  std::time_t now = 0;           // Date: when missing, Received: date
};

// A message ready for spool::intake::submit_owned().
struct composed {
  spool::message_meta meta;
  std::string text;  // Received: + the built message, CRLF line ends
};

struct compose_result {
  std::optional<composed> message;
  api::api_error err;  // meaningful only without a message (400 or 413)
  bool ok() const { return message.has_value(); }
};

// Build the spool message for `r` (validated by api::parse_request) within `l`.
compose_result compose(const api::message_request& r, const compose_params& p, const api::limits& l);

// Return the name logs, Received: and the record's auth_user give a token: "api-token-N",
// N its 1-based line position among the file's tokens.
std::string token_name(std::size_t token_index);

}  // namespace sr::inject
