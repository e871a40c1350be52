// sealrelay-queue: control the running relay's queue over its control socket
// (<server.state_dir>/control.sock): list, show, flush, hold, release, delete, requeue,
// stats. One request per run; the daemon answers with JSON, printed as is with --json or
// rendered as text. Exit 0 ok, 1 failure (unknown id, relay not running), 2 usage.
// `suppress add|remove|list` (issue 14) edits <state_dir>/suppression.db itself, with or
// without the relay running: the relay re-reads the list within a second of a change.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sealrelay/config/config.hh"
#include "sealrelay/control/protocol.hh"
#include "sealrelay/suppress/store.hh"

namespace {

using json = nlohmann::json;
constexpr const char* default_config = "/etc/sealrelay/sealrelay.toml";
constexpr int reply_timeout_ms = 60'000;

void usage(FILE* out) {
  std::fputs(
      "usage: sealrelay-queue [-c FILE] [--socket PATH] COMMAND [ARGS]\n"
      "  -c FILE                 configuration (default /etc/sealrelay/sealrelay.toml): its\n"
      "                          server.state_dir holds the socket control.sock\n"
      "  --socket PATH           the control socket itself (no config read)\n"
      "  -h, --help              print this usage and exit 0\n"
      "commands:\n"
      "  list [--json]           queued messages: id, size, age, sender, recipients with their\n"
      "                          state, attempts, last reason and next retry\n"
      "  show ID [--json]        one message: envelope, headers, audit history\n"
      "  flush [DOMAIN|ID]       retry now (everything without an argument)\n"
      "  hold ID|DOMAIN          hold: no delivery until released (kept across restarts)\n"
      "  release ID|DOMAIN       release held messages: delivered now\n"
      "  delete ID|DOMAIN|--all-deferred [--dsn]\n"
      "                          delete (audited); the sender gets a DSN only with --dsn\n"
      "  requeue ID              forget attempts and next retry, retry now\n"
      "  stats [--json]          counts by state, domain and reason\n"
      "  suppress add ADDRESS    put ADDRESS on the suppression list ([suppression])\n"
      "  suppress remove ADDRESS take ADDRESS off the list\n"
      "  suppress list [--json]  the listed addresses: when, by whom (bounce, operator), why\n"
      "exit status: 0 ok, 1 failure (unknown id, relay not running), 2 usage\n",
      out);
}

int fail(const std::string& why) {
  std::fprintf(stderr, "sealrelay-queue: %s\n", why.c_str());
  return 1;
}

// Send `line` to the socket and return the reply; "" with `err` set on failure.
std::string call(const std::string& path, const std::string& line, std::string& err) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) {
    err = "socket path too long: " + path;
    return {};
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = std::string("socket: ") + std::strerror(errno);
    return {};
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
    int e = errno;
    ::close(fd);
    if (e == ENOENT || e == ECONNREFUSED)
      err = "the relay is not running (nothing listens on " + path + ")";
    else
      err = path + ": " + std::strerror(e);
    return {};
  }
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = path + ": send: " + std::strerror(errno);
      ::close(fd);
      return {};
    }
    off += size_t(n);
  }
  std::string reply;
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, reply_timeout_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) {
      err = "no answer from the relay within " + std::to_string(reply_timeout_ms / 1000) + " s";
      ::close(fd);
      return {};
    }
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = path + ": read: " + std::strerror(errno);
      ::close(fd);
      return {};
    }
    if (n == 0) break;
    reply.append(buf, size_t(n));
    if (reply.size() > sr::control::max_reply_bytes) {
      err = "reply larger than " + std::to_string(sr::control::max_reply_bytes) + " bytes";
      ::close(fd);
      return {};
    }
  }
  ::close(fd);
  if (reply.empty()) err = "the relay closed the connection without an answer";
  return reply;
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

uint64_t num(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

std::string duration(uint64_t s) {
  char b[32];
  if (s < 60) std::snprintf(b, sizeof b, "%llus", (unsigned long long)s);
  else if (s < 3600) std::snprintf(b, sizeof b, "%llum", (unsigned long long)(s / 60));
  else if (s < 86400) std::snprintf(b, sizeof b, "%lluh%02llum", (unsigned long long)(s / 3600), (unsigned long long)(s % 3600 / 60));
  else std::snprintf(b, sizeof b, "%llud%02lluh", (unsigned long long)(s / 86400), (unsigned long long)(s % 86400 / 3600));
  return b;
}

std::string when(uint64_t unix_ms) {
  if (unix_ms == 0) return "now";
  uint64_t now = uint64_t(std::time(nullptr)) * 1000;
  return unix_ms <= now ? "now" : "in " + duration((unix_ms - now + 999) / 1000);
}

std::string utc(uint64_t unix_ms) {
  std::time_t t = std::time_t(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return b;
}

void print_recipients(const json& m) {
  auto it = m.find("recipients");
  if (it == m.end() || !it->is_array()) return;
  for (const auto& r : *it) {
    std::string st = str(r, "state");
    std::printf("    %s  %s, %llu attempt%s", str(r, "address").c_str(), st.c_str(),
                (unsigned long long)num(r, "attempts"), num(r, "attempts") == 1 ? "" : "s");
    if (st == "deferred") std::printf(", next %s", when(num(r, "next_attempt_ms")).c_str());
    std::string why = str(r, "last_reason");
    if (!why.empty()) std::printf("\n      %s", why.c_str());
    std::printf("\n");
  }
}

void print_list(const json& reply) {
  const json& msgs = reply["messages"];
  size_t rcpts = 0;
  if (msgs.empty()) {
    std::printf("Queue is empty\n");
    return;
  }
  std::printf("%-16s %10s %8s  %-8s  %s\n", "QUEUE ID", "SIZE", "AGE", "STATE", "SENDER");
  for (const auto& m : msgs) {
    std::string from = str(m, "from");
    std::printf("%-16s %10llu %8s  %-8s  %s\n", str(m, "queue_id").c_str(), (unsigned long long)num(m, "size"),
                duration(num(m, "age_s")).c_str(), str(m, "state").c_str(), from.empty() ? "<>" : from.c_str());
    print_recipients(m);
    if (m.contains("recipients") && m["recipients"].is_array()) rcpts += m["recipients"].size();
  }
  std::printf("-- %zu message%s, %zu recipient%s\n", msgs.size(), msgs.size() == 1 ? "" : "s", rcpts,
              rcpts == 1 ? "" : "s");
}

void print_show(const json& reply) {
  const json& m = reply["message"];
  std::string from = str(m, "from");
  std::printf("Queue ID:   %s\n", str(m, "queue_id").c_str());
  std::printf("Message-ID: %s\n", str(m, "msg_id").empty() ? "(none)" : str(m, "msg_id").c_str());
  std::printf("Sender:     %s\n", from.empty() ? "<>" : from.c_str());
  std::printf("Received:   %s (%s ago)\n", utc(num(m, "received_ms")).c_str(), duration(num(m, "age_s")).c_str());
  std::printf("Size:       %llu bytes\n", (unsigned long long)num(m, "size"));
  std::printf("State:      %s\n", str(m, "state").c_str());
  std::printf("Recipients:\n");
  print_recipients(m);
  std::printf("Headers:\n");
  std::string h = str(m, "headers");
  if (h.empty()) std::printf("    (could not be read from the spool)\n");
  size_t pos = 0;
  while (pos < h.size()) {
    size_t nl = h.find('\n', pos);
    std::string line = h.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::printf("    %s\n", line.c_str());
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  std::printf("Audit history:\n");
  auto a = m.find("audit");
  if (a == m.end() || !a->is_array() || a->empty()) std::printf("    (no audit records)\n");
  else
    for (const auto& l : *a)
      if (l.is_string()) std::printf("    %s\n", l.get<std::string>().c_str());
}

void print_counts(const json& reply, const char* key, const char* title) {
  std::printf("%s:\n", title);
  auto it = reply.find(key);
  if (it == reply.end() || !it->is_object() || it->empty()) {
    std::printf("    (none)\n");
    return;
  }
  for (const auto& [k, v] : it->items())
    std::printf("    %-40s %llu\n", k.c_str(), v.is_number_unsigned() ? (unsigned long long)v.get<uint64_t>() : 0ull);
}

void print_stats(const json& reply) {
  std::printf("messages: %llu  recipients: %llu  bytes: %llu\n", (unsigned long long)num(reply, "messages"),
              (unsigned long long)num(reply, "recipients"), (unsigned long long)num(reply, "bytes"));
  print_counts(reply, "messages_by_state", "Messages by state");
  print_counts(reply, "recipients_by_state", "Recipients by state");
  print_counts(reply, "recipients_by_domain", "Recipients by domain");
  print_counts(reply, "recipients_by_reason", "Recipients tried, by last reason");
}

void print_action(const json& reply) {
  std::string cmd = str(reply, "command");
  std::printf("%s: %llu job%s matched, %llu changed now", cmd.c_str(), (unsigned long long)num(reply, "matched"),
              num(reply, "matched") == 1 ? "" : "s", (unsigned long long)num(reply, "applied"));
  if (num(reply, "pending"))
    std::printf(", %llu in delivery right now (applied when that attempt ends)",
                (unsigned long long)num(reply, "pending"));
  std::printf("\n");
}

// `suppress add|remove|list` on the database under `state_dir` (the relay creates it).
// Exit 0 ok, 1 failure (list off or missing, an address to remove not listed), 2 usage.
int suppress(const std::vector<std::string>& args, const std::string& state_dir, bool enabled,
             const std::string& config_file) {
  namespace sp = sr::suppress;
  const std::string verb = args.size() > 1 ? args[1] : "";
  bool as_json = verb == "list" && args.size() == 3 && args[2] == "--json";
  bool shape_ok = (verb == "list" && (args.size() == 2 || as_json)) ||
                  ((verb == "add" || verb == "remove") && args.size() == 3);
  if (!shape_ok) {
    std::fprintf(stderr, "sealrelay-queue: suppress add ADDRESS | suppress remove ADDRESS | suppress list [--json]\n");
    usage(stderr);
    return 2;
  }
  std::string address;
  if (verb != "list") {
    address = sp::normalize(args[2]);
    if (address.empty()) {
      std::fprintf(stderr, "sealrelay-queue: not an address: '%s'\n", args[2].c_str());
      return 2;
    }
  }
  if (!enabled) return fail("the suppression list is off in " + config_file + " ([suppression] enabled = false)");
  auto st = sp::store::open(sp::db_path(state_dir), false);
  if (!st) return fail(st.err() + " (the relay creates it when [suppression] is enabled)");
  if (verb == "add") {
    auto n = st.value()->add({{address, int64_t(std::time(nullptr)) * 1000, sp::origin::operator_, "sealrelay-queue"}});
    if (!n) return fail(n.err());
    std::printf(*n ? "%s: added\n" : "%s: already listed\n", address.c_str());
    return 0;
  }
  if (verb == "remove") {
    auto gone = st.value()->remove(address);
    if (!gone) return fail(gone.err());
    if (!*gone) return fail(address + ": not listed");
    std::printf("%s: removed\n", address.c_str());
    return 0;
  }
  auto all = st.value()->list();
  if (!all) return fail(all.err());
  if (as_json) {
    json out = json::array();
    for (const auto& e : *all)
      out.push_back({{"address", e.address}, {"added_ms", e.added_ms}, {"source", sp::to_string(e.source)},
                     {"reason", e.reason}});
    std::printf("%s\n", json{{"suppressed", out}}.dump().c_str());
    return 0;
  }
  for (const auto& e : *all)
    std::printf("%s  %s  %s  %s\n", e.address.c_str(), utc(uint64_t(e.added_ms)).c_str(), sp::to_string(e.source),
                e.reason.c_str());
  std::printf("-- %zu address%s\n", all->size(), all->size() == 1 ? "" : "es");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_file = default_config, socket;
  std::vector<std::string> rest;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (!rest.empty()) rest.push_back(a);
    else if (a == "-c" || a == "--socket") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "sealrelay-queue: %s needs a value\n", a.c_str());
        usage(stderr);
        return 2;
      }
      (a == "-c" ? config_file : socket) = argv[++i];
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "sealrelay-queue: unknown option '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    } else {
      rest.push_back(a);
    }
  }
  if (!rest.empty() && rest[0] == "suppress") {
    // The list is a file under state_dir: the config's, or the socket's directory.
    std::string state_dir;
    bool enabled = true;
    if (socket.empty()) {
      auto cfg = sr::config::load(config_file);
      if (!cfg) {
        std::fprintf(stderr, "sealrelay-queue: %s\n", cfg.err().c_str());
        return 2;
      }
      state_dir = cfg->server.state_dir;
      enabled = cfg->suppression.enabled;
    } else {
      size_t slash = socket.rfind('/');
      state_dir = slash == std::string::npos ? "." : socket.substr(0, slash);
    }
    return suppress(rest, state_dir, enabled, config_file);
  }
  auto req = sr::control::parse_args(rest);
  if (!req) {
    std::fprintf(stderr, "sealrelay-queue: %s\n", req.err().c_str());
    usage(stderr);
    return 2;
  }
  if (socket.empty()) {
    auto cfg = sr::config::load(config_file);
    if (!cfg) {
      std::fprintf(stderr, "sealrelay-queue: %s\n", cfg.err().c_str());
      return 2;
    }
    socket = cfg->server.state_dir + "/" + std::string(sr::control::socket_name);
  }
  std::string err;
  std::string text = call(socket, sr::control::encode(req.value()), err);
  if (!err.empty()) return fail(err);
  json reply = json::parse(text, nullptr, false);
  if (reply.is_discarded() || !reply.is_object()) return fail("the relay's answer is not JSON");
  bool ok = reply.contains("ok") && reply["ok"].is_boolean() && reply["ok"].get<bool>();
  if (!ok) return fail(str(reply, "error").empty() ? "the relay refused the command" : str(reply, "error"));
  if (req->json) {
    std::fputs(text.c_str(), stdout);
    return 0;
  }
  switch (req->cmd) {
    case sr::control::command::list:
      if (reply.contains("messages") && reply["messages"].is_array()) print_list(reply);
      break;
    case sr::control::command::show:
      if (reply.contains("message") && reply["message"].is_object()) print_show(reply);
      break;
    case sr::control::command::stats: print_stats(reply); break;
    default: print_action(reply); break;
  }
  return 0;
}
