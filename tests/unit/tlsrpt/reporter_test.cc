// The reporter on a real shard, with the shard's DNS resolver against the loopback DNS
// fixture, a recording intake and a stub POST: a window's counts become one report per
// domain when the window ends; mailto: URIs get one spooled message (kind tlsrpt), https:
// URIs a POST; no record means no report; a failing lookup is retried, then given up; a
// POST that fails is retried without mailing again; the state carries counts and unsent
// reports across a restart; MTA-STS policy fetch failures are counted by result type.
#include "sealrelay/tlsrpt/reporter.hh"

#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <memory>

#include "sealrelay/tlsrpt/report.hh"
#include "sealrelay/tlsrpt/sts_fetcher.hh"
#include "support/json_tree.hh"
#include "support/peers.hh"
#include "support/shard_dns.hh"
#include "support/temp_dir.hh"

using namespace sr;
using namespace sr::tlsrpt;

namespace {

const std::string zone =
    "$TTL 300\n"
    "_smtp._tls.a.test TXT \"v=TLSRPTv1;rua=mailto:r1@rua.test,mailto:r2@rua.test,https://h.test:8443/p\"\n"
    "_smtp._tls.broken.test SERVFAIL\n"
    "_smtp._tls.bad.test TXT \"v=TLSRPTv1;rua=gopher://x\"\n";

// Records what is spooled; answers later, like the store.
class recording_intake final : public spool::intake {
 public:
  explicit recording_intake(core::shard& sh) : _sh(sh) {}
  std::string next_queue_id() override { return "0000000000000000"; }
  void submit(spool::message_meta, std::span<const iovec>, spool::intake_client* c) override {
    _sh.post([c] { c->on_stored(false); });
  }
  void submit_owned(spool::message_meta meta, std::string text, std::function<void(bool)> stored) override {
    metas.push_back(meta);
    texts.push_back(std::move(text));
    _sh.post([stored = std::move(stored), ok = accept] { stored(ok); });
  }
  size_t in_flight() const override { return 0; }
  std::vector<spool::message_meta> metas;
  std::vector<std::string> texts;
  bool accept = true;

 private:
  core::shard& _sh;
};

delivery::session_report tls_ok() {
  delivery::session_report r;
  r.mx = "mx.a.test";
  r.ip = "127.0.0.2";
  r.tls = true;
  r.cert_checked = r.cert_ok = true;
  return r;
}

class tlsrpt_reporter : public test::shard_dns_test {
 protected:
  void SetUp() override {
    start_shard_dns(zone);
    if (IsSkipped() || HasFatalFailure()) return;
    _intake = std::make_unique<recording_intake>(_sh);
  }
  void on_tick() override {
    if (_at < _steps.size() && (!_steps[_at].until || _steps[_at].until())) {
      ++_at;
      begin_step();
    }
  }
  void TearDown() override {
    _rep.reset();
    _dns.reset();
  }
  std::unique_ptr<reporter> make() {
    reporter_options o;
    o.organization = "Org";
    o.contact = "c@org.test";
    o.from = "tlsrpt@org.test";
    o.submitter = "relay.test";
    o.interval_ms = 10000;
    o.state_dir = (_dir.path() / "tlsrpt").string();
    o.max_tries = 3;
    o.clock = [this] { return _now; };
    auto post = [this](post_request r, std::function<void(bool, const std::string&)> done) {
      posts.push_back(r);
      _sh.post([done = std::move(done), ok = post_ok] { done(ok, ok ? "" : "status: HTTP 500"); });
    };
    return std::make_unique<reporter>(_sh, *_dns, *_intake, std::move(o), post);
  }
  // One step on the shard loop: `act`, then wait until `until` holds (checked every tick).
  struct step {
    std::function<void()> act;
    std::function<bool()> until;
  };
  // Run the steps in order on the shard loop (once per test: a stopped shard stays
  // stopped); false at the deadline.
  bool run(std::vector<step> steps) {
    _steps = std::move(steps);
    return run_loop(30000, [this] { begin_step(); });
  }
  void begin_step() {
    if (_at == _steps.size()) return _sh.stop();
    if (_steps[_at].act) _steps[_at].act();
  }

  std::unique_ptr<recording_intake> _intake;
  std::unique_ptr<reporter> _rep;
  test::temp_dir _dir;
  int64_t _now = 1'800'000'000'000;  // a window boundary for 10 s
  std::vector<step> _steps;
  size_t _at = 0;
  std::vector<post_request> posts;
  bool post_ok = true;
};

}  // namespace

TEST_F(tlsrpt_reporter, one_report_per_domain_and_window_by_mail_and_post) {
  _rep = make();
  ASSERT_TRUE(_rep->start());
  EXPECT_EQ(_rep->window_start_ms(), _now);
  delivery::session_end e{true, false, report::reason::quit, "127.0.0.1", nullptr};
  for (int i = 0; i < 3; ++i) _rep->session_done("a.test", tls_ok(), e);
  delivery::session_report plain;
  plain.mx = "mx.a.test";
  plain.ip = "127.0.0.2";
  plain.reason = report::reason::starttls_not_offered;
  _rep->session_done("a.test", plain, e);
  _rep->session_done("none.test", tls_ok(), e);    // NXDOMAIN: no report
  _rep->session_done("bad.test", tls_ok(), e);     // no usable rua: no report
  _rep->session_done("broken.test", tls_ok(), e);  // SERVFAIL: retried, then given up
  delivery::session_end routed = e;
  routed.routed = true;
  _rep->session_done("routed.test", tls_ok(), routed);  // through a [[route]]: not counted
  ASSERT_EQ(_rep->counts().counts().size(), 4u);

  _now += 5000;  // still the same window: nothing happens
  _rep->tick(_now);
  EXPECT_EQ(_rep->pending(), 0u);
  _now += 5000;  // the window ends
  _rep->tick(_now);
  EXPECT_EQ(_rep->pending(), 4u);
  EXPECT_TRUE(_rep->counts().empty());
  EXPECT_EQ(_rep->window_start_ms(), _now);
  // The failing domain's retries run on this clock: move it along each tick.
  _sh.on_tick([this] { _now += 1000; });
  ASSERT_TRUE(run({{nullptr, [this] { return _rep->pending() == 0; }}})) << _rep->pending();
  EXPECT_EQ(_rep->sent(), 1u);
  EXPECT_EQ(_rep->given_up(), 1u);

  ASSERT_EQ(_intake->metas.size(), 1u);
  const auto& m = _intake->metas[0];
  EXPECT_EQ(m.kind, report::message_kind::tlsrpt);
  EXPECT_EQ(m.mail_from, "tlsrpt@org.test");
  EXPECT_EQ(m.rcpts, (std::vector<std::string>{"r1@rua.test", "r2@rua.test"}));
  EXPECT_EQ(m.msg_id, "1800000000.a.test@relay.test");
  EXPECT_NE(_intake->texts[0].find("TLS-Report-Domain: a.test\r\n"), std::string::npos);
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].host, "h.test");
  EXPECT_EQ(posts[0].port, 8443);
  EXPECT_EQ(posts[0].path, "/p");
  auto json = gunzip(posts[0].body);
  ASSERT_TRUE(json) << json.err();
  auto root = json_tree::parse(*json);
  ASSERT_TRUE(root) << *json;
  EXPECT_EQ(root->get("date-range")->get("start-datetime")->text, rfc3339(1'800'000'000));
  const auto* pol = root->get("policies")->items.at(0).get();
  EXPECT_EQ(pol->get("summary")->get("total-successful-session-count")->text, "3");
  EXPECT_EQ(pol->get("summary")->get("total-failure-session-count")->text, "1");
  EXPECT_EQ(pol->get("failure-details")->items.at(0)->get("result-type")->text, "starttls-not-supported");
}

TEST_F(tlsrpt_reporter, a_failed_post_is_retried_without_mailing_again) {
  _rep = make();
  ASSERT_TRUE(_rep->start());
  delivery::session_end e{true, false, report::reason::quit, "127.0.0.1", nullptr};
  _rep->session_done("a.test", tls_ok(), e);
  _now += 10000;
  post_ok = false;
  _rep->tick(_now);
  ASSERT_TRUE(run({{nullptr, [this] { return posts.size() == 1 && _intake->metas.size() == 1; }},
                   {[this] {
                      post_ok = true;
                      _sh.on_tick([this] { _now += 1000; });
                    },
                    [this] { return _rep->pending() == 0; }}}));
  EXPECT_EQ(posts.size(), 2u);
  EXPECT_EQ(_intake->metas.size(), 1u);  // the mailto: URIs were done in the first round
  EXPECT_EQ(_rep->sent(), 1u);
}

TEST_F(tlsrpt_reporter, state_survives_a_restart) {
  _rep = make();
  ASSERT_TRUE(_rep->start());
  delivery::session_end e{true, false, report::reason::quit, "127.0.0.1", nullptr};
  _rep->session_done("a.test", tls_ok(), e);
  _rep->session_done("a.test", tls_ok(), e);
  _rep->finish();  // drain: saved
  _rep.reset();

  // Same window: the counts go on.
  _rep = make();
  ASSERT_TRUE(_rep->start());
  ASSERT_EQ(_rep->counts().counts().size(), 1u);
  EXPECT_EQ(_rep->counts().counts().at("a.test").policies.at(0).successes, 2u);
  _rep->session_done("a.test", tls_ok(), e);
  _rep->finish();
  _rep.reset();

  // Started after the window ended: its counts are a report due now, for that window.
  _now += 25000;
  _rep = make();
  ASSERT_TRUE(_rep->start());
  EXPECT_TRUE(_rep->counts().empty());
  EXPECT_EQ(_rep->pending(), 1u);
  ASSERT_TRUE(run({{nullptr, [this] { return _rep->pending() == 0; }}}));
  ASSERT_EQ(posts.size(), 1u);
  auto root = json_tree::parse(*gunzip(posts[0].body));
  ASSERT_TRUE(root);
  EXPECT_EQ(root->get("date-range")->get("start-datetime")->text, rfc3339(1'800'000'000));
  EXPECT_EQ(root->get("policies")->items.at(0)->get("summary")->get("total-successful-session-count")->text, "3");
}

namespace {
// Answers every fetch at once with `next`.
class canned_fetcher final : public sts::fetcher {
 public:
  void fetch(std::string_view, std::function<void(const sts::fetch_result&)> done) override { done(next); }
  sts::fetch_result next;
};
}  // namespace

TEST_F(tlsrpt_reporter, mta_sts_fetch_failures_are_counted_by_result_type) {
  _rep = make();
  ASSERT_TRUE(_rep->start());
  canned_fetcher inner;
  reporting_fetcher f(inner, _rep.get());
  int answered = 0;
  auto fetch = [&](sts::fetch_result r) {
    inner.next = std::move(r);
    f.fetch("sts.test", [&](const sts::fetch_result&) { ++answered; });
  };
  fetch({true, "version: STSv1\nmode: enforce\nmx: mx.sts.test\nmax_age: 86400\n", {}});  // fine: not counted
  fetch({false, {}, "cert: cert-untrusted", true});
  fetch({false, {}, "status: HTTP 404"});
  fetch({false, {}, "timeout"});
  fetch({true, "version: STSv1\nmode: sometimes\n", {}});
  EXPECT_EQ(answered, 5);
  const auto& pol = _rep->counts().counts().at("sts.test").policies;
  ASSERT_EQ(pol.size(), 1u);
  EXPECT_EQ(pol[0].type, policy_type::sts);
  EXPECT_EQ(pol[0].failures, 4u);
  std::map<report::result_type, uint64_t> by;
  for (const auto& d : pol[0].details) by[d.type] += d.count;
  EXPECT_EQ(by[report::result_type::sts_webpki_invalid], 1u);
  EXPECT_EQ(by[report::result_type::sts_policy_fetch_error], 2u);
  EXPECT_EQ(by[report::result_type::sts_policy_invalid], 1u);
}
