// What the escrow portal shows of an escrowed RFC 5322 message (issue 9, Portal): the
// decoded From/To/Cc/Date/Subject (RFC 2047), the first text/plain and text/html parts
// (base64 / quoted-printable, charset converted to UTF-8), the attachments with their
// decoded bytes, and the inline images of multipart/related put into the HTML as data: URLs
// (raster types only) so they show in the sandboxed frame, which can fetch nothing.
// Contract: never fails and never throws on any input (a malformed message shows as what
// can be read of it); nesting depth, part count and inlined image bytes are bounded; the
// output is valid UTF-8. Pure: no I/O, no shared state.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/fallback/portal_pages.hh"

namespace sr::fallback::mime {

struct limits {
  std::size_t max_depth = 8;                 // multipart nesting looked into
  std::size_t max_parts = 256;               // leaf parts looked at; the rest is not shown
  std::size_t max_inline_bytes = 8u << 20;   // image bytes turned into data: URLs in all
};

struct view {
  portal::message_view page;                  // sanitized_html is filled by render()
  std::string html;                           // the HTML part in UTF-8, cid: images inlined
  std::vector<std::string> attachment_bytes;  // decoded, parallel to page.attachments
};

// Parse `message` (CRLF or LF line ends) into what the portal shows.
view parse(std::string_view message, const limits& l = {});

// Parse `message` and sanitise its HTML part into page.sanitized_html.
view render(std::string_view message, const limits& l = {});

// Decode RFC 2047 encoded-words in a header's text (unfolded first) to UTF-8; other bytes
// are taken as UTF-8 (invalid sequences become U+FFFD). Exposed for the tests.
std::string decode_header(std::string_view raw);

// Convert `bytes` in `charset` to UTF-8 (U+FFFD for what does not convert); an unknown
// charset is read as UTF-8. Exposed for the tests.
std::string to_utf8(std::string_view bytes, std::string_view charset);

}  // namespace sr::fallback::mime
