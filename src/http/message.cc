// HTTP/1.1 parsing by phases: the head is collected whole (bounded by limits::max_head)
// and split once into views; the body is framed by Content-Length, chunked coding, or
// (responses only) the end of the connection. Line ends are CRLF; a bare LF is accepted
// as RFC 9112 §2.2 allows, a bare CR anywhere in the head is refused.
#include "sealrelay/http/message.hh"

#include "sealrelay/util/text.hh"

#include <algorithm>
#include <charconv>

namespace sr::http {

namespace {

bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Return true when `list` (comma-separated) holds `token`, ignoring case.
bool list_has(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    if (iequals(trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

std::optional<uint64_t> parse_decimal(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

const char* to_string(error e) {
  switch (e) {
    case error::none: return "none";
    case error::bad_start_line: return "bad-start-line";
    case error::bad_version: return "bad-version";
    case error::line_too_long: return "line-too-long";
    case error::head_too_large: return "head-too-large";
    case error::too_many_headers: return "too-many-headers";
    case error::bad_header: return "bad-header";
    case error::bad_length: return "bad-length";
    case error::ambiguous_length: return "ambiguous-length";
    case error::unsupported_encoding: return "unsupported-encoding";
    case error::bad_chunk: return "bad-chunk";
    case error::body_too_large: return "body-too-large";
    case error::truncated: return "truncated";
  }
  return "?";
}

int status_for(error e) {
  switch (e) {
    case error::bad_version: return 505;
    case error::line_too_long: return 414;
    case error::head_too_large:
    case error::too_many_headers: return 431;
    case error::unsupported_encoding: return 501;
    case error::body_too_large: return 413;
    default: return 400;
  }
}

std::string_view reason_phrase(int code) {
  switch (code) {
    case 100: return "Continue";
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
  }
  return "Unknown";
}

std::optional<std::string_view> message_parser::find(std::string_view name) const {
  for (const header& h : _headers)
    if (iequals(h.name, name)) return h.value;
  return std::nullopt;
}

parse_status message_parser::fail(error e) {
  _err = e;
  _status = parse_status::failed;
  _keep_alive = false;
  return _status;
}

bool message_parser::parse_version(std::string_view v) {
  if (v == "HTTP/1.1") _minor = 1;
  else if (v == "HTTP/1.0") _minor = 0;
  else {
    fail(v.starts_with("HTTP/") ? error::bad_version : error::bad_start_line);
    return false;
  }
  return true;
}

void message_parser::reset_message() {
  _status = parse_status::need_more;
  _err = error::none;
  _minor = 1;
  _to_eof = false;
  _phase = phase::head;
  _head.clear();
  _headers.clear();
  _body.clear();
  _line.clear();
  _left = 0;
  _scan = 0;
  _keep_alive = true;
}

// Collect one line of the body framing (chunk size, trailer) into _line; `complete`
// when its LF arrived. Lines are short: anything past max_line is refused.
bool message_parser::take_line(std::string_view& in, size_t& used) {
  size_t lf = in.find('\n');
  size_t n = lf == std::string_view::npos ? in.size() : lf + 1;
  _line.append(in.substr(0, n));
  in.remove_prefix(n);
  used += n;
  if (_line.size() > _limits.max_line) {
    fail(error::bad_chunk);
    return false;
  }
  return lf != std::string_view::npos;
}

// Move up to _left body bytes from `in` into the body; true when none are left.
bool message_parser::take_body(std::string_view& in, size_t& used) {
  size_t n = size_t(std::min<uint64_t>(_left, in.size()));
  _body.append(in.substr(0, n));
  in.remove_prefix(n);
  used += n;
  _left -= n;
  return _left == 0;
}

size_t message_parser::feed_bytes(std::string_view in) {
  size_t used = 0;
  while (_status == parse_status::need_more && (!in.empty() || _phase == phase::done)) {
    switch (_phase) {
      case phase::head: {
        // Append what may belong to the head, find the blank line, give back the rest.
        size_t take = std::min(in.size(), _limits.max_head + 4 - std::min(_head.size(), _limits.max_head + 4));
        size_t old = _head.size();
        _head.append(in.substr(0, take));
        // The start line alone may be too long (judged on every prefix alike, so the
        // verdict does not depend on how the bytes were split across feeds).
        size_t lf = _head.find('\n');
        size_t line_len = lf == std::string::npos ? _head.size() : lf;
        if (line_len > 0 && _head[line_len - 1] == '\r') --line_len;
        if (line_len > _limits.max_line) {
          fail(error::line_too_long);
          return used + take;
        }
        size_t end = std::string::npos;
        for (size_t i = _scan; i < _head.size(); ++i) {
          if (_head[i] != '\n') continue;
          if (i + 1 < _head.size() && _head[i + 1] == '\n') { end = i + 2; break; }
          if (i + 2 < _head.size() && _head[i + 1] == '\r' && _head[i + 2] == '\n') { end = i + 3; break; }
          if (i == 0 || (i == 1 && _head[0] == '\r')) { end = i + 1; break; }  // empty head
        }
        // A head may take max_head bytes plus its blank line: with no end so far and more
        // than that collected, no later end can fit.
        if (end == std::string::npos) {
          _scan = _head.size() >= 2 ? _head.size() - 2 : 0;
          if (_head.size() > _limits.max_head + 2) {
            fail(error::head_too_large);
            return used + take;
          }
          used += take;
          in.remove_prefix(take);
          continue;
        }
        size_t consumed = end - old;
        _head.resize(end);
        used += consumed;
        in.remove_prefix(consumed);
        if (end > _limits.max_head + 2) {
          fail(error::head_too_large);
          return used;
        }
        if (!parse_head()) return used;
        continue;
      }
      case phase::body_length:
        if (take_body(in, used)) _phase = phase::done;
        continue;
      case phase::body_eof: {
        if (_body.size() + in.size() > _limits.max_body) {
          fail(error::body_too_large);
          return used;
        }
        _body.append(in);
        used += in.size();
        in = {};
        continue;
      }
      case phase::chunk_size: {
        if (!take_line(in, used)) continue;
        std::string_view l(_line);
        l = l.substr(0, l.find(';'));  // chunk extensions are ignored
        while (!l.empty() && (l.back() == '\n' || l.back() == '\r' || l.back() == ' ' || l.back() == '\t'))
          l.remove_suffix(1);
        uint64_t size = 0;
        auto [p, ec] = std::from_chars(l.data(), l.data() + l.size(), size, 16);
        if (l.empty() || l.size() > 15 || ec != std::errc() || p != l.data() + l.size()) {
          fail(error::bad_chunk);
          return used;
        }
        _line.clear();
        if (size == 0) {
          _phase = phase::trailers;
        } else if (_body.size() + size > _limits.max_body) {
          fail(error::body_too_large);
          return used;
        } else {
          _left = size;
          _phase = phase::chunk_data;
        }
        continue;
      }
      case phase::chunk_data:
        if (take_body(in, used)) _phase = phase::chunk_crlf;
        continue;
      case phase::chunk_crlf: {
        if (!take_line(in, used)) continue;
        if (_line != "\r\n" && _line != "\n") {
          fail(error::bad_chunk);
          return used;
        }
        _line.clear();
        _phase = phase::chunk_size;
        continue;
      }
      case phase::trailers: {
        if (!take_line(in, used)) continue;
        bool empty = _line == "\r\n" || _line == "\n";
        _line.clear();
        if (empty) _phase = phase::done;  // trailer fields are read and dropped
        continue;
      }
      case phase::done:
        _status = parse_status::done;
        continue;
    }
  }
  if (_status == parse_status::need_more && _phase == phase::done) _status = parse_status::done;
  return used;
}

bool message_parser::parse_head() {
  std::string_view head(_head);
  // Split into lines (CRLF or LF); a CR anywhere else is refused (smuggling, splitting).
  size_t pos = 0;
  bool first = true;
  while (pos < head.size()) {
    size_t lf = head.find('\n', pos);
    std::string_view line = head.substr(pos, lf - pos);
    pos = lf + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find('\r') != std::string_view::npos) {
      fail(first ? error::bad_start_line : error::bad_header);
      return false;
    }
    if (first) {
      first = false;
      if (line.size() > _limits.max_line) {
        fail(error::line_too_long);
        return false;
      }
      if (!on_start_line(line)) return false;
      continue;
    }
    if (line.empty()) break;  // the blank line ending the head
    if (line.front() == ' ' || line.front() == '\t') {
      fail(error::bad_header);  // obs-fold (RFC 9112 §5.2: reject)
      return false;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) {
      fail(error::bad_header);  // includes "Name :" (whitespace before the colon)
      return false;
    }
    std::string_view value = trim(line.substr(colon + 1));
    for (char c : value) {
      if ((static_cast<unsigned char>(c) < 32 && c != '\t') || c == 127) {
        fail(error::bad_header);
        return false;
      }
    }
    if (_headers.size() >= _limits.max_headers) {
      fail(error::too_many_headers);
      return false;
    }
    _headers.push_back({line.substr(0, colon), value});
  }
  if (first) {
    fail(error::bad_start_line);
    return false;
  }

  // Connection persistence (RFC 9112 §9.3).
  _keep_alive = _minor == 1;
  for (const header& h : _headers) {
    if (!iequals(h.name, "Connection")) continue;
    if (list_has(h.value, "close")) _keep_alive = false;
    else if (list_has(h.value, "keep-alive")) _keep_alive = true;
  }

  // Framing: Transfer-Encoding, else Content-Length, else none (or to EOF for responses).
  std::optional<uint64_t> length;
  bool chunked = false, has_te = false;
  for (const header& h : _headers) {
    if (iequals(h.name, "Transfer-Encoding")) {
      has_te = true;
      if (!iequals(trim(h.value), "chunked") || chunked) {
        fail(error::unsupported_encoding);  // only a single "chunked" coding is supported
        return false;
      }
      chunked = true;
    } else if (iequals(h.name, "Content-Length")) {
      // "Content-Length: 5, 5" and repeated equal fields are one length; others are not.
      std::string_view v = h.value;
      while (!v.empty()) {
        size_t comma = v.find(',');
        auto n = parse_decimal(trim(v.substr(0, comma)));
        if (!n || (length && *length != *n)) {
          fail(error::bad_length);
          return false;
        }
        length = n;
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
      }
      if (!length) {
        fail(error::bad_length);
        return false;
      }
    }
  }
  if (has_te && length) {
    fail(error::ambiguous_length);
    return false;
  }
  if (has_te && _minor == 0) {
    fail(error::unsupported_encoding);
    return false;
  }
  if (no_body()) {
    _phase = phase::done;
  } else if (chunked) {
    _phase = phase::chunk_size;
  } else if (length) {
    if (*length > _limits.max_body) {
      fail(error::body_too_large);
      return false;
    }
    _left = *length;
    _body.reserve(size_t(*length));
    _phase = _left ? phase::body_length : phase::done;
  } else if (body_until_eof()) {
    _to_eof = true;
    _keep_alive = false;
    _phase = phase::body_eof;
  } else {
    _phase = phase::done;
  }
  if (_phase == phase::done) _status = parse_status::done;
  return true;
}

parse_status message_parser::eof() {
  if (_status != parse_status::need_more) return _status;
  if (_phase == phase::body_eof) {
    _phase = phase::done;
    _status = parse_status::done;
    return _status;
  }
  return fail(error::truncated);
}

// ---- requests

void request_parser::reset() {
  reset_message();
  _method.clear();
  _target.clear();
}

bool request_parser::on_start_line(std::string_view line) {
  // method SP request-target SP HTTP-version, single spaces (RFC 9112 §3).
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    fail(error::bad_start_line);
    return false;
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (!is_token(method) || target.empty()) {
    fail(error::bad_start_line);
    return false;
  }
  for (char c : target) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 32 || u >= 127) {
      fail(error::bad_start_line);
      return false;
    }
  }
  if (!parse_version(line.substr(sp2 + 1))) return false;
  _method.assign(method);
  _target.assign(target);
  return true;
}

// ---- responses

void response_parser::reset() {
  reset_message();
  _code = 0;
  _reason.clear();
}

parse_status response_parser::feed_eof() { return eof(); }

bool response_parser::no_body() const {
  return _head_request || (_code >= 100 && _code < 200) || _code == 204 || _code == 304;
}

bool response_parser::on_start_line(std::string_view line) {
  // HTTP-version SP 3DIGIT SP [reason-phrase] (RFC 9112 §4).
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos || !parse_version(line.substr(0, sp))) {
    if (_status != parse_status::failed) fail(error::bad_start_line);
    return false;
  }
  std::string_view rest = line.substr(sp + 1);
  if (rest.size() < 3 || (rest.size() > 3 && rest[3] != ' ') ||
      !std::all_of(rest.begin(), rest.begin() + 3, [](char c) { return c >= '0' && c <= '9'; }) ||
      rest[0] == '0') {
    fail(error::bad_start_line);
    return false;
  }
  _code = (rest[0] - '0') * 100 + (rest[1] - '0') * 10 + (rest[2] - '0');
  _reason.assign(rest.size() > 4 ? rest.substr(4) : std::string_view());
  return true;
}

// ---- writers

void write_response(std::string& out, int code, std::span<const header> fields,
                    std::string_view body, bool keep_alive) {
  out.append("HTTP/1.1 ").append(std::to_string(code)).append(" ").append(reason_phrase(code));
  out.append("\r\n");
  for (const header& h : fields) out.append(h.name).append(": ").append(h.value).append("\r\n");
  out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  if (!keep_alive) out.append("Connection: close\r\n");
  out.append("\r\n").append(body);
}

void write_request(std::string& out, std::string_view method, std::string_view target,
                   std::string_view host, std::span<const header> fields, std::string_view body,
                   bool keep_alive) {
  out.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: ").append(host).append("\r\n");
  for (const header& h : fields) out.append(h.name).append(": ").append(h.value).append("\r\n");
  if (!body.empty() || method == "POST" || method == "PUT")
    out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  if (!keep_alive) out.append("Connection: close\r\n");
  out.append("\r\n").append(body);
}

}  // namespace sr::http
