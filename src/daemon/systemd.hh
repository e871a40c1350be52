// The daemon's side of systemd's service protocol (sealrelay.service is Type=notify):
// READY=1 once every shard listens, RELOADING=1 ... READY=1 around a SIGHUP reload,
// STOPPING=1 when the drain starts, each with a STATUS= line `systemctl status` shows.
// Outside systemd (no NOTIFY_SOCKET) every call does nothing.
#pragma once
#include <string>

namespace sr::daemon {

void notify_ready(const std::string& status);
void notify_reloading();
void notify_stopping();

}  // namespace sr::daemon
