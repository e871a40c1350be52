// The loopback world (world.hh): relay options for delivery, message submission, and the
// polling readers of the audit log, queue listing and daemon log.
#include "support/world.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <thread>

namespace sr::integ {

const std::vector<std::string> mx_hosts = {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5",
                                           "127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"};

const toml_defaults fast_outbound = {
    {"connect_timeout", "\"2s\""}, {"retry", "[\"1s\"]"}, {"max_queue_age", "\"30s\""}};

uint16_t mx_port() { return free_port_on(mx_hosts); }

relay_options delivery_options(const std::string& dns_address, uint16_t smtp_port, const std::string& outbound_extra,
                               std::string extra_toml, const toml_defaults& defaults) {
  relay_options o;
  o.dns_resolver = dns_address;
  o.smtp_port = smtp_port;
  for (const auto& [key, value] : defaults)
    if (!contains(outbound_extra, key + " =")) o.outbound_extra += key + " = " + value + "\n";
  o.outbound_extra += outbound_extra;
  o.extra_toml = std::move(extra_toml);
  return o;
}

relay_options delivery_options(const dns_fixture& dns, uint16_t smtp_port, const std::string& outbound_extra,
                               std::string extra_toml) {
  return delivery_options(dns.address(), smtp_port, outbound_extra, std::move(extra_toml));
}

relay_options parked_options(uint16_t smtp_port, unsigned shards, std::string routes) {
  relay_options o;
  o.shards = shards;
  o.smtp_port = smtp_port;
  o.outbound_extra = "connect_timeout = \"2s\"\nretry = [\"1h\"]\n";
  o.extra_toml = std::move(routes);
  return o;
}

std::string route_to(const std::string& domain, const std::string& ip, uint16_t port) {
  return "[[route]]\ndomain = \"" + domain + "\"\nnext_hop = \"[" + ip + "]:" + std::to_string(port) + "\"\n";
}

std::string submit(const relay& r, const std::string& from, const std::vector<std::string>& rcpts,
                   std::string_view body, std::string* why) {
  raw_client c;
  if (!open_session(c, r.port())) {
    if (why) *why = "no session";
    return {};
  }
  auto reply = send_message(c, from, rcpts, dot_stuff(body));
  c.command("QUIT", 5s);
  if (!reply || reply_code(*reply) != 250) {
    if (why) *why = reply ? *reply : "no reply";
    return {};
  }
  auto id = queued_id(*reply);
  return id ? *id : std::string();
}

std::string submit_smtplib(const relay& r, const std::string& from, const std::string& rcpt,
                           const std::string& text, const std::vector<std::string>& mail_options, bool plain) {
  std::filesystem::path f = r.dir() / (unique("msg") + ".eml");
  std::ofstream(f, std::ios::binary) << text;
  std::vector<std::string> argv = {"python3", (source_root() / "tests/tools/smtp_mail_params.py").string(),
                                   "--port", std::to_string(r.port()), "--from", from, "--to", rcpt,
                                   "--message", f.string()};
  if (!plain) {
    argv.insert(argv.end(), {"--starttls", "--cafile", (source_root() / "tests/certs/ca.crt").string()});
  }
  for (const auto& o : mail_options) argv.insert(argv.end(), {"--mail-option", o});
  run_result res = run(argv, 30s);
  EXPECT_EQ(res.exit_code, 0) << res.output;
  return res.output;
}

std::filesystem::path audit_file(const relay& r) { return r.state_dir() / "audit.jsonl"; }

std::vector<audit_line> audit_of(const relay& r, const std::string& qid) {
  std::vector<audit_line> out;
  for (auto& a : read_audit(audit_file(r)))
    if (a.queue_id == qid) out.push_back(std::move(a));
  return out;
}

std::vector<audit_line> wait_audit(const relay& r, size_t n, const std::function<bool(const audit_line&)>& pred,
                                   std::chrono::milliseconds deadline) {
  auto until = clock::now() + deadline;
  for (;;) {
    std::vector<audit_line> hits;
    for (auto& a : read_audit(audit_file(r)))
      if (pred(a)) hits.push_back(std::move(a));
    if (hits.size() >= n || clock::now() >= until) return hits;
    std::this_thread::sleep_for(20ms);   // polling a file the relay appends to
  }
}

std::string dump_audit(const relay& r) {
  std::string s;
  for (auto& a : read_audit(audit_file(r))) s += a.raw + "\n";
  return s;
}

void expect_audit_fields(const audit_line& a) {
  SCOPED_TRACE(a.raw);
  EXPECT_EQ(a.ts.size(), 24u);
  EXPECT_TRUE(ends_with(a.ts, "Z"));
  EXPECT_FALSE(a.queue_id.empty());
  EXPECT_GE(a.attempt, 1);
  if (a.ip) {
    EXPECT_EQ(a.ip->rfind("127.", 0), 0u);
  }
  if (a.source_ip) {
    EXPECT_EQ(a.source_ip->rfind("127.", 0), 0u);
  }
  if (a.tls) {
    EXPECT_TRUE(a.tls_version.has_value());
    EXPECT_TRUE(a.cipher.has_value());
    EXPECT_TRUE(a.cipher_bits.has_value());
    EXPECT_NE(a.cert, "none");
  } else {
    EXPECT_FALSE(a.tls_version.has_value());
    EXPECT_FALSE(a.cipher.has_value());
    EXPECT_FALSE(a.cipher_bits.has_value());
    EXPECT_EQ(a.cert, "none");
  }
}

bool wait_log(const relay& r, const std::function<bool(const std::string&)>& pred,
              std::chrono::milliseconds deadline) {
  auto until = clock::now() + deadline;
  for (;;) {
    if (pred(r.log())) return true;
    if (clock::now() >= until) return false;
    std::this_thread::sleep_for(20ms);   // polling the daemon's stderr file
  }
}

bool wait_queue(const relay& r, const std::function<bool(const std::set<std::string>&)>& pred,
                std::chrono::milliseconds deadline, std::string* last) {
  auto until = clock::now() + deadline;
  for (;;) {
    auto q = r.list_queue(last);
    if (q) {
      std::set<std::string> ids;
      for (const auto& m : *q) ids.insert(m.id);
      if (pred(ids)) return true;
    }
    if (clock::now() >= until) return false;
    std::this_thread::sleep_for(100ms);   // polling the spool, not an assertion
  }
}

bool wait_queue_empty(const relay& r, std::chrono::milliseconds deadline, std::string* last) {
  return wait_queue(r, [](const std::set<std::string>& ids) { return ids.empty(); }, deadline, last);
}

bool has_command(const mx_session& s, std::string_view cmd) {
  return std::find(s.commands.begin(), s.commands.end(), cmd) != s.commands.end();
}

std::string commands_of(const mx_session& s) {
  std::string out;
  for (const auto& c : s.commands) out += (out.empty() ? "" : " | ") + c;
  return out;
}

// ----------------------------------------------------------------------------- world

bool world::start_dns(const std::string& zone) {
  std::string why;
  for (int i = 0; i < 3; ++i) {
    _dns = std::make_unique<dns_fixture>(zone);
    if (_dns->start()) return true;
    why += _dns->error() + _dns->log();
  }
  ADD_FAILURE() << "dns: " << why;
  return false;
}

fake_mx* world::start_mx(fake_mx_options o) {
  o.port = _port;
  _mxs.push_back(std::make_unique<fake_mx>(std::move(o)));
  if (!_mxs.back()->start()) {
    ADD_FAILURE() << "fake MX: " << _mxs.back()->error() << _mxs.back()->log();
    return nullptr;
  }
  return _mxs.back().get();
}

relay* world::start_relay(const std::string& extra_toml, const std::string& outbound_extra) {
  if (!_dns) {
    ADD_FAILURE() << "relay: start_dns() first";
    return nullptr;
  }
  relay_options o = delivery_options(_dns->address(), _port, outbound_extra, extra_toml, _outbound_defaults);
  o.mta_sts = _mta_sts;
  o.fallback = _fallback;
  o.admin_listen = _admin_listen;
  if (!_listeners.empty()) o.listeners = _listeners;
  _relay = std::make_unique<relay>(o);
  if (!_relay->start()) {
    ADD_FAILURE() << "relay: " << _relay->error() << _relay->log();
    return nullptr;
  }
  return _relay.get();
}

}  // namespace sr::integ
