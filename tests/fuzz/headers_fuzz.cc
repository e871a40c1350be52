// libFuzzer target: what the engine reads from a message's header section at intake (bytes
// from any SMTP or API client): smtp::header_section (collected across chunks), the fields
// it acts on (From: addresses for the submission sender check and the DKIM domain,
// TLS-Required: No, Message-ID:), and DKIM relaxed canonicalisation (dkim/canon.cc) of
// header fields and bodies. Byte 0 picks the part, byte 1 a split point / cap.
// Invariants: nothing crashes or hangs; the section read whole or split is the same, a
// prefix of the input of whole CRLF lines within its cap; field values hold no CR or LF; a
// Message-ID has no <, > or white space and fits a line; each From: address is non-empty
// without <> and holds an '@' inside; canonical forms are idempotent, the streaming body canonicaliser matches a
// naive model of RFC 6376 §3.4.4 and gives the same bytes fed whole or split.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "check.hh"
#include "sealrelay/dkim/canon.hh"
#include "sealrelay/smtp/header_section.hh"

namespace {

std::span<const std::byte> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

void check_addresses(std::string_view value) {
  // Quoted local parts may hold anything ("a<b"@x); outside quotes no <, > or line end stays.
  const bool plain = value.find_first_of("\"\\") == std::string_view::npos;
  for (const auto& a : sr::smtp::mailbox_addresses(value)) {
    CHECK(a.size() >= 3 && a.find('@') != std::string::npos && a.front() != '@' && a.back() != '@');
    if (plain) CHECK(a.find_first_of("<>\r\n ") == std::string::npos);
  }
}

// The body as the session hands it on: inbound DATA and the API's MIME builder let CR and
// LF through only as CRLF, so a bare one becomes another byte here.
std::string clean_lines(std::string_view in) {
  std::string out(in);
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '\r' && (i + 1 == out.size() || out[i + 1] != '\n')) out[i] = '?';
    else if (out[i] == '\n' && (i == 0 || in[i - 1] != '\r')) out[i] = '?';
  }
  return out;
}

void fuzz_section(std::string_view raw, uint8_t knob) {
  const std::string text = clean_lines(raw);
  std::string_view in = text;
  const size_t cap = knob & 1 ? 64 + knob : 256 * 1024;
  sr::smtp::header_section whole(cap), split(cap);
  whole.feed(as_bytes(in));
  size_t cut = knob % (in.size() + 1);
  split.feed(as_bytes(in.substr(0, cut)));
  split.feed(as_bytes(in.substr(cut)));
  CHECK(whole.text() == split.text());
  CHECK(whole.complete() == split.complete() && whole.truncated() == split.truncated());
  std::string_view t = whole.text();
  CHECK(t.size() <= cap);
  CHECK(in.substr(0, t.size()) == t);
  CHECK(t.empty() || t.substr(t.size() - 2) == "\r\n");
  for (std::string_view name : {"From", "TLS-Required", "Message-ID", "Sender", "Subject"}) {
    auto v = whole.field(name);
    if (!v) {
      CHECK(whole.count(name) == 0);
      continue;
    }
    CHECK(whole.count(name) >= 1);
    CHECK(v->find_first_of("\r\n") == std::string::npos);
    if (name == "From" || name == "Sender") check_addresses(*v);
  }
  std::string id = sr::smtp::message_id(whole);
  CHECK(id.size() <= 998);
  CHECK(id.find_first_of("<> \t\r\n") == std::string::npos);
  (void)sr::smtp::tls_required_no(whole);
}

struct string_sink : sr::dkim::body_sink {
  std::string out;
  void write(std::string_view b) override { out.append(b); }
};

// RFC 6376 §3.4.4, line by line on a whole body (only CRLF ends a line).
std::string naive_body(std::string_view b) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < b.size()) {
    size_t e = b.find("\r\n", pos);
    std::string_view line = b.substr(pos, e == std::string_view::npos ? std::string_view::npos : e - pos);
    std::string l;
    bool wsp = false;
    for (char c : line) {
      if (c == ' ' || c == '\t') {
        wsp = true;
        continue;
      }
      if (wsp) l += ' ';
      wsp = false;
      l += c;
    }
    lines.push_back(std::move(l));
    pos = e == std::string_view::npos ? b.size() : e + 2;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  std::string out;
  for (const auto& l : lines) out += l + "\r\n";
  return out;
}

std::string canon_body(std::string_view b, size_t cut) {
  string_sink s;
  sr::dkim::relaxed_body rb(s);
  rb.feed(b.substr(0, cut));
  rb.feed(b.substr(cut));
  rb.finish();
  CHECK(rb.length() == s.out.size());
  return s.out;
}

void fuzz_dkim(std::string_view in, uint8_t knob) {
  size_t cut = knob % (in.size() + 1);
  std::string whole = canon_body(in, in.size());
  CHECK(canon_body(in, cut) == whole);
  CHECK(whole == naive_body(in));
  CHECK(canon_body(whole, cut % (whole.size() + 1)) == whole);

  // A header field as the signer gets it from the section (a name and a colon; CR and LF
  // only as CRLF, since inbound DATA refuses bare ones): no CRLF left, idempotent.
  size_t colon = in.find(':');
  if (colon == std::string_view::npos || in.substr(0, colon).find_first_of("\r\n") != std::string_view::npos)
    return;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r' && (i + 1 == in.size() || in[i + 1] != '\n')) return;
    if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r')) return;
  }
  std::string h;
  sr::dkim::canon_header_relaxed(in, h, false);
  CHECK(h.find("\r\n") == std::string::npos);
  std::string h2;
  sr::dkim::canon_header_relaxed(h, h2, false);
  CHECK(h2 == h);
  std::string h3;
  sr::dkim::canon_header_relaxed(in, h3, true);
  CHECK(h3 == h + "\r\n");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 2 || size > 64 * 1024) return -1;
  std::string_view in(reinterpret_cast<const char*>(bytes) + 2, size - 2);
  switch (bytes[0] % 3) {
    case 0: fuzz_section(in, bytes[1]); break;
    case 1: check_addresses(in); break;
    default: fuzz_dkim(in, bytes[1]); break;
  }
  return 0;
}
