// One shard's durable spool partition: <state_dir>/spool/<shard>/seg-<16 hex seq>.log,
// append-only segments of records (record.hh). A message is durable once the batch that
// carries it is written and fdatasync'd: one sync covers every record staged since the
// previous batch (group commit). The partition does no I/O on the data path itself: the
// shard writes a batch (io_uring) and reports the results to complete(); tests and tools
// use write_and_sync(). Bodies are never copied: batches point at the caller's buffers.
#pragma once
#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sealrelay/spool/keyring.hh"
#include "sealrelay/spool/record.hh"
#include "sealrelay/util/result.hh"

namespace sr::spool {

inline constexpr uint64_t default_segment_limit = 64ull << 20;
// Partitions the format can tell apart: a queue id names its shard in two hex digits.
inline constexpr unsigned max_shards = 256;

// A message found on disk at start-up (or by list()) with recipients still to deliver.
struct recovered_message {
  message_meta meta;
  std::vector<uint32_t> done_rcpts;  // recipient indices already finished (sorted)
  unsigned shard = 0;
  std::string segment;  // segment file path
  uint64_t offset = 0;  // file offset of the raw message bytes (Received header first);
                        // in a sealed segment, of the record (spool::reader opens it)
  uint64_t length = 0;  // their length (plaintext)
};

// Where a message's bytes landed (for the delivery queue to read them back); in a sealed
// segment `offset` is the record's (see recovered_message).
struct message_location {
  void* cookie;
  std::string segment;
  uint64_t offset;
  uint64_t length;
};

struct recovered_set {
  std::vector<recovered_message> messages;  // in log order (per partition)
  uint64_t discarded_bytes = 0;             // bytes of bad records skipped and torn tails cut
  unsigned records_skipped = 0;             // bad spans skipped with valid records after them
  unsigned segments_removed = 0;            // fully finished segments deleted by open()
};

// One group-commit write: every record staged before take_batch(). The caller writes
// `pieces` (each at most IOV_MAX iovecs, at its own file offset, in order) to `fd`,
// then fdatasyncs, and hands the results to partition::complete(). Read-only for the caller.
class batch {
 public:
  struct piece {
    const iovec* iov;
    int iovcnt;
    uint64_t offset;  // file offset where this piece goes
    uint64_t size;    // bytes in this piece
  };
  int fd = -1;
  int error = 0;        // nonzero (an errno): do not write; complete(b, -error, -error, ...)
  uint64_t offset = 0;  // file offset of the first byte (end of the segment at take time)
  uint64_t size = 0;    // total bytes to write
  std::vector<piece> pieces;

 private:
  friend class partition;
  enum class kind : uint8_t { message, done };
  struct entry {
    kind k;
    std::array<char, queue_id_len> id;  // not a std::string: no allocation per message
    uint32_t n_rcpts;
    void* cookie;
    uint64_t body_off = 0;  // message bytes: offset from the batch start, and length
    uint64_t body_len = 0;  // (external: offset and length in the body file); DONE/ATTEMPTS:
                            // the record in _buf (once sealed: in _small_plain)
    bool external = false;  // the bytes are in the partition's body file large/<id>
  };
  // A byte range of the payload: ours (offset into _buf) or the caller's (ptr).
  struct ref {
    bool own;
    size_t off;
    const void* ptr;
    size_t len;
  };
  void reset();

  std::vector<std::byte> _buf;  // record headers + envelopes + DONE records
  std::vector<ref> _refs;
  std::vector<iovec> _iov;
  std::vector<entry> _entries;
  std::vector<uint64_t> _done_targets;  // segments of messages this batch's DONE/ATTEMPTS name
  std::vector<std::array<char, queue_id_len>> _unlink;  // body files to delete once durable
  std::vector<size_t> _seal;            // offsets in _buf of records take_batch() seals
  std::vector<std::byte> _small_plain;  // sealed spool: DONE/ATTEMPTS records before sealing
  uint64_t _bytes = 0;                  // bytes staged so far (record offsets within the batch)
  size_t _messages = 0;                 // message records among _entries
  uint64_t _seq = 0;                    // segment written to
};

class partition {
 public:
  using outcome_list = std::vector<std::pair<void*, bool>>;

  // Open (creating as needed) the partition of `shard` under `state_dir`: verify every
  // record, skip a bad record and resume at the next valid one, cut a torn tail, delete
  // finished segments, start a fresh segment (old segments are never appended to).
  // Recovered messages go to `out` (may be null). Blocking; for start-up only.
  // `keys` (may be null: no encryption) opens sealed segments and, when it has a sealing
  // key, seals every new segment; a segment sealed under a key it lacks fails open().
  static sr::result<std::unique_ptr<partition>> open(const std::string& state_dir, unsigned shard,
                                                     recovered_set* out,
                                                     uint64_t segment_limit = default_segment_limit,
                                                     std::shared_ptr<const keyring> keys = nullptr);
  // Scan every partition under `state_dir` read-only (no repair) and return pending messages.
  static sr::result<recovered_set> list(const std::string& state_dir,
                                        std::shared_ptr<const keyring> keys = nullptr);
  // Return the shard numbers of the partitions present under `state_dir`, ascending.
  static sr::result<std::vector<unsigned>> shards_on_disk(const std::string& state_dir);
  // Return the directory of one partition: <state_dir>/spool/<shard>.
  static std::string partition_dir(const std::string& state_dir, unsigned shard);
  // Return the body file of a large message of this partition: <dir>/large/<queue id>.
  // The producer writes it (spool::body_file) and stages the message with
  // meta.external_body; DONE of every recipient deletes it (once that DONE is durable),
  // open() deletes body files no pending record names.
  std::string body_path(std::string_view queue_id) const;
  static std::string body_path(const std::string& partition_dir, std::string_view queue_id);

  ~partition();
  partition(const partition&) = delete;
  partition& operator=(const partition&) = delete;

  // Return a new queue id: 8 hex unix seconds, 2 hex shard, 6 hex counter (strictly increasing).
  std::string next_queue_id();
  // Add a finished message; `data` (Received header, then body pieces) must stay alive and
  // unchanged until its batch completes. Returns false (nothing staged) when the envelope
  // or size does not fit the format. With meta.external_body, `data` is empty: the bytes
  // are already durable in body_path(queue id) at meta.body_offset/body_length; a failed
  // batch deletes that file (its client hears 452).
  bool stage(const message_meta& meta, std::span<const iovec> data, void* cookie);
  // Stage a DONE record for recipients of a message whose stage() completed; an empty
  // `rcpt_indices` means all. A non-null `cookie` is reported by complete() like a message's.
  void mark_done(std::string_view queue_id, std::span<const uint32_t> rcpt_indices = {},
                 void* cookie = nullptr);
  // Stage an ATTEMPTS record: (recipient index, attempts made so far) of a message still
  // pending, so attempt numbers survive a restart (recovery returns them in meta.attempts).
  void record_attempts(std::string_view queue_id,
                       std::span<const std::pair<uint32_t, uint32_t>> counts);
  // Stage a HOLD record: recipients `indices` of a live message are held (or released).
  void record_hold(std::string_view queue_id, std::span<const uint32_t> indices, bool held);
  // Turn everything staged into one batch; null when nothing is staged or one is in flight.
  batch* take_batch();
  // Finish the in-flight batch: write_result = bytes written or -errno, fsync_result = 0 or
  // -errno (-ECANCELED: a linked fsync skipped after a failed write). Fills `outcomes`
  // (cleared first) with (cookie, durable) for each message and each DONE with a cookie,
  // in staging order. On failure the batch is cut off the segment; after an fsync
  // error the next batch goes to a new segment.
  void complete(batch* b, int64_t write_result, int fsync_result, outcome_list& outcomes);
  // Write a batch with pwritev and fdatasync it, synchronously (tests, tools).
  static std::pair<int64_t, int> write_and_sync(batch* b);
  // After complete(): where each durable message of that batch landed.
  const std::vector<message_location>& last_locations() const { return _locations; }
  // take_batch + write_and_sync + complete; returns false when nothing was staged.
  bool flush(outcome_list& outcomes);

  unsigned shard() const { return _shard; }
  // The keys this partition seals and opens with (null: none); body files take them too.
  const std::shared_ptr<const keyring>& keys() const { return _crypt.shared_keys(); }
  const std::string& dir() const { return _dir; }
  // Return the path of the segment new batches go to.
  std::string active_segment() const { return segment_path(_active_seq); }
  size_t segment_count() const { return _segments.size(); }
  bool in_flight() const { return _flight != nullptr; }
  size_t staged_records() const { return _staging->_entries.size(); }
  // Message records staged (a client awaits each one's fsync); the rest are DONE/ATTEMPTS.
  size_t staged_messages() const { return _staging->_messages; }

 private:
  struct segment_state {
    uint32_t live = 0;           // stored messages with recipients still pending
    std::vector<uint64_t> refs;  // segments whose messages DONE records in this one finish
  };
  using qid = std::array<char, queue_id_len>;
  struct qid_hash {
    size_t operator()(const qid& q) const noexcept {
      return std::hash<std::string_view>{}(std::string_view(q.data(), q.size()));
    }
  };
  // A stored message with recipients pending; the bitmap is inline up to 64 recipients
  // so the common message costs one map node and no other allocation.
  struct live_entry {
    uint64_t seq = 0;
    uint32_t n_rcpts = 0;
    uint32_t remaining = 0;
    uint64_t small = 0;          // done bits when n_rcpts <= 64
    std::vector<uint64_t> big;   // done bits otherwise
    bool external = false;       // its bytes are in a body file (deleted when finished)
    bool test_and_set(uint32_t i);
  };

  partition(std::string dir, unsigned shard, uint64_t segment_limit,
            std::shared_ptr<const keyring> keys);
  size_t seal_prefix() const { return _crypt.sealing() ? seal_counter_size : 0; }
  std::string segment_path(uint64_t seq) const;
  sr::status roll();
  void reclaim();
  void add_ref(uint64_t seg, uint64_t target);
  void finish_small_record(record_type type, size_t start, std::string_view queue_id, void* cookie);
  // Move the DONE/ATTEMPTS records of a failed batch into the staging one.
  void carry_records(const batch& failed);

  std::string _dir;
  unsigned _shard;
  uint64_t _limit;
  int _dir_fd = -1;
  int _fd = -1;  // active segment
  uint64_t _active_seq = 0;
  uint64_t _end = 0;       // end of the active segment after the batches taken so far
  bool _broken = false;    // fsync failed or a truncate failed: roll before the next write
  bool _reclaim = false;   // some segment may have become deletable
  std::map<uint64_t, segment_state> _segments;
  std::unordered_map<qid, live_entry, qid_hash> _live;
  batch _batches[2];
  std::vector<message_location> _locations;
  batch* _staging = &_batches[0];
  batch* _flight = nullptr;
  uint64_t _id_sec = 0;
  uint32_t _id_counter = 0;
  record_crypt _crypt;  // seals new segments when its keyring has a sealing key
};

// Read a recovered message's raw bytes back from its segment ("" on error, logged);
// `keys` opens a sealed segment.
std::string read_message(const recovered_message& m, std::shared_ptr<const keyring> keys = nullptr);

}  // namespace sr::spool
