// A spool MESSAGE record written with the spool's own encoders (record.hh) into a segment
// file, as the engine writes it: for tests of readers outside the spool (the fallback
// sidecar is pointed at (segment, offset, length) and reads the record there). Header-only.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/spool/record.hh"

namespace sr::test {

// Where a record landed in its segment.
struct record_location {
  uint64_t offset = 0;
  uint64_t length = 0;  // header + payload
};

// Return the bytes of a MESSAGE record (header + envelope + message).
inline std::vector<std::byte> message_record(const spool::message_meta& meta, std::string_view message) {
  std::vector<std::byte> payload;
  spool::append_envelope(payload, meta);
  for (char c : message) payload.push_back(std::byte(c));
  spool::record_header h;
  h.type = spool::record_type::message;
  h.payload_len = uint32_t(payload.size());
  h.crc = spool::payload_crc(payload);
  std::vector<std::byte> rec(spool::header_size);
  spool::encode_header(h, rec.data());
  rec.insert(rec.end(), payload.begin(), payload.end());
  return rec;
}

// Append `rec` to the file `segment` (created when absent); its location, or length 0 when
// the write failed.
inline record_location append_record(const std::string& segment, const std::vector<std::byte>& rec) {
  record_location loc;
  int fd = ::open(segment.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return loc;
  off_t end = ::lseek(fd, 0, SEEK_END);
  bool ok = end >= 0 && ::write(fd, rec.data(), rec.size()) == ssize_t(rec.size());
  ::close(fd);
  if (ok) loc = {uint64_t(end), rec.size()};
  return loc;
}

}  // namespace sr::test
