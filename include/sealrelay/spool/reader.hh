// spool::reader: the only way a shard reads message bytes back from any spool partition
// (its own or another shard's). It keeps a small LRU cache of open segments; every read
// pins the segment it reads (a counted handle to the open fd) from the moment its SQE is
// prepared until its completion, so evicting a segment from the cache can never close an
// fd a queued read still names (the fd number could otherwise be reused by the next open
// and the read would return another message's bytes). One reader per shard thread.
// Sealed segments (keyring.hh; known by their first record when opened): a read names the
// record, which is read whole, authenticated and opened; `dst` gets its message bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "sealrelay/core/shard.hh"
#include "sealrelay/spool/keyring.hh"

namespace sr::spool {

// Where a stored message's bytes are: what delivery knows of the spool.
struct body_ref {
  std::string segment;  // opaque to callers: only the reader opens it
  uint64_t offset = 0;  // of the bytes; in a sealed segment, of their record
  uint64_t length = 0;  // bytes wanted (sealed: the first `length` of the message)
};

class reader {
 public:
  // `max_open`: segments kept open between reads (pinned ones stay open beyond it).
  explicit reader(core::shard& sh, size_t max_open = 64);
  ~reader();
  // Open sealed segments with `keys` (the spool's keyring; null: none can be read).
  void set_keys(std::shared_ptr<const keyring> keys);
  reader(const reader&) = delete;
  reader& operator=(const reader&) = delete;

  // Read the bytes of `where` into `dst` (at least where.length bytes), then call
  // done(ok) from a later completion, never from inside read(). `dst` must stay valid
  // until then.
  void read(const body_ref& where, char* dst, std::function<void(bool)> done);
  // Segments open right now (cached or pinned by a read in flight).
  size_t open_segments() const { return _open_count; }
  // Segments held in the cache.
  size_t cached_segments() const { return _cache.size(); }

 private:
  struct segment;
  struct read_op;
  struct framed_op;
  std::shared_ptr<segment> pin(const std::string& path, int& err);

  core::shard& _shard;
  size_t _max_open;
  size_t _open_count = 0;
  std::list<std::string> _lru;  // most recently used first
  struct cached {
    std::shared_ptr<segment> seg;
    std::list<std::string>::iterator pos;
  };
  std::unordered_map<std::string, cached> _cache;
  std::shared_ptr<record_crypt> _crypt;  // shared with reads in flight
};

}  // namespace sr::spool
