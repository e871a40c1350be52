// Durations as written in the config ("250ms", "10s", "5m", "1h", "5d") and back.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sr {

using duration = std::chrono::milliseconds;

// Parse "<integer><unit>" with unit ms, s, m, h or d; nullopt when malformed or negative.
std::optional<duration> parse_duration(std::string_view text);

// Format a duration with the largest unit that divides it exactly ("90s", "5m").
std::string format_duration(duration d);

// Wall-clock time in milliseconds since the Unix epoch (spool records, audit, reports).
inline uint64_t unix_ms() {
  return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count());
}

}  // namespace sr
