// libFuzzer target: the HTTP injection API's request parser and MIME builder (bodies from
// any client holding a token). Invariants: it never crashes or hangs; a refusal is 400 or
// 413 and its JSON error body parses back to the same error and field; an accepted request
// respects every limit, re-serialised it parses to the same request, and the message built
// from it has CRLF line ends only, no line over 998 octets, a header section of field lines
// only (no injected line), and stays within the size limit.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "check.hh"
#include "sealrelay/api/mime.hh"
#include "sealrelay/api/request.hh"
#include "sealrelay/api/response.hh"
#include "sealrelay/util/text.hh"

namespace {

sr::api::limits small_limits() {
  sr::api::limits l;
  l.max_message_size = 8192;
  l.max_recipients = 8;
  l.max_attachments = 3;
  return l;
}

std::string to_json(const sr::api::message_request& r) {
  nlohmann::json j;
  j["from"] = r.from;
  j["to"] = r.to;
  if (r.raw) j["content"] = r.content;
  if (r.subject) j["subject"] = *r.subject;
  if (r.text) j["text"] = *r.text;
  if (r.html) j["html"] = *r.html;
  if (!r.attachments.empty()) {
    j["attachments"] = nlohmann::json::array();
    for (const auto& a : r.attachments) {
      std::string b64;
      sr::append_base64(b64, a.data);
      j["attachments"].push_back({{"filename", a.filename}, {"content_type", a.content_type}, {"content", b64}});
    }
  }
  return j.dump();
}

bool same(const sr::api::message_request& a, const sr::api::message_request& b) {
  if (a.from != b.from || a.to != b.to || a.raw != b.raw || a.content != b.content || a.subject != b.subject ||
      a.text != b.text || a.html != b.html || a.attachments.size() != b.attachments.size())
    return false;
  for (size_t i = 0; i < a.attachments.size(); ++i)
    if (a.attachments[i].filename != b.attachments[i].filename ||
        a.attachments[i].content_type != b.attachments[i].content_type ||
        a.attachments[i].data != b.attachments[i].data)
      return false;
  return true;
}

void check_message(const std::string& m, size_t max_size) {
  CHECK(m.size() <= max_size);
  CHECK(m.size() >= 2 && m.compare(m.size() - 2, 2, "\r\n") == 0);
  size_t pos = 0;
  bool in_headers = true;
  while (pos < m.size()) {
    size_t eol = m.find("\r\n", pos);
    CHECK(eol != std::string::npos);
    std::string_view line(m.data() + pos, eol - pos);
    CHECK(line.size() <= 998);
    CHECK(line.find('\r') == std::string_view::npos && line.find('\n') == std::string_view::npos);
    if (in_headers) {
      if (line.empty()) {
        in_headers = false;
      } else if (line[0] != ' ' && line[0] != '\t') {
        size_t colon = line.find(':');
        CHECK(colon != std::string_view::npos && colon > 0);
        for (char c : line.substr(0, colon)) CHECK(c > 32 && c < 127);
      }
    }
    pos = eol + 2;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size > 64 * 1024) return -1;
  std::string_view in(reinterpret_cast<const char*>(bytes), size);
  const sr::api::limits l = small_limits();

  (void)sr::api::check_content_type(in.substr(0, 64));
  sr::api::parse_result r = sr::api::parse_request(in, l);
  if (!r.ok()) {
    CHECK(r.err.status == 400 || r.err.status == 413);
    auto j = nlohmann::json::parse(sr::api::error_body(r.err), nullptr, false);
    CHECK(!j.is_discarded());
    CHECK(j["error"].is_string() && !j["error"].get<std::string>().empty());
    CHECK(r.err.field.empty() ? j["field"].is_null() : j["field"] == r.err.field);
    return 0;
  }
  const sr::api::message_request& m = *r.request;
  CHECK(!m.from.empty() && !m.to.empty() && m.to.size() <= l.max_recipients);
  CHECK(m.attachments.size() <= l.max_attachments);
  CHECK(m.raw ? !m.content.empty() : (m.text || m.html || !m.attachments.empty()));

  sr::api::parse_result again = sr::api::parse_request(to_json(m), l);
  CHECK(again.ok() && same(m, *again.request));

  sr::api::build_result b = sr::api::build_message(m, {"relay.example.org", "FUZZ01", 1796611257}, l);
  if (!b.ok()) {
    CHECK(b.err.status == 400 || b.err.status == 413);
    return 0;
  }
  check_message(b.message->text, l.max_message_size);
  return 0;
}
