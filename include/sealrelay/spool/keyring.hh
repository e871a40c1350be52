// Spool encryption at rest ([spool] encrypt, key_file, previous_keys): the keys and the
// sealing of records (format in record.hh). A sealed segment opens with a KEY record naming
// its key (id = first 8 bytes of SHA-256 of the key) and a random 8-byte salt; every later
// record in it carries a counter and is AES-256-GCM sealed with nonce = salt || counter and
// the record header's first 12 bytes as associated data. A segment is never appended to
// after a restart and the counter only grows while it is written, so a nonce never repeats
// under a key (two segments under one key share a salt with odds ~n^2/2^65). Key rotation:
// new segments take the current key; a segment names its key, so previous keys keep old
// segments readable; a segment whose key is not configured is refused, never skipped.
// Body files of large messages (body_file.hh) are sealed too, in frames: see below.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "sealrelay/spool/record.hh"
#include "sealrelay/tls/seal.hh"
#include "sealrelay/util/result.hh"

namespace sr::spool {

inline constexpr size_t key_id_size = 8;
inline constexpr size_t segment_salt_size = 8;
inline constexpr size_t key_record_payload = key_id_size + segment_salt_size;
inline constexpr size_t key_record_size = header_size + key_record_payload;
inline constexpr size_t seal_counter_size = 4;
inline constexpr size_t seal_tag_size = tls::seal_tag_size;
// What sealing adds to a record's payload: the counter before it, the tag after it.
inline constexpr size_t sealed_overhead = seal_counter_size + seal_tag_size;

using key_id = std::array<uint8_t, key_id_size>;

// A sealed body file (large/<queue id>): its KEY record (flag record_flag_external_body:
// "framed") at 0; at key_record_size its head record, sealed with counter 0: envelope,
// body start u64, body length u64, then the message's prefix (Received:, DKIM-Signature:);
// from body start the body in frames of body_frame_size plaintext bytes (the last one
// shorter), each stored with its tag and sealed with counter 1 + its index. Frames are
// independent, so a 128 KiB delivery window opens only the frames it covers. A message
// location in such a file counts in the message's own bytes (prefix then body) from 0.
inline constexpr size_t body_frame_size = 16384;
inline constexpr size_t body_frame_stored = body_frame_size + 16;  // + tag

// The spool's keys: at most one that seals new segments, any number that only open.
class keyring {
 public:
  struct entry {
    key_id id;
    tls::seal_key key;
  };
  // `current` seals new segments when `seal` is set (encrypt = true); `current` (when given)
  // and `previous` open segments written under them. Duplicates are dropped.
  keyring(const tls::seal_key* current, bool seal, std::span<const tls::seal_key> previous);
  // Return the key new segments are sealed with; null when they are written in plaintext.
  const entry* sealing_key() const { return _seal < 0 ? nullptr : &_keys[size_t(_seal)]; }
  // Return the key with this id; null when it is not configured.
  const entry* find(const key_id& id) const;
  // Return the id of a key: the first 8 bytes of its SHA-256.
  static key_id id_of(const tls::seal_key& key);

 private:
  std::vector<entry> _keys;
  int _seal = -1;
};

// Lower-case hex of a key id, as logs and docs show it.
std::string to_hex(const key_id& id);

// How a segment's records are stored, from its first record.
struct segment_seal {
  bool sealed = false;            // the segment opens with a KEY record
  bool framed = false;            // ... flagged external body: a sealed body file
  key_id id{};                    // its key id (sealed only)
  std::array<uint8_t, segment_salt_size> salt{};
  const keyring::entry* key = nullptr;  // null when sealed under a key not configured
};
// Classify a segment from its first bytes (at least key_record_size of them when the file
// is that long): sealed when they are a valid KEY record.
segment_seal classify_segment(std::span<const std::byte> first, const keyring* keys);

// Sealing and opening for one owner (a partition, a reader, the sidecar): one cipher per
// key, set up on first use. Not thread-safe.
class record_crypt {
 public:
  explicit record_crypt(std::shared_ptr<const keyring> keys) : _keys(std::move(keys)) {}
  const keyring* keys() const { return _keys.get(); }
  const std::shared_ptr<const keyring>& shared_keys() const { return _keys; }
  // True when new segments are sealed.
  bool sealing() const { return _keys && _keys->sealing_key(); }
  // Start sealing a new segment (`framed`: a body file): write its KEY record
  // (key_record_size bytes) to `out`, with a fresh random salt, and restart the counter.
  // False when the RNG fails.
  bool begin_segment(std::byte* out, bool framed = false);
  // The sealing state of the segment begun last (salt, counter): a caller whose new segment
  // could not be created puts the previous one back, so records keep their segment's salt.
  struct sealing_state {
    std::array<uint8_t, segment_salt_size> salt;
    uint64_t counter;
  };
  sealing_state save() const { return {_salt, _counter}; }
  void restore(const sealing_state& s) {
    _salt = s.salt;
    _counter = s.counter;
  }
  // True while the segment begun last can seal `n` more records.
  bool counter_left(uint64_t n) const { return _counter + n <= (uint64_t(1) << 32); }
  // Seal the record at `rec` in place: header (16) | counter (4) | plaintext | tag (16),
  // `h.payload_len` counting all but the header. Fills counter, ciphertext, tag, h.crc and
  // the header. False when wolfCrypt fails.
  bool seal(std::byte* rec, record_header& h);
  // Body files: seal the head record (counter 0), or frame `index` in place (`n` plaintext
  // bytes at `data`, its tag written after them).
  bool seal_head(std::byte* rec, record_header& h) { return seal_at(rec, h, 0); }
  bool seal_frame(std::byte* data, size_t n, uint64_t index);
  // Open frame `index` of a sealed body file in place (`n` bytes, then its tag).
  bool open_frame(const segment_seal& seg, std::byte* data, size_t n, uint64_t index);
  // Open the sealed payload of the record with header `h` (its bytes `payload`, copied
  // by the caller if it must keep the ciphertext) in place; on success `plain` is the
  // plaintext inside `payload`. False when the key is missing or the record is not
  // authentic (then `payload` holds no plaintext).
  bool open(const segment_seal& seg, const record_header& h, std::span<std::byte> payload,
            std::span<std::byte>& plain);

 private:
  tls::gcm_cipher* cipher_for(const keyring::entry& k);
  bool seal_at(std::byte* rec, record_header& h, uint32_t counter);
  std::shared_ptr<const keyring> _keys;
  struct slot {
    key_id id;
    tls::gcm_cipher cipher;
  };
  std::vector<slot> _ciphers;
  std::array<uint8_t, segment_salt_size> _salt{};
  uint64_t _counter = 0;
};

// Read the record at `offset` of the segment open as `fd` and return its header and
// plaintext payload (opened when the segment is sealed); an error text otherwise. For
// readers off the shard (the sidecar, tools): blocking.
struct plain_record {
  record_header h;
  std::vector<std::byte> payload;
};
sr::result<plain_record> read_record_at(int fd, uint64_t offset, record_crypt& crypt,
                                        uint64_t max_payload);

// The head of a sealed body file, opened.
struct framed_head {
  message_meta meta;
  uint8_t version = format_v2;
  uint64_t body_start = 0;  // file offset of frame 0
  uint64_t body_len = 0;    // plaintext body bytes
  std::string prefix;       // message bytes before the body
  uint64_t length() const { return prefix.size() + body_len; }
};
// Open a body file's head record: `rec` is its header and payload (opened in place).
bool open_framed_head(const segment_seal& seg, record_crypt& crypt, std::span<std::byte> rec,
                      framed_head& out);
// Which stored bytes hold message bytes [from, from + n) of a sealed body file's body
// part (from counted from the body's start): frames [first, last], file range [at, at + len).
struct frame_span {
  uint64_t first = 0, last = 0, at = 0, len = 0;
};
frame_span frames_for(const framed_head& head, uint64_t from, uint64_t n);
// Open the frames of `span` read into `buf` (span.len bytes) in place and copy body bytes
// [from, from + n) to `dst`; false when a frame is not authentic.
bool open_frames(const segment_seal& seg, record_crypt& crypt, const framed_head& head,
                 const frame_span& span, std::byte* buf, uint64_t from, uint64_t n, char* dst);
// Read a whole message of a sealed body file (blocking: the sidecar): its meta and bytes.
sr::result<framed_head> read_framed_head(int fd, const segment_seal& seg, record_crypt& crypt);
sr::result<std::string> read_framed_message(int fd, const segment_seal& seg, record_crypt& crypt,
                                            const framed_head& head);

}  // namespace sr::spool
