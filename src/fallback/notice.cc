// Escrow notice and code mails (notice.hh). Everything placed in a header is checked here
// once: a field with CR, LF or another control character is refused rather than cleaned,
// since silently altering an address would mail someone else; non-ASCII text in the Subject
// becomes RFC 2047 encoded words. The bodies are fixed wording around checked values.
#include "sealrelay/fallback/notice.hh"

#include <sys/random.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <ctime>

#include "sealrelay/fallback/portal_pages.hh"
#include "sealrelay/smtp/received.hh"
#include "sealrelay/util/text.hh"

namespace sr::fallback {
namespace {

constexpr std::size_t k_max_address = 254;  // RFC 5321 path limit less the brackets

bool has_control(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

bool is_ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

// Whether `s` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07; }
    else return false;
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n + 1;
  }
  return true;
}

// An address for From:/To: — no controls, no whitespace, nothing that ends the field or
// starts a display name or a second address; UTF-8 allowed (RFC 6532).
status check_address(std::string_view what, std::string_view a) {
  if (a.empty()) return error{std::string(what) + " is empty"};
  if (a.size() > k_max_address) return error{std::string(what) + " is too long"};
  if (has_control(a)) return error{std::string(what) + " holds a control character"};
  if (!valid_utf8(a)) return error{std::string(what) + " is not UTF-8"};
  if (a.find_first_of(" <>,;\"()\\[]:") != std::string_view::npos ||
      a.find('@') == std::string_view::npos)
    return error{std::string(what) + " is not a plain address"};
  return status::success();
}

status check_hostname(std::string_view h) {
  if (h.empty() || h.size() > 253) return error{"hostname is empty or too long"};
  for (unsigned char c : h)
    if (!(std::isalnum(c) || c == '-' || c == '.')) return error{"hostname is not a DNS name"};
  return status::success();
}

// Left side of a Message-ID: dot-atom text without dots at the ends.
status check_id_local(std::string_view l) {
  if (l.empty() || l.size() > 64 || l.front() == '.' || l.back() == '.')
    return error{"Message-ID local part is empty, too long or has an edge dot"};
  for (unsigned char c : l)
    if (!(std::isalnum(c) || c == '.' || c == '-' || c == '_' || c == '='))
      return error{"Message-ID local part has a character outside [A-Za-z0-9._=-]"};
  return status::success();
}

bool is_base64url(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!(std::isalnum(c) || c == '-' || c == '_')) return false;
  return true;
}

std::string random_hex(std::size_t bytes) {
  unsigned char r[32];
  bytes = std::min(bytes, sizeof r);
  if (getrandom(r, bytes, 0) != static_cast<ssize_t>(bytes)) {
    // Uniqueness, not secrecy: time and the address of a stack byte will do.
    auto t = static_cast<unsigned long long>(std::time(nullptr)) ^
             reinterpret_cast<std::uintptr_t>(&r);
    for (std::size_t i = 0; i < bytes; ++i) r[i] = static_cast<unsigned char>(t >> (8 * (i % 8)));
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) {
    out += hex[r[i] >> 4];
    out += hex[r[i] & 15];
  }
  return out;
}

// "7 December 2026, 00:14 UTC" for people.
std::string human_date(seconds_t t) {
  std::time_t tt = t.time_since_epoch().count();
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%d %B %Y, %H:%M UTC", &tm);
  std::string s = buf;
  if (s.size() > 1 && s[0] == '0') s.erase(0, 1);
  return s;
}

struct envelope_fields {
  std::string_view from, to, hostname, msg_id_local;
  seconds_t now;
};

// The common header block; returns the Message-ID (without <>) through `msg_id`.
result<std::string> common_headers(const envelope_fields& f, std::string& msg_id) {
  if (auto s = check_address("notice sender", f.from); !s) return error{s.err()};
  if (auto s = check_address("recipient", f.to); !s) return error{s.err()};
  if (auto s = check_hostname(f.hostname); !s) return error{s.err()};
  std::string local = f.msg_id_local.empty() ? "escrow." + random_hex(16)
                                             : std::string(f.msg_id_local);
  if (auto s = check_id_local(local); !s) return error{s.err()};
  msg_id = local + "@" + std::string(f.hostname);
  std::string h;
  h += "From: <" + std::string(f.from) + ">\r\n";
  h += "To: <" + std::string(f.to) + ">\r\n";
  h += "Date: ";
  smtp::append_rfc5322_date(h, std::time_t(f.now.time_since_epoch().count()));
  h += "\r\n";
  h += "Message-ID: <" + msg_id + ">\r\n";
  h += "Auto-Submitted: auto-generated\r\n";
  h += "MIME-Version: 1.0\r\n";
  return h;
}

// Turn LF line ends of a fixed text into CRLF.
std::string crlf(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 16);
  for (char c : s) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

// multipart/alternative of `text` and `html` (both LF-ended; converted to CRLF here).
std::string alternative(std::string_view text, std::string_view html) {
  std::string boundary;
  do boundary = "=_sealrelay.notice." + random_hex(12);
  while (text.find(boundary) != std::string_view::npos ||
         html.find(boundary) != std::string_view::npos);
  const char* cte = is_ascii(text) && is_ascii(html) ? "7bit" : "8bit";
  std::string m;
  m += "Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n\r\n";
  m += "--" + boundary + "\r\n";
  m += "Content-Type: text/plain; charset=utf-8\r\n";
  m += std::string("Content-Transfer-Encoding: ") + cte + "\r\n\r\n";
  m += crlf(text);
  m += "\r\n--" + boundary + "\r\n";
  m += "Content-Type: text/html; charset=utf-8\r\n";
  m += std::string("Content-Transfer-Encoding: ") + cte + "\r\n\r\n";
  m += crlf(html);
  m += "\r\n--" + boundary + "--\r\n";
  return m;
}

std::string html_mail(std::string_view title, std::string_view inner) {
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  h += "<title>" + portal::html_escape(title) + "</title>\n</head>\n";
  h += "<body style=\"font-family:sans-serif;line-height:1.5;max-width:36em;margin:0 auto;"
       "padding:1em\">\n";
  h += inner;
  h += "</body>\n</html>\n";
  return h;
}

}  // namespace

result<std::string> header_text(std::string_view text) {
  if (has_control(text)) return error{"header text holds a control character"};
  if (is_ascii(text)) return std::string(text);
  if (!valid_utf8(text)) return error{"header text is not UTF-8"};
  // Each encoded word carries at most 45 bytes (60 base64 characters + 12 = 72 <= 75),
  // cut only between UTF-8 characters; words are folded onto their own lines.
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t end = std::min(text.size(), i + 45);
    while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xc0) == 0x80) --end;
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?";
    append_base64(out, text.substr(i, end - i));
    out += "?=";
    i = end;
  }
  return out;
}

result<std::string> portal_link(std::string_view portal_url, const escrow::link& link) {
  while (!portal_url.empty() && portal_url.back() == '/') portal_url.remove_suffix(1);
  if (!(portal_url.starts_with("https://") || portal_url.starts_with("http://")) ||
      portal_url.size() <= 8)
    return error{"portal_url is not an http(s) URL"};
  for (unsigned char c : portal_url)
    if (c <= 0x20 || c >= 0x7f || std::strchr("\"<>\\^`{|}'", c) != nullptr)
      return error{"portal_url holds a character a URL may not"};
  if (!is_base64url(link.id) || !is_base64url(link.secret))
    return error{"link id or secret is not URL-safe base64"};
  return std::string(portal_url) + "/m/" + link.id + "/" + link.secret;
}

result<built_mail> escrow_notice(const notice_params& p) {
  if (auto s = check_address("sender", p.sender); !s) return error{s.err()};
  auto url = portal_link(p.portal_url, p.link);
  if (!url) return error{url.err()};
  built_mail out;
  auto head = common_headers({p.notice_from, p.recipient, p.hostname, p.msg_id_local, p.now},
                             out.msg_id);
  if (!head) return error{head.err()};
  auto subject = header_text(p.sender);  // only the address: nothing the sender wrote
  if (!subject) return error{subject.err()};
  std::string expiry = human_date(p.expires);

  std::string text;
  text += "You have a secure message from " + std::string(p.sender) + ".\n\n";
  text += "It was kept on a secure server instead of being sent by email, because the\n";
  text += "connection to your mail server could not be protected. To read it, open:\n\n";
  text += *url + "\n\n";
  text += "You will be asked for a one-time code, which is sent to this address.\n";
  text += "The message can be read until " + expiry + ".\n\n";
  text += "If you did not expect this message, you can ignore this email.\n";

  std::string link = portal::html_escape(*url);
  std::string inner;
  inner += "<p>You have a secure message from <strong>" + portal::html_escape(p.sender) +
           "</strong>.</p>\n";
  inner += "<p>It was kept on a secure server instead of being sent by email, because the "
           "connection to your mail server could not be protected.</p>\n";
  inner += "<p><a href=\"" + link + "\">Read the secure message</a></p>\n";
  inner += "<p style=\"word-break:break-all;font-size:small\">" + link + "</p>\n";
  inner += "<p>You will be asked for a one-time code, which is sent to this address. "
           "The message can be read until " + portal::html_escape(expiry) + ".</p>\n";
  inner += "<p>If you did not expect this message, you can ignore this email.</p>\n";

  out.message = *head;
  out.message += "Subject: Secure message from " + *subject + "\r\n";
  out.message += alternative(text, html_mail("Secure message", inner));
  return out;
}

result<built_mail> code_mail(const code_mail_params& p) {
  if (p.code.size() != 6) return error{"the code is not six digits"};
  for (unsigned char c : p.code)
    if (c < '0' || c > '9') return error{"the code is not six digits"};
  built_mail out;
  auto head = common_headers({p.notice_from, p.recipient, p.hostname, p.msg_id_local, p.now},
                             out.msg_id);
  if (!head) return error{head.err()};
  auto minutes = std::to_string(
      std::chrono::duration_cast<std::chrono::minutes>(code_validity).count());
  std::string until = human_date(p.now + code_validity);

  std::string text;
  text += "Your code for the secure message is:\n\n    " + std::string(p.code) + "\n\n";
  text += "Enter it on the page where you asked for it. It is valid for " + minutes +
          " minutes\n(until " + until + ") and can be used once.\n\n";
  text += "If you did not ask for a code, you can ignore this email.\n";

  std::string inner;
  inner += "<p>Your code for the secure message is:</p>\n";
  inner += "<p style=\"font-size:2em;letter-spacing:0.2em;font-family:monospace\">" +
           std::string(p.code) + "</p>\n";
  inner += "<p>Enter it on the page where you asked for it. It is valid for " + minutes +
           " minutes (until " + portal::html_escape(until) + ") and can be used once.</p>\n";
  inner += "<p>If you did not ask for a code, you can ignore this email.</p>\n";

  out.message = *head;
  out.message += "Subject: Your code for a secure message\r\n";
  out.message += alternative(text, html_mail("Your code", inner));
  return out;
}

}  // namespace sr::fallback
