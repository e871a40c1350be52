// sd_notify(3) from Debian's libsystemd: it finds NOTIFY_SOCKET itself (abstract or path
// socket) and returns 0 when the variable is not set, so a run outside systemd pays nothing.
#include "systemd.hh"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <cstdio>
#include <cstring>

#include "sealrelay/util/log.hh"

namespace sr::daemon {
namespace {
void send(const std::string& state) {
  // unset_environment = 0: the sidecar the relay spawns is not notified (NotifyAccess=main
  // would drop its messages anyway), but the relay itself notifies more than once.
  int r = sd_notify(0, state.c_str());
  if (r < 0) SR_WARN("sd_notify: %s", std::strerror(-r));
}
}  // namespace

void notify_ready(const std::string& status) { send("READY=1\nSTATUS=" + status); }

void notify_reloading() {
  // systemd ≥ 253 (Type=notify-reload) wants MONOTONIC_USEC with RELOADING=1; 252 ignores it.
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  char usec[32];
  std::snprintf(usec, sizeof usec, "%llu",
                (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
  send(std::string("RELOADING=1\nSTATUS=reloading (SIGHUP)\nMONOTONIC_USEC=") + usec);
}

void notify_stopping() { send("STOPPING=1\nSTATUS=draining"); }

}  // namespace sr::daemon
