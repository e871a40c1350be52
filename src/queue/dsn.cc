// Layout follows what Postfix's bounce daemon sends, which operators and mailbox
// providers already parse: a human-readable part, message/delivery-status with one
// per-recipient block, and text/rfc822-headers of the original (never its body:
// the body may carry PHI, and the sender has it anyway). A redacted DSN (the original
// asked for REQUIRETLS, RFC 8689 §5) returns nothing of the original at all.
#include "dsn.hh"

#include <cstdio>

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

std::string build_dsn(const dsn_input& in) {
  char boundary[96];
  std::snprintf(boundary, sizeof boundary, "%.*s.%lld/%.*s", int(in.queue_id.size()),
                in.queue_id.data(), (long long)in.now, int(in.reporting_mta.size()),
                in.reporting_mta.data());
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
