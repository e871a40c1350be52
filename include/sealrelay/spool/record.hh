// On-disk record format of a spool segment: a 16-byte header followed by a payload.
//   header: magic u32 | type u8 | flags u8 | version u8 | reserved u8 | payload_len u32 | crc32c u32
//   (version 0 in the header is format v1, written before the field existed; v2 writes 2)
//   MESSAGE payload: envelope + raw message bytes. v1 envelope: queue id, received ms, flags,
//     mail_from, rcpts. v2 adds kind, REQUIRETLS / TLS-Required: No flags, the
//     authenticated user and the Message-ID.
//   DONE payload:     queue id + "all" or a list of finished recipient indices
//   ATTEMPTS payload: queue id + (recipient index, attempts made) pairs (v2 only)
//   HOLD payload (v2 only; added by issue 13, sealrelay-queue hold/release): the ATTEMPTS
//     layout with (recipient index, 1 = held / 0 = released) pairs; the last one wins.
//     Spools written before it have none and read as before; a build older than it skips
//     a HOLD record as a bad record (the message is then delivered, not held).
//   MESSAGE with header flag record_flag_external_body (v2 only): envelope + body offset u64
//     + body length u64; the message bytes live in the partition's body file
//     large/<queue id>, which holds at that offset a complete MESSAGE record of its own
//     (header, envelope, bytes), so readers that check a record before the bytes (the
//     fallback sidecar) need nothing new. The body file is fdatasync'd before this record
//     is written.
//   KEY payload (v2, flags 0; only ever the first record of a sealed segment): key id (8
//     bytes) + segment salt (8 bytes); see keyring.hh.
//   Header flag record_flag_sealed (v2, any type but KEY, only in a sealed segment): the
//     payload is record counter u32 | AES-256-GCM ciphertext of the payload above | tag (16);
//     the CRC covers that sealed payload (so torn writes are still told from tampering).
// All integers are little-endian. Decoders never trust a length without checking it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sealrelay/report/message_kind.hh"

namespace sr::spool {

inline constexpr uint32_t record_magic = 0x31505253;  // "SRP1" in file byte order
inline constexpr size_t header_size = 16;
inline constexpr size_t queue_id_len = 16;
inline constexpr size_t max_address_len = 0xFFFF;
inline constexpr uint8_t format_v1 = 0;  // header version byte of v1 records
inline constexpr uint8_t format_v2 = 2;  // what this build writes
// Header flag of a v2 MESSAGE record whose bytes are in an external body file (above).
inline constexpr uint8_t record_flag_external_body = 1;
// Header flag of a v2 record whose payload is sealed (keyring.hh).
inline constexpr uint8_t record_flag_sealed = 2;
// Bytes of an external-body reference after the envelope (offset u64, length u64).
inline constexpr size_t external_ref_size = 16;

enum class record_type : uint8_t {
  message = 1,   // an accepted message: envelope + raw bytes
  done = 2,      // recipients of an earlier message finished (delivered, bounced, handed off)
  attempts = 3,  // delivery attempts made so far for recipients of an earlier message (v2)
  key = 4,       // first record of a sealed segment: which key, and the segment's salt (v2)
  hold = 5,      // recipients of an earlier message held or released by the operator (v2)
};

// What a stored message is (the record's `kind` byte; the audit's `kind`).
using report::message_kind;

struct record_header {
  uint32_t magic = record_magic;
  record_type type = record_type::message;
  uint8_t flags = 0;               // record_flag_external_body (v2 MESSAGE), record_flag_sealed
  uint8_t version = format_v2;     // format_v1 (0) or format_v2
  uint8_t reserved = 0;            // must be 0
  uint32_t payload_len = 0;
  uint32_t crc = 0;  // CRC32C of the payload only
};

// What the spool keeps about a message besides its bytes.
struct message_meta {
  std::string queue_id;            // 16 uppercase hex, from partition::next_queue_id()
  uint64_t received_ms = 0;        // unix time in milliseconds
  std::string mail_from;           // without <>, "" for the null sender
  std::vector<std::string> rcpts;  // without <>; DONE records refer to these by index
  bool body_8bitmime = false;
  bool tls = false;  // received under TLS
  // v2 (a v1 record recovers as kind message, the rest empty/false):
  message_kind kind = message_kind::message;
  bool requiretls = false;       // MAIL FROM ... REQUIRETLS (RFC 8689)
  bool tls_required_no = false;  // header "TLS-Required: No" (RFC 8689)
  std::string auth_user;         // authenticated submitter, "" for relay
  std::string msg_id;            // Message-ID without <>, "" when unknown
  // Attempts made per recipient (index = recipient); filled by recovery, not stored
  // in the MESSAGE record but in later ATTEMPTS records. Empty = none yet.
  std::vector<uint32_t> attempts;
  // Held recipients (index = recipient, 1 = held), from the last HOLD record of each; filled
  // by recovery like `attempts`. Empty = none held.
  std::vector<uint8_t> held;
  // Not in the envelope: set when the message bytes are in the partition's body file
  // (record_flag_external_body); body_offset/body_length say where in it.
  bool external_body = false;
  uint64_t body_offset = 0;
  uint64_t body_length = 0;
};

// A decoded DONE record.
struct done_record {
  std::string queue_id;
  bool all = false;               // every recipient finished
  std::vector<uint32_t> indices;  // when !all: recipient indices finished
};

// A decoded ATTEMPTS record.
struct attempts_record {
  std::string queue_id;
  std::vector<std::pair<uint32_t, uint32_t>> counts;  // (recipient index, attempts so far)
};

// Serialise `h` into exactly header_size bytes at `out`.
void encode_header(const record_header& h, std::byte* out);
// Parse header_size bytes; validity is checked by header_plausible().
record_header decode_header(const std::byte* in);
// Check the fields a torn or foreign write would get wrong (magic, type, zero fields).
bool header_plausible(const record_header& h);
// Return the CRC32C of a payload, as a header's `crc` field holds it.
uint32_t payload_crc(std::span<const std::byte> payload);
// Check that `payload` is as long as `h` says and matches its CRC (a reader outside the
// spool, such as the fallback sidecar, checks a record it was pointed at this way).
bool payload_crc_ok(const record_header& h, std::span<const std::byte> payload);

// Check that `meta` fits the format (a 16 upper-case hex id, address lengths); false = cannot be stored.
bool envelope_fits(const message_meta& meta);
// Append the MESSAGE envelope of `meta` to `out` in format `version` (call envelope_fits
// first; format_v1 exists for tests that must produce old spools).
void append_envelope(std::vector<std::byte>& out, const message_meta& meta,
                     uint8_t version = format_v2);
// Parse the envelope at the start of a MESSAGE payload of format `version`; sets
// `envelope_len` (where the message bytes start). Returns false when malformed.
bool decode_envelope(std::span<const std::byte> payload, message_meta& meta, size_t& envelope_len,
                     uint8_t version = format_v2);

// Return in `envelope_len` the length of the envelope at the start of a MESSAGE payload
// without decoding it (no allocation: the reader's hot path); false when malformed.
bool envelope_size(std::span<const std::byte> payload, uint8_t version, size_t& envelope_len);

// Append / parse the external-body reference that follows the envelope of a MESSAGE
// record flagged record_flag_external_body (parse: false unless exactly external_ref_size).
void append_external_ref(std::vector<std::byte>& out, uint64_t offset, uint64_t length);
bool decode_external_ref(std::span<const std::byte> rest, uint64_t& offset, uint64_t& length);

// Append a DONE payload; an empty `indices` means every recipient.
void append_done(std::vector<std::byte>& out, std::string_view queue_id,
                 std::span<const uint32_t> indices);
// Parse a DONE payload; returns false when malformed.
bool decode_done(std::span<const std::byte> payload, done_record& out);

// Append an ATTEMPTS payload.
void append_attempts(std::vector<std::byte>& out, std::string_view queue_id,
                     std::span<const std::pair<uint32_t, uint32_t>> counts);
// A HOLD payload is an ATTEMPTS payload whose counts are (index, 1 held / 0 released):
// written with append_attempts, read with decode_attempts.
// Parse an ATTEMPTS payload; returns false when malformed.
bool decode_attempts(std::span<const std::byte> payload, attempts_record& out);

}  // namespace sr::spool
