// Google Benchmark for the SMTP hot paths: DATA scanner throughput (bytes/s) on 10 KiB and
// 1 MiB messages with and without dot-stuffing, and command handling rate (items/s) for a
// pipelined MAIL/RCPT/DATA group, both in the bare codec and through the inbound session.
#include <benchmark/benchmark.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "sealrelay/inbound/session.hh"
#include "sealrelay/smtp/command.hh"
#include "sealrelay/smtp/data_scanner.hh"

namespace {

constexpr size_t chunk_size = 16 * 1024;  // a receive buffer, as the engine hands them over

// A message of `size` octets of 76-column text; with `stuffed`, every 4th line starts with a
// dot (sent as ".." on the wire). Ends with CRLF "." CRLF.
std::string make_message(size_t size, bool stuffed) {
  std::string m;
  m.reserve(size + 128);
  size_t line = 0;
  while (m.size() < size) {
    if (stuffed && line % 4 == 0) m += "..";
    for (int i = 0; i < 74; ++i) m.push_back(char('a' + (line + i) % 26));
    m += "\r\n";
    ++line;
  }
  m += ".\r\n";
  return m;
}

void BM_data_scanner(benchmark::State& state) {
  const size_t size = size_t(state.range(0));
  const bool stuffed = state.range(1) != 0;
  const std::string wire = make_message(size, stuffed);
  std::vector<std::byte> buf(wire.size());
  sr::smtp::data_scanner sc;
  for (auto _ : state) {
    // Unstuffing rewrites the buffer in place, so each round starts from a fresh copy
    // (BM_memcpy_baseline shows what that copy costs).
    std::memcpy(buf.data(), wire.data(), wire.size());
    sc.reset(64ull << 20);
    size_t pos = 0, body = 0;
    while (pos < buf.size()) {
      size_t n = std::min(chunk_size, buf.size() - pos);
      auto r = sc.scan(std::span<std::byte>(buf.data() + pos, n));
      body += r.body_len;
      pos += r.consumed;
      if (r.done) break;
    }
    if (sc.err() != sr::smtp::data_scanner::error::none) state.SkipWithError("scanner rejected the message");
    benchmark::DoNotOptimize(body);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(wire.size()));
  state.SetLabel(stuffed ? "dot-stuffed" : "plain");
}
BENCHMARK(BM_data_scanner)
    ->ArgNames({"size", "stuffed"})
    ->Args({10 << 10, 0})
    ->Args({10 << 10, 1})
    ->Args({1 << 20, 0})
    ->Args({1 << 20, 1});

void BM_memcpy_baseline(benchmark::State& state) {
  const std::string wire = make_message(size_t(state.range(0)), false);
  std::vector<std::byte> buf(wire.size());
  for (auto _ : state) {
    std::memcpy(buf.data(), wire.data(), wire.size());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(wire.size()));
}
BENCHMARK(BM_memcpy_baseline)->Arg(10 << 10)->Arg(1 << 20);

struct verb_entry {
  std::string_view verb;
  int id;
};
constexpr std::array<verb_entry, 12> verbs{{{"EHLO", 0}, {"HELO", 1}, {"MAIL", 2}, {"RCPT", 3}, {"DATA", 4},
                                           {"RSET", 5}, {"NOOP", 6}, {"QUIT", 7}, {"HELP", 8}, {"VRFY", 9},
                                           {"EXPN", 10}, {"STARTTLS", 11}}};

const std::array<std::string_view, 4> group = {
    "MAIL FROM:<newsletter@sender.example.org> SIZE=48213 BODY=8BITMIME",
    "RCPT TO:<patient.one@clinic.example.net>",
    "RCPT TO:<patient.two@clinic.example.net>",
    "DATA",
};

// The codec alone: split, table lookup, path and parameter parsing.
void BM_command_parse(benchmark::State& state) {
  for (auto _ : state) {
    for (std::string_view line : group) {
      auto c = sr::smtp::split_command(line);
      const verb_entry* e = sr::smtp::find_verb<verb_entry>(verbs, c.verb);
      if (e->id == 2) {
        auto m = sr::smtp::parse_mail_from(c.arg);
        benchmark::DoNotOptimize(m);
      } else if (e->id == 3) {
        auto r = sr::smtp::parse_rcpt_to(c.arg);
        benchmark::DoNotOptimize(r);
      }
      benchmark::DoNotOptimize(e);
    }
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(group.size()));
}
BENCHMARK(BM_command_parse);

// An engine that discards everything and answers end_message() at once.
struct null_events : sr::inbound::events {
  sr::inbound::session* s = nullptr;
  size_t bytes = 0;
  void send(std::string_view b) override { bytes += b.size(); }
  void start_tls() override {}
  void begin_message(const sr::inbound::envelope&) override {}
  void body(std::span<std::byte> b) override { bytes += b.size(); }
  void end_message(const sr::inbound::envelope&) override { s->message_result("4QxYzAbCdE"); }
  void abort_message() override {}
  void close() override {}
};

// The whole session: one pipelined MAIL/RCPT/RCPT/DATA group, a short body and the dot,
// fed as one buffer. Items are the four commands.
void BM_session_pipelined_group(benchmark::State& state) {
  sr::inbound::session_params p;
  p.hostname = "relay.example.org";
  p.relay_allowed = true;
  null_events ev;
  sr::inbound::session s(p, ev);
  ev.s = &s;
  s.greet();
  std::string ehlo = "EHLO client.example.org\r\n";
  s.feed(std::span<std::byte>(reinterpret_cast<std::byte*>(ehlo.data()), ehlo.size()));
  std::string wire;
  for (std::string_view l : group) wire.append(l).append("\r\n");
  wire += "Subject: notice\r\n\r\nYour appointment is confirmed.\r\n.\r\n";
  std::vector<std::byte> buf(wire.size());
  for (auto _ : state) {
    std::memcpy(buf.data(), wire.data(), wire.size());
    size_t used = s.feed(buf);
    if (used != buf.size()) state.SkipWithError("session stalled");
  }
  benchmark::DoNotOptimize(ev.bytes);
  state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(group.size()));
}
BENCHMARK(BM_session_pipelined_group);

}  // namespace

BENCHMARK_MAIN();
