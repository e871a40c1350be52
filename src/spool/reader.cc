// spool::reader: LRU of open segments, reads through the shard's io_uring. A read_op
// holds a shared_ptr to its segment, so the fd is closed only when the cache has dropped
// it AND no read names it any more (the last pin's destructor closes it). A read in a sealed
// segment takes two reads (the record header, then its payload), then opens the payload in
// its own buffer and copies the message bytes out: never unauthenticated bytes into `dst`.
#include "sealrelay/spool/reader.hh"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sealrelay/util/log.hh"

#include <vector>

namespace sr::spool {

struct reader::segment {
  int fd = -1;
  segment_seal seal;  // from the segment's first record, read when it was opened
  std::shared_ptr<framed_head> head;  // a sealed body file's head, once read
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
  // Sealed segment: the record is read into `rec` and opened there. One read of the header,
  // the message's length and a guess for the envelope usually takes it whole; a record
  // with a longer envelope takes a second read for the rest.
  std::shared_ptr<record_crypt> crypt;
  std::vector<std::byte> rec;
  enum class phase : uint8_t { plain, first, rest } ph = phase::plain;
  char* target = nullptr;  // where the bytes being read go (dst, or rec)
  uint64_t at = 0, want = 0;

  void arm() {
    uint64_t left = want - got;
    unsigned n = left > (1u << 30) ? (1u << 30) : unsigned(left);
    io_uring_prep_read(sh->sqe(this), seg->fd, target + got, n, at + got);
  }
  void finish(bool ok) {
    auto cb = std::move(done);
    delete this;  // drops the pin
    cb(ok);
  }
  // The first read is in (`got` bytes from the record's start): open the record when it is
  // all there, else read the rest of it. False when there is no sealed message record.
  bool first_done() {
    if (got < header_size) return false;
    record_header h = decode_header(rec.data());
    if (!header_plausible(h) || h.type != record_type::message || !(h.flags & record_flag_sealed) ||
        (h.flags & record_flag_external_body))
      return false;
    const uint64_t total = header_size + uint64_t(h.payload_len);
    if (got >= total) {
      rec.resize(total);
      return open_record() ? (finish(true), true) : (fail_open(), true);
    }
    rec.resize(total);
    target = reinterpret_cast<char*>(rec.data());
    want = total;
    ph = phase::rest;
    arm();
    return true;
  }
  // The whole record is in: authenticate and open it, copy the message bytes out.
  bool open_record() {
    record_header h = decode_header(rec.data());
    std::span<std::byte> plain;
    if (!crypt->open(seg->seal, h, std::span(rec).subspan(header_size), plain)) return false;
    size_t env_len = 0;
    if (!envelope_size(plain, h.version, env_len) || plain.size() - env_len < length) return false;
    std::memcpy(dst, plain.data() + env_len, length);
    return true;
  }
  void fail_open() {
    SR_ERROR("spool: the sealed record at %llu of %s failed authentication or is malformed: "
             "not delivered", (unsigned long long)offset, path.c_str());
    finish(false);
  }
  void on_complete(int res, unsigned) override {
    if (res > 0) {
      got += uint64_t(res);
      if (got < want) {
        arm();
        return;
      }
    }
    if (ph == phase::first && res >= 0) {  // at the segment's end (res 0) the guess was long
      if (first_done()) return;
      SR_ERROR("spool: no sealed message record at %llu of %s", (unsigned long long)offset, path.c_str());
      finish(false);
      return;
    }
    bool ok = got == want;
    if (ok && ph == phase::rest) {
      if (open_record()) finish(true);
      else fail_open();
      return;
    }
    if (!ok)
      SR_ERROR("spool: cannot read %llu bytes at %llu of %s: %s", (unsigned long long)want,
               (unsigned long long)at, path.c_str(), res < 0 ? std::strerror(-res) : "short read");
    finish(ok);
  }
};

// A read from a sealed body file (keyring.hh): the head record once per open file (cached
// on the segment), then the frames the window covers, each authenticated and opened.
struct reader::framed_op final : core::completion {
  core::shard* sh;
  std::shared_ptr<segment> seg;
  std::shared_ptr<record_crypt> crypt;
  std::string path;
  char* dst;
  uint64_t offset, length;
  std::function<void(bool)> done;
  enum class phase : uint8_t { head_header, head_payload, frames } ph = phase::head_header;
  std::vector<std::byte> buf;
  uint64_t at = 0, want = 0, got = 0;
  size_t base = 0;  // where in buf the bytes being read go
  frame_span span;
  uint64_t body_from = 0, body_n = 0;

  void arm() {
    uint64_t left = want - got;
    unsigned n = left > (1u << 30) ? (1u << 30) : unsigned(left);
    io_uring_prep_read(sh->sqe(this), seg->fd, reinterpret_cast<char*>(buf.data()) + base + got, n, at + got);
  }
  void read(uint64_t from, uint64_t n) {
    buf.resize(n);
    base = 0;
    at = from;
    want = n;
    got = 0;
    arm();
  }
  void finish(bool ok, const char* why = nullptr) {
    if (!ok)
      SR_ERROR("spool: cannot read %llu message bytes at %llu of sealed body file %s: %s",
               (unsigned long long)length, (unsigned long long)offset, path.c_str(), why ? why : "read failed");
    auto cb = std::move(done);
    delete this;
    cb(ok);
  }
  // The head is known: copy the prefix part, then read the frames of the body part.
  void start() {
    const framed_head& h = *seg->head;
    if (offset > h.length() || length > h.length() - offset) return finish(false, "beyond the message");
    const uint64_t p = h.prefix.size();
    if (offset < p) std::memcpy(dst, h.prefix.data() + offset, std::min<uint64_t>(length, p - offset));
    const uint64_t first = std::max(offset, p);
    body_from = first - p;
    body_n = offset + length - first;
    if (body_n == 0) return finish(true);
    span = frames_for(h, body_from, body_n);
    ph = phase::frames;
    read(span.at, span.len);
  }
  void on_complete(int res, unsigned) override {
    if (res > 0) {
      got += uint64_t(res);
      if (got < want) {
        arm();
        return;
      }
    }
    if (got != want) return finish(false, res < 0 ? std::strerror(-res) : "short read");
    switch (ph) {
      case phase::head_header: {
        record_header h = decode_header(buf.data());
        if (!header_plausible(h) || h.payload_len > (64u << 20)) return finish(false, "no head record");
        buf.resize(header_size + h.payload_len);  // the header stays in front
        base = header_size;
        at = key_record_size + header_size;
        want = h.payload_len;
        got = 0;
        ph = phase::head_payload;
        if (want == 0) return finish(false, "empty head record");
        arm();
        return;
      }
      case phase::head_payload: {
        auto head = std::make_shared<framed_head>();
        if (!open_framed_head(seg->seal, *crypt, buf, *head)) return finish(false, "head failed authentication");
        seg->head = std::move(head);
        return start();
      }
      case phase::frames:
        if (!open_frames(seg->seal, *crypt, *seg->head, span, buf.data(), body_from, body_n,
                         dst + (length - body_n)))
          return finish(false, "a frame failed authentication");
        return finish(true);
    }
  }
};

reader::reader(core::shard& sh, size_t max_open) : _shard(sh), _max_open(max_open ? max_open : 1) {}

reader::~reader() = default;

void reader::set_keys(std::shared_ptr<const keyring> keys) {
  _crypt = std::make_shared<record_crypt>(std::move(keys));
}

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
  // Sealed or not, and under which key: a blocking read of the first record, once per open.
  std::byte first[key_record_size];
  ssize_t n = ::pread(fd, first, sizeof first, 0);
  if (n > 0) seg->seal = classify_segment(std::span(first, size_t(n)), _crypt ? _crypt->keys() : nullptr);
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
  if (seg->seal.sealed && !seg->seal.key) {
    SR_ERROR("spool: %s is sealed with key id %s, which is not configured: not read",
             where.segment.c_str(), to_hex(seg->seal.id).c_str());
    _shard.post([done = std::move(done)] { done(false); });
    return;
  }
  if (seg->seal.framed) {
    auto* f = new framed_op;
    f->sh = &_shard;
    f->seg = seg;
    f->crypt = _crypt;
    f->path = where.segment;
    f->dst = dst;
    f->offset = where.offset;
    f->length = where.length;
    f->done = std::move(done);
    if (!_crypt) {
      _shard.post([f] { f->finish(false, "no keys"); });
    } else if (seg->head) {
      _shard.post([f] { f->start(); });  // never calls back from inside read()
    } else {
      f->read(key_record_size, header_size);
    }
    return;
  }
  auto* op = new read_op;
  op->sh = &_shard;
  op->path = where.segment;
  op->dst = dst;
  op->offset = where.offset;
  op->length = where.length;
  op->done = std::move(done);
  op->target = dst;
  op->at = where.offset;
  op->want = where.length;
  if (seg->seal.sealed) {
    op->crypt = _crypt;
    op->ph = read_op::phase::first;
    // Header, counter, a typical envelope, the message bytes, the tag.
    op->rec.resize(header_size + sealed_overhead + 1024 + where.length);
    op->target = reinterpret_cast<char*>(op->rec.data());
    op->want = op->rec.size();
  }
  op->seg = std::move(seg);
  if (op->want == 0) {
    _shard.post([op] { op->on_complete(0, 0); });
    return;
  }
  op->arm();
}

}  // namespace sr::spool
