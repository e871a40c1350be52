// Spool keys and record sealing (keyring.hh): key ids, KEY records, seal/open in place
// through tls::gcm_cipher, and a blocking record read for readers off the shard.
#include "sealrelay/spool/keyring.hh"

#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

#include "crc32c.hh"

namespace sr::spool {
namespace {

// The nonce of a record: the segment's salt, then its counter (little-endian).
std::array<uint8_t, tls::seal_nonce_size> nonce_of(const std::array<uint8_t, segment_salt_size>& salt,
                                                  uint32_t counter) {
  std::array<uint8_t, tls::seal_nonce_size> n{};
  std::memcpy(n.data(), salt.data(), salt.size());
  for (int i = 0; i < 4; ++i) n[segment_salt_size + i] = uint8_t(counter >> (8 * i));
  return n;
}

uint32_t load_u32(const std::byte* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

bool read_full(int fd, void* buf, size_t len, uint64_t off) {
  auto p = static_cast<char*>(buf);
  while (len) {
    ssize_t n = ::pread(fd, p, len, off_t(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= size_t(n);
    off += uint64_t(n);
  }
  return true;
}

}  // namespace

keyring::keyring(const tls::seal_key* current, bool seal, std::span<const tls::seal_key> previous) {
  auto add = [&](const tls::seal_key& k) {
    key_id id = id_of(k);
    if (!find(id)) _keys.push_back({id, k});
  };
  if (current) {
    add(*current);
    if (seal) _seal = 0;
  }
  for (const auto& k : previous) add(k);
}

const keyring::entry* keyring::find(const key_id& id) const {
  for (const auto& e : _keys)
    if (e.id == id) return &e;
  return nullptr;
}

key_id keyring::id_of(const tls::seal_key& key) {
  tls::sha256_digest d = tls::sha256(key);
  key_id id;
  std::memcpy(id.data(), d.data(), id.size());
  return id;
}

std::string to_hex(const key_id& id) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : id) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

segment_seal classify_segment(std::span<const std::byte> first, const keyring* keys) {
  segment_seal s;
  if (first.size() < key_record_size) return s;
  record_header h = decode_header(first.data());
  if (!header_plausible(h) || h.type != record_type::key || h.payload_len != key_record_payload)
    return s;
  std::span<const std::byte> payload = first.subspan(header_size, key_record_payload);
  if (crc32c(payload.data(), payload.size()) != h.crc) return s;
  s.sealed = true;
  s.framed = h.flags & record_flag_external_body;
  std::memcpy(s.id.data(), payload.data(), key_id_size);
  std::memcpy(s.salt.data(), payload.data() + key_id_size, segment_salt_size);
  s.key = keys ? keys->find(s.id) : nullptr;
  return s;
}

bool record_crypt::begin_segment(std::byte* out, bool framed) {
  const keyring::entry* k = _keys ? _keys->sealing_key() : nullptr;
  if (!k || !tls::random_bytes(_salt)) return false;
  _counter = 0;
  std::byte* p = out + header_size;
  std::memcpy(p, k->id.data(), key_id_size);
  std::memcpy(p + key_id_size, _salt.data(), segment_salt_size);
  record_header h;
  h.type = record_type::key;
  if (framed) h.flags = record_flag_external_body;
  h.payload_len = uint32_t(key_record_payload);
  h.crc = crc32c(p, key_record_payload);
  encode_header(h, out);
  return true;
}

tls::gcm_cipher* record_crypt::cipher_for(const keyring::entry& k) {
  for (auto& s : _ciphers)
    if (s.id == k.id) return &s.cipher;
  auto c = tls::gcm_cipher::make(k.key);
  if (!c) return nullptr;
  _ciphers.push_back({k.id, std::move(c.value())});
  return &_ciphers.back().cipher;
}

bool record_crypt::seal(std::byte* rec, record_header& h) {
  if (!counter_left(1)) return false;
  return seal_at(rec, h, uint32_t(_counter++));
}

bool record_crypt::seal_frame(std::byte* data, size_t n, uint64_t index) {
  const keyring::entry* k = _keys ? _keys->sealing_key() : nullptr;
  tls::gcm_cipher* c = k ? cipher_for(*k) : nullptr;
  if (!c || index + 1 > UINT32_MAX) return false;
  auto nonce = nonce_of(_salt, uint32_t(index + 1));
  auto* text = reinterpret_cast<uint8_t*>(data);
  return c->encrypt({text, n}, nonce, {}, std::span<uint8_t, seal_tag_size>(text + n, seal_tag_size));
}

bool record_crypt::open_frame(const segment_seal& seg, std::byte* data, size_t n, uint64_t index) {
  tls::gcm_cipher* c = seg.sealed && seg.key ? cipher_for(*seg.key) : nullptr;
  if (!c || index + 1 > UINT32_MAX) return false;
  auto nonce = nonce_of(seg.salt, uint32_t(index + 1));
  auto* text = reinterpret_cast<uint8_t*>(data);
  return c->decrypt({text, n}, nonce, {}, std::span<const uint8_t, seal_tag_size>(text + n, seal_tag_size));
}

bool record_crypt::seal_at(std::byte* rec, record_header& h, uint32_t counter) {
  const keyring::entry* k = _keys ? _keys->sealing_key() : nullptr;
  if (!k || h.payload_len < sealed_overhead) return false;
  tls::gcm_cipher* c = cipher_for(*k);
  if (!c) return false;
  std::byte* payload = rec + header_size;
  for (int i = 0; i < 4; ++i) payload[i] = std::byte(counter >> (8 * i));
  h.flags |= record_flag_sealed;
  h.crc = 0;
  encode_header(h, rec);  // the associated data: its first 12 bytes (all but the CRC)
  auto nonce = nonce_of(_salt, counter);
  const size_t n = h.payload_len - sealed_overhead;
  auto* text = reinterpret_cast<uint8_t*>(payload + seal_counter_size);
  if (!c->encrypt({text, n}, nonce, {reinterpret_cast<const uint8_t*>(rec), 12},
                  std::span<uint8_t, seal_tag_size>(text + n, seal_tag_size)))
    return false;
  h.crc = crc32c(payload, h.payload_len);
  encode_header(h, rec);
  return true;
}

bool record_crypt::open(const segment_seal& seg, const record_header& h, std::span<std::byte> payload,
                        std::span<std::byte>& plain) {
  if (!seg.sealed || !seg.key || !(h.flags & record_flag_sealed) || payload.size() != h.payload_len ||
      payload.size() < sealed_overhead)
    return false;
  tls::gcm_cipher* c = cipher_for(*seg.key);
  if (!c) return false;
  record_header ad = h;
  ad.crc = 0;
  std::byte head[header_size];
  encode_header(ad, head);
  const size_t n = payload.size() - sealed_overhead;
  auto nonce = nonce_of(seg.salt, load_u32(payload.data()));
  auto* text = reinterpret_cast<uint8_t*>(payload.data() + seal_counter_size);
  if (!c->decrypt({text, n}, nonce, {reinterpret_cast<const uint8_t*>(head), 12},
                  std::span<const uint8_t, seal_tag_size>(text + n, seal_tag_size)))
    return false;
  plain = payload.subspan(seal_counter_size, n);
  return true;
}

sr::result<plain_record> read_record_at(int fd, uint64_t offset, record_crypt& crypt,
                                        uint64_t max_payload) {
  std::byte first[key_record_size];
  segment_seal seg;
  if (read_full(fd, first, sizeof first, 0)) seg = classify_segment(first, crypt.keys());
  if (seg.sealed && !seg.key)
    return sr::error{"the segment is sealed with key id " + to_hex(seg.id) +
                     ", which is not configured (spool.key_file / spool.previous_keys)"};
  plain_record r;
  std::byte head[header_size];
  if (!read_full(fd, head, sizeof head, offset)) return sr::error{"cannot read the record header"};
  r.h = decode_header(head);
  if (!header_plausible(r.h)) return sr::error{"no valid record header at that offset"};
  if (r.h.payload_len > max_payload) return sr::error{"record larger than allowed"};
  if (bool(r.h.flags & record_flag_sealed) != seg.sealed)
    return sr::error{seg.sealed ? "plaintext record in a sealed segment" : "sealed record in a plaintext segment"};
  r.payload.resize(r.h.payload_len);
  if (!read_full(fd, r.payload.data(), r.payload.size(), offset + header_size))
    return sr::error{"cannot read the record"};
  if (crc32c(r.payload.data(), r.payload.size()) != r.h.crc) return sr::error{"record checksum mismatch"};
  if (seg.sealed) {
    std::span<std::byte> plain;
    if (!crypt.open(seg, r.h, r.payload, plain)) return sr::error{"record failed authentication"};
    r.payload.erase(r.payload.begin() + ptrdiff_t(seal_counter_size + plain.size()), r.payload.end());
    r.payload.erase(r.payload.begin(), r.payload.begin() + ptrdiff_t(seal_counter_size));
  }
  return r;
}

}  // namespace sr::spool

namespace sr::spool {

bool open_framed_head(const segment_seal& seg, record_crypt& crypt, std::span<std::byte> rec,
                      framed_head& out) {
  if (rec.size() < header_size) return false;
  record_header h = decode_header(rec.data());
  if (!header_plausible(h) || h.type != record_type::message ||
      h.flags != (record_flag_sealed | record_flag_external_body) || rec.size() - header_size != h.payload_len)
    return false;
  std::span<std::byte> plain;
  if (!crypt.open(seg, h, rec.subspan(header_size), plain)) return false;
  size_t env_len = 0;
  if (!decode_envelope(plain, out.meta, env_len, h.version)) return false;
  if (plain.size() - env_len < external_ref_size) return false;
  auto rest = plain.subspan(env_len);
  if (!decode_external_ref(rest.first(external_ref_size), out.body_start, out.body_len)) return false;
  rest = rest.subspan(external_ref_size);
  out.prefix.assign(reinterpret_cast<const char*>(rest.data()), rest.size());
  out.version = h.version;
  out.meta.external_body = true;
  out.meta.body_offset = 0;
  out.meta.body_length = out.length();
  return out.body_len / body_frame_size < UINT32_MAX - 1;
}

frame_span frames_for(const framed_head& head, uint64_t from, uint64_t n) {
  frame_span s;
  s.first = from / body_frame_size;
  s.last = (from + n - 1) / body_frame_size;
  s.at = head.body_start + s.first * body_frame_stored;
  const uint64_t last_plain = std::min<uint64_t>(body_frame_size, head.body_len - s.last * body_frame_size);
  s.len = (s.last - s.first) * body_frame_stored + last_plain + seal_tag_size;
  return s;
}

bool open_frames(const segment_seal& seg, record_crypt& crypt, const framed_head& head,
                 const frame_span& span, std::byte* buf, uint64_t from, uint64_t n, char* dst) {
  for (uint64_t k = span.first; k <= span.last; ++k) {
    std::byte* f = buf + (k - span.first) * body_frame_stored;
    const uint64_t plain = std::min<uint64_t>(body_frame_size, head.body_len - k * body_frame_size);
    if (!crypt.open_frame(seg, f, plain, k)) return false;
    // The part of this frame inside [from, from + n).
    const uint64_t f0 = k * body_frame_size, f1 = f0 + plain;
    const uint64_t a = std::max(from, f0), b = std::min(from + n, f1);
    if (a < b) std::memcpy(dst + (a - from), f + (a - f0), b - a);
  }
  return true;
}

sr::result<framed_head> read_framed_head(int fd, const segment_seal& seg, record_crypt& crypt) {
  std::byte head[header_size];
  if (!read_full(fd, head, sizeof head, key_record_size)) return sr::error{"cannot read the body file's head"};
  record_header h = decode_header(head);
  if (!header_plausible(h) || h.payload_len > (64u << 20)) return sr::error{"no head record in the body file"};
  std::vector<std::byte> rec(header_size + h.payload_len);
  std::memcpy(rec.data(), head, header_size);
  if (!read_full(fd, rec.data() + header_size, h.payload_len, key_record_size + header_size))
    return sr::error{"cannot read the body file's head"};
  framed_head out;
  if (!open_framed_head(seg, crypt, rec, out)) return sr::error{"the body file's head failed authentication"};
  return out;
}

sr::result<std::string> read_framed_message(int fd, const segment_seal& seg, record_crypt& crypt,
                                            const framed_head& head) {
  std::string msg(head.length(), '\0');
  std::memcpy(msg.data(), head.prefix.data(), head.prefix.size());
  std::vector<std::byte> buf;
  for (uint64_t from = 0; from < head.body_len;) {
    const uint64_t n = std::min<uint64_t>(head.body_len - from, 64 * body_frame_size);
    frame_span span = frames_for(head, from, n);
    buf.resize(span.len);
    if (!read_full(fd, buf.data(), buf.size(), span.at)) return sr::error{"the body file is short"};
    if (!open_frames(seg, crypt, head, span, buf.data(), from, n, msg.data() + head.prefix.size() + from))
      return sr::error{"a frame of the body file failed authentication"};
    from += n;
  }
  return msg;
}

}  // namespace sr::spool
