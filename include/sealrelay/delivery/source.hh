// Which source address of a [[pool]] the next outbound connection binds (issue 14 item 3).
// One picker per pool per shard, so the state needs no lock. Both selections are smooth
// weighted round-robin (nginx's): every pick adds each address's weight to its credit, takes
// the address with the most credit and charges it the total. Weights all 1 give plain
// round-robin in written order; weights w give exactly N * w / total picks over N (per
// family), spread out rather than in runs, and no randomness to make tests flaky.
#pragma once
#include <sys/socket.h>

#include <cstdint>
#include <vector>

#include "sealrelay/config/config.hh"

namespace sr::delivery {

class source_picker {
 public:
  explicit source_picker(const config::pool_entry& p);
  // Return the next address of `family` (AF_INET or AF_INET6), or null when the pool has
  // none of that family.
  const config::pool_address* next(int family);
  const config::pool_entry& pool() const { return *_pool; }

 private:
  struct candidates {
    std::vector<const config::pool_address*> addrs;
    std::vector<int64_t> credit;  // per address, in written order
    int64_t total = 0;            // sum of the weights
  };
  const config::pool_entry* _pool;
  candidates _v4, _v6;
};

}  // namespace sr::delivery
