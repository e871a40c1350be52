// source_picker: smooth weighted round-robin over one address family of a pool (see
// source.hh). round-robin pools are the same walk with every weight 1.
#include "sealrelay/delivery/source.hh"

#include <netinet/in.h>

namespace sr::delivery {

source_picker::source_picker(const config::pool_entry& p) : _pool(&p) {
  const bool weighted = p.selection == config::pool_selection::weighted;
  for (const auto& a : p.addresses) {
    candidates& c = a.addr.ss_family == AF_INET6 ? _v6 : _v4;
    c.addrs.push_back(&a);
    c.credit.push_back(0);
    c.total += weighted ? int64_t(a.weight) : 1;
  }
}

const config::pool_address* source_picker::next(int family) {
  candidates& c = family == AF_INET6 ? _v6 : _v4;
  if (c.addrs.empty()) return nullptr;
  const bool weighted = _pool->selection == config::pool_selection::weighted;
  size_t best = 0;
  for (size_t i = 0; i < c.addrs.size(); ++i) {
    c.credit[i] += weighted ? int64_t(c.addrs[i]->weight) : 1;
    if (c.credit[i] > c.credit[best]) best = i;  // ties: the one written first
  }
  c.credit[best] -= c.total;
  return c.addrs[best];
}

}  // namespace sr::delivery
