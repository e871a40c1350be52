// The portal's pages (portal_pages.hh): every page carries exactly the security headers, a
// viewport meta and no script, and its tags balance; every interpolated field is escaped;
// unknown, expired, retracted and wrong-secret links get byte-identical pages.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "sealrelay/fallback/portal_pages.hh"

namespace sr::fallback::portal {
namespace {

const escrow::link k_link{"AAAAAAAAAAAAAAAAAAAAAA", "b-_9b-_9b-_9b-_9b-_9b-_9b-_9b-_9b-_9b-_9abc"};
const std::string k_base = "/m/" + k_link.id + "/" + k_link.secret;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Check that the tags of `html` balance: void elements stand alone, every other element is
// closed in order, attribute values are double-quoted, <style> holds no '<'. Returns "" or
// what is wrong.
std::string check_balanced(const std::string& html) {
  static const std::vector<std::string> k_void = {"meta", "input", "br", "img", "hr", "link"};
  std::vector<std::string> open;
  std::size_t i = 0;
  while ((i = html.find('<', i)) != std::string::npos) {
    if (html.compare(i, 9, "<!DOCTYPE") == 0) {
      i = html.find('>', i);
      continue;
    }
    bool closing = html[i + 1] == '/';
    std::size_t j = i + 1 + closing;
    std::size_t name_end = j;
    while (name_end < html.size() && std::isalnum(static_cast<unsigned char>(html[name_end])))
      ++name_end;
    std::string name = html.substr(j, name_end - j);
    if (name.empty()) return "a '<' that starts no tag at " + std::to_string(i);
    // Walk the attributes to the '>' (a '>' inside a quoted value does not end the tag).
    std::size_t k = name_end;
    while (k < html.size() && html[k] != '>') {
      if (html[k] == '=') {
        if (html[k + 1] != '"') return "unquoted attribute value in <" + name + ">";
        k = html.find('"', k + 2);
        if (k == std::string::npos) return "unterminated attribute in <" + name + ">";
      } else if (html[k] == '<' || html[k] == '"' || html[k] == '\'') {
        return "stray character inside <" + name + ">";
      }
      ++k;
    }
    if (k >= html.size()) return "unterminated tag <" + name;
    if (closing) {
      if (open.empty() || open.back() != name)
        return "</" + name + "> closes " + (open.empty() ? "nothing" : "<" + open.back() + ">");
      open.pop_back();
    } else if (std::find(k_void.begin(), k_void.end(), name) == k_void.end()) {
      open.push_back(name);
      if (name == "style") {
        std::size_t end = html.find("</style>", k);
        if (end == std::string::npos) return "unclosed <style>";
        if (html.substr(k + 1, end - k - 1).find('<') != std::string::npos)
          return "'<' inside <style>";
        k = end - 1;
      }
    }
    i = k + 1;
  }
  if (!open.empty()) return "<" + open.back() + "> never closed";
  return "";
}

message_view nasty_message() {
  message_view m;
  m.from = "From <b>\"Dr\" & 'Who'</b>";
  m.to = "To <i>\"P\" & 'x'</i>";
  m.cc = "Cc <u>\"c\" & 'c'</u>";
  m.date = "Date <s>\"d\" & 'd'</s>";
  m.subject = "Subject <script>alert(\"s\")</script> & 'x'";
  m.text = "Text </pre><script>alert('t')</script> & \"q\"";
  m.sanitized_html = "<p class=\"x\">Hi &amp; 'bye' <b>bold</b></p>";
  m.attachments = {{"report <img src=x>\"&'.pdf", "application/pdf", 2048},
                   {"", "text/plain\"><b>", 10}};
  return m;
}

std::vector<std::pair<std::string, page>> all_pages() {
  return {
      {"code_request", code_request_page(k_link)},
      {"enter_code", enter_code_page(k_link)},
      {"wrong_code", wrong_code_page(k_link, 3)},
      {"code_expired", code_expired_page(k_link)},
      {"rate_limited", rate_limited_page(k_link)},
      {"locked", locked_page()},
      {"unavailable", unavailable_page()},
      {"server_error", server_error_page()},
      {"message", message_page(k_link, nasty_message())},
      {"message_plain", message_page(k_link, message_view{"a", "b", "", "c", "d", "text",
                                                          "", {}})},
  };
}

TEST(PortalPages, EscapeFunction) {
  EXPECT_EQ(html_escape("<>&\"'"), "&lt;&gt;&amp;&quot;&#39;");
  EXPECT_EQ(html_escape("plain text / 123 é"), "plain text / 123 é");
  EXPECT_EQ(html_escape("&amp;"), "&amp;amp;");  // not idempotent: escape exactly once
  EXPECT_EQ(html_escape(""), "");
}

TEST(PortalPages, SecurityHeadersExactly) {
  std::vector<http_header> want = {
      {"Content-Security-Policy",
       "default-src 'none'; style-src 'unsafe-inline'; img-src data: cid: 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"},
      {"Cache-Control", "no-store"},
      {"Referrer-Policy", "no-referrer"},
      {"X-Content-Type-Options", "nosniff"},
      {"X-Frame-Options", "DENY"},
  };
  EXPECT_EQ(security_headers(), want);
  for (auto& [name, p] : all_pages()) {
    auto expect = want;
    expect.push_back({"Content-Type", "text/html; charset=utf-8"});
    EXPECT_EQ(p.headers, expect) << name;
  }
}

TEST(PortalPages, EveryPageIsWellFormedPhoneReadyAndScriptFree) {
  for (auto& [name, p] : all_pages()) {
    SCOPED_TRACE(name);
    const std::string& b = p.body;
    EXPECT_TRUE(b.starts_with("<!DOCTYPE html>\n<html lang=\"en\">")) << b.substr(0, 40);
    EXPECT_NE(b.find("<meta name=\"viewport\" content=\"width=device-width, "
                     "initial-scale=1\">"),
              std::string::npos);
    EXPECT_NE(b.find("<meta charset=\"utf-8\">"), std::string::npos);
    std::string lb = lower(b);
    EXPECT_EQ(lb.find("<script"), std::string::npos);
    EXPECT_EQ(lb.find("javascript:"), std::string::npos);
    for (std::string_view handler : {"onclick", "onload", "onerror", "onsubmit"})
      EXPECT_EQ(lb.find(handler), std::string::npos) << handler;
    EXPECT_EQ(lb.find("<link"), std::string::npos) << "CSS is inline only";
    EXPECT_EQ(check_balanced(b), "");
    EXPECT_GE(p.status, 200);
  }
}

TEST(PortalPages, FormsPostToTheLinkWithoutScript) {
  auto req = code_request_page(k_link);
  EXPECT_EQ(req.status, 200);
  EXPECT_NE(req.body.find("<form method=\"post\" action=\"" + k_base + "/code\">"),
            std::string::npos);
  EXPECT_NE(req.body.find("<button type=\"submit\">"), std::string::npos);

  auto enter = enter_code_page(k_link);
  EXPECT_NE(enter.body.find("<form method=\"post\" action=\"" + k_base + "\">"),
            std::string::npos);
  EXPECT_NE(enter.body.find("name=\"code\""), std::string::npos);
  EXPECT_NE(enter.body.find("10 minutes"), std::string::npos);
  EXPECT_NE(enter.body.find("action=\"" + k_base + "/code\""), std::string::npos)
      << "a new code can be asked for";

  auto wrong = wrong_code_page(k_link, 3);
  EXPECT_EQ(wrong.status, 403);
  EXPECT_NE(wrong.body.find("3 tries left."), std::string::npos);
  EXPECT_NE(wrong.body.find("name=\"code\""), std::string::npos);
  EXPECT_NE(wrong_code_page(k_link, 1).body.find("1 try left."), std::string::npos);

  EXPECT_EQ(code_expired_page(k_link).status, 403);
  EXPECT_EQ(rate_limited_page(k_link).status, 429);
  EXPECT_EQ(server_error_page().status, 500);
}

TEST(PortalPages, RefusalsDoNotRevealWhichOne) {
  auto unknown = refusal_page(access::unknown);
  EXPECT_EQ(unknown.status, 404);
  for (auto why : {access::expired, access::retracted}) {
    auto p = refusal_page(why);
    EXPECT_EQ(p.status, unknown.status);
    EXPECT_EQ(p.headers, unknown.headers);
    EXPECT_EQ(p.body, unknown.body);
  }
  for (auto why : {escrow::open_status::unknown, escrow::open_status::expired,
                   escrow::open_status::retracted, escrow::open_status::wrong_secret}) {
    auto p = refusal_page(why);
    EXPECT_EQ(p.status, unknown.status) << escrow::to_string(why);
    EXPECT_EQ(p.headers, unknown.headers) << escrow::to_string(why);
    EXPECT_EQ(p.body, unknown.body) << escrow::to_string(why);
  }
  // "expired" may appear, as one of the possibilities the one page lists for all.
  for (std::string_view word : {"retracted", "unknown", "wrong", "locked"})
    EXPECT_EQ(lower(unknown.body).find(word), std::string::npos) << word;
  auto locked = refusal_page(access::locked);
  EXPECT_EQ(locked.status, 403);
  EXPECT_NE(locked.body.find("locked"), std::string::npos);
  EXPECT_EQ(refusal_page(escrow::open_status::locked).body, locked.body);
  EXPECT_NE(locked.body, unknown.body);
}

TEST(PortalPages, MessagePageEscapesEveryField) {
  auto m = nasty_message();
  auto p = message_page(k_link, m);
  EXPECT_EQ(p.status, 200);
  const std::string& b = p.body;
  for (const std::string* field : {&m.from, &m.to, &m.cc, &m.date, &m.subject}) {
    EXPECT_NE(b.find("<dd>" + html_escape(*field) + "</dd>"), std::string::npos) << *field;
    EXPECT_EQ(b.find(*field), std::string::npos) << "raw " << *field;
  }
  for (auto name : {"From", "To", "Cc", "Date", "Subject"})
    EXPECT_NE(b.find(std::string("<dt>") + name + "</dt>"), std::string::npos) << name;
  EXPECT_NE(b.find("<pre>" + html_escape(m.text) + "</pre>"), std::string::npos);
  // The sanitised HTML lives in a sandboxed srcdoc frame, escaped once as an attribute.
  EXPECT_NE(b.find("sandbox=\"\""), std::string::npos);
  EXPECT_EQ(b.find("allow-"), std::string::npos);
  EXPECT_NE(b.find("srcdoc=\"&lt;p class=&quot;x&quot;&gt;Hi &amp;amp; &#39;bye&#39; "
                   "&lt;b&gt;bold&lt;/b&gt;&lt;/p&gt;\""),
            std::string::npos);
  EXPECT_EQ(b.find(m.sanitized_html), std::string::npos);
  // Attachments: links by index, names and types escaped, an unnamed one named.
  EXPECT_NE(b.find("<a href=\"" + k_base + "/a/0\" download>" +
                   html_escape(m.attachments[0].name) + "</a> (application/pdf, 2 KB)"),
            std::string::npos);
  EXPECT_NE(b.find("<a href=\"" + k_base + "/a/1\" download>attachment-2</a> (" +
                   html_escape(m.attachments[1].content_type) + ", 10 bytes)"),
            std::string::npos);
  EXPECT_EQ(b.find(m.attachments[0].name), std::string::npos);
  EXPECT_EQ(b.find(m.attachments[1].content_type), std::string::npos);
  EXPECT_EQ(check_balanced(b), "");
}

TEST(PortalPages, LinkPartsAreEscapedInAttributes) {
  escrow::link odd{"a\"><b>'&", "s<x>"};
  for (auto& p : {code_request_page(odd), enter_code_page(odd), wrong_code_page(odd, 2),
                  message_page(odd, nasty_message())}) {
    EXPECT_NE(p.body.find("/m/a&quot;&gt;&lt;b&gt;&#39;&amp;/s&lt;x&gt;"), std::string::npos);
    EXPECT_EQ(p.body.find(odd.id), std::string::npos);
    EXPECT_EQ(p.body.find(odd.secret), std::string::npos);
    EXPECT_EQ(check_balanced(p.body), "");
  }
}

TEST(PortalPages, NoTextAndNoHtmlStillShowsAPage) {
  message_view m;
  m.from = "a@b";
  auto p = message_page(k_link, m);
  EXPECT_NE(p.body.find("(This message has no text.)"), std::string::npos);
  EXPECT_EQ(p.body.find("<iframe"), std::string::npos);
  EXPECT_EQ(p.body.find("<dt>Cc</dt>"), std::string::npos);
  EXPECT_EQ(check_balanced(p.body), "");
}

TEST(PortalPages, CheckerCatchesUnbalancedTags) {
  // The checker above must be able to fail.
  EXPECT_NE(check_balanced("<div><p></div></p>"), "");
  EXPECT_NE(check_balanced("<div>"), "");
  EXPECT_NE(check_balanced("<a href=x>y</a>"), "");
  EXPECT_NE(check_balanced("<p>a < b</p>"), "");
  EXPECT_EQ(check_balanced("<p>a &lt; b<br></p>"), "");
}

TEST(PortalPages, AttachmentHeadersCannotBeInjected) {
  auto h = attachment_headers("Befund März \"final\".pdf\r\nSet-Cookie: x=1",
                              "application/PDF; name=\"x\"", 1234);
  auto want = security_headers();
  want.push_back({"Content-Type", "application/pdf"});
  want.push_back({"Content-Disposition",
                  "attachment; filename=\"Befund M__rz _final_.pdf__Set-Cookie_ x_1\"; "
                  "filename*=UTF-8''Befund%20M%C3%A4rz%20%22final%22.pdf"
                  "%0D%0ASet-Cookie%3A%20x%3D1"});
  want.push_back({"Content-Length", "1234"});
  EXPECT_EQ(h, want);
  for (auto& [name, value] : h)
    for (unsigned char c : value) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << name;

  for (std::string_view bad :
       std::vector<std::string_view>{"text/html\r\nX: y", "text", "/x", "text/", "te xt/html",
                                     std::string_view("text/h\0ml", 9), "a/b/c\"x"}) {
    auto hh = attachment_headers("a.txt", bad, 1);
    EXPECT_EQ(hh[5], (http_header{"Content-Type", "application/octet-stream"})) << bad;
  }
  auto unnamed = attachment_headers("", "text/plain", 0);
  EXPECT_EQ(unnamed[6].value, "attachment; filename=\"attachment\"; filename*=UTF-8''attachment");
}

}  // namespace
}  // namespace sr::fallback::portal
