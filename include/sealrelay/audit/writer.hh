// The audit log on disk: one file opened O_APPEND at start-up and shared by every shard.
// Each shard has a `writer` that formats records into its own buffer and writes whole
// buffers (so whole lines) with IORING_OP_WRITE: one write in flight while the other
// buffer fills, so append() never blocks. O_APPEND makes each write land atomically at
// the end of the file, so lines from different shards never interleave. No record is
// dropped while the disk accepts writes: when the disk falls behind and the filling buffer
// reaches its cap, the writer reports pressure (the shard pauses delivery until it drains)
// and keeps every record. Only a failed write loses records: they are counted, and the
// writer reports itself failing (/healthz) until a write succeeds again.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "sealrelay/audit/record.hh"
#include "sealrelay/core/shard.hh"
#include "sealrelay/util/result.hh"

namespace sr::audit {

// The audit file's descriptor (RAII). Opened once, before the shards start.
class log_file {
 public:
  // Open `path` (relative to the cwd) for appending, creating it (0640) and its parent
  // directories; the error names the path.
  static sr::result<log_file> open(const std::string& path);
  log_file() = default;
  log_file(log_file&& o) noexcept : _fd(o._fd) { o._fd = -1; }
  log_file& operator=(log_file&& o) noexcept;
  log_file(const log_file&) = delete;
  log_file& operator=(const log_file&) = delete;
  ~log_file();
  int fd() const { return _fd; }

 private:
  explicit log_file(int fd) : _fd(fd) {}
  int _fd = -1;
};

// A shard's asynchronous audit writer. Create it on the shard thread after shard.init();
// it must outlive the shard's loop (it registers a tick). Not thread-safe: one shard only.
class writer final : public core::completion {
 public:
  struct options {
    size_t flush_bytes = 64 * 1024;          // write once this much is buffered (else on tick)
    size_t max_buffered_bytes = 4u << 20;    // past this while a write is slow: pressure
    // This shard's cells of the metrics (admin::registry), optional; written only by this
    // shard (relaxed load + store): records lost to failed writes, failed writes, and 1
    // while the last write failed (0 once one succeeds).
    std::atomic<uint64_t>* dropped_cell = nullptr;
    std::atomic<uint64_t>* write_errors_cell = nullptr;
    std::atomic<uint64_t>* failing_cell = nullptr;
    // Shared by every writer of the same file (null: this writer's own). Set when a failed
    // write (disk full) left part of a line at the end of the file; the next write of any
    // of them then starts with '\n', so the fragment stays a line of its own instead of
    // swallowing the next record (tools/drill-faults, disk full: one corrupt line each time).
    std::atomic<bool>* torn = nullptr;
  };

  // Write to `fd` (not owned; a log_file that outlives the writer) from shard `sh`.
  writer(core::shard& sh, int fd, const options& opt);
  writer(core::shard& sh, int fd) : writer(sh, fd, options{}) {}
  ~writer();
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;

  // Format `r` into the buffer (never blocks, never drops; past the cap it reports pressure).
  void append(const record& r);
  // Append one line formatted elsewhere (a JSON object ending in '\n': the submission
  // AUTH lines, kind "auth"), with the same buffering and pressure as append().
  void append_line(std::string_view line);
  // Call `f(true)` when the filling buffer reaches max_buffered_bytes and `f(false)` once it
  // has drained below it (the owner pauses and resumes delivery).
  void on_pressure(std::function<void(bool)> f) { _on_pressure = std::move(f); }
  // True while the filling buffer is at its cap (delivery should wait).
  bool backlogged() const { return _backlogged; }
  // True while the last write failed (the audit is not reaching the disk).
  bool failing() const { return _failing; }
  // Submit what is buffered now unless a write is already in flight (then it follows).
  void flush();
  // True when nothing is buffered and no write is in flight.
  bool idle() const { return !_in_flight && _fill.empty(); }
  // Write everything out and wait for it (blocks: shutdown only). Call on the shard
  // thread outside any completion handler, e.g. after run() returned: while our write is
  // in flight it reaps the ring's CQEs and hands them to their completions as the loop
  // would (mailbox wakes are dropped: nothing should arrive once the shard stopped).
  void flush_and_wait();

  // Records formatted (not dropped) so far.
  uint64_t records() const { return _records; }
  // Records lost to failed writes.
  uint64_t dropped() const { return _dropped; }
  // Writes that failed.
  uint64_t write_errors() const { return _write_errors; }
  // Bytes the kernel has confirmed written.
  uint64_t bytes_written() const { return _bytes_written; }

 private:
  void on_complete(int res, unsigned flags) override;
  void submit();
  void arm_write();
  void count_dropped(uint64_t n);
  void write_failed();
  void write_succeeded();
  void update_pressure();
  // The torn-line flag this writer shares (options::torn) or its own.
  std::atomic<bool>& torn() { return _opt.torn ? *_opt.torn : _own_torn; }
  // True when the failed write in flight left the file ending inside a line.
  bool leaves_fragment() const;

  core::shard& _shard;
  int _fd;
  options _opt;
  std::string _fill;            // records being appended
  std::string _flight;          // the buffer the kernel is writing (when _in_flight)
  size_t _flight_off = 0;       // bytes of _flight already written (short writes)
  uint64_t _fill_records = 0;   // records in _fill (exact drop counts on write errors)
  uint64_t _flight_records = 0;
  bool _in_flight = false;
  bool _error_logged = false;   // one log line per run of failing writes
  bool _failing = false;        // the last write failed
  bool _backlogged = false;     // _fill at its cap: pressure reported
  std::atomic<bool> _own_torn{false};  // options::torn when none is shared
  bool _newline_first = false;  // _flight starts with a '\n' that ends a torn line
  std::function<void(bool)> _on_pressure;
  uint64_t _records = 0;
  uint64_t _dropped = 0;
  uint64_t _write_errors = 0;
  uint64_t _bytes_written = 0;
};

// Synchronous audit output for tools and tests: each append() is one write(2) of one
// whole line to an O_APPEND file, so it is safe beside a running daemon's writers.
class file_sink {
 public:
  // Open `path` as log_file::open does.
  static sr::result<file_sink> open(const std::string& path);
  // Format and write one record; the error carries strerror.
  sr::status append(const record& r);
  int fd() const { return _file.fd(); }

 private:
  explicit file_sink(log_file f) : _file(std::move(f)) {}
  log_file _file;
  std::string _line;
};

}  // namespace sr::audit
