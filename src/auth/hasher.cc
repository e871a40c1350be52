// The password-check pool (hasher.hh): one job queue under a mutex for the workers, one
// answer inbox per shard drained by that shard's on_wake handler.
#include "sealrelay/auth/hasher.hh"

#include <signal.h>
#include <string.h>

#include "sealrelay/auth/users.hh"

namespace sr::auth {

struct hasher::inbox {
  core::shard* sh = nullptr;
  std::mutex mu;
  std::vector<std::pair<std::function<void(bool)>, bool>> answers;
};

hasher::hasher(unsigned threads, size_t max_queued) : _max(max_queued) {
  // Workers block every signal: the relay takes its signals on its own thread.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  for (unsigned i = 0; i < (threads ? threads : 1); ++i) _threads.emplace_back([this] { work(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

hasher::~hasher() {
  {
    std::lock_guard<std::mutex> lock(_mu);
    _stopping = true;
    for (auto& j : _jobs) explicit_bzero(j.password.data(), j.password.size());
    _jobs.clear();
  }
  _cv.notify_all();
  for (auto& t : _threads) t.join();
}

hasher::inbox* hasher::inbox_of(core::shard& sh) {
  std::lock_guard<std::mutex> lock(_mu);
  for (auto& b : _inboxes)
    if (b->sh == &sh) return b.get();
  return nullptr;
}

void hasher::attach(core::shard& sh) {
  if (inbox_of(sh)) return;
  auto b = std::make_unique<inbox>();
  b->sh = &sh;
  inbox* raw = b.get();
  {
    std::lock_guard<std::mutex> lock(_mu);
    _inboxes.push_back(std::move(b));
  }
  sh.on_wake([this, raw] {
    std::vector<std::pair<std::function<void(bool)>, bool>> got;
    {
      std::lock_guard<std::mutex> lock(raw->mu);
      got.swap(raw->answers);
    }
    if (got.empty()) return;
    {
      std::lock_guard<std::mutex> lock(_mu);
      _in_flight -= got.size();
    }
    for (auto& [done, ok] : got) done(ok);
  });
}

bool hasher::check(core::shard& sh, std::string password, std::string hash, std::function<void(bool)> done) {
  inbox* to = inbox_of(sh);
  std::unique_lock<std::mutex> lock(_mu);
  if (!to || _stopping || _in_flight >= _max) {
    explicit_bzero(password.data(), password.size());
    return false;
  }
  _jobs.push_back(job{to, std::move(password), std::move(hash), std::move(done)});
  ++_in_flight;
  lock.unlock();
  _cv.notify_one();
  return true;
}

size_t hasher::in_flight() const {
  std::lock_guard<std::mutex> lock(_mu);
  return _in_flight;
}

void hasher::work() {
  for (;;) {
    job j;
    {
      std::unique_lock<std::mutex> lock(_mu);
      _cv.wait(lock, [this] { return _stopping || !_jobs.empty(); });
      if (_stopping) return;
      j = std::move(_jobs.front());
      _jobs.pop_front();
    }
    bool ok = verify_password(j.password, j.hash);
    explicit_bzero(j.password.data(), j.password.size());
    {
      std::lock_guard<std::mutex> lock(j.to->mu);
      j.to->answers.emplace_back(std::move(j.done), ok);
    }
    j.to->sh->wake();
  }
}

}  // namespace sr::auth
