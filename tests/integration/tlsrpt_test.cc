// TLS-RPT end to end (issue 8 item 3, RFC 8460): the real relay with [tlsrpt] on and a
// short interval, a recipient domain publishing `_smtp._tls` (DNS fixture) whose MX hosts
// give one failed session (no STARTTLS under forced) and one good one; the report arrives
// at the rua address's MX (a fake MX) as an RFC 8460 §5.3 multipart/report, and its gzip
// JSON is checked field by field against RFC 8460 §4.4 and against the sessions that
// happened; an https: rua gets the same report as a POST (tests/tools/https_host.py); MTA-STS
// domains are reported under policy-type sts, and a policy that cannot be fetched as
// sts-policy-fetch-error. Also:
// the counters survive a restart (state under state_dir). Every wait polls with a deadline.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "sealrelay/tlsrpt/report.hh"
#include "support/base64.hh"
#include "support/json_tree.hh"
#include "support/world.hh"

namespace sr::integ {
namespace {

namespace fs = std::filesystem;
using json_tree::node;

const char* const reports_zone =
    "reports.test MX 10 mx.reports.test\n"
    "mx.reports.test A 127.0.0.4\n";

std::string tlsrpt_toml(const std::string& interval) {
  return "[tlsrpt]\nenabled = true\norganization = \"Test Org\"\ncontact = \"tls-admin@sender.test\"\n"
         "from = \"tlsrpt@sender.test\"\ninterval = \"" + interval + "\"\n";
}

std::string body_for(const std::string& rcpt) {
  return "From: <alice@sender.test>\r\nTo: <" + rcpt + ">\r\nSubject: tlsrpt\r\nMessage-ID: <" + unique("m") +
         "@sender.test>\r\n\r\nhello\r\n";
}

// The value of header `name` in the header section of `msg` (unfolded), or "".
std::string header(const std::string& msg, const std::string& name) {
  std::string h = msg.substr(0, msg.find("\r\n\r\n") + 2);
  size_t p = ("\r\n" + h).find("\r\n" + name + ":");
  if (p == std::string::npos) return "";
  size_t start = p + name.size() + 1;
  std::string v;
  for (size_t i = start; i < h.size(); ++i) {
    if (h.compare(i, 2, "\r\n") == 0) {
      if (i + 2 < h.size() && (h[i + 2] == ' ' || h[i + 2] == '\t')) {
        i += 1;
        continue;
      }
      break;
    }
    v += h[i];
  }
  while (!v.empty() && v.front() == ' ') v.erase(v.begin());
  return v;
}

// One report as the rua MX got it: the message and its JSON.
struct got_report {
  mx_message msg;
  std::string json;
  std::shared_ptr<node> root;
};

// The report carried by `m` (its application/tlsrpt+gzip attachment); a gtest failure when
// the message is not an RFC 8460 §5.3 report.
std::optional<got_report> report_of(const mx_message& m, const std::string& domain = "dest.test") {
  got_report g{m, {}, nullptr};
  const std::string& d = m.data;
  EXPECT_TRUE(contains(header(d, "Content-Type"), "multipart/report; report-type=\"tlsrpt\"")) << d.substr(0, 800);
  size_t att = d.find("Content-Type: application/tlsrpt+gzip\r\n");
  if (att == std::string::npos) {
    ADD_FAILURE() << "no application/tlsrpt+gzip part:\n" << d.substr(0, 2000);
    return std::nullopt;
  }
  size_t body = d.find("\r\n\r\n", att);
  size_t end = d.find("\r\n--", body + 4);
  if (body == std::string::npos || end == std::string::npos) return std::nullopt;
  std::string part_headers = d.substr(att, body - att);
  EXPECT_TRUE(contains(part_headers, "Content-Transfer-Encoding: base64")) << part_headers;
  std::string escaped = std::regex_replace(domain, std::regex(R"(\.)"), R"(\.)");
  EXPECT_TRUE(std::regex_search(part_headers, std::regex(R"(filename="relay\.test!)" + escaped + R"(!\d+!\d+\.json\.gz")")))
      << part_headers;
  auto unz = tlsrpt::gunzip(test::base64_decode(d.substr(body + 4, end - body - 4)));
  if (!unz) {
    ADD_FAILURE() << unz.err();
    return std::nullopt;
  }
  g.json = *unz;
  g.root = json_tree::parse(g.json);
  if (!g.root) {
    ADD_FAILURE() << "not JSON: " << g.json;
    return std::nullopt;
  }
  return g;
}

// Sums over a domain's reports.
struct totals {
  uint64_t ok = 0, failed = 0;
  std::map<std::string, uint64_t> by_type;          // result-type -> failed-session-count
  std::set<std::string> failed_mx, failed_ip, sending_ip;
};

const std::regex rfc3339_re(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)");

// Check one report's JSON against RFC 8460 §4.4 (required fields and their types) and add
// its counts to `t`.
void check_json(const node& root, const std::string& domain, totals& t) {
  SCOPED_TRACE("report JSON");
  ASSERT_TRUE(root.is(node::object));
  for (const char* k : {"organization-name", "contact-info", "report-id"}) {
    ASSERT_TRUE(root.get(k) && root.get(k)->is(node::string)) << k;
    EXPECT_FALSE(root.get(k)->text.empty()) << k;
  }
  EXPECT_EQ(root.get("organization-name")->text, "Test Org");
  EXPECT_EQ(root.get("contact-info")->text, "tls-admin@sender.test");
  const node* range = root.get("date-range");
  ASSERT_TRUE(range && range->is(node::object));
  for (const char* k : {"start-datetime", "end-datetime"}) {
    ASSERT_TRUE(range->get(k) && range->get(k)->is(node::string)) << k;
    EXPECT_TRUE(std::regex_match(range->get(k)->text, rfc3339_re)) << range->get(k)->text;
  }
  EXPECT_LE(range->get("start-datetime")->text, range->get("end-datetime")->text);
  const node* policies = root.get("policies");
  ASSERT_TRUE(policies && policies->is(node::array));
  ASSERT_FALSE(policies->items.empty());
  for (const auto& p : policies->items) {
    ASSERT_TRUE(p->is(node::object));
    const node* pol = p->get("policy");
    ASSERT_TRUE(pol && pol->is(node::object));
    ASSERT_TRUE(pol->get("policy-type") && pol->get("policy-type")->is(node::string));
    const std::string& type = pol->get("policy-type")->text;
    EXPECT_TRUE(type == "sts" || type == "tlsa" || type == "no-policy-found") << type;
    ASSERT_TRUE(pol->get("policy-domain") && pol->get("policy-domain")->is(node::string));
    EXPECT_EQ(pol->get("policy-domain")->text, domain);
    for (const char* arr : {"policy-string", "mx-host"})
      if (const node* a = pol->get(arr)) {
        ASSERT_TRUE(a->is(node::array)) << arr;
        for (const auto& s : a->items) EXPECT_TRUE(s->is(node::string)) << arr;
      }
    const node* sum = p->get("summary");
    ASSERT_TRUE(sum && sum->is(node::object));
    const node* ok = sum->get("total-successful-session-count");
    const node* failed = sum->get("total-failure-session-count");
    ASSERT_TRUE(ok && ok->is(node::number) && failed && failed->is(node::number));
    t.ok += std::stoull(ok->text);
    uint64_t f = std::stoull(failed->text);
    t.failed += f;
    uint64_t detail_sum = 0;
    if (const node* details = p->get("failure-details")) {
      ASSERT_TRUE(details->is(node::array));
      for (const auto& d : details->items) {
        ASSERT_TRUE(d->is(node::object));
        ASSERT_TRUE(d->get("result-type") && d->get("result-type")->is(node::string));
        const node* n = d->get("failed-session-count");
        ASSERT_TRUE(n && n->is(node::number));
        uint64_t c = std::stoull(n->text);
        detail_sum += c;
        t.by_type[d->get("result-type")->text] += c;
        for (const char* k : {"sending-mta-ip", "receiving-mx-hostname", "receiving-ip"}) {
          if (const node* v = d->get(k)) {
            EXPECT_TRUE(v->is(node::string)) << k;
          }
        }
        if (const node* v = d->get("receiving-mx-hostname")) t.failed_mx.insert(v->text);
        if (const node* v = d->get("receiving-ip")) t.failed_ip.insert(v->text);
        if (const node* v = d->get("sending-mta-ip")) t.sending_ip.insert(v->text);
      }
    }
    EXPECT_EQ(detail_sum, f);
  }
}

class Tlsrpt : public ::testing::Test, protected world {
 protected:
  Tlsrpt() { _outbound_defaults = {{"connect_timeout", "\"2s\""}, {"retry", "[\"1s\"]"}, {"max_queue_age", "\"60s\""}}; }

  // Wait until the reports for dest.test that `rua_mx` received satisfy `done`; the totals.
  totals wait_reports(fake_mx& rua_mx, const std::function<bool(const totals&)>& done,
                      std::vector<got_report>* out = nullptr, std::chrono::seconds deadline = 45s) {
    auto until = std::chrono::steady_clock::now() + deadline;
    totals t;
    while (true) {
      t = totals{};
      std::vector<got_report> reports;
      for (const auto& m : rua_mx.messages()) {
        if (!contains(m.data, "TLS-Report-Domain: dest.test")) continue;
        auto g = report_of(m);
        if (!g) continue;
        check_json(*g->root, "dest.test", t);
        reports.push_back(std::move(*g));
      }
      if (out) *out = reports;
      if (done(t) || std::chrono::steady_clock::now() >= until) return t;
      std::this_thread::sleep_for(200ms);
    }
  }
};

TEST_F(Tlsrpt, MailtoReportCountsTheSessionsThatHappened) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(std::string("dest.test MX 10 mx1.mx.test\n"
                                    "dest.test MX 20 mx2.mx.test\n"
                                    "mx1.mx.test A 127.0.0.2\n"
                                    "mx2.mx.test A 127.0.0.3\n"
                                    "_smtp._tls.dest.test TXT \"v=TLSRPTv1;rua=mailto:tlsrpt@reports.test\"\n") +
                        reports_zone));
  fake_mx* bad = start_mx({.hosts = {"127.0.0.2"}, .no_starttls = true});
  fake_mx* good = start_mx({.hosts = {"127.0.0.3"}});
  // The rua's MX offers no STARTTLS and its domain is configured exclusive: a report is
  // still delivered, under plain opportunistic policy (RFC 8460 §5.3).
  fake_mx* rua = start_mx({.hosts = {"127.0.0.4"}, .no_starttls = true});
  ASSERT_TRUE(bad && good && rua);
  // Forced: mx1 (no STARTTLS) fails for TLS, the walk goes on to mx2, which delivers.
  relay* r = start_relay("[[policy]]\ndomain = \"dest.test\"\ntls = \"forced\"\n"
                         "[[policy]]\ndomain = \"reports.test\"\ntls = \"exclusive\"\n" + tlsrpt_toml("3s"));
  ASSERT_TRUE(r);
  std::string why;
  std::string qid = submit(*r, "alice@sender.test", {"bob@dest.test"}, body_for("bob@dest.test"), &why);
  ASSERT_FALSE(qid.empty()) << why;
  ASSERT_TRUE(good->wait_messages(1, 20s)) << dump_audit(*r);
  EXPECT_TRUE(bad->messages().empty());

  std::vector<got_report> reports;
  totals t = wait_reports(*rua, [](const totals& x) { return x.ok >= 1 && x.failed >= 1; }, &reports);
  ASSERT_FALSE(reports.empty()) << r->log() << dump_audit(*r);
  EXPECT_GE(t.ok, 1u) << reports.back().json;
  EXPECT_GE(t.failed, 1u) << reports.back().json;
  EXPECT_EQ(t.by_type["starttls-not-supported"], t.failed);
  EXPECT_EQ(t.failed_mx, (std::set<std::string>{"mx1.mx.test"}));
  EXPECT_EQ(t.failed_ip, (std::set<std::string>{"127.0.0.2"}));
  for (const auto& ip : t.sending_ip) EXPECT_TRUE(ip.starts_with("127.")) << ip;

  // RFC 8460 §5.3: the mail around it.
  std::set<std::string> windows;
  for (const auto& g : reports) {
    const mx_message& m = g.msg;
    EXPECT_EQ(m.mail_from, "tlsrpt@sender.test");
    EXPECT_EQ(m.rcpts, (std::vector<std::string>{"tlsrpt@reports.test"}));
    EXPECT_EQ(header(m.data, "TLS-Report-Domain"), "dest.test");
    EXPECT_EQ(header(m.data, "TLS-Report-Submitter"), "relay.test");
    std::string id = g.root->get("report-id")->text;
    EXPECT_EQ(header(m.data, "Subject"), "Report Domain: dest.test Submitter: relay.test Report-ID: <" + id + ">");
    EXPECT_TRUE(contains(header(m.data, "From"), "tlsrpt@sender.test"));
    // Never more than one report per domain per window.
    EXPECT_TRUE(windows.insert(g.root->get("date-range")->get("start-datetime")->text).second) << g.json;
  }
  // The report is a message of its own kind, audited as such.
  auto lines = wait_audit(*r, 1, [](const audit_line& a) { return a.kind == "tlsrpt" && a.outcome == "delivered"; });
  ASSERT_FALSE(lines.empty()) << dump_audit(*r);
  EXPECT_EQ(lines[0].domain, "reports.test");
  EXPECT_EQ(lines[0].rcpt, "tlsrpt@reports.test");
  EXPECT_EQ(lines[0].policy, "opportunistic");
  EXPECT_FALSE(lines[0].tls);
}

TEST_F(Tlsrpt, CountersSurviveARestart) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(std::string("dest.test MX 10 mx1.mx.test\n"
                                    "mx1.mx.test A 127.0.0.2\n"
                                    "_smtp._tls.dest.test TXT \"v=TLSRPTv1;rua=mailto:tlsrpt@reports.test\"\n") +
                        reports_zone));
  fake_mx* good = start_mx({.hosts = {"127.0.0.2"}});
  fake_mx* rua = start_mx({.hosts = {"127.0.0.4"}});
  ASSERT_TRUE(good && rua);
  // A day's window: nothing is reported while the first run lasts.
  relay* r = start_relay(tlsrpt_toml("24h"));
  ASSERT_TRUE(r);
  std::string why;
  ASSERT_FALSE(submit(*r, "alice@sender.test", {"bob@dest.test"}, body_for("bob@dest.test"), &why).empty()) << why;
  ASSERT_TRUE(good->wait_messages(1, 20s)) << dump_audit(*r);
  // The session is counted when it ends (the idle link QUITs after a short park), and
  // saved within seconds.
  ASSERT_TRUE(good->wait_sessions(1, 20s));
  auto saved = [&] {
    std::string text;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(r->state_dir() / "tlsrpt", ec))
      if (e.path().extension() == ".state") text += read_file(e.path());
    return text;
  };
  for (auto until = std::chrono::steady_clock::now() + 20s;
       !contains(saved(), "dest.test") && std::chrono::steady_clock::now() < until;)
    std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(contains(saved(), "dest.test")) << saved();
  EXPECT_EQ(r->stop(), 0) << r->log();
  EXPECT_TRUE(contains(saved(), "dest.test")) << saved();
  EXPECT_TRUE(rua->messages().empty());

  // Restart with a short interval: the saved day-window is over as far as the new
  // schedule goes, so its counts are reported now.
  std::string cfg = read_file(r->config_path());
  size_t at = cfg.find("interval = \"24h\"");
  ASSERT_NE(at, std::string::npos) << cfg;
  cfg.replace(at, 16, "interval = \"2s\"");
  std::ofstream(r->config_path(), std::ios::trunc) << cfg;
  ASSERT_TRUE(r->start()) << r->error() << r->log();
  std::vector<got_report> reports;
  totals t = wait_reports(*rua, [](const totals& x) { return x.ok >= 1; }, &reports);
  ASSERT_FALSE(reports.empty()) << r->log();
  EXPECT_GE(t.ok, 1u);
  EXPECT_EQ(t.failed, 0u);
  // The counts came from the day window of the first run (midnight UTC).
  std::string start = reports[0].root->get("date-range")->get("start-datetime")->text;
  EXPECT_TRUE(start.ends_with("T00:00:00Z")) << start;
}

TEST_F(Tlsrpt, HttpsAndMailtoUrisEachGetTheReport) {
  ASSERT_NE(_port, 0);
  // The rua's HTTPS host: reports.mx.test (the test server certificate names *.mx.test,
  // and chains to the tls.ca_file the relay trusts); POST /v1/tlsrpt answers 201.
  https_host web({.hosts = {"127.0.0.5"}, .routes = {"/v1/tlsrpt=201:-"}});
  ASSERT_TRUE(web.start()) << web.error() << web.log();
  std::string rua = "mailto:tlsrpt@reports.test,https://reports.mx.test:" + std::to_string(web.port()) + "/v1/tlsrpt";
  ASSERT_TRUE(start_dns(std::string("dest.test MX 10 mx1.mx.test\n"
                                    "mx1.mx.test A 127.0.0.2\n"
                                    "reports.mx.test A 127.0.0.5\n"
                                    "_smtp._tls.dest.test TXT \"v=TLSRPTv1;rua=") + rua + "\"\n" + reports_zone));
  fake_mx* good = start_mx({.hosts = {"127.0.0.2"}});
  fake_mx* mail = start_mx({.hosts = {"127.0.0.4"}});
  ASSERT_TRUE(good && mail);
  relay* r = start_relay(tlsrpt_toml("2s"));
  ASSERT_TRUE(r);
  std::string why;
  ASSERT_FALSE(submit(*r, "alice@sender.test", {"bob@dest.test"}, body_for("bob@dest.test"), &why).empty()) << why;
  ASSERT_TRUE(good->wait_messages(1, 20s)) << dump_audit(*r);

  // Both URIs get the window that counted the session (the first report may be an
  // earlier, empty-of-that-session window only if the session ended in it: sum them).
  std::vector<got_report> mailed;
  totals t = wait_reports(*mail, [](const totals& x) { return x.ok >= 1; }, &mailed);
  ASSERT_GE(t.ok, 1u) << r->log();
  ASSERT_TRUE(web.wait_requests(mailed.size(), 20s)) << r->log() << web.log();
  auto reqs = web.requests();
  std::set<std::string> posted_ids, mailed_ids;
  totals posted;
  for (const auto& q : reqs) {
    EXPECT_EQ(q.method, "POST");
    EXPECT_EQ(q.path, "/v1/tlsrpt");
    EXPECT_EQ(q.sni, "reports.mx.test");
    EXPECT_TRUE(contains(q.host, "reports.mx.test")) << q.host;
    EXPECT_EQ(q.header("Content-Type"), "application/tlsrpt+gzip");
    auto unz = tlsrpt::gunzip(q.body);
    ASSERT_TRUE(unz) << unz.err();
    auto root = json_tree::parse(*unz);
    ASSERT_TRUE(root) << *unz;
    check_json(*root, "dest.test", posted);
    posted_ids.insert(root->get("report-id")->text);
  }
  for (const auto& g : mailed) mailed_ids.insert(g.root->get("report-id")->text);
  // The same reports (same ids, same counts) by both ways, one POST per report.
  EXPECT_EQ(reqs.size(), posted_ids.size());
  EXPECT_EQ(posted_ids, mailed_ids);
  EXPECT_EQ(posted.ok, t.ok);
  EXPECT_EQ(posted.failed, t.failed);
}

// MTA-STS and TLS-RPT together: a domain with an enforce policy is reported under
// policy-type sts with its policy lines and mx patterns; a domain whose policy cannot be
// fetched (404) gets an sts-policy-fetch-error failure beside its sessions' counts.
TEST_F(Tlsrpt, StsPoliciesAndPolicyFetchFailuresAreReported) {
  ASSERT_NE(_port, 0);
  temp_dir policies;
  std::ofstream(policies.path() / "d19.sts.test.txt")
      << "version: STSv1\r\nmode: enforce\r\nmx: *.mx.test\r\nmax_age: 86400\r\n";
  // d20.sts.test publishes a TXT record but no policy file: 404.
  https_host web({.hosts = {"127.0.0.1"}, .policy_dir = policies.path().string()});
  ASSERT_TRUE(web.start()) << web.error() << web.log();
  std::string zone;
  for (const char* d : {"d19.sts.test", "d20.sts.test"}) {
    std::string dom = d;
    zone += dom + " MX 10 mx1.mx.test\n" + "mta-sts." + dom + " A 127.0.0.1\n" + "_mta-sts." + dom +
            " TXT \"v=STSv1; id=1\"\n" + "_smtp._tls." + dom + " TXT \"v=TLSRPTv1;rua=mailto:tlsrpt@reports.test\"\n";
  }
  ASSERT_TRUE(start_dns(zone + "mx1.mx.test A 127.0.0.2\n" + reports_zone));
  fake_mx* good = start_mx({.hosts = {"127.0.0.2"}});
  fake_mx* rua = start_mx({.hosts = {"127.0.0.4"}});
  ASSERT_TRUE(good && rua);
  _mta_sts = "enabled = true\nhttps_port = " + std::to_string(web.port());
  relay* r = start_relay(tlsrpt_toml("2s"));
  ASSERT_TRUE(r);
  std::string why;
  for (const char* d : {"d19.sts.test", "d20.sts.test"})
    ASSERT_FALSE(submit(*r, "alice@sender.test", {std::string("bob@") + d}, body_for(std::string("bob@") + d), &why)
                     .empty())
        << why;
  ASSERT_TRUE(good->wait_messages(2, 20s)) << dump_audit(*r);

  // Sum the policies of each domain's reports until both show what happened.
  struct seen {
    uint64_t sts_ok = 0, no_policy_ok = 0, fetch_errors = 0;
    std::vector<std::string> strings, mx_host;
  };
  std::map<std::string, seen> by_domain;
  auto until = std::chrono::steady_clock::now() + 45s;
  while (true) {
    by_domain.clear();
    for (const auto& m : rua->messages()) {
      std::string domain = header(m.data, "TLS-Report-Domain");
      if (domain != "d19.sts.test" && domain != "d20.sts.test") continue;
      auto g = report_of(m, domain);
      if (!g) continue;
      totals t;
      check_json(*g->root, domain, t);
      seen& s = by_domain[domain];
      s.fetch_errors += t.by_type["sts-policy-fetch-error"];
      for (const auto& p : g->root->get("policies")->items) {
        const node* pol = p->get("policy");
        uint64_t ok = std::stoull(p->get("summary")->get("total-successful-session-count")->text);
        if (pol->get("policy-type")->text == "sts") {
          s.sts_ok += ok;
          if (const node* a = pol->get("policy-string"); a && s.strings.empty())
            for (const auto& x : a->items) s.strings.push_back(x->text);
          if (const node* a = pol->get("mx-host"); a && s.mx_host.empty())
            for (const auto& x : a->items) s.mx_host.push_back(x->text);
        } else if (pol->get("policy-type")->text == "no-policy-found") {
          s.no_policy_ok += ok;
        }
      }
    }
    if ((by_domain["d19.sts.test"].sts_ok >= 1 && by_domain["d20.sts.test"].fetch_errors >= 1 &&
         by_domain["d20.sts.test"].no_policy_ok >= 1) ||
        std::chrono::steady_clock::now() >= until)
      break;
    std::this_thread::sleep_for(200ms);
  }
  const seen& enforce = by_domain["d19.sts.test"];
  EXPECT_GE(enforce.sts_ok, 1u) << r->log();
  EXPECT_EQ(enforce.no_policy_ok, 0u);
  EXPECT_EQ(enforce.strings,
            (std::vector<std::string>{"version: STSv1", "mode: enforce", "mx: *.mx.test", "max_age: 86400"}));
  EXPECT_EQ(enforce.mx_host, (std::vector<std::string>{"*.mx.test"}));
  const seen& missing = by_domain["d20.sts.test"];
  EXPECT_GE(missing.fetch_errors, 1u) << r->log();
  EXPECT_GE(missing.no_policy_ok, 1u);
  EXPECT_EQ(missing.sts_ok, 0u);
}

}  // namespace
}  // namespace sr::integ
