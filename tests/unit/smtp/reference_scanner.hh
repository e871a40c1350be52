// A deliberately naive, byte-at-a-time model of the DATA scanner (RFC 5321 4.5.2) over a
// whole input, used as the oracle in unit tests and the fuzzer. It shares no code with
// smtp/data_scanner.cc; both must agree on body, first error, end position and done.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "sealrelay/smtp/data_scanner.hh"

namespace sr::test {

struct reference_result {
  std::string body;  // unstuffed body (meaningful only when err == none)
  smtp::data_scanner::error err = smtp::data_scanner::error::none;
  size_t consumed = 0;
  bool done = false;
};

inline reference_result reference_scan(std::string_view s, uint64_t max_size) {
  using error = smtp::data_scanner::error;
  reference_result r;
  auto fail = [&](error e) {
    if (r.err == error::none) r.err = e;
  };
  size_t line_len = 0;
  uint64_t size = 0;
  auto emit = [&](char c) {
    ++line_len;
    if (line_len > 1000) fail(error::line_too_long);
    if (size + line_len > max_size) fail(error::too_big);
    if (r.err == error::none) r.body.push_back(c);
  };
  bool bol = true;
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    if (bol && s[i] == '.') {
      if (i + 1 < n && s[i + 1] == '\r') {
        if (i + 2 == n) { i = n; break; }               // ".\r" then input ends
        if (s[i + 2] == '\n') { i += 3; r.done = true; break; }  // CRLF "." CRLF
        fail(error::bare_cr);
        i += 2;
        bol = false;
        continue;
      }
      if (i + 1 < n && s[i + 1] == '\n') {
        fail(error::bare_lf);
        i += 2;
        bol = false;
        continue;
      }
      ++i;  // stuffing dot: removed
      bol = false;
      continue;
    }
    char c = s[i];
    if (c == '\r') {
      emit('\r');
      if (i + 1 == n) { ++i; bol = false; break; }
      if (s[i + 1] == '\n') {
        emit('\n');
        size += line_len;
        line_len = 0;
        i += 2;
        bol = true;
        continue;
      }
      fail(error::bare_cr);
      ++i;
      bol = false;
      continue;
    }
    if (c == '\n') {
      fail(error::bare_lf);
      ++i;
      bol = false;
      continue;
    }
    emit(c);
    ++i;
    bol = false;
  }
  r.consumed = i;
  return r;
}

}  // namespace sr::test
