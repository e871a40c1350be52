// SMTP reply formatting and incremental parsing. Lines end at LF (a preceding CR is
// dropped) so a sloppy server's bare-LF replies still parse; every line must start with the
// same three digits followed by '-', ' ' or the end of the line.
#include "sealrelay/smtp/reply.hh"

#include <cstring>

namespace sr::smtp {

namespace {

void append_code(std::string& out, unsigned code) {
  char d[3] = {char('0' + (code / 100) % 10), char('0' + (code / 10) % 10), char('0' + code % 10)};
  out.append(d, 3);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

void append_reply(std::string& out, unsigned code, std::string_view enhanced, std::string_view text) {
  append_code(out, code);
  out.push_back(' ');
  if (!enhanced.empty()) {
    out.append(enhanced);
    if (!text.empty()) out.push_back(' ');
  }
  out.append(text);
  out.append("\r\n");
}

void append_reply_line(std::string& out, unsigned code, bool last, std::string_view text) {
  append_code(out, code);
  out.push_back(last ? ' ' : '-');
  out.append(text);
  out.append("\r\n");
}

std::string_view reply::line(size_t i) const {
  if (i >= _ends.size()) return {};
  size_t begin = i == 0 ? 0 : _ends[i - 1];
  return std::string_view(_text).substr(begin, _ends[i] - begin);
}

std::string_view reply::enhanced() const {
  // class "." subject "." detail: [245] "." 1*3digit "." 1*3digit, then space or end.
  std::string_view l = line(0);
  if (l.size() < 5 || (l[0] != '2' && l[0] != '4' && l[0] != '5') || l[1] != '.') return {};
  size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    size_t start = i;
    while (i < l.size() && is_digit(l[i]) && i - start < 3) ++i;
    if (i == start) return {};
    if (part == 0) {
      if (i >= l.size() || l[i] != '.') return {};
      ++i;
    }
  }
  if (i < l.size() && l[i] != ' ') return {};
  return l.substr(0, i);
}

void reply::clear() {
  _code = 0;
  _text.clear();
  _ends.clear();
}

reply_parser::status reply_parser::feed(std::string_view in, size_t& consumed) {
  consumed = 0;
  if (_status != status::need_more) return _status;
  while (consumed < in.size()) {
    const char* base = in.data() + consumed;
    size_t avail = in.size() - consumed;
    const void* lf = std::memchr(base, '\n', avail);
    size_t n = lf ? size_t(static_cast<const char*>(lf) - base) : avail;
    if (_line.size() + n > max_line) return _status = status::error;
    _line.append(base, n);
    consumed += n;
    if (!lf) break;
    ++consumed;  // the LF
    if (!_line.empty() && _line.back() == '\r') _line.pop_back();
    if (finish_line() != status::need_more) return _status;
  }
  return _status;
}

reply_parser::status reply_parser::finish_line() {
  const std::string& l = _line;
  if (l.size() < 3 || !is_digit(l[0]) || !is_digit(l[1]) || !is_digit(l[2]) || l[0] < '2' ||
      l[0] > '5' || (l.size() > 3 && l[3] != '-' && l[3] != ' '))
    return _status = status::error;
  unsigned code = unsigned(l[0] - '0') * 100 + unsigned(l[1] - '0') * 10 + unsigned(l[2] - '0');
  if (!_reply._ends.empty() && code != _reply._code) return _status = status::error;
  std::string_view text = l.size() > 4 ? std::string_view(l).substr(4) : std::string_view{};
  if (_reply._text.size() + text.size() > max_reply) return _status = status::error;
  _reply._code = code;
  _reply._text.append(text);
  _reply._ends.push_back(static_cast<uint32_t>(_reply._text.size()));
  bool more = l.size() > 3 && l[3] == '-';
  _line.clear();
  _status = more ? status::need_more : status::done;
  return _status;
}

void reply_parser::next() {
  _reply.clear();
  _line.clear();
  _status = status::need_more;
}

}  // namespace sr::smtp
