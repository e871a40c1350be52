// Signals are blocked in every thread and taken synchronously by the main thread
// (sigtimedwait), which never touches a ring: it flips the shared drain flag and
// wakes the shards through their eventfds.
#include "sealrelay/server/runtime.hh"

#include <signal.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "sealrelay/net/listener.hh"
#include "sealrelay/util/log.hh"

namespace sr::server {
namespace {

// The sink's unit: the inbound server over a store it owns.
class inbound_unit final : public shard_unit {
 public:
  inbound_unit(core::shard& sh, shared_state& st, std::unique_ptr<message_store> store, peer_script* script)
      : _store(std::move(store)), _srv(sh, st, *_store) {
    _srv.set_peer_script(script);
  }
  status start() override {
    if (status s = _srv.prepare(); !s) return s;
    return _srv.listen();
  }
  void begin_drain() override { _srv.begin_drain(); }
  bool idle() const override { return _srv.idle(); }
  void abort_all() override { _srv.abort_all(); }
  size_t connection_count() const override { return _srv.connection_count(); }

 private:
  std::unique_ptr<message_store> _store;
  shard_server _srv;
};

struct shard_slot {
  std::unique_ptr<core::shard> sh;
  std::atomic<int> state{0};  // 0 starting, 1 ready, -1 failed, 2 exited
  std::string name;
};

void shard_thread(const config::config& cfg, shared_state& st, const runtime_hooks& hooks,
                  shard_slot& slot, unsigned index, unsigned ncpu) {
  slot.name = "shard" + std::to_string(index);
  set_log_thread_name(slot.name.c_str());
  (void)ncpu;
  auto& sh = *slot.sh;
  if (!sh.init()) {
    slot.state = -1;
    return;
  }
  std::unique_ptr<shard_unit> unit;
  if (hooks.make_shard) {
    unit = hooks.make_shard(sh);
  } else if (auto store = hooks.make_store(sh)) {
    unit = inbound_only(sh, st, std::move(store), hooks.script);
  } else {
    SR_ERROR("start-up failed: cannot open the store");
  }
  if (!unit) {
    slot.state = -1;
    return;
  }
  auto& srv = *unit;
  if (status s = srv.start(); !s) {
    SR_ERROR("start-up failed: %s", s.err().c_str());
    slot.state = -1;
    return;
  }
  bool draining = false, aborted = false;
  uint64_t deadline = 0;
  sh.on_wake([&] {
    if (!draining && st.draining.load()) {
      draining = true;
      deadline = sh.now_ms() + uint64_t(cfg.server.drain_timeout.count());
      srv.begin_drain();
    }
  });
  sh.on_tick([&] {
    if (!draining) return;
    if (srv.idle()) {
      sh.stop();
    } else if (!aborted && sh.now_ms() >= deadline) {
      aborted = true;
      SR_WARN("drain timeout: closing %zu connections", srv.connection_count());
      srv.abort_all();
    }
  });
  slot.state = 1;
  sh.run();
  srv.finish();
  slot.state = 2;
}

}  // namespace

std::unique_ptr<shard_unit> inbound_only(core::shard& sh, shared_state& st, std::unique_ptr<message_store> store,
                                         peer_script* script) {
  return std::make_unique<inbound_unit>(sh, st, std::move(store), script);
}

int run(const config::config& cfg, shared_state& st, const runtime_hooks& hooks) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // A killed predecessor's io_uring lets go of its listening sockets asynchronously
  // (ring teardown runs in a kernel worker), so a busy port gets a few seconds.
  for (const auto& l : cfg.listen) {
    status s = net::probe_address_free(l.addr, l.addr_len);
    for (int tries = 0; !s && tries < 100; ++tries) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      s = net::probe_address_free(l.addr, l.addr_len);
    }
    if (!s) {
      SR_ERROR("listen %s: %s (is another instance running?)", l.address.c_str(), s.err().c_str());
      return 1;
    }
  }
  unsigned ncpu = core::online_cpus();
  unsigned n = st.shards;
  std::vector<std::unique_ptr<shard_slot>> slots;
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < n; ++i) {
    auto slot = std::make_unique<shard_slot>();
    core::shard::options opt;
    opt.index = i;
    opt.cpu = int(i % ncpu);
    slot->sh = std::make_unique<core::shard>(opt);
    slots.push_back(std::move(slot));
  }
  for (unsigned i = 0; i < n; ++i)
    threads.emplace_back(shard_thread, std::cref(cfg), std::ref(st), std::cref(hooks),
                         std::ref(*slots[i]), i, ncpu);

  // Wait for every shard to be ready or to fail.
  bool failed = false;
  for (;;) {
    int ready = 0;
    for (auto& s : slots) {
      if (s->state == -1) failed = true;
      if (s->state == 1) ++ready;
    }
    if (failed || ready == int(n)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (failed) {
    st.draining = true;
    for (auto& s : slots)
      if (s->state == 1) s->sh->wake();
    for (auto& t : threads) t.join();
    return 1;
  }
  if (hooks.on_ready) hooks.on_ready();

  timespec one_second{1, 0};
  for (;;) {
    siginfo_t si;
    int sig = sigtimedwait(&set, &si, &one_second);
    if (sig == SIGTERM || sig == SIGINT) {
      SR_INFO("signal %s: draining (up to %s)", sig == SIGTERM ? "TERM" : "INT",
              format_duration(cfg.server.drain_timeout).c_str());
      break;
    }
    if (sig == SIGHUP) {
      if (hooks.on_reload) hooks.on_reload();
      else SR_INFO("SIGHUP: nothing to reload");
      continue;
    }
    if (hooks.on_second) hooks.on_second();
    bool any_exited = false;
    for (auto& s : slots) any_exited |= s->state == 2;
    if (any_exited) break;
  }
  if (hooks.on_stop) hooks.on_stop();
  st.draining = true;
  for (auto& s : slots) s->sh->wake();
  for (auto& t : threads) t.join();
  SR_INFO("stopped");
  return 0;
}

}  // namespace sr::server
