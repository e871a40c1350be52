// libFuzzer target: drives an inbound session with arbitrary bytes at arbitrary split points
// and checks its invariants (reply framing, one end/abort per message, clean bodies, input
// accounting); also checks the DATA scanner against a naive byte-at-a-time model and
// that feeding the same conversation whole or split gives the same transcript. Submission
// sessions (AUTH after TLS, MAIL only once authenticated) get answers that depend only on
// the credentials, so split and whole runs still agree.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "check.hh"
#include "sealrelay/inbound/session.hh"
#include "reference_scanner.hh"
#include "sealrelay/smtp/data_scanner.hh"

namespace {

using sr::inbound::session;
using sr::inbound::session_params;

struct checker : sr::inbound::events {
  session* s = nullptr;
  session_params params;
  std::string transcript;  // replies and finished messages, for the whole/split comparison
  std::string cur;         // the current message's body
  bool in_message = false;
  bool closed = false;
  bool tls_started = false;
  unsigned messages = 0;

  void send(std::string_view b) override {
    CHECK(!closed);
    CHECK(b.size() >= 5);
    CHECK(b.substr(b.size() - 2) == "\r\n");
    size_t start = 0;
    while (start < b.size()) {
      size_t e = b.find("\r\n", start);
      CHECK(e != std::string_view::npos);
      std::string_view line = b.substr(start, e - start);
      CHECK(line.size() >= 3);
      for (int i = 0; i < 3; ++i) CHECK(line[i] >= '0' && line[i] <= '9');
      CHECK(line.size() == 3 || line[3] == ' ' || line[3] == '-');
      for (char c : line) CHECK(c != '\r' && c != '\n');
      start = e + 2;
    }
    transcript.append(b);
  }
  void start_tls() override {
    CHECK(!closed);
    tls_started = true;
  }
  void begin_message(const sr::inbound::envelope& env) override {
    CHECK(!closed && !in_message);
    CHECK(!env.rcpt_to.empty());
    CHECK(env.rcpt_to.size() <= params.max_recipients);
    CHECK(params.relay_allowed || !env.auth_user.empty());
    CHECK(!params.require_tls || env.tls);
    // Submission: only an authenticated client (which was under TLS) sends mail, with its
    // own sender.
    if (params.submission) CHECK(!env.auth_user.empty() && env.tls && env.mail_from == env.auth_user);
    if (!params.submission) CHECK(env.auth_user.empty());
    in_message = true;
    cur.clear();
  }
  void body(std::span<std::byte> b) override {
    CHECK(in_message && s->in_data());
    cur.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  void end_message(const sr::inbound::envelope&) override {
    CHECK(in_message);  // at most one end (or abort) per begin, i.e. per final dot
    in_message = false;
    // The body is clean: only CRLF line ends, short lines, within the size limit.
    CHECK(cur.size() <= params.max_message_size);
    CHECK(cur.empty() || cur.substr(cur.size() - 2) == "\r\n");
    size_t line_start = 0;
    for (size_t i = 0; i < cur.size(); ++i) {
      if (cur[i] == '\n') CHECK(i > 0 && cur[i - 1] == '\r');
      if (cur[i] == '\r') CHECK(i + 1 < cur.size() && cur[i + 1] == '\n');
      if (cur[i] == '\n') {
        CHECK(i + 1 - line_start <= 1000);
        line_start = i + 1;
      }
    }
    transcript += "[MSG " + std::to_string(cur.size()) + "]" + cur + "[/MSG]";
    ++messages;
  }
  void abort_message() override {
    CHECK(in_message);
    in_message = false;
    transcript += "[ABORT]";
  }
  void close() override {
    CHECK(!closed);
    CHECK(!in_message);
    closed = true;
  }
  void check_auth(std::string_view user, std::string_view password) override {
    CHECK(params.submission && s->tls() && !closed && !in_message);
    CHECK(s->current_state() == session::state::auth_wait);
    auth_user.assign(user);
    auth_ok = password == "ok";
    transcript += "[AUTH " + std::string(user) + "]";
  }
  bool sender_allowed(std::string_view address) override {
    CHECK(params.submission && !s->auth_user().empty());
    return address == s->auth_user();
  }
  std::string auth_user;
  bool auth_ok = false;
};

// The engine's side: answer end_message, finish handshakes, as a real shard would.
void settle(session& s, checker& ev) {
  if (s.current_state() == session::state::wait_result)
    s.message_result(ev.messages % 3 == 2 ? "" : "Q" + std::to_string(ev.messages));
  if (s.current_state() == session::state::tls_pending) s.tls_established();
  if (s.current_state() == session::state::auth_wait)
    s.auth_result(ev.auth_ok ? session::auth_answer::ok
                             : ev.auth_user.size() % 4 == 1 ? session::auth_answer::close
                                                            : session::auth_answer::failed);
}

// Feed `data` in pieces ending at `cuts`; returns the transcript.
std::string run(const session_params& p, std::string data, const std::vector<size_t>& cuts,
                int finale, bool* tls_used) {
  checker ev;
  ev.params = p;
  session s(p, ev);
  ev.s = &s;
  s.greet();
  size_t start = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(data.size());
  for (size_t end : ends) {
    if (end < start || end > data.size()) continue;
    while (start < end) {
      auto* ptr = reinterpret_cast<std::byte*>(data.data()) + start;
      size_t used = s.feed(std::span<std::byte>(ptr, end - start));
      CHECK(used <= end - start);
      const bool waits = s.current_state() == session::state::wait_result ||
                         s.current_state() == session::state::auth_wait;
      if (used < end - start) CHECK(waits);
      if (s.closed()) CHECK(used == end - start);
      start += used;
      if (!waits) CHECK(start == end);
      settle(s, ev);
      CHECK(!ev.in_message || s.in_data());
    }
  }
  if (finale == 1) {
    s.timeout();
    CHECK(s.closed() && !ev.in_message);  // a timeout mid-body aborts the message
  }
  if (finale == 2) {
    // Shutdown closes at once only outside a transaction; otherwise it waits for its end.
    bool now = s.shutdown();
    CHECK(now == s.closed());
    if (now) CHECK(!ev.in_message);
  }
  if (tls_used) *tls_used = ev.tls_started;
  return ev.transcript;
}

void fuzz_scanner(FuzzedDataProvider& fdp) {
  uint64_t max = fdp.ConsumeIntegralInRange<uint64_t>(0, 3000);
  std::vector<size_t> cuts;
  for (int i = fdp.ConsumeIntegralInRange(0, 8); i > 0; --i) cuts.push_back(fdp.ConsumeIntegral<uint16_t>());
  std::string data = fdp.ConsumeRemainingBytesAsString();
  auto ref = sr::test::reference_scan(data, max);
  sr::smtp::data_scanner sc;
  sc.reset(max);
  std::string body;
  size_t pos = 0;
  bool done = false;
  std::sort(cuts.begin(), cuts.end());
  cuts.push_back(data.size());
  for (size_t end : cuts) {
    end = std::min(end, data.size());
    if (end <= pos || done) continue;
    auto* ptr = reinterpret_cast<std::byte*>(data.data()) + pos;
    auto r = sc.scan(std::span<std::byte>(ptr, end - pos));
    CHECK(r.body_len <= r.consumed);
    CHECK(r.done || r.consumed == end - pos);
    body.append(reinterpret_cast<const char*>(ptr), r.body_len);
    pos += r.consumed;
    done = r.done;
  }
  CHECK(done == ref.done);
  CHECK(pos == ref.consumed);
  CHECK(sc.err() == ref.err);
  if (ref.err == sr::smtp::data_scanner::error::none) CHECK(body == ref.body);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  FuzzedDataProvider fdp(bytes, size);
  uint8_t mode = fdp.ConsumeIntegral<uint8_t>();
  if (mode % 4 == 3) {
    fuzz_scanner(fdp);
    return 0;
  }
  session_params p;
  p.hostname = "fuzz.test";
  uint8_t flags = fdp.ConsumeIntegral<uint8_t>();
  p.starttls_available = flags & 1;
  p.require_tls = flags & 2;
  p.relay_allowed = !(flags & 4);
  p.tls_active = flags & 8;
  p.submission = mode & 4;
  int finale = (flags >> 4) % 3;
  p.max_errors = fdp.ConsumeIntegralInRange<unsigned>(0, 30);
  p.max_recipients = fdp.ConsumeIntegralInRange<unsigned>(1, 5);
  p.max_message_size = fdp.ConsumeIntegralInRange<uint64_t>(0, 5000);
  std::vector<size_t> cuts;
  for (int i = fdp.ConsumeIntegralInRange(0, 16); i > 0; --i) cuts.push_back(fdp.ConsumeIntegral<uint16_t>());
  std::sort(cuts.begin(), cuts.end());
  std::string data = fdp.ConsumeRemainingBytesAsString();
  bool tls_split = false, tls_whole = false;
  std::string split = run(p, data, cuts, finale, &tls_split);
  std::string whole = run(p, data, {}, finale, &tls_whole);
  // STARTTLS discards the rest of whatever buffer carried it, so only TLS-free
  // conversations are independent of the split.
  if (!tls_split && !tls_whole) CHECK(split == whole);
  return 0;
}
