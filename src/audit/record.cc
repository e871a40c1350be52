// JSON-lines formatting of audit records: hand-written (no JSON library) so a record
// costs one pass over its fields and no allocation once the output buffer is warm.
#include "sealrelay/audit/record.hh"

#include <charconv>
#include <ctime>

#include "sealrelay/util/json.hh"

namespace sr::audit {

const char* to_string(cert_status c) {
  switch (c) {
    case cert_status::none: return "none";
    case cert_status::verified: return "verified";
    case cert_status::invalid: return "invalid";
  }
  return "none";
}

const char* to_string(outcome o) {
  switch (o) {
    case outcome::delivered: return "delivered";
    case outcome::deferred: return "deferred";
    case outcome::bounced: return "bounced";
    case outcome::escrowed: return "escrowed";
    case outcome::pgp: return "pgp";
    case outcome::smime: return "smime";
    case outcome::dropped: return "dropped";
    case outcome::deleted: return "deleted";
    case outcome::suppressed: return "suppressed";
  }
  return "deferred";
}

int64_t now_unix_ms() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

namespace {

// Days since 1970-01-01 -> civil date (Howard Hinnant's algorithm; no tz, no locale).
void civil_from_days(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = unsigned(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = int64_t(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
}

void put2(char* p, unsigned v) {
  p[0] = char('0' + v / 10 % 10);
  p[1] = char('0' + v % 10);
}

void append_key(const char* key, std::string& out) {
  out += ",\"";
  out += key;
  out += "\":";
}

void append_str_field(const char* key, std::string_view v, std::string& out) {
  append_key(key, out);
  append_json_string(v, out);
}

void append_opt_field(const char* key, const std::optional<std::string_view>& v, std::string& out) {
  append_key(key, out);
  if (v) append_json_string(*v, out);
  else out += "null";
}

void append_uint(uint64_t v, std::string& out) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out.append(buf, size_t(end - buf));
}

}  // namespace

void append_json_string(std::string_view s, std::string& out) {
  if (s.size() > max_field_bytes) {
    size_t cut = max_field_bytes;
    // Back off to the start of a UTF-8 sequence so the cut never splits a character.
    for (int k = 0; k < 3 && cut > 0 && (uint8_t(s[cut]) & 0xc0) == 0x80; ++k) --cut;
    s = s.substr(0, cut);
  }
  sr::append_json_string(out, s);
}

void append_timestamp(int64_t unix_ms, std::string& out) {
  int64_t secs = unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000;
  unsigned ms = unsigned(unix_ms - secs * 1000);
  int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
  unsigned sod = unsigned(secs - days * 86400);
  int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  if (y < 0) y = 0;
  if (y > 9999) y = 9999;
  // "YYYY-MM-DDTHH:MM:SS.mmmZ"
  char b[24];
  b[0] = char('0' + y / 1000);
  b[1] = char('0' + y / 100 % 10);
  b[2] = char('0' + y / 10 % 10);
  b[3] = char('0' + y % 10);
  b[4] = '-';
  put2(b + 5, m);
  b[7] = '-';
  put2(b + 8, d);
  b[10] = 'T';
  put2(b + 11, sod / 3600);
  b[13] = ':';
  put2(b + 14, sod / 60 % 60);
  b[16] = ':';
  put2(b + 17, sod % 60);
  b[19] = '.';
  b[20] = char('0' + ms / 100);
  put2(b + 21, ms % 100);
  b[23] = 'Z';
  out.append(b, sizeof b);
}

void format(const record& r, std::string& out) {
  out += "{\"ts\":\"";
  append_timestamp(r.ts_ms ? r.ts_ms : now_unix_ms(), out);
  out += '"';
  append_str_field("queue_id", r.queue_id, out);
  append_opt_field("msg_id", r.msg_id, out);
  append_key("kind", out);
  out += '"';
  out += to_string(r.kind);
  out += '"';
  append_str_field("from", r.from, out);
  append_str_field("rcpt", r.rcpt, out);
  append_str_field("domain", r.domain, out);
  append_opt_field("mx", r.mx, out);
  append_opt_field("ip", r.ip, out);
  append_opt_field("source_ip", r.source_ip, out);
  append_key("attempt", out);
  append_uint(r.attempt, out);
  append_key("policy", out);
  out += '"';
  out += config::to_string(r.policy);
  out += '"';
  append_key("policy_source", out);
  out += '"';
  out += to_string(r.source);
  out += '"';
  append_key("tls", out);
  out += r.tls ? "true" : "false";
  append_opt_field("tls_version", r.tls_version, out);
  append_opt_field("cipher", r.cipher, out);
  append_key("cipher_bits", out);
  if (r.cipher_bits) append_uint(*r.cipher_bits, out);
  else out += "null";
  append_key("cert", out);
  out += '"';
  out += to_string(r.cert);
  out += '"';
  append_key("outcome", out);
  out += '"';
  out += to_string(r.outcome);
  out += '"';
  append_key("reason", out);
  if (r.reason == report::reason::none) {
    out += "null";
  } else {
    out += '"';
    out += report::to_string(r.reason);  // tokens are plain ASCII: no escaping needed
    out += '"';
  }
  append_opt_field("smtp_reply", r.smtp_reply, out);
  append_key("bounce_class", out);
  if (r.bounce_class) {
    out += '"';
    out += report::to_string(*r.bounce_class);  // plain ASCII tokens
    out += '"';
  } else {
    out += "null";
  }
  out += "}\n";
}

}  // namespace sr::audit
