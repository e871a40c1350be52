// Shaping per destination and adaptive back-off (issue 14 items 1 and 2) end to end: the
// real relay delivers to fake MX hosts on 127.0.0.2..9 and every assertion is on what each
// MX saw (arrival times of messages, sessions' open/close times, source addresses) or on
// the audit log. Rates are (n-1)/(last-first) of arrival times and must be within 10% of
// the configured ones (the issue's bar). One shared run (one relay, eight MX hosts, ~20 s)
// feeds the rate, MX-identity, connection, retry and pool tests at once; back-off and the
// built-in rules get their own relays. Config errors go through --check-config.
#include <gtest/gtest.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cmath>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/harness.hh"
#include "support/json_check.hh"
#include "support/peers.hh"
#include "support/world.hh"

namespace fs = std::filesystem;

namespace sr::integ {
namespace {

// ------------------------------------------------------------------------- measuring

// Messages per second over arrival times: (n-1)/(last-first); 0 with fewer than two.
double rate_of(std::vector<double> ts) {
  if (ts.size() < 2) return 0;
  std::sort(ts.begin(), ts.end());
  double span = ts.back() - ts.front();
  return span > 0 ? double(ts.size() - 1) / span : 1e9;
}

// The arrival times of `msgs` (optionally only those whose first recipient ends with `domain`).
std::vector<double> times_of(const std::vector<mx_message>& msgs, const std::string& domain = {}) {
  std::vector<double> ts;
  for (const auto& m : msgs)
    if (domain.empty() || (!m.rcpts.empty() && ends_with(m.rcpts[0], "@" + domain))) ts.push_back(m.ts);
  return ts;
}

// The most sessions open at once, from their opened/closed times; a close at the same
// instant as an open counts first (the client saw the 221 before it connected again).
int max_concurrent(const std::vector<mx_session>& sessions) {
  std::vector<std::pair<double, int>> ev;
  for (const auto& s : sessions) {
    ev.emplace_back(s.opened, +1);
    ev.emplace_back(s.closed, -1);
  }
  std::sort(ev.begin(), ev.end());
  int open = 0, most = 0;
  for (const auto& [t, d] : ev) most = std::max(most, open += d);
  return most;
}

// How many DATA transactions a session carried (each is one DATA command).
int transactions(const mx_session& s) {
  return int(std::count_if(s.commands.begin(), s.commands.end(), [](const std::string& c) {
    return c == "DATA" || c == "TLS DATA";
  }));
}

// An RFC 3339 UTC timestamp ("2026-12-07T15:36:35.123Z", milliseconds optional) in unix
// seconds; 0 when malformed.
double unix_seconds(const std::string& ts) {
  std::tm tm{};
  int ms = 0;
  int got = std::sscanf(ts.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                        &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms);
  if (got < 6 || ts.empty() || ts.back() != 'Z') return 0;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return double(timegm(&tm)) + ms / 1000.0;
}

// One "kind":"shaping" audit line (brief15 contract): a back-off or its end.
struct shaping_event {
  std::string event, destination, domain, rule, reply, until, raw;
  double ts = 0;
  double rate_per_hour = -1, previous_rate_per_hour = -1;
};

std::vector<shaping_event> shaping_events(const relay& r) {
  std::vector<shaping_event> out;
  for (const auto& a : read_audit(audit_file(r))) {
    if (a.kind != "shaping") continue;
    shaping_event e;
    e.raw = a.raw;
    auto o = json_check::parse_line(a.raw);
    if (!o) {
      out.push_back(e);   // kept so that a test shows the line it could not read
      continue;
    }
    auto str = [&](const char* k) {
      auto it = o->fields.find(k);
      return it == o->fields.end() ? std::string() : it->second.text;
    };
    auto num = [&](const char* k) {
      auto it = o->fields.find(k);
      return it == o->fields.end() || it->second.type != json_check::value::number ? -1.0
                                                                                   : std::stod(it->second.text);
    };
    e.event = str("event");
    e.destination = str("destination");
    e.domain = str("domain");
    e.rule = str("rule");
    e.reply = str("reply");
    e.until = str("until");
    e.ts = unix_seconds(str("ts"));
    e.rate_per_hour = num("rate_per_hour");
    e.previous_rate_per_hour = num("previous_rate_per_hour");
    out.push_back(e);
  }
  return out;
}

std::string dump_events(const std::vector<shaping_event>& ev) {
  std::string s;
  for (const auto& e : ev) s += e.raw + "\n";
  return s;
}

// Poll /metrics (100 ms apart, up to `deadline`) until `series` equals `want`.
bool wait_sample(uint16_t port, const std::string& series, double want, std::chrono::milliseconds deadline,
                 std::string* last) {
  for (auto until = clock::now() + deadline; clock::now() < until;) {
    *last = admin_get(port, "/metrics");
    if (std::fabs(metric_sample(*last, series) - want) < 1e-6) return true;
    std::this_thread::sleep_for(100ms);   // polling the endpoint, not an assertion
  }
  return false;
}

// One message to send: envelope and a marker in the body.
struct outgoing {
  std::string from, rcpt;
};

// Send every message over one SMTP session (transactions back to back: far faster than the
// shaped rates, so the relay's buckets, not the submission, pace what the MX hosts see).
// The queue ids in order; a failure is a test failure.
std::vector<std::string> submit_all(const relay& r, const std::vector<outgoing>& msgs) {
  std::vector<std::string> ids;
  raw_client c;
  if (!open_session(c, r.port())) {
    ADD_FAILURE() << "no session to the relay";
    return ids;
  }
  for (const auto& m : msgs) {
    std::string body = "From: <" + m.from + ">\r\nTo: <" + m.rcpt + ">\r\nSubject: shaping\r\n\r\n" +
                       unique("shaping") + "\r\n";
    auto reply = send_message(c, m.from, {m.rcpt}, dot_stuff(body));
    auto id = reply ? queued_id(*reply) : std::nullopt;
    if (!id) {
      ADD_FAILURE() << m.rcpt << ": " << reply.value_or("no reply");
      return ids;
    }
    ids.push_back(*id);
  }
  c.command("QUIT", 5s);
  return ids;
}

// A measured rate (per second) must be within 10% of the configured `want` (issue 14).
void expect_rate_within_10pct(double got, double want, const std::string& what) {
  std::printf("  %s: measured %.3f/s, configured %.3f/s (%+.1f%%)\n", what.c_str(), got, want,
              (got / want - 1) * 100);
  EXPECT_GE(got, want * 0.9) << what << ": measured " << got << "/s, configured " << want << "/s";
  EXPECT_LE(got, want * 1.1) << what << ": measured " << got << "/s, configured " << want << "/s";
}

// ---------------------------------------------------------------------- shared run

// The shaping entries of the shared run, one per behaviour, each with its own MX host(s):
//   rate.test       127.0.0.2   domain entry, 120/min                       (40 messages)
//   one/two.test    127.0.0.3/4 mx = "*.prov.test", 120/min, one bucket     (20 + 20)
//   fast.test       127.0.0.5   no entry: must not wait for the shaped ones (20)
//   routed.test     127.0.0.5   a [[route]] there; its MX (mx9.prov.test) would match the
//                               prov entry, but a routed domain matches domain entries only (20)
//   conn.test       127.0.0.6   120 connections/min, 1 message each          (40)
//   conc.test       127.0.0.7   2 connections at most, 3 messages each       (30, 0.2 s per dot)
//   retry/ctl.test  127.0.0.8   451 twice; retry.test's entry retries after 3 s, ctl.test
//                               follows outbound.retry (1 s)
//   pool/polwin/plainpool.test  127.0.0.9   source address by pool
const char* const shared_zone =
    "rate.test MX 10 mx.rate.test\nmx.rate.test A 127.0.0.2\n"
    "one.test MX 10 mx1.prov.test\ntwo.test MX 10 mx2.prov.test\n"
    "mx1.prov.test A 127.0.0.3\nmx2.prov.test A 127.0.0.4\n"
    "fast.test MX 10 mx.fast.test\nmx.fast.test A 127.0.0.5\n"
    "routed.test MX 10 mx9.prov.test\nmx9.prov.test A 127.0.0.3\n"
    "conn.test MX 10 mx.conn.test\nmx.conn.test A 127.0.0.6\n"
    "conc.test MX 10 mx.conc.test\nmx.conc.test A 127.0.0.7\n"
    "retry.test MX 10 mx.retry.test\nctl.test MX 10 mx.retry.test\nmx.retry.test A 127.0.0.8\n"
    "pool.test MX 10 mx.pool.test\npolwin.test MX 10 mx.pool.test\nplainpool.test MX 10 mx.pool.test\n"
    "mx.pool.test A 127.0.0.9\n";

const char* const shared_toml = R"([[pool]]
name = "shaped"
addresses = ["127.0.0.21"]

[[pool]]
name = "pol"
addresses = ["127.0.0.22"]

[[pool]]
name = "snd"
addresses = ["127.0.0.23"]
senders = ["sender.test"]

[[policy]]
domain = "polwin.test"
tls = "opportunistic"
pool = "pol"

[[shaping]]
name = "rate"
domain = "rate.test"
max_message_rate = "120/min"

[[shaping]]
name = "prov"
mx = "*.prov.test"
max_message_rate = "120/min"

[[shaping]]
name = "conn"
domain = "conn.test"
max_connection_rate = "120/min"
max_messages_per_conn = 1

[[shaping]]
name = "conc"
domain = "conc.test"
max_connections = 2
max_messages_per_conn = 3

[[shaping]]
name = "retry"
domain = "retry.test"
retry = ["3s"]

[[shaping]]
name = "pool"
domain = "pool.test"
pool = "shaped"

[[shaping]]
name = "polwin"
domain = "polwin.test"
pool = "shaped"
)";

class shared_run : public world {
 public:
  bool ok = false;
  std::string why;
  fake_mx *rate = nullptr, *prov1 = nullptr, *prov2 = nullptr, *fast = nullptr, *conn = nullptr,
          *conc = nullptr, *retry = nullptr, *pool = nullptr;
  std::map<std::string, std::string> qid;   // retry/ctl/pool test recipients -> queue id
  std::string metrics_early;                 // /metrics while the shaped mail flows
  uint16_t admin = 0;

  void run() {
    if (_port == 0) return fail("no free MX port");
    if (!start_dns(shared_zone)) return fail("dns");
    auto mx = [&](const char* host, std::vector<std::string> rcpt_replies = {}, std::vector<std::string> delays = {}) {
      return start_mx({.hosts = {host}, .cert = "", .rcpt_replies = std::move(rcpt_replies), .delays = std::move(delays)});
    };
    rate = mx("127.0.0.2");
    prov1 = mx("127.0.0.3");
    prov2 = mx("127.0.0.4");
    fast = mx("127.0.0.5");
    conn = mx("127.0.0.6");
    conc = mx("127.0.0.7", {}, {"dot=0.2"});
    retry = mx("127.0.0.8", {"r@retry.test=451:4.3.0 try later x2", "r@ctl.test=451:4.3.0 try later x2"});
    pool = mx("127.0.0.9");
    if (!rate || !prov1 || !prov2 || !fast || !conn || !conc || !retry || !pool) return fail("fake MX");
    admin = free_port();
    _admin_listen = "127.0.0.1:" + std::to_string(admin);
    // Shaped messages wait up to ~20 s in the queue: max_queue_age well above that.
    if (!start_relay(shared_toml + route_to("routed.test", "127.0.0.5", _port), "max_queue_age = \"5m\"\n"))
      return fail("relay");

    // Interleaved, so each destination's messages are all queued within the submission
    // (~1-2 s), long before its bucket lets the last of them go.
    std::vector<outgoing> out;
    const std::string from = "news@bulk.test";
    for (int i = 0; i < 40; ++i) {
      out.push_back({from, "r" + std::to_string(i) + "@rate.test"});
      out.push_back({from, "p" + std::to_string(i) + "@" + (i % 2 ? "two.test" : "one.test")});
      out.push_back({from, "c" + std::to_string(i) + "@conn.test"});
      if (i < 30) out.push_back({from, "k" + std::to_string(i) + "@conc.test"});
      if (i < 20) out.push_back({from, "f" + std::to_string(i) + "@fast.test"});
      if (i < 20) out.push_back({from, "d" + std::to_string(i) + "@routed.test"});
    }
    out.push_back({from, "r@retry.test"});
    out.push_back({from, "r@ctl.test"});
    out.push_back({"a@sender.test", "a@pool.test"});      // shaping pool beats the sender's
    out.push_back({"a@sender.test", "a@polwin.test"});    // [[policy]] pool beats shaping's
    out.push_back({"a@sender.test", "a@plainpool.test"}); // no entry: the sender's pool
    auto ids = submit_all(*_relay, out);
    if (ids.size() != out.size()) return fail("submission");
    const std::set<std::string> tracked = {"r@retry.test", "r@ctl.test", "a@pool.test", "a@polwin.test",
                                           "a@plainpool.test"};
    for (size_t i = 0; i < out.size(); ++i)
      if (tracked.count(out[i].rcpt)) qid[out[i].rcpt] = ids[i];
    // The gauges of a destination are published once its shard has its first job: poll
    // while the shaped mail flows (up to 5 s of its ~20).
    wait_sample(admin, "sealrelay_shaping_message_rate_per_hour{destination=\"prov\"}", 7200, 5s, &metrics_early);
    wait_sample(admin, "sealrelay_shaping_message_rate_per_hour{destination=\"rate\"}", 7200, 5s, &metrics_early);

    // Everything arrives within ~20 s; the deadlines are 3x that.
    bool all = rate->wait_messages(40, 60s) && prov1->wait_messages(20, 60s) && prov2->wait_messages(20, 60s) &&
               fast->wait_messages(40, 30s) && conn->wait_messages(40, 60s) && conc->wait_messages(30, 60s) &&
               retry->wait_messages(2, 30s) && pool->wait_messages(3, 30s);
    if (!all) return fail("not every message arrived");
    // Sessions are written when they close: stop the relay so that the last ones close,
    // then wait until the MX hosts have written them (no new line for 300 ms; at most 5 s).
    _relay->stop();
    size_t seen = 0, still = 0;
    for (int i = 0; i < 50 && still < 3; ++i) {
      std::this_thread::sleep_for(100ms);   // polling the session files, not an assertion
      size_t now = conn->sessions().size() + conc->sessions().size();
      still = now == seen ? still + 1 : 0;
      seen = now;
    }
    ok = true;
  }
  relay& r() { return *_relay; }
  std::string log() const { return _relay ? _relay->log() : std::string(); }

 private:
  void fail(const std::string& what) { why = what; }
};

class Shaping : public ::testing::Test, protected world {
 protected:
  // The shared run, started by the first test that needs it (once per process).
  static shared_run& traffic() {
    if (!_shared) {
      _shared = std::make_unique<shared_run>();
      _shared->run();
    }
    return *_shared;
  }
  static void TearDownTestSuite() { _shared.reset(); }

  static std::unique_ptr<shared_run> _shared;
};
std::unique_ptr<shared_run> Shaping::_shared;

#define ASSERT_TRAFFIC(t) ASSERT_TRUE((t).ok) << (t).why << "\n" << (t).log()

TEST_F(Shaping, DomainEntryKeepsItsMessageRate) {
  auto& t = traffic();
  ASSERT_TRAFFIC(t);
  auto msgs = t.rate->messages();
  ASSERT_EQ(msgs.size(), 40u);
  for (const auto& m : msgs) EXPECT_TRUE(m.accepted);
  expect_rate_within_10pct(rate_of(times_of(msgs)), 2.0, "rate.test (120/min)");
}

TEST_F(Shaping, MxPatternSharesOneBucketAcrossDomains) {
  // one.test and two.test have different MX hosts, both under *.prov.test: one bucket, so
  // together they get 120/min, not 120/min each.
  auto& t = traffic();
  ASSERT_TRAFFIC(t);
  auto a = t.prov1->messages(), b = t.prov2->messages();
  ASSERT_EQ(a.size(), 20u);
  ASSERT_EQ(b.size(), 20u);
  for (const auto& m : a) EXPECT_TRUE(ends_with(m.rcpts.at(0), "@one.test")) << m.rcpts.at(0);
  for (const auto& m : b) EXPECT_TRUE(ends_with(m.rcpts.at(0), "@two.test")) << m.rcpts.at(0);
  auto both = times_of(a);
  for (double ts : times_of(b)) both.push_back(ts);
  expect_rate_within_10pct(rate_of(both), 2.0, "one.test + two.test (one *.prov.test bucket)");
}

TEST_F(Shaping, UnshapedDomainIsNotSlowedByShapedOnes) {
  // fast.test's 20 messages were queued among the shaped ones: they all arrive before the
  // shaped destinations are half done (~10 s), and in a fraction of their time.
  auto& t = traffic();
  ASSERT_TRAFFIC(t);
  auto fast = times_of(t.fast->messages(), "fast.test");
  auto rate = times_of(t.rate->messages());
  ASSERT_EQ(fast.size(), 20u);
  ASSERT_EQ(rate.size(), 40u);
  std::sort(fast.begin(), fast.end());
  std::sort(rate.begin(), rate.end());
  EXPECT_LT(fast.back(), rate[19]) << "the last fast.test message came after rate.test's 20th";
  EXPECT_LT(fast.back() - fast.front(), (rate.back() - rate.front()) / 4);
}

TEST_F(Shaping, RoutedDomainMatchesDomainEntriesOnly) {
  // routed.test's MX host is under *.prov.test, but it goes by its [[route]]: no MX lookup,
  // no prov bucket. Its mail arrives unslowed (and prov's rate stays 2/s for one.test and
  // two.test alone: MxPatternSharesOneBucketAcrossDomains).
  auto& t = traffic();
  ASSERT_TRAFFIC(t);
  auto routed = times_of(t.fast->messages(), "routed.test");
  auto rate = times_of(t.rate->messages());
  ASSERT_EQ(routed.size(), 20u);
  ASSERT_EQ(rate.size(), 40u);
  std::sort(routed.begin(), routed.end());
  std::sort(rate.begin(), rate.end());
  EXPECT_LT(routed.back(), rate[19]) << "the last routed.test message came after rate.test's 20th";
}

TEST_F(Shaping, MaxConnectionsAndMessagesPerConnection) {
  auto& t = traffic();
  ASSERT_TRAFFIC(t);
  auto sessions = t.conc->sessions();
  ASSERT_EQ(t.conc->messages().size(), 30u);
  int carried = 0;
  for (const auto& s : sessions) {
    EXPECT_LE(transactions(s), 3) << commands_of(s);
    EXPECT_GT(s.opened, 0);
    EXPECT_GE(s.closed, s.opened);
    carried += transactions(s);
  }
  EXPECT_EQ(carried, 30);
  EXPECT_GE(sessions.size(), 10u);
  // Never above max_connections; and the relay did use both (30 messages waiting, 0.2 s
  // each), so the limit is what held it.
  EXPECT_EQ(max_concurrent(sessions), 2);
}

TEST_F(Shaping, ConnectionRateWithOneMessagePerConnection) {
  auto& t = traffic();
  ASSERT_TRAFFIC(t);
  auto sessions = t.conn->sessions();
  ASSERT_EQ(t.conn->messages().size(), 40u);
  std::vector<double> opened;
  for (const auto& s : sessions) {
    EXPECT_LE(transactions(s), 1) << commands_of(s);
    if (transactions(s) == 1) opened.push_back(s.opened);
  }
  ASSERT_EQ(opened.size(), 40u);
  expect_rate_within_10pct(rate_of(opened), 2.0, "conn.test connections (120/min)");
}

TEST_F(Shaping, EntryRetryScheduleReplacesOutboundRetry) {
  // Both recipients get 451 twice; retry.test's entry says 3 s between attempts,
  // ctl.test has no entry and follows outbound.retry = ["1s"].
  auto& t = traffic();
  ASSERT_TRAFFIC(t);
  auto gaps = [&](const std::string& rcpt) {
    std::vector<double> ts;
    for (const auto& a : audit_of(t.r(), t.qid[rcpt])) {
      EXPECT_TRUE(a.outcome == "deferred" || a.outcome == "delivered") << a.raw;
      ts.push_back(unix_seconds(a.ts));
    }
    std::vector<double> g;
    for (size_t i = 1; i < ts.size(); ++i) g.push_back(ts[i] - ts[i - 1]);
    return g;
  };
  auto shaped = gaps("r@retry.test"), plain = gaps("r@ctl.test");
  ASSERT_EQ(shaped.size(), 2u) << dump_audit(t.r());
  ASSERT_EQ(plain.size(), 2u) << dump_audit(t.r());
  for (double g : shaped) EXPECT_GE(g, 2.9) << "retry.test attempts " << g << " s apart";
  for (double g : plain) EXPECT_LT(g, 2.5) << "ctl.test attempts " << g << " s apart (outbound.retry 1s)";
}

TEST_F(Shaping, EntryPoolPicksTheSourceAddressPolicyPoolWins) {
  auto& t = traffic();
  ASSERT_TRAFFIC(t);
  std::map<std::string, std::string> peer;   // recipient domain -> source address seen
  for (const auto& m : t.pool->messages()) peer[m.rcpts.at(0)] = m.peer;
  EXPECT_EQ(peer["a@pool.test"], "127.0.0.21") << "[[shaping]] pool beats the sender's pool";
  EXPECT_EQ(peer["a@polwin.test"], "127.0.0.22") << "[[policy]] pool beats [[shaping]]'s";
  EXPECT_EQ(peer["a@plainpool.test"], "127.0.0.23") << "no entry: the sender's pool";
  auto lines = audit_of(t.r(), t.qid["a@pool.test"]);
  ASSERT_EQ(lines.size(), 1u) << dump_audit(t.r());
  EXPECT_EQ(lines[0].source_ip.value_or(""), "127.0.0.21") << lines[0].raw;
}

TEST_F(Shaping, MetricsShowEachDestinationsRate) {
  // sealrelay_shaping_message_rate_per_hour is what a destination may take now (0 = no limit).
  auto& t = traffic();
  ASSERT_TRAFFIC(t);
  const std::string& m = t.metrics_early;
  EXPECT_EQ(metric_sample(m, "sealrelay_shaping_message_rate_per_hour{destination=\"rate\"}"), 7200) << m;
  EXPECT_EQ(metric_sample(m, "sealrelay_shaping_message_rate_per_hour{destination=\"prov\"}"), 7200) << m;
  EXPECT_EQ(metric_sample(m, "sealrelay_shaping_message_rate_per_hour{destination=\"conc\"}"), 0) << m;
  EXPECT_EQ(metric_sample(m, "sealrelay_shaping_backoffs_total{destination=\"rate\"}"), 0) << m;
  double conc = metric_sample(m, "sealrelay_shaping_connections{destination=\"conc\"}");
  EXPECT_GE(conc, 0) << m;
  EXPECT_LE(conc, 2) << m;
}

// domain = "*" is the exception to "one entry, one destination": each domain it matches
// gets its own buckets with the entry's limits. Two domains on the same MX host, 4/s each:
// each gets 4/s (one shared bucket would give each 2/s). A bucket starts full, so each
// domain's first four go at once: the rate is measured from the fourth message on.
TEST_F(Shaping, StarEntryGivesEachDomainItsOwnBuckets) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns("s1.test MX 10 mx.star.test\ns2.test MX 10 mx.star.test\nmx.star.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .cert = ""});
  ASSERT_TRUE(mx);
  uint16_t admin = free_port();
  _admin_listen = "127.0.0.1:" + std::to_string(admin);
  relay* r = start_relay("[[shaping]]\ndomain = \"*\"\nmax_message_rate = \"4/s\"\n");
  ASSERT_TRUE(r);
  std::vector<outgoing> out;
  for (int i = 0; i < 16; ++i) {
    out.push_back({"news@bulk.test", "a" + std::to_string(i) + "@s1.test"});
    out.push_back({"news@bulk.test", "b" + std::to_string(i) + "@s2.test"});
  }
  ASSERT_EQ(submit_all(*r, out).size(), out.size());
  // The entry's series (named "*", its default name) sum its domains' connections.
  std::string m;
  bool seen = false;
  for (auto until = clock::now() + 3s; !seen && clock::now() < until;) {
    m = admin_get(admin, "/metrics");
    seen = metric_sample(m, "sealrelay_shaping_connections{destination=\"*\"}") >= 1;
    if (!seen) std::this_thread::sleep_for(100ms);   // polling the endpoint
  }
  EXPECT_TRUE(seen) << m;
  ASSERT_TRUE(mx->wait_messages(out.size(), 30s)) << r->log();
  for (const char* d : {"s1.test", "s2.test"}) {
    auto ts = times_of(mx->messages(), d);
    ASSERT_EQ(ts.size(), 16u) << d;
    std::sort(ts.begin(), ts.end());
    ts.erase(ts.begin(), ts.begin() + 3);
    expect_rate_within_10pct(rate_of(ts), 4.0, std::string(d) + " under domain = \"*\" (4/s each)");
  }
}

// ------------------------------------------------------------------------- back-off

// bo.test at 4/s; the MX answers trigger@bo.test once with Gmail's 421 4.7.28. The rule
// halves the rate for 6 s: ~12 messages at 2/s, then 4/s again.
TEST_F(Shaping, BackoffRuleHalvesTheRateAuditsItAndRestores) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns("bo.test MX 10 mx.bo.test\nmx.bo.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .cert = "",
                          .rcpt_replies = {"trigger@bo.test=421:4.7.28 [127.0.0.1] Our system has detected an "
                                           "unusual rate of unsolicited mail originating from your IP address.x1"}});
  ASSERT_TRUE(mx);
  uint16_t admin = free_port();
  _admin_listen = "127.0.0.1:" + std::to_string(admin);
  relay* r = start_relay(R"([[shaping]]
name = "bo"
domain = "bo.test"
max_message_rate = "4/s"

[[backoff]]
match = "^4[0-9][0-9][ -]4\\.7\\.28"
factor = 0.5
duration = "6s"
)",
                         "max_queue_age = \"5m\"\n");
  ASSERT_TRUE(r);
  // 8 before the trigger, then 30: the trigger is offered early, the rest shows the
  // halved rate and then the restored one.
  std::vector<outgoing> out;
  for (int i = 0; i < 8; ++i) out.push_back({"news@bulk.test", "n" + std::to_string(i) + "@bo.test"});
  out.push_back({"news@bulk.test", "trigger@bo.test"});
  for (int i = 8; i < 38; ++i) out.push_back({"news@bulk.test", "n" + std::to_string(i) + "@bo.test"});
  ASSERT_EQ(submit_all(*r, out).size(), out.size());

  std::string m;
  EXPECT_TRUE(wait_sample(admin, "sealrelay_shaping_message_rate_per_hour{destination=\"bo\"}", 7200, 10s, &m)) << m;
  EXPECT_EQ(metric_sample(m, "sealrelay_shaping_backoffs_total{destination=\"bo\"}"), 1) << m;
  ASSERT_TRUE(mx->wait_messages(out.size(), 40s)) << r->log();
  EXPECT_TRUE(wait_sample(admin, "sealrelay_shaping_message_rate_per_hour{destination=\"bo\"}", 14400, 10s, &m)) << m;

  auto ev = shaping_events(*r);
  ASSERT_EQ(ev.size(), 2u) << dump_events(ev) << dump_audit(*r);
  const auto& down = ev[0];
  const auto& up = ev[1];
  EXPECT_EQ(down.event, "backoff") << down.raw;
  EXPECT_EQ(down.destination, "bo") << down.raw;
  EXPECT_EQ(down.domain, "bo.test") << down.raw;
  EXPECT_EQ(down.rule, "backoff[0]") << down.raw;
  EXPECT_TRUE(starts_with(down.reply, "421 4.7.28 ")) << down.raw;
  EXPECT_EQ(down.rate_per_hour, 7200) << down.raw;
  EXPECT_EQ(down.previous_rate_per_hour, 14400) << down.raw;
  EXPECT_NEAR(unix_seconds(down.until), down.ts + 6, 0.2) << down.raw;
  EXPECT_EQ(up.event, "restore") << up.raw;
  EXPECT_EQ(up.destination, "bo") << up.raw;
  EXPECT_EQ(up.rate_per_hour, 14400) << up.raw;
  EXPECT_EQ(up.previous_rate_per_hour, 7200) << up.raw;
  EXPECT_GE(up.ts - down.ts, 5.9) << down.raw << "\n" << up.raw;
  EXPECT_LE(up.ts - down.ts, 7.0) << down.raw << "\n" << up.raw;

  // What the MX saw: arrivals while backed off (after the first one, which may have used a
  // token taken before the rule hit) and after the restore.
  std::vector<double> during, after;
  for (double ts : times_of(mx->messages())) {
    if (ts > down.ts && ts <= up.ts) during.push_back(ts);
    if (ts > up.ts) after.push_back(ts);
  }
  std::sort(during.begin(), during.end());
  if (!during.empty()) during.erase(during.begin());
  ASSERT_GE(during.size(), 8u) << "messages while backed off";
  ASSERT_GE(after.size(), 8u) << "messages after the restore";
  expect_rate_within_10pct(rate_of(during), 2.0, "bo.test backed off (4/s x 0.5)");
  expect_rate_within_10pct(rate_of(after), 4.0, "bo.test restored");
}

// Gmail's real multi-line deferral, as a 421 at RCPT.
const char* const gmail_421 =
    "421:4.7.28 [127.0.0.1      15] Our system has detected an unusual rate of\\n"
    "4.7.28 unsolicited mail originating from your IP address. To protect our\\n"
    "4.7.28 users from spam, mail sent from your IP address has been temporarily\\n"
    "4.7.28 rate limited. Please visit\\n"
    "4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError to\\n"
    "4.7.28 review our Bulk Email Senders Guidelines. a1-20020a05 - gsmtpx1";

// The built-in rules need no [[backoff]] entry: Gmail's multi-line 421-4.7.28 lowers the
// shaped gm.test (10/s) and, from the rate it delivered at, the unshaped plain.test (whose
// line says there was no limit before: previous_rate_per_hour 0). With
// outbound.backoff_defaults = false the same replies lower nothing.
TEST_F(Shaping, BuiltinRulesCatchGmailsDeferralUnlessBackoffDefaultsIsOff) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns("gm.test MX 10 mx.gm.test\nplain.test MX 10 mx.gm.test\nmx.gm.test A 127.0.0.2\n"));
  std::vector<std::string> rules;
  for (const char* a : {"on@gm.test", "on@plain.test", "off@gm.test", "off@plain.test"})
    rules.push_back(std::string(a) + "=" + gmail_421);
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .cert = "", .rcpt_replies = rules});
  ASSERT_TRUE(mx);
  const std::string entry = "[[shaping]]\nname = \"gmail\"\ndomain = \"gm.test\"\nmax_message_rate = \"10/s\"\n";
  for (bool defaults : {true, false}) {
    SCOPED_TRACE(defaults ? "backoff_defaults = true" : "backoff_defaults = false");
    relay* r = start_relay(entry, std::string("backoff_defaults = ") + (defaults ? "true" : "false") + "\n");
    ASSERT_TRUE(r);
    const std::string who = defaults ? "on@" : "off@";
    auto ids = submit_all(*r, {{"news@bulk.test", who + "gm.test"}, {"news@bulk.test", who + "plain.test"}});
    ASSERT_EQ(ids.size(), 2u);
    // Each deferred by the 421, delivered on the retry a second later.
    for (const auto& id : ids) {
      auto lines = wait_audit(*r, 2, [&](const audit_line& a) { return a.queue_id == id; });
      ASSERT_EQ(lines.size(), 2u) << dump_audit(*r);
      EXPECT_EQ(lines[0].outcome, "deferred") << lines[0].raw;
      EXPECT_EQ(lines[1].outcome, "delivered") << lines[1].raw;
    }
    auto ev = shaping_events(*r);
    if (!defaults) {
      EXPECT_TRUE(ev.empty()) << dump_events(ev);
      _relay->stop();
      continue;
    }
    ASSERT_EQ(ev.size(), 2u) << dump_audit(*r);
    for (const auto& e : ev) {
      EXPECT_EQ(e.event, "backoff") << e.raw;
      EXPECT_EQ(e.rule, "builtin:gmail-4.7.28") << e.raw;
      EXPECT_TRUE(starts_with(e.reply, "421")) << e.raw;
      EXPECT_TRUE(contains(e.reply, "unusual rate of")) << e.raw;
      EXPECT_TRUE(contains(e.reply, "Bulk Email Senders Guidelines")) << "every line of the reply: " << e.raw;
      if (e.domain == "gm.test") {
        EXPECT_EQ(e.destination, "gmail") << e.raw;
        EXPECT_EQ(e.previous_rate_per_hour, 36000) << e.raw;
        EXPECT_EQ(e.rate_per_hour, 18000) << e.raw;   // the built-in factor: 0.5
      } else {
        EXPECT_EQ(e.domain, "plain.test") << e.raw;
        EXPECT_EQ(e.destination, "plain.test") << e.raw;   // an unshaped domain is its own destination
        EXPECT_EQ(e.previous_rate_per_hour, 0) << e.raw;
        EXPECT_GE(e.rate_per_hour, 60) << "never below 1/min: " << e.raw;
      }
    }
    _relay->stop();
  }
}

// ---------------------------------------------------------------------- config errors

TEST_F(Shaping, ConfigErrorsNameFileLineAndKey) {
  struct bad {
    std::string toml;     // appended to a valid config
    std::string key;      // named in the error
    std::vector<std::string> lines;   // the error's line is one of these lines' (text as written)
  };
  const bad cases[] = {
      {"[[shaping]]\ndomain = \"a.test\"\nmx = \"*.a.test\"\n", "shaping[0]",
       {"[[shaping]]", "domain = \"a.test\"", "mx = \"*.a.test\""}},
      {"[[shaping]]\nname = \"neither\"\nmax_message_rate = \"5/s\"\n", "shaping[0]", {"[[shaping]]"}},
      {"[[shaping]]\ndomain = \"a.test\"\nmax_message_rate = \"5/week\"\n", "shaping[0].max_message_rate",
       {"max_message_rate = \"5/week\""}},
      {"[[backoff]]\nmatch = \"^421\"\nfactor = 1.5\nduration = \"1m\"\n", "backoff[0].factor", {"factor = 1.5"}},
      {"[[backoff]]\nmatch = \"^4(21\"\nfactor = 0.5\nduration = \"1m\"\n", "backoff[0].match",
       {"match = \"^4(21\""}},
      {"[[shaping]]\ndomain = \"a.test\"\npool = \"nope\"\n", "shaping[0].pool", {"pool = \"nope\""}},
      {"[[shaping]]\nname = \"dup\"\ndomain = \"a.test\"\n\n[[shaping]]\nname = \"dup\" # again\ndomain = \"b.test\"\n",
       "shaping[1].name", {"name = \"dup\" # again"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.toml);
    relay rl(delivery_options("127.0.0.1:9", 9, "", c.toml));   // writes its config, not started
    const std::string path = rl.config_path().string();
    // The 1-based numbers of the lines the error may name.
    std::set<int> want;
    std::istringstream text(read_file(rl.config_path()));
    std::string line;
    for (int n = 1; std::getline(text, line); ++n)
      for (const auto& l : c.lines)
        if (line == l) want.insert(n);
    // "[[shaping]]" occurs once per case: the generated config has no other.
    ASSERT_FALSE(want.empty());
    auto res = run({relay_binary(), "--check-config", "-c", path}, 30s, rl.dir());
    EXPECT_EQ(res.exit_code, 2) << res.output;
    bool named = false;
    for (int n : want) named = named || contains(res.output, path + ":" + std::to_string(n) + ": " + c.key);
    EXPECT_TRUE(named) << res.output;
  }
}

// conf/examples/healthcare-marketing.toml, the worked example of docs/config.md: every key
// in it loads. It names documentation addresses (RFC 5737) and the Debian package's paths,
// which --check-config reads (the certificate and key) or binds (the pool addresses): those
// are mapped to this machine's (loopback addresses, the test certificate, a temp dir), the
// rest is checked as written. docs/config.md must show the file verbatim.
TEST_F(Shaping, HealthcareExampleLoadsAndIsTheOneInTheDocs) {
  const fs::path example = source_root() / "conf" / "examples" / "healthcare-marketing.toml";
  std::string text = read_file(example);
  ASSERT_FALSE(text.empty()) << example;
  EXPECT_TRUE(contains(read_file(source_root() / "docs" / "config.md"), text))
      << "docs/config.md does not show " << example << " verbatim";
  temp_dir dir;
  fs::path key = dir.path() / "relay.key";
  fs::copy_file(source_root() / "tests" / "certs" / "server.key", key);
  fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  const std::pair<std::string, std::string> map[] = {
      {"203.0.113.10", "127.0.0.31"},
      {"203.0.113.11", "127.0.0.32"},
      {"203.0.113.20", "127.0.0.33"},
      {"10.20.0.5:25", "127.0.0.1:" + std::to_string(free_port())},
      {"/etc/sealrelay/tls/relay.crt", (source_root() / "tests" / "certs" / "server.crt").string()},
      {"/etc/sealrelay/tls/relay.key", key.string()},
      {"/var/lib/sealrelay", (dir.path() / "var").string()},
      {"/var/log/sealrelay/audit.jsonl", (dir.path() / "audit.jsonl").string()},
  };
  for (const auto& [from, to] : map) {
    size_t at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from << " is no longer in the example: update this test";
    for (; at != std::string::npos; at = text.find(from, at + to.size())) text.replace(at, from.size(), to);
  }
  const fs::path mapped = dir.path() / "healthcare-marketing.toml";
  std::ofstream(mapped) << text;
  auto res = run({relay_binary(), "--check-config", "-c", mapped.string()}, 30s, dir.path());
  EXPECT_EQ(res.exit_code, 0) << res.output;
  EXPECT_TRUE(contains(res.output, ": ok")) << res.output;
}

}  // namespace
}  // namespace sr::integ
