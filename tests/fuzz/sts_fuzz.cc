// libFuzzer target: the MTA-STS parsers (bytes from any recipient domain's DNS and HTTPS
// host). The input is a policy file, and also TXT records (split at NUL bytes).
// Invariants: nothing crashes or hangs; an accepted policy keeps every RFC 8461 §3.2 rule
// (max_age bound, mx required unless mode none, every pattern a valid lower-case host or
// one-label wildcard); LF and CRLF line endings give the same result; a policy survives
// the cache's JSON-lines round trip unchanged; an accepted TXT id is 1-32 alphanumerics.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "check.hh"
#include "sealrelay/sts/cache.hh"
#include "sealrelay/sts/policy.hh"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size > 70 * 1024) return -1;
  std::string_view in(reinterpret_cast<const char*>(bytes), size);

  auto p = sr::sts::parse_policy(in);
  if (p) {
    CHECK(p->max_age <= sr::sts::max_max_age);
    CHECK(p->rules.mode == sr::policy::sts_mode::none || !p->rules.mx.empty());
    for (const auto& m : p->rules.mx) {
      CHECK(sr::sts::valid_mx_pattern(m));
      for (char c : m) CHECK(!(c >= 'A' && c <= 'Z'));
    }
  }
  // The same text with every bare LF made CRLF parses the same way (when it still fits).
  std::string crlf;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r')) crlf += '\r';
    crlf += in[i];
  }
  if (crlf.size() <= sr::sts::max_policy_bytes) {
    auto q = sr::sts::parse_policy(crlf);
    CHECK(bool(p) == bool(q));
    if (p && q) {
      CHECK(p->max_age == q->max_age);
      CHECK(p->rules.mode == q->rules.mode);
      CHECK(p->rules.mx == q->rules.mx);
    }
  }
  if (p) {
    sr::sts::cache_entry e;
    e.id = "fuzz1";
    e.max_age = p->max_age;
    e.fetched_at = 1000;
    e.text = std::string(in);
    std::string line = sr::sts::to_json_line("fuzz.example", e);
    CHECK(line.find('\n') == line.size() - 1);
    auto back = sr::sts::from_json_line(std::string_view(line).substr(0, line.size() - 1));
    CHECK(bool(back));
    CHECK(back->second.text == e.text);
    CHECK(back->second.expires_at == 1000 + int64_t(p->max_age));
  }

  std::vector<std::string> records;
  size_t start = 0;
  for (size_t i = 0; i <= in.size(); ++i)
    if (i == in.size() || in[i] == '\0') {
      records.emplace_back(in.substr(start, i - start));
      start = i + 1;
    }
  auto t = sr::sts::parse_txt(records);
  if (t.verdict == sr::sts::txt_verdict::valid) {
    CHECK(!t.id.empty() && t.id.size() <= 32);
    for (char c : t.id) CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'));
  } else {
    CHECK(t.id.empty());
  }
  return 0;
}
