// The MTA-STS policy cache of one shard (RFC 8461 §5): domain -> the last policy fetched
// for it, kept until its max_age runs out. Owned by the shard that owns the domain, so no
// lock. Persisted as JSON lines in `<state_dir>/mta-sts/shard-<n>.jsonl`: each new policy
// is appended with one write(), so a crash loses at most the last lines and a torn last
// line is skipped at load; load() and compaction rewrite the file through a temporary
// file and rename(). Times are wall-clock Unix seconds (they must survive a restart).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sealrelay/policy/resolver.hh"
#include "sealrelay/util/result.hh"

namespace sr::sts {

// One domain's cached state. `rules` is null when no policy was ever fetched (an entry
// that only remembers a failed fetch, for the 5-minute refetch limit); such entries are
// not persisted.
struct cache_entry {
  std::shared_ptr<const policy::mta_sts_rules> rules;
  std::string id;                  // the TXT id the policy was fetched under
  uint32_t max_age = 0;            // seconds
  int64_t fetched_at = 0;          // Unix seconds
  int64_t expires_at = 0;          // fetched_at + max_age
  int64_t next_refresh_at = 0;     // when to refetch proactively (before expiry)
  int64_t last_fetch_attempt = 0;  // last fetch that failed (0: none); refetch limit
  std::string text;                // the policy file as fetched (TLS-RPT quotes it)

  // Return whether a policy is in force at `now`.
  bool live(int64_t now) const { return rules && now < expires_at; }
};

// A failed fetch is not retried for this long (issue 8: one refetch per domain per 5 min).
inline constexpr int64_t refetch_interval_s = 300;

// Return when a policy fetched at `fetched_at` with `max_age` should be refreshed: once
// less than a quarter of max_age, or one day, whichever is smaller, remains.
int64_t refresh_time(int64_t fetched_at, uint32_t max_age);

class cache {
 public:
  // A cache persisted under `dir` (normally <state_dir>/mta-sts) as shard `shard`'s file;
  // `dir` empty: memory only.
  cache(std::string dir, unsigned shard);
  cache(const cache&) = delete;
  cache& operator=(const cache&) = delete;
  ~cache();

  // Load every shard's file under dir (creating dir if needed), keep the newest unexpired
  // policy of each domain for which `mine(domain)` holds, and rewrite this shard's file
  // without expired or superseded lines. Start-up only.
  status load(int64_t now, const std::function<bool(std::string_view)>& mine);

  // Return the entry of `domain` (lower case, no trailing dot), or null.
  const cache_entry* find(std::string_view domain) const;
  cache_entry* find(std::string_view domain);

  // Keep the policy `text` parsed as `rules` (mode, mx) with `max_age`, fetched at `now`
  // under TXT id `id`, and append it to the file. Returns the entry; a write failure is
  // logged and leaves the in-memory entry in place.
  const cache_entry& store(std::string_view domain, std::string_view id, const policy::mta_sts_rules& rules,
                           uint32_t max_age, std::string_view text, int64_t now);
  // Return up to `max` domains whose live policy is due for a proactive refresh at `now`
  // (next_refresh_at passed, no failed fetch within `refetch_s`).
  std::vector<std::string> due_for_refresh(int64_t now, int64_t refetch_s, size_t max) const;
  // Remember that a fetch for `domain` failed at `now` (its policy, if any, stays).
  void note_failure(std::string_view domain, int64_t now);
  // Forget entries whose policy has expired and that record no recent failure.
  void drop_expired(int64_t now);

  size_t size() const { return _map.size(); }
  // Return the file this shard appends to ("" when memory only).
  const std::string& path() const { return _path; }

 private:
  struct hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  status rewrite(int64_t now);
  void append(std::string_view domain, const cache_entry& e);

  std::string _dir, _path;
  unsigned _shard;
  int _fd = -1;
  size_t _lines = 0;  // lines in the file (compaction once it holds far more than live entries)
  std::unordered_map<std::string, cache_entry, hash, std::equal_to<>> _map;
  // Lines of this shard's file about domains another shard owns (after a change of
  // server.shards): kept on rewrite until they expire, so their owner still finds them.
  std::vector<std::pair<int64_t, std::string>> _foreign;  // (expires_at, line)
};

// Format one persisted entry as a JSON line (with its '\n').
std::string to_json_line(std::string_view domain, const cache_entry& e);
// Parse a JSON line written by to_json_line(); the policy text is parsed again.
result<std::pair<std::string, cache_entry>> from_json_line(std::string_view line);

}  // namespace sr::sts
