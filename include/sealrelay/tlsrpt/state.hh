// What a shard's reporter keeps across a restart (under server.state_dir/tlsrpt/): the
// open window's start and counts, and the closed windows' reports not yet sent, with the
// rua URIs each has already reached. Saved as a small line-based text file written to a
// temporary name, fsync'd and renamed over the old one: a crash leaves the old file or
// the new one, never a torn one (it may lose what was counted since the last save).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/tlsrpt/collector.hh"
#include "sealrelay/util/result.hh"

namespace sr::tlsrpt {

// A closed window's report for one domain, waiting to be sent (or retried).
struct pending_report {
  int64_t start_ms = 0, end_ms = 0;  // the window
  std::string domain;
  domain_counts counts;
  std::vector<std::string> done;      // rua URIs (as published) already sent to
  unsigned tries = 0;                 // sending rounds that left something undone
};

struct state {
  int64_t window_start_ms = 0;        // 0: none yet
  counts_map current;                 // counts of the open window
  std::vector<pending_report> pending;
};

// Return the text form of `s`.
std::string serialize(const state& s);
// Parse the text form; an error when it is not one (or is cut short).
result<state> deserialize(std::string_view text);
// Write `s` to `path` atomically (temporary file, fsync, rename, fsync of the folder).
status save(const std::string& path, const state& s);
// Read `path`; an empty state when it does not exist.
result<state> load(const std::string& path);

}  // namespace sr::tlsrpt
