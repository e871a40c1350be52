// libFuzzer target: the config loader. Arbitrary text goes through config::parse(): it
// returns a validated config or an error naming the file ("fuzz.toml:LINE: ..."), never
// crashes, hangs or lets an exception escape (toml++ is built without exceptions). An
// accepted config survives the round trip dump() promises: parse(dump(c)) is accepted
// and dumps to the same text.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "check.hh"
#include "sealrelay/config/config.hh"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size > 64 * 1024) return -1;   // a config is small; big inputs only slow the run
  std::string_view text(reinterpret_cast<const char*>(bytes), size);
  auto r = sr::config::parse(text, "fuzz.toml");
  if (!r.ok()) {
    std::string_view err = r.err();
    CHECK(!err.empty());
    CHECK(err.substr(0, 10) == "fuzz.toml:");
    return 0;
  }
  std::string once = sr::config::dump(r.value());
  auto again = sr::config::parse(once, "fuzz.toml");   // same name: dump() writes it in its header
  if (!again.ok()) std::fprintf(stderr, "dump not accepted: %s\n--- dump:\n%s\n", std::string(again.err()).c_str(), once.c_str());
  CHECK(again.ok());
  CHECK(sr::config::dump(again.value()) == once);
  return 0;
}
