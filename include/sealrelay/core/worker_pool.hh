// A bounded pool of worker threads whose answers come back on the asking shard: for work
// too slow for a shard loop (auth::hasher's crypt(3) checks, dkim::sign_pool's RSA
// signatures). A shard attach()es once, then submit()s a job; a worker runs it and the
// answer is queued in that shard's inbox, then the shard is woken (core::shard::wake) and
// its on_wake handler runs each `done(answer)` on the shard's own thread. Bounded: a job is
// refused at once when `max_queued` jobs are in flight (accepted and not answered on their
// shard yet), so the caller can fall back (answer "try later", sign inline). Workers block
// every signal: the relay takes its signals on its own thread.
//
// `run(worker, job)` runs on worker thread `worker` (0..threads-1, for per-thread state such
// as a keyring). `drop(job)` runs for every job that is never run (refused, or still
// queued at destruction) so its owner can wipe secrets; jobs that ran are the owner's to
// wipe inside run(). Destruction joins the workers; answers not delivered yet are dropped.
#pragma once
#include <signal.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "sealrelay/core/shard.hh"

namespace sr::core {

template <class Job, class Answer>
class worker_pool {
 public:
  using done_fn = std::function<void(Answer)>;
  using run_fn = std::function<Answer(unsigned worker, Job& job)>;
  using drop_fn = std::function<void(Job& job)>;

  worker_pool(unsigned threads, size_t max_queued, run_fn run, drop_fn drop = {})
      : _run(std::move(run)), _drop(std::move(drop)), _max(max_queued) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (unsigned i = 0; i < (threads ? threads : 1); ++i) _threads.emplace_back([this, i] { work(i); });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
  ~worker_pool() {
    {
      std::lock_guard<std::mutex> lock(_mu);
      _stopping = true;
      if (_drop)
        for (auto& q : _jobs) _drop(q.job);
      _jobs.clear();
    }
    _cv.notify_all();
    for (auto& t : _threads) t.join();
  }
  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;

  size_t threads() const { return _threads.size(); }

  // Let `sh` receive answers: call on `sh`'s thread before its first submit(). Once per
  // shard (again is a no-op).
  void attach(shard& sh) {
    if (inbox_of(sh)) return;
    auto b = std::make_unique<inbox>();
    b->sh = &sh;
    inbox* raw = b.get();
    {
      std::lock_guard<std::mutex> lock(_mu);
      _inboxes.push_back(std::move(b));
    }
    sh.on_wake([this, raw] {
      std::vector<std::pair<done_fn, Answer>> got;
      {
        std::lock_guard<std::mutex> lock(raw->mu);
        got.swap(raw->answers);
      }
      if (got.empty()) return;
      {
        std::lock_guard<std::mutex> lock(_mu);
        _in_flight -= got.size();
      }
      for (auto& [done, answer] : got) done(std::move(answer));
    });
  }

  // Queue `job`; `done(answer)` runs later on `sh`'s thread. False (the job dropped, `done`
  // never runs) when `sh` is not attached, the pool is stopping or the bound is reached.
  bool submit(shard& sh, Job job, done_fn done) {
    inbox* to = inbox_of(sh);
    std::unique_lock<std::mutex> lock(_mu);
    if (!to || _stopping || _in_flight >= _max) {
      lock.unlock();
      if (_drop) _drop(job);
      return false;
    }
    _jobs.push_back(queued{to, std::move(job), std::move(done)});
    ++_in_flight;
    lock.unlock();
    _cv.notify_one();
    return true;
  }

  // Jobs accepted and not answered yet (queued, running, or waiting for their shard).
  size_t in_flight() const {
    std::lock_guard<std::mutex> lock(_mu);
    return _in_flight;
  }

 private:
  struct inbox {
    shard* sh = nullptr;
    std::mutex mu;
    std::vector<std::pair<done_fn, Answer>> answers;
  };
  struct queued {
    inbox* to = nullptr;
    Job job;
    done_fn done;
  };

  inbox* inbox_of(shard& sh) {
    std::lock_guard<std::mutex> lock(_mu);
    for (auto& b : _inboxes)
      if (b->sh == &sh) return b.get();
    return nullptr;
  }

  void work(unsigned worker) {
    for (;;) {
      std::unique_lock<std::mutex> lock(_mu);
      _cv.wait(lock, [this] { return _stopping || !_jobs.empty(); });
      if (_stopping) return;
      queued q = std::move(_jobs.front());
      _jobs.pop_front();
      lock.unlock();
      Answer answer = _run(worker, q.job);
      {
        std::lock_guard<std::mutex> alock(q.to->mu);
        q.to->answers.emplace_back(std::move(q.done), std::move(answer));
      }
      q.to->sh->wake();
    }
  }

  run_fn _run;
  drop_fn _drop;
  size_t _max;
  size_t _in_flight = 0;  // under _mu: the bound of submit()
  mutable std::mutex _mu;
  std::condition_variable _cv;
  std::deque<queued> _jobs;
  bool _stopping = false;
  std::vector<std::unique_ptr<inbox>> _inboxes;  // one per attached shard
  std::vector<std::thread> _threads;
};

}  // namespace sr::core
