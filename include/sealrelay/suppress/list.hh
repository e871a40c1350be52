// The suppression list as the relay's shards see it (issue 14, DESIGN.md §4 [suppression]):
// an immutable snapshot (a sorted vector of lower-cased addresses) behind an atomic
// shared_ptr, replaced as a whole on every change. Every shard owns a `reader`; a lookup is
// one acquire load of the version and a binary search of the reader's own snapshot (no lock,
// no allocation); only after a change does the reader load the new snapshot pointer.
// One writer thread owns the database: bounces from any shard are queued to it (add_async,
// a short mutex, never a wait on disk), it writes them in one transaction, merges them into a
// new snapshot and publishes it. Every second it also checks whether another connection (the
// operator's sealrelay-queue suppress) changed the database, and if so reloads it.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sealrelay/suppress/store.hh"
#include "sealrelay/util/result.hh"

namespace sr::suppress {

// One published state of the list.
class snapshot {
 public:
  snapshot() = default;
  explicit snapshot(std::vector<std::string> sorted) : _a(std::move(sorted)) {}
  // Return whether `address` (any case, with or without <>) is listed.
  bool contains(std::string_view address) const;
  size_t size() const { return _a.size(); }
  const std::vector<std::string>& addresses() const { return _a; }

 private:
  std::vector<std::string> _a;  // normalize()d, sorted, unique
};

class list {
 public:
  // Open (creating it) the database at `path`, load it, start the writer thread.
  static result<std::unique_ptr<list>> open(const std::string& path);
  // Stop the writer thread after it wrote what was queued.
  ~list();
  list(const list&) = delete;
  list& operator=(const list&) = delete;

  // Queue `address` (a bad-mailbox bounce; `reason` the reply) for the list; any thread,
  // returns at once. Duplicates and addresses already listed cost nothing on disk.
  void add_async(std::string_view address, std::string_view reason);
  // Return the current snapshot.
  std::shared_ptr<const snapshot> current() const { return _current.load(std::memory_order_acquire); }
  // Return the number of snapshots published so far (changes after every publish).
  uint64_t version() const { return _version.load(std::memory_order_acquire); }
  // Return the addresses bounces added (for /metrics).
  uint64_t added_by_bounces() const { return _added.load(std::memory_order_relaxed); }
  // Block until every add_async() queued before the call is written and published (tests).
  void sync();
  // Re-read the database now if another connection changed it (also done every second).
  void poll_external();

 private:
  explicit list(std::unique_ptr<store> s);
  void run();
  void publish(std::vector<std::string> sorted);
  void reload();

  std::unique_ptr<store> _store;  // the writer thread's (and open()'s) only
  std::atomic<std::shared_ptr<const snapshot>> _current;
  std::atomic<uint64_t> _version{0};
  std::atomic<uint64_t> _added{0};
  std::mutex _mu;
  std::condition_variable _cv, _done_cv;
  std::vector<entry> _queue;  // guarded by _mu
  uint64_t _queued = 0, _written = 0;  // add_async() calls queued / handled (guarded by _mu)
  uint64_t _poll_req = 0, _poll_done = 0;  // re-reads asked / done (guarded by _mu)
  bool _stop = false;                  // guarded by _mu
  int64_t _data_version = 0;           // the writer thread's
  std::thread _thread;
};

// One shard's view of the list. Not thread-safe: used by its shard thread only.
class reader {
 public:
  explicit reader(const list& l) : _list(l) {}
  // Return whether `address` is suppressed (the newest published snapshot).
  bool suppressed(std::string_view address) {
    uint64_t v = _list.version();
    if (v != _seen || !_snap) {
      // Version first, then the pointer: the snapshot is at least as new as `v`.
      _snap = _list.current();
      _seen = v;
    }
    return _snap && _snap->contains(address);
  }

 private:
  const list& _list;
  std::shared_ptr<const snapshot> _snap;
  uint64_t _seen = ~uint64_t(0);
};

}  // namespace sr::suppress
