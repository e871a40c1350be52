// Spool encryption at rest ([spool] encrypt, key_file, previous_keys): the keys and the
// sealing of records (format in record.hh). A sealed segment opens with a KEY record naming
// its key (id = first 8 bytes of SHA-256 of the key) and a random 8-byte salt; every later
// record in it carries a counter and is AES-256-GCM sealed with nonce = salt || counter and
// the record header's first 12 bytes as associated data. A segment is never appended to
// after a restart and the counter only grows while it is written, so a nonce never repeats
// under a key (two segments under one key share a salt with odds ~n^2/2^65). Key rotation:
// new segments take the current key; a segment names its key, so previous keys keep old
// segments readable; a segment whose key is not configured is refused, never skipped.
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
  // True when new segments are sealed.
  bool sealing() const { return _keys && _keys->sealing_key(); }
  // Start sealing a new segment: write its KEY record (key_record_size bytes) to `out`,
  // with a fresh random salt, and restart the counter. False when the RNG fails.
  bool begin_segment(std::byte* out);
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
  // Open the sealed payload of the record with header `h` (its bytes `payload`, copied
  // by the caller if it must keep the ciphertext) in place; on success `plain` is the
  // plaintext inside `payload`. False when the key is missing or the record is not
  // authentic (then `payload` holds no plaintext).
  bool open(const segment_seal& seg, const record_header& h, std::span<std::byte> payload,
            std::span<std::byte>& plain);

 private:
  tls::gcm_cipher* cipher_for(const keyring::entry& k);
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

}  // namespace sr::spool
