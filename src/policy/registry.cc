// Epoch-based publication of policy tables (the reasoning is in registry.hh). The lock
// serialises publishers, the reclaimer and reader (un)registration; readers' refresh() and
// lookups never take it.
#include "sealrelay/policy/registry.hh"

#include <algorithm>

namespace sr::policy {

registry::registry(std::unique_ptr<table> initial) : _current(initial.get()), _owned(std::move(initial)) {
  _owned->_epoch = 1;
}

registry::~registry() = default;

void registry::publish(std::unique_ptr<table> t) {
  std::lock_guard lock(_mu);
  uint64_t next = _epoch.load(std::memory_order_relaxed) + 1;
  t->_epoch = next;
  // Pointer first, then epoch: whoever sees epoch `next` also sees this table or a newer one.
  _current.store(t.get(), std::memory_order_release);
  _epoch.store(next, std::memory_order_release);
  _retired.push_back(retired{std::move(_owned), next});
  _owned = std::move(t);
  ++_published;
  reclaim_locked();
}

size_t registry::reclaim() {
  std::lock_guard lock(_mu);
  return reclaim_locked();
}

size_t registry::try_reclaim() {
  std::unique_lock lock(_mu, std::try_to_lock);
  return lock.owns_lock() ? reclaim_locked() : 0;
}

size_t registry::reclaim_locked() {
  if (_retired.empty()) return 0;
  uint64_t oldest = _epoch.load(std::memory_order_relaxed);
  for (const auto& s : _slots) oldest = std::min(oldest, s->seen.load(std::memory_order_acquire));
  auto keep = std::stable_partition(_retired.begin(), _retired.end(),
                                    [&](const retired& r) { return r.retire_epoch > oldest; });
  size_t n = size_t(_retired.end() - keep);
  _retired.erase(keep, _retired.end());  // frees the tables
  _freed += n;
  return n;
}

registry_stats registry::stats() const {
  std::lock_guard lock(_mu);
  return registry_stats{_published, _freed, _retired.size(), _slots.size()};
}

registry::slot* registry::add_reader() {
  std::lock_guard lock(_mu);
  _slots.push_back(std::make_unique<slot>());
  slot* s = _slots.back().get();
  // Under the lock no publish can run: this epoch's table is current and stays allocated.
  s->seen.store(_epoch.load(std::memory_order_relaxed), std::memory_order_relaxed);
  return s;
}

void registry::remove_reader(slot* s) {
  std::lock_guard lock(_mu);
  auto it = std::find_if(_slots.begin(), _slots.end(), [&](const auto& p) { return p.get() == s; });
  if (it != _slots.end()) _slots.erase(it);
  reclaim_locked();
}

reader::reader(registry& reg) : _reg(reg), _slot(reg.add_reader()) { refresh(); }

reader::~reader() { _reg.remove_reader(_slot); }

bool reader::refresh() {
  uint64_t e = _reg._epoch.load(std::memory_order_acquire);
  // Announce before loading the pointer; from here on the previous table is not touched.
  _slot->seen.store(e, std::memory_order_release);
  const table* t = _reg._current.load(std::memory_order_acquire);
  bool changed = t != _table;
  _table = t;
  return changed;
}

}  // namespace sr::policy
