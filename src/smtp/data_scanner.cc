// DATA body scanner: one pass per chunk; plain line text is located with a 16-byte SIMD
// search for CR/LF (memchr-like) and moved only when an earlier stuffing dot in the same
// chunk opened a gap. Line-start handling is a few branches per line, never per byte.
#include "sealrelay/smtp/data_scanner.hh"

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sr::smtp {

namespace {

// Return the first CR or LF in [p, end), or end.
inline const unsigned char* find_cr_or_lf(const unsigned char* p, const unsigned char* end) {
#if defined(__SSE2__)
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  while (end - p >= 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    unsigned mask = static_cast<unsigned>(
        _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf))));
    if (mask != 0) return p + __builtin_ctz(mask);
    p += 16;
  }
#endif
  // Tail (or non-SSE2 targets): a CR/LF-free run is common, so test bytes in a tight loop.
  while (p < end && *p != '\r' && *p != '\n') ++p;
  return p;
}

}  // namespace

void data_scanner::reset(uint64_t max_size) {
  _state = state::bol;
  _err = error::none;
  _max_size = max_size;
  _size = 0;
  _line_len = 0;
}

data_scanner::result data_scanner::scan(std::span<std::byte> in) {
  auto* const begin = reinterpret_cast<unsigned char*>(in.data());
  const unsigned char* p = begin;
  const unsigned char* const end = begin + in.size();
  unsigned char* w = begin;  // compaction write point; w <= p always
  result r;

  // Emit [from, from+n) as body text: move it down over removed dots when needed.
  auto emit = [&](const unsigned char* from, size_t n) {
    if (_err != error::none) return;
    if (w != from) std::memmove(w, from, n);
    w += n;
  };
  // Count line octets; a limit trips at the very byte that crosses it, so the first error
  // reported does not depend on how the input was split into chunks.
  auto count = [&](size_t n) {
    _line_len += n;
    if (_err != error::none) return;
    const bool line_over = _line_len > max_line;
    const bool size_over = _size + _line_len > _max_size;
    if (line_over && size_over) {
      // Both crossed within this run: report the limit crossed first (the line on a tie).
      // Without an error so far, _size + (line before this run) <= _max_size.
      const uint64_t size_at = _max_size - _size + 1;  // line offset of the first byte too many
      fail(size_at < max_line + 1 ? error::too_big : error::line_too_long);
    } else if (line_over) {
      fail(error::line_too_long);
    } else if (size_over) {
      fail(error::too_big);
    }
  };

  while (p < end) {
    switch (_state) {
      case state::bol:
        if (*p == '.') {
          _state = state::bol_dot;
          ++p;
          continue;
        }
        _state = state::mid;
        [[fallthrough]];
      case state::mid: {
        const unsigned char* q = find_cr_or_lf(p, end);
        size_t n = static_cast<size_t>(q - p);
        emit(p, n);
        count(n);
        p = q;
        if (q == end) break;
        if (*q == '\r') {
          // Emitted optimistically: if no LF follows, the message is rejected anyway.
          emit(q, 1);
          count(1);
          ++p;
          _state = state::cr;
          if (p < end && *p == '\n') goto crlf;  // the common case, without a state round trip
          continue;
        }
        fail(error::bare_lf);  // a bare LF never starts a line: only CRLF does
        ++p;
        continue;
      }
      case state::cr:
        if (*p != '\n') {
          fail(error::bare_cr);
          _state = state::mid;  // reprocess *p as line text
          continue;
        }
      crlf:
        emit(p, 1);
        count(1);
        ++p;
        _size += _line_len;
        _line_len = 0;
        _state = state::bol;
        continue;
      case state::bol_dot:
        if (*p == '\r') {
          _state = state::bol_dot_cr;
          ++p;
          continue;
        }
        if (*p == '\n') {
          fail(error::bare_lf);
          ++p;
          _state = state::mid;
          continue;
        }
        // A stuffing dot: dropped; what follows (maybe another dot) is line text.
        _state = state::mid;
        continue;
      case state::bol_dot_cr:
        if (*p == '\n') {
          ++p;
          r.done = true;
          _state = state::bol;
          goto out;
        }
        fail(error::bare_cr);  // ".\rX": the dot was stuffing, the CR is bare
        _state = state::mid;
        continue;
    }
    break;  // only reached from `mid` at the end of the input
  }
out:
  r.consumed = static_cast<size_t>(p - begin);
  r.body_len = _err == error::none ? static_cast<size_t>(w - begin) : 0;
  return r;
}

std::string_view data_scanner::reply_for(error e) {
  switch (e) {
    case error::none: return "250 2.0.0 Ok";
    case error::bare_lf: return "550 5.6.0 Error: bare <LF> received";
    case error::bare_cr: return "550 5.6.0 Error: bare <CR> received";
    case error::line_too_long: return "500 5.5.2 Error: message line too long";
    case error::too_big: return "552 5.3.4 Message size exceeds fixed limit";
  }
  return "451 4.3.0 Error: internal";
}

const char* data_scanner::to_string(error e) {
  switch (e) {
    case error::none: return "none";
    case error::bare_lf: return "bare-lf";
    case error::bare_cr: return "bare-cr";
    case error::line_too_long: return "line-too-long";
    case error::too_big: return "too-big";
  }
  return "?";
}

}  // namespace sr::smtp
