// Received: header formatting. Dates are UTC so the output does not depend on the host's
// time zone; untrusted text is reduced to printable ASCII without parentheses' effect.
#include "sealrelay/smtp/received.hh"

#include <cstdio>

namespace sr::smtp {

namespace {

// Append client-controlled text with control characters, non-ASCII and header-structure
// characters replaced, so a hostile HELO cannot fold, end or comment out the header.
void append_sanitized(std::string& out, std::string_view s) {
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    bool ok = u > 32 && u < 127 && c != '(' && c != ')' && c != ';' && c != '\\';
    out.push_back(ok ? c : '?');
  }
}

void append_uint(std::string& out, unsigned v) {
  char buf[16];
  int n = std::snprintf(buf, sizeof buf, "%u", v);
  out.append(buf, size_t(n));
}

}  // namespace

void append_rfc5322_date(std::string& out, std::time_t when) {
  static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm tm{};
  gmtime_r(&when, &tm);
  char buf[48];
  int n = std::snprintf(buf, sizeof buf, "%s, %d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
                        tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                        tm.tm_sec);
  out.append(buf, size_t(n));
}

void append_received(std::string& out, const received_info& info) {
  out.append("Received: from ");
  append_sanitized(out, info.helo.empty() ? std::string_view("unknown") : info.helo);
  out.append(" (");
  append_sanitized(out, info.client_ip);
  out.append(")\r\n\tby ");
  append_sanitized(out, info.hostname);
  out.append(" (sealrelay) with ");
  if (info.http) {
    out.append(info.tls ? "HTTPS" : "HTTP");
  } else {
    out.append(info.esmtp ? "ESMTP" : "SMTP");
    if (info.tls) out.push_back('S');
    if (info.authenticated) out.push_back('A');
  }
  out.append(" id ");
  append_sanitized(out, info.queue_id);
  if (info.tls) {
    out.append("\r\n\t(using ");
    append_sanitized(out, info.tls_version);
    out.append(" with cipher ");
    append_sanitized(out, info.cipher);
    out.append(" (");
    append_uint(out, info.cipher_bits);
    out.push_back('/');
    append_uint(out, info.cipher_alg_bits);
    out.append(" bits))");
  }
  if (!info.auth_sender.empty()) {
    out.append("\r\n\t(Authenticated sender: ");
    append_sanitized(out, info.auth_sender);
    out.push_back(')');
  }
  if (!info.single_rcpt.empty()) {
    out.append("\r\n\tfor <");
    append_sanitized(out, info.single_rcpt);
    out.append(">; ");
  } else {
    out.append(";\r\n\t");
  }
  append_rfc5322_date(out, info.when);
  out.append("\r\n");
}

}  // namespace sr::smtp
