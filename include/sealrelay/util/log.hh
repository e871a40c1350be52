// Operator log on stderr: one line per event, "<ts> <level> <shard> <text>", or under
// systemd, when stderr is the journal, "<priority><level> <shard> <text>" (journald keeps
// the priority and stamps the time). Rare events only (start, stop, errors, refusals):
// never per byte or per command.
#pragma once
#include <cstdarg>

namespace sr {

enum class log_level : unsigned char { debug, info, warn, error };

void set_log_level(log_level level);
// Name the calling thread in its log lines ("main", "shard0", ...).
void set_log_thread_name(const char* name);
// True when stderr is the stream systemd connected to the journal (JOURNAL_STREAM).
bool stderr_is_journal();
// Write one formatted line if `level` is enabled.
void logf(log_level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define SR_DEBUG(...) ::sr::logf(::sr::log_level::debug, __VA_ARGS__)
#define SR_INFO(...) ::sr::logf(::sr::log_level::info, __VA_ARGS__)
#define SR_WARN(...) ::sr::logf(::sr::log_level::warn, __VA_ARGS__)
#define SR_ERROR(...) ::sr::logf(::sr::log_level::error, __VA_ARGS__)

}  // namespace sr
