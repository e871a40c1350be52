// CRC32C: SSE4.2 `crc32` instruction (8 bytes per step) with a slicing-by-8 fallback.
// The implementation is chosen once; both take and return the finalised CRC so
// crc32c_extend(crc32c(a), b) == crc32c(a + b).
#include "crc32c.hh"

#include <array>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define SR_CRC32C_X86 1
#endif

namespace sr::spool {
namespace {

constexpr uint32_t poly = 0x82F63B78u;  // reflected Castagnoli polynomial

using table_t = std::array<std::array<uint32_t, 256>, 8>;

constexpr table_t make_tables() {
  table_t t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
    t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i)
    for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  return t;
}

constexpr table_t tables = make_tables();

using crc_fn = uint32_t (*)(uint32_t, const void*, size_t);

crc_fn pick() { return detail::crc32c_hw_available() ? detail::crc32c_hw : detail::crc32c_sw; }

}  // namespace

namespace detail {

uint32_t crc32c_sw(uint32_t crc, const void* data, size_t len) {
  auto p = static_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
  while (len >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;  // little-endian load: byte 0 is the low byte, as slicing-by-8 expects
    c = tables[7][lo & 0xFF] ^ tables[6][(lo >> 8) & 0xFF] ^ tables[5][(lo >> 16) & 0xFF] ^
        tables[4][lo >> 24] ^ tables[3][hi & 0xFF] ^ tables[2][(hi >> 8) & 0xFF] ^
        tables[1][(hi >> 16) & 0xFF] ^ tables[0][hi >> 24];
    p += 8;
    len -= 8;
  }
  while (len--) c = (c >> 8) ^ tables[0][(c ^ *p++) & 0xFF];
  return ~c;
}

#ifdef SR_CRC32C_X86
__attribute__((target("sse4.2"))) uint32_t crc32c_hw(uint32_t crc, const void* data, size_t len) {
  auto p = static_cast<const unsigned char*>(data);
  uint64_t c = ~crc;
  while (len && (reinterpret_cast<uintptr_t>(p) & 7)) {  // align for the 8-byte steps
    c = _mm_crc32_u8(uint32_t(c), *p++);
    --len;
  }
  while (len >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
    p += 8;
    len -= 8;
  }
  while (len--) c = _mm_crc32_u8(uint32_t(c), *p++);
  return ~uint32_t(c);
}

bool crc32c_hw_available() {
  __builtin_cpu_init();  // we may run from a static initialiser, before libgcc's
  return __builtin_cpu_supports("sse4.2");
}
#else
uint32_t crc32c_hw(uint32_t crc, const void* data, size_t len) { return crc32c_sw(crc, data, len); }
bool crc32c_hw_available() { return false; }
#endif

}  // namespace detail

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t len) {
  static const crc_fn impl = pick();  // function-local: safe from other static initialisers
  return impl(crc, data, len);
}

namespace {
// GF(2) 32x32 matrices as in zlib's crc32_combine: appending n zero bytes to a CRC is a
// linear map, built by repeated squaring of the one-zero-bit operator.
uint32_t gf2_times(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  for (; vec; vec >>= 1, ++mat)
    if (vec & 1) sum ^= *mat;
  return sum;
}
void gf2_square(uint32_t* square, const uint32_t* mat) {
  for (int n = 0; n < 32; ++n) square[n] = gf2_times(mat, mat[n]);
}
}  // namespace

uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b) {
  if (len_b == 0) return crc_a;
  uint32_t even[32], odd[32];
  odd[0] = poly;  // the operator for one zero bit
  for (int n = 1; n < 32; ++n) odd[n] = uint32_t(1) << (n - 1);
  gf2_square(even, odd);  // two zero bits
  gf2_square(odd, even);  // four zero bits
  do {  // apply len_b zero bytes to crc_a, one bit of len_b at a time
    gf2_square(even, odd);
    if (len_b & 1) crc_a = gf2_times(even, crc_a);
    len_b >>= 1;
    if (len_b == 0) break;
    gf2_square(odd, even);
    if (len_b & 1) crc_a = gf2_times(odd, crc_a);
    len_b >>= 1;
  } while (len_b != 0);
  return crc_a ^ crc_b;
}

}  // namespace sr::spool
