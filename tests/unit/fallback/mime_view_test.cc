// mime::parse / mime::render on real-shaped messages: a Thunderbird-style mixed/alternative/
// related message with an inline logo and attachments, Outlook-style RFC 2047 file names,
// RFC 2231 continuations, ISO-8859-1 and windows-1252 text, quoted-printable, and hostile
// shapes (deep nesting, thousands of parts, no closing boundary, binary junk).
#include <gtest/gtest.h>

#include <string>

#include "sealrelay/fallback/mime_view.hh"
#include "sealrelay/util/text.hh"

namespace {

using namespace sr::fallback;

// A 1x1 transparent PNG.
const std::string png_b64 =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

std::string crlf(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') out += "\r\n";
    else out += c;
  }
  return out;
}

std::string b64(std::string_view s) {
  std::string out;
  sr::append_base64_lines(out, s);
  return out;
}

std::string pdf_bytes() {
  std::string pdf = "%PDF-1.4\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<<>>\nendobj\n";
  for (int i = 0; i < 300; ++i) pdf += static_cast<char>(i * 7);
  return pdf + "\n%%EOF\n";
}

std::string thunderbird_message() {
  return crlf(
      "Return-Path: <lab@bank.example>\n"
      "Message-ID: <4711@bank.example>\n"
      "Date: Mon, 7 Dec 2026 01:00:00 +0100\n"
      "MIME-Version: 1.0\n"
      "From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <lab@bank.example>\n"
      "To: Pat <pat@clinic.example>\n"
      "Cc: =?ISO-8859-1?Q?Fran=E7ois?= <f@clinic.example>\n"
      "Subject: =?UTF-8?Q?Ihre_Ergebnisse_=E2=80=93_Gr=C3=BC=C3=9Fe?=\n"
      "Content-Type: multipart/mixed;\n"
      " boundary=\"------------mixed01\"\n"
      "\n"
      "This is a multi-part message in MIME format.\n"
      "--------------mixed01\n"
      "Content-Type: multipart/alternative;\n"
      " boundary=\"------------alt02\"\n"
      "\n"
      "\n"
      "--------------alt02\n"
      "Content-Type: text/plain; charset=UTF-8; format=flowed\n"
      "Content-Transfer-Encoding: quoted-printable\n"
      "\n"
      "Gr=C3=BC=C3=9Fe,\n"
      "alles in Ordnung. Ein sehr langer Satz, der weich umbrochen wird und =\n"
      "weitergeht.\n"
      "\n"
      "--------------alt02\n"
      "Content-Type: multipart/related;\n"
      " boundary=\"------------rel03\"\n"
      "\n"
      "\n"
      "--------------rel03\n"
      "Content-Type: text/html; charset=UTF-8\n"
      "Content-Transfer-Encoding: 8bit\n"
      "\n"
      "<html><head><script>alert(1)</script></head><body>\n"
      "<p onclick=\"steal()\">Gr\xC3\xBC\xC3\x9F" "e</p>\n"
      "<img src=\"cid:part1.logo@bank.example\" alt=\"logo\">\n"
      "<img src=\"https://tracker.example/pixel.gif\">\n"
      "<p>text mentioning cid:part1.logo@bank.example stays</p>\n"
      "</body></html>\n"
      "\n"
      "--------------rel03\n"
      "Content-Type: image/png; name=\"logo.png\"\n"
      "Content-Disposition: inline; filename=\"logo.png\"\n"
      "Content-Id: <part1.logo@bank.example>\n"
      "Content-Transfer-Encoding: base64\n"
      "\n" + png_b64 + "\n"
      "\n"
      "--------------rel03--\n"
      "\n"
      "--------------alt02--\n"
      "--------------mixed01\n"
      "Content-Type: application/pdf; name=\"befund.pdf\"\n"
      "Content-Disposition: attachment;\n"
      " filename*=UTF-8''r%C3%A9sum%C3%A9%20final.pdf\n"
      "Content-Transfer-Encoding: base64\n"
      "\n" + b64(pdf_bytes()) +
      "--------------mixed01\n"
      "Content-Type: text/plain; charset=UTF-8;\n"
      " name=\"=?UTF-8?B?w5xiZXJzaWNodC50eHQ=?=\"\n"
      "Content-Disposition: attachment;\n"
      " filename=\"=?UTF-8?B?w5xiZXJzaWNodC50eHQ=?=\"\n"
      "Content-Transfer-Encoding: 7bit\n"
      "\n"
      "line one\n"
      "line two\n"
      "--------------mixed01--\n");
}

TEST(mime_view, thunderbird_mixed_alternative_related) {
  auto v = mime::parse(thunderbird_message());
  EXPECT_EQ(v.page.from, "J\xC3\xBCrgen M\xC3\xBCller <lab@bank.example>");
  EXPECT_EQ(v.page.to, "Pat <pat@clinic.example>");
  EXPECT_EQ(v.page.cc, "Fran\xC3\xA7ois <f@clinic.example>");
  EXPECT_EQ(v.page.date, "Mon, 7 Dec 2026 01:00:00 +0100");
  EXPECT_EQ(v.page.subject, "Ihre Ergebnisse \xE2\x80\x93 Gr\xC3\xBC\xC3\x9F" "e");
  EXPECT_EQ(v.page.text,
            "Gr\xC3\xBC\xC3\x9F" "e,\nalles in Ordnung. Ein sehr langer Satz, der weich "
            "umbrochen wird und weitergeht.\n");
  // The logo is inlined as a data: URL; the text mention is not an attribute and stays.
  EXPECT_NE(v.html.find("src=\"data:image/png;base64," + png_b64.substr(0, 20)),
            std::string::npos) << v.html;
  EXPECT_NE(v.html.find("mentioning cid:part1.logo@bank.example"), std::string::npos);
  // The inlined logo is not an attachment; the PDF and the text file are.
  ASSERT_EQ(v.page.attachments.size(), 2u);
  EXPECT_EQ(v.page.attachments[0].name, "r\xC3\xA9sum\xC3\xA9 final.pdf");
  EXPECT_EQ(v.page.attachments[0].content_type, "application/pdf");
  EXPECT_EQ(v.page.attachments[0].size, pdf_bytes().size());
  EXPECT_TRUE(v.attachment_bytes[0] == pdf_bytes());
  EXPECT_EQ(v.page.attachments[1].name, "\xC3\x9C" "bersicht.txt");
  EXPECT_EQ(v.page.attachments[1].content_type, "text/plain");
  EXPECT_EQ(v.attachment_bytes[1], "line one\r\nline two");
}

TEST(mime_view, render_sanitises_and_keeps_the_inlined_image) {
  auto v = mime::render(thunderbird_message());
  const std::string& h = v.page.sanitized_html;
  EXPECT_EQ(h.find("<script"), std::string::npos) << h;
  EXPECT_EQ(h.find("alert(1)"), std::string::npos) << h;
  EXPECT_EQ(h.find("onclick"), std::string::npos) << h;
  EXPECT_EQ(h.find("tracker.example"), std::string::npos) << h;
  EXPECT_NE(h.find("data:image/png;base64,"), std::string::npos) << h;
  EXPECT_NE(h.find("Gr\xC3\xBC\xC3\x9F" "e"), std::string::npos) << h;
}

TEST(mime_view, latin1_quoted_printable_single_part) {
  std::string m = crlf(
      "From: \"M\xFCller\" <m@x.example>\n"  // raw 8-bit in a header: not UTF-8
      "Subject: =?iso-8859-1?q?=DCbersicht?= =?iso-8859-1?q?_f=FCr?= Sie\n"
      "Content-Type: text/plain; charset=\"ISO-8859-1\"\n"
      "Content-Transfer-Encoding: quoted-printable\n"
      "\n"
      "Sch=F6ne Gr=FC=DFe=\n"
      " und =3D Ende\n");
  auto v = mime::parse(m);
  EXPECT_EQ(v.page.subject, "\xC3\x9C" "bersicht f\xC3\xBCr Sie");
  EXPECT_EQ(v.page.from, "\"M\xEF\xBF\xBDller\" <m@x.example>");
  EXPECT_EQ(v.page.text, "Sch\xC3\xB6ne Gr\xC3\xBC\xC3\x9F" "e und = Ende\n");
  EXPECT_TRUE(v.page.attachments.empty());
  EXPECT_TRUE(v.html.empty());
}

TEST(mime_view, windows_1252_and_koi8_through_iconv) {
  EXPECT_EQ(mime::to_utf8("\x80 5", "windows-1252"), "\xE2\x82\xAC 5");
  EXPECT_EQ(mime::to_utf8("\xF0\xD2\xC9\xD7\xC5\xD4", "KOI8-R"),
            "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82");
  EXPECT_EQ(mime::to_utf8("ok \xFF", "no-such-charset"), "ok \xEF\xBF\xBD");
  EXPECT_EQ(mime::to_utf8("a\xC3", "utf-8"), "a\xEF\xBF\xBD");
  EXPECT_EQ(mime::to_utf8("\xED\xA0\x80", "utf-8"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(mime_view, rfc2047_words) {
  EXPECT_EQ(mime::decode_header("=?UTF-8?B?w6k=?= =?UTF-8?B?w6k=?="), "\xC3\xA9\xC3\xA9");
  EXPECT_EQ(mime::decode_header("a =?utf-8?q?b?= c"), "a b c");
  // A multi-byte character split across two words of one charset.
  EXPECT_EQ(mime::decode_header("=?UTF-8?B?4oI=?=\r\n =?UTF-8?B?rA==?="), "\xE2\x82\xAC");
  EXPECT_EQ(mime::decode_header("=?UTF-8*en?Q?hi?="), "hi");
  EXPECT_EQ(mime::decode_header("=?bogus"), "=?bogus");
  EXPECT_EQ(mime::decode_header("plain  text"), "plain  text");
}

TEST(mime_view, rfc2231_continuations_and_content_type_name) {
  std::string m = crlf(
      "Content-Type: multipart/mixed; boundary=b\n"
      "\n"
      "--b\n"
      "Content-Type: text/plain\n"
      "\n"
      "body\n"
      "--b\n"
      "Content-Type: application/octet-stream\n"
      "Content-Disposition: attachment; filename*0*=UTF-8''%E2%82%AC; filename*1=\"-rate.txt\"\n"
      "\n"
      "x\n"
      "--b\n"
      "Content-Type: application/vnd.ms-excel; name=\"../../etc/table.xls\"\n"
      "Content-Transfer-Encoding: base64\n"
      "\n" + b64("xls") +
      "--b\n"
      "Content-Type: text/calendar; charset=utf-8\n"
      "\n"
      "BEGIN:VCALENDAR\n"
      "--b--\n");
  auto v = mime::parse(m);
  EXPECT_EQ(v.page.text, "body");
  ASSERT_EQ(v.page.attachments.size(), 3u);
  EXPECT_EQ(v.page.attachments[0].name, "\xE2\x82\xAC-rate.txt");
  EXPECT_EQ(v.attachment_bytes[0], "x");
  EXPECT_EQ(v.page.attachments[1].name, "table.xls");
  EXPECT_EQ(v.attachment_bytes[1], "xls");
  EXPECT_EQ(v.page.attachments[2].content_type, "text/calendar");
  EXPECT_EQ(v.page.attachments[2].name, "");
}

TEST(mime_view, unusable_inline_images_become_attachments) {
  std::string m = crlf(
      "Content-Type: multipart/related; boundary=r\n"
      "\n"
      "--r\n"
      "Content-Type: text/html\n"
      "\n"
      "<img src=\"cid:vec\"><img src='cid:a%40b'>\n"
      "--r\n"
      "Content-Type: image/svg+xml\n"
      "Content-ID: <vec>\n"
      "\n"
      "<svg onload=alert(1)></svg>\n"
      "--r\n"
      "Content-Type: image/gif\n"
      "Content-ID: <a@b>\n"
      "Content-Transfer-Encoding: base64\n"
      "\n"
      "R0lGODlhAQABAAAAACw=\n"
      "--r\n"
      "Content-Type: image/jpeg\n"
      "Content-ID: <unused>\n"
      "\n"
      "jpg\n"
      "--r--\n");
  auto v = mime::parse(m);
  EXPECT_NE(v.html.find("src=\"cid:vec\""), std::string::npos) << v.html;
  EXPECT_NE(v.html.find("src='data:image/gif;base64,R0lGODlhAQABAAAAACw='"), std::string::npos)
      << v.html;
  ASSERT_EQ(v.page.attachments.size(), 2u);
  EXPECT_EQ(v.page.attachments[0].content_type, "image/svg+xml");
  EXPECT_EQ(v.page.attachments[0].name, "image-1.svg+xml");
  EXPECT_EQ(v.page.attachments[1].name, "image-2.jpg");
  auto r = mime::render(m);
  EXPECT_EQ(r.page.sanitized_html.find("onload"), std::string::npos);
}

TEST(mime_view, inline_budget_is_bounded) {
  std::string img(2000, '\x01');
  std::string m = crlf(
      "Content-Type: multipart/related; boundary=r\n\n--r\nContent-Type: text/html\n\n"
      "<img src=\"cid:i\"><img src=\"cid:i\">\n--r\nContent-Type: image/png\nContent-ID: <i>\n"
      "Content-Transfer-Encoding: base64\n\n" + b64(img) + "--r--\n");
  mime::limits l;
  l.max_inline_bytes = 3000;  // room for one copy only
  auto v = mime::parse(m, l);
  EXPECT_NE(v.html.find("data:image/png"), std::string::npos);
  EXPECT_NE(v.html.find("cid:i"), std::string::npos);
}

TEST(mime_view, deep_nesting_and_many_parts_are_bounded) {
  std::string deep;
  for (int i = 0; i < 500; ++i)
    deep += "Content-Type: multipart/mixed; boundary=b" + std::to_string(i) + "\r\n\r\n--b" +
            std::to_string(i) + "\r\n";
  deep += "Content-Type: text/plain\r\n\r\nburied\r\n";
  auto v = mime::parse(deep);
  EXPECT_EQ(v.page.text.find("buried"), std::string::npos);

  std::string many = "Content-Type: multipart/mixed; boundary=m\r\n\r\n";
  for (int i = 0; i < 5000; ++i)
    many += "--m\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n";
  many += "--m--\r\n";
  auto w = mime::parse(many);
  EXPECT_EQ(w.page.attachments.size(), mime::limits{}.max_parts);
}

TEST(mime_view, malformed_messages_still_show) {
  // No closing boundary, LF line ends, a part without headers.
  auto v = mime::parse(
      "Subject: x\nContent-Type: multipart/alternative; boundary=z\n\n--z\n\nfirst\n--z\n"
      "Content-Type: text/html\n\n<b>bold");
  EXPECT_EQ(v.page.text, "first");
  EXPECT_EQ(v.html, "<b>bold");
  // No body at all; a boundary parameter missing; binary junk.
  EXPECT_EQ(mime::parse("Subject: only\r\n").page.subject, "only");
  EXPECT_EQ(mime::parse("Content-Type: multipart/mixed\r\n\r\nraw").page.text, "raw");
  // Header values that end inside a comment, after a backslash or after a ';' (fuzz finds).
  for (std::string_view ct : {"text/plain (comment \\", "text/plain; charset=utf-8; ",
                              "text/plain;", "text/plain (open", "m\xFFlti/p\x80rt; name=x"}) {
    auto m = mime::parse("Content-Type: " + std::string(ct) + "\r\n\r\nbody");
    EXPECT_TRUE(m.page.text == "body" || m.page.attachments.size() == 1) << ct;
  }
  EXPECT_EQ(mime::parse("Content-Type: m\xFFlti/p\x80rt\r\n\r\nx").page.attachments.at(0).content_type,
            "application/octet-stream");
  std::string junk;
  for (int i = 0; i < 4096; ++i) junk += static_cast<char>((i * 131) & 0xFF);
  auto j = mime::parse(junk);
  EXPECT_EQ(mime::to_utf8(j.page.text, "utf-8"), j.page.text);  // valid UTF-8
  EXPECT_EQ(j.page.text.find('\0'), std::string::npos);
}

}  // namespace
