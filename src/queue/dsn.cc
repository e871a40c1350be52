// Layout follows what Postfix's bounce daemon sends, which operators and mailbox
// providers already parse: a human-readable part, message/delivery-status with one
// per-recipient block, and text/rfc822-headers of the original (never its body:
// the body may carry PHI, and the sender has it anyway). A redacted DSN (the original
// asked for REQUIRETLS, RFC 8689 §5) returns nothing of the original at all.
#include "dsn.hh"

#include <cstdio>
#include <initializer_list>
#include <unordered_set>

#include "sealrelay/smtp/received.hh"

namespace sr::queue {

std::string_view header_section(std::string_view m) {
  size_t end = m.find("\r\n\r\n");
  if (end != std::string_view::npos) return m.substr(0, end + 4);
  size_t last = m.rfind("\r\n");
  return last == std::string_view::npos ? std::string_view() : m.substr(0, last + 2);
}

static std::string sanitize_line(std::string_view s) {
  std::string out;
  for (char c : s) out += (c == '\r' || c == '\n') ? ' ' : c;
  return out;
}

// Return `base`, or `base` + "=" + k, whichever no line of `quoted` begins with as a
// delimiter would ("--" + boundary; parsers match a delimiter line by its start, and some
// take a bare LF as a line end). RFC 2046 §5.1.1 wants the boundary absent from the parts:
// the original's header section is the sender's bytes, and `base` is predictable (the queue
// id is in the 250 reply, the time is the bounce's), so a header line "--<base>--" ended the
// report early and made what followed look like its own parts (found by tests/fuzz/dsn_fuzz).
// One pass over the text; at most one candidate per digit prefix of a line is taken, so the
// search below ends within taken.size() + 1 steps.
static std::string pick_boundary(const std::string& base, std::initializer_list<std::string_view> quoted) {
  const std::string mark = "--" + base;
  std::unordered_set<uint64_t> taken;  // k of base + "=" + k begun by some line; 0: base itself
  for (std::string_view text : quoted) {
    for (size_t pos = 0; pos < text.size();) {
      size_t eol = text.find('\n', pos);
      if (eol == std::string_view::npos) eol = text.size();
      std::string_view line = text.substr(pos, eol - pos);
      pos = eol + 1;
      if (!line.starts_with(mark)) continue;
      taken.insert(0);
      std::string_view rest = line.substr(mark.size());
      if (rest.empty() || rest[0] != '=') continue;
      uint64_t k = 0;
      for (size_t i = 1; i < rest.size() && i <= 9 && rest[i] >= '0' && rest[i] <= '9'; ++i) {
        k = k * 10 + uint64_t(rest[i] - '0');
        taken.insert(k);
      }
    }
  }
  if (!taken.contains(0)) return base;
  for (uint64_t k = 1;; ++k)
    if (!taken.contains(k)) return base + "=" + std::to_string(k);
}

std::string build_dsn(const dsn_input& in) {
  char base[96];
  std::snprintf(base, sizeof base, "%.*s.%lld/%.*s", int(in.queue_id.size()),
                in.queue_id.data(), (long long)in.now, int(in.reporting_mta.size()),
                in.reporting_mta.data());
  // Every text that can start a line of the DSN and is not ours.
  const std::string boundary =
      pick_boundary(base, {in.redacted ? std::string_view() : header_section(in.original_message),
                           in.reason_text});
  std::string m;
  m += "From: Mail Delivery System <MAILER-DAEMON@";
  m += in.reporting_mta;
  m += ">\r\nTo: <";
  m += in.original_sender;
  m += ">\r\nSubject: Undelivered Mail Returned to Sender\r\nDate: ";
  smtp::append_rfc5322_date(m, in.now);
  m += "\r\nMessage-ID: <";
  m += in.queue_id;
  m += ".dsn@";
  m += in.reporting_mta;
  m += ">\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"";
  m += boundary;
  m += "\"\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n--";
  m += boundary;
  m += "\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
  m += "This is the mail system at host ";
  m += in.reporting_mta;
  m += ".\r\n\r\nI'm sorry to have to inform you that your message could not\r\n"
       "be delivered to one or more recipients.\r\n\r\n";
  if (!in.reason_text.empty()) {
    m += sanitize_line(in.reason_text);
    m += "\r\n\r\n";
  }
  if (in.redacted) {
    m += "The message required TLS (REQUIRETLS); its content and headers are not returned.\r\n";
    if (!in.original_msg_id.empty()) {
      m += "Message-ID: <";
      m += sanitize_line(in.original_msg_id);
      m += ">\r\n";
    }
    m += "\r\n";
  }
  for (const auto& r : in.recipients) {
    m += "<" + r.address + ">: ";
    m += r.remote_mta.empty() ? std::string() : "host " + r.remote_mta + " said: ";
    m += sanitize_line(r.diagnostic);
    m += "\r\n";
  }
  m += "\r\n--";
  m += boundary;
  m += "\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n";
  m += "Reporting-MTA: dns; ";
  m += in.reporting_mta;
  m += "\r\nX-Sealrelay-Queue-ID: ";
  m += in.queue_id;
  m += "\r\nArrival-Date: ";
  smtp::append_rfc5322_date(m, in.arrival);
  m += "\r\n";
  for (const auto& r : in.recipients) {
    m += "\r\nFinal-Recipient: rfc822; " + r.address + "\r\nOriginal-Recipient: rfc822; " + r.address;
    m += "\r\nAction: " + r.action + "\r\nStatus: " + r.status + "\r\n";
    if (!r.remote_mta.empty()) m += "Remote-MTA: dns; " + r.remote_mta + "\r\n";
    m += "Diagnostic-Code: smtp; " + sanitize_line(r.diagnostic) + "\r\n";
  }
  if (!in.redacted) {
    m += "\r\n--";
    m += boundary;
    m += "\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n";
    std::string_view hdr = header_section(in.original_message);
    m += hdr;
    if (hdr.size() < 2 || hdr.substr(hdr.size() - 2) != "\r\n") m += "\r\n";
  }
  m += "\r\n--";
  m += boundary;
  m += "--\r\n";
  return m;
}

}  // namespace sr::queue
