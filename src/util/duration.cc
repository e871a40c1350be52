// Config duration syntax: one non-negative integer and one unit, no spaces.
#include "sealrelay/util/duration.hh"

#include <charconv>

namespace sr {

std::optional<duration> parse_duration(std::string_view text) {
  long long n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || p == text.data() || n < 0) return std::nullopt;
  std::string_view unit(p, text.data() + text.size() - p);
  long long ms_per = 0;
  if (unit == "ms") ms_per = 1;
  else if (unit == "s") ms_per = 1000;
  else if (unit == "m") ms_per = 60'000;
  else if (unit == "h") ms_per = 3'600'000;
  else if (unit == "d") ms_per = 86'400'000;
  else return std::nullopt;
  if (n > (1LL << 40)) return std::nullopt;  // absurd values are typos, not intent
  return duration(n * ms_per);
}

std::string format_duration(duration d) {
  long long ms = d.count();
  struct { long long per; const char* unit; } units[] = {
      {86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}};
  for (auto& u : units)
    if (ms != 0 && ms % u.per == 0) return std::to_string(ms / u.per) + u.unit;
  return std::to_string(ms) + "ms";
}

}  // namespace sr
