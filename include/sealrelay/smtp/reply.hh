// SMTP replies (RFC 5321 4.2): formatting into a reusable string, and an incremental parser
// for replies as a client sees them ("250-first\r\n250 last\r\n"), fed arbitrary byte
// splits. Used by the inbound session (format), the outbound client and the load
// generator (parse). No I/O; the parser reuses its buffers across replies.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sr::smtp {

// Append "CODE ENH TEXT\r\n" (ENH omitted when empty) to `out`.
void append_reply(std::string& out, unsigned code, std::string_view enhanced, std::string_view text);
// Append one line of a multi-line reply: "CODE-TEXT\r\n", or "CODE TEXT\r\n" when `last`.
void append_reply_line(std::string& out, unsigned code, bool last, std::string_view text);

// A parsed reply: its code and the text of each line (code and separator removed).
class reply {
 public:
  unsigned code() const { return _code; }
  size_t line_count() const { return _ends.size(); }
  // The text of line `i` (0-based), without the "250-" prefix and the CRLF.
  std::string_view line(size_t i) const;
  // The enhanced status code ("2.0.0") at the start of the first line, or "" when absent.
  std::string_view enhanced() const;
  // First digit helpers: 2xx, 3xx, 4xx, 5xx.
  bool positive() const { return _code >= 200 && _code < 400; }
  bool transient() const { return _code >= 400 && _code < 500; }
  bool permanent() const { return _code >= 500; }
  void clear();

 private:
  friend class reply_parser;
  unsigned _code = 0;
  std::string _text;           // the lines' texts back to back
  std::vector<uint32_t> _ends; // end offset of each line in _text
};

// Incremental reply parser. feed() stops right after a complete reply so the caller can
// act on it before the next one (pipelined replies arrive back to back).
class reply_parser {
 public:
  enum class status : uint8_t {
    need_more,  // all input consumed, reply not complete yet
    done,       // a reply is complete: take it with get(), then call next()
    error,      // malformed input (bad code, codes differ between lines, too long); sticky
  };
  // Limits against a hostile peer: a line and a whole reply.
  static constexpr size_t max_line = 4096;
  static constexpr size_t max_reply = 64 * 1024;

  // Consume bytes from `in`; `consumed` receives how many were used.
  status feed(std::string_view in, size_t& consumed);
  const reply& get() const { return _reply; }
  // Forget the completed reply and start on the next one.
  void next();
  status state() const { return _status; }

 private:
  status finish_line();

  reply _reply;
  std::string _line;  // the current line without its CRLF, across feeds
  status _status = status::need_more;
};

}  // namespace sr::smtp
