// libFuzzer target: what the escrow portal shows of a message (fallback/mime_view.hh) on any
// bytes. Invariants: it never crashes or hangs; every text it returns is valid UTF-8 without
// NUL; each attachment's listed size is the size of its bytes; no more leaf parts than the
// limit; parsing is deterministic (a download's index names the same attachment as the
// page that listed it).
#include <cstdint>
#include <string>
#include <string_view>

#include "check.hh"
#include "sealrelay/fallback/mime_view.hh"

namespace {

bool utf8_text(const std::string& s) {
  return s.find('\0') == std::string::npos && sr::fallback::mime::to_utf8(s, "utf-8") == s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace mime = sr::fallback::mime;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  mime::limits l;
  l.max_parts = 64;
  l.max_inline_bytes = 64 * 1024;
  mime::view v = mime::parse(in, l);
  for (const std::string* s : {&v.page.from, &v.page.to, &v.page.cc, &v.page.date,
                               &v.page.subject, &v.page.text, &v.html})
    CHECK(utf8_text(*s));
  CHECK(v.attachment_bytes.size() == v.page.attachments.size());
  CHECK(v.page.attachments.size() <= l.max_parts);
  for (size_t i = 0; i < v.page.attachments.size(); ++i) {
    CHECK(v.page.attachments[i].size == v.attachment_bytes[i].size());
    CHECK(utf8_text(v.page.attachments[i].name));
    CHECK(utf8_text(v.page.attachments[i].content_type));
  }
  mime::view again = mime::parse(in, l);
  CHECK(again.page.attachments.size() == v.page.attachments.size());
  for (size_t i = 0; i < v.page.attachments.size(); ++i) {
    CHECK(again.page.attachments[i].name == v.page.attachments[i].name);
    CHECK(again.attachment_bytes[i] == v.attachment_bytes[i]);
  }
  return 0;
}
