// The RSA signing pool (pool.hh): one job queue under a mutex for the workers, one answer
// inbox per shard drained by that shard's on_wake handler (the auth::hasher pattern).
#include "sealrelay/dkim/pool.hh"

#include <signal.h>

namespace sr::dkim {

struct sign_pool::inbox {
  core::shard* sh = nullptr;
  std::mutex mu;
  std::vector<std::pair<done_fn, std::optional<std::vector<uint8_t>>>> answers;
};

result<std::unique_ptr<sign_pool>> sign_pool::create(std::span<const key_entry> entries, unsigned threads,
                                                     size_t max_queued) {
  std::vector<keyring> keys(threads ? threads : 1);
  bool any = false;
  for (auto& ring : keys) ring.resize(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    for (auto& ring : keys) {
      auto k = tls::signing_key::load_pem_file(entries[i].key_file);
      if (!k) return error{"dkim[" + std::to_string(i) + "].key_file: " + entries[i].key_file + ": " + k.err()};
      if (k->kind() != tls::key_kind::rsa) break;  // Ed25519 signs inline on the shard
      ring[i].emplace(std::move(*k));
      any = true;
    }
  }
  if (!any) return std::unique_ptr<sign_pool>();
  return std::unique_ptr<sign_pool>(new sign_pool(std::move(keys), max_queued));
}

sign_pool::sign_pool(std::vector<keyring> keys, size_t max_queued) : _keys(std::move(keys)), _max(max_queued) {
  for (const auto& k : _keys.front()) _rsa.push_back(k.has_value());
  // Workers block every signal: the relay takes its signals on its own thread.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  for (auto& ring : _keys) _threads.emplace_back([this, &ring] { work(ring); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

sign_pool::~sign_pool() {
  {
    std::lock_guard<std::mutex> lock(_mu);
    _stopping = true;
    _jobs.clear();
  }
  _cv.notify_all();
  for (auto& t : _threads) t.join();
}

sign_pool::inbox* sign_pool::inbox_of(core::shard& sh) {
  std::lock_guard<std::mutex> lock(_mu);
  for (auto& b : _inboxes)
    if (b->sh == &sh) return b.get();
  return nullptr;
}

void sign_pool::attach(core::shard& sh) {
  if (inbox_of(sh)) return;
  auto b = std::make_unique<inbox>();
  b->sh = &sh;
  inbox* raw = b.get();
  {
    std::lock_guard<std::mutex> lock(_mu);
    _inboxes.push_back(std::move(b));
  }
  sh.on_wake([this, raw] {
    std::vector<std::pair<done_fn, std::optional<std::vector<uint8_t>>>> got;
    {
      std::lock_guard<std::mutex> lock(raw->mu);
      got.swap(raw->answers);
    }
    if (got.empty()) return;
    {
      std::lock_guard<std::mutex> lock(_mu);
      _in_flight -= got.size();
    }
    for (auto& [done, sig] : got) done(std::move(sig));
  });
}

bool sign_pool::sign(core::shard& sh, size_t entry, const tls::sha256_digest& digest, done_fn done) {
  if (!handles(entry)) return false;
  inbox* to = inbox_of(sh);
  std::unique_lock<std::mutex> lock(_mu);
  if (!to || _stopping || _in_flight >= _max) return false;
  _jobs.push_back(job{to, entry, digest, std::move(done)});
  ++_in_flight;
  lock.unlock();
  _cv.notify_one();
  return true;
}

size_t sign_pool::in_flight() const {
  std::lock_guard<std::mutex> lock(_mu);
  return _in_flight;
}

void sign_pool::work(keyring& keys) {
  for (;;) {
    job j;
    {
      std::unique_lock<std::mutex> lock(_mu);
      _cv.wait(lock, [this] { return _stopping || !_jobs.empty(); });
      if (_stopping) return;
      j = std::move(_jobs.front());
      _jobs.pop_front();
    }
    std::optional<std::vector<uint8_t>> sig;
    if (auto r = keys[j.entry]->sign_digest(j.digest)) sig = std::move(*r);
    {
      std::lock_guard<std::mutex> lock(j.to->mu);
      j.to->answers.emplace_back(std::move(j.done), std::move(sig));
    }
    j.to->sh->wake();
  }
}

}  // namespace sr::dkim
