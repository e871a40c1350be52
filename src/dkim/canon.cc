// Relaxed canonicalisation (canon.hh). The body state machine writes content runs in
// one sink call each, so hashing stays at memory speed on long lines.
#include "sealrelay/dkim/canon.hh"

#include <algorithm>
#include <cstring>

namespace sr::dkim {

namespace {
bool is_wsp(char c) { return c == ' ' || c == '\t'; }
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
}  // namespace

void canon_header_relaxed(std::string_view field, std::string& out, bool final_crlf) {
  const std::size_t colon = field.find(':');
  std::string_view name = field.substr(0, colon);
  while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
  for (char c : name) out.push_back(lower(c));
  out.push_back(':');
  if (colon != std::string_view::npos) {
    // Unfold (drop every CRLF), then WSP runs → one SP, none leading or trailing.
    bool wsp = false, started = false;
    const std::string_view v = field.substr(colon + 1);
    for (std::size_t i = 0; i < v.size(); ++i) {
      const char c = v[i];
      if (c == '\r' && i + 1 < v.size() && v[i + 1] == '\n') {
        ++i;
        continue;
      }
      if (is_wsp(c)) {
        wsp = true;
        continue;
      }
      if (wsp && started) out.push_back(' ');
      wsp = false;
      started = true;
      out.push_back(c);
    }
  }
  if (final_crlf) out += "\r\n";
}

void relaxed_body::emit(std::string_view s) {
  _length += s.size();
  if (_used + s.size() > _buf.size()) {
    flush();
    if (s.size() >= _buf.size()) {  // a long run goes straight through
      _sink.write(s);
      return;
    }
  }
  std::memcpy(_buf.data() + _used, s.data(), s.size());
  _used += s.size();
}

void relaxed_body::flush() {
  if (_used > 0) _sink.write({_buf.data(), _used});
  _used = 0;
}

// The first non-WSP byte of a line: the empty lines held back were not trailing after all.
void relaxed_body::start_content() {
  static constexpr std::string_view crlfs = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";
  while (_empty_lines > 0) {
    const uint64_t n = std::min<uint64_t>(_empty_lines, crlfs.size() / 2);
    emit(crlfs.substr(0, static_cast<std::size_t>(n * 2)));
    _empty_lines -= n;
  }
  _in_line = true;
}

void relaxed_body::feed(std::span<const std::byte> chunk) {
  const char* p = reinterpret_cast<const char*>(chunk.data());
  const char* const end = p + chunk.size();
  while (p < end) {
    if (_cr) {
      _cr = false;
      if (*p == '\n') {  // end of line: trailing WSP dropped
        ++p;
        _wsp = false;
        if (_in_line)
          emit("\r\n");
        else
          ++_empty_lines;
        _in_line = false;
        continue;
      }
      // A bare CR: content like any other byte.
      if (!_in_line) start_content();
      if (_wsp) emit(" ");
      _wsp = false;
      emit("\r");
    }
    const char c = *p;
    if (c == '\r') {
      _cr = true;
      ++p;
      continue;
    }
    if (is_wsp(c)) {
      _wsp = true;
      ++p;
      continue;
    }
    // A run of content bytes up to the next WSP or CR, written at once.
    const char* q = p + 1;
    while (q < end && *q != '\r' && !is_wsp(*q)) ++q;
    if (!_in_line) start_content();
    if (_wsp) emit(" ");
    _wsp = false;
    emit({p, static_cast<std::size_t>(q - p)});
    p = q;
  }
}

void relaxed_body::finish() {
  if (_cr) {  // a lone CR as the very last byte
    _cr = false;
    if (!_in_line) start_content();
    if (_wsp) emit(" ");
    _wsp = false;
    emit("\r");
  }
  // A last line without CRLF gets one; its trailing WSP is WSP at the end of a line.
  if (_in_line) emit("\r\n");
  _in_line = false;
  _wsp = false;
  _empty_lines = 0;
  flush();
}

}  // namespace sr::dkim
