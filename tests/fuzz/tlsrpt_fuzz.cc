// libFuzzer target: what src/tlsrpt reads back. Byte 0 picks the parser:
//   even: a domain's TXT records at `_smtp._tls.<domain>` (split at NUL bytes), bytes from
//         any recipient domain's DNS, through pick_record() and parse_record();
//   odd:  the reporter's state file (state.hh), read back at start-up after a crash or
//         a disk error may have left anything in it.
// Invariants: nothing crashes or hangs; an accepted record has at least one rua URI, no
// two alike, each a mailto: with a mailbox or an https: with a lower-case host, a port and
// a path; an accepted state file survives serialize() -> deserialize() unchanged (same
// text again), and any cut-short prefix of a serialized state is refused.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "check.hh"
#include "sealrelay/tlsrpt/record.hh"
#include "sealrelay/tlsrpt/state.hh"

namespace {

void check_record(const sr::tlsrpt::record& r) {
  CHECK(!r.rua.empty());
  for (size_t i = 0; i < r.rua.size(); ++i) {
    const auto& u = r.rua[i];
    CHECK(!u.text.empty());
    for (size_t j = 0; j < i; ++j) CHECK(r.rua[j].text != u.text);
    if (u.scheme == sr::tlsrpt::rua_uri::scheme::mailto) {
      size_t at = u.address.rfind('@');
      CHECK(at != std::string::npos && at > 0 && at + 1 < u.address.size());
    } else {
      CHECK(!u.host.empty() && u.port != 0);
      for (char c : u.host) CHECK(!(c >= 'A' && c <= 'Z'));
      CHECK(!u.path.empty() && u.path[0] == '/');
    }
  }
}

void fuzz_txt(std::string_view in) {
  std::vector<std::string> records;
  size_t start = 0;
  for (size_t i = 0; i <= in.size(); ++i)
    if (i == in.size() || in[i] == '\0') {
      records.emplace_back(in.substr(start, i - start));
      start = i + 1;
    }
  auto picked = sr::tlsrpt::pick_record(records);
  if (picked) check_record(*picked);
  else CHECK(!picked.err().empty());
  for (const auto& t : records)
    if (auto r = sr::tlsrpt::parse_record(t)) check_record(*r);
}

void fuzz_state(std::string_view in) {
  auto s = sr::tlsrpt::deserialize(in);
  if (!s) {
    CHECK(!s.err().empty());
    return;
  }
  std::string once = sr::tlsrpt::serialize(*s);
  auto again = sr::tlsrpt::deserialize(once);
  CHECK(again);
  CHECK(sr::tlsrpt::serialize(*again) == once);
  // A torn write (cut anywhere before the end line's newline) never reads as a state.
  CHECK(!sr::tlsrpt::deserialize(std::string_view(once).substr(0, once.size() - 1)));
  CHECK(!sr::tlsrpt::deserialize(std::string_view(once).substr(0, once.size() / 2)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1 || size > 64 * 1024) return -1;
  std::string_view in(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  if (bytes[0] % 2 == 0)
    fuzz_txt(in);
  else
    fuzz_state(in);
  return 0;
}
