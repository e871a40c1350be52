// spool::body_file: the bytes of one large message, streamed to the partition's body file
// (partition::body_path) as they arrive instead of being held in memory until the final
// dot. Layout: a sparse gap of reserve() bytes, then the body as appended. finish() puts a
// complete v2 MESSAGE record in front of the body, ending exactly where it starts (record
// header, envelope, the header fields the relay adds such as Received:), then
// fdatasyncs the file and fsyncs its directory; only then may the producer stage the
// message (meta.external_body) in the segment, so a record never names bytes that are not
// durable. Writes go through the shard's io_uring, one at a time; the caller keeps the
// appended pieces alive until the write's callback. Until keep(), the destructor deletes
// the file (an aborted or refused message leaves nothing behind). With a sealing keyring
// (spool encryption at rest) the file is sealed in frames (keyring.hh): appends are copied
// into whole frames, each encrypted once and written with its tag; finish() seals the last
// frame and writes the KEY and head records at the start.
#pragma once
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/spool/keyring.hh"
#include "sealrelay/spool/record.hh"
#include "sealrelay/util/result.hh"

namespace sr::spool {

class body_file {
 public:
  // Bytes to leave before the body for the record header, an envelope with this sender
  // and recipients (its Message-ID and auth user may still be unknown: counted at their
  // maximum) and a prefix of `prefix_len` bytes. The gap is sparse: it costs no disk.
  static uint64_t reserve_for(size_t mail_from_len, std::span<const std::string> rcpts,
                              size_t prefix_len);
  // Create `path` (exclusively) with `reserve` bytes before the body; sealed when `keys`
  // has a sealing key.
  static sr::result<std::unique_ptr<body_file>> create(core::shard& sh, std::string path,
                                                      uint64_t reserve,
                                                      std::shared_ptr<const keyring> keys = nullptr);
  ~body_file();
  body_file(const body_file&) = delete;
  body_file& operator=(const body_file&) = delete;

  // Append `pieces` (at most IOV_MAX) after the body so far; done(ok) from a later
  // completion. One operation at a time (busy()).
  void append(std::span<const iovec> pieces, std::function<void(bool)> done);
  // Write the record header + envelope of `meta` + `prefix` just before the body, then
  // make the file durable; done(ok) from a later completion. On success meta.external_body,
  // body_offset and body_length say where the message bytes (prefix + body) are.
  void finish(message_meta& meta, std::span<const iovec> prefix, std::function<void(bool)> done);
  // A durable record names the file now: the destructor leaves it.
  void keep() { _keep = true; }
  bool busy() const { return _pending != 0; }
  uint64_t body_bytes() const { return _body_len; }
  const std::string& path() const { return _path; }

 private:
  struct op final : core::completion {
    body_file* self = nullptr;
    uint64_t expect = UINT64_MAX;  // bytes its write must write; UINT64_MAX: a sync
    void on_complete(int res, unsigned flags) override;
  };
  body_file(core::shard& sh, std::string path, int fd, int dir_fd, uint64_t reserve);
  void on_op(op* o, int res);
  void drop_written_frames();  // after a sealed write: keep only the partial frame
  void append_sealed(std::span<const iovec> pieces);
  void finish_sealed(message_meta& meta, std::span<const iovec> prefix);
  void fail_later();

  core::shard& _shard;
  std::string _path;
  int _fd = -1;
  int _dir_fd = -1;
  uint64_t _reserve;
  uint64_t _body_len = 0;
  uint32_t _body_crc = 0;
  bool _keep = false;
  bool _failed = false;
  // In flight: an append (1 op) or finish (write, fdatasync, directory fsync; sealed: the
  // last frame's write first).
  op _ops[4];
  unsigned _pending = 0;
  std::vector<std::byte> _head;  // finish(): record header + envelope + prefix
  message_meta* _meta = nullptr;
  // Sealed: frames [0, _frames) are written; _out holds the frames being written, then the
  // plaintext of the next, partial frame (_part bytes).
  std::unique_ptr<record_crypt> _crypt;
  std::vector<std::byte> _out;
  size_t _sealed_bytes = 0;  // of _out: whole sealed frames (the write in flight)
  size_t _part = 0;
  uint64_t _frames = 0;
  std::function<void(bool)> _done;
};

}  // namespace sr::spool
