// One write(2) per line so lines from different shards never interleave.
#include "sealrelay/util/log.hh"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>

namespace sr {
namespace {
std::atomic<log_level> g_level{log_level::info};
thread_local const char* t_name = "main";
const char* level_name(log_level l) {
  switch (l) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
  }
  return "?";
}
}  // namespace

void set_log_level(log_level level) { g_level.store(level, std::memory_order_relaxed); }
void set_log_thread_name(const char* name) { t_name = name; }

void logf(log_level level, const char* fmt, ...) {
  if (level < g_level.load(std::memory_order_relaxed)) return;
  char line[1024];
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm utc;
  gmtime_r(&ts.tv_sec, &utc);
  int n = std::snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s ",
                        utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                        utc.tm_min, utc.tm_sec, ts.tv_nsec / 1'000'000, level_name(level), t_name);
  va_list ap;
  va_start(ap, fmt);
  int m = std::vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  va_end(ap);
  size_t len = n + (m < 0 ? 0 : (size_t(m) < sizeof line - n - 1 ? size_t(m) : sizeof line - n - 2));
  line[len++] = '\n';
  ssize_t w = ::write(2, line, len);
  (void)w;
}

}  // namespace sr
