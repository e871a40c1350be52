// Zero-copy dot-stuffing of a stored message for DATA (RFC 5321 4.5.2). The spool keeps
// messages with CRLF line ends and without dot-stuffing; this produces iovecs that point
// into the caller's pieces, with a static "." inserted before every line that begins with
// '.', then the end-of-data terminator. The input bytes are never written.
#pragma once
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace sr::outbound {

// Append to `out` the iovecs of `body` dot-stuffed and terminated: ".\r\n" when it ends in
// CRLF (or is empty), "\n.\r\n" after a lone trailing CR, "\r\n.\r\n" otherwise. Line starts
// are tracked across pieces; empty pieces are skipped. Returns the bytes `out` gained.
size_t stuff_body(std::span<const iovec> body, std::vector<iovec>& out);

// The same for a body sent in windows (a large message streamed from the spool): the
// line state carries from one window to the next; stuff_end() adds the terminator.
struct stuff_state {
  bool line_start = true;  // the next body byte begins a line
  char prev = 0, last = 0;  // the body's last two bytes so far
  uint64_t seen = 0;        // body bytes so far
};
size_t stuff_window(std::span<const iovec> window, std::vector<iovec>& out, stuff_state& st);
size_t stuff_end(std::vector<iovec>& out, const stuff_state& st);

}  // namespace sr::outbound
