// The per-shard MTA-STS cache and its JSON-lines file (see cache.hh for the contract).
// Writes are rare (one per fetched policy, i.e. per domain per max_age), so they are plain
// write() calls on the shard thread; nothing is fsync'd per line: a policy lost in a crash
// is fetched again, while a half-written line is detected and skipped at load.
#include "sealrelay/sts/cache.hh"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "sealrelay/sts/policy.hh"
#include "sealrelay/util/json.hh"
#include "sealrelay/util/log.hh"

namespace sr::sts {

int64_t refresh_time(int64_t fetched_at, uint32_t max_age) {
  int64_t margin = std::min<int64_t>(max_age / 4, 86400);
  return fetched_at + int64_t(max_age) - margin;
}

// ------------------------------------------------------------------------- JSON lines

namespace {

// A reader for the flat objects to_json_line() writes: string and integer values only.
struct flat_reader {
  std::string_view s;
  size_t i = 0;

  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  }
  bool eat(char c) {
    ws();
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }
  bool string(std::string& out) {
    ws();
    if (i >= s.size() || s[i] != '"') return false;
    ++i;
    while (i < s.size()) {
      char c = s[i++];
      if (c == '"') return true;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i >= s.size()) return false;
      char e = s[i++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          if (i + 4 > s.size()) return false;
          unsigned v = 0;
          for (int k = 0; k < 4; ++k) {
            char h = s[i++];
            v <<= 4;
            if (h >= '0' && h <= '9') v |= unsigned(h - '0');
            else if (h >= 'a' && h <= 'f') v |= unsigned(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') v |= unsigned(h - 'A' + 10);
            else return false;
          }
          // append_json_string writes \u00XX for a control character, DEL or a byte
          // that is not valid UTF-8 (so XX is that byte), and \u2028/\u2029 for the
          // line separators: decode exactly those, back to the bytes written.
          if (v <= 0xff) {
            out += char(v);
          } else if (v == 0x2028 || v == 0x2029) {
            out += "\xe2\x80";
            out += char(v == 0x2028 ? 0xa8 : 0xa9);
          } else {
            return false;
          }
          break;
        }
        default: return false;
      }
    }
    return false;
  }
  bool integer(int64_t& out) {
    ws();
    size_t start = i;
    bool neg = i < s.size() && s[i] == '-';
    if (neg) ++i;
    int64_t v = 0;
    size_t digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && digits < 18) {
      v = v * 10 + (s[i++] - '0');
      ++digits;
    }
    if (!digits || (i < s.size() && s[i] >= '0' && s[i] <= '9')) {
      i = start;
      return false;
    }
    out = neg ? -v : v;
    return true;
  }
};

}  // namespace

std::string to_json_line(std::string_view domain, const cache_entry& e) {
  std::string o;
  o.reserve(96 + domain.size() + e.id.size() + e.text.size());
  o += "{\"domain\":";
  append_json_string(o, domain);
  o += ",\"id\":";
  append_json_string(o, e.id);
  o += ",\"fetched_at\":" + std::to_string(e.fetched_at);
  o += ",\"max_age\":" + std::to_string(e.max_age);
  o += ",\"policy\":";
  append_json_string(o, e.text);
  o += "}\n";
  return o;
}

result<std::pair<std::string, cache_entry>> from_json_line(std::string_view line) {
  flat_reader r{line};
  std::string domain, id, text;
  int64_t fetched_at = -1, max_age = -1;
  bool have_text = false;
  if (!r.eat('{')) return error{"not an object"};
  if (!r.eat('}')) {
    do {
      std::string key;
      if (!r.string(key) || !r.eat(':')) return error{"bad key"};
      bool ok;
      if (key == "domain") ok = r.string(domain);
      else if (key == "id") ok = r.string(id);
      else if (key == "policy") ok = have_text = r.string(text);
      else if (key == "fetched_at") ok = r.integer(fetched_at);
      else if (key == "max_age") ok = r.integer(max_age);
      else {
        std::string skip;
        int64_t n;
        ok = r.string(skip) || r.integer(n);
      }
      if (!ok) return error{"bad value of " + key};
    } while (r.eat(','));
    if (!r.eat('}')) return error{"unterminated object"};
  }
  r.ws();
  if (r.i != line.size()) return error{"text after the object"};
  if (domain.empty() || id.empty() || fetched_at < 0 || max_age < 0 || !have_text) return error{"missing field"};
  auto parsed = parse_policy(text);
  if (!parsed) return error{"policy: " + parsed.err()};
  cache_entry e;
  e.rules = std::make_shared<const policy::mta_sts_rules>(std::move(parsed->rules));
  e.id = std::move(id);
  e.max_age = parsed->max_age;
  e.fetched_at = fetched_at;
  e.expires_at = fetched_at + int64_t(e.max_age);
  e.next_refresh_at = refresh_time(fetched_at, e.max_age);
  e.text = std::move(text);
  return std::pair<std::string, cache_entry>{std::move(domain), std::move(e)};
}

// ------------------------------------------------------------------------- cache

cache::cache(std::string dir, unsigned shard) : _dir(std::move(dir)), _shard(shard) {
  if (!_dir.empty()) _path = _dir + "/shard-" + std::to_string(_shard) + ".jsonl";
}

cache::~cache() {
  if (_fd >= 0) ::close(_fd);
}

namespace {

// Read a whole file; false when it cannot be opened (missing is not an error here).
bool slurp(const std::string& path, std::string& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  ::close(fd);
  return true;
}

bool write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    s.remove_prefix(size_t(n));
  }
  return true;
}

}  // namespace

status cache::load(int64_t now, const std::function<bool(std::string_view)>& mine) {
  if (_dir.empty()) return {};
  if (::mkdir(_dir.c_str(), 0700) != 0 && errno != EEXIST)
    return error{"mta-sts cache: mkdir " + _dir + ": " + strerror(errno)};
  DIR* d = ::opendir(_dir.c_str());
  if (!d) return error{"mta-sts cache: " + _dir + ": " + strerror(errno)};
  std::vector<std::string> files;
  while (dirent* de = ::readdir(d)) {
    std::string_view n = de->d_name;
    if (n.substr(0, 6) == "shard-" && n.size() > 12 && n.substr(n.size() - 6) == ".jsonl")
      files.push_back(_dir + "/" + std::string(n));
  }
  ::closedir(d);
  std::sort(files.begin(), files.end());

  // The newest unexpired policy per domain, from every file; and this shard's own lines.
  std::map<std::string, cache_entry, std::less<>> own;  // this file's latest line per domain
  size_t skipped = 0;
  for (const std::string& f : files) {
    std::string text;
    if (!slurp(f, text)) continue;
    bool is_own = f == _path;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t lf = text.find('\n', pos);
      if (lf == std::string::npos) {  // a torn last line: the crash came mid-write
        ++skipped;
        break;
      }
      auto parsed = from_json_line(std::string_view(text).substr(pos, lf - pos));
      pos = lf + 1;
      if (!parsed) {
        ++skipped;
        continue;
      }
      auto& [domain, e] = parsed.value();
      if (!e.live(now)) continue;
      if (is_own) {
        auto it = own.find(domain);
        if (it == own.end() || it->second.fetched_at <= e.fetched_at) own[domain] = e;
      }
      if (!mine(domain)) continue;
      auto it = _map.find(domain);
      if (it == _map.end() || it->second.fetched_at <= e.fetched_at) _map[domain] = std::move(e);
    }
  }
  if (skipped) SR_WARN("mta-sts cache: %zu unreadable lines skipped under %s", skipped, _dir.c_str());
  for (auto& [domain, e] : own)
    if (!mine(domain)) _foreign.emplace_back(e.expires_at, to_json_line(domain, e));
  return rewrite(now);
}

status cache::rewrite(int64_t now) {
  if (_dir.empty()) return {};
  if (_fd >= 0) {
    ::close(_fd);
    _fd = -1;
  }
  std::string out;
  size_t lines = 0;
  std::erase_if(_foreign, [now](const auto& f) { return f.first <= now; });
  for (const auto& f : _foreign) {
    out += f.second;
    ++lines;
  }
  for (const auto& [domain, e] : _map)
    if (e.live(now)) {
      out += to_json_line(domain, e);
      ++lines;
    }
  std::string tmp = _path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return error{"mta-sts cache: " + tmp + ": " + strerror(errno)};
  bool ok = write_all(fd, out) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), _path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return error{"mta-sts cache: writing " + _path + ": " + strerror(errno)};
  }
  if (int dfd = ::open(_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  _fd = ::open(_path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (_fd < 0) return error{"mta-sts cache: " + _path + ": " + strerror(errno)};
  _lines = lines;
  return {};
}

void cache::append(std::string_view domain, const cache_entry& e) {
  if (_dir.empty()) return;
  // Compact once the file holds mostly superseded lines (it only grows between loads).
  if (_lines > 64 && _lines > 2 * (_map.size() + _foreign.size())) {
    if (status s = rewrite(e.fetched_at); !s) SR_WARN("%s", s.err().c_str());
    return;  // the rewrite wrote `e` too (it is in _map already)
  }
  if (_fd < 0) {
    _fd = ::open(_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (_fd < 0) {
      SR_WARN("mta-sts cache: %s: %s", _path.c_str(), strerror(errno));
      return;
    }
  }
  // One write() per line: O_APPEND keeps lines whole unless the machine crashes mid-write.
  if (!write_all(_fd, to_json_line(domain, e)))
    SR_WARN("mta-sts cache: appending to %s: %s", _path.c_str(), strerror(errno));
  ++_lines;
}

const cache_entry* cache::find(std::string_view domain) const {
  auto it = _map.find(domain);
  return it == _map.end() ? nullptr : &it->second;
}

cache_entry* cache::find(std::string_view domain) {
  auto it = _map.find(domain);
  return it == _map.end() ? nullptr : &it->second;
}

const cache_entry& cache::store(std::string_view domain, std::string_view id, const policy::mta_sts_rules& rules,
                                uint32_t max_age, std::string_view text, int64_t now) {
  auto it = _map.find(domain);
  if (it == _map.end()) it = _map.emplace(std::string(domain), cache_entry{}).first;
  cache_entry& e = it->second;
  e.rules = std::make_shared<const policy::mta_sts_rules>(rules);
  e.id = std::string(id);
  e.max_age = max_age;
  e.fetched_at = now;
  e.expires_at = now + int64_t(max_age);
  e.next_refresh_at = refresh_time(now, max_age);
  e.last_fetch_attempt = 0;
  e.text = std::string(text);
  append(it->first, e);
  return e;
}

void cache::note_failure(std::string_view domain, int64_t now) {
  auto it = _map.find(domain);
  if (it == _map.end()) it = _map.emplace(std::string(domain), cache_entry{}).first;
  it->second.last_fetch_attempt = now;
}

void cache::drop_expired(int64_t now) {
  std::erase_if(_map, [now](const auto& kv) {
    const cache_entry& e = kv.second;
    return !e.live(now) && e.last_fetch_attempt + refetch_interval_s <= now;
  });
}

std::vector<std::string> cache::due_for_refresh(int64_t now, int64_t refetch_s, size_t max) const {
  std::vector<std::string> out;
  for (const auto& [domain, e] : _map) {
    if (out.size() >= max) break;
    if (e.live(now) && now >= e.next_refresh_at && (!e.last_fetch_attempt || now - e.last_fetch_attempt >= refetch_s))
      out.push_back(domain);
  }
  return out;
}

}  // namespace sr::sts
