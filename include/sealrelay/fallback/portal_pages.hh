// The escrow portal's pages (DESIGN.md §7) as pure builders: status, headers and an HTML
// body, for the portal's HTTP layer to send as they are. No page has any script; the CSS
// is inline (CSP style-src 'unsafe-inline': a sanitised message's own styles must render in
// its sandboxed frame, which inherits the page's policy, and no script can run anywhere).
// Every page fits a phone screen (viewport meta), works without JavaScript and carries
// security_headers(). Every interpolated text goes through html_escape().
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/fallback/escrow.hh"

namespace sr::fallback::portal {

struct http_header {
  std::string name;
  std::string value;
  bool operator==(const http_header&) const = default;
};

struct page {
  int status = 200;
  std::vector<http_header> headers;  // security_headers() + Content-Type
  std::string body;
};

// The policy every portal response carries (also the non-HTML ones, such as downloads).
inline constexpr std::string_view content_security_policy =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: cid: 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

// Return the security headers: CSP, Cache-Control no-store, Referrer-Policy no-referrer,
// X-Content-Type-Options nosniff, X-Frame-Options DENY.
std::vector<http_header> security_headers();

// Escape text for HTML element content and quoted attribute values (& < > " ').
std::string html_escape(std::string_view text);

// GET /m/<id>/<secret>: asks the reader to have a code mailed (POST .../code).
page code_request_page(const escrow::link& link);
// After POST .../code: the form for the code (field `code`, POST /m/<id>/<secret>).
page enter_code_page(const escrow::link& link);
// A wrong code: the form again, saying how many tries are left.
page wrong_code_page(const escrow::link& link, int tries_left);
// The code is older than 10 minutes, was already used, or none was asked for.
page code_expired_page(const escrow::link& link);
// Too many code requests for now (the portal's rate limit).
page rate_limited_page(const escrow::link& link);
// Locked after five wrong codes.
page locked_page();
// Unknown, expired or retracted link: one neutral page, byte-identical for all three.
page unavailable_page();
// Choose the page for a record the portal may not use: locked_page() for locked, else
// unavailable_page() (unknown, expired, retracted alike; ok is not a refusal and gets it too).
page refusal_page(access why);
// The same for an open answer; wrong_secret is unavailable_page() too (a guessed secret must
// not learn that the id exists).
page refusal_page(escrow::open_status why);
// A fault on our side (store error): nothing about the message.
page server_error_page();

struct attachment_info {
  std::string name;          // as the message gives it (escaped here)
  std::string content_type;  // e.g. "application/pdf"
  std::uint64_t size = 0;    // bytes
};

struct message_view {
  std::string from, to, cc, date, subject;  // header texts, already decoded (cc may be empty)
  std::string text;                         // the text part ("" if none)
  std::string sanitized_html;               // the HTML part after the sanitiser ("" if none)
  std::vector<attachment_info> attachments; // downloaded at /m/<id>/<secret>/a/<n>, n from 0
};

// Return the headers of an attachment download (GET /m/<id>/<secret>/a/<n>):
// security_headers(), Content-Type (`content_type` when it is a plain type/subtype token
// pair, else application/octet-stream), Content-Disposition attachment with an ASCII
// `filename` (anything unsafe replaced by '_') and an RFC 5987 `filename*` in UTF-8, and
// Content-Length. Nothing of `name` or `content_type` can end a header line.
std::vector<http_header> attachment_headers(std::string_view name, std::string_view content_type,
                                            std::uint64_t size);

// The message after the right code: headers, text in <pre>, the sanitised HTML in a
// sandboxed iframe (srcdoc, no allow-* token) and the attachment links.
page message_page(const escrow::link& link, const message_view& m);

}  // namespace sr::fallback::portal
