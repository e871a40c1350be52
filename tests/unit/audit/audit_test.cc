// Audit log: exact JSON lines (field order, nulls, escaping, timestamps), a strict JSON
// reader decoding every formatted line back to its input, no allocation once warm, and
// the io_uring writer on real shards writing a real file: two shards' lines whole and
// counted exactly, a slow disk under a tiny cap keeping every record while delivery on
// the shard pauses, failed writes counted and reported (failing, metrics), a line torn by
// a full disk kept apart from the next record, and the shutdown drain.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "sealrelay/admin/metrics.hh"
#include "sealrelay/queue/scheduler.hh"
#include "sealrelay/audit/record.hh"
#include "sealrelay/audit/writer.hh"
#include "sealrelay/core/shard.hh"
#include "support/json_check.hh"

using namespace sr;

// Allocation counter for the no-allocation-after-warm-up check.
static std::atomic<uint64_t> g_allocs{0};
// noinline: GCC otherwise "sees" malloc'd memory reach free through inlined delete and warns.
__attribute__((noinline)) void* operator new(size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
__attribute__((noinline)) void operator delete(void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace {

std::string temp_dir(const char* tag) {
  std::string t = std::string(testing::TempDir()) + "sr_audit_" + tag + "_" + std::to_string(getpid());
  std::filesystem::remove_all(t);
  return t;
}

std::vector<std::string> read_lines(const std::string& path, bool* ends_with_newline = nullptr) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string all = ss.str();
  if (ends_with_newline) *ends_with_newline = all.empty() || all.back() == '\n';
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < all.size()) {
    size_t nl = all.find('\n', start);
    if (nl == std::string::npos) nl = all.size();
    lines.push_back(all.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

audit::record full_record() {
  audit::record r;
  r.ts_ms = 1795863755123;  // 2026-11-28T11:02:35.123Z
  r.queue_id = "0A1B2C3D";
  r.msg_id = "abc@example.org";
  r.kind = audit::kind::message;
  r.from = "sender@example.org";
  r.rcpt = "alice@bank.example";
  r.domain = "bank.example";
  r.mx = "mx1.bank.example";
  r.ip = "192.0.2.10";
  r.attempt = 2;
  r.policy = config::tls_policy::forced;
  r.source = report::policy_source::mta_sts;
  r.tls = true;
  r.tls_version = "TLSv1.3";
  r.cipher = "TLS_AES_256_GCM_SHA384";
  r.cipher_bits = 256;
  r.cert = audit::cert_status::verified;
  r.outcome = audit::outcome::delivered;
  r.smtp_reply = "250 2.0.0 Ok: queued as 4XyZ";
  r.source_ip = "192.0.2.99";
  return r;
}

std::string format_one(const audit::record& r) {
  std::string s;
  audit::format(r, s);
  return s;
}

std::string json_string(std::string_view s) {
  std::string out;
  audit::append_json_string(s, out);
  return out;
}

}  // namespace

TEST(audit_format, full_record_is_exact_in_design_order) {
  EXPECT_EQ(format_one(full_record()),
            "{\"ts\":\"2026-11-28T11:02:35.123Z\",\"queue_id\":\"0A1B2C3D\",\"msg_id\":\"abc@example.org\","
            "\"kind\":\"message\",\"from\":\"sender@example.org\",\"rcpt\":\"alice@bank.example\","
            "\"domain\":\"bank.example\",\"mx\":\"mx1.bank.example\",\"ip\":\"192.0.2.10\",\"source_ip\":\"192.0.2.99\",\"attempt\":2,"
            "\"policy\":\"forced\",\"policy_source\":\"mta-sts\",\"tls\":true,\"tls_version\":\"TLSv1.3\","
            "\"cipher\":\"TLS_AES_256_GCM_SHA384\",\"cipher_bits\":256,\"cert\":\"verified\","
            "\"outcome\":\"delivered\",\"reason\":null,\"smtp_reply\":\"250 2.0.0 Ok: queued as 4XyZ\","
            "\"bounce_class\":null}\n");
}

TEST(audit_format, absent_fields_are_null_and_null_sender_is_empty) {
  audit::record r;
  r.ts_ms = 946684800007;
  r.queue_id = "Q1";
  r.kind = audit::kind::dsn;
  r.from = "";
  r.rcpt = "bob@nomx.example";
  r.domain = "nomx.example";
  r.policy = config::tls_policy::exclusive;
  r.source = report::policy_source::config;
  r.outcome = audit::outcome::dropped;
  r.reason = report::reason::starttls_not_offered;
  EXPECT_EQ(format_one(r),
            "{\"ts\":\"2000-01-01T00:00:00.007Z\",\"queue_id\":\"Q1\",\"msg_id\":null,\"kind\":\"dsn\","
            "\"from\":\"\",\"rcpt\":\"bob@nomx.example\",\"domain\":\"nomx.example\",\"mx\":null,\"ip\":null,\"source_ip\":null,"
            "\"attempt\":1,\"policy\":\"exclusive\",\"policy_source\":\"config\",\"tls\":false,"
            "\"tls_version\":null,\"cipher\":null,\"cipher_bits\":null,\"cert\":\"none\","
            "\"outcome\":\"dropped\",\"reason\":\"starttls-not-offered\",\"smtp_reply\":null,\"bounce_class\":null}\n");
}

TEST(audit_format, bounced_record_carries_its_class_and_suppressed_its_outcome) {
  audit::record r;
  r.ts_ms = 946684800007;
  r.queue_id = "Q2";
  r.rcpt = "gone@example.net";
  r.domain = "example.net";
  r.outcome = audit::outcome::bounced;
  r.reason = report::reason::remote_5xx;
  r.smtp_reply = "550 5.1.1 User unknown";
  r.bounce_class = report::bounce_class::bad_mailbox;
  std::string line = format_one(r);
  EXPECT_NE(line.find("\"outcome\":\"bounced\",\"reason\":\"remote-5xx\",\"smtp_reply\":\"550 5.1.1 User unknown\","
                      "\"bounce_class\":\"bad-mailbox\"}\n"),
            std::string::npos)
      << line;
  r.outcome = audit::outcome::suppressed;
  r.reason = report::reason::none;
  r.smtp_reply.reset();
  r.bounce_class.reset();
  line = format_one(r);
  EXPECT_NE(line.find("\"outcome\":\"suppressed\",\"reason\":null,\"smtp_reply\":null,\"bounce_class\":null}\n"),
            std::string::npos)
      << line;
}

TEST(audit_format, every_enum_token) {
  EXPECT_STREQ(audit::to_string(audit::kind::escrow_notice), "escrow-notice");
  EXPECT_STREQ(audit::to_string(audit::kind::tlsrpt), "tlsrpt");
  EXPECT_EQ(report::to_string(report::policy_source::default_policy), "default");
  EXPECT_EQ(report::to_string(report::policy_source::dane), "dane");
  EXPECT_EQ(report::to_string(report::policy_source::requiretls), "requiretls");
  EXPECT_STREQ(audit::to_string(audit::cert_status::invalid), "invalid");
  const char* outcomes[] = {"delivered", "deferred", "bounced", "escrowed", "pgp", "smime", "dropped"};
  for (int i = 0; i < 7; ++i) EXPECT_STREQ(audit::to_string(audit::outcome(i)), outcomes[i]);
}

TEST(audit_format, timestamps_are_rfc3339_utc_with_millis) {
  auto ts = [](int64_t ms) {
    std::string s;
    audit::append_timestamp(ms, s);
    return s;
  };
  EXPECT_EQ(ts(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(ts(1795863755123), "2026-11-28T11:02:35.123Z");
  EXPECT_EQ(ts(1709251199999), "2024-02-29T23:59:59.999Z");
  EXPECT_EQ(ts(4107542400000), "2100-03-01T00:00:00.000Z");
  // Against the C library for a spread of instants.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    int64_t ms = int64_t(rng() % 4102444800000ull);
    time_t secs = time_t(ms / 1000);
    tm t{};
    gmtime_r(&secs, &t);
    char want[80];
    snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900, t.tm_mon + 1,
             t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, int(ms % 1000));
    ASSERT_EQ(ts(ms), want) << ms;
  }
  // ts 0 in a record means "now".
  audit::record r;
  int64_t before = audit::now_unix_ms();
  auto obj = json_check::parse_line(format_one(r).substr(0, format_one(r).size() - 1));
  ASSERT_TRUE(obj);
  std::string now_ts = obj->fields["ts"].text;
  EXPECT_GE(now_ts, ts(before - before % 1000));
}

TEST(audit_format, escapes_quotes_backslashes_and_control_characters) {
  EXPECT_EQ(json_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(json_string("\n\r\t\b\f"), "\"\\n\\r\\t\\b\\f\"");
  EXPECT_EQ(json_string(std::string("\x00\x01\x1f\x7f", 4)), "\"\\u0000\\u0001\\u001f\\u007f\"");
  EXPECT_EQ(json_string("/ <>&'"), "\"/ <>&'\"");
  EXPECT_EQ(json_string(""), "\"\"");
}

TEST(audit_format, valid_utf8_is_kept_and_invalid_bytes_are_escaped) {
  EXPECT_EQ(json_string("Jos\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7"), "\"Jos\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7\"");
  // Lone Latin-1 byte, truncated sequence, overlong '/', UTF-16 surrogate, > U+10FFFF.
  EXPECT_EQ(json_string("Jos\xe9"), "\"Jos\\u00e9\"");
  EXPECT_EQ(json_string("x\xe2\x82"), "\"x\\u00e2\\u0082\"");
  EXPECT_EQ(json_string("\xc0\xaf"), "\"\\u00c0\\u00af\"");
  EXPECT_EQ(json_string("\xed\xa0\x80"), "\"\\u00ed\\u00a0\\u0080\"");
  EXPECT_EQ(json_string("\xf4\x90\x80\x80"), "\"\\u00f4\\u0090\\u0080\\u0080\"");
  // Line separators are escaped for JavaScript readers.
  EXPECT_EQ(json_string("a\xe2\x80\xa8z\xe2\x80\xa9"), "\"a\\u2028z\\u2029\"");
}

TEST(audit_format, long_fields_are_cut_at_a_character_boundary) {
  std::string s(audit::max_field_bytes - 1, 'a');
  s += "\xc3\xa9";  // the 2-byte character straddles the limit
  s += "tail";
  std::string out = json_string(s);
  EXPECT_EQ(out, "\"" + std::string(audit::max_field_bytes - 1, 'a') + "\"");
  std::string big(100000, '\x01');
  EXPECT_LE(json_string(big).size(), audit::max_field_bytes * 6 + 2);
}

TEST(audit_format, random_bytes_round_trip_through_a_strict_json_reader) {
  std::mt19937 rng(42);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s;
    size_t n = rng() % 40;
    for (size_t i = 0; i < n; ++i) {
      switch (rng() % 4) {
        case 0: s += char(rng() % 256); break;                 // any byte
        case 1: s += char(0x20 + rng() % 95); break;           // printable
        case 2: s += "\xc3\xa9"; break;                        // é
        default: s += "\xf0\x9f\x93\xa7"; break;               // 📧
      }
    }
    // Expected decoding: valid UTF-8 as is; each invalid byte as the Latin-1 character.
    std::string want;
    for (size_t i = 0; i < s.size();) {
      size_t k = json_check::valid_utf8_at(s, i);
      if (k) {
        want.append(s, i, k);
        i += k;
      } else {
        json_check::put_utf8(uint8_t(s[i]), want);
        ++i;
      }
    }
    audit::record r = full_record();
    r.smtp_reply = s;
    r.rcpt = s;
    std::string line = format_one(r);
    ASSERT_EQ(line.back(), '\n');
    ASSERT_EQ(line.find('\n'), line.size() - 1) << "one line only";
    auto obj = json_check::parse_line(std::string_view(line).substr(0, line.size() - 1));
    ASSERT_TRUE(obj) << line;
    EXPECT_EQ(obj->fields["smtp_reply"].text, want);
    EXPECT_EQ(obj->fields["rcpt"].text, want);
  }
}

TEST(audit_format, parsed_line_has_every_field_with_its_type) {
  std::string line = format_one(full_record());
  auto obj = json_check::parse_line(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(obj);
  std::vector<std::string> want = {"ts", "queue_id", "msg_id", "kind", "from", "rcpt", "domain",
                                   "mx", "ip", "source_ip", "attempt", "policy", "policy_source", "tls",
                                   "tls_version", "cipher", "cipher_bits", "cert", "outcome",
                                   "reason", "smtp_reply", "bounce_class"};
  EXPECT_EQ(obj->keys, want);
  EXPECT_EQ(obj->fields["attempt"].type, json_check::value::number);
  EXPECT_EQ(obj->fields["cipher_bits"].text, "256");
  EXPECT_EQ(obj->fields["tls"].type, json_check::value::boolean);
  EXPECT_EQ(obj->fields["reason"].type, json_check::value::null);
}

TEST(audit_format, no_allocation_once_the_buffer_is_warm) {
  std::string buf;
  buf.reserve(64 * 1024);
  audit::record r = full_record();
  r.reason = report::reason::handshake_failed;
  r.smtp_reply = "454 4.7.0 TLS not available due to \"local problem\"\r";
  audit::format(r, buf);
  buf.clear();
  uint64_t before = g_allocs.load();
  for (int i = 0; i < 100; ++i) audit::format(r, buf);
  EXPECT_EQ(g_allocs.load(), before);
}

TEST(audit_file, log_file_creates_parent_directories_and_appends) {
  std::string dir = temp_dir("sink");
  std::string path = dir + "/a/b/audit.jsonl";
  {
    auto sink = audit::file_sink::open(path);
    ASSERT_TRUE(sink) << sink.err();
    ASSERT_TRUE(sink->append(full_record()));
  }
  {
    auto sink = audit::file_sink::open(path);  // reopen: appends, never truncates
    ASSERT_TRUE(sink);
    audit::record r = full_record();
    r.attempt = 3;
    ASSERT_TRUE(sink->append(r));
  }
  auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0] + "\n", format_one(full_record()));
  EXPECT_NE(lines[1].find("\"attempt\":3"), std::string::npos);
  auto bad = audit::log_file::open("/proc/self/no/such/dir/audit.jsonl");
  EXPECT_FALSE(bad);
  std::filesystem::remove_all(dir);
}

// Two shards append `per_shard` records each, in bursts posted between completions; the
// file must hold every record exactly once, each line whole and valid, each shard's
// records in order.
TEST(audit_writer, two_shards_write_whole_lines_with_an_exact_count) {
  std::string dir = temp_dir("two");
  auto file = audit::log_file::open(dir + "/audit.jsonl");
  ASSERT_TRUE(file) << file.err();
  constexpr int per_shard = 20000;
  std::atomic<int> failed{0};
  std::atomic<uint64_t> written_records[2] = {0, 0};

  auto run_shard = [&](unsigned idx) {
    core::shard::options o;
    o.index = idx;
    o.entries = 64;
    o.tick_ms = 10;
    core::shard sh(o);
    if (!sh.init()) {
      failed = 1;
      return;
    }
    audit::writer::options wo;
    wo.flush_bytes = 8192;            // many writes, many in flight while filling
    wo.max_buffered_bytes = 64u << 20;
    audit::writer w(sh, file->fd(), wo);
    std::string qid, reply;
    int next = 0;
    std::function<void()> burst = [&] {
      for (int k = 0; k < 500 && next < per_shard; ++k, ++next) {
        audit::record r = full_record();
        // assign/append, not operator+: GCC 12 reports a -Wrestrict false positive on it.
        qid.assign("S").append(std::to_string(idx)).append("-").append(std::to_string(next));
        reply.assign("250 ok \"");
        reply.append(std::to_string(next)).append("\"\n\x01");
        r.queue_id = qid;
        r.smtp_reply = reply;
        r.attempt = unsigned(next + 1);
        w.append(r);
      }
      if (next < per_shard) sh.post(burst);
    };
    sh.post(burst);
    sh.on_tick([&] {
      if (next == per_shard && w.idle()) sh.stop();
    });
    sh.run();
    w.flush_and_wait();
    if (w.dropped() != 0 || w.records() != uint64_t(per_shard)) failed = 2;
    written_records[idx] = w.records();
  };
  std::thread t0(run_shard, 0), t1(run_shard, 1);
  t0.join();
  t1.join();
  ASSERT_EQ(failed.load(), 0);

  bool ends_nl = false;
  auto lines = read_lines(dir + "/audit.jsonl", &ends_nl);
  EXPECT_TRUE(ends_nl);
  ASSERT_EQ(lines.size(), size_t(2 * per_shard));
  int next_seen[2] = {0, 0};
  for (const auto& l : lines) {
    auto obj = json_check::parse_line(l);
    ASSERT_TRUE(obj) << l;
    ASSERT_EQ(obj->keys.size(), 22u);
    const std::string& q = obj->fields["queue_id"].text;
    ASSERT_EQ(q[0], 'S');
    int shard = q[1] - '0';
    ASSERT_TRUE(shard == 0 || shard == 1) << q;
    int seq = std::stoi(q.substr(3));
    ASSERT_EQ(seq, next_seen[shard]) << "shard " << shard << " out of order or missing";
    ++next_seen[shard];
    ASSERT_EQ(obj->fields["smtp_reply"].text, "250 ok \"" + std::to_string(seq) + "\"\n\x01");
  }
  EXPECT_EQ(next_seen[0], per_shard);
  EXPECT_EQ(next_seen[1], per_shard);
  std::filesystem::remove_all(dir);
}

// With a write in flight (the loop is not running, so its completion waits) and a tiny
// cap, no record is dropped: the writer reports pressure, the shard's scheduler stops
// handing out jobs and opening connections, and once the disk has taken the backlog
// delivery resumes. Every record reaches the file. (Before: records past the cap were
// dropped and counted.)
TEST(audit_writer, slow_disk_keeps_every_record_and_pauses_delivery_until_it_drains) {
  std::string dir = temp_dir("pressure");
  auto file = audit::log_file::open(dir + "/audit.jsonl");
  ASSERT_TRUE(file);
  core::shard::options o;
  o.entries = 64;
  o.tick_ms = 5;
  core::shard sh(o);
  ASSERT_TRUE(sh.init());
  admin::registry reg(1);
  admin::relay_metrics m(reg);
  config::config cfg;
  cfg.outbound.max_conns_per_domain = 4;
  queue::scheduler sched(sh, cfg, {});
  struct recorder : queue::connector {
    std::vector<queue::domain_state*> opened;
    void open(queue::domain_state& d) override { opened.push_back(&d); }
  } conn;
  sched.set_connector(&conn);
  audit::writer::options wo;
  wo.flush_bytes = 1;            // the first record goes out at once and stays in flight
  wo.max_buffered_bytes = 2000;  // about four records fit behind it
  wo.dropped_cell = &m.audit_dropped.cell(0);
  audit::writer w(sh, file->fd(), wo);
  std::vector<bool> pressure;
  w.on_pressure([&](bool full) {
    pressure.push_back(full);
    sched.pause(full);   // what delivery::agent wires up
  });
  constexpr int total = 100;
  for (int i = 0; i < total; ++i) {
    audit::record r = full_record();
    r.attempt = unsigned(i + 1);
    w.append(r);
  }
  EXPECT_EQ(w.dropped(), 0u);
  EXPECT_EQ(w.records(), uint64_t(total));
  EXPECT_TRUE(w.backlogged());
  EXPECT_EQ(pressure, std::vector<bool>{true});

  // Paused: a new job opens no connection and cannot be taken.
  auto j = std::make_unique<queue::job>();
  j->queue_id = "AAAAAAAAAAAAAA01";
  j->domain = "wait.test";
  j->rcpts.push_back({"u@wait.test", 0, 0, "", ""});
  sched.enqueue(std::move(j));
  EXPECT_TRUE(conn.opened.empty());

  // The disk catches up (the loop reaps the write): pressure ends and delivery resumes.
  sh.on_tick([&] {
    if (w.idle()) sh.stop();
  });
  sh.run();
  EXPECT_EQ(pressure, (std::vector<bool>{true, false}));
  EXPECT_FALSE(w.backlogged());
  ASSERT_EQ(conn.opened.size(), 1u);
  EXPECT_NE(sched.take(*conn.opened[0]), nullptr);
  EXPECT_EQ(w.dropped(), 0u);
  EXPECT_EQ(m.audit_dropped.value(), 0u);
  auto lines = read_lines(dir + "/audit.jsonl");
  ASSERT_EQ(lines.size(), size_t(total));
  for (int i = 0; i < total; ++i)
    EXPECT_NE(lines[i].find("\"attempt\":" + std::to_string(i + 1) + ","), std::string::npos) << i;
  std::filesystem::remove_all(dir);
}

// A failing write loses its records (counted), counts the error and marks the writer
// failing (the daemon's /healthz reads sealrelay_audit_failing); the next good write
// clears it. (Before: only the lost records were counted; nothing told /healthz.)
TEST(audit_writer, failed_writes_are_counted_and_mark_the_writer_failing_until_one_succeeds) {
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // writes fail with EBADF
  ASSERT_GE(fd, 0);
  core::shard::options o;
  o.entries = 64;
  o.tick_ms = 5;
  core::shard sh(o);
  ASSERT_TRUE(sh.init());
  admin::registry reg(1);
  admin::relay_metrics m(reg);
  audit::writer::options wo;
  wo.flush_bytes = 1 << 20;  // only the tick flushes
  wo.dropped_cell = &m.audit_dropped.cell(0);
  wo.write_errors_cell = &m.audit_write_errors.cell(0);
  wo.failing_cell = &m.audit_failing.cell(0);
  audit::writer w(sh, fd, wo);
  for (int i = 0; i < 7; ++i) w.append(full_record());
  sh.on_tick([&] {
    if (w.idle()) sh.stop();
  });
  sh.run();
  EXPECT_EQ(w.records(), 7u);
  EXPECT_EQ(w.dropped(), 7u);
  EXPECT_EQ(w.bytes_written(), 0u);
  EXPECT_TRUE(w.failing());
  EXPECT_GE(w.write_errors(), 1u);
  EXPECT_EQ(m.audit_failing.value(), 1);
  EXPECT_EQ(m.audit_write_errors.value(), w.write_errors());
  EXPECT_EQ(m.audit_dropped.value(), 7u);
  std::string text = reg.render();
  EXPECT_NE(text.find("\nsealrelay_audit_failing 1\n"), std::string::npos) << text;

  // The disk is back (the same fd number now writes): the next write clears the state.
  int good = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(good, 0);
  ASSERT_EQ(::dup2(good, fd), fd);
  ::close(good);
  w.append(full_record());
  w.flush_and_wait();
  EXPECT_FALSE(w.failing());
  EXPECT_EQ(m.audit_failing.value(), 0);
  EXPECT_EQ(w.dropped(), 7u);
  ::close(fd);
}

TEST(audit_writer, drain_without_the_loop_writes_everything) {
  std::string dir = temp_dir("drain");
  auto file = audit::log_file::open(dir + "/audit.jsonl");
  ASSERT_TRUE(file);
  core::shard::options o;
  o.entries = 64;
  core::shard sh(o);
  ASSERT_TRUE(sh.init());
  audit::writer::options wo;
  wo.flush_bytes = 3000;  // some records in flight, the rest still filling
  audit::writer w(sh, file->fd(), wo);
  for (int i = 0; i < 50; ++i) {
    audit::record r = full_record();
    r.attempt = unsigned(i + 1);
    w.append(r);
  }
  w.flush_and_wait();
  EXPECT_TRUE(w.idle());
  EXPECT_EQ(w.dropped(), 0u);
  auto lines = read_lines(dir + "/audit.jsonl");
  ASSERT_EQ(lines.size(), 50u);
  for (int i = 0; i < 50; ++i)
    EXPECT_NE(lines[i].find("\"attempt\":" + std::to_string(i + 1) + ","), std::string::npos) << i;
  std::filesystem::remove_all(dir);
}

// A full disk cuts a write short inside a line (RLIMIT_FSIZE does it here: the kernel writes up
// to the limit, then fails with EFBIG, as it fails with ENOSPC on a full disk). The fragment
// stays a line of its own: the next record, once there is room, starts a new line, through
// the io_uring writer and through the shutdown drain alike, and a file reopened while it ends
// inside a line is completed first. (Before: the next record was glued to the fragment, one
// corrupt line per full-disk episode: tools/drill-faults, disk full.)
TEST(audit_writer, a_line_torn_by_a_full_disk_does_not_swallow_the_next_record) {
  std::string dir = temp_dir("torn");
  std::string path = dir + "/audit.jsonl";
  auto file = audit::log_file::open(path);
  ASSERT_TRUE(file);
  core::shard::options o;
  o.entries = 64;
  o.tick_ms = 5;
  core::shard sh(o);
  ASSERT_TRUE(sh.init());
  std::atomic<bool> torn{false};
  audit::writer::options wo;
  wo.torn = &torn;
  audit::writer w(sh, file->fd(), wo);
  auto record_n = [](unsigned n) {
    audit::record r = full_record();
    r.attempt = n;
    return r;
  };
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  uint64_t size_before = 0, size_cut = 0;
  bool torn_after_cut = false;
  int step = 0;
  w.append(record_n(1));
  w.flush();
  sh.on_tick([&] {
    if (!w.idle()) return;
    if (step == 0) {  // the "disk" fills 40 bytes into the next record
      size_before = std::filesystem::file_size(path);
      rlimit lim = old;
      lim.rlim_cur = size_before + 40;
      ::setrlimit(RLIMIT_FSIZE, &lim);
      w.append(record_n(2));
      w.flush();
    } else if (step == 1) {  // room again
      ::setrlimit(RLIMIT_FSIZE, &old);
      size_cut = std::filesystem::file_size(path);
      torn_after_cut = torn.load();
      w.append(record_n(3));
      w.flush();
    } else {
      sh.stop();
    }
    ++step;
  });
  sh.run();
  ::setrlimit(RLIMIT_FSIZE, &old);
  EXPECT_EQ(size_cut, size_before + 40) << "the kernel did not cut the write short";
  EXPECT_TRUE(torn_after_cut);
  EXPECT_FALSE(torn.load());
  EXPECT_EQ(w.dropped(), 1u);

  // The shutdown drain (synchronous writes) keeps the rule too.
  {
    rlimit lim = old;
    lim.rlim_cur = std::filesystem::file_size(path) + 25;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
    w.append(record_n(4));
    w.flush_and_wait();
    ::setrlimit(RLIMIT_FSIZE, &old);
    EXPECT_TRUE(torn.load());
    w.append(record_n(5));
    w.flush_and_wait();
    EXPECT_FALSE(torn.load());
  }
  ::signal(SIGXFSZ, old_handler);

  // Reopened while the file ends inside a line (the process stopped right after a cut).
  { std::ofstream(path, std::ios::app) << "{\"ts\":\"cut"; }
  {
    auto sink = audit::file_sink::open(path);
    ASSERT_TRUE(sink);
    ASSERT_TRUE(sink->append(record_n(6)));
  }
  auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 7u);
  // Whole records 1, 3, 5, 6; fragments of 2 and 4 and the "cut" line, each on its own line.
  const int whole[] = {0, 2, 4, 6};
  const unsigned attempt[] = {1, 3, 5, 6};
  for (int i = 0; i < 4; ++i) {
    const std::string& l = lines[size_t(whole[i])];
    EXPECT_TRUE(json_check::parse_line(l).has_value()) << l;
    EXPECT_NE(l.find("\"attempt\":" + std::to_string(attempt[i]) + ","), std::string::npos) << l;
  }
  EXPECT_EQ(lines[1].size(), 40u) << lines[1];
  EXPECT_EQ(lines[3].size(), 25u) << lines[3];
  EXPECT_EQ(lines[5], "{\"ts\":\"cut");
  std::filesystem::remove_all(dir);
}
