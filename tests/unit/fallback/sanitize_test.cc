// The portal's HTML sanitiser (sanitize.hh): OWASP-style XSS vectors never come out as
// markup, remote images go, inline images and formatting stay, text is escaped, and
// hostile depth neither crashes nor stalls it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <string>

#include "sealrelay/fallback/sanitize.hh"

namespace sr::fallback {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Every '<' in the output starts a tag of the allow-list: nothing else is markup.
void expect_only_allowed_tags(const std::string& out) {
  static const char* const allowed[] = {
      "p",  "br", "div",   "span",   "a",   "b",          "strong", "i",  "em",   "u",
      "ul", "ol", "li",    "table",  "thead", "tbody",    "tr",     "td", "th",   "h1",
      "h2", "h3", "h4",    "h5",     "h6",  "blockquote", "pre",    "code", "hr", "img",
      "font", "center", "small", "big", "sub", "sup"};
  for (size_t i = out.find('<'); i != std::string::npos; i = out.find('<', i + 1)) {
    size_t j = i + 1;
    if (j < out.size() && out[j] == '/') ++j;
    size_t k = j;
    while (k < out.size() && std::isalnum(static_cast<unsigned char>(out[k]))) ++k;
    std::string name = out.substr(j, k - j);
    EXPECT_TRUE(std::find(std::begin(allowed), std::end(allowed), name) != std::end(allowed))
        << "tag <" << name << "> in: " << out;
  }
}

// The output holds nothing that could run: no script, handler, javascript: or style.
void expect_inert(const std::string& html) {
  std::string out = sanitize_html(html);
  std::string l = lower(out);
  expect_only_allowed_tags(out);
  EXPECT_EQ(l.find("<script"), std::string::npos) << html << " -> " << out;
  EXPECT_EQ(l.find("javascript:"), std::string::npos) << html << " -> " << out;
  EXPECT_EQ(l.find("vbscript:"), std::string::npos) << html << " -> " << out;
  EXPECT_EQ(l.find(" on"), std::string::npos) << html << " -> " << out;
  EXPECT_EQ(l.find("style"), std::string::npos) << html << " -> " << out;
  EXPECT_EQ(l.find("<iframe"), std::string::npos) << html << " -> " << out;
  EXPECT_EQ(l.find("srcset"), std::string::npos) << html << " -> " << out;
}

TEST(Sanitize, ScriptTagsInEveryCaseAreDroppedWithTheirContent) {
  for (std::string v : {"<script>alert(1)</script>", "<SCRIPT>alert(1)</SCRIPT>",
                        "<ScRiPt>alert(1)</sCrIpT>", "<script src=//evil/x.js></script>",
                        "<script >alert(1)</script >", "<script\n>alert(1)</script>",
                        "<script/x>alert(1)</script>", "<<script>alert(1)//<</script>"}) {
    std::string out = sanitize_html("a" + v + "b");
    expect_inert("a" + v + "b");
    EXPECT_EQ(out.find("alert"), std::string::npos) << v << " -> " << out;
  }
}

TEST(Sanitize, EventHandlersAndTheirElementsGo) {
  expect_inert("<img src=x onerror=alert(1)>");
  expect_inert("<img src=\"cid:a\" onerror=\"alert(1)\" onload=alert(2)>");
  expect_inert("<svg onload=alert(1)><circle/></svg>");
  expect_inert("<svg><script>alert(1)</script></svg>");
  expect_inert("<math><mtext><script>alert(1)</script></mtext></math>");
  expect_inert("<body onload=alert(1)>x</body>");
  expect_inert("<div onmouseover=\"alert(1)\">x</div>");
  expect_inert("<b ONCLICK=alert(1)>x</b>");
  EXPECT_EQ(sanitize_html("<div onclick=alert(1) title=t>x</div>"), "<div title=\"t\">x</div>");
  EXPECT_EQ(sanitize_html("<svg onload=alert(1)>in svg</svg>after"), "after");
}

TEST(Sanitize, JavascriptLinksAreRefusedHoweverObfuscated) {
  for (std::string href :
       {"javascript:alert(1)", "JaVaScRiPt:alert(1)", "java\tscript:alert(1)",
        "java&#9;script:alert(1)", "java&#x0A;script:alert(1)", "&#106;avascript:alert(1)",
        "&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;alert(1)",
        "&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112"
        "&#0000116&#0000058alert(1)",
        " \x01javascript:alert(1)", "javascript&colon;alert(1)", "vbscript:msgbox(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "/relative", "//evil",
        "#frag", ""}) {
    std::string html = "<a href=\"" + href + "\">click</a>";
    std::string out = sanitize_html(html);
    expect_inert(html);
    EXPECT_EQ(out, "click") << href;
  }
  EXPECT_FALSE(is_safe_link("java\nscript:alert(1)"));
  EXPECT_FALSE(is_safe_link("JAVASCRIPT:alert(1)"));
  EXPECT_TRUE(is_safe_link("  HTTPS://example.org/ "));
  EXPECT_TRUE(is_safe_link("mailto:a@example.org"));
}

TEST(Sanitize, SafeLinksOpenInANewContextWithoutReferrer) {
  EXPECT_EQ(sanitize_html("<a href=\"https://example.org/?a=1&amp;b=2\" title=x>go</a>"),
            "<a href=\"https://example.org/?a=1&amp;b=2\" title=\"x\" "
            "rel=\"noopener noreferrer\" target=\"_blank\">go</a>");
  EXPECT_EQ(sanitize_html("<a href=\"mailto:a@example.org\" target=_self rel=opener>m</a>"),
            "<a href=\"mailto:a@example.org\" rel=\"noopener noreferrer\" "
            "target=\"_blank\">m</a>");
  // Whitespace the URL parser removes is removed from what we write too.
  EXPECT_EQ(sanitize_html("<a href=\" ht\ttp://e.org/\">x</a>"),
            "<a href=\"http://e.org/\" rel=\"noopener noreferrer\" target=\"_blank\">x</a>");
}

TEST(Sanitize, FramesObjectsFormsAndDocumentPlumbingGoWithTheirContent) {
  for (std::string v :
       {"<iframe src=\"https://evil/\">inside</iframe>", "<object data=x>inside</object>",
        "<embed src=x>", "<form action=https://evil/><input name=p value=inside><button>"
        "inside</button></form>", "<meta http-equiv=\"refresh\" content=\"0;url=https://evil/\">",
        "<base href=\"https://evil/\">", "<link rel=stylesheet href=https://evil/x.css>",
        "<template><script>inside</script>inside</template>", "<textarea>inside</textarea>",
        "<noscript>inside</noscript>", "<frameset><frame src=x></frameset>"}) {
    std::string out = sanitize_html("a" + v + "b");
    expect_inert("a" + v + "b");
    EXPECT_EQ(out.find("inside"), std::string::npos) << v << " -> " << out;
    EXPECT_EQ(lower(out).find("evil"), std::string::npos) << v << " -> " << out;
  }
}

TEST(Sanitize, StylesGoWithExpressionsAndImports) {
  std::string html =
      "<html><head><style>body{width:expression(alert(1))} @import 'https://evil/';</style>"
      "<title>T</title></head><body><p style=\"width:expression(alert(1));"
      "background:url(https://evil/p.gif)\">text</p></body></html>";
  expect_inert(html);
  EXPECT_EQ(sanitize_html(html), "<p>text</p>");
}

TEST(Sanitize, UnclosedAndNestedTagTricksStayInert) {
  expect_inert("<scr<script>ipt>alert(1)</scr</script>ipt>");
  expect_inert("<script");
  expect_inert("<img src=x onerror=alert(1)");
  expect_inert("<a href=\"javascript:alert(1)\">unclosed");
  expect_inert("<div><span><b>unclosed");
  expect_inert("<<img src=x onerror=alert(1)//<");
  expect_inert("<IMG SRC=`javascript:alert(1)`>");
  expect_inert("<IMG \"\"\"><SCRIPT>alert(1)</SCRIPT>\">");
  expect_inert("<img src=\"x\" srcset=\"https://evil/1.png 1x\">");
  expect_inert("<!--<script>alert(1)</script>--><![CDATA[<script>alert(1)</script>]]>");
  expect_inert("<xmp><script>alert(1)</script></xmp>");
  expect_inert("<plaintext><script>alert(1)</script>");
  EXPECT_EQ(sanitize_html("<div><span><b>unclosed"),
            "<div><span><b>unclosed</b></span></div>");
  // `<scr<script>` is one unknown tag (a tag name runs to the first `>`): unwrapped, and
  // what follows is plain text, escaped.
  EXPECT_EQ(sanitize_html("<scr<script>ipt>alert(1)</script>x"), "ipt&gt;alert(1)x");
  EXPECT_EQ(sanitize_html("<scr<script>x</script>ipt>alert(1)"), "xipt&gt;alert(1)");
}

TEST(Sanitize, RemoteImagesGoInlineImagesStay) {
  EXPECT_EQ(sanitize_html("a<img src=\"https://track.example/p.gif\" width=1 height=1>b"), "ab");
  EXPECT_EQ(sanitize_html("a<img src=\"http://track.example/p.gif\">b"), "ab");
  EXPECT_EQ(sanitize_html("a<img src=\"//track.example/p.gif\">b"), "ab");
  EXPECT_EQ(sanitize_html("a<img>b"), "ab");
  EXPECT_EQ(sanitize_html("<img src=\"cid:logo@x\" alt=\"Logo\" width=\"120\" "
                          "style=\"x\" onload=\"y\">"),
            "<img src=\"cid:logo@x\" alt=\"Logo\" width=\"120\">");
  EXPECT_EQ(sanitize_html("<img src=\"data:image/png;base64,iVBORw0KGgo=\">"),
            "<img src=\"data:image/png;base64,iVBORw0KGgo=\">");
  EXPECT_EQ(sanitize_html("<img src=\"data:image/svg+xml;base64,PHN2Zz4=\">"), "");
  EXPECT_EQ(sanitize_html("<img src=\"data:text/html;base64,PHN2Zz4=\">"), "");
  EXPECT_EQ(sanitize_html("<img src=\"data:image/png;base64,a\"onerror=alert(1)>"),
            "<img src=\"data:image/png;base64,a\">");
  EXPECT_TRUE(is_inline_image("CID:part1"));
  EXPECT_FALSE(is_inline_image("cid:"));
  EXPECT_FALSE(is_inline_image("data:image/png;base64,<b>"));
}

TEST(Sanitize, AllowedFormattingIsKept) {
  std::string html =
      "<h1 align=\"center\">Title</h1><p>Hello <b>bold</b> <strong>s</strong> <i>i</i> <em>e</em> "
      "<u>u</u> <small>s</small> <big>b</big> x<sub>2</sub> y<sup>3</sup></p>"
      "<ul><li>one</li><li>two</li></ul><ol start=\"3\"><li>three</li></ol>"
      "<blockquote>q</blockquote><pre><code>c</code></pre><hr><br>"
      "<table width=\"100%\" border=\"0\" cellpadding=\"2\"><thead><tr><th>h</th></tr></thead>"
      "<tbody><tr><td valign=\"top\" colspan=\"2\" bgcolor=\"#ffffff\">d</td></tr></tbody></table>"
      "<center><font color=\"red\" face=\"Arial\" size=\"2\">f</font></center><div><span>s</span>"
      "</div>";
  EXPECT_EQ(sanitize_html(html), html);
}

TEST(Sanitize, UnknownElementsAreUnwrappedAndBadValuesDropped) {
  EXPECT_EQ(sanitize_html("<custom-x data-a=1><blink>hi</blink></custom-x>"), "hi");
  EXPECT_EQ(sanitize_html("<td>x</td>"), "x");  // a stray cell is no table
  EXPECT_EQ(sanitize_html("<table background=\"https://evil/bg.gif\" width=\"expression(1)\">"
                          "<tr><td>x</td></tr></table>"),
            "<table><tbody><tr><td>x</td></tr></tbody></table>");
}

TEST(Sanitize, TextIsEscaped) {
  EXPECT_EQ(sanitize_html("1 &lt; 2 &amp;&amp; 3 > 2 &quot;q&quot;"),
            "1 &lt; 2 &amp;&amp; 3 &gt; 2 \"q\"");
  EXPECT_EQ(sanitize_html("a < b & c"), "a &lt; b &amp; c");
  EXPECT_EQ(sanitize_html("<p title='\"><script>alert(1)</script>'>t</p>"),
            "<p title=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\">t</p>");
  EXPECT_EQ(sanitize_html("<pre>&lt;script&gt;</pre>"), "<pre>&lt;script&gt;</pre>");
  EXPECT_EQ(sanitize_html(""), "");
}

TEST(Sanitize, DeepNestingIsBoundedNotFatal) {
  for (std::string tag : {"div", "b", "span", "font", "table", "a", "blockquote", "ul"}) {
    std::string html;
    for (int i = 0; i < 10'000; ++i) html += "<" + tag + ">";
    html += "deep<script>alert(1)</script>";
    for (int i = 0; i < 10'000; ++i) html += "</" + tag + ">";
    std::string out = sanitize_html(html);
    expect_only_allowed_tags(out);
    EXPECT_NE(out.find("deep"), std::string::npos) << tag;
    EXPECT_EQ(out.find("<script"), std::string::npos) << tag;
    // At most max_depth elements are open at once in the output.
    size_t depth = 0, max_seen = 0;
    for (size_t i = out.find('<'); i != std::string::npos; i = out.find('<', i + 1)) {
      if (out.compare(i, 2, "</") == 0) {
        if (depth > 0) --depth;
      } else if (out.compare(i, 3, "<br") && out.compare(i, 3, "<hr") && out.compare(i, 4, "<img")) {
        max_seen = std::max(max_seen, ++depth);
      }
    }
    EXPECT_LE(max_seen, sanitize_limits{}.max_depth) << tag;
  }
}

TEST(Sanitize, DeepUnclosedAndMisnestedInputFinishes) {
  // Tags the pre-scan cannot close cheaply: unclosed, misnested, behind scope markers.
  for (std::string unit : {"<div>", "<b><div></b>", "<div><table></div>", "<ul><li>",
                           "<table><tr><td>", "<p><table>", "<font><div>",
                           "<b x=1><i y=2><div></div>", "<td><font>x",
                           "<div><b a=1><b a=2><b a=3></div>x", "</span><div>"}) {
    std::string html;
    for (int i = 0; i < 20'000; ++i) html += unit;
    html += "<img src=x onerror=alert(1)>end";
    std::string out = sanitize_html(html);
    expect_only_allowed_tags(out);
    EXPECT_EQ(out.find("onerror"), std::string::npos) << unit;
    EXPECT_NE(out.rfind("<pre>", 0), 0u) << unit << ": parsed, not given up";
  }
}

TEST(Sanitize, LongSloppyTablesKeepTheirMarkup) {
  // Unclosed <font> in every cell is common in mail; cells end it, so depth stays flat.
  std::string html = "<table>";
  for (int i = 0; i < 2'000; ++i) html += "<tr><td><font face=Arial>cell</td></tr>";
  html += "</table><p>after</p>";
  std::string out = sanitize_html(html);
  EXPECT_EQ(out.find("&lt;"), std::string::npos);
  EXPECT_NE(out.find("<p>after</p>"), std::string::npos);
  size_t fonts = 0;
  for (size_t i = out.find("<font"); i != std::string::npos; i = out.find("<font", i + 1)) ++fonts;
  EXPECT_EQ(fonts, 2'000u);
}

TEST(Sanitize, ModestDepthIsKeptExactly) {
  std::string html, close;
  for (int i = 0; i < 200; ++i) {
    html += "<div>";
    close += "</div>";
  }
  EXPECT_EQ(sanitize_html(html + "x" + close), html + "x" + close);
}

TEST(Sanitize, InputBeyondTheLimitIsCut) {
  sanitize_limits limits;
  limits.max_input = 11;
  EXPECT_EQ(sanitize_html("<b>abcd</b>efgh", limits), "<b>abcd</b>");
  limits.max_input = 8;  // a cut tag is text
  EXPECT_EQ(sanitize_html("<b>abcd</b>efgh", limits), "<b>abcd&lt;</b>");
}

TEST(Sanitize, OverDeadlineParseFallsBackToText) {
  sanitize_limits limits;
  limits.max_parse_time = std::chrono::milliseconds{-1};  // past at the first look
  std::string html;
  for (int i = 0; i < 5'000; ++i) html += "<b>x</b>";
  std::string out = sanitize_html(html, limits);
  EXPECT_EQ(out.rfind("<pre>&lt;b&gt;x&lt;/b&gt;", 0), 0u) << out.substr(0, 80);
}

TEST(Sanitize, OverBudgetParseFallsBackToText) {
  sanitize_limits limits;
  limits.parser_memory = 0;  // gumbo's first allocation is over the budget
  limits.parser_memory_per_byte = 0;
  std::string out = sanitize_html("<b>x</b><script>alert(1)</script>", limits);
  EXPECT_EQ(out, "<pre>&lt;b&gt;x&lt;/b&gt;&lt;script&gt;alert(1)&lt;/script&gt;</pre>");
  expect_only_allowed_tags(out);
}

}  // namespace
}  // namespace sr::fallback
