// libFuzzer target: the engine <-> fallback sidecar protocol decoder (fallback/protocol.cc),
// bytes from the other end of the unix socket (either side reads the other's frames: a
// buggy or compromised sidecar must not take the engine down, nor the reverse). Input:
// byte 0 picks a split point, the rest is the byte stream. Invariants: nothing crashes or
// hangs; decoding is strict, so every frame decoded encodes back to exactly the bytes it
// came from (the concatenation is a prefix of the stream); once failed, no frame follows
// and the error is named; the stream fed in two pieces decodes to the same frames.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "check.hh"
#include "sealrelay/fallback/protocol.hh"

namespace {

namespace wire = sr::fallback::wire;

// Decode `in` fed in two parts split at `cut`; return the frames re-encoded, one string each.
std::vector<std::string> run(std::string_view in, size_t cut, bool& failed) {
  wire::decoder d;
  std::vector<std::string> frames;
  for (std::string_view part : {in.substr(0, cut), in.substr(cut)}) {
    d.feed(part);
    for (int i = 0; i < 10000; ++i) {   // bounded: a frame takes at least 6 bytes
      auto f = d.next();
      if (!f) break;
      CHECK(!d.failed());
      std::string enc;
      wire::encode(*f, enc);
      frames.push_back(std::move(enc));
    }
  }
  failed = d.failed();
  if (failed) {
    CHECK(!d.error().empty());
    CHECK(!d.next());
  }
  return frames;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1 || size > 64 * 1024) return -1;
  std::string_view in(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  size_t cut = bytes[0] % (in.size() + 1);
  bool failed_whole = false, failed_split = false;
  std::vector<std::string> whole = run(in, in.size(), failed_whole);
  std::vector<std::string> split = run(in, cut, failed_split);
  CHECK(whole == split && failed_whole == failed_split);
  std::string all;
  for (const auto& f : whole) all += f;
  CHECK(in.substr(0, all.size()) == all);
  return 0;
}
