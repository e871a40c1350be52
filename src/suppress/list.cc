// The published suppression list and its writer thread (list.hh). The writer merges a
// batch into a copy of the current vector (O(list) per batch, and bounces arrive in
// batches of up to a second's worth), so a lookup never sees a half-built list.
#include "sealrelay/suppress/list.hh"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <chrono>

#include "sealrelay/util/log.hh"

namespace sr::suppress {

bool snapshot::contains(std::string_view address) const {
  if (_a.empty()) return false;
  // Addresses are mostly lower case already: compare without building a string then.
  bool plain = address.size() <= 320 && address.find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ<> \t") == std::string_view::npos;
  if (plain) return std::binary_search(_a.begin(), _a.end(), address, std::less<>());
  std::string n = normalize(address);
  return !n.empty() && std::binary_search(_a.begin(), _a.end(), std::string_view(n), std::less<>());
}

result<std::unique_ptr<list>> list::open(const std::string& path) {
  auto s = store::open(path, true);
  if (!s) return error{s.err()};
  auto all = s.value()->addresses();
  if (!all) return error{path + ": " + all.err()};
  std::unique_ptr<list> l(new list(std::move(s.value())));
  l->_data_version = l->_store->data_version();
  l->publish(std::move(all.value()));
  // The thread starts with every signal blocked (it inherits the mask): it is created
  // before the daemon's runtime blocks SIGTERM/SIGHUP for sigtimedwait, and a SIGTERM the
  // kernel handed to it would kill the relay instead of draining it.
  sigset_t mask, old;
  sigfillset(&mask);
  pthread_sigmask(SIG_BLOCK, &mask, &old);
  l->_thread = std::thread([p = l.get()] { p->run(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return l;
}

list::list(std::unique_ptr<store> s) : _store(std::move(s)) {}

list::~list() {
  {
    std::lock_guard lk(_mu);
    _stop = true;
  }
  _cv.notify_all();
  if (_thread.joinable()) _thread.join();
}

void list::add_async(std::string_view address, std::string_view reason) {
  std::string a = normalize(address);
  if (a.empty()) return;
  entry e;
  e.address = std::move(a);
  e.added_ms = int64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count());
  e.source = origin::bounce;
  e.reason.assign(reason.substr(0, 512));
  {
    std::lock_guard lk(_mu);
    _queue.push_back(std::move(e));
    ++_queued;
  }
  _cv.notify_one();
}

void list::sync() {
  std::unique_lock lk(_mu);
  uint64_t want = _queued, poll = ++_poll_req;
  _cv.notify_one();
  _done_cv.wait(lk, [&] { return _written >= want && _poll_done >= poll; });
}

void list::poll_external() {
  {
    std::lock_guard lk(_mu);
    ++_poll_req;
  }
  _cv.notify_one();
}

void list::publish(std::vector<std::string> sorted) {
  // Pointer first, then the version: a reader that sees the new version loads this
  // snapshot or a newer one.
  _current.store(std::make_shared<const snapshot>(std::move(sorted)), std::memory_order_release);
  _version.fetch_add(1, std::memory_order_release);
}

void list::reload() {
  auto all = _store->addresses();
  if (!all) {
    SR_WARN("suppression: cannot re-read the list: %s", all.err().c_str());
    return;
  }
  publish(std::move(all.value()));
}

void list::run() {
  std::unique_lock lk(_mu);
  for (;;) {
    _cv.wait_for(lk, std::chrono::seconds(1), [&] { return _stop || _poll_req != _poll_done || !_queue.empty(); });
    std::vector<entry> batch = std::move(_queue);
    _queue.clear();
    // What this round answers for: the re-read below starts after every request counted here.
    uint64_t upto = _queued, poll = _poll_req;
    bool stop = _stop;
    lk.unlock();

    // Only what is not listed yet, once each.
    auto cur = current();
    std::sort(batch.begin(), batch.end(), [](const entry& a, const entry& b) { return a.address < b.address; });
    batch.erase(std::unique(batch.begin(), batch.end(),
                            [](const entry& a, const entry& b) { return a.address == b.address; }),
                batch.end());
    std::erase_if(batch, [&](const entry& e) { return cur && cur->contains(e.address); });
    if (!batch.empty()) {
      auto added = _store->add(batch);
      if (!added)
        SR_WARN("suppression: %zu addresses kept in memory only (not stored: %s)", batch.size(), added.err().c_str());
      _added.fetch_add(batch.size(), std::memory_order_relaxed);
      std::vector<std::string> merged;
      merged.reserve((cur ? cur->size() : 0) + batch.size());
      const std::vector<std::string> none;
      const auto& old = cur ? cur->addresses() : none;
      auto it = old.begin();
      for (auto& e : batch) {
        while (it != old.end() && *it < e.address) merged.push_back(*it++);
        merged.push_back(std::move(e.address));
      }
      merged.insert(merged.end(), it, old.end());
      publish(std::move(merged));
    }
    // The operator's tool writes the same database: re-read it when it changed.
    int64_t dv = _store->data_version();
    if (dv != _data_version) {
      _data_version = dv;
      reload();
    }

    lk.lock();
    _written = std::max(_written, upto);
    _poll_done = std::max(_poll_done, poll);
    _done_cv.notify_all();
    if (stop && _queue.empty()) return;
  }
}

}  // namespace sr::suppress
