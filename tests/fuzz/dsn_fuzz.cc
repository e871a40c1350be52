// libFuzzer target: the bounce builder (queue/dsn.cc), fed what it quotes from outside: the
// original message's header section (any client's bytes), the remote MX's reply text, the
// reason text and Message-ID. Input: a flags byte (bit 0: REQUIRETLS redaction), then
// NUL-separated fields: original message, diagnostic 1, diagnostic 2, reason, Message-ID.
// Invariants: nothing crashes or hangs; the DSN has CRLF line ends only; its own header
// section is field lines only; its MIME structure is exactly the parts it writes (the
// boundary delimiter lines appear 3 times, or 2 when redacted, then the close once, at the
// end), whatever the quoted text holds; a redacted DSN is the same whatever the original
// holds (nothing of it is returned).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "check.hh"
#include "queue/dsn.hh"

namespace {

// Addresses come from RCPT TO / MAIL FROM, which the command parser keeps free of CR and LF.
std::string no_crlf(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c == '\r' || c == '\n') c = '_';
  return out;
}

// The original as the spool holds it: inbound DATA and the API's MIME builder let CR and LF
// through only as CRLF, so a bare one becomes another byte here.
std::string clean_lines(std::string_view in) {
  std::string out(in);
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '\r' && (i + 1 == out.size() || out[i + 1] != '\n')) out[i] = '?';
    else if (out[i] == '\n' && (i == 0 || in[i - 1] != '\r')) out[i] = '?';
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1 || size > 64 * 1024) return -1;
  std::string_view in(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  std::vector<std::string_view> f;
  size_t start = 0;
  for (size_t i = 0; i <= in.size() && f.size() < 5; ++i)
    if (i == in.size() || in[i] == '\0') {
      f.push_back(in.substr(start, i - start));
      start = i + 1;
    }
  f.resize(5);

  sr::queue::dsn_input d;
  d.reporting_mta = "relay.example.org";
  d.queue_id = "6B0AD79A00000001";
  d.original_sender = "alice@example.org";
  d.arrival = 1796611257;
  d.now = 1796614857;
  const std::string original = clean_lines(f[0]);
  d.original_message = original;
  d.recipients.push_back({"bob@example.net", "5.1.1", std::string(f[1]), "mx.example.net"});
  d.recipients.push_back({no_crlf(f[2].substr(0, 64)) + "@example.com", "4.4.7", std::string(f[2]), ""});
  d.reason_text = f[3];
  d.redacted = bytes[0] & 1;
  d.original_msg_id = f[4];
  const std::string m = sr::queue::build_dsn(d);

  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\r') CHECK(i + 1 < m.size() && m[i + 1] == '\n');
    if (m[i] == '\n') CHECK(i > 0 && m[i - 1] == '\r');
  }
  CHECK(m.size() >= 2 && m.substr(m.size() - 2) == "\r\n");
  // Its own header section: field lines (or folds) up to the first empty line.
  size_t pos = 0;
  while (true) {
    size_t eol = m.find("\r\n", pos);
    CHECK(eol != std::string::npos);
    std::string_view line(m.data() + pos, eol - pos);
    pos = eol + 2;
    if (line.empty()) break;
    if (line[0] == ' ' || line[0] == '\t') continue;
    size_t colon = line.find(':');
    CHECK(colon != std::string_view::npos && colon > 0);
  }
  // The boundary, from the Content-Type field, then every delimiter line of the body.
  size_t b = m.find("boundary=\"");
  CHECK(b != std::string::npos && b < pos);
  std::string boundary = m.substr(b + 10, m.find('"', b + 10) - (b + 10));
  CHECK(!boundary.empty());
  unsigned parts = 0, closes = 0;
  size_t last_close = 0;
  while (pos < m.size()) {
    size_t eol = m.find("\r\n", pos);
    std::string_view line(m.data() + pos, eol - pos);
    if (line == "--" + boundary) ++parts;
    if (line == "--" + boundary + "--") {
      ++closes;
      last_close = eol + 2;
    }
    pos = eol + 2;
  }
  CHECK(parts == (d.redacted ? 2u : 3u));
  CHECK(closes == 1 && last_close == m.size());
  if (d.redacted) {   // nothing of the original: the same DSN as for an empty one
    d.original_message = {};
    CHECK(sr::queue::build_dsn(d) == m);
  }
  return 0;
}
