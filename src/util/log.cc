// One write(2) per line so lines from different shards never interleave.
// Under systemd, when stderr is the journal's stream (JOURNAL_STREAM names its device and
// inode, systemd.exec(5)), each line starts with its syslog priority, "<3>" for an error,
// which journald strips and records as PRIORITY= (sd-daemon(3)); the journal stamps the
// time itself, so the line carries none. Anywhere else stderr gets the timestamped line.
#include "sealrelay/util/log.hh"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
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

// syslog(3) priorities: LOG_DEBUG 7, LOG_INFO 6, LOG_WARNING 4, LOG_ERR 3.
int priority(log_level l) {
  switch (l) {
    case log_level::debug: return 7;
    case log_level::info: return 6;
    case log_level::warn: return 4;
    case log_level::error: return 3;
  }
  return 6;
}
}  // namespace

bool stderr_is_journal() {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (!js) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st;
  if (::fstat(2, &st) != 0) return false;
  return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void set_log_level(log_level level) { g_level.store(level, std::memory_order_relaxed); }
void set_log_thread_name(const char* name) { t_name = name; }

void logf(log_level level, const char* fmt, ...) {
  if (level < g_level.load(std::memory_order_relaxed)) return;
  // Decided once: a process does not move its stderr between the journal and a file.
  static const bool journal = stderr_is_journal();
  char line[1024];
  int n;
  if (journal) {
    n = std::snprintf(line, sizeof line, "<%d>%s %s ", priority(level), level_name(level), t_name);
  } else {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    tm utc;
    gmtime_r(&ts.tv_sec, &utc);
    n = std::snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s ",
                      utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                      utc.tm_sec, ts.tv_nsec / 1'000'000, level_name(level), t_name);
  }
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
