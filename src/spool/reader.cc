// spool::reader: LRU of open segments, reads through the shard's io_uring. A read_op
// holds a shared_ptr to its segment, so the fd is closed only when the cache has dropped
// it AND no read names it any more (the last pin's destructor closes it).
#include "sealrelay/spool/reader.hh"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sealrelay/util/log.hh"

namespace sr::spool {

struct reader::segment {
  int fd = -1;
  size_t* open_count = nullptr;
  ~segment() {
    if (fd >= 0) {
      ::close(fd);
      --*open_count;
    }
  }
};

struct reader::read_op final : core::completion {
  core::shard* sh;
  std::shared_ptr<segment> seg;  // the pin: keeps the fd open until the last CQE
  std::string path;
  char* dst;
  uint64_t offset, length, got = 0;
  std::function<void(bool)> done;

  void arm() {
    uint64_t left = length - got;
    unsigned n = left > (1u << 30) ? (1u << 30) : unsigned(left);
    io_uring_prep_read(sh->sqe(this), seg->fd, dst + got, n, offset + got);
  }
  void on_complete(int res, unsigned) override {
    if (res > 0) {
      got += uint64_t(res);
      if (got < length) {
        arm();
        return;
      }
    }
    bool ok = got == length;
    if (!ok)
      SR_ERROR("spool: cannot read %llu bytes at %llu of %s: %s", (unsigned long long)length,
               (unsigned long long)offset, path.c_str(), res < 0 ? std::strerror(-res) : "short read");
    auto cb = std::move(done);
    delete this;  // drops the pin
    cb(ok);
  }
};

reader::reader(core::shard& sh, size_t max_open) : _shard(sh), _max_open(max_open ? max_open : 1) {}

reader::~reader() = default;

std::shared_ptr<reader::segment> reader::pin(const std::string& path, int& err) {
  if (auto it = _cache.find(path); it != _cache.end()) {
    _lru.splice(_lru.begin(), _lru, it->second.pos);
    return it->second.seg;
  }
  // A blocking open, once per segment (64 MiB by default): rare enough for the shard thread.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err = errno;
    return nullptr;
  }
  auto seg = std::make_shared<segment>();
  seg->fd = fd;
  seg->open_count = &_open_count;
  ++_open_count;
  while (_cache.size() >= _max_open) {
    // Drop the least recently used; a read still holding it keeps its fd open.
    _cache.erase(_lru.back());
    _lru.pop_back();
  }
  _lru.push_front(path);
  _cache.emplace(path, cached{seg, _lru.begin()});
  return seg;
}

void reader::read(const body_ref& where, char* dst, std::function<void(bool)> done) {
  int err = 0;
  auto seg = pin(where.segment, err);
  if (!seg) {
    SR_ERROR("spool: cannot open %s: %s", where.segment.c_str(), std::strerror(err));
    _shard.post([done = std::move(done)] { done(false); });
    return;
  }
  auto* op = new read_op;
  op->sh = &_shard;
  op->seg = std::move(seg);
  op->path = where.segment;
  op->dst = dst;
  op->offset = where.offset;
  op->length = where.length;
  op->done = std::move(done);
  if (where.length == 0) {
    _shard.post([op] { op->on_complete(0, 0); });
    return;
  }
  op->arm();
}

}  // namespace sr::spool
