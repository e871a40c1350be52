// Double-buffered audit writes on the shard's ring. Invariants: _flight is non-empty
// exactly while _in_flight; every write covers whole lines (a buffer only ever holds
// complete records); both buffers are reserved up front (cap + one line) so append() does
// not allocate until the cap is passed; past it the shard has paused delivery, so _fill
// grows only by the records of transactions already under way. A write a full disk cut
// short leaves part of a line: the next write of any writer of the file (options::torn)
// starts with '\n', so the fragment never swallows the next record.
#include "sealrelay/audit/writer.hh"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "sealrelay/util/log.hh"

namespace sr::audit {

sr::result<log_file> log_file::open(const std::string& path) {
  std::filesystem::path p(path);
  if (p.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(p.parent_path(), ec);
    if (ec) return sr::error{"audit file " + path + ": cannot create its directory: " + ec.message()};
  }
  int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return sr::error{"audit file " + path + ": " + strerror(errno)};
  // A file that does not end with a line end (the disk filled in the middle of a line, then
  // the process stopped): end that line first, so the next record starts a line of its own.
  struct stat sb;
  char last = '\n';
  if (::fstat(fd, &sb) == 0 && sb.st_size > 0 && ::pread(fd, &last, 1, sb.st_size - 1) == 1 && last != '\n' &&
      ::write(fd, "\n", 1) != 1)
    SR_WARN("audit file %s ends inside a line and cannot be completed: %s", path.c_str(), strerror(errno));
  return log_file(fd);
}

log_file& log_file::operator=(log_file&& o) noexcept {
  if (this != &o) {
    if (_fd >= 0) ::close(_fd);
    _fd = o._fd;
    o._fd = -1;
  }
  return *this;
}

log_file::~log_file() {
  if (_fd >= 0) ::close(_fd);
}

writer::writer(core::shard& sh, int fd, const options& opt) : _shard(sh), _fd(fd), _opt(opt) {
  if (_opt.flush_bytes == 0) _opt.flush_bytes = 1;
  _fill.reserve(_opt.max_buffered_bytes + max_line_bytes);
  _flight.reserve(_opt.max_buffered_bytes + max_line_bytes);
  sh.on_tick([this] { flush(); });
}

writer::~writer() {
  if (_in_flight) {
    // The kernel still reads this buffer: leak it rather than let it write freed memory.
    (void)new std::string(std::move(_flight));
  }
}

namespace {
void add_to(std::atomic<uint64_t>* cell, uint64_t n) {
  if (cell) cell->store(cell->load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
}  // namespace

void writer::count_dropped(uint64_t n) {
  _dropped += n;
  add_to(_opt.dropped_cell, n);
}

void writer::write_failed() {
  ++_write_errors;
  add_to(_opt.write_errors_cell, 1);
  _failing = true;
  if (_opt.failing_cell) _opt.failing_cell->store(1, std::memory_order_relaxed);
}

void writer::write_succeeded() {
  _error_logged = false;
  _failing = false;
  if (_opt.failing_cell) _opt.failing_cell->store(0, std::memory_order_relaxed);
}

void writer::update_pressure() {
  bool full = _fill.size() >= _opt.max_buffered_bytes;
  if (full == _backlogged) return;
  _backlogged = full;
  if (full)
    SR_WARN("audit: the disk is not keeping up; delivery on this shard waits until it drains");
  if (_on_pressure) _on_pressure(full);
}

void writer::append(const record& r) {
  format(r, _fill);
  ++_fill_records;
  ++_records;
  if (!_in_flight && _fill.size() >= _opt.flush_bytes) submit();
  update_pressure();
}

void writer::append_line(std::string_view line) {
  _fill.append(line);
  ++_fill_records;
  ++_records;
  if (!_in_flight && _fill.size() >= _opt.flush_bytes) submit();
  update_pressure();
}

void writer::flush() {
  if (!_in_flight && !_fill.empty()) submit();
}

bool writer::leaves_fragment() const {
  // Nothing written: only a '\n' we owed and did not write. Else: unless the write stopped
  // right after a line end.
  if (_flight_off == 0) return _newline_first;
  return _flight[_flight_off - 1] != '\n';
}

void writer::submit() {
  _fill.swap(_flight);   // swapping keeps both reservations: no allocation
  _flight_records = _fill_records;
  _fill_records = 0;
  _flight_off = 0;
  // A line torn by a full disk ends here, never inside the first record of this write
  // (rare: the insert may allocate).
  _newline_first = torn().exchange(false, std::memory_order_relaxed);
  if (_newline_first) _flight.insert(0, 1, '\n');
  _in_flight = true;
  arm_write();
  update_pressure();
}

void writer::arm_write() {
  io_uring_sqe* s = _shard.sqe(this);
  // Offset -1: write at the file position, which O_APPEND makes the end of the file.
  io_uring_prep_write(s, _fd, _flight.data() + _flight_off, unsigned(_flight.size() - _flight_off),
                      uint64_t(-1));
}

void writer::on_complete(int res, unsigned) {
  if (res == -EAGAIN || res == -EINTR) {
    arm_write();
    return;
  }
  if (res < 0) {
    // The buffer's records are lost; count them rather than retry forever on a full disk.
    // Part of it written (a short write before this failure) leaves a torn line; a '\n'
    // we owed and did not write is still owed.
    if (leaves_fragment()) torn().store(true, std::memory_order_relaxed);
    if (!_error_logged) {
      SR_ERROR("audit: write failed: %s; records are being dropped (/healthz is unhealthy)",
               strerror(-res));
      _error_logged = true;
    }
    write_failed();
    count_dropped(_flight_records);
  } else {
    _bytes_written += unsigned(res);
    _flight_off += unsigned(res);
    if (_flight_off < _flight.size() && res > 0) {
      // Short write (disk full, signal): finish the rest; a line may then be split
      // around another shard's write, which only an out-of-space disk can cause.
      arm_write();
      return;
    }
    if (_flight_off < _flight.size()) {  // wrote nothing
      if (leaves_fragment()) torn().store(true, std::memory_order_relaxed);
      write_failed();
      count_dropped(_flight_records);
    } else {
      write_succeeded();
    }
  }
  _flight.clear();
  _flight_records = 0;
  _in_flight = false;
  if (_fill.size() >= _opt.flush_bytes) submit();
  update_pressure();
}

void writer::flush_and_wait() {
  io_uring& ring = _shard.ring();
  while (_in_flight) {
    int rc = io_uring_submit_and_wait(&ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EBUSY && rc != -EAGAIN) {
      SR_ERROR("audit: waiting for the last write: %s", strerror(-rc));
      return;
    }
    unsigned head, n = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++n;
      uint64_t ud = cqe->user_data;
      if (ud == core::ignore_cqe || ud == core::mailbox_cqe) continue;
      auto* c = reinterpret_cast<core::completion*>(ud);
      if (c == this) {
        // Only our own completion: the remainder is written synchronously below.
        int r = cqe->res;
        if (r == -EAGAIN || r == -EINTR) r = 0;
        if (r < 0) {
          write_failed();
          count_dropped(_flight_records);
        } else {
          _bytes_written += unsigned(r);
          _flight_off += unsigned(r);
          _fill.insert(0, _flight, _flight_off, std::string::npos);
          _fill_records += _flight_records;
        }
        _flight.clear();
        _flight_records = 0;
        _in_flight = false;
      } else {
        c->on_complete(cqe->res, cqe->flags);
      }
    }
    io_uring_cq_advance(&ring, n);
  }
  size_t off = 0;
  bool newline_first = !_fill.empty() && torn().exchange(false, std::memory_order_relaxed);
  if (newline_first) _fill.insert(0, 1, '\n');
  while (off < _fill.size()) {
    ssize_t w = ::write(_fd, _fill.data() + off, _fill.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (off == 0 ? newline_first : _fill[off - 1] != '\n') torn().store(true, std::memory_order_relaxed);
      SR_ERROR("audit: final write failed: %s", w < 0 ? strerror(errno) : "no progress");
      write_failed();
      count_dropped(_fill_records);
      break;
    }
    off += size_t(w);
    _bytes_written += size_t(w);
    if (off == _fill.size()) write_succeeded();
  }
  _fill.clear();
  _fill_records = 0;
}

sr::result<file_sink> file_sink::open(const std::string& path) {
  auto f = log_file::open(path);
  if (!f) return sr::error{f.err()};
  return file_sink(std::move(f.value()));
}

sr::status file_sink::append(const record& r) {
  _line.clear();
  format(r, _line);
  size_t off = 0;
  while (off < _line.size()) {
    ssize_t w = ::write(_file.fd(), _line.data() + off, _line.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return sr::error{std::string("audit write: ") + (w < 0 ? strerror(errno) : "no progress")};
    off += size_t(w);
  }
  return {};
}

}  // namespace sr::audit
