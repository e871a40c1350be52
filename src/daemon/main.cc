// sealrelay: the relay daemon. Loads and validates the config (exit 2 with
// file:line: key on error), recovers each shard's spool, serves SMTP on every
// [[listen]] until SIGTERM, then drains. --check-config and --list-queue do their
// job and exit without binding a port; --version prints the build and its wolfSSL.
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "sealrelay/admin/metrics.hh"
#include "sealrelay/admin/server.hh"
#include "sealrelay/audit/writer.hh"
#include "sealrelay/auth/hasher.hh"
#include "sealrelay/auth/users.hh"
#include "sealrelay/config/config.hh"
#include "sealrelay/control/server.hh"
#include "sealrelay/dkim/pool.hh"
#include "sealrelay/handoff/client.hh"
#include "sealrelay/handoff/supervisor.hh"
#include "sealrelay/inject/server.hh"
#include "sealrelay/policy/fallback.hh"
#include "sealrelay/policy/registry.hh"
#include "sealrelay/policy/table.hh"
#include "sealrelay/relay/control.hh"
#include "sealrelay/relay/shard.hh"
#include "sealrelay/suppress/list.hh"
#include "sealrelay/server/auth.hh"
#include "sealrelay/server/runtime.hh"
#include "sealrelay/spool/keyring.hh"
#include "sealrelay/spool/partition.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/library.hh"
#include "sealrelay/util/json.hh"
#include "sealrelay/util/log.hh"

#include "systemd.hh"

namespace {

void usage(FILE* out) {
  std::fputs(
      "usage: sealrelay -c FILE [--check-config] [--list-queue] [-v] | --version\n"
      "  -c FILE          configuration (TOML)\n"
      "  --check-config   validate the config and the files it names, then exit\n"
      "  --list-queue     print the spooled messages (like mailq), then exit\n"
      "  -v               debug logging; with --check-config, print the effective config\n"
      "  --version        print the version and the wolfSSL in use (AES-NI, asm), then exit\n",
      out);
}

int mkdir_p(const std::string& path) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty() && ::mkdir(cur.c_str(), 0750) < 0 && errno != EEXIST) return -errno;
    }
    if (i < path.size()) cur += path[i];
  }
  return 0;
}

void raise_fd_limit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// The spool's keyring from [spool] (files read and checked); error "LINE: KEY: ...".
sr::result<std::shared_ptr<const sr::spool::keyring>> spool_keyring(const sr::config::config& cfg) {
  auto keys = sr::config::read_spool_keys(cfg);
  if (!keys) return sr::error{keys.err()};
  auto ring = std::make_shared<const sr::spool::keyring>(keys->current ? &*keys->current : nullptr,
                                                         keys->encrypt, keys->previous);
  return std::shared_ptr<const sr::spool::keyring>(std::move(ring));
}

int list_queue(const sr::config::config& cfg, const std::string& config_file) {
  auto keys = spool_keyring(cfg);
  if (!keys) {
    std::fprintf(stderr, "sealrelay: %s:%s\n", config_file.c_str(), keys.err().c_str());
    return 2;
  }
  auto set = sr::spool::partition::list(cfg.server.state_dir, keys.value());
  if (!set) {
    std::fprintf(stderr, "sealrelay: %s\n", set.err().c_str());
    return 1;
  }
  for (const auto& m : set->messages) {
    std::string rcpts;
    for (size_t i = 0; i < m.meta.rcpts.size(); ++i) {
      if (i) rcpts += ',';
      rcpts += m.meta.rcpts[i];
    }
    std::printf("%s %llu %s %s\n", m.meta.queue_id.c_str(), (unsigned long long)m.length,
                m.meta.mail_from.empty() ? "<>" : m.meta.mail_from.c_str(), rcpts.c_str());
  }
  return 0;
}

}  // namespace

// The HTTP API listener's options from [http], [tls], [server] and [limits]: the same
// message size, recipient cap, connection caps and deadlines as SMTP.
sr::inject::options http_options(const sr::config::config& cfg) {
  sr::inject::options o;
  o.listen = cfg.http.listen;
  o.tls = cfg.http.tls;
  o.cert_file = cfg.tls.cert_file;
  o.key_file = cfg.tls.key_file;
  o.min_tls_version = sr::tls::tls_version(int(cfg.tls.min_version));
  o.tokens_file = cfg.http.tokens_file;
  o.hostname = cfg.server.hostname;
  o.limits.max_message_size = cfg.limits.max_message_size;
  o.limits.max_recipients = cfg.limits.max_recipients;
  o.max_connections = cfg.limits.max_connections;
  o.max_conns_per_ip = cfg.limits.max_conns_per_ip;
  o.idle_timeout_ms = uint64_t(cfg.limits.idle_timeout.count());
  o.read_timeout_ms = uint64_t(cfg.limits.data_timeout.count());
  o.handshake_timeout_ms = uint64_t(cfg.limits.command_timeout.count());
  return o;
}

int main(int argc, char** argv) {
  std::string config_file;
  bool check = false, list = false, verbose = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-c" && i + 1 < argc) config_file = argv[++i];
    else if (a == "--check-config") check = true;
    else if (a == "--list-queue") list = true;
    else if (a == "-v") {
      verbose = true;
      sr::set_log_level(sr::log_level::debug);
    }
    else if (a == "--version") {
      std::printf("sealrelay %s\n%s\n", SEALRELAY_VERSION, sr::tls::describe_library().c_str());
      return 0;
    }
    else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "sealrelay: unknown argument '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (config_file.empty()) {
    usage(stderr);
    return 2;
  }
  auto loaded = sr::config::load(config_file);
  if (!loaded) {
    std::fprintf(stderr, "sealrelay: %s\n", loaded.err().c_str());
    return 2;
  }
  const sr::config::config& cfg = loaded.value();
  if (list) return list_queue(cfg, config_file);

  if (auto st = sr::config::check_files(cfg); !st) {
    std::fprintf(stderr, "sealrelay: %s: %s\n", config_file.c_str(), st.err().c_str());
    return 2;
  }
  bool need_tls = false;
  for (const auto& l : cfg.listen) need_tls |= l.tls != sr::config::listen_tls::none;
  need_tls |= !cfg.http.listen.empty() && cfg.http.tls;
  if (need_tls) {
    auto ctx = sr::tls::context::server(cfg.tls.cert_file, cfg.tls.key_file,
                                        sr::tls::tls_version(int(cfg.tls.min_version)));
    if (!ctx) {
      std::fprintf(stderr, "sealrelay: %s: tls.cert_file/tls.key_file: %s\n", config_file.c_str(),
                   ctx.err().c_str());
      return 2;
    }
  }
  // Submission: the users file is read now (a bad line or a readable file stops the start,
  // naming the file and line), and re-read on SIGHUP.
  bool submission = false;
  for (const auto& l : cfg.listen) submission |= l.mode == sr::config::listen_mode::submission;
  std::optional<sr::auth::users> users;
  if (submission) {
    auto u = sr::auth::users::load(cfg.auth.users_file);
    if (!u) {
      std::fprintf(stderr, "sealrelay: %s: auth.users_file: %s\n", config_file.c_str(), u.err().c_str());
      return 2;
    }
    users = std::move(u.value());
  }
  // DKIM keys: each loads (PEM, RSA >= 1024 bits or Ed25519) and fits its entry's algorithm.
  if (auto st = sr::relay::check_dkim(cfg); !st) {
    std::fprintf(stderr, "sealrelay: %s:%s\n", config_file.c_str(), st.err().c_str());
    return 2;
  }
  // Spool keys ([spool]): each 32 bytes, owner-only, outside state_dir.
  auto spool_keys = spool_keyring(cfg);
  if (!spool_keys) {
    std::fprintf(stderr, "sealrelay: %s:%s\n", config_file.c_str(), spool_keys.err().c_str());
    return 2;
  }
  // The HTTP injection API: its tokens file must parse now (a refusal is a config error).
  std::unique_ptr<sr::inject::shared_state> http;
  if (!cfg.http.listen.empty()) {
    http = std::make_unique<sr::inject::shared_state>(http_options(cfg));
    if (auto st = http->tokens.reload(); !st) {
      std::fprintf(stderr, "sealrelay: %s: http.tokens_file: %s\n", config_file.c_str(), st.err().c_str());
      return 2;
    }
  }
  if (check) {
    if (verbose) std::fputs(sr::config::dump(cfg).c_str(), stdout);  // the effective config
    std::printf("%s: ok\n", config_file.c_str());
    return 0;
  }

  raise_fd_limit();
  if (int rc = mkdir_p(cfg.server.state_dir); rc < 0) {
    SR_ERROR("cannot create state_dir %s: %s", cfg.server.state_dir.c_str(), strerror(-rc));
    return 1;
  }

  sr::relay::process_state ps(cfg);
  ps.spool_keys = spool_keys.value();
  // The suppression list ([suppression]): loaded before any shard starts, written by its
  // own thread, stopped after the shards (declared before them here, destroyed after).
  std::unique_ptr<sr::suppress::list> suppression;
  if (cfg.suppression.enabled) {
    auto l = sr::suppress::list::open(sr::suppress::db_path(cfg.server.state_dir));
    if (!l) {
      SR_ERROR("suppression: %s", l.err().c_str());
      return 1;
    }
    suppression = std::move(l.value());
    SR_INFO("suppression: %zu addresses listed (action %s)", suppression->current()->size(),
            cfg.suppression.action == sr::config::suppression_action::drop ? "drop" : "refuse");
    ps.suppression = suppression.get();
  }
  // RSA DKIM signatures (~1.5 ms each) run on this pool, off the shards' loops; one
  // worker per two shards, at least two (Ed25519 is signed inline and needs none).
  std::unique_ptr<sr::dkim::sign_pool> dkim_pool;
  if (!ps.dkim_keys.empty()) {
    auto p = sr::dkim::sign_pool::create(ps.dkim_keys, std::max(2u, ps.inbound.shards / 2));
    if (!p) {
      std::fprintf(stderr, "sealrelay: %s: %s\n", config_file.c_str(), p.err().c_str());
      return 2;
    }
    dkim_pool = std::move(p.value());
    ps.dkim_pool = dkim_pool.get();
  }
  if (http) {
    http->messages_accepted = &ps.inbound.stats.messages_accepted;
    ps.http = http.get();
  }
  // The TLS policy table: compiled now, recompiled and swapped on SIGHUP.
  auto table = sr::policy::compile(cfg);
  if (!table) {
    std::fprintf(stderr, "sealrelay: %s: %s\n", config_file.c_str(), table.err().c_str());
    return 2;
  }
  sr::policy::registry policies(std::move(table.value()));
  ps.policies = &policies;
  sr::audit::log_file audit_log;
  if (!cfg.audit.file.empty()) {
    auto slash = cfg.audit.file.rfind('/');
    if (slash != std::string::npos && slash > 0) mkdir_p(cfg.audit.file.substr(0, slash));
    auto f = sr::audit::log_file::open(cfg.audit.file);
    if (!f) {
      SR_ERROR("audit.file: %s", f.err().c_str());
      return 1;
    }
    audit_log = std::move(f.value());
    ps.audit_fd = audit_log.fd();
  }
  // Metrics: every family registered now, published by the shards, served by the
  // admin thread (/metrics, /healthz) when admin.listen is set.
  sr::admin::registry registry(ps.inbound.shards, 1024 + 3 * unsigned(cfg.shaping.size() + 1));
  sr::admin::relay_metrics metrics(registry);
  {
    std::vector<std::string> destinations;
    for (const auto& e : cfg.shaping) destinations.push_back(e.name);
    destinations.push_back("default");
    metrics.add_shaping(registry, destinations);
  }
  ps.metrics = &metrics;
  // The fallback sidecar: linked to when a forced policy needs it; spawned and supervised
  // here unless fallback.spawn = false (the operator runs it).
  std::unique_ptr<sr::auth::hasher> hasher;
  std::unique_ptr<sr::server::user_directory> directory;
  if (users) {
    SR_INFO("auth: %zu submission users from %s", users->size(), cfg.auth.users_file.c_str());
    hasher = std::make_unique<sr::auth::hasher>();
    directory = std::make_unique<sr::server::user_directory>(std::move(*users));
    ps.hasher = hasher.get();
    ps.users = directory.get();
  }
  sr::handoff::shared_status sidecar;
  std::unique_ptr<sr::handoff::supervisor> sidecar_sup;
  if (sr::relay::needs_sidecar(cfg)) {
    ps.sidecar = &sidecar;
    if (cfg.fallback.spawn) {
      sidecar_sup = std::make_unique<sr::handoff::supervisor>(sr::handoff::sidecar_binary_next_to_self(),
                                                             config_file, &sidecar);
      if (auto s = sidecar_sup->start(); !s) {
        SR_ERROR("%s", s.err().c_str());
        return 1;
      }
    } else {
      SR_INFO("fallback: fallback.spawn = false: expecting a sealrelay-fallback on %s",
              cfg.fallback.socket.c_str());
    }
  }
  // sealrelay-queue: <state_dir>/control.sock, bound before the shards start, served until they stopped.
  sr::relay::control_hub control_hub(ps.inbound.shards);
  ps.control = &control_hub;
  std::unique_ptr<sr::control::server> control;
  std::unique_ptr<sr::admin::server> admin;
  std::atomic<bool> running{false};
  sr::server::runtime_hooks hooks;
  hooks.make_shard = [&](sr::core::shard& sh) -> std::unique_ptr<sr::server::shard_unit> {
    return std::make_unique<sr::relay::shard_root>(sh, ps);
  };
  {
    // Bound before the shards start, so it is there once the relay answers SMTP (a request
    // that comes while a shard is still starting waits for it, 5 s at most). A socket
    // another live relay listens on stops this start: two relays on one state_dir would
    // share a spool. Any other failure (a state_dir path too long for a unix socket) costs
    // only sealrelay-queue: logged, and the relay runs without it.
    sr::control::server::options co;
    co.socket_path = cfg.server.state_dir + "/" + std::string(sr::control::socket_name);
    if (sr::control::server::live(co.socket_path)) {
      SR_ERROR("%s: another relay is running on this state_dir (its control socket answers)",
               co.socket_path.c_str());
      return 1;
    }
    co.handler = [&](const sr::control::request& r) {
      return sr::relay::answer_control(control_hub, cfg, ps.spool_keys, r);
    };
    control = std::make_unique<sr::control::server>(std::move(co));
    if (auto s = control->start(); !s) {
      SR_ERROR("control socket: %s; sealrelay-queue cannot reach this relay", s.err().c_str());
      control.reset();
    }
  }
  hooks.on_ready = [&] {
    running = true;
    if (!cfg.admin.listen.empty()) {
      sr::admin::server::options ao;
      ao.listen = cfg.admin.listen;
      ao.metrics = &registry;
      // Unhealthy too while an audit write fails: delivery would go unaudited (HIPAA).
      ao.healthy = [&] {
        return running.load() && !ps.inbound.draining.load() && metrics.audit_failing.value() == 0;
      };
      ao.health_detail = [&]() -> std::string {
        if (!ps.sidecar) return "";
        unsigned up = sidecar.links_up.load(std::memory_order_relaxed);
        if (up == ps.inbound.shards) return "fallback: up\n";
        return up == 0 ? "fallback: down (hand-offs deferred)\n" : "fallback: partly up\n";
      };
      ao.route = [&](std::string_view method, std::string_view path,
                     std::string_view body) -> std::optional<sr::admin::response> {
        if (path != "/escrow/retract") return std::nullopt;
        if (method != "POST") return sr::admin::response{405, "application/json", "{\"error\":\"use POST\"}\n"};
        auto id = sr::handoff::retract_request_msg_id(body);
        std::string out;
        if (!id) {
          out = "{\"error\":";
          sr::append_json_string(out, id.err());
          return sr::admin::response{400, "application/json", out + "}\n"};
        }
        auto n = sr::handoff::retract(cfg.fallback.socket, id.value(), 5000);
        if (!n) {
          out = "{\"error\":";
          sr::append_json_string(out, n.err());
          return sr::admin::response{503, "application/json", out + "}\n"};
        }
        out = "{\"msg_id\":";
        sr::append_json_string(out, id.value());
        return sr::admin::response{200, "application/json",
                                   out + ",\"retracted\":" + std::to_string(n.value()) + "}\n"};
      };
      admin = std::make_unique<sr::admin::server>(ao);
      if (auto s = admin->start(); !s) {
        SR_ERROR("admin.listen %s: %s", cfg.admin.listen.c_str(), s.err().c_str());
        admin.reset();
      }
    }
    std::string where;
    for (const auto& l : cfg.listen) {
      if (!where.empty()) where += ", ";
      where += l.address + " (" + sr::config::to_string(l.mode) + ", " + sr::config::to_string(l.tls) + ")";
    }
    if (http) where += ", " + cfg.http.listen + (cfg.http.tls ? " (HTTPS API)" : " (HTTP API)");
    SR_INFO("sealrelay ready: %u shards, %llu messages recovered from the spool, listening on %s",
            ps.inbound.shards,
            (unsigned long long)ps.recovered.load(), where.c_str());
    sr::daemon::notify_ready("ready: " + std::to_string(ps.inbound.shards) + " shards, listening on " + where);
  };
  hooks.on_stop = [] { sr::daemon::notify_stopping(); };
  hooks.on_reload = [&] {
    sr::daemon::notify_reloading();
    // READY=1 again however the reload ends (a bad file keeps the running settings).
    struct reloaded {
      ~reloaded() { sr::daemon::notify_ready("ready (reloaded)"); }
    } ready_again;
    // The users file first: it does not depend on the config parsing again.
    if (directory) {
      auto u = sr::auth::users::load(cfg.auth.users_file);
      if (!u) {
        SR_ERROR("SIGHUP: keeping the current submission users: auth.users_file: %s", u.err().c_str());
      } else {
        size_t n = u->size();
        directory->publish(std::move(u.value()));
        SR_INFO("SIGHUP: auth.users_file reloaded (%zu users)", n);
      }
    }
    if (http) {
      // Tokens are read again on every SIGHUP (rotation); a bad file keeps the current set.
      if (auto st = http->tokens.reload(); !st) SR_ERROR("SIGHUP: keeping the current API tokens: %s", st.err().c_str());
      else SR_INFO("SIGHUP: API tokens reloaded from %s", cfg.http.tokens_file.c_str());
    }
    // Only the policy table changes at run time; a bad file keeps the old one.
    auto fresh = sr::config::load(config_file);
    if (!fresh) {
      SR_ERROR("SIGHUP: keeping the current policy table: %s", fresh.err().c_str());
      return;
    }
    auto t = sr::policy::compile(fresh.value());
    if (!t) {
      SR_ERROR("SIGHUP: keeping the current policy table: %s", t.err().c_str());
      return;
    }
    size_t n = fresh.value().policies.size();
    policies.publish(std::move(t.value()));
    SR_INFO("SIGHUP: policy table reloaded (%zu [[policy]] entries, default %s); other settings "
            "change only at restart",
            n, sr::config::to_string(fresh.value().outbound.default_policy));
  };
  int rc = sr::server::run(cfg, ps.inbound, hooks);
  if (control) control->stop();
  if (admin) admin->stop();
  if (sidecar_sup) sidecar_sup->stop();
  return rc;
}
