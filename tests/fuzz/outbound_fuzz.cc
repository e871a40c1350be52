// libFuzzer target: bytes from a remote MX. Mode 0 feeds them to smtp::reply_parser at
// arbitrary split points and checks that the replies (code, lines) and the error do not
// depend on the split, and that the hostile-peer limits hold. Mode 1 plays an MX against an
// outbound::session: the fuzzer picks the MX's bytes, their splits, the TLS decisions and
// the engine's answers; the session's events must keep their contract (complete command
// lines, one result per recipient, closed() once and last, nothing sent after it).
#include <fuzzer/FuzzedDataProvider.h>

#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "check.hh"
#include "sealrelay/outbound/session.hh"
#include "sealrelay/smtp/reply.hh"

namespace {

using sr::smtp::reply_parser;

// ------------------------------------------------------------------ mode 0: reply parser

// Feed `data` in pieces ending at `cuts`; the replies as "CODE|line|line\n", then the end state.
std::string parse_all(std::string_view data, const std::vector<size_t>& cuts) {
  reply_parser p;
  std::string out;
  size_t pos = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(data.size());
  for (size_t end : ends) {
    end = std::min(end, data.size());
    while (pos < end) {
      size_t used = 0;
      auto st = p.feed(data.substr(pos, end - pos), used);
      CHECK(used <= end - pos);
      pos += used;
      if (st == reply_parser::status::error) {
        CHECK(p.state() == reply_parser::status::error);
        size_t again = 1;
        CHECK(p.feed("250 ok\r\n", again) == reply_parser::status::error);   // sticky
        return out + "ERROR";
      }
      if (st == reply_parser::status::need_more) {
        CHECK(pos == end);
        break;
      }
      const auto& r = p.get();
      CHECK(r.code() >= 100 && r.code() <= 999);
      CHECK(r.line_count() >= 1);
      size_t total = 0;
      out += std::to_string(r.code());
      for (size_t i = 0; i < r.line_count(); ++i) {
        auto l = r.line(i);
        CHECK(l.size() <= reply_parser::max_line);
        CHECK(l.find('\n') == std::string_view::npos);
        total += l.size();
        out += "|";
        out += l;
      }
      CHECK(total <= reply_parser::max_reply);
      auto enh = r.enhanced();
      CHECK(enh.empty() || r.line(0).substr(0, enh.size()) == enh);
      out += "\n";
      p.next();
    }
  }
  return out + "END";
}

void fuzz_parser(FuzzedDataProvider& fdp) {
  std::vector<size_t> cuts;
  for (int i = fdp.ConsumeIntegralInRange(0, 16); i > 0; --i) cuts.push_back(fdp.ConsumeIntegral<uint16_t>());
  std::sort(cuts.begin(), cuts.end());
  std::string data = fdp.ConsumeRemainingBytesAsString();
  CHECK(parse_all(data, cuts) == parse_all(data, {}));
}

// ------------------------------------------------------------- mode 1: outbound session

// The TLS decisions, answered from the fuzzer's bytes.
struct fuzz_decider : sr::outbound::tls_decider {
  FuzzedDataProvider* fdp = nullptr;
  sr::outbound::decision<sr::outbound::ehlo_action> on_ehlo(bool offered) override {
    switch (fdp->ConsumeIntegralInRange(0, 3)) {
      case 0: return {sr::outbound::ehlo_action::abort, sr::report::reason::starttls_not_offered};
      case 1: return {sr::outbound::ehlo_action::proceed_plain};
      default:
        return {offered ? sr::outbound::ehlo_action::starttls : sr::outbound::ehlo_action::proceed_plain};
    }
  }
  sr::outbound::decision<sr::outbound::refused_action> on_starttls_refused(const sr::smtp::reply&) override {
    return {fdp->ConsumeBool() ? sr::outbound::refused_action::abort : sr::outbound::refused_action::proceed_plain};
  }
  sr::outbound::decision<sr::outbound::tls_action> on_tls(const sr::outbound::tls_outcome&) override {
    return {fdp->ConsumeBool() ? sr::outbound::tls_action::abort : sr::outbound::tls_action::proceed,
            sr::report::reason::weak_cipher};
  }
};

// The engine's side: checks every event against the session's contract.
struct engine : sr::outbound::events {
  sr::outbound::session* s = nullptr;
  size_t expected_rcpts = 0;    // recipients of the transaction in flight (0: none)
  bool closed_seen = false;
  bool want_tls = false;        // start_tls() raised, not answered yet
  bool is_idle = false;         // idle() raised, no new transaction started since
  unsigned transactions = 0;

  void send(std::string_view b) override {
    CHECK(!closed_seen);
    CHECK(b.size() >= 2 && b.substr(b.size() - 2) == "\r\n");
    size_t start = 0;
    while (start < b.size()) {   // complete lines, no bare CR or LF, none over 512 octets
      size_t e = b.find("\r\n", start);
      CHECK(e != std::string_view::npos);
      std::string_view line = b.substr(start, e - start);
      CHECK(line.find('\r') == std::string_view::npos && line.find('\n') == std::string_view::npos);
      CHECK(line.find('\0') == std::string_view::npos);
      CHECK(line.size() + 2 <= 512);
      start = e + 2;
    }
  }
  void send_body(std::span<const iovec> iov) override {
    CHECK(!closed_seen);
    CHECK(expected_rcpts > 0);
    CHECK(!iov.empty());
  }
  void start_tls() override {
    CHECK(!closed_seen);
    CHECK(!s->tls_active());
    want_tls = true;
  }
  void transaction_done(const sr::outbound::txn_result& r) override {
    CHECK(!closed_seen);
    CHECK(expected_rcpts > 0);
    CHECK(r.rcpts.size() == expected_rcpts);
    CHECK(r.delivered + r.deferred + r.bounced == expected_rcpts);
    unsigned d = 0, f = 0, b = 0;
    for (const auto& x : r.rcpts) {
      d += x.status == sr::outbound::rcpt_status::delivered;
      f += x.status == sr::outbound::rcpt_status::deferred;
      b += x.status == sr::outbound::rcpt_status::bounced;
      CHECK(x.enhanced.empty() || x.text.substr(0, x.enhanced.size()) == x.enhanced);
      // Delivered only on the final dot's 2xx, after the body went out.
      if (x.status == sr::outbound::rcpt_status::delivered) CHECK(r.body_sent && x.code >= 200 && x.code < 300);
    }
    CHECK(d == r.delivered && f == r.deferred && b == r.bounced);
    expected_rcpts = 0;
    ++transactions;
  }
  void idle() override {
    CHECK(!closed_seen);
    CHECK(expected_rcpts == 0);
    CHECK(s->phase() == sr::outbound::phase::idle);
    is_idle = true;
  }
  void closed(const sr::outbound::close_info& info) override {
    CHECK(!closed_seen);
    CHECK(info.reason != sr::report::reason::none);
    CHECK(expected_rcpts == 0);   // a transaction cut by the close is reported before it
    closed_seen = true;
  }
};

const char* const rcpt_pool[] = {"a@x.test", "b@x.test", "c@y.test", "d@y.test"};
const char* const body_text = "Subject: fuzz\r\n\r\n.leading dot\r\nbody\r\n";

void fuzz_session(FuzzedDataProvider& fdp) {
  fuzz_decider decider;
  decider.fdp = &fdp;
  engine ev;
  sr::outbound::session_params params{.hostname = "relay.test"};
  sr::outbound::session s(params, ev, decider);
  ev.s = &s;
  std::vector<std::string_view> rcpts;
  iovec body{const_cast<char*>(body_text), std::char_traits<char>::length(body_text)};
  for (int step = 0; step < 64 && !ev.closed_seen && fdp.remaining_bytes() > 0; ++step) {
    if (ev.want_tls) {
      ev.want_tls = false;
      if (fdp.ConsumeBool()) {
        sr::outbound::tls_outcome o{.version = "TLSv1.3", .cipher = "TLS_AES_256_GCM_SHA384", .cipher_bits = 256,
                                    .cert = sr::outbound::cert_verdict::verified};
        s.tls_done(o);
        CHECK(ev.closed_seen || s.tls_active());
      } else {
        s.tls_failed(sr::report::reason::handshake_failed);
        CHECK(ev.closed_seen);
      }
      continue;
    }
    if (ev.is_idle && s.phase() == sr::outbound::phase::idle) {
      ev.is_idle = false;
      if (fdp.ConsumeIntegralInRange(0, 7) == 0) {
        CHECK(s.quit());
        continue;
      }
      rcpts.clear();
      for (int i = fdp.ConsumeIntegralInRange(1, 4); i > 0; --i) rcpts.push_back(rcpt_pool[fdp.ConsumeIntegralInRange(0, 3)]);
      sr::outbound::message m{.mail_from = fdp.ConsumeBool() ? "" : "sender@z.test",
                              .rcpts = rcpts,
                              .body = std::span<const iovec>(&body, 1),
                              .eight_bit = fdp.ConsumeBool()};
      ev.expected_rcpts = rcpts.size();
      if (!s.send_message(m)) ev.expected_rcpts = 0;
      continue;
    }
    switch (fdp.ConsumeIntegralInRange(0, 15)) {
      case 0: s.timeout(); CHECK(ev.closed_seen); break;
      case 1: s.connection_lost(); CHECK(ev.closed_seen); break;
      default: {
        // A chunk of the MX's bytes; `send_message()` and `quit()` are refused outside idle.
        std::string chunk = fdp.ConsumeRandomLengthString(600);
        s.feed(chunk);
        if (s.phase() != sr::outbound::phase::idle) {
          std::string_view one = "x@y.test";
          sr::outbound::message m{.mail_from = "s@z.test", .rcpts = std::span(&one, 1), .body = std::span<const iovec>(&body, 1)};
          if (!ev.is_idle) CHECK(!s.send_message(m));
        }
      }
    }
  }
  if (!ev.closed_seen) s.connection_lost();
  CHECK(ev.closed_seen);
  CHECK(s.phase() == sr::outbound::phase::closed);
  s.feed("250 more after close\r\n");   // ignored
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  // The first byte picks the mode (FuzzedDataProvider takes integers from the end, so a
  // seed reads: mode, the MX's chunks separated by "\\x", then the choices, last first).
  if (size == 0) return 0;
  FuzzedDataProvider fdp(bytes + 1, size - 1);
  if (bytes[0] % 2 == 0)
    fuzz_parser(fdp);
  else
    fuzz_session(fdp);
  return 0;
}
