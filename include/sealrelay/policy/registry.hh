// Publication of policy tables to the shards (DESIGN.md §2 "published through an atomic
// pointer"): SIGHUP compiles a new table and publish()es it; each shard owns a `reader` and
// calls refresh() at a safe point (its tick, or before a delivery attempt). Lookups go to the
// reader's snapshot and take no lock; refresh() is three atomic operations (wait-free).
// Old tables are reclaimed by epochs: each publish bumps the epoch, each reader announces the
// epoch it last saw, and a table retired at epoch r is freed once every reader announced >= r.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "sealrelay/policy/table.hh"

namespace sr::policy {

class reader;

// Counters for tests and /metrics.
struct registry_stats {
  uint64_t published = 0;  // tables published, the initial one included
  uint64_t freed = 0;      // retired tables reclaimed
  size_t pending = 0;      // retired tables still waiting for a reader to move on
  size_t readers = 0;      // registered readers
};

// The process-wide holder of the current table. publish(), reclaim() and reader
// (un)registration take a mutex (reload/start-up paths); lookups never do.
//
// Use: at start `registry reg(compile(cfg))`; each shard owns `reader rd(reg)` and on its
// tick calls `if (rd.refresh()) reg.try_reclaim();` (try_reclaim never blocks); a delivery
// attempt copies `rd.lookup(domain).policy` into its decider. SIGHUP: load + validate the
// config, compile(), publish(); on any error keep the old table and log why.
// Reclamation runs on publish, when a reader unregisters, and on reclaim()/try_reclaim().
//
// Why this is safe (memory orders as in registry.cc):
//  - publish stores the new table pointer (release), then the new epoch E+1 (release).
//    A reader that loads epoch e (acquire) and then the pointer gets the table of epoch e or
//    a newer one, so the table it holds is retired, if ever, at an epoch > e.
//  - A reader announces e (release) before loading the pointer and touches its previous
//    table no more after the announcement. The reclaimer frees a table retired at r only if
//    every announcement it reads (acquire) is >= r; an announcement read late is smaller,
//    never larger, so a stale read only delays freeing.
class registry {
 public:
  // Start with `initial` as the current table (epoch 1).
  explicit registry(std::unique_ptr<table> initial);
  // Free every table; every reader must be gone.
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  // Make `t` current, retire the old one, and free what no reader can still see.
  void publish(std::unique_ptr<table> t);
  // Free retired tables every reader has moved past; return how many were freed.
  size_t reclaim();
  // Like reclaim(), but give up at once when another thread holds the lock (shard ticks).
  size_t try_reclaim();
  // Return the current table without registering (for one-off use on the publishing
  // thread only: another publish may free it).
  const table& current() const { return *_current.load(std::memory_order_acquire); }
  // Return the current epoch (1 + number of publishes after the initial table).
  uint64_t epoch() const { return _epoch.load(std::memory_order_acquire); }
  // Return a snapshot of the counters.
  registry_stats stats() const;

 private:
  friend class reader;
  // One reader's announcement, alone on its cache line so readers do not share lines.
  struct alignas(64) slot {
    std::atomic<uint64_t> seen{0};
  };
  struct retired {
    std::unique_ptr<table> t;
    uint64_t retire_epoch;  // the epoch that replaced it: readers that saw >= this are done
  };

  slot* add_reader();
  void remove_reader(slot* s);
  size_t reclaim_locked();

  std::atomic<const table*> _current;
  std::atomic<uint64_t> _epoch{1};
  mutable std::mutex _mu;
  std::unique_ptr<table> _owned;               // the current table (guarded by _mu)
  std::vector<retired> _retired;               // guarded by _mu
  std::vector<std::unique_ptr<slot>> _slots;   // guarded by _mu
  uint64_t _published = 1;
  uint64_t _freed = 0;
};

// One shard's view of the registry. Not thread-safe: used by its shard thread only.
class reader {
 public:
  // Register with `reg` and take the current table.
  explicit reader(registry& reg);
  // Unregister; the tables it held may then be freed.
  ~reader();
  reader(const reader&) = delete;
  reader& operator=(const reader&) = delete;

  // Take the current table (wait-free); true when it changed. References from lookups
  // made before the call may dangle afterwards.
  bool refresh();
  // Return the table seen at the last refresh().
  const table& snapshot() const { return *_table; }
  // Return the most specific rule for `domain` in the snapshot (no lock, no allocation).
  rule lookup(std::string_view domain) const { return _table->lookup(domain); }

 private:
  registry& _reg;
  registry::slot* _slot;
  const table* _table = nullptr;
};

}  // namespace sr::policy
