// libFuzzer target: the HTTP/1.1 response parser the HTTPS client (src/https) reads an
// MTA-STS policy host's or a TLS-RPT collector's answer with: bytes from any web server a
// recipient domain names. Input: a byte choosing the split point, a flags byte (HEAD
// request, peer closes at the end), then the response. Invariants: it never crashes or
// hangs; fed whole or split it reaches the same result; what it uses never exceeds what
// it was given; a done response has a 3-digit code and a body within max_body (none for
// HEAD, 1xx, 204, 304); a failure names its error; and a done response written back out
// by write_response() parses to the same code and body.
#include <cstdint>
#include <string>
#include <string_view>

#include "check.hh"
#include "sealrelay/http/message.hh"

namespace {

sr::http::limits small_limits() {
  sr::http::limits l;
  l.max_line = 256;
  l.max_head = 1024;
  l.max_headers = 16;
  l.max_body = 4096;   // the MTA-STS fetch uses 64 KiB; small keeps the limit in reach
  return l;
}

struct run_result {
  sr::http::parse_status status;
  sr::http::error err;
  size_t used;
  int code;
  std::string body;
};

run_result run(std::string_view in, size_t cut, bool head, bool eof) {
  sr::http::response_parser p(small_limits());
  p.expect_no_body(head);
  size_t used = p.feed(in.substr(0, cut));
  CHECK(used <= cut);
  if (p.status() == sr::http::parse_status::need_more && used == cut) {
    size_t more = p.feed(in.substr(cut));
    CHECK(more <= in.size() - cut);
    used += more;
  }
  if (eof && p.status() == sr::http::parse_status::need_more) {
    p.feed_eof();
    CHECK(p.status() != sr::http::parse_status::need_more);   // EOF always settles it
  }
  if (p.status() == sr::http::parse_status::failed) {
    CHECK(p.err() != sr::http::error::none);
    CHECK(!p.keep_alive());
  }
  if (p.status() == sr::http::parse_status::done) {
    CHECK(p.code() >= 100 && p.code() <= 999);
    CHECK(p.body().size() <= small_limits().max_body);
    CHECK(p.headers().size() <= small_limits().max_headers);
    if (head || p.code() < 200 || p.code() == 204 || p.code() == 304) CHECK(p.body().empty());
  }
  return {p.status(), p.err(), used, p.code(), std::string(p.body())};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 2 || size > 16 * 1024) return -1;
  const bool head = bytes[1] & 1, eof = bytes[1] & 2;
  std::string_view in(reinterpret_cast<const char*>(bytes) + 2, size - 2);
  size_t cut = in.empty() ? 0 : bytes[0] % (in.size() + 1);

  run_result whole = run(in, in.size(), head, eof);
  run_result split = run(in, cut, head, eof);
  CHECK(whole.status == split.status);
  CHECK(whole.err == split.err);
  if (whole.status != sr::http::parse_status::done) return 0;
  CHECK(whole.used == split.used && whole.code == split.code && whole.body == split.body);

  // Round trip through the writer (which the admin endpoint and the portal answer with).
  if (head || whole.code < 200 || whole.code == 204 || whole.code == 304) return 0;
  std::string again;
  sr::http::write_response(again, whole.code, {}, whole.body, false);
  sr::http::response_parser back(small_limits());
  CHECK(back.feed(again) == again.size());
  CHECK(back.status() == sr::http::parse_status::done);
  CHECK(back.code() == whole.code && back.body() == whole.body);
  return 0;
}
