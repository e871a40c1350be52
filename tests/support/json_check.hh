// A tiny strict JSON reader for one flat object per line (what the audit log writes):
// string, number, true/false/null values; \u escapes decoded to UTF-8 (surrogate pairs
// too); raw bytes must be valid UTF-8 and control characters must be escaped. The audit
// unit test validates the writer with it; the peers reuse its UTF-8 encoder.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace json_check {

struct value {
  enum type_t { string, number, boolean, null } type;
  std::string text;   // decoded string, number text, "true"/"false", "null"
};

struct object {
  std::vector<std::string> keys;      // in order
  std::map<std::string, value> fields;
};

inline void put_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xc0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += char(0xe0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  } else {
    out += char(0xf0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3f));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  }
}

// Length of a valid UTF-8 sequence at s[i], 0 if invalid (independent of the formatter's code).
inline size_t valid_utf8_at(std::string_view s, size_t i) {
  uint8_t c = uint8_t(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) {
    uint8_t b = uint8_t(s[i + k]);
    if ((b & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3f);
  }
  static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

class parser {
 public:
  explicit parser(std::string_view s) : _s(s) {}

  std::optional<object> parse_object() {
    object o;
    ws();
    if (!eat('{')) return std::nullopt;
    ws();
    if (eat('}')) return finish(o);
    for (;;) {
      ws();
      auto k = parse_string();
      if (!k) return std::nullopt;
      ws();
      if (!eat(':')) return std::nullopt;
      ws();
      auto v = parse_value();
      if (!v) return std::nullopt;
      if (o.fields.count(*k)) return std::nullopt;  // duplicate key
      o.keys.push_back(*k);
      o.fields.emplace(*k, *v);
      ws();
      if (eat(',')) continue;
      if (eat('}')) return finish(o);
      return std::nullopt;
    }
  }

 private:
  std::optional<object> finish(object& o) {
    ws();
    if (_i != _s.size()) return std::nullopt;
    return o;
  }
  void ws() {
    while (_i < _s.size() && (_s[_i] == ' ' || _s[_i] == '\t')) ++_i;
  }
  bool eat(char c) {
    if (_i < _s.size() && _s[_i] == c) {
      ++_i;
      return true;
    }
    return false;
  }
  bool lit(std::string_view w) {
    if (_s.substr(_i, w.size()) == w) {
      _i += w.size();
      return true;
    }
    return false;
  }
  std::optional<uint32_t> hex4() {
    if (_i + 4 > _s.size()) return std::nullopt;
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = _s[_i++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else return std::nullopt;
    }
    return v;
  }
  std::optional<std::string> parse_string() {
    if (!eat('"')) return std::nullopt;
    std::string out;
    while (_i < _s.size()) {
      uint8_t c = uint8_t(_s[_i]);
      if (c == '"') {
        ++_i;
        return out;
      }
      if (c < 0x20) return std::nullopt;
      if (c == '\\') {
        ++_i;
        if (_i >= _s.size()) return std::nullopt;
        char e = _s[_i++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            auto cp = hex4();
            if (!cp) return std::nullopt;
            if (*cp >= 0xd800 && *cp <= 0xdbff) {
              if (!lit("\\u")) return std::nullopt;
              auto lo = hex4();
              if (!lo || *lo < 0xdc00 || *lo > 0xdfff) return std::nullopt;
              *cp = 0x10000 + ((*cp - 0xd800) << 10) + (*lo - 0xdc00);
            } else if (*cp >= 0xdc00 && *cp <= 0xdfff) {
              return std::nullopt;
            }
            put_utf8(*cp, out);
            break;
          }
          default: return std::nullopt;
        }
        continue;
      }
      size_t n = valid_utf8_at(_s, _i);
      if (n == 0) return std::nullopt;
      out.append(_s.substr(_i, n));
      _i += n;
    }
    return std::nullopt;
  }
  std::optional<value> parse_value() {
    if (_i >= _s.size()) return std::nullopt;
    char c = _s[_i];
    if (c == '"') {
      auto s = parse_string();
      if (!s) return std::nullopt;
      return value{value::string, *s};
    }
    if (lit("true")) return value{value::boolean, "true"};
    if (lit("false")) return value{value::boolean, "false"};
    if (lit("null")) return value{value::null, "null"};
    size_t start = _i;
    if (eat('-')) {}
    if (_i >= _s.size() || _s[_i] < '0' || _s[_i] > '9') return std::nullopt;
    if (_s[_i] == '0') ++_i;
    else
      while (_i < _s.size() && _s[_i] >= '0' && _s[_i] <= '9') ++_i;
    return value{value::number, std::string(_s.substr(start, _i - start))};
  }

  std::string_view _s;
  size_t _i = 0;
};

// Parse one line (without its '\n') as a flat JSON object; nullopt when not valid.
inline std::optional<object> parse_line(std::string_view line) { return parser(line).parse_object(); }

}  // namespace json_check
