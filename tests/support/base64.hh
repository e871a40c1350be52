// Base64 decoding for tests that read what the relay or a peer encoded (a TLS-RPT mail
// part, the HTTPS host's recorded bodies). Header-only, so unit tests use it without
// linking the loopback world.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace sr::test {

// Decode standard base64 (RFC 4648 §4); line breaks, '=' padding and any other byte
// outside the alphabet are skipped.
inline std::string base64_decode(std::string_view in) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = c >= 'A' && c <= 'Z' ? c - 'A'
          : c >= 'a' && c <= 'z' ? c - 'a' + 26
          : c >= '0' && c <= '9' ? c - '0' + 52
          : c == '+' ? 62 : c == '/' ? 63 : -1;
    if (v < 0) continue;
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xff);
    }
  }
  return out;
}

}  // namespace sr::test
