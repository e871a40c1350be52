// Portal pages (portal_pages.hh). One layout (layout()) wraps every page so the viewport
// meta, the inline CSS and the headers are written once; forms POST to relative paths
// under /m/<id>/<secret> (CSP form-action 'self'). The neutral page for unknown, expired and
// retracted links takes no argument, so it cannot differ between them.
#include "sealrelay/fallback/portal_pages.hh"

#include <cctype>
#include <cstring>
#include <string>

namespace sr::fallback::portal {
namespace {

constexpr std::string_view k_css =
    "body{font-family:system-ui,sans-serif;line-height:1.5;margin:0;padding:1em;"
    "color:#1a1a1a;background:#f6f6f6}"
    "main{max-width:44em;margin:0 auto;background:#fff;padding:1em 1.25em;"
    "border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.15)}"
    "h1{font-size:1.3em;margin-top:0}"
    "input,button{font-size:1.1em;padding:.5em .75em;max-width:100%;box-sizing:border-box}"
    "input[name=code]{width:9em;letter-spacing:.2em;font-family:monospace}"
    "button{background:#1f5fa8;color:#fff;border:0;border-radius:4px;cursor:pointer}"
    "button.secondary{background:#e4e4e4;color:#1a1a1a}"
    ".error{color:#a40000;font-weight:bold}"
    "dl.headers{display:grid;grid-template-columns:auto 1fr;gap:.2em .8em;"
    "overflow-wrap:anywhere}"
    "dl.headers dt{font-weight:bold}dl.headers dd{margin:0}"
    "pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#fafafa;padding:.75em;"
    "border:1px solid #ddd}"
    "iframe.html-part{width:100%;height:70vh;border:1px solid #ddd;background:#fff}"
    "ul.attachments{padding-left:1.2em;overflow-wrap:anywhere}";

// The path of a link on the portal, escaped for an attribute (id and secret are base64url,
// but they came from a URL: escape anyway).
std::string base_path(const escrow::link& link) {
  return "/m/" + html_escape(link.id) + "/" + html_escape(link.secret);
}

page layout(int status, std::string_view title, std::string_view inner) {
  page p;
  p.status = status;
  p.headers = security_headers();
  p.headers.push_back({"Content-Type", "text/html; charset=utf-8"});
  std::string& b = p.body;
  b += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  b += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  b += "<meta name=\"robots\" content=\"noindex, nofollow\">\n";
  b += "<title>" + html_escape(title) + "</title>\n";
  b += "<style>";
  b += k_css;
  b += "</style>\n</head>\n<body>\n<main>\n";
  b += "<h1>" + html_escape(title) + "</h1>\n";
  b += inner;
  b += "</main>\n</body>\n</html>\n";
  return p;
}

std::string request_form(const escrow::link& link, std::string_view label, bool secondary) {
  std::string f;
  f += "<form method=\"post\" action=\"" + base_path(link) + "/code\">\n";
  f += secondary ? "<button type=\"submit\" class=\"secondary\">" : "<button type=\"submit\">";
  f += html_escape(label) + "</button>\n</form>\n";
  return f;
}

std::string code_form(const escrow::link& link) {
  std::string f;
  f += "<form method=\"post\" action=\"" + base_path(link) + "\">\n";
  f += "<p><label for=\"code\">Code</label><br>\n";
  f += "<input id=\"code\" name=\"code\" type=\"text\" inputmode=\"numeric\" "
       "pattern=\"[0-9]{6}\" maxlength=\"6\" autocomplete=\"one-time-code\" required "
       "autofocus></p>\n";
  f += "<p><button type=\"submit\">Show the message</button></p>\n";
  f += "</form>\n";
  return f;
}

std::string human_size(std::uint64_t n) {
  if (n < 1024) return std::to_string(n) + " bytes";
  if (n < 1024 * 1024) return std::to_string((n + 512) / 1024) + " KB";
  std::uint64_t tenths = (n * 10 + 512 * 1024) / (1024 * 1024);
  return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + " MB";
}

}  // namespace

std::vector<http_header> security_headers() {
  return {
      {"Content-Security-Policy", std::string(content_security_policy)},
      {"Cache-Control", "no-store"},
      {"Referrer-Policy", "no-referrer"},
      {"X-Content-Type-Options", "nosniff"},
      {"X-Frame-Options", "DENY"},
  };
}

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

page code_request_page(const escrow::link& link) {
  std::string in;
  in += "<p>To protect this message, we send a one-time code to your email address "
        "first.</p>\n";
  in += request_form(link, "Email me a code", false);
  return layout(200, "Secure message", in);
}

page enter_code_page(const escrow::link& link) {
  std::string in;
  in += "<p>We sent a 6-digit code to your email address. It is valid for 10 minutes.</p>\n";
  in += code_form(link);
  in += "<p>No email? Check your spam folder, or ask for a new code.</p>\n";
  in += request_form(link, "Send a new code", true);
  return layout(200, "Enter your code", in);
}

page wrong_code_page(const escrow::link& link, int tries_left) {
  std::string in;
  in += "<p class=\"error\">That code is not right. ";
  in += tries_left == 1 ? std::string("1 try left.")
                        : std::to_string(tries_left < 0 ? 0 : tries_left) + " tries left.";
  in += "</p>\n";
  in += code_form(link);
  in += request_form(link, "Send a new code", true);
  return layout(403, "Enter your code", in);
}

page code_expired_page(const escrow::link& link) {
  std::string in;
  in += "<p class=\"error\">This code has expired or was already used.</p>\n";
  in += request_form(link, "Send a new code", false);
  return layout(403, "Code expired", in);
}

page rate_limited_page(const escrow::link& link) {
  std::string in;
  in += "<p class=\"error\">Too many codes were asked for. Please wait a few minutes and "
        "try again.</p>\n";
  in += request_form(link, "Send a new code", true);
  return layout(429, "Please wait", in);
}

page locked_page() {
  return layout(403, "Message locked",
                "<p class=\"error\">Too many wrong codes were entered, so this message is "
                "locked. Please contact the sender.</p>\n");
}

page unavailable_page() {
  return layout(404, "Message not available",
                "<p>This link does not show a message. It may have expired or been "
                "withdrawn, or the link may be incomplete. Please contact the sender.</p>\n");
}

page refusal_page(access why) {
  return why == access::locked ? locked_page() : unavailable_page();
}

page refusal_page(escrow::open_status why) {
  return why == escrow::open_status::locked ? locked_page() : unavailable_page();
}

page server_error_page() {
  return layout(500, "Please try again later",
                "<p>The secure message cannot be shown right now. Please try again "
                "later.</p>\n");
}

namespace {

bool is_token_char(unsigned char c) {
  // RFC 9110 tchar
  return std::isalnum(c) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

// "type/subtype" of tchars only (parameters dropped), lower-cased; "" when not that shape.
std::string plain_media_type(std::string_view ct) {
  ct = ct.substr(0, ct.find(';'));
  while (!ct.empty() && (ct.back() == ' ' || ct.back() == '\t')) ct.remove_suffix(1);
  auto slash = ct.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == ct.size()) return {};
  std::string out;
  for (std::size_t i = 0; i < ct.size(); ++i) {
    auto c = static_cast<unsigned char>(ct[i]);
    if (i != slash && (c == '\0' || !is_token_char(c))) return {};
    out += static_cast<char>(std::tolower(c));
  }
  return out;
}

}  // namespace

std::vector<http_header> attachment_headers(std::string_view name, std::string_view content_type,
                                            std::uint64_t size) {
  auto h = security_headers();
  std::string type = plain_media_type(content_type);
  h.push_back({"Content-Type", type.empty() ? "application/octet-stream" : type});
  // The ASCII fallback keeps letters, digits and a few safe marks; filename* carries the
  // exact name percent-encoded (RFC 5987 attr-char kept as is).
  std::string ascii, encoded;
  for (char ch : name) {
    auto c = static_cast<unsigned char>(ch);
    ascii += std::isalnum(c) || std::strchr(".-_ ()+,", c) ? static_cast<char>(c) : '_';
    if (std::isalnum(c) || std::strchr("!#$&+-.^_`|~", c)) {
      encoded += static_cast<char>(c);
    } else {
      static constexpr char hex[] = "0123456789ABCDEF";
      encoded += '%';
      encoded += hex[c >> 4];
      encoded += hex[c & 15];
    }
  }
  if (ascii.empty()) ascii = encoded = "attachment";
  h.push_back({"Content-Disposition",
               "attachment; filename=\"" + ascii + "\"; filename*=UTF-8''" + encoded});
  h.push_back({"Content-Length", std::to_string(size)});
  return h;
}

page message_page(const escrow::link& link, const message_view& m) {
  std::string in;
  in += "<dl class=\"headers\">\n";
  auto field = [&](std::string_view name, const std::string& value) {
    if (value.empty() && name == "Cc") return;
    in += "<dt>" + std::string(name) + "</dt><dd>" + html_escape(value) + "</dd>\n";
  };
  field("From", m.from);
  field("To", m.to);
  field("Cc", m.cc);
  field("Date", m.date);
  field("Subject", m.subject);
  in += "</dl>\n";
  if (!m.text.empty()) in += "<pre>" + html_escape(m.text) + "</pre>\n";
  if (!m.sanitized_html.empty()) {
    // An empty sandbox attribute: no scripts, no forms, no top navigation, a unique origin.
    in += "<iframe class=\"html-part\" title=\"Message (HTML)\" sandbox=\"\" "
          "referrerpolicy=\"no-referrer\" srcdoc=\"" + html_escape(m.sanitized_html) +
          "\"></iframe>\n";
  }
  if (m.text.empty() && m.sanitized_html.empty()) in += "<p>(This message has no text.)</p>\n";
  if (!m.attachments.empty()) {
    in += "<h2>Attachments</h2>\n<ul class=\"attachments\">\n";
    for (std::size_t n = 0; n < m.attachments.size(); ++n) {
      const auto& a = m.attachments[n];
      std::string name = a.name.empty() ? "attachment-" + std::to_string(n + 1) : a.name;
      in += "<li><a href=\"" + base_path(link) + "/a/" + std::to_string(n) +
            "\" download>" + html_escape(name) + "</a> (" + html_escape(a.content_type) +
            ", " + human_size(a.size) + ")</li>\n";
    }
    in += "</ul>\n";
  }
  return layout(200, "Secure message", in);
}

}  // namespace sr::fallback::portal
