// libFuzzer target: the hand-written JSON of the process (the injection API's nlohmann SAX
// reader has its own target, api). Byte 0 picks the part:
//   even: one line of the MTA-STS cache file (sts/cache.cc from_json_line), read back at
//         start-up: after a crash, a disk error or an edit it may hold anything;
//   odd:  the one JSON string escaper (util/json.cc append_json_string) on any bytes.
// Invariants: nothing crashes or hangs; an accepted cache line written again by
// to_json_line() reads back to the same domain, id, fetch time and policy text; the
// escaper's output is valid JSON to a strict parser (nlohmann: UTF-8 checked, no raw
// control characters), decodes to the input when that is valid UTF-8, and the cache
// reader turns it back into exactly the input bytes.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "check.hh"
#include "sealrelay/sts/cache.hh"
#include "sealrelay/util/json.hh"

namespace {

constexpr std::string_view policy_text = "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n";

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    size_t n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 9;
    if (n == 9 || i + n >= s.size() + (n ? 0 : 1)) return false;
    uint32_t cp = n == 0 ? c : n == 1 ? c & 0x1f : n == 2 ? c & 0x0f : c & 0x07;
    for (size_t k = 1; k <= n; ++k) {
      unsigned char d = s[i + k];
      if ((d >> 6) != 2) return false;
      cp = cp << 6 | (d & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n + 1;
  }
  return true;
}

void fuzz_cache_line(std::string_view line) {
  auto r = sr::sts::from_json_line(line);
  if (!r) {
    CHECK(!r.err().empty());
    return;
  }
  const auto& [domain, e] = *r;
  CHECK(!domain.empty() && !e.id.empty() && e.rules && e.fetched_at >= 0);
  CHECK(e.expires_at == e.fetched_at + int64_t(e.max_age));
  std::string again = sr::sts::to_json_line(domain, e);
  CHECK(again.find('\n') == again.size() - 1);
  auto back = sr::sts::from_json_line(std::string_view(again).substr(0, again.size() - 1));
  CHECK(back);
  CHECK(back->first == domain && back->second.id == e.id && back->second.fetched_at == e.fetched_at &&
        back->second.text == e.text && back->second.max_age == e.max_age);
}

void fuzz_escaper(std::string_view s) {
  std::string out;
  sr::append_json_string(out, s);
  auto j = nlohmann::json::parse(out, nullptr, false);
  CHECK(!j.is_discarded() && j.is_string());
  if (valid_utf8(s)) CHECK(j.get<std::string>() == s);
  // Through the cache: the domain field is read back byte for byte.
  sr::sts::cache_entry e;
  e.id = "fuzz1";
  e.max_age = 86400;
  e.fetched_at = 1000;
  e.text = std::string(policy_text);
  if (s.empty()) return;   // an empty domain is refused as a missing field
  std::string line = sr::sts::to_json_line(s, e);
  auto back = sr::sts::from_json_line(std::string_view(line).substr(0, line.size() - 1));
  CHECK(back && back->first == s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1 || size > 70 * 1024) return -1;
  std::string_view in(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  if (bytes[0] % 2 == 0)
    fuzz_cache_line(in);
  else
    fuzz_escaper(in);
  return 0;
}
