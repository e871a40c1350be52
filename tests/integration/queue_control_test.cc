// sealrelay-queue against the running daemon (issue 13 item 1): the real binary over the
// real control socket. A fake MX answering 451 keeps mail deferred (retry 1 h, so only the
// tool makes it move); list, show and stats report it; flush delivers once the MX is back;
// hold outlives a restart and release delivers; delete is audited and sends a DSN only with
// --dsn; requeue retries at once with the attempt count reset; the socket is 0600, a stale
// one replaced, a live one stops a second relay; exit codes 1 and 2; and commands run while a bounded sealrelay-blast load flows, which all arrives.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/harness.hh"
#include "support/peers.hh"
#include "support/world.hh"

namespace sr::integ {
namespace {

using json = nlohmann::json;

std::string queue_binary() {
  const char* bin = std::getenv("SEALRELAY_QUEUE_BIN");
  return bin ? bin : "sealrelay-queue";
}

std::string blast_binary() {
  const char* bin = std::getenv("SEALRELAY_BLAST_BIN");
  return bin ? bin : "sealrelay-blast";
}

bool contains(const std::string& s, std::string_view what) { return s.find(what) != std::string::npos; }

class QueueControl : public ::testing::Test {
 protected:
  void SetUp() override {
    _port = mx_port();
    ASSERT_NE(_port, 0);
  }

  // A fake MX on `host`; `refuse`: every RCPT gets 451.
  std::unique_ptr<fake_mx> mx(const std::string& host, bool refuse) {
    fake_mx_options o;
    o.hosts = {host};
    o.port = _port;
    o.cert = "";
    if (refuse) o.replies = {"rcpt=451:4.7.1 greylisted, try later"};
    auto m = std::make_unique<fake_mx>(o);
    if (!m->start()) {
      ADD_FAILURE() << "fake MX: " << m->error();
      return nullptr;
    }
    return m;
  }

  // The relay: far.test and near.test to 127.0.0.2, origin.test (senders) to 127.0.0.3,
  // load.test to 127.0.0.4; a retry only after an hour, so nothing moves by itself.
  void start_relay() {
    relay_options o = parked_options(_port, 2,
                                     route_to("far.test", "127.0.0.2", _port) + route_to("near.test", "127.0.0.2", _port) +
                                         route_to("origin.test", "127.0.0.3", _port) +
                                         route_to("load.test", "127.0.0.4", _port));
    o.outbound_extra = "connect_timeout = \"2s\"\nretry = [\"1h\"]\nmax_queue_age = \"5d\"\n";
    _relay = std::make_unique<relay>(o);
    ASSERT_TRUE(_relay->start()) << _relay->error() << _relay->log();
  }

  run_result q(std::vector<std::string> args) {
    std::vector<std::string> argv = {queue_binary(), "-c", _relay->config_path().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, 30s);
  }

  // `args` with --json; the parsed reply (a failure is a test failure).
  json qjson(std::vector<std::string> args) {
    args.push_back("--json");
    auto r = q(args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    json j = json::parse(r.output, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.output;
    return j;
  }

  // Queue ids `sealrelay-queue list --json` shows.
  std::vector<std::string> listed() {
    std::vector<std::string> ids;
    json j = qjson({"list"});
    if (j.contains("messages"))
      for (const auto& m : j["messages"]) ids.push_back(m["queue_id"].get<std::string>());
    return ids;
  }

  bool wait_listed(size_t n, std::chrono::milliseconds deadline = 20s) {
    auto until = clock::now() + deadline;
    while (clock::now() < until) {
      if (listed().size() == n) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  // Submit one message from sender@origin.test; its queue id.
  std::string send(const std::vector<std::string>& rcpts, const std::string& subject) {
    std::string why;
    std::string id = submit(*_relay, "sender@origin.test", rcpts,
                            "From: sender@origin.test\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n", &why);
    EXPECT_FALSE(id.empty()) << why;
    return id;
  }

  // Wait for `n` deferred audit lines in all.
  void wait_deferred(size_t n) {
    auto lines = wait_audit(*_relay, n, [](const audit_line& a) { return a.outcome == "deferred"; });
    ASSERT_GE(lines.size(), n) << dump_audit(*_relay) << _relay->log();
  }

  uint16_t _port = 0;
  std::unique_ptr<relay> _relay;
};

TEST_F(QueueControl, ListStatsShowThenFlushDeliversOnceTheMxRecovers) {
  auto bad = mx("127.0.0.2", true);
  ASSERT_TRUE(bad);
  start_relay();
  std::string a = send({"one@far.test", "two@near.test"}, "first");
  std::string b = send({"three@far.test"}, "second");
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  wait_deferred(3);

  // list --json: one entry per message (its two domains' jobs merged), attempts and reason.
  json l = qjson({"list"});
  ASSERT_TRUE(l["messages"].is_array()) << l.dump();
  ASSERT_EQ(l["messages"].size(), 2u) << l.dump();
  const json& m = l["messages"][0];
  EXPECT_EQ(m["queue_id"], a);
  EXPECT_EQ(m["from"], "sender@origin.test");
  EXPECT_EQ(m["state"], "deferred");
  EXPECT_GT(m["size"].get<uint64_t>(), 0u);
  ASSERT_EQ(m["recipients"].size(), 2u) << m.dump();
  for (const auto& r : m["recipients"]) {
    EXPECT_EQ(r["attempts"], 1) << r.dump();
    EXPECT_EQ(r["state"], "deferred") << r.dump();
    EXPECT_TRUE(contains(r["last_reason"].get<std::string>(), "451")) << r.dump();
    EXPECT_GT(r["next_attempt_ms"].get<uint64_t>(), 0u);
  }
  // The text table names both messages and the reason.
  auto text = q({"list"});
  EXPECT_EQ(text.exit_code, 0) << text.output;
  EXPECT_TRUE(contains(text.output, a) && contains(text.output, b) && contains(text.output, "451")) << text.output;

  json s = qjson({"stats"});
  EXPECT_EQ(s["messages"], 2);
  EXPECT_EQ(s["recipients"], 3);
  EXPECT_EQ(s["recipients_by_state"]["deferred"], 3) << s.dump();
  EXPECT_EQ(s["recipients_by_domain"]["far.test"], 2) << s.dump();
  EXPECT_EQ(s["recipients_by_domain"]["near.test"], 1) << s.dump();
  EXPECT_EQ(s["recipients_by_reason"]["451 4.7.1"], 3) << s.dump();

  // show: envelope, the headers from the spool, the audit history of this id only.
  auto sh = q({"show", a});
  EXPECT_EQ(sh.exit_code, 0) << sh.output;
  EXPECT_TRUE(contains(sh.output, "Subject: first")) << sh.output;
  EXPECT_TRUE(contains(sh.output, "one@far.test") && contains(sh.output, "two@near.test")) << sh.output;
  EXPECT_TRUE(contains(sh.output, "\"outcome\":\"deferred\"")) << sh.output;
  EXPECT_FALSE(contains(sh.output, b)) << sh.output;

  // The MX recovers; nothing moves for an hour unless flushed.
  bad->stop();
  auto good = mx("127.0.0.2", false);
  ASSERT_TRUE(good);
  auto f = q({"flush", "far.test"});
  EXPECT_EQ(f.exit_code, 0) << f.output;
  EXPECT_TRUE(contains(f.output, "2 jobs matched")) << f.output;
  ASSERT_TRUE(good->wait_messages(2)) << _relay->log();
  // near.test was not flushed: message a stays listed with its near.test recipient only.
  json l2 = qjson({"list"});
  ASSERT_EQ(l2["messages"].size(), 1u) << l2.dump();
  EXPECT_EQ(l2["messages"][0]["recipients"].size(), 1u);
  EXPECT_EQ(l2["messages"][0]["recipients"][0]["address"], "two@near.test");
  f = q({"flush"});
  EXPECT_EQ(f.exit_code, 0) << f.output;
  ASSERT_TRUE(good->wait_messages(3)) << _relay->log();
  EXPECT_TRUE(wait_listed(0));
  // An empty queue: flush has nothing to do (exit 1), list says so (exit 0).
  EXPECT_EQ(q({"flush"}).exit_code, 1);
  auto empty = q({"list"});
  EXPECT_EQ(empty.exit_code, 0);
  EXPECT_TRUE(contains(empty.output, "Queue is empty")) << empty.output;
}

TEST_F(QueueControl, HoldOutlivesARestartAndReleaseDelivers) {
  auto bad = mx("127.0.0.2", true);
  ASSERT_TRUE(bad);
  start_relay();
  std::string a = send({"one@far.test"}, "held");
  std::string b = send({"two@near.test"}, "by domain");
  wait_deferred(2);
  auto h = q({"hold", a});
  EXPECT_EQ(h.exit_code, 0) << h.output;
  h = q({"hold", "NEAR.test"});  // domains are case-insensitive
  EXPECT_EQ(h.exit_code, 0) << h.output;
  bad->stop();
  auto good = mx("127.0.0.2", false);
  ASSERT_TRUE(good);
  // Held mail is not flushed: the flush matches and changes nothing.
  auto f = q({"flush"});
  EXPECT_EQ(f.exit_code, 0) << f.output;
  EXPECT_TRUE(contains(f.output, "0 changed")) << f.output;
  json l = qjson({"list"});
  ASSERT_EQ(l["messages"].size(), 2u) << l.dump();
  for (const auto& m : l["messages"]) EXPECT_EQ(m["state"], "held") << m.dump();

  // Restart: the HOLD records in the spool keep both held.
  EXPECT_EQ(_relay->stop(), 0) << _relay->log();
  ASSERT_TRUE(_relay->start()) << _relay->error();
  l = qjson({"list"});
  ASSERT_EQ(l["messages"].size(), 2u) << l.dump() << _relay->log();
  for (const auto& m : l["messages"]) EXPECT_EQ(m["state"], "held") << m.dump();
  EXPECT_EQ(good->messages().size(), 0u);

  auto r = q({"release", a});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(good->wait_messages(1)) << _relay->log();
  EXPECT_TRUE(contains(good->messages()[0].data, "Subject: held"));
  EXPECT_TRUE(wait_listed(1));
  r = q({"release", "near.test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(good->wait_messages(2)) << _relay->log();
  EXPECT_TRUE(wait_listed(0));
  auto msgs = good->messages();
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_TRUE(contains(msgs[1].data, "Subject: by domain")) << msgs[1].data;
  EXPECT_TRUE(contains(msgs[1].data, b)) << msgs[1].data;  // its Received: names its queue id
}

TEST_F(QueueControl, DeleteIsAuditedAndSendsADsnOnlyWithDsn) {
  auto bad = mx("127.0.0.2", true);
  auto origin = mx("127.0.0.3", false);
  ASSERT_TRUE(bad && origin);
  start_relay();
  std::string a = send({"one@far.test"}, "quietly deleted");
  std::string b = send({"two@far.test", "three@near.test"}, "deleted with dsn");
  std::string c = send({"four@near.test"}, "deferred one");
  wait_deferred(4);

  auto d = q({"delete", a});
  EXPECT_EQ(d.exit_code, 0) << d.output;
  auto lines = wait_audit(*_relay, 1, [&](const audit_line& l) { return l.queue_id == a && l.outcome == "deleted"; });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(*_relay);
  EXPECT_EQ(lines[0].rcpt, "one@far.test");
  EXPECT_EQ(lines[0].from, "sender@origin.test");
  EXPECT_FALSE(lines[0].mx.has_value());

  // b has a job per recipient domain: each sends its DSN, as bounces do.
  d = q({"delete", b, "--dsn"});
  EXPECT_EQ(d.exit_code, 0) << d.output;
  ASSERT_TRUE(origin->wait_messages(2)) << _relay->log();
  auto dsn = origin->messages();
  ASSERT_EQ(dsn.size(), 2u);
  std::string both;
  for (const auto& m : dsn) {
    EXPECT_EQ(m.mail_from, "");
    EXPECT_EQ(m.rcpts, std::vector<std::string>{"sender@origin.test"});
    EXPECT_TRUE(contains(m.data, b)) << m.data;
    EXPECT_TRUE(contains(m.data, "deleted from the queue by the operator")) << m.data;
    EXPECT_FALSE(contains(m.data, a));
    both += m.data;
  }
  EXPECT_TRUE(contains(both, "two@far.test") && contains(both, "three@near.test")) << both;
  lines = wait_audit(*_relay, 2, [&](const audit_line& l) { return l.queue_id == b && l.outcome == "deleted"; });
  EXPECT_EQ(lines.size(), 2u) << dump_audit(*_relay);

  // Only c is left; delete --all-deferred takes it (no DSN: none asked).
  EXPECT_TRUE(wait_listed(1));
  d = q({"delete", "--all-deferred"});
  EXPECT_EQ(d.exit_code, 0) << d.output;
  EXPECT_TRUE(wait_listed(0));
  EXPECT_EQ(q({"delete", a}).exit_code, 1);  // gone
  // Deleted mail is final in the spool: after a restart nothing comes back.
  EXPECT_EQ(_relay->stop(), 0);
  std::string raw;
  auto offline = _relay->list_queue(&raw);
  ASSERT_TRUE(offline.has_value());
  EXPECT_TRUE(offline->empty()) << raw;
  EXPECT_EQ(origin->messages().size(), 2u);  // still only b's DSNs
}

TEST_F(QueueControl, RequeueRetriesAtOnceWithTheAttemptCountReset) {
  auto bad = mx("127.0.0.2", true);
  ASSERT_TRUE(bad);
  start_relay();
  std::string a = send({"one@far.test"}, "requeued");
  wait_deferred(1);
  auto r = q({"requeue", a});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // Retried now (not in an hour), numbered as a first attempt again.
  auto lines = wait_audit(*_relay, 2, [&](const audit_line& l) { return l.queue_id == a && l.outcome == "deferred"; });
  ASSERT_EQ(lines.size(), 2u) << dump_audit(*_relay);
  EXPECT_EQ(lines[0].attempt, 1);
  EXPECT_EQ(lines[1].attempt, 1);
  json l = qjson({"list"});
  ASSERT_EQ(l["messages"].size(), 1u);
  EXPECT_EQ(l["messages"][0]["recipients"][0]["attempts"], 1);
  EXPECT_EQ(q({"requeue", "far.test"}).exit_code, 2);  // an ID only
}

TEST_F(QueueControl, SocketIsOwnerOnlyAndExitCodesSayWhatWentWrong) {
  start_relay();
  auto sock = _relay->state_dir() / "control.sock";
  struct stat st {};
  ASSERT_EQ(::stat(sock.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  EXPECT_EQ(q({"list"}).exit_code, 0);
  auto unknown = q({"show", "0123456789ABCDEF"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_TRUE(contains(unknown.output, "no queued message 0123456789ABCDEF")) << unknown.output;
  EXPECT_EQ(q({"hold", "0123456789ABCDEF"}).exit_code, 1);
  EXPECT_EQ(q({"hold"}).exit_code, 2);
  EXPECT_EQ(q({"bogus"}).exit_code, 2);
  EXPECT_EQ(q({"list", "extra"}).exit_code, 2);
  EXPECT_EQ(q({"delete", "far.test", "--all-deferred"}).exit_code, 2);
  EXPECT_EQ(q({"show", "not/an-id"}).exit_code, 2);
  EXPECT_EQ(run({queue_binary()}).exit_code, 2);
  // --socket names the socket without reading a config.
  EXPECT_EQ(run({queue_binary(), "--socket", sock.string(), "stats"}).exit_code, 0);
  // A second relay on the same state_dir stops at the live socket (they would share a spool).
  auto twice = run({relay_binary(), "-c", _relay->config_path().string()}, 20s);
  EXPECT_EQ(twice.exit_code, 1) << twice.output;
  EXPECT_TRUE(contains(twice.output, "another relay is running on this state_dir")) << twice.output;
  EXPECT_EQ(q({"list"}).exit_code, 0);  // the first one's socket is untouched

  EXPECT_EQ(_relay->stop(), 0);
  EXPECT_FALSE(std::filesystem::exists(sock));
  auto down = q({"list"});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_TRUE(contains(down.output, "not running")) << down.output;

  // A stale socket file (a crashed relay) is replaced at start.
  ASSERT_TRUE(_relay->start()) << _relay->error();
  _relay->kill9();
  ASSERT_TRUE(std::filesystem::exists(sock));
  ASSERT_TRUE(_relay->start()) << _relay->error();
  EXPECT_EQ(q({"list"}).exit_code, 0) << _relay->log();
}

TEST_F(QueueControl, CommandsRunWhileLoadFlowsAndTheLoadAllArrives) {
  auto sink = mx("127.0.0.4", false);
  auto bad = mx("127.0.0.2", true);
  ASSERT_TRUE(sink && bad);
  start_relay();
  std::string a = send({"one@far.test"}, "deferred during load");
  wait_deferred(1);
  auto accepted = _relay->dir() / "blast-accepted.txt";
  std::thread load([&] {
    auto r = run({blast_binary(), "--server", "127.0.0.1:" + std::to_string(_relay->port()), "--connections", "4",
                  "--messages", "25", "--size", "2000", "--to-domain", "load.test", "--time-limit", "20",
                  "--log-accepted", accepted.string(), "--quiet"},
                 60s);
    EXPECT_EQ(r.exit_code, 0) << r.output;
  });
  // Commands while the load runs (bounded: a fixed number of rounds).
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(q({"list", "--json"}).exit_code, 0);
    EXPECT_EQ(q({"stats", "--json"}).exit_code, 0);
  }
  EXPECT_EQ(q({"hold", a}).exit_code, 0);
  EXPECT_EQ(q({"release", a}).exit_code, 0);
  // Whatever of the load is queued right now is flushed (exit 0), or none is (exit 1).
  EXPECT_NE(q({"flush", "load.test"}).exit_code, 2);
  load.join();
  size_t sent = 0;
  {
    std::ifstream in(accepted);
    std::string line;
    while (std::getline(in, line)) ++sent;
  }
  EXPECT_EQ(sent, 100u);
  size_t arrived_rcpts = 0;
  ASSERT_TRUE(sink->wait_messages(sent, 60s)) << _relay->log();
  for (const auto& m : sink->messages()) arrived_rcpts += m.rcpts.size();
  EXPECT_GE(arrived_rcpts, sent);
  // The deferred message is still there (released, retried, deferred again).
  auto l = listed();
  EXPECT_EQ(l, std::vector<std::string>{a});
}

}  // namespace
}  // namespace sr::integ
