// Strict parse of one POST /api/v1/messages body. nlohmann::json's SAX interface drives a
// small state machine, so no DOM is built (a DOM would keep the last of two equal keys;
// here a repeated key is an error), nesting is refused at the first level too deep, the
// recipients and attachments are counted as they arrive, and a syntax error carries the
// byte position nlohmann reports. SAX parsing reports errors through parse_error(), never
// by throwing, so this path has no exceptions (except std::bad_alloc).
#include "sealrelay/api/request.hh"

#include <array>
#include <nlohmann/json.hpp>

#include "sealrelay/smtp/command.hh"
#include "sealrelay/util/text.hh"

namespace sr::api {
namespace {

constexpr std::size_t max_subject_bytes = 2000;
constexpr std::size_t max_filename_bytes = 255;
constexpr std::size_t max_content_type_bytes = 127;

api_error bad(std::string error, std::string field, uint16_t status = 400) {
  return {status, std::move(error), std::move(field)};
}

// Return whether `s` holds a control character that may not appear in a header field
// (CR, LF, NUL and the other C0 controls but TAB, and DEL).
bool has_header_control(std::string_view s) {
  for (unsigned char c : s)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return true;
  return false;
}

// RFC 2045 token characters (type, subtype).
bool is_token_char(unsigned char c) {
  if (c <= 0x20 || c >= 0x7f) return false;
  return std::string_view("()<>@,;:\\\"/[]?=").find(char(c)) == std::string_view::npos;
}

// Check "type/subtype" (RFC 2045 §5.1, parameters not accepted: we write our own).
bool valid_content_type(std::string_view ct) {
  std::size_t slash = ct.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == ct.size()) return false;
  for (std::size_t i = 0; i < ct.size(); ++i)
    if (i != slash && !is_token_char((unsigned char)ct[i])) return false;
  return ct.size() <= max_content_type_bytes;
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return r;
}

// The top-level keys; `_seen` bits follow this order.
enum class field_key : uint8_t { from, to, content, subject, text, html, attachments, none };
constexpr std::array<std::string_view, 7> key_names = {"from", "to", "content", "subject",
                                                       "text", "html", "attachments"};
enum class akey : uint8_t { filename, content_type, content, none };
constexpr std::array<std::string_view, 3> akey_names = {"filename", "content_type", "content"};

// The SAX handler: where we are (depth and the key we are under), what we have, the first
// error. Every callback returns false once an error is set, which stops the parser.
class handler : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit handler(const limits& l) : _l(l) {}

  bool null() override { return type_error(); }
  bool boolean(bool) override { return type_error(); }
  bool number_integer(number_integer_t) override { return type_error(); }
  bool number_unsigned(number_unsigned_t) override { return type_error(); }
  bool number_float(number_float_t, const string_t&) override { return type_error(); }
  bool binary(binary_t&) override { return type_error(); }

  bool string(string_t& s) override {
    if (_depth == 0) return fail(bad("the body must be a JSON object", ""));
    if (_depth == 1) return top_string(s);
    if (_depth == 2 && _key == field_key::to) return recipient(s);
    if (_depth == 3) return attachment_string(s);
    return type_error();
  }

  bool start_object(std::size_t) override {
    if (_depth == 0) {
      _depth = 1;
      return true;
    }
    if (_depth == 2 && _key == field_key::attachments) {
      if (_req.attachments.size() >= _l.max_attachments)
        return fail(bad("too many attachments (at most " + std::to_string(_l.max_attachments) + ")",
                        "attachments"));
      _req.attachments.emplace_back();
      _aseen = 0;
      _akey = akey::none;
      _depth = 3;
      return true;
    }
    return type_error();
  }

  bool end_object() override {
    if (_depth == 3) {
      attachment& a = _req.attachments.back();
      std::string f = attachment_field();
      if (!(_aseen & 1u << unsigned(akey::filename))) return fail(bad("filename is missing", f + ".filename"));
      if (!(_aseen & 1u << unsigned(akey::content))) return fail(bad("content is missing", f + ".content"));
      if (a.content_type.empty()) a.content_type = "application/octet-stream";
      _depth = 2;
      return true;
    }
    _depth = 0;
    _done = true;
    return true;
  }

  bool start_array(std::size_t) override {
    if (_depth == 1 && (_key == field_key::to || _key == field_key::attachments)) {
      _depth = 2;
      return true;
    }
    if (_depth == 0) return fail(bad("the body must be a JSON object", ""));
    return type_error();
  }

  bool end_array() override {
    _depth = 1;
    return true;
  }

  bool key(string_t& k) override {
    if (_depth == 1) {
      std::size_t i = 0;
      while (i < key_names.size() && key_names[i] != k) ++i;
      if (i == key_names.size()) return fail(bad("unknown key", k));
      if (_seen & 1u << i) return fail(bad("key given twice", k));
      _seen |= 1u << i;
      _key = static_cast<field_key>(i);
      return true;
    }
    // _depth == 3: an attachment object
    std::size_t i = 0;
    while (i < akey_names.size() && akey_names[i] != k) ++i;
    std::string f = attachment_field() + "." + k;
    if (i == akey_names.size()) return fail(bad("unknown key", f));
    if (_aseen & 1u << i) return fail(bad("key given twice", f));
    _aseen |= 1u << i;
    _akey = static_cast<akey>(i);
    return true;
  }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) override {
    if (_err) return false;  // our own stop, not a syntax error
    // nlohmann's what() is "[json.exception.parse_error.101] parse error at line 1, column
    // 10: syntax error ... last read: '...'"; keep the sentence, drop the bracketed id, and
    // cut it short: "last read" echoes the token, which may be a whole (huge) string.
    std::string_view what = ex.what();
    if (std::size_t sp = what.find("] "); sp != std::string_view::npos) what.remove_prefix(sp + 2);
    if (what.substr(0, 15) == "parse error at ") what.remove_prefix(15);
    std::string text = "invalid JSON at byte " + std::to_string(position) + ", " + std::string(what.substr(0, 160));
    while (what.size() > 160 && !text.empty() && (static_cast<unsigned char>(text.back()) & 0xC0) == 0x80) text.pop_back();
    if (what.size() > 160) {
      if (!text.empty() && static_cast<unsigned char>(text.back()) >= 0xC0) text.pop_back();
      text += "...";
    }
    fail(bad(std::move(text), ""));
    return false;
  }

  parse_result finish() && {
    parse_result r;
    if (_err) {
      r.err = std::move(*_err);
      return r;
    }
    if (auto e = cross_checks()) {
      r.err = std::move(*e);
      return r;
    }
    r.request = std::move(_req);
    return r;
  }

 private:
  bool fail(api_error e) {
    if (!_err) _err = std::move(e);
    return false;
  }

  std::string attachment_field() const {
    return "attachments[" + std::to_string(_req.attachments.size() - 1) + "]";
  }

  // A value of the wrong JSON type where the current key expects something else.
  bool type_error() {
    if (_depth == 0) return fail(bad("the body must be a JSON object", ""));
    if (_depth == 1) {
      bool arr = _key == field_key::to || _key == field_key::attachments;
      return fail(bad(arr ? "must be an array" : "must be a string", std::string(key_names[unsigned(_key)])));
    }
    if (_depth == 2 && _key == field_key::to)
      return fail(bad("must be a string", "to[" + std::to_string(_req.to.size()) + "]"));
    if (_depth == 2)
      return fail(bad("must be an object", "attachments[" + std::to_string(_req.attachments.size()) + "]"));
    return fail(bad("must be a string", attachment_field() + "." + std::string(akey_names[unsigned(_akey)])));
  }

  // Count bytes of the message as the strings arrive: over the limit is 413 at once.
  bool add_size(std::size_t n, std::string field) {
    _bytes += n;
    if (_bytes > _l.max_message_size)
      return fail(bad("the message is larger than " + std::to_string(_l.max_message_size) + " bytes",
                      std::move(field), 413));
    return true;
  }

  bool top_string(string_t& s) {
    std::string field(key_names[unsigned(_key)]);
    switch (_key) {
      case field_key::from:
        if (!smtp::valid_mailbox(s)) return fail(bad("not a valid mailbox", field));
        _req.from = std::move(s);
        return true;
      case field_key::content:
        if (s.empty()) return fail(bad("is empty", field));
        if (s.find('\0') != std::string::npos) return fail(bad("contains a NUL character", field));
        if (!add_size(s.size(), field)) return false;
        _req.raw = true;
        _req.content = std::move(s);
        return true;
      case field_key::subject:
        if (has_header_control(s)) return fail(bad("contains a control character (CR, LF, ...)", field));
        if (s.size() > max_subject_bytes)
          return fail(bad("is longer than " + std::to_string(max_subject_bytes) + " bytes", field));
        if (!add_size(s.size(), field)) return false;
        _req.subject = std::move(s);
        return true;
      case field_key::text:
      case field_key::html:
        if (s.find('\0') != std::string::npos) return fail(bad("contains a NUL character", field));
        if (!add_size(s.size(), field)) return false;
        (_key == field_key::text ? _req.text : _req.html) = std::move(s);
        return true;
      default:
        return type_error();
    }
  }

  bool recipient(string_t& s) {
    std::string field = "to[" + std::to_string(_req.to.size()) + "]";
    if (_req.to.size() >= _l.max_recipients)
      return fail(bad("too many recipients (at most " + std::to_string(_l.max_recipients) + ")", "to"));
    if (!smtp::valid_mailbox(s)) return fail(bad("not a valid mailbox", field));
    _req.to.push_back(std::move(s));
    return true;
  }

  bool attachment_string(string_t& s) {
    attachment& a = _req.attachments.back();
    std::string field = attachment_field() + "." + std::string(akey_names[unsigned(_akey)]);
    switch (_akey) {
      case akey::filename:
        if (s.empty()) return fail(bad("is empty", field));
        if (has_header_control(s)) return fail(bad("contains a control character (CR, LF, ...)", field));
        if (s.size() > max_filename_bytes)
          return fail(bad("is longer than " + std::to_string(max_filename_bytes) + " bytes", field));
        a.filename = std::move(s);
        return true;
      case akey::content_type:
        if (!valid_content_type(s)) return fail(bad("not a MIME type/subtype", field));
        a.content_type = lower(s);
        return true;
      case akey::content: {
        // Decoded size counts; base64 is 4/3 of it, checked first to refuse a huge one unread.
        if (!add_size(s.size() / 4 * 3, field)) return false;
        auto d = decode_base64_strict(s);
        if (!d) return fail(bad("not strict base64 (RFC 4648: padded, no line breaks)", field));
        a.data = std::move(*d);
        return true;
      }
      default:
        return type_error();
    }
  }

  std::optional<api_error> cross_checks() const {
    auto has = [&](field_key k) { return (_seen & 1u << unsigned(k)) != 0; };
    if (!has(field_key::from)) return bad("from is missing", "from");
    if (!has(field_key::to) || _req.to.empty()) return bad("at least one recipient is needed", "to");
    if (has(field_key::content)) {
      for (field_key k : {field_key::subject, field_key::text, field_key::html, field_key::attachments})
        if (has(k)) return bad("not allowed with content (a raw message)", std::string(key_names[unsigned(k)]));
      return std::nullopt;
    }
    if (!has(field_key::text) && !has(field_key::html) && _req.attachments.empty())
      return bad("content, text, html or attachments is needed", "");
    return std::nullopt;
  }

  const limits& _l;
  message_request _req;
  std::optional<api_error> _err;
  int _depth = 0;          // 0 outside, 1 in the body, 2 in to/attachments, 3 in an attachment
  field_key _key = field_key::none;
  akey _akey = akey::none;
  uint32_t _seen = 0;      // top-level keys seen (bit per enum key)
  uint32_t _aseen = 0;     // keys of the current attachment
  std::size_t _bytes = 0;  // content, subject, text, html and decoded attachments so far
  bool _done = false;
};

}  // namespace

std::size_t max_body_bytes(const limits& l) { return l.max_message_size * 2 + 65536; }

std::optional<api_error> check_content_type(std::optional<std::string_view> value) {
  auto refuse = [] {
    return api_error{415, "Content-Type must be application/json", "Content-Type"};
  };
  if (!value) return refuse();
  std::string v = lower(*value);
  std::string_view s = v;
  auto trim = [](std::string_view t) {
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    return t;
  };
  std::size_t semi = s.find(';');
  if (trim(s.substr(0, semi)) != "application/json") return refuse();
  if (semi == std::string_view::npos) return std::nullopt;
  std::string_view param = trim(s.substr(semi + 1));
  if (param == "charset=utf-8" || param == "charset=\"utf-8\"") return std::nullopt;
  return refuse();
}

parse_result parse_request(std::string_view body, const limits& l) {
  if (body.size() > max_body_bytes(l)) {
    parse_result r;
    r.err = bad("the body is larger than " + std::to_string(max_body_bytes(l)) + " bytes", "", 413);
    return r;
  }
  handler h(l);
  // strict: the whole body is one JSON value (trailing bytes are an error); no comments.
  nlohmann::json::sax_parse(body.begin(), body.end(), &h, nlohmann::json::input_format_t::json,
                            true, false);
  return std::move(h).finish();
}

}  // namespace sr::api
