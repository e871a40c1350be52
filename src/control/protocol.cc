// Request lines are split on single spaces and every token is checked: a target is a queue
// id or a domain name (letters, digits, '-', '.', '_'), so nothing the tool sends can reach
// a shard unchecked. Domains are lower-cased here, as the queue keys them.
#include "sealrelay/control/protocol.hh"

#include <cctype>
#include <vector>

#include "sealrelay/util/json.hh"

namespace sr::control {

namespace {

struct name_entry {
  command cmd;
  std::string_view name;
};
constexpr name_entry names[] = {
    {command::list, "list"},     {command::show, "show"},       {command::flush, "flush"},
    {command::hold, "hold"},     {command::release, "release"}, {command::remove, "delete"},
    {command::requeue, "requeue"}, {command::stats, "stats"},
};

bool find_command(std::string_view s, command& out) {
  for (const auto& n : names)
    if (n.name == s) {
      out = n.cmd;
      return true;
    }
  return false;
}

bool is_domain(std::string_view s) {
  if (s.empty() || s.size() > 255 || s.front() == '.' || s.front() == '-') return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') return false;
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

// Check the target of `r` against what its command takes; "" when fine.
std::string check_target(request& r) {
  const bool id_only = r.cmd == command::show || r.cmd == command::requeue;
  const bool none = r.cmd == command::list || r.cmd == command::stats;
  const bool optional = r.cmd == command::flush;
  if (none) return r.target.empty() ? "" : std::string(to_string(r.cmd)) + " takes no argument";
  if (r.all_deferred) {
    if (r.cmd != command::remove) return "--all-deferred is for delete only";
    if (!r.target.empty()) return "delete: give an ID, a DOMAIN or --all-deferred, not both";
    return "";
  }
  if (r.dsn && r.cmd != command::remove) return "--dsn is for delete only";
  if (r.target.empty())
    return optional ? "" : std::string(to_string(r.cmd)) + (id_only ? ": a queue ID is required" : ": an ID or a DOMAIN is required");
  if (is_queue_id(r.target)) return "";
  if (id_only) return std::string(to_string(r.cmd)) + ": not a queue ID (16 hex digits): " + r.target;
  if (!is_domain(r.target)) return std::string(to_string(r.cmd)) + ": neither a queue ID nor a domain: " + r.target;
  r.target = lower(r.target);
  return "";
}

}  // namespace

std::string_view to_string(command c) {
  for (const auto& n : names)
    if (n.cmd == c) return n.name;
  return "unknown";
}

bool is_queue_id(std::string_view s) {
  if (s.size() != 16) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c)) && !(c >= 'A' && c <= 'F')) return false;
  return true;
}

std::string encode(const request& r) {
  std::string out(to_string(r.cmd));
  if (r.all_deferred) out += " --all-deferred";
  else if (!r.target.empty()) out += " " + r.target;
  if (r.dsn) out += " --dsn";
  out += '\n';
  return out;
}

sr::result<request> decode(std::string_view line) {
  if (line.size() >= max_request_bytes) return sr::error{"request too long"};
  std::vector<std::string_view> tok;
  size_t pos = 0;
  while (pos <= line.size() && tok.size() < 4) {
    size_t sp = line.find(' ', pos);
    if (sp == std::string_view::npos) sp = line.size();
    tok.push_back(line.substr(pos, sp - pos));
    pos = sp + 1;
  }
  if (pos <= line.size()) return sr::error{"too many words"};
  request r;
  if (tok.empty() || !find_command(tok[0], r.cmd)) return sr::error{"unknown command"};
  for (size_t i = 1; i < tok.size(); ++i) {
    if (tok[i].empty()) return sr::error{"empty word"};
    if (tok[i] == "--dsn") r.dsn = true;
    else if (tok[i] == "--all-deferred") r.all_deferred = true;
    else if (r.target.empty() && tok[i][0] != '-') r.target = std::string(tok[i]);
    else return sr::error{"unexpected word: " + std::string(tok[i].substr(0, 64))};
  }
  if (std::string why = check_target(r); !why.empty()) return sr::error{why};
  return r;
}

sr::result<request> parse_args(std::span<const std::string> args) {
  if (args.empty()) return sr::error{"a COMMAND is required"};
  request r;
  if (!find_command(args[0], r.cmd)) return sr::error{"unknown command: " + args[0]};
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--json" && (r.cmd == command::list || r.cmd == command::show || r.cmd == command::stats))
      r.json = true;
    else if (a == "--dsn" && r.cmd == command::remove)
      r.dsn = true;
    else if (a == "--all-deferred" && r.cmd == command::remove)
      r.all_deferred = true;
    else if (!a.empty() && a[0] != '-' && r.target.empty())
      r.target = a;
    else
      return sr::error{std::string(to_string(r.cmd)) + ": unexpected argument: " + a};
  }
  if (std::string why = check_target(r); !why.empty()) return sr::error{why};
  return r;
}

std::string error_reply(std::string_view why) {
  std::string out = "{\"ok\":false,\"error\":";
  append_json_string(out, why);
  out += "}\n";
  return out;
}

}  // namespace sr::control
