// CRC32C (Castagnoli, the iSCSI/ext4 polynomial) over spool record payloads.
// Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at start-up),
// else a slicing-by-8 table. Both produce identical values; `crc32c_extend` lets a
// payload made of several pieces (envelope + caller's body chunks) be summed in place.
#pragma once
#include <cstddef>
#include <cstdint>

namespace sr::spool {

// Continue a CRC32C over `len` more bytes; start with crc = 0.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t len);
// Compute the CRC32C of one buffer.
inline uint32_t crc32c(const void* data, size_t len) { return crc32c_extend(0, data, len); }
// Return crc32c(A + B) from crc32c(A), crc32c(B) and B's length (zlib's crc32_combine):
// a large message's body is summed as it streams in, before the envelope and the header
// fields put in front of it are known.
uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

namespace detail {
// Table implementation (portable fallback); exposed so tests compare both paths.
uint32_t crc32c_sw(uint32_t crc, const void* data, size_t len);
// SSE4.2 implementation; only call when crc32c_hw_available().
uint32_t crc32c_hw(uint32_t crc, const void* data, size_t len);
// Report whether this CPU and build can run crc32c_hw.
bool crc32c_hw_available();
}  // namespace detail

}  // namespace sr::spool
