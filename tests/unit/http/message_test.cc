// The HTTP/1.1 codec: requests and responses parsed whole, byte by byte and pipelined;
// every limit and every smuggling shape refused with its error; writers checked byte-exact.
#include <gtest/gtest.h>

#include <string>

#include "sealrelay/http/message.hh"

namespace sr::http {
namespace {

// Feed `in` whole; return bytes used.
template <class P>
size_t feed_all(P& p, std::string_view in) {
  return p.feed(in);
}

// Feed `in` one byte at a time until the parser stops asking; return bytes used.
template <class P>
size_t feed_bytewise(P& p, std::string_view in) {
  size_t used = 0;
  for (size_t i = 0; i < in.size() && p.status() == parse_status::need_more; ++i)
    used += p.feed(in.substr(i, 1));
  return used;
}

TEST(HttpRequest, SimpleGet) {
  request_parser p;
  std::string in = "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept:  text/plain \r\n\r\n";
  EXPECT_EQ(feed_all(p, in), in.size());
  ASSERT_EQ(p.status(), parse_status::done);
  EXPECT_EQ(p.method(), "GET");
  EXPECT_EQ(p.target(), "/metrics?x=1");
  EXPECT_EQ(p.path(), "/metrics");
  EXPECT_EQ(p.version_minor(), 1);
  ASSERT_EQ(p.headers().size(), 2u);
  EXPECT_EQ(p.find("accept").value_or(""), "text/plain");
  EXPECT_FALSE(p.find("Cookie"));
  EXPECT_TRUE(p.keep_alive());
  EXPECT_TRUE(p.body().empty());
}

TEST(HttpRequest, ByteByByteGivesTheSameResult) {
  request_parser p;
  std::string in = "POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
  EXPECT_EQ(feed_bytewise(p, in), in.size());
  ASSERT_EQ(p.status(), parse_status::done);
  EXPECT_EQ(p.body(), "hello");
}

TEST(HttpRequest, BareLfLineEndsAreAccepted) {
  request_parser p;
  p.feed("GET / HTTP/1.0\nHost: a\n\n");
  ASSERT_EQ(p.status(), parse_status::done);
  EXPECT_EQ(p.version_minor(), 0);
  EXPECT_FALSE(p.keep_alive());  // 1.0 without keep-alive
}

TEST(HttpRequest, PipelinedRequestsAreLeftToTheCaller) {
  request_parser p;
  std::string in = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n";
  size_t n = p.feed(in);
  ASSERT_EQ(p.status(), parse_status::done);
  EXPECT_EQ(p.target(), "/a");
  EXPECT_TRUE(p.keep_alive());
  p.reset();
  EXPECT_EQ(p.feed(std::string_view(in).substr(n)), in.size() - n);
  ASSERT_EQ(p.status(), parse_status::done);
  EXPECT_EQ(p.target(), "/b");
  EXPECT_FALSE(p.keep_alive());
}

TEST(HttpRequest, KeepAliveRules) {
  request_parser p;
  p.feed("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  EXPECT_TRUE(p.keep_alive());
  p.reset();
  p.feed("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n");
  EXPECT_FALSE(p.keep_alive());
}

TEST(HttpRequest, ChunkedBodyIsDecoded) {
  request_parser p;
  std::string in =
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  size_t n = feed_bytewise(p, in);
  ASSERT_EQ(p.status(), parse_status::done) << to_string(p.err());
  EXPECT_EQ(p.body(), "hello, world!!!");
  EXPECT_EQ(in.substr(n), "NEXT");
}

struct refused_case {
  const char* name;
  std::string request;
  error err;
  int status;
};

class HttpRequestRefused : public ::testing::TestWithParam<refused_case> {};

TEST_P(HttpRequestRefused, WithItsError) {
  const auto& c = GetParam();
  limits l;
  l.max_line = 64;
  l.max_head = 256;
  l.max_headers = 4;
  l.max_body = 16;
  for (bool bytewise : {false, true}) {
    request_parser p(l);
    if (bytewise) feed_bytewise(p, c.request);
    else p.feed(c.request);
    ASSERT_EQ(p.status(), parse_status::failed) << c.name << (bytewise ? " (bytewise)" : "");
    EXPECT_EQ(p.err(), c.err) << c.name << ": " << to_string(p.err());
    EXPECT_EQ(status_for(p.err()), c.status) << c.name;
    EXPECT_FALSE(p.keep_alive());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, HttpRequestRefused,
    ::testing::Values(
        refused_case{"no version", "GET /\r\n\r\n", error::bad_start_line, 400},
        refused_case{"two spaces", "GET  / HTTP/1.1\r\n\r\n", error::bad_start_line, 400},
        refused_case{"space in target", "GET /a b HTTP/1.1\r\n\r\n", error::bad_start_line, 400},
        refused_case{"bad method", "G(T / HTTP/1.1\r\n\r\n", error::bad_start_line, 400},
        refused_case{"http/2", "GET / HTTP/2.0\r\n\r\n", error::bad_version, 505},
        refused_case{"empty line first", "\r\nGET / HTTP/1.1\r\n\r\n", error::bad_start_line, 400},
        refused_case{"long line", "GET /" + std::string(100, 'a') + " HTTP/1.1\r\n\r\n",
                     error::line_too_long, 414},
        refused_case{"long head", "GET / HTTP/1.1\r\nA: " + std::string(300, 'a') + "\r\n\r\n",
                     error::head_too_large, 431},
        refused_case{"many headers", "GET / HTTP/1.1\r\na: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\ne: 1\r\n\r\n",
                     error::too_many_headers, 431},
        refused_case{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", error::bad_header, 400},
        refused_case{"obs-fold", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", error::bad_header, 400},
        refused_case{"bare CR", "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", error::bad_header, 400},
        refused_case{"no colon", "GET / HTTP/1.1\r\nA\r\n\r\n", error::bad_header, 400},
        refused_case{"CL not a number", "POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
                     error::bad_length, 400},
        refused_case{"CL negative", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", error::bad_length, 400},
        refused_case{"CL differ", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                     error::bad_length, 400},
        refused_case{"CL list differ", "POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\nab",
                     error::bad_length, 400},
        refused_case{"CL and TE", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                     error::ambiguous_length, 400},
        refused_case{"gzip coding", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                     error::unsupported_encoding, 501},
        refused_case{"TE twice", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                     error::unsupported_encoding, 501},
        refused_case{"TE on 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                     error::unsupported_encoding, 501},
        refused_case{"body too large", "POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n", error::body_too_large, 413},
        refused_case{"chunks too large", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n123456789\r\n9\r\n",
                     error::body_too_large, 413},
        refused_case{"bad chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                     error::bad_chunk, 400},
        refused_case{"chunk without CRLF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
                     error::bad_chunk, 400}),
    [](const auto& info) {
      std::string n = info.param.name;
      for (char& c : n)
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      return n;
    });

TEST(HttpRequest, ContentLengthRepeatedWithTheSameValueIsOneLength) {
  request_parser p;
  p.feed("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nab");
  ASSERT_EQ(p.status(), parse_status::done) << to_string(p.err());
  EXPECT_EQ(p.body(), "ab");
}

TEST(HttpResponse, ContentLengthBody) {
  response_parser p;
  std::string in = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc";
  EXPECT_EQ(feed_bytewise(p, in), in.size());
  ASSERT_EQ(p.status(), parse_status::done);
  EXPECT_EQ(p.code(), 200);
  EXPECT_EQ(p.reason(), "OK");
  EXPECT_EQ(p.body(), "abc");
  EXPECT_TRUE(p.keep_alive());
}

TEST(HttpResponse, BodyUntilEof) {
  response_parser p;
  p.feed("HTTP/1.1 200 OK\r\n\r\nversion: STSv1\r\n");
  EXPECT_EQ(p.status(), parse_status::need_more);
  p.feed("mode: enforce\r\n");
  EXPECT_EQ(p.feed_eof(), parse_status::done);
  EXPECT_EQ(p.body(), "version: STSv1\r\nmode: enforce\r\n");
  EXPECT_FALSE(p.keep_alive());
}

TEST(HttpResponse, TruncatedBodyIsAnError) {
  response_parser p;
  p.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  EXPECT_EQ(p.feed_eof(), parse_status::failed);
  EXPECT_EQ(p.err(), error::truncated);
}

TEST(HttpResponse, ChunkedWithPolicySizedLimit) {
  limits l;
  l.max_body = 64 * 1024;  // what the MTA-STS fetch uses
  response_parser ok(l);
  std::string body(64 * 1024, 'x');
  std::string in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  in += "8000\r\n" + body.substr(0, 0x8000) + "\r\n8000\r\n" + body.substr(0x8000) + "\r\n0\r\n\r\n";
  ok.feed(in);
  ASSERT_EQ(ok.status(), parse_status::done) << to_string(ok.err());
  EXPECT_EQ(ok.body().size(), body.size());

  response_parser big(l);
  big.feed("HTTP/1.1 200 OK\r\nContent-Length: 65537\r\n\r\n");
  EXPECT_EQ(big.err(), error::body_too_large);

  response_parser eof(l);
  eof.feed("HTTP/1.1 200 OK\r\n\r\n");
  eof.feed(body);
  EXPECT_EQ(eof.status(), parse_status::need_more);
  eof.feed("y");
  EXPECT_EQ(eof.err(), error::body_too_large);
}

TEST(HttpResponse, NoBodyFor204AndHead) {
  response_parser p;
  std::string in = "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n";
  size_t n = p.feed(in);
  ASSERT_EQ(p.status(), parse_status::done);
  EXPECT_EQ(p.code(), 204);
  p.reset();
  p.expect_no_body(true);
  EXPECT_EQ(p.feed(std::string_view(in).substr(n)), in.size() - n);
  ASSERT_EQ(p.status(), parse_status::done);
  EXPECT_EQ(p.code(), 200);
  EXPECT_TRUE(p.body().empty());
}

TEST(HttpResponse, BadStatusLines) {
  for (std::string line : {"HTTP/1.1 20 OK", "HTTP/1.1 2000 OK", "HTTP/1.1 abc OK", "HTTP/1.1", "ICY 200 OK",
                           "HTTP/1.1 200OK"}) {
    response_parser p;
    p.feed(line + "\r\n\r\n");
    EXPECT_EQ(p.status(), parse_status::failed) << line;
    EXPECT_EQ(p.err(), error::bad_start_line) << line;
  }
  response_parser v;
  v.feed("HTTP/3.0 200 OK\r\n\r\n");
  EXPECT_EQ(v.err(), error::bad_version);
  response_parser empty_reason;
  empty_reason.feed("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(empty_reason.status(), parse_status::done);
  EXPECT_EQ(empty_reason.code(), 404);
}

TEST(HttpWriter, ResponseBytes) {
  std::string out;
  header h[] = {{"Content-Type", "text/plain"}};
  write_response(out, 404, h, "nope\n", false);
  EXPECT_EQ(out,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
            "Connection: close\r\n\r\nnope\n");
  // What the writer produces, the parser reads back.
  response_parser p;
  EXPECT_EQ(p.feed(out), out.size());
  ASSERT_EQ(p.status(), parse_status::done);
  EXPECT_EQ(p.code(), 404);
  EXPECT_EQ(p.body(), "nope\n");
  EXPECT_FALSE(p.keep_alive());
}

TEST(HttpWriter, RequestBytes) {
  std::string out;
  write_request(out, "GET", "/.well-known/mta-sts.txt", "mta-sts.example.net", {}, {}, false);
  EXPECT_EQ(out,
            "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.net\r\n"
            "Connection: close\r\n\r\n");
  request_parser p;
  EXPECT_EQ(p.feed(out), out.size());
  ASSERT_EQ(p.status(), parse_status::done);
  EXPECT_EQ(p.find("host").value_or(""), "mta-sts.example.net");

  out.clear();
  header h[] = {{"Content-Type", "application/json"}};
  write_request(out, "POST", "/v1/messages", "api", h, "{}");
  request_parser q;
  q.feed(out);
  ASSERT_EQ(q.status(), parse_status::done);
  EXPECT_EQ(q.body(), "{}");
  EXPECT_TRUE(q.keep_alive());
}

}  // namespace
}  // namespace sr::http
