// spool::body_file (body_file.hh). The record in front of the body carries the CRC32C of
// its whole payload (envelope + prefix + body), as any record does: the body's CRC is
// summed as it is appended and combined with the envelope's at finish(), so nothing is
// read back. Errors are sticky: after a failed write every later call fails.
#include "sealrelay/spool/body_file.hh"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "crc32c.hh"
#include "sealrelay/util/log.hh"

namespace sr::spool {

uint64_t body_file::reserve_for(size_t mail_from_len, std::span<const std::string> rcpts,
                                size_t prefix_len) {
  uint64_t env = 1 + queue_id_len + 8 + 1 + 1 + 2 + mail_from_len + 2 + max_address_len + 2 +
                 max_address_len + 4;
  for (const auto& r : rcpts) env += 2 + r.size();
  // + room for a sealed file's KEY record, counter, tag and body reference.
  uint64_t need = key_record_size + header_size + sealed_overhead + external_ref_size + env + prefix_len;
  return (need + 4095) / 4096 * 4096;
}

sr::result<std::unique_ptr<body_file>> body_file::create(core::shard& sh, std::string path,
                                                        uint64_t reserve,
                                                        std::shared_ptr<const keyring> keys) {
  std::string dir = path.substr(0, path.rfind('/'));
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return sr::error{"cannot open " + dir + ": " + std::strerror(errno)};
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    ::close(dir_fd);
    return sr::error{"cannot create " + path + ": " + std::strerror(e)};
  }
  std::unique_ptr<body_file> f(new body_file(sh, std::move(path), fd, dir_fd, reserve));
  if (keys && keys->sealing_key()) {
    f->_crypt = std::make_unique<record_crypt>(std::move(keys));
    f->_head.assign(key_record_size, std::byte{0});  // written at finish(), with the head
    if (!f->_crypt->begin_segment(f->_head.data(), true))
      return sr::error{"cannot seal " + f->_path + ": the RNG failed"};
    f->_out.reserve(8 * body_frame_stored);
  }
  return f;
}

body_file::body_file(core::shard& sh, std::string path, int fd, int dir_fd, uint64_t reserve)
    : _shard(sh), _path(std::move(path)), _fd(fd), _dir_fd(dir_fd), _reserve(reserve) {
  for (auto& o : _ops) o.self = this;
}

body_file::~body_file() {
  // The owner waits for operations in flight (busy()) before it lets go of the file.
  if (_pending) SR_ERROR("spool: body file %s destroyed with I/O in flight", _path.c_str());
  if (_fd >= 0) ::close(_fd);
  if (_dir_fd >= 0) ::close(_dir_fd);
  if (!_keep) ::unlink(_path.c_str());
}

void body_file::op::on_complete(int res, unsigned) { self->on_op(this, res); }

void body_file::fail_later() {
  _failed = true;
  _shard.post([this] {
    auto cb = std::move(_done);
    cb(false);
  });
}

void body_file::drop_written_frames() {
  // The frames written last are on disk: keep only the partial frame's plaintext.
  if (!_sealed_bytes) return;
  std::memmove(_out.data(), _out.data() + _sealed_bytes, _part);
  _out.resize(_part);
  _sealed_bytes = 0;
}

void body_file::append_sealed(std::span<const iovec> pieces) {
  // Copy into frames; each whole frame is sealed in place, once.
  for (const iovec& v : pieces) {
    auto p = static_cast<const std::byte*>(v.iov_base);
    for (size_t left = v.iov_len; left;) {
      const size_t room = body_frame_size - _part;
      const size_t take = std::min(room, left);
      const size_t at = _out.size();
      _out.resize(at + take);
      std::memcpy(_out.data() + at, p, take);
      p += take;
      left -= take;
      _part += take;
      _body_len += take;
      if (_part == body_frame_size) {
        _out.resize(_out.size() + seal_tag_size);
        if (!_crypt->seal_frame(_out.data() + _sealed_bytes, body_frame_size, _frames)) {
          SR_ERROR("spool: body file %s: cannot seal a frame", _path.c_str());
          fail_later();
          return;
        }
        ++_frames;
        _sealed_bytes += body_frame_stored;
        _part = 0;
      }
    }
  }
  if (_sealed_bytes == 0) {  // not a whole frame yet: nothing to write
    _shard.post([this] {
      auto cb = std::move(_done);
      cb(true);
    });
    return;
  }
  _ops[0].expect = _sealed_bytes;
  _pending = 1;
  const uint64_t at = _reserve + (_frames * body_frame_stored - _sealed_bytes);
  io_uring_prep_write(_shard.sqe(&_ops[0]), _fd, _out.data(), unsigned(_sealed_bytes), at);
}

void body_file::append(std::span<const iovec> pieces, std::function<void(bool)> done) {
  if (_crypt) {
    _done = std::move(done);
    if (_failed || _pending) {
      fail_later();
      return;
    }
    drop_written_frames();
    append_sealed(pieces);
    return;
  }
  uint64_t n = 0;
  for (const iovec& v : pieces) {
    n += v.iov_len;
    _body_crc = crc32c_extend(_body_crc, v.iov_base, v.iov_len);
  }
  _done = std::move(done);
  if (_failed || pieces.size() > IOV_MAX || _pending) {
    fail_later();
    return;
  }
  _ops[0].expect = n;
  _pending = 1;
  io_uring_prep_writev(_shard.sqe(&_ops[0]), _fd, pieces.data(), unsigned(pieces.size()),
                       _reserve + _body_len);
  _body_len += n;
}

void body_file::finish_sealed(message_meta& meta, std::span<const iovec> prefix) {
  if (_failed || _pending) {
    fail_later();
    return;
  }
  drop_written_frames();
  // The last, partial frame.
  size_t last = 0;
  if (_part) {
    _out.resize(_part + seal_tag_size);
    if (!_crypt->seal_frame(_out.data(), _part, _frames)) {
      SR_ERROR("spool: body file %s: cannot seal a frame", _path.c_str());
      fail_later();
      return;
    }
    last = _out.size();
  }
  // The head after the KEY record (kept in _head since create()): envelope, body start and
  // length, prefix, sealed with counter 0.
  _head.resize(key_record_size + header_size + seal_counter_size);
  const bool fits = envelope_fits(meta);
  if (fits) append_envelope(_head, meta);
  append_external_ref(_head, _reserve, _body_len);
  uint64_t prefix_len = 0;
  for (const iovec& v : prefix) {
    auto p = static_cast<const std::byte*>(v.iov_base);
    _head.insert(_head.end(), p, p + v.iov_len);
    prefix_len += v.iov_len;
  }
  _head.resize(_head.size() + seal_tag_size);
  const uint64_t payload = _head.size() - key_record_size - header_size;
  if (!fits || _head.size() > _reserve || payload > UINT32_MAX) {
    if (fits)
      SR_WARN("spool: message %s does not fit its body file (%zu bytes before the body, %llu reserved)",
              meta.queue_id.c_str(), _head.size(), (unsigned long long)_reserve);
    fail_later();
    return;
  }
  record_header h;
  h.type = record_type::message;
  h.flags = record_flag_external_body;
  h.payload_len = uint32_t(payload);
  encode_header(h, _head.data() + key_record_size);
  if (!_crypt->seal_head(_head.data() + key_record_size, h)) {
    SR_ERROR("spool: body file %s: cannot seal its head", _path.c_str());
    fail_later();
    return;
  }
  meta.external_body = true;
  meta.body_offset = 0;  // a sealed body file counts in message bytes (keyring.hh)
  meta.body_length = prefix_len + _body_len;
  _meta = &meta;
  unsigned i = 0;
  io_uring_sqe* sq;
  if (last) {
    _ops[i].expect = last;
    sq = _shard.sqe(&_ops[i++]);
    io_uring_prep_write(sq, _fd, _out.data(), unsigned(last), _reserve + _frames * body_frame_stored);
    sq->flags |= IOSQE_IO_LINK;
    ++_frames;
  }
  _ops[i].expect = _head.size();
  sq = _shard.sqe(&_ops[i++]);
  io_uring_prep_write(sq, _fd, _head.data(), unsigned(_head.size()), 0);
  sq->flags |= IOSQE_IO_LINK;
  _ops[i].expect = UINT64_MAX;
  sq = _shard.sqe(&_ops[i++]);
  io_uring_prep_fsync(sq, _fd, IORING_FSYNC_DATASYNC);
  sq->flags |= IOSQE_IO_LINK;
  _ops[i].expect = UINT64_MAX;
  io_uring_prep_fsync(_shard.sqe(&_ops[i++]), _dir_fd, 0);  // the new file's directory entry
  _pending = i;
}

void body_file::finish(message_meta& meta, std::span<const iovec> prefix,
                       std::function<void(bool)> done) {
  _done = std::move(done);
  if (_crypt) {
    finish_sealed(meta, prefix);
    return;
  }
  _head.assign(header_size, std::byte{0});
  bool fits = envelope_fits(meta);
  if (fits) append_envelope(_head, meta);
  const size_t env_len = _head.size() - header_size;
  for (const iovec& v : prefix) {
    auto p = static_cast<const std::byte*>(v.iov_base);
    _head.insert(_head.end(), p, p + v.iov_len);
  }
  const uint64_t payload = _head.size() - header_size + _body_len;
  if (!fits || _head.size() > _reserve || payload > UINT32_MAX || _failed || _pending) {
    if (fits && !_failed)
      SR_WARN("spool: message %s does not fit its body file (%zu bytes before the body, %llu reserved)",
              meta.queue_id.c_str(), _head.size(), (unsigned long long)_reserve);
    _failed = true;
    _shard.post([this] {
      auto cb = std::move(_done);
      cb(false);
    });
    return;
  }
  record_header h;
  h.type = record_type::message;
  h.payload_len = uint32_t(payload);
  h.crc = crc32c_combine(crc32c(_head.data() + header_size, _head.size() - header_size), _body_crc,
                         _body_len);
  encode_header(h, _head.data());
  const uint64_t at = _reserve - _head.size();
  meta.external_body = true;
  meta.body_offset = at + header_size + env_len;
  meta.body_length = _head.size() - header_size - env_len + _body_len;
  _meta = &meta;
  _ops[0].expect = _head.size();
  _ops[1].expect = _ops[2].expect = UINT64_MAX;
  _pending = 3;
  io_uring_sqe* s = _shard.sqe(&_ops[0]);
  io_uring_prep_write(s, _fd, _head.data(), unsigned(_head.size()), at);
  s->flags |= IOSQE_IO_LINK;
  s = _shard.sqe(&_ops[1]);
  io_uring_prep_fsync(s, _fd, IORING_FSYNC_DATASYNC);
  s->flags |= IOSQE_IO_LINK;
  io_uring_prep_fsync(_shard.sqe(&_ops[2]), _dir_fd, 0);  // the new file's directory entry
}

void body_file::on_op(op* o, int res) {
  // A write must write all its bytes (o->expect); the syncs return 0 (expect UINT64_MAX).
  if (res < 0) {
    if (!_failed) SR_ERROR("spool: body file %s: %s", _path.c_str(), std::strerror(-res));
    _failed = true;
  } else if (o->expect != UINT64_MAX && uint64_t(res) != o->expect) {
    SR_ERROR("spool: body file %s: short write (%d of %llu bytes)", _path.c_str(), res,
             (unsigned long long)o->expect);
    _failed = true;
  }
  if (--_pending) return;
  if (_failed && _meta) _meta->external_body = false;
  _meta = nullptr;
  auto cb = std::move(_done);
  cb(!_failed);
}

}  // namespace sr::spool
