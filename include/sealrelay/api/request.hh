// The HTTP injection API's request side (POST /api/v1/messages, DESIGN §7), I/O-free: the
// Content-Type check and a strict, bounded parse of one JSON body into a message_request
// (raw RFC 5322 `content`, or the structured subject/text/html/attachments form), every
// refusal an api_error with its HTTP status (400, 413, 415) and the field it names.
// The caller (the HTTP listener) owns sockets, tokens and the spool intake.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sr::api {

// Limits the listener passes in: the SMTP side's (server.max_message_size, the recipients
// cap of one transaction), so a message is refused alike whichever way it comes in.
struct limits {
  std::size_t max_message_size = 50u << 20;  // bytes of the built message (413 above)
  std::size_t max_recipients = 1000;         // entries of `to` (400 above)
  std::size_t max_attachments = 100;         // entries of `attachments` (400 above)
};

// A refusal: HTTP status, a sentence for people, and the JSON field it concerns
// ("to[3]", "attachments[0].content"; empty when it is the body as a whole).
struct api_error {
  uint16_t status = 400;
  std::string error;
  std::string field;
};

struct attachment {
  std::string filename;      // UTF-8, no control characters
  std::string content_type;  // "type/subtype", lower case; application/octet-stream by default
  std::string data;          // the decoded bytes
};

struct message_request {
  std::string from;             // envelope sender (an RFC 5321 mailbox)
  std::vector<std::string> to;  // envelope recipients, in request order, at least one
  bool raw = false;             // `content` given: the message is `content` itself
  std::string content;          // raw form: the RFC 5322 message as sent (LF or CRLF)
  // Structured form (raw == false): at least one of text, html, attachments.
  std::optional<std::string> subject;
  std::optional<std::string> text;
  std::optional<std::string> html;
  std::vector<attachment> attachments;
};

// What parse_request() gives: a request, or the error to answer.
struct parse_result {
  std::optional<message_request> request;
  api_error err;  // meaningful only without a request
  bool ok() const { return request.has_value(); }
};

// The largest body worth reading for `l` (JSON escaping and base64 inflate a message by
// up to about 2x): the listener answers 413 from Content-Length above this, unread.
std::size_t max_body_bytes(const limits& l);

// Check the request's Content-Type value: application/json, optionally with
// "charset=utf-8"; anything else (or none) is a 415 error.
std::optional<api_error> check_content_type(std::optional<std::string_view> value);

// Parse and validate one request body: a JSON object with only the known keys, no key
// twice, nesting at most object > array > object, every address a valid mailbox, header
// fields without CR/LF, attachments in strict base64, sizes and counts within `l`.
parse_result parse_request(std::string_view body, const limits& l);

}  // namespace sr::api
