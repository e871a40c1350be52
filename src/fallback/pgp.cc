// PGP/MIME through GPGME: key lookup in pgp_home and RFC 3156 encryption (DESIGN §7).
// Synchronous by contract (see pgp.hh): each call runs gpg and waits. The outer message
// keeps only the routing and threading identity (From, To, Cc, Date, Message-ID) and a
// `Subject: ...`; everything else, the subject included, travels encrypted.
#include "sealrelay/fallback/pgp.hh"

#include <gpgme.h>
#include <sys/random.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <mutex>
#include <vector>

#include "sealrelay/util/text.hh"

namespace sr::fallback {
namespace {

struct ctx_free {
  void operator()(gpgme_ctx_t c) const { gpgme_release(c); }
};
struct key_free {
  void operator()(gpgme_key_t k) const { gpgme_key_unref(k); }
};
struct data_free {
  void operator()(gpgme_data_t d) const { gpgme_data_release(d); }
};
using ctx_ptr = std::unique_ptr<gpgme_context, ctx_free>;
using key_ptr = std::unique_ptr<_gpgme_key, key_free>;
using data_ptr = std::unique_ptr<gpgme_data, data_free>;

std::string gpg_error_text(const char* what, gpgme_error_t e) {
  return std::string(what) + ": " + gpgme_strerror(e);
}


// An addr-spec we are willing to put into a gpg pattern: local@domain, both non-empty,
// no whitespace, controls or angle brackets (a pattern must not change meaning).
bool plain_address(std::string_view a) {
  size_t at = a.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == a.size()) return false;
  for (char c : a) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '<' || c == '>') return false;
  }
  return true;
}

// Mailbox compared exactly, domain in any case (RFC 5321 §2.4).
bool same_address(std::string_view uid_addr, std::string_view want) {
  size_t a = uid_addr.rfind('@'), b = want.rfind('@');
  if (a == std::string_view::npos || b == std::string_view::npos) return false;
  return uid_addr.substr(0, a) == want.substr(0, b) && iequals(uid_addr.substr(a), want.substr(b));
}

bool expired_at(long expires, std::time_t now) { return expires > 0 && expires <= now; }

// The newest usable encryption subkey of `k`, or null with the reason in `why`.
gpgme_subkey_t usable_subkey(gpgme_key_t k, std::time_t now, std::string& why) {
  gpgme_subkey_t best = nullptr;
  bool any_encrypt = false;
  for (gpgme_subkey_t s = k->subkeys; s; s = s->next) {
    if (!s->can_encrypt) continue;
    any_encrypt = true;
    if (s->revoked || s->expired || s->disabled || s->invalid || expired_at(s->expires, now))
      continue;
    if (!best || s->timestamp > best->timestamp) best = s;
  }
  if (!best) {
    why = any_encrypt ? "its encryption subkeys are revoked or expired" : "it cannot encrypt";
  } else if (!k->can_encrypt) {  // gpg's verdict on the whole key, for what we did not see
    why = "it cannot encrypt";
    best = nullptr;
  }
  return best;
}

// Why `k` (with user id `u`) may not be used, or "" when it may; usable_subkey() then
// checks the encryption capability.
std::string refusal(gpgme_key_t k, gpgme_user_id_t u, pgp_trust trust, std::time_t now) {
  if (k->revoked) return "revoked";
  if (k->expired || (k->subkeys && expired_at(k->subkeys->expires, now))) return "expired";
  if (k->disabled) return "disabled";
  if (k->invalid) return "invalid";
  if (u->revoked) return "its user id is revoked";
  if (u->invalid) return "its user id is invalid";
  if (trust == pgp_trust::gnupg && u->validity < GPGME_VALIDITY_FULL) return "its user id is not valid in pgp_home";
  return {};
}

ctx_ptr new_context(const std::string& home, std::string& err) {
  gpgme_ctx_t raw = nullptr;
  if (gpgme_error_t e = gpgme_new(&raw)) {
    err = gpg_error_text("gpgme_new", e);
    return nullptr;
  }
  ctx_ptr c(raw);
  if (gpgme_error_t e = gpgme_set_protocol(raw, GPGME_PROTOCOL_OpenPGP)) {
    err = gpg_error_text("OpenPGP protocol", e);
    return nullptr;
  }
  if (gpgme_error_t e = gpgme_ctx_set_engine_info(raw, GPGME_PROTOCOL_OpenPGP, nullptr, home.c_str())) {
    err = gpg_error_text("pgp_home", e);
    return nullptr;
  }
  gpgme_set_armor(raw, 1);
  gpgme_set_offline(raw, 1);  // never a keyserver or WKD fetch from the sidecar
  gpgme_set_keylist_mode(raw, GPGME_KEYLIST_MODE_LOCAL);
  return c;
}

// ---- MIME -------------------------------------------------------------------------

struct field {
  std::string_view name;  // before the colon, as written
  std::string_view text;  // the whole field, folded lines included, without the final line end
};

// Split `message` at its first empty line into header fields and the body.
void split_message(std::string_view message, std::vector<field>& fields, std::string_view& body) {
  size_t pos = 0;
  body = {};
  while (pos < message.size()) {
    size_t eol = message.find('\n', pos);
    size_t next = eol == std::string_view::npos ? message.size() : eol + 1;
    std::string_view line = message.substr(pos, (eol == std::string_view::npos ? message.size() : eol) - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      body = message.substr(next);
      return;
    }
    if ((line[0] == ' ' || line[0] == '\t') && !fields.empty()) {
      auto& f = fields.back();
      f.text = std::string_view(f.text.data(), line.data() + line.size() - f.text.data());
    } else {
      size_t colon = line.find(':');
      std::string_view name = colon == std::string_view::npos ? std::string_view{} : line.substr(0, colon);
      while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
      fields.push_back({name, line});
    }
    pos = next;
  }
}

// Append `text` with every line end made CRLF (bare LF and bare CR alike).
void append_crlf(std::string& out, std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\r') {
      out += "\r\n";
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      out += "\r\n";
    } else {
      out += c;
    }
  }
}

bool contains_icase(std::string_view hay, std::string_view needle) {
  if (needle.size() > hay.size()) return false;
  for (size_t i = 0; i + needle.size() <= hay.size(); ++i)
    if (iequals(hay.substr(i, needle.size()), needle)) return true;
  return false;
}

constexpr std::string_view k_outer_fields[] = {"From", "To", "Cc", "Date", "Message-ID"};

std::string make_boundary() {
  unsigned char r[12];
  if (getrandom(r, sizeof r, 0) != static_cast<ssize_t>(sizeof r)) {
    // Uniqueness, not secrecy: the boundary is checked against the content anyway.
    auto t = static_cast<unsigned long long>(std::time(nullptr));
    std::memcpy(r, &t, std::min(sizeof t, sizeof r));
  }
  static constexpr char hex[] = "0123456789abcdef";
  // '=', '_' and '.' together never occur in an armor line or in "Version: 1".
  std::string b = "=_sealrelay.pgp.";
  for (unsigned char c : r) {
    b += hex[c >> 4];
    b += hex[c & 15];
  }
  return b;
}

}  // namespace

std::string pgp_inner_entity(std::string_view message) {
  std::vector<field> fields;
  std::string_view body;
  split_message(message, fields, body);
  std::string out;
  out.reserve(message.size() + 64);
  bool have_type = false;
  for (const auto& f : fields) {
    append_crlf(out, f.text);
    // Mark the payload as carrying protected headers (the convention mail readers use to
    // show the inner Subject instead of the outer `...`).
    if (iequals(f.name, "Content-Type")) {
      have_type = true;
      if (!contains_icase(f.text, "protected-headers")) {
        while (!out.empty() && (out.back() == ' ' || out.back() == '\t' || out.back() == ';')) out.pop_back();
        out += "; protected-headers=\"v1\"";
      }
    }
    out += "\r\n";
  }
  if (!have_type) out += "Content-Type: text/plain; charset=us-ascii; protected-headers=\"v1\"\r\n";
  out += "\r\n";
  append_crlf(out, body);
  return out;
}

struct pgp_keyring::impl {
  std::string home;
  pgp_trust trust;
  ctx_ptr ctx;
};

pgp_keyring::pgp_keyring(std::unique_ptr<impl> i) : _impl(std::move(i)) {}
pgp_keyring::pgp_keyring(pgp_keyring&&) noexcept = default;
pgp_keyring& pgp_keyring::operator=(pgp_keyring&&) noexcept = default;
pgp_keyring::~pgp_keyring() = default;

result<pgp_keyring> pgp_keyring::open(std::string pgp_home, pgp_trust trust) {
  static std::once_flag once;
  static const char* version = nullptr;
  std::call_once(once, [] { version = gpgme_check_version(nullptr); });
  if (!version) return error{"GPGME failed to initialise"};
  if (gpgme_error_t e = gpgme_engine_check_version(GPGME_PROTOCOL_OpenPGP))
    return error{gpg_error_text("gpg (OpenPGP engine)", e)};
  std::string err;
  ctx_ptr c = new_context(pgp_home, err);
  if (!c) return error{err};
  auto i = std::make_unique<impl>();
  i->home = std::move(pgp_home);
  i->trust = trust;
  i->ctx = std::move(c);
  return pgp_keyring(std::move(i));
}

result<pgp_lookup> pgp_keyring::find(std::string_view address) {
  pgp_lookup out;
  if (!plain_address(address)) {
    out.refused = "not a plain address";
    return out;
  }
  gpgme_ctx_t c = _impl->ctx.get();
  // "<addr>" asks gpg for user ids whose address is exactly addr (in any case); the
  // mailbox's case is checked below.
  std::string pattern = "<" + std::string(address) + ">";
  if (gpgme_error_t e = gpgme_op_keylist_start(c, pattern.c_str(), 0))
    return error{gpg_error_text("key listing", e)};
  std::time_t now = std::time(nullptr);
  long best_time = -1;
  gpgme_error_t e = 0;
  for (;;) {
    gpgme_key_t raw = nullptr;
    e = gpgme_op_keylist_next(c, &raw);
    if (e) break;
    key_ptr k(raw);
    for (gpgme_user_id_t u = k->uids; u; u = u->next) {
      if (!u->address || !same_address(u->address, address)) continue;
      std::string why = refusal(k.get(), u, _impl->trust, now);
      gpgme_subkey_t sub = why.empty() ? usable_subkey(k.get(), now, why) : nullptr;
      if (!sub) {
        if (!out.refused.empty()) out.refused += "; ";
        out.refused += std::string(k->fpr ? k->fpr : "?") + ": " + why;
        continue;
      }
      if (sub->timestamp > best_time) {
        best_time = sub->timestamp;
        out.key = pgp_key{k->fpr, sub->fpr, u->address, _impl->trust};
      }
      break;
    }
  }
  gpgme_op_keylist_end(c);
  if (gpgme_err_code(e) != GPG_ERR_EOF) return error{gpg_error_text("key listing", e)};
  if (out.key) out.refused.clear();
  return out;
}

result<std::string> pgp_keyring::pgp_mime(std::string_view message, const pgp_key& key) {
  gpgme_ctx_t c = _impl->ctx.get();
  // Check the key again: it may have been revoked or expired since find().
  gpgme_key_t raw = nullptr;
  if (gpgme_error_t e = gpgme_get_key(c, key.fingerprint.c_str(), &raw, 0))
    return error{gpg_error_text("recipient key", e)};
  key_ptr k(raw);
  std::time_t now = std::time(nullptr);
  gpgme_user_id_t uid = nullptr;
  for (gpgme_user_id_t u = k->uids; u && !uid; u = u->next)
    if (u->address && same_address(u->address, key.address)) uid = u;
  if (!uid) return error{"recipient key no longer has the address"};
  if (std::string why = refusal(k.get(), uid, key.trust, now); !why.empty())
    return error{"recipient key refused: " + why};
  std::string why;
  if (!usable_subkey(k.get(), now, why)) return error{"recipient key refused: " + why};

  std::string inner = pgp_inner_entity(message);
  gpgme_data_t in_raw = nullptr, out_raw = nullptr;
  if (gpgme_error_t e = gpgme_data_new_from_mem(&in_raw, inner.data(), inner.size(), 0))
    return error{gpg_error_text("plaintext buffer", e)};
  data_ptr in(in_raw);
  if (gpgme_error_t e = gpgme_data_new(&out_raw)) return error{gpg_error_text("ciphertext buffer", e)};
  data_ptr out(out_raw);
  // "FPR!" makes gpg use exactly the subkey vetted above; NO_ENCRYPT_TO keeps encrypt-to
  // keys of pgp_home's gpg.conf off the message.
  std::string recipient = key.subkey_fingerprint + "!";
  auto flags = static_cast<gpgme_encrypt_flags_t>(
      GPGME_ENCRYPT_NO_ENCRYPT_TO | (key.trust == pgp_trust::pgp_home ? GPGME_ENCRYPT_ALWAYS_TRUST : 0));
  if (gpgme_error_t e = gpgme_op_encrypt_ext(c, nullptr, recipient.c_str(), flags, in.get(), out.get()))
    return error{gpg_error_text("encryption", e)};
  if (gpgme_encrypt_result_t r = gpgme_op_encrypt_result(c); r && r->invalid_recipients)
    return error{gpg_error_text("encryption: recipient refused", r->invalid_recipients->reason)};
  size_t len = 0;
  char* mem = gpgme_data_release_and_get_mem(out.release(), &len);
  if (!mem) return error{"encryption produced nothing"};
  std::string armored(mem, len);
  gpgme_free(mem);
  if (armored.find("-----BEGIN PGP MESSAGE-----") == std::string::npos)
    return error{"encryption produced no armored message"};

  std::vector<field> fields;
  std::string_view body;
  split_message(message, fields, body);
  std::string boundary;
  do boundary = make_boundary();
  while (armored.find(boundary) != std::string::npos);

  std::string msg;
  msg.reserve(armored.size() + 1024);
  for (const auto& f : fields) {
    bool keep = std::any_of(std::begin(k_outer_fields), std::end(k_outer_fields),
                            [&](std::string_view n) { return iequals(f.name, n); });
    if (!keep) continue;
    append_crlf(msg, f.text);
    msg += "\r\n";
  }
  msg += "Subject: ...\r\n";
  msg += "MIME-Version: 1.0\r\n";
  msg += "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n";
  msg += " boundary=\"" + boundary + "\"\r\n";
  msg += "\r\n";
  msg += "This is an OpenPGP/MIME encrypted message (RFC 3156).\r\n";
  msg += "--" + boundary + "\r\n";
  msg += "Content-Type: application/pgp-encrypted\r\n";
  msg += "Content-Description: PGP/MIME version identification\r\n";
  msg += "\r\n";
  msg += "Version: 1\r\n";
  msg += "\r\n";
  msg += "--" + boundary + "\r\n";
  msg += "Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n";
  msg += "Content-Description: OpenPGP encrypted message\r\n";
  msg += "Content-Disposition: inline; filename=\"encrypted.asc\"\r\n";
  msg += "\r\n";
  append_crlf(msg, armored);
  if (msg.size() < 2 || msg.compare(msg.size() - 2, 2, "\r\n") != 0) msg += "\r\n";
  msg += "\r\n--" + boundary + "--\r\n";
  return msg;
}

}  // namespace sr::fallback
