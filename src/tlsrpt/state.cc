// The state file: one record a line, tab-separated, \ escapes for \t \n \r and \ itself.
//   tlsrpt-state 1 | window <ms> | C <domain> (current counts) | Q <start> <end> <tries> <domain>
//   (a pending report) | D <uri> (done, of the last Q) | P <type> <ok> <failed> (a policy of
//   the last C/Q) | S <policy-string> | M <mx-host> | F <result-type> <count> <sending-ip>
//   <mx> <ip> <info> (a detail of the last P) | end
#include "sealrelay/tlsrpt/state.hh"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>

namespace sr::tlsrpt {
namespace {

void field(std::string& o, std::string_view s) {
  o += '\t';
  for (char c : s) {
    switch (c) {
      case '\\': o += "\\\\"; break;
      case '\t': o += "\\t"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      default: o += c;
    }
  }
}

void field(std::string& o, uint64_t n) { field(o, std::to_string(n)); }
void field_i(std::string& o, int64_t n) { field(o, std::to_string(n)); }

void write_counts(std::string& o, const domain_counts& d) {
  for (const auto& p : d.policies) {
    o += 'P';
    field(o, to_string(p.type));
    field(o, p.successes);
    field(o, p.failures);
    o += '\n';
    for (const auto& s : p.strings) {
      o += 'S';
      field(o, s);
      o += '\n';
    }
    for (const auto& m : p.mx_host) {
      o += 'M';
      field(o, m);
      o += '\n';
    }
    for (const auto& f : p.details) {
      o += 'F';
      field(o, report::to_string(f.type));
      field(o, f.count);
      field(o, f.sending_ip);
      field(o, f.mx);
      field(o, f.ip);
      field(o, f.info);
      o += '\n';
    }
  }
}

bool unescape(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '\\') {
      out += in[i];
      continue;
    }
    if (++i >= in.size()) return false;
    switch (in[i]) {
      case '\\': out += '\\'; break;
      case 't': out += '\t'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      default: return false;
    }
  }
  return true;
}

bool split(std::string_view line, std::vector<std::string>& f) {
  f.clear();
  size_t pos = 0;
  while (true) {
    size_t tab = line.find('\t', pos);
    std::string s;
    if (!unescape(line.substr(pos, tab == std::string_view::npos ? line.size() - pos : tab - pos), s)) return false;
    f.push_back(std::move(s));
    if (tab == std::string_view::npos) return true;
    pos = tab + 1;
  }
}

template <typename T>
bool number(const std::string& s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool policy_type_of(std::string_view s, policy_type& t) {
  for (policy_type x : {policy_type::no_policy_found, policy_type::sts, policy_type::tlsa})
    if (to_string(x) == s) {
      t = x;
      return true;
    }
  return false;
}

bool result_type_from(std::string_view s, report::result_type& t) {
  for (unsigned i = 1; i <= unsigned(report::result_type::dane_required); ++i)
    if (report::to_string(report::result_type(i)) == s) {
      t = report::result_type(i);
      return true;
    }
  return false;
}

}  // namespace

std::string serialize(const state& s) {
  std::string o = "tlsrpt-state\t1\nwindow";
  field_i(o, s.window_start_ms);
  o += '\n';
  for (const auto& [name, counts] : s.current) {
    o += 'C';
    field(o, name);
    o += '\n';
    write_counts(o, counts);
  }
  for (const auto& q : s.pending) {
    o += 'Q';
    field_i(o, q.start_ms);
    field_i(o, q.end_ms);
    field(o, uint64_t(q.tries));
    field(o, q.domain);
    o += '\n';
    for (const auto& d : q.done) {
      o += 'D';
      field(o, d);
      o += '\n';
    }
    write_counts(o, q.counts);
  }
  o += "end\n";
  return o;
}

result<state> deserialize(std::string_view text) {
  state s;
  domain_counts* counts = nullptr;     // of the last C or Q
  pending_report* pend = nullptr;      // the last Q
  policy_counts* pol = nullptr;        // the last P
  std::vector<std::string> f;
  size_t pos = 0;
  unsigned n = 0;
  bool ended = false;
  auto bad = [&](const char* why) { return error{"tlsrpt state line " + std::to_string(n) + ": " + why}; };
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) return bad("no line end (cut short)");
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++n;
    if (ended) return bad("text after end");
    if (!split(line, f)) return bad("bad escape");
    const std::string& k = f[0];
    if (n == 1) {
      if (k != "tlsrpt-state" || f.size() != 2 || f[1] != "1") return bad("not a tlsrpt state file (version 1)");
    } else if (k == "window" && f.size() == 2) {
      if (!number(f[1], s.window_start_ms)) return bad("bad window");
    } else if (k == "C" && f.size() == 2) {
      counts = &s.current[f[1]];
      pend = nullptr;
      pol = nullptr;
    } else if (k == "Q" && f.size() == 5) {
      pending_report& q = s.pending.emplace_back();
      if (!number(f[1], q.start_ms) || !number(f[2], q.end_ms) || !number(f[3], q.tries)) return bad("bad Q");
      q.domain = f[4];
      pend = &q;
      counts = &q.counts;
      pol = nullptr;
    } else if (k == "D" && f.size() == 2 && pend) {
      pend->done.push_back(f[1]);
    } else if (k == "P" && f.size() == 4 && counts) {
      policy_counts& p = counts->policies.emplace_back();
      if (!policy_type_of(f[1], p.type) || !number(f[2], p.successes) || !number(f[3], p.failures))
        return bad("bad P");
      pol = &p;
    } else if (k == "S" && f.size() == 2 && pol) {
      pol->strings.push_back(f[1]);
    } else if (k == "M" && f.size() == 2 && pol) {
      pol->mx_host.push_back(f[1]);
    } else if (k == "F" && f.size() == 7 && pol) {
      failure_detail& d = pol->details.emplace_back();
      if (!result_type_from(f[1], d.type) || !number(f[2], d.count)) return bad("bad F");
      d.sending_ip = f[3];
      d.mx = f[4];
      d.ip = f[5];
      d.info = f[6];
    } else if (k == "end" && f.size() == 1) {
      ended = true;
    } else {
      return bad("unexpected record");
    }
  }
  if (!ended) return error{"tlsrpt state: no end line (cut short)"};
  return s;
}

status save(const std::string& path, const state& s) {
  std::string text = serialize(s);
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return error{tmp + ": " + std::strerror(errno)};
  size_t off = 0;
  while (off < text.size()) {
    ssize_t w = ::write(fd, text.data() + off, text.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = errno;
      ::close(fd);
      return error{tmp + ": " + std::strerror(e)};
    }
    off += size_t(w);
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    return error{tmp + ": fsync: " + std::strerror(e)};
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return error{path + ": rename: " + std::strerror(errno)};
  std::string dir = std::filesystem::path(path).parent_path().string();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

result<state> load(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return state{};
    return error{path + ": " + std::strerror(errno)};
  }
  std::string text;
  char buf[65536];
  while (true) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      ::close(fd);
      return error{path + ": " + std::strerror(e)};
    }
    if (r == 0) break;
    text.append(buf, size_t(r));
  }
  ::close(fd);
  auto s = deserialize(text);
  if (!s) return error{path + ": " + s.err()};
  return s;
}

}  // namespace sr::tlsrpt
