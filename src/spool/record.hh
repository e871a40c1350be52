// On-disk record format of a spool segment: a 16-byte header followed by a payload.
//   header: magic u32 | type u8 | flags u8 | reserved u16 | payload_len u32 | crc32c(payload) u32
//   MESSAGE payload: envelope (queue id, received ms, flags, mail_from, rcpts) + raw message bytes
//   DONE payload:    queue id + "all" or a list of finished recipient indices
// All integers are little-endian. Decoders never trust a length without checking it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sr::spool {

inline constexpr uint32_t record_magic = 0x31505253;  // "SRP1" in file byte order
inline constexpr size_t header_size = 16;
inline constexpr size_t queue_id_len = 16;
inline constexpr size_t max_address_len = 0xFFFF;

enum class record_type : uint8_t {
  message = 1,  // an accepted message: envelope + raw bytes
  done = 2,     // recipients of an earlier message finished (delivered, bounced, handed off)
};

struct record_header {
  uint32_t magic = record_magic;
  record_type type = record_type::message;
  uint8_t flags = 0;      // none defined yet; must be 0
  uint16_t reserved = 0;  // must be 0
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
};

// A decoded DONE record.
struct done_record {
  std::string queue_id;
  bool all = false;               // every recipient finished
  std::vector<uint32_t> indices;  // when !all: recipient indices finished
};

// Serialise `h` into exactly header_size bytes at `out`.
void encode_header(const record_header& h, std::byte* out);
// Parse header_size bytes; validity is checked by header_plausible().
record_header decode_header(const std::byte* in);
// Check the fields a torn or foreign write would get wrong (magic, type, zero fields).
bool header_plausible(const record_header& h);

// Check that `meta` fits the format (id length, address lengths); false = cannot be stored.
bool envelope_fits(const message_meta& meta);
// Append the MESSAGE envelope of `meta` to `out` (call envelope_fits first).
void append_envelope(std::vector<std::byte>& out, const message_meta& meta);
// Parse the envelope at the start of a MESSAGE payload; sets `envelope_len` (where the
// message bytes start). Returns false when the payload is malformed.
bool decode_envelope(std::span<const std::byte> payload, message_meta& meta, size_t& envelope_len);

// Append a DONE payload; an empty `indices` means every recipient.
void append_done(std::vector<std::byte>& out, std::string_view queue_id,
                 std::span<const uint32_t> indices);
// Parse a DONE payload; returns false when malformed.
bool decode_done(std::span<const std::byte> payload, done_record& out);

}  // namespace sr::spool
