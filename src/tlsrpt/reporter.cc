// Windows and retries run on wall-clock time (reports name UTC dates), read on the shard
// tick. A report is "one per domain per window" by construction: a window's counts become
// one pending entry per domain when it closes, and the entry leaves once every rua URI
// took it (or it is given up). A crash after a send and before the next save may send it
// again, with the same report-id, so the receiver can tell.
#include "sealrelay/tlsrpt/reporter.hh"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "sealrelay/tlsrpt/report.hh"
#include "sealrelay/util/log.hh"
#include "sealrelay/util/duration.hh"

namespace sr::tlsrpt {
namespace {

int64_t floor_to(int64_t t, int64_t step) { return step > 0 ? t - ((t % step) + step) % step : t; }

policy_type policy_of(delivery::published_policy p) {
  switch (p) {
    case delivery::published_policy::sts: return policy_type::sts;
    case delivery::published_policy::tlsa: return policy_type::tlsa;
    case delivery::published_policy::none: break;
  }
  return policy_type::no_policy_found;
}

}  // namespace

reporter::reporter(core::shard& sh, dns::resolver& res, spool::intake& intake, reporter_options o, post_fn post)
    : _shard(sh), _res(res), _intake(intake), _o(std::move(o)), _post(std::move(post)) {
  if (_o.interval_ms < 1000) _o.interval_ms = 1000;
  if (!_o.clock) _o.clock = [] { return int64_t(unix_ms()); };
}

reporter::~reporter() { *_alive = false; }

std::string reporter::state_path(unsigned shard) const {
  return _o.state_dir + "/shard-" + std::to_string(shard) + ".state";
}

status reporter::start() {
  std::error_code ec;
  std::filesystem::create_directories(_o.state_dir, ec);
  if (ec) return error{_o.state_dir + ": " + ec.message()};
  _now = _o.clock();
  _window_start = floor_to(_now, _o.interval_ms);
  _last_save = _now;
  auto own = load(state_path(_o.shard));
  if (!own) return error{own.err()};
  adopt(std::move(own.value()));
  // State files of shards that no longer run (server.shards lowered): shard i takes
  // every file j >= shards with j % shards == i, as the spool does with partitions.
  for (const auto& de : std::filesystem::directory_iterator(_o.state_dir, ec)) {
    std::string name = de.path().filename().string();
    unsigned j = 0;
    if (name.size() < 13 || !name.starts_with("shard-") || !name.ends_with(".state")) continue;
    std::string num = name.substr(6, name.size() - 12);
    if (num.empty() || !std::all_of(num.begin(), num.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    j = unsigned(std::stoul(num));
    if (j < _o.shards || j % _o.shards != _o.shard) continue;
    auto other = load(de.path().string());
    if (!other) {
      SR_WARN("tlsrpt: %s: %s (ignored)", de.path().c_str(), other.err().c_str());
      continue;
    }
    adopt(std::move(other.value()));
    _adopted_files.push_back(de.path().string());
  }
  if (!_pending.empty() || !_counts.empty())
    SR_INFO("tlsrpt: shard %u resumed %zu counted domains and %zu reports to send", _o.shard,
            _counts.counts().size(), _pending.size());
  if (!_adopted_files.empty()) save_now();
  // The shard keeps its tick functions for good: a reporter destroyed before its shard
  // (tests) must not be called.
  _shard.on_tick([this, alive = std::weak_ptr<bool>(_alive)] {
    if (!alive.expired()) tick(_o.clock());
  });
  return {};
}

void reporter::adopt(state&& s) {
  if (s.window_start_ms && s.window_start_ms < _window_start) {
    // The window of these counts ended while we were down: it is due now.
    for (auto& [domain, counts] : s.current) {
      entry e;
      e.r.start_ms = s.window_start_ms;
      e.r.end_ms = s.window_start_ms + _o.interval_ms;
      e.r.domain = domain;
      e.r.counts = std::move(counts);
      _pending.emplace(_next_id++, std::move(e));
    }
  } else {
    _counts.merge(s.current);
  }
  for (auto& p : s.pending) {
    entry e;
    e.r = std::move(p);
    _pending.emplace(_next_id++, std::move(e));
  }
  _dirty = true;
}

void reporter::session_done(std::string_view domain, const delivery::session_report& r,
                            const delivery::session_end& e) {
  // A smarthost's TLS says nothing about the recipient domain's MX hosts: not reported.
  if (e.routed) return;
  policy_type type = policy_of(r.published);
  // Until the attempt fills `published`, the MTA-STS rules it ran under say as much.
  if (type == policy_type::no_policy_found && e.sts && e.sts->mode != policy::sts_mode::none)
    type = policy_type::sts;
  verdict v = classify(r, e.reached_idle, e.plain_retry, e.close_reason, type != policy_type::no_policy_found);
  if (!v.counted) return;
  _counts.add(domain, type, e.sts, v, e.sending_ip, r.mx, r.ip, r.tlsa_policy);
  _dirty = true;
}

void reporter::policy_failure(std::string_view domain, report::result_type type, std::string_view info) {
  _counts.add_policy_failure(domain, type, info);
  _dirty = true;
}

void reporter::finish() {
  if (_dirty || !_adopted_files.empty()) save_now();
}

state reporter::snapshot() const {
  state s;
  s.window_start_ms = _window_start;
  s.current = _counts.counts();
  for (const auto& [id, e] : _pending) s.pending.push_back(e.r);
  return s;
}

void reporter::save_now() {
  status st = save(state_path(_o.shard), snapshot());
  _last_save = _now;
  if (!st) {
    SR_WARN("tlsrpt: saving the counters: %s", st.err().c_str());
    return;
  }
  _dirty = false;
  for (const auto& f : _adopted_files) ::unlink(f.c_str());
  _adopted_files.clear();
}

void reporter::tick(int64_t now_ms) {
  _now = now_ms;
  if (now_ms >= _window_start + _o.interval_ms) close_window(now_ms);
  for (auto& [id, e] : _pending) {
    if (_sending >= _o.max_sending) break;
    if (!e.busy && e.next_try_ms <= now_ms) begin_round(id);
  }
  if (_dirty && now_ms - _last_save >= _o.save_every_ms) save_now();
}

void reporter::close_window(int64_t now_ms) {
  counts_map done = _counts.take();
  for (auto& [domain, counts] : done) {
    entry e;
    e.r.start_ms = _window_start;
    e.r.end_ms = _window_start + _o.interval_ms;
    e.r.domain = domain;
    e.r.counts = std::move(counts);
    _pending.emplace(_next_id++, std::move(e));
  }
  _window_start = floor_to(now_ms, _o.interval_ms);
  if (!done.empty()) {
    SR_DEBUG("tlsrpt: window closed: %zu domains to report", done.size());
    _dirty = true;
  }
}

void reporter::begin_round(uint64_t id) {
  entry& e = _pending.at(id);
  e.busy = true;
  e.round_failed = false;
  ++_sending;
  std::weak_ptr<bool> alive = _alive;
  _res.lookup_txt(record_name(e.r.domain), [this, alive, id](const dns::txt_result& r) {
    if (alive.expired() || !*alive.lock()) return;
    on_record(id, r);
  });
}

void reporter::on_record(uint64_t id, const dns::txt_result& txt) {
  auto it = _pending.find(id);
  if (it == _pending.end()) return;
  entry& e = it->second;
  if (txt.status == dns::status::nxdomain || txt.status == dns::status::nodata || txt.status == dns::status::bad_name) {
    drop(id, "no _smtp._tls record", false);
    return;
  }
  if (txt.status != dns::status::ok) {
    SR_DEBUG("tlsrpt: %s: _smtp._tls lookup: %s", e.r.domain.c_str(), dns::to_string(txt.status));
    e.round_failed = true;
    end_round(id);
    return;
  }
  auto rec = pick_record(txt.texts);
  if (!rec) {
    SR_INFO("tlsrpt: %s: no usable TLS-RPT record (%s): report not sent", e.r.domain.c_str(), rec.err().c_str());
    drop(id, "no usable record", false);
    return;
  }
  report_meta m{_o.organization, _o.contact, _o.submitter, e.r.start_ms / 1000, e.r.end_ms / 1000};
  auto gz = gzip(report_json(m, e.r.domain, e.r.counts));
  if (!gz) {
    SR_WARN("tlsrpt: %s: %s", e.r.domain.c_str(), gz.err().c_str());
    e.round_failed = true;
    end_round(id);
    return;
  }
  auto done = [&](const rua_uri& u) { return std::find(e.r.done.begin(), e.r.done.end(), u.text) != e.r.done.end(); };
  std::vector<std::string> mail_to, mail_uris;
  std::vector<const rua_uri*> posts;
  for (const auto& u : rec->rua) {
    if (done(u)) continue;
    if (u.scheme == rua_uri::scheme::mailto) {
      mail_to.push_back(u.address);
      mail_uris.push_back(u.text);
    } else {
      posts.push_back(&u);
    }
  }
  std::weak_ptr<bool> alive = _alive;
  e.outstanding = 1;  // held until every send below is started
  if (!mail_to.empty()) {
    // One message for every mailto: URI; its answer settles each of them.
    e.outstanding += unsigned(mail_uris.size());
    spool::message_meta meta;
    meta.kind = report::message_kind::tlsrpt;
    meta.mail_from = _o.from;
    meta.rcpts = mail_to;
    meta.received_ms = uint64_t(_now);
    meta.msg_id = report_id(m, e.r.domain);
    mail_input in{_o.from, mail_to, e.r.domain, _now / 1000, gz.value()};
    _intake.submit_owned(std::move(meta), report_message(m, in),
                         [this, alive, id, uris = std::move(mail_uris)](bool ok) {
                           if (alive.expired() || !*alive.lock()) return;
                           for (size_t i = 0; i < uris.size(); ++i)
                             send_done(id, uris[i], ok, ok ? "" : "spool refused the report");
                         });
  }
  for (const rua_uri* u : posts) {
    ++e.outstanding;
    if (!_post) {
      _shard.post([this, alive, id, t = u->text] {
        if (alive.expired() || !*alive.lock()) return;
        send_done(id, t, true, "no HTTPS client in this build: skipped");
      });
      continue;
    }
    post_request pr{u->host, u->port, u->path, gz.value()};
    _post(std::move(pr), [this, alive, id, t = u->text](bool ok, const std::string& detail) {
      if (alive.expired() || !*alive.lock()) return;
      send_done(id, t, ok, detail);
    });
  }
  if (--e.outstanding == 0) end_round(id);
}

void reporter::send_done(uint64_t id, const std::string& uri, bool ok, const std::string& detail) {
  auto it = _pending.find(id);
  if (it == _pending.end()) return;
  entry& e = it->second;
  if (ok) {
    if (!detail.empty()) SR_WARN("tlsrpt: %s: %s: %s", e.r.domain.c_str(), uri.c_str(), detail.c_str());
    else SR_INFO("tlsrpt: report for %s %s %s", e.r.domain.c_str(), uri.starts_with("mailto:") ? "spooled for" : "posted to",
                 uri.c_str());
    e.r.done.push_back(uri);
    _dirty = true;
  } else {
    SR_WARN("tlsrpt: report for %s to %s failed: %s", e.r.domain.c_str(), uri.c_str(), detail.c_str());
    e.round_failed = true;
  }
  if (e.outstanding && --e.outstanding == 0) end_round(id);
}

void reporter::end_round(uint64_t id) {
  auto it = _pending.find(id);
  if (it == _pending.end()) return;
  entry& e = it->second;
  if (!e.round_failed) {
    ++_sent;
    drop(id, nullptr, false);
    return;
  }
  if (++e.r.tries >= _o.max_tries) {
    drop(id, "gave up after retries", true);
    return;
  }
  // Backoff from a quarter interval (at least 1 s, at most 5 min), doubling, at most 1 h.
  int64_t step = std::clamp<int64_t>(_o.interval_ms / 4, 1000, 300000);
  for (unsigned i = 1; i < e.r.tries && step < 3600000; ++i) step *= 2;
  e.next_try_ms = _now + std::min<int64_t>(step, 3600000);
  e.busy = false;
  --_sending;
  _dirty = true;
}

void reporter::drop(uint64_t id, const char* why, bool given_up) {
  auto it = _pending.find(id);
  if (it == _pending.end()) return;
  if (why && given_up) SR_WARN("tlsrpt: report for %s: %s", it->second.r.domain.c_str(), why);
  else if (why) SR_DEBUG("tlsrpt: report for %s not sent: %s", it->second.r.domain.c_str(), why);
  if (given_up) ++_given_up;
  if (it->second.busy) --_sending;
  _pending.erase(it);
  _dirty = true;
}

}  // namespace sr::tlsrpt
