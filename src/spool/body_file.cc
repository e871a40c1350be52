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
  uint64_t need = header_size + env + prefix_len;
  return (need + 4095) / 4096 * 4096;
}

sr::result<std::unique_ptr<body_file>> body_file::create(core::shard& sh, std::string path,
                                                        uint64_t reserve) {
  std::string dir = path.substr(0, path.rfind('/'));
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return sr::error{"cannot open " + dir + ": " + std::strerror(errno)};
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    ::close(dir_fd);
    return sr::error{"cannot create " + path + ": " + std::strerror(e)};
  }
  return std::unique_ptr<body_file>(new body_file(sh, std::move(path), fd, dir_fd, reserve));
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

void body_file::op::on_complete(int res, unsigned) { self->on_op(res); }

void body_file::append(std::span<const iovec> pieces, std::function<void(bool)> done) {
  uint64_t n = 0;
  for (const iovec& v : pieces) {
    n += v.iov_len;
    _body_crc = crc32c_extend(_body_crc, v.iov_base, v.iov_len);
  }
  _done = std::move(done);
  if (_failed || pieces.size() > IOV_MAX || _pending) {
    _failed = true;
    _shard.post([this] {
      auto cb = std::move(_done);
      cb(false);
    });
    return;
  }
  _expect = n;
  _pending = 1;
  io_uring_prep_writev(_shard.sqe(&_ops[0]), _fd, pieces.data(), unsigned(pieces.size()),
                       _reserve + _body_len);
  _body_len += n;
}

void body_file::finish(message_meta& meta, std::span<const iovec> prefix,
                       std::function<void(bool)> done) {
  _done = std::move(done);
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
  _expect = _head.size();
  _pending = 3;
  io_uring_sqe* s = _shard.sqe(&_ops[0]);
  io_uring_prep_write(s, _fd, _head.data(), unsigned(_head.size()), at);
  s->flags |= IOSQE_IO_LINK;
  s = _shard.sqe(&_ops[1]);
  io_uring_prep_fsync(s, _fd, IORING_FSYNC_DATASYNC);
  s->flags |= IOSQE_IO_LINK;
  io_uring_prep_fsync(_shard.sqe(&_ops[2]), _dir_fd, 0);  // the new file's directory entry
}

void body_file::on_op(int res) {
  // The first completion of a chain is the write (its byte count); the syncs return 0.
  if (res < 0) {
    if (!_failed) SR_ERROR("spool: body file %s: %s", _path.c_str(), std::strerror(-res));
    _failed = true;
  } else if (_expect != UINT64_MAX) {
    if (uint64_t(res) != _expect) {
      SR_ERROR("spool: body file %s: short write (%d of %llu bytes)", _path.c_str(), res,
               (unsigned long long)_expect);
      _failed = true;
    }
    _expect = UINT64_MAX;
  }
  if (--_pending) return;
  if (_failed && _meta) _meta->external_body = false;
  _meta = nullptr;
  _expect = 0;
  auto cb = std::move(_done);
  cb(!_failed);
}

}  // namespace sr::spool
