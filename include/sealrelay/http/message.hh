// A pure HTTP/1.1 codec (RFC 9112), no I/O: request and response parsers that take bytes
// as they arrive, and writers that append a request or response to a string. Used by the
// admin endpoint; later by the MTA-STS fetch (client side), the HTTP API and the portal.
// Parsers enforce limits (line, head, header count, body) and refuse what could smuggle
// a request: both Content-Length and Transfer-Encoding, conflicting lengths, obs-fold.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sr::http {

// Why a message was refused; status_for() gives the answer a server sends.
enum class error : uint8_t {
  none,
  bad_start_line,       // malformed request or status line
  bad_version,          // not HTTP/1.0 or HTTP/1.1
  line_too_long,        // request/status line over limits::max_line
  head_too_large,       // start line + headers over limits::max_head
  too_many_headers,     // over limits::max_headers
  bad_header,           // malformed field line, obs-fold, bare CR
  bad_length,           // Content-Length not a number, or several that differ
  ambiguous_length,     // Content-Length and Transfer-Encoding together
  unsupported_encoding, // a transfer coding other than "chunked"
  bad_chunk,            // malformed chunked body
  body_too_large,       // over limits::max_body
  truncated,            // the peer closed before the message ended
};

// Return the token for logs: "bad-start-line", "body-too-large", ...
const char* to_string(error e);
// Return the status code a server answers for a request refused with `e` (400 when none fits).
int status_for(error e);
// Return the standard reason phrase of `code` ("OK", "Not Found"; "Unknown" otherwise).
std::string_view reason_phrase(int code);

struct header {
  std::string_view name;   // as sent (compare with sr::iequals, util/text.hh)
  std::string_view value;  // without surrounding whitespace
};

struct limits {
  size_t max_line = 8192;         // request or status line
  size_t max_head = 16384;        // start line + every field line
  size_t max_headers = 100;
  size_t max_body = 1u << 20;     // decoded body bytes (64 KiB for an MTA-STS policy)
};

// Three-way parser result.
enum class parse_status : uint8_t {
  need_more,  // feed more bytes (or feed_eof())
  done,       // a whole message is available; reset() before the next one
  failed,     // refused: see err(); the connection cannot be reused
};

// What request and response parsers share: head fields, framing and the body.
class message_parser {
 public:
  // Return the parse state after the last feed.
  parse_status status() const { return _status; }
  error err() const { return _err; }
  // Return HTTP/1.x's minor version (0 or 1).
  int version_minor() const { return _minor; }
  const std::vector<header>& headers() const { return _headers; }
  // Return the first field called `name` (case-insensitive), if any.
  std::optional<std::string_view> find(std::string_view name) const;
  // Return the decoded body (Content-Length or chunked).
  std::string_view body() const { return _body; }
  // Return true when the connection may carry another message after this one.
  bool keep_alive() const { return _keep_alive; }
  // Return true once the start line and fields are parsed (the body may still be coming):
  // a server may answer "100 Continue" or refuse before reading the body.
  bool head_done() const { return _phase != phase::head; }

 protected:
  explicit message_parser(limits l) : _limits(l) {}
  // Consume bytes; returns how many were used (the rest belongs to the next message).
  size_t feed_bytes(std::string_view in);
  void reset_message();
  // Subclass hooks: parse the start line; decide framing when the body has no length.
  virtual bool on_start_line(std::string_view line) = 0;
  virtual bool body_until_eof() const = 0;  // response: read to EOF; request: no body
  virtual bool no_body() const = 0;         // e.g. HEAD response, 204, 304
  parse_status fail(error e);
  bool parse_version(std::string_view v);
  // The peer closed: done when the body runs to EOF, else truncated (unless already done).
  parse_status eof();

  limits _limits;
  parse_status _status = parse_status::need_more;
  error _err = error::none;
  int _minor = 1;
  bool _to_eof = false;   // body runs until the peer closes

 private:
  enum class phase : uint8_t {
    head,         // collecting the start line and fields
    body_length,  // Content-Length bytes left in _left
    chunk_size,   // reading a chunk-size line
    chunk_data,   // _left bytes of chunk data
    chunk_crlf,   // the CRLF after chunk data
    trailers,     // trailer fields until an empty line
    body_eof,     // until feed_eof()
    done,
  };
  bool parse_head();
  bool take_line(std::string_view& in, size_t& used);
  bool take_body(std::string_view& in, size_t& used);

  phase _phase = phase::head;
  std::string _head;          // start line + fields; header views point into it
  std::vector<header> _headers;
  std::string _body;
  std::string _line;          // a chunk-size or trailer line being collected
  uint64_t _left = 0;
  size_t _scan = 0;           // where to look for the end of the head next
  bool _keep_alive = true;
};

// Server side: one request at a time; pipelined bytes after it are left to the caller.
class request_parser : public message_parser {
 public:
  explicit request_parser(limits l = {}) : message_parser(l) {}
  // Consume bytes of a request; returns how many were used.
  size_t feed(std::string_view in) { return feed_bytes(in); }
  // Forget the request just parsed, ready for the next one on the same connection.
  void reset();
  std::string_view method() const { return _method; }
  // Return the request target as sent ("/metrics?x=1").
  std::string_view target() const { return _target; }
  // Return the target's path ("/metrics"), without the query.
  std::string_view path() const { return std::string_view(_target).substr(0, _target.find('?')); }

 private:
  bool on_start_line(std::string_view line) override;
  bool body_until_eof() const override { return false; }
  bool no_body() const override { return false; }
  std::string _method;
  std::string _target;
};

// Client side: the response to one request. A body without a length runs to EOF.
class response_parser : public message_parser {
 public:
  explicit response_parser(limits l = {}) : message_parser(l) {}
  // Say the request was HEAD (its response has no body) before feeding.
  void expect_no_body(bool v) { _head_request = v; }
  // Consume bytes of a response; returns how many were used.
  size_t feed(std::string_view in) { return feed_bytes(in); }
  // The peer closed: completes a body read to EOF, otherwise the response is truncated.
  parse_status feed_eof();
  // Forget the response, ready for the next one on the same connection.
  void reset();
  int code() const { return _code; }
  std::string_view reason() const { return _reason; }

 private:
  bool on_start_line(std::string_view line) override;
  bool body_until_eof() const override { return true; }
  bool no_body() const override;
  int _code = 0;
  std::string _reason;
  bool _head_request = false;
};

// Append a response: status line, `fields`, Content-Length, "Connection: close" unless
// keep_alive, then the body.
void write_response(std::string& out, int code, std::span<const header> fields,
                    std::string_view body, bool keep_alive);
// Append a request for `target` on `host` (Host field first), `fields`, and a body with
// its Content-Length when non-empty (or when the method is POST/PUT).
void write_request(std::string& out, std::string_view method, std::string_view target,
                   std::string_view host, std::span<const header> fields,
                   std::string_view body = {}, bool keep_alive = true);

}  // namespace sr::http
