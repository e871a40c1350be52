// The suppression list on disk (issue 14): <state_dir>/suppression.db, one SQLite table of
// lower-cased addresses with when, by whom and why each was added. SQLite because it is
// already a dependency (the escrow store) and because the operator's tool
// (sealrelay-queue suppress) and the relay may both write it safely at the same time: the
// relay re-reads the list when another connection committed (data_version). Rollback
// journal (not WAL), so a tool run as root leaves no -wal/-shm file the relay cannot open.
// A store is used by one thread at a time.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/util/result.hh"

struct sqlite3;

namespace sr::suppress {

// Where an entry came from.
enum class origin : uint8_t {
  bounce,    // a bad-mailbox bounce added it (the relay)
  operator_, // sealrelay-queue suppress add
};
// Return "bounce" or "operator".
const char* to_string(origin o);

struct entry {
  std::string address;   // lower case
  int64_t added_ms = 0;  // unix ms
  origin source = origin::operator_;
  std::string reason;    // the bounce's reply, or the operator's note ("" = none)
};

// Return `address` without surrounding <> and spaces, lower-cased (ASCII), or "" when it is
// not a plausible address (no '@' with text on both sides, spaces or control bytes inside,
// longer than 320 bytes). Case: providers treat local parts case-insensitively, and an
// upper-case copy of a dead address must not slip past the list.
std::string normalize(std::string_view address);

// Return the path of the list under `state_dir`.
std::string db_path(const std::string& state_dir);

class store {
 public:
  // Open (with `create`: create it, mode 0600, and its table) the database at `path`.
  static result<std::unique_ptr<store>> open(const std::string& path, bool create);
  ~store();
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  // Add every entry not there yet in one transaction; return how many were new. Addresses
  // must be normalize()d.
  result<size_t> add(const std::vector<entry>& entries);
  // Remove `address` (normalized); return whether it was there.
  result<bool> remove(std::string_view address);
  // Return whether `address` (normalized) is listed.
  result<bool> contains(std::string_view address);
  // Return every entry, by address.
  result<std::vector<entry>> list();
  // Return every address, sorted (the relay's snapshot).
  result<std::vector<std::string>> addresses();
  // Return SQLite's data_version for this connection: it changes when another connection
  // (the operator's tool) committed a change.
  int64_t data_version();

 private:
  explicit store(sqlite3* db) : _db(db) {}
  status exec(const char* sql);
  sqlite3* _db;
};

}  // namespace sr::suppress
