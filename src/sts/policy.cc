// The two MTA-STS grammars of RFC 8461: §3.1 (TXT record) and §3.2 (policy file). Both
// parsers follow the ABNF and refuse what it does not allow, with two tolerances that
// change no meaning: whitespace after a TXT record's last field and empty lines in a
// policy file (common in hand-written files).
#include "sealrelay/sts/policy.hh"

#include <cctype>
#include <charconv>

namespace sr::sts {

const char* to_string(txt_verdict v) {
  switch (v) {
    case txt_verdict::none: return "none";
    case txt_verdict::valid: return "valid";
    case txt_verdict::invalid: return "invalid";
  }
  return "?";
}

namespace {

bool is_wsp(char c) { return c == ' ' || c == '\t'; }
bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

std::string_view trim_wsp(std::string_view s) {
  while (!s.empty() && is_wsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_wsp(s.back())) s.remove_suffix(1);
  return s;
}

// sts-ext-name / sts-policy-ext-name: (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
bool valid_field_name(std::string_view n) {
  if (n.empty() || n.size() > 32 || !is_alnum(n[0])) return false;
  for (char c : n)
    if (!is_alnum(c) && c != '_' && c != '-' && c != '.') return false;
  return true;
}

// sts-ext-value: 1*(%x21-3A / %x3C / %x3E-7E): printable, no ';', no '=', no space.
bool valid_txt_ext_value(std::string_view v) {
  if (v.empty()) return false;
  for (unsigned char c : v)
    if (c < 0x21 || c > 0x7e || c == ';' || c == '=') return false;
  return true;
}

// sts-policy-ext-value: visible characters (UTF-8 allowed) with inner spaces.
bool valid_policy_ext_value(std::string_view v) {
  if (v.empty() || v.front() == ' ' || v.back() == ' ') return false;
  for (unsigned char c : v)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

// RFC 5321 Domain: sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str].
bool valid_domain(std::string_view d) {
  if (d.empty() || d.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = d.find('.', start);
    std::string_view label = d.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || !is_alnum(label.front()) || !is_alnum(label.back())) return false;
    for (char c : label)
      if (!is_alnum(c) && c != '-') return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

}  // namespace

bool valid_mx_pattern(std::string_view p) {
  if (p.size() > 2 && p[0] == '*' && p[1] == '.') p.remove_prefix(2);
  return valid_domain(p);
}

txt_record parse_txt(std::span<const std::string> records) {
  txt_record out;
  const std::string* found = nullptr;
  size_t count = 0;
  for (const std::string& r : records) {
    // §3.1: records that do not begin with "v=STSv1" are discarded ("v=STSv10" is another
    // version, not ours).
    std::string_view s = r;
    if (s.substr(0, 7) != "v=STSv1") continue;
    if (s.size() > 7 && s[7] != ';' && !is_wsp(s[7])) continue;
    ++count;
    found = &r;
  }
  if (count == 0) return out;
  auto invalid = [&](std::string why) {
    out.verdict = txt_verdict::invalid;
    out.detail = std::move(why);
    out.id.clear();
    return out;
  };
  if (count > 1) return invalid(std::to_string(count) + " records start with v=STSv1");

  // sts-text-record = sts-version 1*(*WSP %x3B *WSP sts-field) [%x3B]
  std::string_view rest = std::string_view(*found).substr(7);
  size_t semi = rest.find(';');
  if (semi == std::string_view::npos) return invalid("no field after v=STSv1");
  if (!trim_wsp(rest.substr(0, semi)).empty()) return invalid("text between v=STSv1 and ';'");
  rest.remove_prefix(semi + 1);
  bool have_id = false;
  while (true) {
    size_t next = rest.find(';');
    std::string_view piece = rest.substr(0, next);
    std::string_view field = trim_wsp(piece);
    if (field.empty()) {
      // Only a trailing ';' (and whitespace) may end the record without a field.
      if (next == std::string_view::npos && have_id) break;
      return invalid(have_id ? "empty field" : "no id field");
    }
    size_t eq = field.find('=');
    if (eq == std::string_view::npos) return invalid("field without '='");
    std::string_view name = field.substr(0, eq), value = field.substr(eq + 1);
    if (!valid_field_name(name)) return invalid("bad field name");
    if (name == "id") {
      if (have_id) return invalid("id given twice");
      if (value.empty() || value.size() > 32) return invalid("id must be 1-32 letters or digits");
      for (char c : value)
        if (!is_alnum(c)) return invalid("id must be 1-32 letters or digits");
      out.id = std::string(value);
      have_id = true;
    } else if (!valid_txt_ext_value(value)) {
      return invalid("bad value of field " + std::string(name));
    }
    if (next == std::string_view::npos) break;
    rest.remove_prefix(next + 1);
  }
  if (!have_id) return invalid("no id field");
  out.verdict = txt_verdict::valid;
  return out;
}

result<policy_file> parse_policy(std::string_view text) {
  if (text.size() > max_policy_bytes) return error{"policy larger than 64 KiB"};
  policy_file out;
  bool have_version = false, have_mode = false, have_max_age = false;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t lf = text.find('\n');
    std::string_view line = text.substr(0, lf);
    text.remove_prefix(lf == std::string_view::npos ? text.size() : lf + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // CRLF or LF
    if (line.empty()) continue;
    auto bad = [&](const std::string& why) { return error{"line " + std::to_string(line_no) + ": " + why}; };
    // sts-policy-field = name ":" *WSP value, then *WSP before the terminator.
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return bad("no ':'");
    std::string_view key = line.substr(0, colon);
    if (!valid_field_name(key)) return bad("bad key");
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && is_wsp(value.front())) value.remove_prefix(1);
    while (!value.empty() && is_wsp(value.back())) value.remove_suffix(1);
    if (key == "version") {
      if (have_version) return bad("version given twice");
      if (value != "STSv1") return bad("version is not STSv1");
      have_version = true;
    } else if (key == "mode") {
      if (have_mode) return bad("mode given twice");
      if (value == "enforce") out.rules.mode = policy::sts_mode::enforce;
      else if (value == "testing") out.rules.mode = policy::sts_mode::testing;
      else if (value == "none") out.rules.mode = policy::sts_mode::none;
      else return bad("mode must be enforce, testing or none");
      have_mode = true;
    } else if (key == "max_age") {
      if (have_max_age) return bad("max_age given twice");
      // sts-policy-max-age-value = 1*10(DIGIT)
      if (value.empty() || value.size() > 10) return bad("max_age must be 1-10 digits");
      uint64_t v = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc{} || p != value.data() + value.size()) return bad("max_age must be 1-10 digits");
      if (v > max_max_age) return bad("max_age above 31557600");
      out.max_age = uint32_t(v);
      out.rules.max_age = out.max_age;
      have_max_age = true;
    } else if (key == "mx") {
      if (!valid_mx_pattern(value)) return bad("bad mx pattern");
      std::string p(value);
      for (char& c : p) c = char(std::tolower(static_cast<unsigned char>(c)));
      out.rules.mx.push_back(std::move(p));
    } else if (!valid_policy_ext_value(value)) {
      return bad("bad value");  // unknown keys are ignored, but must be well formed
    }
  }
  if (!have_version) return error{"no version"};
  if (!have_mode) return error{"no mode"};
  if (!have_max_age) return error{"no max_age"};
  if (out.rules.mode != policy::sts_mode::none && out.rules.mx.empty()) return error{"no mx"};
  return out;
}

}  // namespace sr::sts
