// The sink's store: counts messages and discards them; answers on the next loop turn.
// With a latency log it also finds `X-Blast-Ts: <CLOCK_MONOTONIC ns>` (written by
// sealrelay-blast) in the message's header section and records arrival - ts, so a
// benchmark can measure send -> delivered through a relay. The search looks only at
// the header section and never copies the body.
#pragma once
#include <sys/uio.h>
#include <time.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/server/store.hh"

namespace sr::server {

// One shard's latency records; written on the shard thread only, read after it stops.
struct sink_latency {
  std::vector<uint32_t> us;   // arrival - X-Blast-Ts, microseconds
  uint64_t unstamped = 0;     // messages without a readable X-Blast-Ts header
  uint64_t first_ns = 0;      // CLOCK_MONOTONIC of the first and the last arrival
  uint64_t last_ns = 0;
  // Diagnostics (--latency-dump): per message, send ts, latency and first recipient.
  bool keep_detail = false;
  std::vector<uint64_t> sent_ns;
  std::vector<std::string> rcpt;
};

// Find `X-Blast-Ts: <digits>` in the header section of `data`; true and `ts` set if found.
inline bool find_blast_ts(std::span<const iovec> data, uint64_t& ts) {
  static constexpr std::string_view needle = "\nX-Blast-Ts: ";
  static constexpr size_t max_scan = 16 * 1024;  // a header section longer than this is not ours
  // `tail` keeps the last bytes of the previous piece so a needle (or the blank line
  // ending the headers) split across pieces is still seen.
  char join[2 * 64] = {'\n'};  // a line start before the first piece: the header may be first
  size_t tail = 1;
  size_t scanned = 0;
  for (const auto& v : data) {
    std::string_view piece(static_cast<const char*>(v.iov_base), v.iov_len);
    if (piece.size() > max_scan - scanned) piece = piece.substr(0, max_scan - scanned);
    if (piece.empty()) continue;
    // Search the seam between the previous piece and this one.
    if (tail) {
      size_t head = std::min(piece.size(), size_t(64));
      std::memcpy(join + tail, piece.data(), head);
      std::string_view seam(join, tail + head);
      size_t hdr_end = seam.find("\r\n\r\n");
      size_t at = seam.find(needle);
      if (at != seam.npos && (hdr_end == seam.npos || at < hdr_end) && at < tail) {
        // Needle starts in the previous piece; the digits may run on into this one.
        size_t pos = at + needle.size();
        uint64_t n = 0;
        bool any = false;
        while (pos < seam.size() && seam[pos] >= '0' && seam[pos] <= '9') {
          n = n * 10 + uint64_t(seam[pos++] - '0');
          any = true;
        }
        if (any && pos < seam.size()) {
          ts = n;
          return true;
        }
        if (pos < seam.size()) return false;
        // The digits run past what we have seen: the next seam still holds the needle.
      } else if (hdr_end != seam.npos && hdr_end < tail) {
        return false;
      }
    }
    size_t hdr_end = piece.find("\r\n\r\n");
    std::string_view hdrs = hdr_end == piece.npos ? piece : piece.substr(0, hdr_end + 2);
    size_t at = hdrs.find(needle);
    if (at != hdrs.npos) {
      size_t pos = at + needle.size();
      uint64_t n = 0;
      bool any = false;
      while (pos < piece.size() && piece[pos] >= '0' && piece[pos] <= '9') {
        n = n * 10 + uint64_t(piece[pos++] - '0');
        any = true;
      }
      if (any && pos < piece.size()) {
        ts = n;
        return true;
      }
      if (pos < piece.size()) return false;
      // Digits run to the end of this piece: let the seam search finish them.
    }
    if (hdr_end != piece.npos) return false;
    scanned += piece.size();
    if (scanned >= max_scan) return false;
    // The new tail is the last 64 bytes of everything so far, which a short piece
    // alone does not hold: then take them from the seam (old tail + this piece).
    if (piece.size() >= 64) {
      tail = 64;
      std::memcpy(join, piece.data() + piece.size() - 64, 64);
    } else {
      size_t seam_len = tail + piece.size();
      size_t keep = std::min(seam_len, size_t(64));
      std::memmove(join, join + seam_len - keep, keep);
      tail = keep;
    }
  }
  return false;
}

class sink_store final : public message_store {
 public:
  sink_store(core::shard& sh, std::atomic<uint64_t>& messages, std::atomic<uint64_t>& bytes,
             sink_latency* latency = nullptr)
      : _shard(sh), _messages(messages), _bytes(bytes), _latency(latency) {}
  std::string next_queue_id() override {
    char id[24];
    std::snprintf(id, sizeof id, "SINK%02X%010llX", _shard.index(), (unsigned long long)++_seq);
    return id;
  }
  void submit(const std::string&, const inbound::envelope& env, const smtp::header_section&,
              std::span<const iovec> data, store_client* client) override {
    if (_latency) record_latency(data, env);
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
  void record_latency(std::span<const iovec> data, const inbound::envelope& env) {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t now_ns = uint64_t(now.tv_sec) * 1'000'000'000ull + uint64_t(now.tv_nsec);
    if (!_latency->first_ns) _latency->first_ns = now_ns;
    _latency->last_ns = now_ns;
    uint64_t ts = 0;
    if (find_blast_ts(data, ts) && ts <= now_ns) {
      uint64_t us = (now_ns - ts) / 1000;
      _latency->us.push_back(us > UINT32_MAX ? UINT32_MAX : uint32_t(us));
      if (_latency->keep_detail) {
        _latency->sent_ns.push_back(ts);
        _latency->rcpt.push_back(env.rcpt_to.empty() ? std::string() : env.rcpt_to[0]);
      }
    } else {
      ++_latency->unstamped;
    }
  }
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
  sink_latency* _latency;
  uint64_t _seq = 0;
  size_t _in_flight = 0;
  std::vector<store_client*> _ready, _answering;
};

}  // namespace sr::server
