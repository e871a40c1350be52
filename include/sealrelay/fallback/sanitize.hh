// The escrow portal's HTML sanitiser (issue 9, Portal): a message's HTML is parsed by a real
// HTML5 parser (gumbo) and re-serialised from an allow-list of elements and attributes;
// scripts, styles, frames, forms, remote images and event handlers never come out.
// Contract: the output is a body fragment that is safe to embed in a page as is; it never
// throws, never recurses on the input's depth, and bounds time and memory for any input
// (limits below). Synchronous, no shared state: callable from any thread.
#pragma once
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

namespace sr::fallback {

// Bounds that keep a hostile message from costing the portal more than a moment.
struct sanitize_limits {
  // Bytes of HTML looked at; the rest is not shown (the portal offers the raw part).
  size_t max_input = 4u << 20;
  // Element nesting kept; deeper start tags are shown as text and deeper elements unwrapped.
  size_t max_depth = 256;
  // Parser memory budget: a base plus so much per input byte; over it, the HTML source is
  // shown as text.
  size_t parser_memory = 64u << 20;
  size_t parser_memory_per_byte = 32;
  // Parse time, the backstop for costs the pre-scan does not foresee; over it, as above.
  std::chrono::milliseconds max_parse_time{3000};
};

// Returns `html` re-serialised from the allow-list (see sanitize.cc), safe to embed.
std::string sanitize_html(std::string_view html, const sanitize_limits& limits = {});

// Returns whether `href` (attribute text after entity decoding) is an http, https or mailto
// URL once browsers' whitespace and case rules are applied; exposed for the tests.
bool is_safe_link(std::string_view href);

// Returns whether `src` is an inline image source: `cid:` or a base64 PNG/GIF/JPEG/WebP
// `data:` URL; exposed for the tests.
bool is_inline_image(std::string_view src);

}  // namespace sr::fallback
