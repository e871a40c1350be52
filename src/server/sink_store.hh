// The sink's store: counts messages and discards them; answers on the next loop turn.
#pragma once
#include <atomic>
#include <cstdio>
#include <vector>

#include "core/shard.hh"
#include "server/store.hh"

namespace sr::server {

class sink_store final : public message_store {
 public:
  sink_store(core::shard& sh, std::atomic<uint64_t>& messages, std::atomic<uint64_t>& bytes)
      : _shard(sh), _messages(messages), _bytes(bytes) {}
  std::string next_queue_id() override {
    char id[24];
    std::snprintf(id, sizeof id, "SINK%02X%010llX", _shard.index(), (unsigned long long)++_seq);
    return id;
  }
  void submit(const std::string&, const inbound::envelope&, std::span<const iovec> data,
              store_client* client) override {
    uint64_t n = 0;
    for (const auto& v : data) n += v.iov_len;
    _bytes.fetch_add(n, std::memory_order_relaxed);
    _messages.fetch_add(1, std::memory_order_relaxed);
    ++_in_flight;
    if (_ready.empty()) _shard.post([this] { answer(); });
    _ready.push_back(client);
  }
  size_t in_flight() const override { return _in_flight; }

 private:
  void answer() {
    _answering.swap(_ready);
    for (auto* c : _answering) {
      --_in_flight;
      c->on_stored(true);
    }
    _answering.clear();
  }
  core::shard& _shard;
  std::atomic<uint64_t>& _messages;
  std::atomic<uint64_t>& _bytes;
  uint64_t _seq = 0;
  size_t _in_flight = 0;
  std::vector<store_client*> _ready, _answering;
};

}  // namespace sr::server
