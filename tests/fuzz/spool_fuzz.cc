// libFuzzer target: spool recovery (spool/partition.cc, record.cc) on a segment file with any
// bytes in it (a torn write, a bad sector, a disk that returned garbage). The input is the
// image of one segment file, written into a scratch state directory (tmpfs) and read by
// partition::list() (what sealrelay-spool and the sidecar's view use) and, when byte 0 asks,
// by partition::open() (start-up recovery: it repairs, i.e. cuts a torn tail). Byte 0 bit 0
// makes the harness fix the CRC of every record it walks over first, so the fuzzer gets past
// the checksum into the envelope, DONE and ATTEMPTS decoders.
// Invariants: nothing crashes or hangs; every message recovered from the segment lies in a
// MESSAGE record whose CRC32C (computed here, independently) is right, within the file;
// its queue id is 16 upper-case hex digits (it names a file under large/); the finished
// indices are sorted and name recipients; open() recovers what list() saw (less messages
// whose external body file is missing), and after its repair list() still sees the same; a
// sealed segment (no key is configured here) or a sealed record out of place is refused by
// both and left untouched.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "check.hh"
#include "sealrelay/spool/partition.hh"
#include "sealrelay/spool/record.hh"
#include "sealrelay/util/log.hh"

namespace {

namespace spool = sr::spool;

// CRC32C (Castagnoli, reflected), bit by bit: the reference the spool's table code must match.
uint32_t crc32c_ref(const uint8_t* p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
  }
  return ~c;
}

uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

const std::string& scratch() {
  // Never destroyed: the atexit cleanup below runs after static destructors registered later.
  static const std::string& dir = *new std::string([] {
    const char* base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
    std::string t = std::string(base) + "/sr-spool-fuzz.XXXXXX";
    CHECK(::mkdtemp(t.data()));
    std::atexit([] { std::filesystem::remove_all(scratch()); });
    return t;
  }());
  return dir;
}

// A message recovered from the image: is it inside a MESSAGE record with a right CRC?
bool in_valid_record(const std::vector<uint8_t>& img, uint64_t offset, uint64_t length) {
  if (offset > img.size() || length > img.size() - offset) return false;
  for (size_t p = 0; p + spool::header_size <= offset; ++p) {
    if (le32(&img[p]) != spool::record_magic || img[p + 4] != uint8_t(spool::record_type::message)) continue;
    uint64_t len = le32(&img[p + 8]);
    if (p + spool::header_size + len != offset + length || offset < p + spool::header_size) continue;
    if (crc32c_ref(&img[p + spool::header_size], len) == le32(&img[p + 12])) return true;
  }
  return false;
}

bool hex_id(const std::string& id) {
  if (id.size() != spool::queue_id_len) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) return false;
  return true;
}

// Walk the image record by record and set each plausible header's CRC to its payload's.
void fix_crcs(std::vector<uint8_t>& img) {
  size_t pos = 0;
  while (pos + spool::header_size <= img.size() && le32(&img[pos]) == spool::record_magic) {
    uint64_t len = le32(&img[pos + 8]);
    if (len > img.size() - pos - spool::header_size) break;
    uint32_t c = crc32c_ref(&img[pos + spool::header_size], len);
    for (int i = 0; i < 4; ++i) img[pos + 12 + i] = uint8_t(c >> (8 * i));
    pos += spool::header_size + len;
  }
}

struct seen {
  std::string id;
  uint64_t offset, length;
  size_t rcpts;
  std::vector<uint32_t> done;
  std::vector<uint32_t> attempts;
  std::vector<uint8_t> held;  // HOLD records (issue 13)
  bool operator==(const seen&) const = default;
};

std::vector<seen> check_set(const spool::recovered_set& set, const std::vector<uint8_t>& img,
                            const std::string& seg, bool external_too) {
  std::vector<seen> out;
  for (const auto& m : set.messages) {
    CHECK(hex_id(m.meta.queue_id));
    CHECK(m.meta.attempts.size() == m.meta.rcpts.size());
    CHECK(m.meta.held.empty() || m.meta.held.size() == m.meta.rcpts.size());
    for (uint8_t h : m.meta.held) CHECK(h <= 1);
    CHECK(m.done_rcpts.size() < m.meta.rcpts.size());   // recovered: at least one pending
    for (size_t i = 0; i < m.done_rcpts.size(); ++i) {
      CHECK(m.done_rcpts[i] < m.meta.rcpts.size());
      if (i) CHECK(m.done_rcpts[i - 1] < m.done_rcpts[i]);
    }
    if (m.meta.external_body) {
      CHECK(m.segment.find("/large/" + m.meta.queue_id) != std::string::npos);
      if (!external_too) continue;
    } else {
      CHECK(m.segment == seg);
      CHECK(in_valid_record(img, m.offset, m.length));
    }
    out.push_back({m.meta.queue_id, m.offset, m.length, m.meta.rcpts.size(), m.done_rcpts, m.meta.attempts, m.meta.held});
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1 || size > 64 * 1024) return -1;
  static bool quiet = [] {
    sr::set_log_level(sr::log_level::error);   // every bad record is logged: keep the run quiet
    return true;
  }();
  (void)quiet;
  std::vector<uint8_t> img(bytes + 1, bytes + size);
  if (bytes[0] & 1) fix_crcs(img);
  const bool repair = bytes[0] & 2;

  const std::string state = scratch() + "/state";
  std::filesystem::remove_all(state);
  const std::string dir = spool::partition::partition_dir(state, 0);
  std::filesystem::create_directories(dir);
  const std::string seg = dir + "/seg-0000000000000001.log";
  FILE* f = std::fopen(seg.c_str(), "wb");
  CHECK(f);
  CHECK(img.empty() || std::fwrite(img.data(), 1, img.size(), f) == img.size());
  CHECK(std::fclose(f) == 0);

  auto listed = spool::partition::list(state);
  if (!listed) {
    // Refused, never repaired: a segment sealed under a key that is not configured (no key
    // is, here), or a sealed or KEY record where none can be (spool encryption at rest).
    // open() refuses it too and leaves the segment exactly as it was.
    CHECK(listed.err().find("refusing to start") != std::string::npos);
    CHECK(!spool::partition::open(state, 0, nullptr));
    std::vector<uint8_t> after(img.size() + 1);
    FILE* g = std::fopen(seg.c_str(), "rb");
    CHECK(g);
    after.resize(std::fread(after.data(), 1, after.size(), g));
    std::fclose(g);
    CHECK(after == img);
    return 0;
  }
  std::vector<seen> before = check_set(*listed, img, seg, false);
  if (!repair) return 0;

  spool::recovered_set opened;
  {
    auto p = spool::partition::open(state, 0, &opened);
    CHECK(p);
  }
  // open() drops only messages whose external body file is missing (none exist here).
  CHECK(check_set(opened, img, seg, true) == before);
  auto again = spool::partition::list(state);
  CHECK(again);
  std::vector<uint8_t> cut;   // the segment after the repair: a prefix of the image
  if (FILE* g = std::fopen(seg.c_str(), "rb")) {
    cut.resize(img.size());
    cut.resize(std::fread(cut.data(), 1, cut.size(), g));
    std::fclose(g);
    CHECK(std::equal(cut.begin(), cut.end(), img.begin()));
  }
  // The segment may be gone (every message in it finished: reclaimed); then nothing was pending.
  if (cut.empty() && !img.empty()) CHECK(before.empty());
  CHECK(check_set(*again, cut.empty() ? img : cut, seg, false) == (cut.empty() ? std::vector<seen>{} : before));
  return 0;
}
