// DATA body scanner (RFC 5321 4.5.2 / 4.5.3.1.6): incremental over arbitrary chunk splits.
// Finds the end-of-data line (CRLF "." CRLF; the body starts at a line start, so ".\r\n"
// alone is an empty message), removes stuffing dots IN PLACE by compacting the caller's
// buffer, and rejects bare LF / bare CR (550 5.6.0), lines over 1000 octets incl. CRLF
// (500 5.5.2) and bodies over the size limit (552 5.3.4). After an error it keeps scanning
// and discards until the real CRLF.CRLF, so no bare-LF/CR trick can end a message early.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace sr::smtp {

class data_scanner {
 public:
  // Why a body is rejected; the first error found wins.
  enum class error : uint8_t {
    none,
    bare_lf,        // LF not preceded by CR           -> 550 5.6.0
    bare_cr,        // CR not followed by LF           -> 550 5.6.0
    line_too_long,  // text line > 1000 octets incl. CRLF (stuffing dot not counted) -> 500 5.5.2
    too_big,        // unstuffed body > max_size       -> 552 5.3.4
  };

  struct result {
    size_t consumed = 0;  // input bytes used (includes the final ".\r\n" when done)
    size_t body_len = 0;  // unstuffed body bytes now at the start of the input span
    bool done = false;    // the end-of-data line was consumed
  };

  static constexpr size_t max_line = 1000;  // incl. CRLF

  // Prepare for a new body of at most `max_size` octets (unstuffed, incl. CRLFs).
  void reset(uint64_t max_size);
  // Scan `in`, compacting unstuffed body bytes to in[0, body_len). Stops right after the
  // end-of-data line. Once an error is set no more body bytes are produced (body_len 0).
  result scan(std::span<std::byte> in);
  error err() const { return _err; }
  // Body octets produced so far (unstuffed).
  uint64_t size() const { return _size; }

  // The SMTP reply (without CRLF) for a rejected body.
  static std::string_view reply_for(error e);
  static const char* to_string(error e);

 private:
  // Where the previous chunk left us; every state but `mid`/`cr` sits at a line start.
  enum class state : uint8_t {
    bol,         // at a line start (after a real CRLF, or body start)
    bol_dot,     // line start, saw "." (never emitted: stuffing or end)
    bol_dot_cr,  // line start, saw ".\r": LF ends the message
    mid,         // inside a line
    cr,          // inside a line, CR emitted, LF expected
  };
  void fail(error e) {
    if (_err == error::none) _err = e;
  }

  state _state = state::bol;
  error _err = error::none;
  uint64_t _max_size = 0;
  uint64_t _size = 0;
  size_t _line_len = 0;  // unstuffed octets of the current line so far
};

}  // namespace sr::smtp
