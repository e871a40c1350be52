// The JSON string escaper (see json.hh): one pass, bytes that need no escape are copied
// in runs, no allocation beyond `out` growing.
#include "sealrelay/util/json.hh"

#include <cstdint>

namespace sr {
namespace {

constexpr char hex_digits[] = "0123456789abcdef";

void append_u_escape(unsigned cp, std::string& out) {
  char e[6] = {'\\', 'u', hex_digits[(cp >> 12) & 0xf], hex_digits[(cp >> 8) & 0xf],
               hex_digits[(cp >> 4) & 0xf], hex_digits[cp & 0xf]};
  out.append(e, 6);
}

// Length of the valid UTF-8 sequence starting at s[i] (2..4), or 0 when it is not one
// (overlong forms, surrogates and code points above U+10FFFF are not valid).
size_t utf8_sequence(std::string_view s, size_t i) {
  auto at = [&](size_t k) -> unsigned { return i + k < s.size() ? uint8_t(s[i + k]) : 0x100; };
  auto cont = [](unsigned b) { return b >= 0x80 && b <= 0xbf; };
  unsigned b0 = at(0), b1 = at(1);
  if (b0 >= 0xc2 && b0 <= 0xdf) return cont(b1) ? 2 : 0;
  if (b0 >= 0xe0 && b0 <= 0xef) {
    unsigned lo = b0 == 0xe0 ? 0xa0 : 0x80, hi = b0 == 0xed ? 0x9f : 0xbf;
    return (b1 >= lo && b1 <= hi && cont(at(2))) ? 3 : 0;
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    unsigned lo = b0 == 0xf0 ? 0x90 : 0x80, hi = b0 == 0xf4 ? 0x8f : 0xbf;
    return (b1 >= lo && b1 <= hi && cont(at(2)) && cont(at(3))) ? 4 : 0;
  }
  return 0;
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  size_t run = 0;  // start of the pending run of bytes copied verbatim
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = uint8_t(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      size_t n = utf8_sequence(s, i);
      // U+2028/U+2029 are valid JSON but end lines for JavaScript readers: escape them.
      if (n == 3 && c == 0xe2 && uint8_t(s[i + 1]) == 0x80 &&
          (uint8_t(s[i + 2]) == 0xa8 || uint8_t(s[i + 2]) == 0xa9))
        n = 0;
      else if (n) {
        i += n;
        continue;
      }
    }
    out.append(s.data() + run, i - run);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c == 0xe2 && utf8_sequence(s, i) == 3) {
          append_u_escape(uint8_t(s[i + 2]) == 0xa8 ? 0x2028 : 0x2029, out);
          i += 3;
          run = i;
          continue;
        }
        // Control characters, DEL, and bytes that are not valid UTF-8 (read as Latin-1).
        append_u_escape(c, out);
    }
    ++i;
    run = i;
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

}  // namespace sr
