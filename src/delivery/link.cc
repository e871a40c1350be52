// Link: bytes from the socket go through wolfSSL (after STARTTLS) into the outbound
// session; its commands and the message body go back the same way. The body is
// handed to wolfSSL straight from the job's buffer (encryption is the only copy).
// Attempt: the host walk. A link that fails before the session is ready for mail
// (connect error, 4xx/5xx greeting, TLS failure) moves the walk to the next address
// or MX; under opportunistic policy a failed handshake is retried once in plaintext
// on a new connection to the same host (Postfix "may").
#include "link.hh"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "sealrelay/audit/record.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/dane.hh"
#include "sealrelay/tls/session.hh"
#include "sealrelay/tls/session_cache.hh"
#include "sealrelay/util/cidr.hh"
#include "sealrelay/util/log.hh"

namespace sr::delivery {
namespace {
constexpr uint64_t park_ms = 2000;  // how long an idle link waits for more jobs
// Messages longer than stream_min are not loaded whole: after the 354 they stream from
// the spool in windows of stream_window bytes (bounded memory per link, whatever the size).
constexpr uint64_t stream_min = 256 * 1024;
constexpr size_t stream_window = 128 * 1024;

std::string reply_line(unsigned code, std::string_view text) {
  if (code == 0) return std::string(text);
  return std::to_string(code) + " " + std::string(text);
}

// reply_line() into `out`, reusing its buffer.
void assign_reply_line(std::string& out, unsigned code, std::string_view text) {
  out.clear();
  if (code != 0) {
    char num[16];
    int n = std::snprintf(num, sizeof num, "%u ", code);
    out.append(num, size_t(n));
  }
  out.append(text);
}

// The reason of a failed handshake, from the TLS layer's token (handshake_failed when it
// names none we know).
report::reason tls_failure(const tls::session& s) {
  return report::reason_from_token(s.failure_reason()).value_or(report::reason::handshake_failed);
}

// The audit reason of a certificate that did not verify.
report::reason cert_reason(tls::cert_verdict v) {
  switch (v) {
    case tls::cert_verdict::name_mismatch: return report::reason::cert_name_mismatch;
    case tls::cert_verdict::expired: return report::reason::cert_expired;
    case tls::cert_verdict::untrusted: return report::reason::cert_untrusted;
    case tls::cert_verdict::tlsa_mismatch: return report::reason::tlsa_mismatch;
    case tls::cert_verdict::none:
    case tls::cert_verdict::verified: return report::reason::none;
    case tls::cert_verdict::invalid: break;
  }
  return report::reason::cert_invalid;
}
// Does `now` differ from `was` in anything a delivery decision or its audit depends on?
bool differs(const policy::effective_policy& now, const policy::effective_policy& was) {
  return now.tls != was.tls || now.verify != was.verify || now.min_version != was.min_version ||
         now.min_cipher_bits != was.min_cipher_bits || now.source != was.source ||
         now.notify_sender != was.notify_sender || now.fallback_after != was.fallback_after ||
         !(now.fallback == was.fallback);
}
}  // namespace

// ---------------------------------------------------------------------------- link

link::link(agent& ag, attempt& at, queue::domain_state& d, int fd, const target& t,
           const link_info* failed_tls)
    : tls::stream(ag.shard(), ag.ring(), ag.pool(), fd),
      _ag(ag),
      _at(at),
      _d(d),
      _t(t),
      _try_tls(failed_tls == nullptr),
      _pd(t.policy),
      _session(outbound::session_params{at.ehlo_name()}, *this, *this) {
  _info.mx = t.host;
  _info.ip = t.ip;
  _info.source_ip = at.local_ip();
  _info.policy = t.policy.tls;
  _info.source = t.policy.source;
  _info.published = t.published;
  _info.sts_testing = t.sts_testing;
  for (const auto& rd : t.verify.tlsa)
    if (auto rec = tls::tlsa_record::from_rdata(rd))
      _info.tlsa_policy.push_back("_" + std::to_string(ag.cfg().outbound.smtp_port) + "._tcp." + t.host +
                                  ". IN TLSA ( " + rec->to_string() + " )");
  if (failed_tls) {
    _failed_tls = *failed_tls;
    _info.reason = failed_tls->reason;
  }
}

link::~link() = default;

void link::begin() {
  _ag.add(this);
  ++_ag.counters().connections;
  phase_started();
  start_recv();
}

void link::phase_started() {
  _phase_since = _ag.shard().now_ms();
  _last_phase = _session.phase();
}

void link::check_deadline(uint64_t now) {
  if (closing()) return;
  if (_parked) {
    if (now - _park_since >= park_ms) {
      _ag.sched().unpark(_d, this);
      _parked = false;
      _session.quit();
      flush();
    }
    return;
  }
  if (_session.phase() != _last_phase) phase_started();
  unsigned limit_s = outbound::rfc5321_timeout_s(_session.phase());
  if (_session.phase() == outbound::phase::greeting)
    limit_s = unsigned(std::max<int64_t>(1, _ag.cfg().outbound.connect_timeout.count() / 1000));
  if (limit_s == 0 || _loading) return;
  if (now - _phase_since >= uint64_t(limit_s) * 1000) {
    _session.timeout();
    flush();
  }
}

void link::on_plain(net::chunk* c, size_t len) {
  _session.feed(std::string_view(reinterpret_cast<const char*>(c->data), len));
  _pool.release(c);
}

void link::on_tls_ready() {
  _handshaking = false;
  const tls::session& t = *tls();
  _info.tls = true;
  _info.tls_version = std::string(t.version());
  _info.cipher = std::string(t.cipher());
  _info.cipher_bits = unsigned(t.cipher_bits());
  _info.cert_checked = true;
  _info.cert_ok = t.verdict() == tls::cert_verdict::verified;
  if (!_info.cert_ok) _info.cert_reason = cert_reason(t.verdict());
  outbound::tls_outcome o;
  o.version = _info.tls_version;
  o.cipher = _info.cipher;
  o.cipher_bits = _info.cipher_bits;
  o.cert = _info.cert_ok ? outbound::cert_verdict::verified : outbound::cert_verdict::invalid;
  o.cert_reason = _info.cert_reason;
  _session.tls_done(o);
}

void link::on_tls_failed() {
  ++_ag.counters().tls_failures;
  _info.reason = tls_failure(*tls());
  _session.tls_failed(_info.reason);
}

void link::on_end(int) {
  if (_handshaking) {
    // A reset or EOF mid-handshake is a failed handshake (opportunistic retries it in
    // plaintext), not a lost connection.
    _handshaking = false;
    ++_ag.counters().tls_failures;
    _info.reason = report::reason::handshake_failed;
    _session.tls_failed(report::reason::handshake_failed);
  } else {
    _session.connection_lost();
  }
  stream::close();
}

void link::send(std::string_view bytes) { tls::stream::send(bytes); }

void link::send_body(std::span<const iovec> iov) {
  if (iov.empty() && _job && _job->body.empty() && _job->length > 0) {
    // A large message (stream_size): its bytes come from the spool a window at a time.
    if (!_window) _window = std::make_unique<char[]>(stream_window);
    _streaming = true;
    _streamed = true;
    _stream_pos = 0;
    _stream_ready = 0;
    _stuff = {};
    flush();
    stream_next();
    return;
  }
  tls::stream::send(iov);
  flush();
}

void link::stream_next() {
  queue::job* j = _job;
  if (!_streaming || _stream_reading || _stream_ready || !j || closing()) return;
  const uint64_t n = std::min<uint64_t>(stream_window, j->length - _stream_pos);
  _stream_reading = true;
  hold();
  _ag.spool_reader().read(spool::body_ref{j->segment, j->offset + _stream_pos, n}, _window.get(),
                          [this, n](bool ok) {
                            _stream_reading = false;
                            if (!_streaming || closing()) {
                              // the transaction or the link ended meanwhile
                            } else if (!ok) {
                              // The server has part of the body: only dropping the
                              // connection keeps it from taking a truncated message.
                              _streaming = false;
                              _stream_broken = true;
                              _info.reason = report::reason::spool_read_failed;
                              _session.connection_lost();
                              stream::close(true);
                            } else {
                              _stream_ready = size_t(n);
                              stream_send();
                            }
                            unhold();  // last: may complete a close
                          });
}

void link::stream_send() {
  if (!_stream_ready || !_streaming || closing()) return;
  if (unsent() >= stream_window) return;  // on_drained() comes back
  iovec v{_window.get(), _stream_ready};
  _siov.clear();
  outbound::stuff_window({&v, 1}, _siov, _stuff);
  _stream_pos += _stream_ready;
  _stream_ready = 0;
  const bool last = _stream_pos >= _job->length;
  if (last) {
    outbound::stuff_end(_siov, _stuff);
    _streaming = false;
  }
  tls::stream::send(_siov);  // copied (encrypted) here: the window is free again
  flush();
  if (!last) stream_next();
  else _window.reset();  // the link may carry small messages for a while: not 128 KiB more
}

void link::on_drained() {
  if (_stream_ready) stream_send();
}

void link::start_tls() {
  // The walk's verification parameters: the certificate must name the host (TLSA records
  // join them once DANE exists).
  std::string_view name = _t.verify.names.empty() ? std::string_view(_t.host) : _t.verify.names.front();
  // DANE: the session's verdict comes from the host's TLSA records, not the CA file.
  std::vector<tls::tlsa_record> tlsa;
  if (_t.verify.mode == config::verify_mode::dane)
    tlsa = tls::usable_tlsa(_t.verify.tlsa);
  auto s = tls::session::connect(*_ag.tls_client(), name, &_ag.tls_cache(), tlsa);
  if (!s) {
    _session.tls_failed(report::reason::handshake_failed);
    return;
  }
  _handshaking = true;
  if (!tls::stream::start_tls(std::move(s.value()))) {  // sends the ClientHello
    _info.reason = tls_failure(*tls());
    _session.tls_failed(_info.reason);
  }
}

void link::transaction_done(const outbound::txn_result& r) {
  queue::job* j = _job;
  _job = nullptr;
  if (_streaming) {
    // A reply (or the end of the connection) before the whole body went: the server and
    // we disagree about where the message ends, so this connection carries nothing more.
    _streaming = false;
    _stream_ready = 0;
    _stream_broken = true;
  }
  if (!j) return;
  // One result per recipient, in the link's own vector: its strings keep their capacity
  // from one transaction to the next (no allocation per delivery).
  auto& res = _res;
  res.resize(j->rcpts.size());
  for (size_t i = 0; i < res.size(); ++i) {
    auto& y = res[i];
    y.reason = report::reason::none;
    y.notify_sender = false;
    if (i >= r.rcpts.size()) {  // no result: a deferral
      y.outcome = queue::rcpt_outcome::deferred;
      y.reply.clear();
      y.mx.clear();
      y.status.clear();
      continue;
    }
    const auto& x = r.rcpts[i];
    y.outcome = x.status == outbound::rcpt_status::delivered ? queue::rcpt_outcome::delivered
              : x.status == outbound::rcpt_status::bounced   ? queue::rcpt_outcome::bounced
                                                             : queue::rcpt_outcome::deferred;
    assign_reply_line(y.reply, x.code, x.text);
    y.mx.assign(_t.host);
    if (!x.enhanced.empty()) y.status.assign(x.enhanced);
    else y.status.assign((x.code ? x.code : 400) >= 500 ? "5.0.0" : "4.0.0");
    if (x.code == 0)
      y.reason = x.where == outbound::stage::connection ? report::reason::connection_lost : report::reason::local;
  }
  if (r.delivered) {
    // Per recipient, like sealrelay_messages_delivered_total, so the series add up to it.
    auto& c = _ag.counters();
    if (_info.tls) {
      c.tls_deliveries += r.delivered;
      if (_info.tls_version == "TLSv1.3") c.tls13 += r.delivered;
      else if (_info.tls_version == "TLSv1.2") c.tls12 += r.delivered;
      else c.tls_other += r.delivered;
    } else {
      c.plain_deliveries += r.delivered;
    }
    size_t p = size_t(_info.policy), src = size_t(_info.source);
    if (p < delivery_counters::policies && src < delivery_counters::policy_sources)
      c.delivered_by_policy[p * delivery_counters::policy_sources + src] += r.delivered;
  }
  if (_failed_tls) {
    // The failed handshake before this plaintext retry was an attempt of its own
    // (DESIGN.md §5): audit it as deferred, then this transaction as the next attempt.
    std::vector<queue::rcpt_result> tried(j->rcpts.size());
    for (auto& t : tried) {
      t.outcome = queue::rcpt_outcome::deferred;
      t.reason = _failed_tls->reason;
      t.mx = _failed_tls->mx;
    }
    _ag.audit_job(*j, tried, *_failed_tls);
    for (auto& rc : j->rcpts) ++rc.attempts;
  }
  _ag.complete(j, res, _info);
}

void link::idle() {
  _reached_idle = true;
  next_job();
}

void link::next_job() {
  if (closing() || _job || _loading) return;
  if (_stream_broken) {
    stream::close(true);
    return;
  }
  // A SIGHUP that changed this domain's policy ends the connection before its next job:
  // mail queued now goes out under the new policy, never over a session the old one
  // allowed (a plaintext connection kept open across a switch to forced, say).
  if (_session.transactions() >= _d.messages_per_conn ||
      _ag.shard().now_ms() == 0 || policy_changed()) {
    _session.quit();
    return;
  }
  queue::job* j = _ag.sched().take(_d);
  if (!j) {
    _parked = true;
    _park_since = _ag.shard().now_ms();
    _ag.sched().park(_d, this);
    return;
  }
  _job = j;
  if (!j->body.empty() || j->length == 0 || j->length > stream_min) {
    send_job();  // in memory already, or large: streamed from the spool after the 354
    return;
  }
  _loading = true;
  hold();
  _ag.load(j, [this](bool ok) {
    _loading = false;
    if (!ok) {
      std::vector<queue::rcpt_result> res(_job->rcpts.size());
      for (auto& r : res) {
        r.outcome = queue::rcpt_outcome::deferred;
        r.reason = report::reason::spool_read_failed;
        r.reply = "local error: cannot read the message from the spool";
      }
      queue::job* j2 = _job;
      _job = nullptr;
      link_info li = _info;
      li.reason = report::reason::spool_read_failed;
      _ag.complete(j2, res, li);
      if (!closing()) _session.quit();
    } else if (closing() || policy_changed()) {
      // A SIGHUP during the load may have changed the domain's policy: this session was
      // set up under the old one, so the job goes back for a link under the new one.
      queue::job* j2 = _job;
      _job = nullptr;
      _ag.sched().give_back(j2);
      if (!closing()) _session.quit();
    } else {
      send_job();
    }
    flush();
    unhold();
  });
}

bool link::policy_changed() const { return _at.policy_changed(); }

void link::send_job() {
  queue::job* j = _job;
  if (j->msg_id.empty()) {
    // Message-ID for the audit, from the header section only.
    std::string_view m = j->body;
    size_t hend = m.find("\r\n\r\n");
    std::string_view h = m.substr(0, hend == std::string_view::npos ? m.size() : hend);
    for (size_t pos = 0; pos < h.size();) {
      size_t eol = h.find("\r\n", pos);
      std::string_view line = h.substr(pos, eol == std::string_view::npos ? h.size() - pos : eol - pos);
      if (line.size() > 11 && strncasecmp(line.data(), "Message-ID:", 11) == 0) {
        std::string_view v = line.substr(11);
        while (!v.empty() && (v.front() == ' ' || v.front() == '<')) v.remove_prefix(1);
        while (!v.empty() && (v.back() == ' ' || v.back() == '>')) v.remove_suffix(1);
        j->msg_id = std::string(v);
        break;
      }
      if (eol == std::string_view::npos) break;
      pos = eol + 2;
    }
  }
  _rcpts.clear();
  for (const auto& r : j->rcpts) _rcpts.push_back(r.address);
  _body = iovec{j->body.data(), j->body.size()};
  outbound::message msg;
  msg.mail_from = j->mail_from;
  msg.rcpts = _rcpts;
  if (j->body.empty() && j->length > 0)
    msg.stream_size = j->length;
  else
    msg.body = std::span<const iovec>(&_body, 1);
  msg.eight_bit = j->body_8bitmime;
  msg.requiretls = j->requiretls;  // only in a REQUIRETLS queue, whose links checked the MX
  if (!_session.send_message(msg)) {
    _job = nullptr;
    _ag.sched().give_back(j);
    _session.quit();
  }
}

void link::wake() {
  _parked = false;
  next_job();
  flush();
}

void link::retire() {
  _parked = false;
  _session.quit();
  flush();
}

void link::closed(const outbound::close_info& info) {
  close_kind = info.kind;
  close_reason = info.reason;
  close_reply = info.code ? reply_line(info.code, info.text) : std::string();
  if (_parked) {
    _ag.sched().unpark(_d, this);
    _parked = false;
  }
  if (_job && !_loading) {
    // Not attempted (the session never took it): back to the queue untouched.
    queue::job* j = _job;
    _job = nullptr;
    _ag.sched().give_back(j);
  }
  stream::close();
}

// The decisions are the policy's (policy::decider); the link only records why mail went
// in the clear, and counts TLS failures by reason for /metrics.
outbound::decision<outbound::ehlo_action> link::on_ehlo(bool offered) {
  if (!_try_tls) {
    // The opportunistic plaintext retry after a failed handshake (never under forced or
    // exclusive: those never get here, see attempt::on_link_closed).
    return {outbound::ehlo_action::proceed_plain};
  }
  auto d = _pd.on_ehlo(offered && _ag.tls_client());
  if (d.action == outbound::ehlo_action::proceed_plain && !offered && _info.reason == report::reason::none)
    _info.reason = report::reason::starttls_not_offered;
  if (d.action == outbound::ehlo_action::abort) ++_ag.counters().tls_failures_by_reason[size_t(_pd.abort_reason())];
  return d;
}

outbound::decision<outbound::refused_action> link::on_starttls_refused(const smtp::reply& reply) {
  auto d = _pd.on_starttls_refused(reply);
  if (d.action == outbound::refused_action::proceed_plain) _info.reason = report::reason::starttls_refused;
  else ++_ag.counters().tls_failures_by_reason[size_t(_pd.abort_reason())];
  return d;
}

outbound::decision<outbound::tls_action> link::on_tls(const outbound::tls_outcome& o) {
  auto d = _pd.on_tls(o);
  // Record the strength the policy rated (by suite name: wolfSSL calls 3DES 192 bits).
  if (_pd.effective_bits()) _info.cipher_bits = _pd.effective_bits();
  if (d.action == outbound::tls_action::abort) ++_ag.counters().tls_failures_by_reason[size_t(_pd.abort_reason())];
  return d;
}

outbound::decision<outbound::tls_action> link::on_secure_ehlo(bool requiretls_offered) {
  auto d = _pd.on_secure_ehlo(requiretls_offered);
  if (d.action == outbound::tls_action::abort) ++_ag.counters().tls_failures_by_reason[size_t(_pd.abort_reason())];
  return d;
}

void link::on_closed() {
  // A link that streamed a large message leaves megabytes of freed TLS and send buffers.
  if (_streamed) _ag.shard().release_memory_soon();
  _ag.remove(this);
  attempt& at = _at;
  at.on_link_closed(*this);
  delete this;
}

// ------------------------------------------------------------------------- attempt

attempt::attempt(agent& ag, queue::domain_state& d) : _ag(ag), _d(d) { _connect.self = this; }

attempt::~attempt() = default;

void attempt::start() {
  // The policy first (MTA-STS may need a TXT lookup and an HTTPS fetch), then the walk.
  policy::effective_policy fallback;
  fallback.tls = _ag.cfg().outbound.default_policy;
  policy::table_resolver table(_ag.policies(), fallback);
  // What the config table says now: a SIGHUP that changes it restarts the attempt
  // (policy_changed); the resolution may have raised it (MTA-STS), which is no change.
  _configured = _ag.policies() ? _ag.policies()->lookup(_d.name).policy : fallback;
  if (_d.tls_required_no) {
    // "TLS-Required: No" (RFC 8689 §4.2.2): the configured [[policy]] only; no MTA-STS
    // lookup, no DANE (policy_resolved).
    policy_resolved(policy::resolution{_configured, nullptr});
    return;
  }
  if (_d.opportunistic_only) {
    // Reports and notices (RFC 8460 §5.3, DESIGN.md §7): plain opportunistic, whatever
    // the domain's configured or published policy; no MTA-STS lookup.
    policy::effective_policy plain;
    plain.tls = config::tls_policy::opportunistic;
    plain.min_version = config::tls_version::v1_0;
    plain.min_cipher_bits = 0;
    _configured = plain;
    policy_resolved(policy::resolution{plain, nullptr});
    return;
  }
  policy::resolver& r = _ag.policy_resolver() ? *_ag.policy_resolver() : table;
  r.resolve(_d.name, *this);
}

void attempt::policy_resolved(const policy::resolution& r) {
  // A copy: a SIGHUP swap cannot change it under this attempt.
  walk_options opt;
  opt.dane = _ag.cfg().dane.enabled && !_d.opportunistic_only && !_d.tls_required_no;
  opt.sts = r.sts;
  _sts = r.sts;
  policy::effective_policy p = r.policy;
  if (_d.requiretls) {
    // RFC 8689 §4.2.1: verified TLS (MTA-STS or DANE, the walk checks which vouches for
    // the MX) and an MX that offers REQUIRETLS, whatever the configured policy says.
    p.requiretls = true;
    p.raised = true;
    if (p.verify == config::verify_mode::none) p.verify = config::verify_mode::ca;
    p.source = report::policy_source::requiretls;
  } else if (_d.tls_required_no && p.source != report::policy_source::config) {
    // The sender waived the recipient's policies; a [[policy]] entry still rules (and
    // is audited as "config"), else the audit says why MTA-STS and DANE were ignored.
    p.source = report::policy_source::requiretls;
  }
  _walk.emplace(_d.name, p, uint16_t(_ag.cfg().outbound.smtp_port), static_cast<walk_events&>(*this),
                std::move(opt));
  _route = config::find_route(_ag.cfg(), _d.name);
  _walk->start(_route);
}

namespace {
lookup lookup_of(dns::status s) {
  switch (s) {
    case dns::status::ok: return lookup::ok;
    case dns::status::null_mx: return lookup::null_mx;
    case dns::status::nxdomain: return lookup::nxdomain;
    default: return lookup::temp_fail;
  }
}
}  // namespace

void attempt::resolve_mx(const std::string& domain) {
  _ag.resolver().lookup_mx(domain, [this](const dns::mx_result& r) {
    std::vector<std::string> hosts;
    for (const auto& h : r.hosts) hosts.push_back(h.name);
    _walk->on_mx(lookup_of(r.status), hosts, r.ad);
  });
}

void attempt::resolve_host(const std::string& host) {
  _ag.resolver().lookup_addrs(host, [this, host](const dns::addr_result& r) {
    _walk->on_addrs(host, r.status == dns::status::ok ? lookup::ok : lookup::temp_fail, r.addrs,
                    dns::to_string(r.status), r.ad);
  });
}

void attempt::resolve_tlsa(const std::string& host, uint16_t port) {
  std::string name = "_" + std::to_string(port) + "._tcp." + host;
  _ag.resolver().lookup_tlsa(name, [this, host](const dns::tlsa_result& r) {
    std::vector<std::vector<uint8_t>> usable;
    lookup st = lookup::temp_fail;
    switch (r.status) {
      case dns::status::ok:
        // An insecure TLSA answer is no answer at all (RFC 7672 §2.2): read as none.
        if (r.ad)
          for (const auto& rd : r.records) {
            auto rec = tls::tlsa_record::from_rdata(rd);
            if (rec && rec->usable()) usable.push_back(rd);  // RFC 7672 §3.1
          }
        st = lookup::ok;
        break;
      case dns::status::nodata:
      case dns::status::nxdomain: st = lookup::nxdomain; break;
      default: st = lookup::temp_fail; break;
    }
    _walk->on_tlsa(host, st, std::move(usable));
  });
}

void attempt::connect(const target& t, const session_report* plain_retry) {
  _target = t;
  _plain_retry = plain_retry ? std::optional<session_report>(*plain_retry) : std::nullopt;
  int fd = ::socket(t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    _ag.shard().post([this, e = errno] { _walk->on_connect_failed(strerror(e)); });
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // no Nagle stall on small writes
  _source = nullptr;
  if (_d.pool) {
    if (std::string err = bind_source(fd, t); !err.empty()) {
      ::close(fd);
      ++_ag.counters().connect_failures;
      SR_DEBUG("%s: connect to %s[%s]: %s", _d.name.c_str(), t.host.c_str(), t.ip.c_str(), err.c_str());
      _ag.shard().post([this, err] { _walk->on_connect_failed(err); });
      return;
    }
  }
  _connect.fd = fd;
  _connecting = true;
  _connect_since = _ag.shard().now_ms();
  io_uring_prep_connect(_ag.shard().sqe(&_connect), fd, reinterpret_cast<const sockaddr*>(&_target.addr),
                        _target.addr_len);
}

// Bind `fd` to the next source address of the queue's pool for `t`'s address family, with
// IP_BIND_ADDRESS_NO_PORT: the port is chosen at connect time, per destination 4-tuple, so
// many connections share one source address without using up its ephemeral ports at bind.
// Returns "" when bound, else why not (the walk moves on as after a failed connect).
std::string attempt::bind_source(int fd, const target& t) {
  const config::pool_entry& pool = *_d.pool;
  const config::pool_address* a = _ag.next_source(pool, t.addr.ss_family);
  if (!a)
    return "pool " + pool.name + " has no " + (t.addr.ss_family == AF_INET6 ? "IPv6" : "IPv4") +
           " source address for " + t.ip;
  int one = 1;
  // Without it (kernels before 4.2) bind() reserves a port per connection: still correct.
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&a->addr), a->addr_len) != 0)
    return "bind to source " + a->address + " (pool " + pool.name + "): " + strerror(errno);
  _source = a;
  return {};
}

std::string_view attempt::ehlo_name() const {
  return _source ? std::string_view(config::ehlo_name(_ag.cfg(), *_d.pool, *_source))
                 : std::string_view(_ag.cfg().server.hostname);
}

void attempt::on_connected(int fd, int res) {
  _connecting = false;
  if (res < 0) {
    ::close(fd);
    ++_ag.counters().connect_failures;
    SR_DEBUG("%s: connect to %s[%s]: %s", _d.name.c_str(), _target.host.c_str(), _target.ip.c_str(),
             strerror(-res));
    _walk->on_connect_failed(strerror(-res));
    return;
  }
  // Our address on the connection: the audit's source_ip (and TLS-RPT's sending-mta-ip).
  _local_ip.clear();
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0)
    _local_ip = address_to_string(reinterpret_cast<const sockaddr*>(&local));
  auto* l = new link(_ag, *this, _d, fd, _target, _plain_retry ? &*_plain_retry : nullptr);
  l->begin();
}

void attempt::on_link_closed(link& l) {
  link_end e;
  e.reached_idle = l.reached_idle();
  e.kind = l.close_kind;
  e.reason = l.close_reason;
  e.reply = l.close_reply;
  e.report = l.info();
  _ag.report_session(e);
  // A report's own delivery is not counted in the next report (RFC 8460 §5.3).
  if (session_observer* o = observer_for(e.reason))
    o->session_done(_d.name, e.report,
                    session_end{e.reached_idle, l.plain_retry(), e.reason, _local_ip, _sts.get(),
                                _route != nullptr});
  _walk->on_link_closed(e);
}

void attempt::host_ruled_out(const session_report& r) {
  // No link was opened, but the recipient's policy failed there: TLS-RPT counts it.
  if (session_observer* o = observer_for(r.reason))
    o->session_done(_d.name, r,
                    session_end{false, false, r.reason, {}, _sts.get(), _route != nullptr});
}

void attempt::check_deadline(uint64_t now) {
  if (_connecting && now - _connect_since >= uint64_t(_ag.cfg().outbound.connect_timeout.count())) {
    _connecting = false;
    io_uring_sqe* s = _ag.shard().sqe();
    io_uring_prep_cancel(s, &_connect, 0);
    io_uring_sqe_set_data64(s, core::ignore_cqe);
  }
}

session_observer* attempt::observer_for(report::reason why) const {
  // TLS-RPT counts sessions under the recipient's published policy: not reports and
  // notices (RFC 8460 §5.3), not mail that waived that policy (TLS-Required: No), and not
  // a REQUIRETLS refusal (the message's demand failed, not the recipient's policy).
  if (_d.opportunistic_only || _d.tls_required_no) return nullptr;
  if (why == report::reason::requiretls_not_offered || why == report::reason::requiretls_unverified)
    return nullptr;
  // REQUIRETLS reads a testing policy as enforce: what that refuses is no failure of it.
  if (_d.requiretls && why == report::reason::mx_not_in_sts_policy && _sts &&
      _sts->mode != policy::sts_mode::enforce)
    return nullptr;
  return _ag.observer();
}

bool attempt::policy_changed() const {
  if (!_walk || _d.opportunistic_only) return false;
  policy::reader* r = _ag.policies();
  if (r && differs(r->lookup(_d.name).policy, _configured)) return true;
  if (_d.tls_required_no) return false;  // MTA-STS is ignored for this queue
  // The recipient's own policy (MTA-STS) changed since this attempt resolved it: a
  // connection set up under the old one must not carry the next message.
  policy::resolver* res = _ag.policy_resolver();
  return res && !res->still_current(_d.name, policy::resolution{_walk->policy(), _sts});
}

void attempt::give_up(report::reason reason, const std::string& reply, bool permanent,
                      const std::string& status, const session_report& li) {
  if (policy_changed()) {
    restart_under_new_policy();
    return;
  }
  // Every ready job of the domain shares this destination's fate for now.
  std::vector<queue::job*> jobs;
  while (queue::job* j = _ag.sched().take_unmetered(_d)) jobs.push_back(j);
  for (queue::job* j : jobs) {
    std::vector<queue::rcpt_result> res(j->rcpts.size());
    for (auto& r : res) {
      r.outcome = permanent ? queue::rcpt_outcome::bounced : queue::rcpt_outcome::deferred;
      r.reason = reason;
      r.reply = reply;
      r.mx = li.mx;
      r.status = status;
    }
    _ag.complete(j, res, li);
  }
  finish();
}

// Every MX that answered failed for a TLS reason (DESIGN.md §1): forced hands the
// message to its fallback chain, exclusive drops it — at once, or once fallback_after
// has passed since the message arrived; until then it is an ordinary retry.
void attempt::fall_back(const session_report& li) {
  if (policy_changed()) {
    restart_under_new_policy();
    return;
  }
  const policy::effective_policy& pol = _walk->policy();
  std::vector<queue::job*> jobs;
  while (queue::job* j = _ag.sched().take_unmetered(_d)) jobs.push_back(j);
  if (pol.requiretls) {
    // RFC 8689 §4.2.1: no MX qualified (none vouched for by MTA-STS or DANE, a certificate
    // that did not verify, no REQUIRETLS offered): the message bounces (5.7.30) with a
    // redacted DSN, and is never handed to the fallback, whatever the [[policy]] says.
    std::string why = "REQUIRETLS support required: no MX of " + _d.name +
                       " offers REQUIRETLS over TLS verified by MTA-STS or DANE (last: " +
                       std::string(report::to_string(li.reason)) +
                       (li.mx.empty() ? std::string() : " at " + li.mx) + ")";
    for (queue::job* j : jobs) {
      std::vector<queue::rcpt_result> res(j->rcpts.size());
      for (auto& r : res) {
        r.outcome = queue::rcpt_outcome::bounced;
        r.reason = li.reason;
        r.mx = li.ip.empty() ? std::string() : li.mx;  // the DSN's Remote-MTA: only a host we spoke to
        r.status = "5.7.30";
        r.reply = why;
      }
      _ag.complete(j, res, li);
    }
    finish();
    return;
  }
  uint64_t now_ms = uint64_t(audit::now_unix_ms());
  for (queue::job* j : jobs) {
    duration since(int64_t(now_ms > j->received_ms ? now_ms - j->received_ms : 0));
    auto o = policy::outcome_on_tls_failure(pol, true, since);
    std::vector<queue::rcpt_result> res(j->rcpts.size());
    for (auto& r : res) {
      r.reason = li.reason;
      r.mx = li.mx;
      r.status = "4.7.10";
      if (o == policy::tls_failure_outcome::drop) {
        r.outcome = queue::rcpt_outcome::dropped;
        r.notify_sender = pol.notify_sender;
        r.status = "5.7.10";
      } else {
        // retry: fallback_after not reached (or a chain of only "defer"); fallback: this
        // attempt is audited as deferred, the hand-off's answer decides what follows.
        r.outcome = queue::rcpt_outcome::deferred;
      }
    }
    if (o == policy::tls_failure_outcome::fallback && policy::needs_handoff(pol)) {
      _ag.audit_job(*j, res, li);
      _ag.hand_off(j, pol, li);
    } else {
      _ag.complete(j, res, li);
    }
  }
  finish();
}

void attempt::done() { finish(); }

// A SIGHUP changed the domain's policy while this walk ran under the old one: what the
// hosts did says nothing about the new policy (a TLS failure under exclusive must not drop
// a message the new table sends opportunistically), so the ready jobs, including those
// queued after the reload, are left untouched and a new walk under the current policy
// takes them (connection_closed() kicks the domain).
void attempt::restart_under_new_policy() {
  SR_INFO("%s: policy changed (SIGHUP, or a new MTA-STS policy) during a delivery attempt; trying again "
          "under the new one",
          _d.name.c_str());
  finish();
}

void attempt::finish() {
  if (_done) return;
  _done = true;
  _ag.remove(this);
  queue::domain_state& d = _d;
  agent& ag = _ag;
  // The walk may be on the stack below us (it called done/give_up/fall_back): delete
  // after it returned.
  ag.shard().post([this] { delete this; });
  ag.sched().connection_closed(d);
}

}  // namespace sr::delivery
