// text.hh: one base64 encoder and one ASCII case-insensitive compare for every module.
#include "sealrelay/util/text.hh"

#include <cstdint>

namespace sr {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = char(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = char(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

void append_base64(std::string& out, std::string_view in, base64_alphabet a) {
  const char* tbl = a == base64_alphabet::url
                        ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                        : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const bool pad = a == base64_alphabet::standard;
  out.reserve(out.size() + (in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += tbl[v & 63];
  }
  if (size_t rest = in.size() - i) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    if (rest == 2) out += tbl[(v >> 6) & 63];
    else if (pad) out += '=';
    if (pad) out += '=';
  }
}

void append_base64_lines(std::string& out, std::string_view in) {
  // 57 input bytes make one 76-character line.
  for (size_t i = 0; i < in.size(); i += 57) {
    append_base64(out, in.substr(i, 57));
    out += "\r\n";
  }
}

}  // namespace sr
