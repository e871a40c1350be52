// Escrow deposits, openings and codes (escrow.hh). The key never touches the store: it is
// derived from the link secret each time the link is opened and dropped afterwards.
#include "sealrelay/fallback/escrow.hh"

#include "sealrelay/util/text.hh"

#include <algorithm>
#include <array>

namespace sr::fallback::escrow {

namespace {

constexpr std::string_view key_info = "sealrelay escrow v1";
constexpr std::size_t salt_bytes = 16;

std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Whether `s` has the length and alphabet of `bytes` random bytes in base64url.
bool well_formed(std::string_view s, std::size_t bytes) {
  if (s.size() != (bytes * 4 + 2) / 3) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
  });
}

std::string_view strip_angles(std::string_view msg_id) {
  if (msg_id.size() >= 2 && msg_id.front() == '<' && msg_id.back() == '>')
    return msg_id.substr(1, msg_id.size() - 2);
  return msg_id;
}

// What the seal authenticates besides the message: a sealed blob moved to another record,
// or a record whose recipient, sender or Message-ID was edited, no longer opens.
std::vector<uint8_t> associated_data(const escrow_record& r) {
  std::vector<uint8_t> ad(key_info.begin(), key_info.end());
  ad.push_back(0);
  ad.insert(ad.end(), r.link.begin(), r.link.end());
  for (std::string_view field : {std::string_view(r.recipient), std::string_view(r.sender),
                                 std::string_view(r.msg_id)}) {
    ad.push_back(0);
    ad.insert(ad.end(), field.begin(), field.end());
  }
  return ad;
}

// The secret's text is the HKDF input: 43 characters carry its 256 random bits.
result<tls::seal_key> key_for(std::string_view secret, const escrow_record& r) {
  return tls::derive_seal_key(as_bytes(secret), r.salt, as_bytes(key_info));
}

code_hash hash_code(const link_hash& link, std::string_view code) {
  std::vector<uint8_t> in(link.begin(), link.end());
  in.insert(in.end(), code.begin(), code.end());
  return tls::sha256(in);
}

// Six uniformly drawn digits (rejection sampling: no modulo bias).
result<std::string> draw_code() {
  constexpr uint32_t range = 1000000;
  constexpr uint32_t limit = UINT32_MAX - UINT32_MAX % range;
  for (int attempt = 0; attempt < 64; ++attempt) {
    uint8_t b[4];
    if (auto st = tls::random_bytes(b); !st) return error{st.err()};
    const uint32_t v = uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3];
    if (v >= limit) continue;
    std::string code = std::to_string(v % range);
    return std::string(6 - code.size(), '0') + code;
  }
  return error{"escrow: random source keeps answering out of range"};
}

open_status status_of(access a) {
  switch (a) {
    case access::ok: return open_status::ok;
    case access::unknown: return open_status::unknown;
    case access::expired: return open_status::expired;
    case access::retracted: return open_status::retracted;
    case access::locked: return open_status::locked;
  }
  return open_status::unknown;
}

}  // namespace

std::string_view to_string(open_status s) {
  switch (s) {
    case open_status::ok: return "ok";
    case open_status::unknown: return "unknown";
    case open_status::expired: return "expired";
    case open_status::retracted: return "retracted";
    case open_status::locked: return "locked";
    case open_status::wrong_secret: return "wrong-secret";
  }
  return "?";
}

link_hash hash_link_id(std::string_view id) { return tls::sha256(as_bytes(id)); }

result<link> deposit(escrow_store& store, std::span<const uint8_t> message,
                     std::string_view msg_id, std::string_view sender,
                     std::string_view recipient, seconds_t now, std::chrono::seconds expiry) {
  std::array<uint8_t, id_bytes> id_raw;
  std::array<uint8_t, secret_bytes> secret_raw;
  escrow_record r;
  r.salt.resize(salt_bytes);
  for (std::span<uint8_t> s : {std::span<uint8_t>(id_raw), std::span<uint8_t>(secret_raw),
                               std::span<uint8_t>(r.salt)})
    if (auto st = tls::random_bytes(s); !st) return error{st.err()};
  link out;
  append_base64(out.id, std::string_view(reinterpret_cast<const char*>(id_raw.data()), id_raw.size()),
                base64_alphabet::url);
  append_base64(out.secret, std::string_view(reinterpret_cast<const char*>(secret_raw.data()), secret_raw.size()),
                base64_alphabet::url);
  r.link = hash_link_id(out.id);
  r.msg_id = strip_angles(msg_id);
  r.sender = sender;
  r.recipient = recipient;
  r.created = now;
  r.expires = now + expiry;
  auto key = key_for(out.secret, r);
  if (!key) return error{key.err()};
  auto sealed = tls::seal(*key, message, associated_data(r));
  key->fill(0);
  if (!sealed) return error{sealed.err()};
  r.sealed = std::move(*sealed);
  if (auto st = store.put(r); !st) return error{st.err()};
  return out;
}

namespace {

result<opened> open_link(escrow_store& store, std::string_view id, std::string_view secret,
                         seconds_t now, bool count_view) {
  opened out;
  if (!well_formed(id, id_bytes)) return out;  // unknown
  auto found = store.find_by_link_hash(hash_link_id(id));
  if (!found) return error{found.err()};
  if (!*found) return out;
  const escrow_record& r = **found;
  access a = access_of(r, now);
  // A locked record keeps its bytes: it says "locked" only to whoever holds its secret, so a
  // guessed secret learns nothing (expired and retracted ones look like a wrong secret anyway).
  if (a != access::ok && !(a == access::locked && !r.sealed.empty())) {
    out.status = status_of(a);
    return out;
  }
  out.status = open_status::wrong_secret;
  if (!well_formed(secret, secret_bytes)) return out;
  auto key = key_for(secret, r);
  if (!key) return error{key.err()};
  auto message = tls::open(*key, r.sealed, associated_data(r));
  key->fill(0);
  if (!message) return out;
  if (a != access::ok) {
    out.status = status_of(a);  // locked
    return out;
  }
  if (!count_view) {
    out.status = open_status::ok;
    out.message = std::move(*message);
    return out;
  }
  // Count the view only once it succeeded; a record retracted meanwhile refuses it.
  auto viewed = store.mark_viewed(r.link, now);
  if (!viewed) return error{viewed.err()};
  if (viewed->why != access::ok) {
    out.status = status_of(viewed->why);
    return out;
  }
  out.status = open_status::ok;
  out.message = std::move(*message);
  out.views = viewed->views;
  return out;
}

}  // namespace

result<opened> open(escrow_store& store, std::string_view id, std::string_view secret,
                    seconds_t now) {
  return open_link(store, id, secret, now, true);
}

result<opened> peek(escrow_store& store, std::string_view id, std::string_view secret,
                    seconds_t now) {
  return open_link(store, id, secret, now, false);
}

result<issued_code> issue_code(escrow_store& store, std::string_view id, seconds_t now) {
  issued_code out;
  if (!well_formed(id, id_bytes)) return out;
  const link_hash link = hash_link_id(id);
  auto found = store.find_by_link_hash(link);
  if (!found) return error{found.err()};
  if (!*found) return out;
  auto code = draw_code();
  if (!code) return error{code.err()};
  auto recorded = store.record_code(link, hash_code(link, *code), now);
  if (!recorded) return error{recorded.err()};
  out.why = *recorded;
  if (out.why != access::ok) return out;
  out.code = std::move(*code);
  out.recipient = (*found)->recipient;
  return out;
}

result<code_try> check_code(escrow_store& store, std::string_view id, std::string_view code,
                            seconds_t now) {
  if (!well_formed(id, id_bytes)) {
    code_try t;
    t.refused = access::unknown;
    return t;
  }
  const link_hash link = hash_link_id(id);
  return store.try_code(link, hash_code(link, code), now);
}

result<std::vector<escrow_event>> retract(escrow_store& store, std::string_view msg_id) {
  return store.retract_by_msg_id(strip_angles(msg_id));
}

}  // namespace sr::fallback::escrow
