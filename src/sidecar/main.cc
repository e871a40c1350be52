// sealrelay-fallback: the fallback sidecar (issue 9, DESIGN.md §2). Loads the relay's
// config (exit 2 with file:line: key on error), empties and creates the outbox
// (<state_dir>/fallback/outbox, 0700), serves the engine link on fallback.socket and the
// escrow portal on fallback.portal_listen (unless "") until SIGTERM/SIGINT, then exits 0.
// Logs go to stderr. Normally spawned by `sealrelay`, which looks it up next to its own
// binary.
#include <dirent.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "sealrelay/config/config.hh"
#include "sealrelay/fallback/audit_event.hh"
#include "sealrelay/fallback/portal_server.hh"
#include "sealrelay/spool/keyring.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/util/log.hh"
#include "server.hh"

namespace {

void usage(FILE* out) {
  std::fputs(
      "usage: sealrelay-fallback -c FILE [-v]\n"
      "  -c FILE   the relay's configuration (TOML)\n"
      "  -v        debug logging\n",
      out);
}

int mkdir_p(const std::string& path, mode_t mode) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty() && ::mkdir(cur.c_str(), mode) < 0 && errno != EEXIST) return -errno;
    }
    if (i < path.size()) cur += path[i];
  }
  return 0;
}

// Remove every file left in the outbox: a previous run's outputs were either spooled and
// unlinked by the engine or belong to a hand-off the engine will make again.
int clear_outbox(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return -errno;
  int removed = 0;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    if (::unlinkat(::dirfd(d), n.c_str(), 0) == 0) ++removed;
    else SR_WARN("fallback: cannot remove %s/%s: %s", dir.c_str(), n.c_str(), std::strerror(errno));
  }
  ::closedir(d);
  return removed;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_file;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-c" && i + 1 < argc) config_file = argv[++i];
    else if (a == "-v") verbose = true;
    else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (config_file.empty()) {
    usage(stderr);
    return 2;
  }
  sr::set_log_thread_name("fallback");
  if (verbose) sr::set_log_level(sr::log_level::debug);
  auto cfg = sr::config::load(config_file);
  if (!cfg) {
    std::fprintf(stderr, "sealrelay-fallback: %s\n", cfg.err().c_str());
    return 2;
  }
  const auto& c = *cfg;

  // SIGTERM/SIGINT arrive through a signalfd in the loop; blocked before any thread starts
  // so that every thread (workers, the portal) inherits the mask.
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);  // the daemon reloads on SIGHUP; the sidecar keeps its config
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  int sig_fd = ::signalfd(-1, &sigs, SFD_CLOEXEC);
  if (sig_fd < 0) {
    std::fprintf(stderr, "sealrelay-fallback: signalfd: %s\n", std::strerror(errno));
    return 1;
  }

  std::string outbox = c.server.state_dir + "/fallback/outbox";
  if (int e = mkdir_p(outbox, 0700); e < 0) {
    std::fprintf(stderr, "sealrelay-fallback: cannot create %s: %s\n", outbox.c_str(), std::strerror(-e));
    return 1;
  }
  ::chmod(outbox.c_str(), 0700);
  int cleared = clear_outbox(outbox);
  if (cleared < 0) {
    std::fprintf(stderr, "sealrelay-fallback: cannot read %s: %s\n", outbox.c_str(), std::strerror(-cleared));
    return 1;
  }
  if (cleared > 0) SR_INFO("fallback: removed %d files left in %s", cleared, outbox.c_str());
  if (auto slash = c.fallback.socket.rfind('/'); slash != std::string::npos && slash > 0)
    mkdir_p(c.fallback.socket.substr(0, slash), 0750);

  auto audit = sr::fallback::audit_log::open(c.audit.file);
  if (!audit) {
    std::fprintf(stderr, "sealrelay-fallback: %s\n", audit.err().c_str());
    return 1;
  }

  // The spool's keys: hand-offs from sealed segments are opened with them.
  auto spool_keys = sr::config::read_spool_keys(c);
  if (!spool_keys) {
    std::fprintf(stderr, "sealrelay-fallback: %s:%s\n", config_file.c_str(), spool_keys.err().c_str());
    return 2;
  }

  sr::sidecar::server_options so;
  so.socket_path = c.fallback.socket;
  so.handler.outbox_dir = outbox;
  so.handler.hostname = c.server.hostname;
  so.handler.portal_url = c.fallback.portal_url;
  so.handler.escrow_expiry = std::chrono::duration_cast<std::chrono::seconds>(c.fallback.escrow_expiry);
  so.handler.pgp_home = c.fallback.pgp_home;
  so.handler.smime_dir = c.fallback.smime_dir;
  so.handler.state_dir = c.server.state_dir;
  so.handler.store_spec = c.fallback.store;
  so.handler.spool_keys = std::make_shared<const sr::spool::keyring>(
      spool_keys->current ? &*spool_keys->current : nullptr, spool_keys->encrypt, spool_keys->previous);

  // The store must open now: a sidecar that cannot reach it would fail every escrow.
  if (auto st = sr::fallback::open_escrow_store(so.handler.store_spec, so.handler.state_dir); !st) {
    std::fprintf(stderr, "sealrelay-fallback: escrow store: %s\n", st.err().c_str());
    return 1;
  }

  sr::sidecar::server srv(so, &audit.value());
  if (auto s = srv.open(); !s) {
    std::fprintf(stderr, "sealrelay-fallback: %s\n", s.err().c_str());
    return 1;
  }
  SR_INFO("fallback: listening on %s (outbox %s)", so.socket_path.c_str(), outbox.c_str());

  // The escrow portal (fallback.portal_listen, "" = off) on its own threads: each worker
  // opens its own store; code mails go through the outbox and srv.submitter(). It is
  // stopped after srv.run() returns and before srv is destroyed (submit_mail must not be
  // called on a destroyed server).
  std::unique_ptr<sr::fallback::portal::server> portal;
  if (!c.fallback.portal_listen.empty()) {
    sr::fallback::portal::server_options po;
    po.listen = c.fallback.portal_listen;
    po.cert_file = c.tls.cert_file;
    po.key_file = c.tls.key_file;
    po.min_version = static_cast<sr::tls::tls_version>(c.tls.min_version);  // same order
    po.state_dir = c.server.state_dir;
    po.hostname = c.server.hostname;
    po.open_store = [spec = so.handler.store_spec, dir = so.handler.state_dir] {
      return sr::fallback::open_escrow_store(spec, dir);
    };
    po.submit_mail = srv.submitter();
    po.audit = &audit.value();
    portal = std::make_unique<sr::fallback::portal::server>(std::move(po));
    if (auto s = portal->start(); !s) {
      std::fprintf(stderr, "sealrelay-fallback: %s\n", s.err().c_str());
      return 1;
    }
  }

  srv.run(sig_fd);

  // Code mails still waiting for the engine fail now (nobody reads its answers any more),
  // so stopping the portal does not wait out their timeouts.
  srv.cancel_submits();
  if (portal) portal->stop();

  ::close(sig_fd);
  SR_INFO("fallback: stopped");
  return 0;
}
