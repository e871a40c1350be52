// A tiny strict JSON reader for whole documents (nested objects and arrays), for tests
// that check a JSON report field by field against its schema (TLS-RPT, RFC 8460 §4.4).
// Strict: no duplicate keys, no trailing text, strings valid UTF-8 with escaped control
// characters, numbers as integers or decimals (kept as text). Builds on json_check.hh.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/json_check.hh"

namespace json_tree {

struct node {
  enum type_t { object, array, string, number, boolean, null } type = null;
  std::string text;                                  // string, number, "true"/"false"
  std::vector<std::string> keys;                     // object: in order
  std::map<std::string, std::shared_ptr<node>> fields;  // object
  std::vector<std::shared_ptr<node>> items;          // array
  // The field `k` of an object, or null.
  const node* get(const std::string& k) const {
    auto it = fields.find(k);
    return it == fields.end() ? nullptr : it->second.get();
  }
  bool is(type_t t) const { return type == t; }
};

class parser {
 public:
  explicit parser(std::string_view s) : _s(s) {}
  // Parse the whole text as one value; null when it is not valid JSON.
  std::shared_ptr<node> parse() {
    auto n = value(0);
    ws();
    if (!n || _i != _s.size()) return nullptr;
    return n;
  }

 private:
  void ws() {
    while (_i < _s.size() && (_s[_i] == ' ' || _s[_i] == '\t' || _s[_i] == '\n' || _s[_i] == '\r')) ++_i;
  }
  bool eat(char c) {
    ws();
    if (_i < _s.size() && _s[_i] == c) {
      ++_i;
      return true;
    }
    return false;
  }
  std::optional<std::string> str() {
    ws();
    // The flat parser reads one string: give it "{\"k\":<string>}" would copy; instead
    // find the closing quote honouring escapes and hand that slice to json_check.
    if (_i >= _s.size() || _s[_i] != '"') return std::nullopt;
    size_t j = _i + 1;
    while (j < _s.size() && _s[j] != '"') j += _s[j] == '\\' ? 2 : 1;
    if (j >= _s.size()) return std::nullopt;
    std::string obj = "{\"k\":" + std::string(_s.substr(_i, j + 1 - _i)) + "}";
    auto o = json_check::parse_line(obj);
    if (!o || o->fields.at("k").type != json_check::value::string) return std::nullopt;
    _i = j + 1;
    return o->fields.at("k").text;
  }
  std::shared_ptr<node> value(int depth) {
    if (depth > 64) return nullptr;
    ws();
    if (_i >= _s.size()) return nullptr;
    auto n = std::make_shared<node>();
    char c = _s[_i];
    if (c == '{') {
      ++_i;
      n->type = node::object;
      if (eat('}')) return n;
      do {
        auto k = str();
        if (!k || !eat(':')) return nullptr;
        auto v = value(depth + 1);
        if (!v || n->fields.count(*k)) return nullptr;
        n->keys.push_back(*k);
        n->fields.emplace(*k, v);
      } while (eat(','));
      return eat('}') ? n : nullptr;
    }
    if (c == '[') {
      ++_i;
      n->type = node::array;
      if (eat(']')) return n;
      do {
        auto v = value(depth + 1);
        if (!v) return nullptr;
        n->items.push_back(v);
      } while (eat(','));
      return eat(']') ? n : nullptr;
    }
    if (c == '"') {
      auto s = str();
      if (!s) return nullptr;
      n->type = node::string;
      n->text = *s;
      return n;
    }
    for (auto [word, t] : {std::pair{"true", node::boolean}, {"false", node::boolean}, {"null", node::null}})
      if (_s.substr(_i).starts_with(word)) {
        _i += std::string_view(word).size();
        n->type = t;
        n->text = word;
        return n;
      }
    size_t start = _i;
    if (_s[_i] == '-') ++_i;
    if (_i >= _s.size() || _s[_i] < '0' || _s[_i] > '9') return nullptr;
    if (_s[_i] == '0') ++_i;
    else
      while (_i < _s.size() && _s[_i] >= '0' && _s[_i] <= '9') ++_i;
    if (_i < _s.size() && _s[_i] == '.') {
      ++_i;
      size_t d = _i;
      while (_i < _s.size() && _s[_i] >= '0' && _s[_i] <= '9') ++_i;
      if (_i == d) return nullptr;
    }
    n->type = node::number;
    n->text = std::string(_s.substr(start, _i - start));
    return n;
  }

  std::string_view _s;
  size_t _i = 0;
};

// Parse `text` as one JSON document; null when invalid.
inline std::shared_ptr<node> parse(std::string_view text) { return parser(text).parse(); }

}  // namespace json_tree
