// RFC 6376 "relaxed" canonicalisation, exactly per §3.4.2 (header) and §3.4.4 (body).
// The body canonicaliser is a streaming state machine: it takes the body in chunks of any
// size (a CRLF or a WSP run may straddle two chunks) and hands canonical bytes to a sink,
// so the signer hashes the body without keeping a copy (4 KiB pass through a buffer). Only CRLF ends a line; a bare CR or LF
// is an ordinary byte (the spool holds CRLF text). WSP is SP and HTAB only.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace sr::dkim {

// Append the relaxed form of one header field, given as it appears in the message
// ("Name: value", folds included, without the final CRLF), to `out`: lowercase name,
// no WSP around the colon, CRLFs removed, WSP runs as one SP, none at either end of the
// value. Appends "\r\n" unless `final_crlf` is false (the DKIM-Signature field itself).
void canon_header_relaxed(std::string_view field, std::string& out, bool final_crlf = true);

// Where canonical body bytes go (the SHA-256 of bh=, or a string in tests).
class body_sink {
 public:
  virtual void write(std::string_view bytes) = 0;

 protected:
  ~body_sink() = default;
};

// The relaxed body canonicaliser: WSP at the end of a line dropped, WSP runs as one SP,
// empty lines at the end dropped, a CRLF added to a last line without one; an empty
// body (or one of empty lines only) canonicalises to nothing.
class relaxed_body {
 public:
  explicit relaxed_body(body_sink& sink) : _sink(sink) {}

  // Feed the next chunk of the body.
  void feed(std::span<const std::byte> chunk);
  void feed(std::string_view chunk) {
    feed({reinterpret_cast<const std::byte*>(chunk.data()), chunk.size()});
  }
  // Flush what the end of the body decides (a last line without CRLF) and the bytes
  // still buffered to the sink; call once.
  void finish();
  // Canonical bytes written so far (the l= a verifier would see).
  uint64_t length() const { return _length; }

 private:
  void emit(std::string_view s);
  void start_content();

  void flush();

  body_sink& _sink;
  // Canonical bytes gathered before they go to the sink: one hash update per 4 KiB, not
  // one per word (the WSP runs between words are written as separate SPs).
  std::array<char, 4096> _buf;
  std::size_t _used = 0;
  uint64_t _empty_lines = 0;  // empty lines held back: written only if content follows
  uint64_t _length = 0;
  bool _cr = false;           // a CR was the last byte; a following LF ends the line
  bool _wsp = false;          // a WSP run is pending (one SP if content follows on the line)
  bool _in_line = false;      // the current line has content (a non-WSP byte)
};

}  // namespace sr::dkim
