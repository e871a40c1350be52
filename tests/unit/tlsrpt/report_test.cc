// The report: its JSON parsed back and checked field by field against RFC 8460 §4.4's
// schema (every required field, its type, and the values counted), the gzip round trip,
// and the RFC 8460 §5.3 mail whose attachment is that gzip.
#include "sealrelay/tlsrpt/report.hh"

#include <gtest/gtest.h>

#include <regex>

#include "support/base64.hh"
#include "support/json_tree.hh"

using namespace sr;
using namespace sr::tlsrpt;
using report::result_type;
using json_tree::node;

namespace {

report_meta meta() {
  report_meta m;
  m.organization = "Example \"Org\"";
  m.contact = "tls-reports@example.org";
  m.submitter = "relay.example.org";
  m.start_s = 1764979200;  // 2025-12-06T00:00:00Z
  m.end_s = m.start_s + 86400;
  return m;
}

domain_counts sample() {
  collector c;
  policy::mta_sts_rules rules;
  rules.mode = policy::sts_mode::enforce;
  rules.mx = {"*.example.net"};
  verdict ok{true, true, result_type::none};
  for (int i = 0; i < 5; ++i) c.add("example.net", policy_type::sts, &rules, ok, "10.0.0.1", "mx1.example.net", "192.0.2.1");
  c.add("example.net", policy_type::sts, &rules, verdict{true, false, result_type::certificate_expired}, "10.0.0.1",
        "mx2.example.net", "192.0.2.2");
  c.add("example.net", policy_type::no_policy_found, nullptr, verdict{true, false, result_type::starttls_not_supported},
        "10.0.0.1", "mx3.example.net", "192.0.2.3");
  return c.counts().at("example.net");
}

// Check that `n` is an object with exactly the required `keys` plus any of `optional`.
void expect_keys(const node* n, std::vector<std::string> required, std::vector<std::string> optional = {}) {
  ASSERT_TRUE(n && n->is(node::object));
  for (const auto& k : required) EXPECT_TRUE(n->get(k)) << "missing " << k;
  for (const auto& k : n->keys)
    EXPECT_TRUE(std::find(required.begin(), required.end(), k) != required.end() ||
                std::find(optional.begin(), optional.end(), k) != optional.end())
        << "unexpected " << k;
}

const std::regex rfc3339_re(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)");

}  // namespace

TEST(tlsrpt_report, json_follows_the_rfc8460_schema) {
  std::string json = report_json(meta(), "example.net", sample());
  auto root = json_tree::parse(json);
  ASSERT_TRUE(root) << json;
  expect_keys(root.get(), {"organization-name", "date-range", "contact-info", "report-id", "policies"});
  EXPECT_EQ(root->get("organization-name")->text, "Example \"Org\"");
  EXPECT_TRUE(root->get("organization-name")->is(node::string));
  EXPECT_EQ(root->get("contact-info")->text, "tls-reports@example.org");
  EXPECT_EQ(root->get("report-id")->text, "1764979200.example.net@relay.example.org");
  const node* range = root->get("date-range");
  expect_keys(range, {"start-datetime", "end-datetime"});
  EXPECT_EQ(range->get("start-datetime")->text, "2025-12-06T00:00:00Z");
  EXPECT_EQ(range->get("end-datetime")->text, "2025-12-06T23:59:59Z");
  EXPECT_TRUE(std::regex_match(range->get("start-datetime")->text, rfc3339_re));

  const node* policies = root->get("policies");
  ASSERT_TRUE(policies && policies->is(node::array));
  ASSERT_EQ(policies->items.size(), 2u);
  uint64_t total_ok = 0, total_failed = 0;
  for (const auto& p : policies->items) {
    expect_keys(p.get(), {"policy", "summary"}, {"failure-details"});
    const node* pol = p->get("policy");
    expect_keys(pol, {"policy-type", "policy-domain"}, {"policy-string", "mx-host"});
    const std::string& type = pol->get("policy-type")->text;
    EXPECT_TRUE(type == "sts" || type == "tlsa" || type == "no-policy-found") << type;
    EXPECT_EQ(pol->get("policy-domain")->text, "example.net");
    for (const char* arr : {"policy-string", "mx-host"})
      if (const node* a = pol->get(arr)) {
        ASSERT_TRUE(a->is(node::array));
        for (const auto& s : a->items) EXPECT_TRUE(s->is(node::string));
      }
    const node* sum = p->get("summary");
    expect_keys(sum, {"total-successful-session-count", "total-failure-session-count"});
    ASSERT_TRUE(sum->get("total-successful-session-count")->is(node::number));
    ASSERT_TRUE(sum->get("total-failure-session-count")->is(node::number));
    uint64_t ok = std::stoull(sum->get("total-successful-session-count")->text);
    uint64_t failed = std::stoull(sum->get("total-failure-session-count")->text);
    total_ok += ok;
    total_failed += failed;
    uint64_t detail_sum = 0;
    const node* details = p->get("failure-details");
    ASSERT_TRUE(details && details->is(node::array));
    for (const auto& d : details->items) {
      expect_keys(d.get(), {"result-type", "failed-session-count"},
                  {"sending-mta-ip", "receiving-mx-hostname", "receiving-mx-helo", "receiving-ip",
                   "additional-information", "failure-reason-code"});
      ASSERT_TRUE(d->get("failed-session-count")->is(node::number));
      detail_sum += std::stoull(d->get("failed-session-count")->text);
      for (const auto& k : d->keys) {
        if (k != "failed-session-count") {
          EXPECT_TRUE(d->get(k)->is(node::string)) << k;
        }
      }
    }
    EXPECT_EQ(detail_sum, failed);
    if (type == "sts") {
      EXPECT_EQ(ok, 5u);
      EXPECT_EQ(failed, 1u);
      const node* strings = pol->get("policy-string");
      ASSERT_TRUE(strings);
      ASSERT_EQ(strings->items.size(), 4u);
      EXPECT_EQ(strings->items[0]->text, "version: STSv1");
      EXPECT_EQ(strings->items[1]->text, "mode: enforce");
      EXPECT_EQ(strings->items[2]->text, "mx: *.example.net");
      EXPECT_EQ(strings->items[3]->text, "max_age: 0");
      ASSERT_EQ(pol->get("mx-host")->items.size(), 1u);
      EXPECT_EQ(pol->get("mx-host")->items[0]->text, "*.example.net");
      const node* d = details->items.at(0).get();
      EXPECT_EQ(d->get("result-type")->text, "certificate-expired");
      EXPECT_EQ(d->get("sending-mta-ip")->text, "10.0.0.1");
      EXPECT_EQ(d->get("receiving-mx-hostname")->text, "mx2.example.net");
      EXPECT_EQ(d->get("receiving-ip")->text, "192.0.2.2");
    } else {
      EXPECT_EQ(type, "no-policy-found");
      EXPECT_FALSE(pol->get("policy-string"));
      EXPECT_EQ(details->items.at(0)->get("result-type")->text, "starttls-not-supported");
    }
  }
  EXPECT_EQ(total_ok, 5u);
  EXPECT_EQ(total_failed, 2u);
}

TEST(tlsrpt_report, gzip_round_trip) {
  std::string json = report_json(meta(), "example.net", sample());
  auto gz = gzip(json);
  ASSERT_TRUE(gz) << gz.err();
  ASSERT_GE(gz->size(), 18u);
  EXPECT_EQ(uint8_t((*gz)[0]), 0x1f);  // gzip magic (RFC 1952)
  EXPECT_EQ(uint8_t((*gz)[1]), 0x8b);
  auto back = gunzip(*gz);
  ASSERT_TRUE(back) << back.err();
  EXPECT_EQ(*back, json);
  EXPECT_FALSE(gunzip(gz->substr(0, gz->size() / 2)));
  EXPECT_FALSE(gunzip("not gzip"));
  EXPECT_FALSE(gunzip(*gz, 10));  // over the limit
}

TEST(tlsrpt_report, mail_follows_rfc8460_section_5_3) {
  report_meta m = meta();
  std::string json = report_json(m, "example.net", sample());
  auto gz = gzip(json);
  ASSERT_TRUE(gz);
  mail_input in{"tlsrpt@relay.example.org", {"a@example.net", "b@example.net"}, "example.net", m.end_s + 5, *gz};
  std::string msg = report_message(m, in);
  size_t hend = msg.find("\r\n\r\n");
  ASSERT_NE(hend, std::string::npos);
  std::string h = msg.substr(0, hend + 2);
  EXPECT_NE(h.find("From: <tlsrpt@relay.example.org>\r\n"), std::string::npos) << h;
  EXPECT_NE(h.find("To: <a@example.net>,\r\n <b@example.net>\r\n"), std::string::npos) << h;
  EXPECT_NE(h.find("Subject: Report Domain: example.net\r\n Submitter: relay.example.org\r\n Report-ID: "
                   "<1764979200.example.net@relay.example.org>\r\n"),
            std::string::npos)
      << h;
  EXPECT_NE(h.find("TLS-Report-Domain: example.net\r\n"), std::string::npos);
  EXPECT_NE(h.find("TLS-Report-Submitter: relay.example.org\r\n"), std::string::npos);
  EXPECT_NE(h.find("Content-Type: multipart/report; report-type=\"tlsrpt\";"), std::string::npos);
  EXPECT_NE(h.find("\r\nDate: "), std::string::npos);
  EXPECT_NE(h.find("\r\nMessage-ID: <"), std::string::npos);
  for (size_t pos = 0, eol; (eol = msg.find("\r\n", pos)) != std::string::npos; pos = eol + 2)
    EXPECT_LE(eol - pos, 998u);  // RFC 5322 line limit
  EXPECT_EQ(msg.find('\n'), msg.find("\r\n") + 1);  // no bare LF
  std::string name = "filename=\"relay.example.org!example.net!1764979200!1765065599.json.gz\"";
  size_t att = msg.find("Content-Type: application/tlsrpt+gzip\r\n");
  ASSERT_NE(att, std::string::npos);
  size_t fn = msg.find(name, att);
  ASSERT_NE(fn, std::string::npos) << msg.substr(att, 300);
  size_t body = msg.find("\r\n\r\n", fn) + 4;
  size_t end = msg.find("\r\n--", body);
  ASSERT_NE(end, std::string::npos);
  auto unz = gunzip(test::base64_decode(msg.substr(body, end - body)));
  ASSERT_TRUE(unz) << unz.err();
  EXPECT_EQ(*unz, json);
  EXPECT_EQ(attachment_name(m, "example.net"), "relay.example.org!example.net!1764979200!1765065599.json.gz");
}
