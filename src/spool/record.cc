// Encoding and bounds-checked decoding of spool records (format in record.hh).
#include "sealrelay/spool/record.hh"

#include <cstdint>
#include <cstring>

#include "crc32c.hh"

namespace sr::spool {
namespace {

constexpr uint8_t flag_8bitmime = 1;
constexpr uint8_t flag_tls = 2;
constexpr uint8_t flag_requiretls = 4;        // v2
constexpr uint8_t flag_tls_required_no = 8;   // v2
constexpr uint8_t v1_flags = flag_8bitmime | flag_tls;
constexpr uint8_t v2_flags = v1_flags | flag_requiretls | flag_tls_required_no;
constexpr uint8_t done_all = 0;
constexpr uint8_t done_list = 1;

void put_u8(std::vector<std::byte>& o, uint8_t v) { o.push_back(std::byte(v)); }
void put_u16(std::vector<std::byte>& o, uint16_t v) {
  put_u8(o, v & 0xFF);
  put_u8(o, v >> 8);
}
void put_u32(std::vector<std::byte>& o, uint32_t v) {
  for (int i = 0; i < 4; ++i) put_u8(o, (v >> (8 * i)) & 0xFF);
}
void put_u64(std::vector<std::byte>& o, uint64_t v) {
  for (int i = 0; i < 8; ++i) put_u8(o, (v >> (8 * i)) & 0xFF);
}
void put_bytes(std::vector<std::byte>& o, std::string_view s) {
  auto p = reinterpret_cast<const std::byte*>(s.data());
  o.insert(o.end(), p, p + s.size());
}

uint64_t load_le(const std::byte* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | uint64_t(p[i]);
  return v;
}

// Bounds-checked cursor over a payload.
struct reader {
  std::span<const std::byte> in;
  size_t pos = 0;
  bool ok = true;

  uint64_t get(int n) {
    if (!ok || in.size() - pos < size_t(n)) {
      ok = false;
      return 0;
    }
    uint64_t v = load_le(in.data() + pos, n);
    pos += n;
    return v;
  }
  std::string str(size_t n) {
    if (!ok || in.size() - pos < n) {
      ok = false;
      return {};
    }
    std::string s(reinterpret_cast<const char*>(in.data() + pos), n);
    pos += n;
    return s;
  }
};

// A queue id is what partition::next_queue_id() writes: 16 upper-case hex digits. Checked
// on read, not only its length: the id names the external body file (large/<id>), so a
// record with a valid CRC but an id like "../../../etc/x" would point recovery, delivery
// and the sidecar at any file (found by tests/fuzz/spool_fuzz).
bool queue_id_ok(std::string_view id) {
  if (id.size() != queue_id_len) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) return false;
  return true;
}

}  // namespace

void encode_header(const record_header& h, std::byte* out) {
  auto put = [&](size_t off, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out[off + i] = std::byte((v >> (8 * i)) & 0xFF);
  };
  put(0, h.magic, 4);
  put(4, uint8_t(h.type), 1);
  put(5, h.flags, 1);
  put(6, h.version, 1);
  put(7, h.reserved, 1);
  put(8, h.payload_len, 4);
  put(12, h.crc, 4);
}

record_header decode_header(const std::byte* in) {
  record_header h;
  h.magic = uint32_t(load_le(in, 4));
  h.type = record_type(uint8_t(in[4]));
  h.flags = uint8_t(in[5]);
  h.version = uint8_t(in[6]);
  h.reserved = uint8_t(in[7]);
  h.payload_len = uint32_t(load_le(in + 8, 4));
  h.crc = uint32_t(load_le(in + 12, 4));
  return h;
}

bool header_plausible(const record_header& h) {
  if (h.magic != record_magic || h.reserved != 0) return false;
  if (h.version == format_v1)
    return h.flags == 0 && (h.type == record_type::message || h.type == record_type::done);
  if (h.version != format_v2) return false;
  if (h.type == record_type::key) return h.flags == 0 || h.flags == record_flag_external_body;
  if (h.flags & ~(record_flag_external_body | record_flag_sealed)) return false;
  if ((h.flags & record_flag_external_body) && h.type != record_type::message) return false;
  return h.type == record_type::message || h.type == record_type::done ||
         h.type == record_type::attempts || h.type == record_type::hold;
}

uint32_t payload_crc(std::span<const std::byte> payload) {
  return crc32c(payload.data(), payload.size());
}

bool payload_crc_ok(const record_header& h, std::span<const std::byte> payload) {
  return payload.size() == h.payload_len && payload_crc(payload) == h.crc;
}

bool envelope_fits(const message_meta& meta) {
  if (!queue_id_ok(meta.queue_id) || meta.mail_from.size() > max_address_len ||
      meta.auth_user.size() > max_address_len || meta.msg_id.size() > max_address_len)
    return false;
  if (meta.rcpts.size() > 0xFFFFFFFFu) return false;
  for (const auto& r : meta.rcpts)
    if (r.size() > max_address_len) return false;
  return true;
}

void append_envelope(std::vector<std::byte>& out, const message_meta& meta, uint8_t version) {
  const bool v2 = version != format_v1;
  put_u8(out, uint8_t(meta.queue_id.size()));
  put_bytes(out, meta.queue_id);
  put_u64(out, meta.received_ms);
  uint8_t flags = (meta.body_8bitmime ? flag_8bitmime : 0) | (meta.tls ? flag_tls : 0);
  if (v2) flags |= (meta.requiretls ? flag_requiretls : 0) | (meta.tls_required_no ? flag_tls_required_no : 0);
  put_u8(out, flags);
  if (v2) put_u8(out, uint8_t(meta.kind));
  put_u16(out, uint16_t(meta.mail_from.size()));
  put_bytes(out, meta.mail_from);
  if (v2) {
    put_u16(out, uint16_t(meta.auth_user.size()));
    put_bytes(out, meta.auth_user);
    put_u16(out, uint16_t(meta.msg_id.size()));
    put_bytes(out, meta.msg_id);
  }
  put_u32(out, uint32_t(meta.rcpts.size()));
  for (const auto& r : meta.rcpts) {
    put_u16(out, uint16_t(r.size()));
    put_bytes(out, r);
  }
}

bool decode_envelope(std::span<const std::byte> payload, message_meta& meta, size_t& envelope_len,
                     uint8_t version) {
  const bool v2 = version != format_v1;
  reader r{payload};
  meta.queue_id = r.str(r.get(1));
  meta.received_ms = r.get(8);
  uint8_t flags = uint8_t(r.get(1));
  meta.body_8bitmime = flags & flag_8bitmime;
  meta.tls = flags & flag_tls;
  meta.requiretls = flags & flag_requiretls;
  meta.tls_required_no = flags & flag_tls_required_no;
  uint8_t kind = v2 ? uint8_t(r.get(1)) : 0;
  if (kind > uint8_t(message_kind::smime)) return false;
  meta.kind = message_kind(kind);
  meta.mail_from = r.str(r.get(2));
  meta.auth_user = v2 ? r.str(r.get(2)) : std::string();
  meta.msg_id = v2 ? r.str(r.get(2)) : std::string();
  meta.attempts.clear();
  uint64_t n = r.get(4);
  // Each recipient takes at least 2 bytes: refuse counts the payload cannot hold
  // before reserving memory for them.
  if (!r.ok || n > (payload.size() - r.pos) / 2) return false;
  meta.rcpts.clear();
  meta.rcpts.reserve(n);
  for (uint64_t i = 0; i < n && r.ok; ++i) meta.rcpts.push_back(r.str(r.get(2)));
  if (!r.ok || !queue_id_ok(meta.queue_id) || (flags & ~(v2 ? v2_flags : v1_flags)))
    return false;
  envelope_len = r.pos;
  return true;
}

bool envelope_size(std::span<const std::byte> payload, uint8_t version, size_t& envelope_len) {
  const bool v2 = version != format_v1;
  reader r{payload};
  auto skip = [&](int len_bytes) {
    uint64_t n = r.get(len_bytes);
    if (!r.ok || payload.size() - r.pos < n) {
      r.ok = false;
      return;
    }
    r.pos += n;
  };
  skip(1);     // queue id
  r.get(8);    // received
  r.get(1);    // flags
  if (v2) r.get(1);  // kind
  skip(2);     // mail from
  if (v2) {
    skip(2);   // auth user
    skip(2);   // message id
  }
  uint64_t n = r.get(4);
  if (!r.ok || n > (payload.size() - r.pos) / 2) return false;
  for (uint64_t i = 0; i < n && r.ok; ++i) skip(2);
  if (!r.ok) return false;
  envelope_len = r.pos;
  return true;
}

void append_external_ref(std::vector<std::byte>& out, uint64_t offset, uint64_t length) {
  put_u64(out, offset);
  put_u64(out, length);
}

bool decode_external_ref(std::span<const std::byte> rest, uint64_t& offset, uint64_t& length) {
  if (rest.size() != external_ref_size) return false;
  offset = load_le(rest.data(), 8);
  length = load_le(rest.data() + 8, 8);
  return offset <= UINT64_MAX - length;
}

void append_done(std::vector<std::byte>& out, std::string_view queue_id,
                 std::span<const uint32_t> indices) {
  put_u8(out, uint8_t(queue_id.size()));
  put_bytes(out, queue_id);
  put_u8(out, indices.empty() ? done_all : done_list);
  put_u32(out, uint32_t(indices.size()));
  for (uint32_t i : indices) put_u32(out, i);
}

bool decode_done(std::span<const std::byte> payload, done_record& out) {
  reader r{payload};
  out.queue_id = r.str(r.get(1));
  uint8_t kind = uint8_t(r.get(1));
  uint64_t n = r.get(4);
  if (!r.ok || !queue_id_ok(out.queue_id) || (kind != done_all && kind != done_list))
    return false;
  if (n != (payload.size() - r.pos) / 4 || (payload.size() - r.pos) % 4) return false;
  out.all = kind == done_all;
  out.indices.clear();
  out.indices.reserve(n);
  for (uint64_t i = 0; i < n; ++i) out.indices.push_back(uint32_t(r.get(4)));
  if (out.all != out.indices.empty()) return false;
  return r.ok && r.pos == payload.size();
}

void append_attempts(std::vector<std::byte>& out, std::string_view queue_id,
                     std::span<const std::pair<uint32_t, uint32_t>> counts) {
  put_u8(out, uint8_t(queue_id.size()));
  put_bytes(out, queue_id);
  put_u32(out, uint32_t(counts.size()));
  for (auto [index, n] : counts) {
    put_u32(out, index);
    put_u32(out, n);
  }
}

bool decode_attempts(std::span<const std::byte> payload, attempts_record& out) {
  reader r{payload};
  out.queue_id = r.str(r.get(1));
  uint64_t n = r.get(4);
  if (!r.ok || !queue_id_ok(out.queue_id)) return false;
  if ((payload.size() - r.pos) % 8 || n != (payload.size() - r.pos) / 8) return false;
  out.counts.clear();
  out.counts.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    uint32_t index = uint32_t(r.get(4));
    out.counts.emplace_back(index, uint32_t(r.get(4)));
  }
  return r.ok && r.pos == payload.size();
}

}  // namespace sr::spool
