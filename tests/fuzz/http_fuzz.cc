// libFuzzer target: the HTTP/1.1 request parser (bytes from any client of the admin
// endpoint, later the HTTP API and the portal). Invariants: it never crashes or hangs;
// fed whole or split at an input-chosen point it reaches the same result; what it uses
// never exceeds what it was given; a parsed request respects every limit; and a request
// it accepted, written back out, parses to the same method, target and body.
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
  l.max_body = 2048;
  return l;
}

// Feed `in` in two parts split at `cut`; return bytes used.
size_t feed_split(sr::http::request_parser& p, std::string_view in, size_t cut) {
  size_t used = p.feed(in.substr(0, cut));
  if (p.status() == sr::http::parse_status::need_more && used == cut) used += p.feed(in.substr(cut));
  return used;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1 || size > 16 * 1024) return -1;
  size_t cut = bytes[0] % (size);
  std::string_view in(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  cut = cut > in.size() ? in.size() : cut;

  sr::http::request_parser whole(small_limits());
  size_t used_whole = whole.feed(in);
  CHECK(used_whole <= in.size());
  sr::http::request_parser split(small_limits());
  size_t used_split = feed_split(split, in, cut);
  CHECK(split.status() == whole.status());
  if (whole.status() == sr::http::parse_status::failed) {
    CHECK(split.err() == whole.err());
    CHECK(whole.err() != sr::http::error::none);
    CHECK(!whole.keep_alive());
    return 0;
  }
  if (whole.status() != sr::http::parse_status::done) return 0;
  CHECK(used_split == used_whole);
  CHECK(split.method() == whole.method() && split.target() == whole.target());
  CHECK(split.body() == whole.body());
  CHECK(whole.body().size() <= small_limits().max_body);
  CHECK(whole.headers().size() <= small_limits().max_headers);
  CHECK(!whole.method().empty() && !whole.target().empty());

  // Round trip: the writer's version of the request parses to the same thing.
  std::string again;
  std::string body(whole.body());
  sr::http::write_request(again, whole.method(), whole.target(), whole.find("host").value_or("h"), {}, body);
  sr::http::request_parser back(small_limits());
  CHECK(back.feed(again) == again.size());
  CHECK(back.status() == sr::http::parse_status::done);
  CHECK(back.method() == whole.method() && back.target() == whole.target() && back.body() == whole.body());
  return 0;
}
