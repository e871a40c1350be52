// The injection API's request parser: every refusal with its status and field, the
// Content-Type check, size and count limits (a bulk list of thousands of recipients),
// nesting far too deep, and the JSON response bodies.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "sealrelay/api/request.hh"
#include "sealrelay/api/response.hh"

namespace sr::api {
namespace {

limits small_limits() {
  limits l;
  l.max_message_size = 10000;
  l.max_recipients = 5;
  l.max_attachments = 2;
  return l;
}

struct refusal {
  std::string body;
  uint16_t status;
  std::string field;
  std::string error;  // a part of the error text
};

class Refused : public testing::TestWithParam<refusal> {};

TEST_P(Refused, WithStatusAndField) {
  const refusal& c = GetParam();
  parse_result r = parse_request(c.body, small_limits());
  ASSERT_FALSE(r.ok()) << c.body;
  EXPECT_EQ(r.err.status, c.status) << c.body;
  EXPECT_EQ(r.err.field, c.field) << c.body << " -> " << r.err.error;
  EXPECT_NE(r.err.error.find(c.error), std::string::npos) << c.body << " -> " << r.err.error;
}

const std::string ok_head = R"({"from":"a@example.org","to":["b@example.net"],)";
std::string b64(std::size_t decoded) { return std::string(decoded / 3 * 4, 'A'); }

INSTANTIATE_TEST_SUITE_P(
    Api, Refused,
    testing::Values(
        // JSON syntax: the position is nlohmann's, 1-based, of the offending byte.
        refusal{"", 400, "", "invalid JSON at byte 1, line 1, column 1"},
        refusal{R"({"from": x})", 400, "", "invalid JSON at byte 10,"},
        refusal{"{\"from\":\"a@b.c\",\n\"to\": [\"b@c.d\",]}", 400, "", "invalid JSON at byte 33, line 2, column 16: syntax error while parsing value - unexpected ']'"},
        refusal{ok_head + R"("text":"t"} x)", 400, "", "expected end of input"},
        refusal{ok_head + "\"text\":\"h\xff\"}", 400, "", "ill-formed UTF-8"},
        refusal{ok_head + R"("text":"t" /* c */})", 400, "", "invalid JSON"},
        refusal{"[]", 400, "", "must be a JSON object"},
        refusal{R"("text")", 400, "", "must be a JSON object"},
        refusal{std::string(80000, '['), 400, "", "must be a JSON object"},
        // keys
        refusal{ok_head + R"("text":"t","cc":["c@d.e"]})", 400, "cc", "unknown key"},
        refusal{ok_head + R"("text":"t","from":"c@d.e"})", 400, "from", "given twice"},
        refusal{ok_head + R"("text":"t","text":"u"})", 400, "text", "given twice"},
        // from
        refusal{R"({"to":["b@example.net"],"text":"t"})", 400, "from", "missing"},
        refusal{R"({"from":"","to":["b@example.net"],"text":"t"})", 400, "from", "not a valid mailbox"},
        refusal{R"({"from":"a","to":["b@example.net"],"text":"t"})", 400, "from", "not a valid mailbox"},
        refusal{R"({"from":"a@b.c\r\nBcc: x@y.z","to":["b@example.net"],"text":"t"})", 400, "from", "mailbox"},
        refusal{R"({"from":"<a@b.c>","to":["b@example.net"],"text":"t"})", 400, "from", "mailbox"},
        refusal{R"({"from":7,"to":["b@example.net"],"text":"t"})", 400, "from", "must be a string"},
        refusal{R"({"from":{"a":{"b":{}}},"to":["b@example.net"],"text":"t"})", 400, "from", "must be a string"},
        refusal{R"({"from":null,"to":["b@example.net"],"text":"t"})", 400, "from", "must be a string"},
        // to
        refusal{R"({"from":"a@b.c","text":"t"})", 400, "to", "at least one recipient"},
        refusal{R"({"from":"a@b.c","to":[],"text":"t"})", 400, "to", "at least one recipient"},
        refusal{R"({"from":"a@b.c","to":"b@c.d","text":"t"})", 400, "to", "must be an array"},
        refusal{R"({"from":"a@b.c","to":["b@c.d","bad"],"text":"t"})", 400, "to[1]", "not a valid mailbox"},
        refusal{R"({"from":"a@b.c","to":["b@c.d",true],"text":"t"})", 400, "to[1]", "must be a string"},
        refusal{R"({"from":"a@b.c","to":[["b@c.d"]],"text":"t"})", 400, "to[0]", "must be a string"},
        refusal{R"({"from":"a@b.c","to":["a@b.c","b@b.c","c@b.c","d@b.c","e@b.c","f@b.c"],"text":"t"})",
                400, "to", "too many recipients (at most 5)"},
        // the two forms
        refusal{ok_head + R"("content":"Subject: x\r\n\r\nhi","subject":"s"})", 400, "subject", "not allowed with content"},
        refusal{ok_head + R"("content":"Subject: x\r\n\r\nhi","attachments":[]})", 400, "attachments", "not allowed"},
        refusal{ok_head + R"("content":""})", 400, "content", "is empty"},
        refusal{ok_head + R"("content":"A: b\u0000"})", 400, "content", "NUL"},
        refusal{ok_head + R"("subject":"s"})", 400, "", "content, text, html or attachments"},
        refusal{ok_head + R"("text":"a\u0000b"})", 400, "text", "NUL"},
        refusal{ok_head + R"("html":1})", 400, "html", "must be a string"},
        // header fields: no CR/LF (header injection), no other controls
        refusal{ok_head + R"("subject":"hi\r\nBcc: x@y.z","text":"t"})", 400, "subject", "control character"},
        refusal{ok_head + R"("subject":"hi\nthere","text":"t"})", 400, "subject", "control character"},
        refusal{ok_head + R"("subject":"hi\u0000","text":"t"})", 400, "subject", "control character"},
        refusal{ok_head + R"("subject":")" + std::string(2001, 's') + R"(","text":"t"})", 400, "subject", "longer than 2000"},
        // attachments
        refusal{ok_head + R"("attachments":{}})", 400, "attachments", "must be an array"},
        refusal{ok_head + R"("attachments":["x"]})", 400, "attachments[0]", "must be an object"},
        refusal{ok_head + R"("attachments":[[]]})", 400, "attachments[0]", "must be an object"},
        refusal{ok_head + R"("attachments":[{"content":"QQ=="}]})", 400, "attachments[0].filename", "missing"},
        refusal{ok_head + R"("attachments":[{"filename":"a"}]})", 400, "attachments[0].content", "missing"},
        refusal{ok_head + R"("attachments":[{"filename":"a","content":"QQ==","size":1}]})", 400, "attachments[0].size", "unknown key"},
        refusal{ok_head + R"("attachments":[{"filename":"a","filename":"b","content":"QQ=="}]})", 400, "attachments[0].filename", "twice"},
        refusal{ok_head + R"("attachments":[{"filename":"a","content":"QQ="}]})", 400, "attachments[0].content", "base64"},
        refusal{ok_head + R"("attachments":[{"filename":"a","content":"QQ==\n"}]})", 400, "attachments[0].content", "base64"},
        refusal{ok_head + R"("attachments":[{"filename":"a","content":"QR=="}]})", 400, "attachments[0].content", "base64"},
        refusal{ok_head + R"("attachments":[{"filename":"a","content":"Q=Q="}]})", 400, "attachments[0].content", "base64"},
        refusal{ok_head + R"("attachments":[{"filename":"a","content":"QQ-_"}]})", 400, "attachments[0].content", "base64"},
        refusal{ok_head + R"("attachments":[{"filename":"a","content":["QQ=="]}]})", 400, "attachments[0].content", "must be a string"},
        refusal{ok_head + R"("attachments":[{"filename":"a\r\nX-Evil: 1","content":"QQ=="}]})", 400, "attachments[0].filename", "control"},
        refusal{ok_head + R"("attachments":[{"filename":"","content":"QQ=="}]})", 400, "attachments[0].filename", "empty"},
        refusal{ok_head + R"("attachments":[{"filename":")" + std::string(256, 'f') + R"(","content":"QQ=="}]})", 400, "attachments[0].filename", "longer than 255"},
        refusal{ok_head + R"("attachments":[{"filename":"a","content_type":"text","content":"QQ=="}]})", 400, "attachments[0].content_type", "type/subtype"},
        refusal{ok_head + R"("attachments":[{"filename":"a","content_type":"text/plain; charset=x","content":"QQ=="}]})", 400, "attachments[0].content_type", "type/subtype"},
        refusal{ok_head + R"("attachments":[{"filename":"a","content_type":"text/plain\r\nX: y","content":"QQ=="}]})", 400, "attachments[0].content_type", "type/subtype"},
        refusal{ok_head + R"("attachments":[{"filename":"a","content":"QQ=="},{"filename":"b","content":"QQ=="},{"filename":"c","content":"QQ=="}]})",
                400, "attachments", "too many attachments (at most 2)"},
        // sizes: 413, naming the field that went over
        refusal{ok_head + R"("content":"A: b\r\n\r\n)" + std::string(10000, 'x') + R"("})", 413, "content", "larger than 10000"},
        refusal{ok_head + R"("text":")" + std::string(6000, 'x') + R"(","html":")" + std::string(6000, 'x') + R"("})", 413, "html", "larger than 10000"},
        refusal{ok_head + R"("attachments":[{"filename":"a","content":")" + b64(10200) + R"("}]})", 413, "attachments[0].content", "larger"},
        refusal{ok_head + R"("text":")" + std::string(90000, 'x') + R"("})", 413, "", "body is larger than 85536"}));

TEST(Api, RawFormParses) {
  parse_result r = parse_request(
      R"({"from":"a@example.org","to":["b@example.net","c@example.com"],"content":"Subject: hi\r\n\r\nbody\r\n"})",
      small_limits());
  ASSERT_TRUE(r.ok()) << r.err.error;
  EXPECT_TRUE(r.request->raw);
  EXPECT_EQ(r.request->from, "a@example.org");
  EXPECT_EQ(r.request->to, (std::vector<std::string>{"b@example.net", "c@example.com"}));
  EXPECT_EQ(r.request->content, "Subject: hi\r\n\r\nbody\r\n");
}

TEST(Api, StructuredFormParsesInAnyKeyOrder) {
  parse_result r = parse_request(
      R"( { "attachments" : [ {"content":"AAEC/w==","content_type":"Image/PNG","filename":"pic \u00e9.png"},
            {"filename":"x.bin","content":""} ],
          "html":"<p>h\u00e9</p>", "text":"t", "subject":"S \ud83d\ude00",
          "to":["b@example.net"], "from":"\"a b\"@[127.0.0.1]" } )",
      small_limits());
  ASSERT_TRUE(r.ok()) << r.err.error;
  const message_request& m = *r.request;
  EXPECT_FALSE(m.raw);
  EXPECT_EQ(m.from, "\"a b\"@[127.0.0.1]");
  EXPECT_EQ(*m.subject, "S \xF0\x9F\x98\x80");
  EXPECT_EQ(*m.html, "<p>h\xC3\xA9</p>");
  ASSERT_EQ(m.attachments.size(), 2u);
  EXPECT_EQ(m.attachments[0].filename, "pic \xC3\xA9.png");
  EXPECT_EQ(m.attachments[0].content_type, "image/png");
  EXPECT_EQ(m.attachments[0].data, std::string("\x00\x01\x02\xff", 4));
  EXPECT_EQ(m.attachments[1].content_type, "application/octet-stream");
  EXPECT_EQ(m.attachments[1].data, "");
}

TEST(Api, AttachmentsAloneAreAMessage) {
  EXPECT_TRUE(parse_request(ok_head + R"("attachments":[{"filename":"a","content":"QQ=="}]})", small_limits()).ok());
}

TEST(Api, BulkRecipientListUpToTheLimit) {
  limits l;
  l.max_recipients = 5000;
  std::string body = R"({"from":"news@example.org","text":"t","to":[)";
  for (int i = 0; i < 5000; ++i) body += (i ? ",\"" : "\"") + std::string("user") + std::to_string(i) + "@example.net\"";
  parse_result r = parse_request(body + "]}", l);
  ASSERT_TRUE(r.ok()) << r.err.error;
  ASSERT_EQ(r.request->to.size(), 5000u);
  EXPECT_EQ(r.request->to[4999], "user4999@example.net");
  parse_result over = parse_request(body + R"(,"one@more.example"]})", l);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.err.field, "to");
  EXPECT_EQ(over.err.status, 400);
}

TEST(Api, ContentType) {
  EXPECT_FALSE(check_content_type("application/json"));
  EXPECT_FALSE(check_content_type("Application/JSON ; charset=UTF-8"));
  EXPECT_FALSE(check_content_type("application/json;charset=\"utf-8\""));
  for (const char* bad : {"text/plain", "application/json; charset=latin1", "application/jsonx",
                          "application/x-www-form-urlencoded", "", "multipart/form-data; boundary=x"}) {
    auto e = check_content_type(std::string_view(bad));
    ASSERT_TRUE(e) << bad;
    EXPECT_EQ(e->status, 415);
    EXPECT_EQ(e->field, "Content-Type");
  }
  auto none = check_content_type(std::nullopt);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 415);
}

TEST(Api, ResponseBodiesAreJson) {
  std::vector<std::string> ids = {"6B0AD79A01000000", "6B0AD79A01000001"};
  auto accepted = nlohmann::json::parse(accepted_body(ids));
  EXPECT_EQ(accepted, nlohmann::json::parse(R"({"queue_ids":["6B0AD79A01000000","6B0AD79A01000001"]})"));
  EXPECT_EQ(accepted_body({}), R"({"queue_ids":[]})");

  auto err = nlohmann::json::parse(error_body({400, "not a \"valid\" mailbox\n", "to[3]"}));
  EXPECT_EQ(err["error"], "not a \"valid\" mailbox\n");
  EXPECT_EQ(err["field"], "to[3]");
  auto whole = nlohmann::json::parse(error_body({413, "too big", ""}));
  EXPECT_TRUE(whole["field"].is_null());
  // The syntax error of an invalid UTF-8 body still answers valid JSON.
  parse_result r = parse_request("{\"from\":\"\xff\xfe\"}", small_limits());
  ASSERT_FALSE(r.ok());
  EXPECT_NO_THROW(nlohmann::json::parse(error_body(r.err))) << error_body(r.err);
  EXPECT_STREQ(reason_phrase(413), "Content Too Large");
  EXPECT_STREQ(reason_phrase(415), "Unsupported Media Type");
}

TEST(Api, SyntaxErrorTextStaysShort) {
  std::string body = "{\"text\":\"" + std::string(50000, 'x') + "\xff\"}";
  parse_result r = parse_request(body, limits{});
  ASSERT_FALSE(r.ok());
  EXPECT_LT(r.err.error.size(), 300u);
}

}  // namespace
}  // namespace sr::api
