// Spool partition: recovery scan, staging, group-commit batches, failure repair,
// segment roll and reclamation of segments whose messages are all finished.
// Invariant: records only ever follow complete, durable records in a segment; a failed
// batch is cut off (ftruncate) or its segment abandoned before anything is appended.
#include "sealrelay/spool/partition.hh"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "crc32c.hh"
#include "sealrelay/util/log.hh"

namespace sr::spool {
namespace {

constexpr uint64_t max_piece_bytes = 1ull << 30;  // stay far below the kernel's per-call cap

sr::error sys_error(const std::string& what, const std::string& path, int err) {
  return sr::error{what + " " + path + ": " + std::strerror(err)};
}

// Parse "seg-<16 hex>.log"; false for any other name.
bool parse_segment_name(const char* name, uint64_t& seq) {
  if (std::strlen(name) != 24 || std::strncmp(name, "seg-", 4) != 0 ||
      std::strcmp(name + 20, ".log") != 0)
    return false;
  uint64_t v = 0;
  for (int i = 4; i < 20; ++i) {
    char c = name[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return false;
    v = (v << 4) | unsigned(d);
  }
  seq = v;
  return true;
}

bool parse_hex(std::string_view s, uint64_t& v) {
  v = 0;
  for (char c : s) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return false;
    v = (v << 4) | unsigned(d);
  }
  return !s.empty();
}

bool read_full(int fd, void* buf, size_t len, uint64_t off) {
  auto p = static_cast<char*>(buf);
  while (len) {
    ssize_t n = ::pread(fd, p, len, off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= n;
    off += n;
  }
  return true;
}

int fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int r = ::fsync(fd) ? -errno : 0;
  ::close(fd);
  return r;
}

// Everything a scan of one partition learns.
struct scan_state {
  struct msg {
    recovered_message m;
    uint64_t seq;
    std::vector<bool> done;
    bool body_missing = false;  // external body file absent or short: kept, not delivered
  };
  std::vector<msg> msgs;
  std::unordered_map<std::string, size_t> by_id;
  std::map<uint64_t, std::vector<uint64_t>> refs;  // every scanned segment, with its DONE targets
  uint64_t discarded = 0;
  unsigned skipped = 0;  // bad records skipped in the middle of a segment
  std::string max_id;  // largest queue id of this shard seen in any record
};

void add_unique(std::vector<uint64_t>& v, uint64_t x) {
  auto it = std::lower_bound(v.begin(), v.end(), x);
  if (it == v.end() || *it != x) v.insert(it, x);
}

void note_id(scan_state& st, unsigned shard, const std::string& id) {
  uint64_t s;
  if (id.size() == queue_id_len && parse_hex(id.substr(8, 2), s) && s == shard && id > st.max_id)
    st.max_id = id;
}

// A record that passed every check, decoded.
struct parsed_record {
  record_header h;
  message_meta meta;  // type message
  size_t env_len = 0;
  done_record done;   // type done
  attempts_record attempts;  // type attempts
  size_t plain_len = 0;      // payload bytes once opened (sealed: without counter and tag)
};

// How the records of the segment being scanned are stored (keyring.hh).
struct seal_ctx {
  segment_seal seg;             // sealed or not, from the segment's first record
  record_crypt* crypt = nullptr;
  std::vector<std::byte> scratch;  // sealed payloads are opened here, not in the segment
  bool fatal = false;           // a record this scan must not skip or cut (see parse_record)
};

// Check and decode the record at `pos` of `seg`; nullptr when valid, else why not.
// A sealed record opened from a copy: the segment buffer keeps its ciphertext, so a resync
// may parse the same record again. A whole, checksummed record that this segment cannot
// hold (a sealed record where the KEY record is missing or damaged, a second KEY record)
// sets sc.fatal: cutting or skipping it would drop mail that a repair could save.
const char* parse_record(std::span<const std::byte> seg, uint64_t pos, parsed_record& out,
                         seal_ctx& sc) {
  const uint64_t size = seg.size();
  if (size - pos < header_size) return "incomplete header";
  out.h = decode_header(seg.data() + pos);
  if (!header_plausible(out.h)) return "bad header";
  if (out.h.payload_len > size - pos - header_size) return "incomplete record";
  std::span<const std::byte> payload = seg.subspan(pos + header_size, out.h.payload_len);
  if (crc32c(payload.data(), payload.size()) != out.h.crc) return "checksum mismatch";
  const bool sealed = out.h.flags & record_flag_sealed;
  if (out.h.type == record_type::key || sealed != sc.seg.sealed) {
    if (sealed || out.h.type == record_type::key) sc.fatal = true;
    return out.h.type == record_type::key ? "key record inside a segment"
           : sealed ? "sealed record in a segment without a valid key record"
                    : "plaintext record in a sealed segment";
  }
  if (sealed) {
    sc.scratch.assign(payload.begin(), payload.end());
    std::span<std::byte> plain;
    if (!sc.crypt->open(sc.seg, out.h, sc.scratch, plain))
      return "sealed record failed authentication (tampered or damaged)";
    payload = plain;
  }
  out.plain_len = payload.size();
  if (out.h.type == record_type::message) {
    if (!decode_envelope(payload, out.meta, out.env_len, out.h.version)) return "malformed envelope";
    out.meta.external_body = out.h.flags & record_flag_external_body;
    out.meta.body_offset = out.meta.body_length = 0;
    if (out.meta.external_body &&
        !decode_external_ref(payload.subspan(out.env_len), out.meta.body_offset, out.meta.body_length))
      return "malformed external body reference";
  } else if (out.h.type == record_type::attempts || out.h.type == record_type::hold) {
    if (!decode_attempts(payload, out.attempts))
      return out.h.type == record_type::hold ? "malformed hold record" : "malformed attempts record";
  } else if (!decode_done(payload, out.done)) {
    return "malformed done record";
  }
  return nullptr;
}

// Return the offset of the first valid record after `pos`, or seg.size() when none.
// A valid record is found by its magic and must pass every check of parse_record().
uint64_t next_valid_record(std::span<const std::byte> seg, uint64_t pos, parsed_record& tmp,
                           seal_ctx& sc) {
  std::byte magic[4];
  for (int i = 0; i < 4; ++i) magic[i] = std::byte((record_magic >> (8 * i)) & 0xFF);
  const auto* base = seg.data();
  for (uint64_t from = pos + 1; from + header_size <= seg.size();) {
    const void* hit = ::memmem(base + from, seg.size() - from, magic, sizeof magic);
    if (!hit) break;
    uint64_t at = uint64_t(static_cast<const std::byte*>(hit) - base);
    if (!parse_record(seg, at, tmp, sc)) return at;
    from = at + 1;
  }
  return seg.size();
}

// Scan one segment. A bad record costs that record only: the scan resynchronises on the
// next valid record and logs the offset; acknowledged records after a bad one are never
// cut. Only a bad tail (no valid record after it: a torn write) is cut, when `repair`.
sr::status scan_segment(const std::string& path, uint64_t seq, unsigned shard, bool repair,
                        scan_state& st, std::vector<std::byte>& buf, record_crypt& crypt) {
  int fd = ::open(path.c_str(), (repair ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd < 0 && !repair && errno == ENOENT) return {};  // a live daemon just deleted it
  if (fd < 0) return sys_error("cannot open spool segment", path, errno);
  struct stat sb;
  if (::fstat(fd, &sb) != 0) {
    int e = errno;
    ::close(fd);
    return sys_error("cannot stat spool segment", path, e);
  }
  uint64_t size = uint64_t(sb.st_size);
  // Read, not mmap: list() runs beside a live daemon that may cut a failed batch off the
  // end, and a mapping of a shrinking file faults.
  buf.resize(size);
  for (uint64_t got = 0; got < size;) {
    ssize_t n = ::pread(fd, buf.data() + got, size - got, off_t(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return sys_error("cannot read spool segment", path, e);
    }
    if (n == 0) size = got;  // cut meanwhile by a live daemon (list() only)
    got += uint64_t(n);
  }
  std::span<const std::byte> seg(buf.data(), size);
  seal_ctx sc;
  sc.crypt = &crypt;
  sc.seg = classify_segment(seg.first(std::min<uint64_t>(size, key_record_size)), crypt.keys());
  if (sc.seg.sealed && !sc.seg.key) {
    ::close(fd);
    return sr::error{"spool segment " + path + " is sealed with key id " + to_hex(sc.seg.id) +
                     ", which is neither spool.key_file nor one of spool.previous_keys: refusing "
                     "to start (the segment is left as it is; configure its key)"};
  }
  auto refuse = [&](uint64_t at, const char* why) {
    ::close(fd);
    return sr::error{"spool segment " + path + ": " + why + " at offset " + std::to_string(at) +
                     ": refusing to start (the segment is left as it is)"};
  };
  st.refs[seq];
  uint64_t pos = sc.seg.sealed ? key_record_size : 0;
  const char* tail_why = nullptr;
  parsed_record rec;
  while (pos < size) {
    if (const char* why = parse_record(seg, pos, rec, sc)) {
      if (sc.fatal) return refuse(pos, why);
      uint64_t next = next_valid_record(seg, pos, rec, sc);
      if (sc.fatal) return refuse(next, "a sealed or key record where none can be");
      if (next == size) {
        tail_why = why;
        break;
      }
      SR_WARN("spool %s: %s at offset %llu: skipped %llu bytes, resuming at the valid record "
              "at offset %llu",
              path.c_str(), why, (unsigned long long)pos, (unsigned long long)(next - pos),
              (unsigned long long)next);
      st.discarded += next - pos;
      ++st.skipped;
      pos = next;
      continue;  // `rec` holds the record at `next`: parse it again (cheap, rare)
    }
    if (rec.h.type == record_type::message) {
      note_id(st, shard, rec.meta.queue_id);
      if (st.by_id.contains(rec.meta.queue_id)) {
        SR_WARN("spool %s: duplicate queue id %s at offset %llu ignored", path.c_str(),
                rec.meta.queue_id.c_str(), (unsigned long long)pos);
      } else {
        scan_state::msg m;
        m.m.meta = std::move(rec.meta);
        m.m.shard = shard;
        if (m.m.meta.external_body) {
          m.m.segment = partition::body_path(path.substr(0, path.rfind('/')), m.m.meta.queue_id);
          m.m.offset = m.m.meta.body_offset;
          m.m.length = m.m.meta.body_length;
        } else {
          m.m.segment = path;
          // A sealed record is read back whole (the reader opens it): its offset is the record's.
          m.m.offset = sc.seg.sealed ? pos : pos + header_size + rec.env_len;
          m.m.length = rec.plain_len - rec.env_len;
        }
        m.seq = seq;
        m.done.assign(m.m.meta.rcpts.size(), false);
        m.m.meta.attempts.assign(m.m.meta.rcpts.size(), 0);
        st.by_id.emplace(m.m.meta.queue_id, st.msgs.size());
        st.msgs.push_back(std::move(m));
      }
    } else if (rec.h.type == record_type::attempts) {
      const attempts_record& a = rec.attempts;
      note_id(st, shard, a.queue_id);
      auto it = st.by_id.find(a.queue_id);
      if (it != st.by_id.end()) {
        auto& m = st.msgs[it->second];
        for (auto [i, n] : a.counts)
          if (i < m.m.meta.attempts.size()) m.m.meta.attempts[i] = std::max(m.m.meta.attempts[i], n);
        add_unique(st.refs[seq], m.seq);
      }
    } else if (rec.h.type == record_type::hold) {
      // Held by the operator (sealrelay-queue hold/release): the last record wins.
      const attempts_record& a = rec.attempts;
      note_id(st, shard, a.queue_id);
      auto it = st.by_id.find(a.queue_id);
      if (it != st.by_id.end()) {
        auto& m = st.msgs[it->second];
        if (m.m.meta.held.empty()) m.m.meta.held.assign(m.m.meta.rcpts.size(), 0);
        for (auto [i, h] : a.counts)
          if (i < m.m.meta.held.size()) m.m.meta.held[i] = h ? 1 : 0;
        add_unique(st.refs[seq], m.seq);
      }
    } else {
      const done_record& d = rec.done;
      note_id(st, shard, d.queue_id);
      auto it = st.by_id.find(d.queue_id);
      if (it != st.by_id.end()) {  // else its message's segment is already gone
        auto& m = st.msgs[it->second];
        if (d.all) {
          m.done.assign(m.done.size(), true);
        } else {
          for (uint32_t i : d.indices)
            if (i < m.done.size()) m.done[i] = true;
        }
        add_unique(st.refs[seq], m.seq);
      }
    }
    pos += header_size + rec.h.payload_len;
  }
  if (tail_why) {
    st.discarded += size - pos;
    if (repair) {
      SR_WARN("spool %s: %s at offset %llu, discarding the last %llu bytes (no valid record "
              "after it)",
              path.c_str(), tail_why, (unsigned long long)pos, (unsigned long long)(size - pos));
      if (::ftruncate(fd, off_t(pos)) != 0 || ::fdatasync(fd) != 0) {
        int e = errno;
        ::close(fd);
        return sys_error("cannot truncate spool segment", path, e);
      }
    } else {
      // Expected while a live daemon is appending; list() reports the count to its caller.
      SR_INFO("spool %s: %s at offset %llu, ignoring the last %llu bytes", path.c_str(), tail_why,
              (unsigned long long)pos, (unsigned long long)(size - pos));
    }
  }
  ::close(fd);
  return {};
}

// Scan every segment of a partition directory in sequence order.
sr::status scan_partition(const std::string& dir, unsigned shard, bool repair, scan_state& st,
                          record_crypt& crypt) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return sys_error("cannot read spool directory", dir, errno);
  std::vector<uint64_t> seqs;
  while (dirent* e = ::readdir(d)) {
    uint64_t seq;
    if (parse_segment_name(e->d_name, seq)) seqs.push_back(seq);
  }
  ::closedir(d);
  std::sort(seqs.begin(), seqs.end());
  std::vector<std::byte> buf;
  for (uint64_t seq : seqs) {
    char name[32];
    std::snprintf(name, sizeof name, "seg-%016llX.log", (unsigned long long)seq);
    sr::status s = scan_segment(dir + "/" + name, seq, shard, repair, st, buf, crypt);
    if (!s) return s;
  }
  return {};
}

// Body files of large messages (open() only): a pending message whose body file is
// missing or shorter than its record says stays in the spool (its record is kept so the
// file can be put back) but is not delivered, loudly; a body file no pending record
// names is an orphan (a crash before its record was durable, or after its DONE) and goes.
void check_body_files(const std::string& dir, scan_state& st) {
  std::unordered_map<std::string, bool> wanted;  // queue id -> pending
  for (auto& m : st.msgs) {
    if (!m.m.meta.external_body) continue;
    bool pending = std::count(m.done.begin(), m.done.end(), false) > 0;
    wanted[m.m.meta.queue_id] = wanted[m.m.meta.queue_id] || pending;
    if (!pending) continue;
    struct stat sb;
    if (::stat(m.m.segment.c_str(), &sb) != 0 || uint64_t(sb.st_size) < m.m.offset + m.m.length) {
      m.body_missing = true;
      SR_ERROR("spool %s: message %s (from <%s>, %zu recipients): its body file %s is missing or "
               "short: NOT delivered; the record is kept until the file is restored",
               dir.c_str(), m.m.meta.queue_id.c_str(), m.m.meta.mail_from.c_str(),
               m.m.meta.rcpts.size(), m.m.segment.c_str());
    }
  }
  std::string large = dir + "/large";
  DIR* d = ::opendir(large.c_str());
  if (!d) return;
  std::vector<std::string> orphans;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    auto it = wanted.find(name);
    if (it == wanted.end() || !it->second) orphans.push_back(std::move(name));
  }
  ::closedir(d);
  for (const auto& name : orphans) {
    std::string path = large + "/" + name;
    if (::unlink(path.c_str()) == 0)
      SR_INFO("spool %s: removed body file %s: no pending message names it", dir.c_str(), name.c_str());
    else
      SR_WARN("spool: cannot remove orphan body file %s: %s", path.c_str(), std::strerror(errno));
  }
  if (!orphans.empty()) fsync_path(large);
}

// Move the messages with pending recipients out of a scan, in log order.
void collect_pending(scan_state& st, std::vector<recovered_message>& out) {
  for (auto& m : st.msgs) {
    bool pending = false;
    m.m.done_rcpts.clear();
    for (uint32_t i = 0; i < m.done.size(); ++i) {
      if (m.done[i])
        m.m.done_rcpts.push_back(i);
      else
        pending = true;
    }
    if (pending && !m.body_missing) out.push_back(std::move(m.m));
  }
}

}  // namespace

void batch::reset() {
  fd = -1;
  error = 0;
  offset = size = 0;
  pieces.clear();
  _buf.clear();
  _refs.clear();
  _iov.clear();
  _entries.clear();
  _done_targets.clear();
  _unlink.clear();
  _seal.clear();
  _small_plain.clear();
  _seq = 0;
  _bytes = 0;
  _messages = 0;
}

std::string partition::partition_dir(const std::string& state_dir, unsigned shard) {
  return state_dir + "/spool/" + std::to_string(shard);
}

std::string partition::body_path(const std::string& partition_dir, std::string_view queue_id) {
  return partition_dir + "/large/" + std::string(queue_id);
}

std::string partition::body_path(std::string_view queue_id) const { return body_path(_dir, queue_id); }

std::string partition::segment_path(uint64_t seq) const {
  char name[32];
  std::snprintf(name, sizeof name, "/seg-%016llX.log", (unsigned long long)seq);
  return _dir + name;
}

partition::partition(std::string dir, unsigned shard, uint64_t segment_limit,
                     std::shared_ptr<const keyring> keys)
    : _dir(std::move(dir)), _shard(shard), _limit(segment_limit), _crypt(std::move(keys)) {}

partition::~partition() {
  if (_fd >= 0) ::close(_fd);
  if (_dir_fd >= 0) ::close(_dir_fd);  // also releases the flock
}

sr::result<std::unique_ptr<partition>> partition::open(const std::string& state_dir,
                                                       unsigned shard, recovered_set* out,
                                                       uint64_t segment_limit,
                                                       std::shared_ptr<const keyring> keys) {
  if (shard >= max_shards)
    return sr::error{"spool: shard " + std::to_string(shard) + " exceeds " + std::to_string(max_shards - 1)};
  std::string dir = partition_dir(state_dir, shard);
  std::error_code ec;
  if (std::filesystem::create_directories(dir, ec)) {
    // New directories must survive a crash before any segment inside them matters.
    fsync_path(state_dir + "/spool");
    fsync_path(state_dir);
  } else if (ec) {
    return sr::error{"cannot create spool directory " + dir + ": " + ec.message()};
  }
  if (std::filesystem::create_directory(dir + "/large", ec)) {
    fsync_path(dir);
  } else if (ec) {
    return sr::error{"cannot create spool directory " + dir + "/large: " + ec.message()};
  }
  std::unique_ptr<partition> p(new partition(dir, shard, segment_limit, std::move(keys)));
  p->_dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (p->_dir_fd < 0) return sys_error("cannot open spool directory", dir, errno);
  if (::flock(p->_dir_fd, LOCK_EX | LOCK_NB) != 0)
    return sr::error{"spool directory " + dir + " is in use by another process"};

  scan_state st;
  if (sr::status s = scan_partition(dir, shard, true, st, p->_crypt); !s) return sr::error{s.err()};

  check_body_files(dir, st);
  for (auto& [seq, refs] : st.refs) p->_segments[seq].refs = std::move(refs);
  p->_active_seq = st.refs.empty() ? 1 : st.refs.rbegin()->first + 1;
  for (auto& m : st.msgs) {
    if (std::count(m.done.begin(), m.done.end(), false) == 0) continue;
    live_entry le;
    le.seq = m.seq;
    le.n_rcpts = uint32_t(m.done.size());
    le.remaining = le.n_rcpts;
    if (le.n_rcpts > 64) le.big.assign((le.n_rcpts + 63) / 64, 0);
    le.external = m.m.meta.external_body;
    for (uint32_t i = 0; i < m.done.size(); ++i)
      if (m.done[i] && le.test_and_set(i)) --le.remaining;
    qid key;
    std::memcpy(key.data(), m.m.meta.queue_id.data(), queue_id_len);
    p->_live.emplace(key, std::move(le));
    p->_segments[m.seq].live++;
  }
  size_t before = p->_segments.size();
  p->reclaim();
  unsigned removed = unsigned(before - p->_segments.size());
  if (sr::status s = p->roll(); !s) return sr::error{s.err()};

  if (!st.max_id.empty()) {
    uint64_t sec, counter;
    parse_hex(std::string_view(st.max_id).substr(0, 8), sec);
    parse_hex(std::string_view(st.max_id).substr(10, 6), counter);
    p->_id_sec = sec;
    p->_id_counter = uint32_t(counter);
  }
  if (out) {
    out->discarded_bytes += st.discarded;
    out->records_skipped += st.skipped;
    out->segments_removed += removed;
    collect_pending(st, out->messages);
  }
  return p;
}

sr::result<std::vector<unsigned>> partition::shards_on_disk(const std::string& state_dir) {
  std::vector<unsigned> shards;
  std::string root = state_dir + "/spool";
  DIR* d = ::opendir(root.c_str());
  if (!d) {
    if (errno == ENOENT) return shards;  // nothing was ever spooled
    return sys_error("cannot read spool directory", root, errno);
  }
  while (dirent* e = ::readdir(d)) {
    uint64_t v = 0;
    const char* n = e->d_name;
    bool digits = *n != 0;
    for (const char* c = n; *c; ++c) {
      if (*c < '0' || *c > '9' || v > 0xFF) digits = false;
      v = v * 10 + unsigned(*c - '0');
    }
    if (digits && v <= max_shards - 1) shards.push_back(unsigned(v));
  }
  ::closedir(d);
  std::sort(shards.begin(), shards.end());
  return shards;
}

sr::result<recovered_set> partition::list(const std::string& state_dir,
                                          std::shared_ptr<const keyring> keys) {
  recovered_set out;
  record_crypt crypt(std::move(keys));
  auto shards = shards_on_disk(state_dir);
  if (!shards) return sr::error{shards.err()};
  for (unsigned shard : shards.value()) {
    scan_state st;
    if (sr::status s = scan_partition(partition_dir(state_dir, shard), shard, false, st, crypt); !s)
      return sr::error{s.err()};
    out.discarded_bytes += st.discarded;
    out.records_skipped += st.skipped;
    collect_pending(st, out.messages);
  }
  return out;
}

std::string partition::next_queue_id() {
  uint64_t now = uint64_t(::time(nullptr));
  if (now > _id_sec) {
    _id_sec = now;
    _id_counter = 0;
  } else if (++_id_counter > 0xFFFFFF) {
    // 16M ids in one second (or the clock went back): borrow the next second so ids
    // stay strictly increasing and unique.
    ++_id_sec;
    _id_counter = 0;
  }
  char id[queue_id_len + 1];
  std::snprintf(id, sizeof id, "%08llX%02X%06X", (unsigned long long)(_id_sec & 0xFFFFFFFFu),
                _shard, _id_counter);
  return std::string(id, queue_id_len);
}

bool partition::stage(const message_meta& meta, std::span<const iovec> data, void* cookie) {
  if (!envelope_fits(meta)) return false;
  batch& b = *_staging;
  const size_t start = b._buf.size();
  const size_t pre = seal_prefix();  // sealed: room for the record counter
  b._buf.resize(start + header_size + pre);
  append_envelope(b._buf, meta);
  const size_t env_len = b._buf.size() - start - header_size - pre;
  if (meta.external_body) {
    if (!data.empty()) {
      b._buf.resize(start);
      return false;
    }
    append_external_ref(b._buf, meta.body_offset, meta.body_length);
  }
  const size_t rec_len = b._buf.size() - start - header_size;  // (counter +) envelope (+ reference)
  uint64_t body = 0;
  for (const iovec& v : data) body += v.iov_len;
  if (rec_len + body + (pre ? seal_tag_size : 0) > UINT32_MAX) {
    b._buf.resize(start);
    return false;
  }
  if (pre) {
    // Sealed: the bytes are copied into the batch buffer, where take_batch() encrypts the
    // record in place once its segment (salt, counter) is known. The buffer is reused from
    // batch to batch, so a warm shard allocates nothing per message here.
    const size_t body_at = b._buf.size();
    b._buf.resize(body_at + body + seal_tag_size);
    std::byte* out = b._buf.data() + body_at;
    for (const iovec& v : data) {
      if (v.iov_len) std::memcpy(out, v.iov_base, v.iov_len);
      out += v.iov_len;
    }
    record_header h;
    h.type = record_type::message;
    if (meta.external_body) h.flags = record_flag_external_body;
    h.payload_len = uint32_t(rec_len + body + seal_tag_size);
    encode_header(h, b._buf.data() + start);
    const size_t total = header_size + h.payload_len;
    if (!b._refs.empty() && b._refs.back().own && b._refs.back().off + b._refs.back().len == start)
      b._refs.back().len += total;
    else
      b._refs.push_back({true, start, nullptr, total});
    b._seal.push_back(start);
    batch::entry e{batch::kind::message, {}, uint32_t(meta.rcpts.size()), cookie, b._bytes, body};
    if (meta.external_body) {
      e.external = true;
      e.body_off = meta.body_offset;
      e.body_len = meta.body_length;
    }
    b._bytes += total;
    std::memcpy(e.id.data(), meta.queue_id.data(), queue_id_len);
    b._entries.push_back(e);
    ++b._messages;
    return true;
  }
  uint32_t crc = crc32c(b._buf.data() + start + header_size, rec_len);
  for (const iovec& v : data) crc = crc32c_extend(crc, v.iov_base, v.iov_len);
  record_header h;
  h.type = record_type::message;
  if (meta.external_body) h.flags = record_flag_external_body;
  h.payload_len = uint32_t(rec_len + body);
  h.crc = crc;
  encode_header(h, b._buf.data() + start);

  if (!b._refs.empty() && b._refs.back().own && b._refs.back().off + b._refs.back().len == start)
    b._refs.back().len += header_size + rec_len;  // follows a DONE record: one iovec for both
  else
    b._refs.push_back({true, start, nullptr, header_size + rec_len});
  for (const iovec& v : data)
    if (v.iov_len) b._refs.push_back({false, 0, v.iov_base, v.iov_len});
  batch::entry e{batch::kind::message, {}, uint32_t(meta.rcpts.size()), cookie,
                 b._bytes + header_size + env_len, body};
  if (meta.external_body) {
    e.external = true;
    e.body_off = meta.body_offset;
    e.body_len = meta.body_length;
  }
  b._bytes += header_size + rec_len + body;
  std::memcpy(e.id.data(), meta.queue_id.data(), queue_id_len);
  b._entries.push_back(e);
  ++b._messages;
  return true;
}

void partition::add_ref(uint64_t seg, uint64_t target) {
  auto it = _segments.find(seg);
  if (it != _segments.end()) add_unique(it->second.refs, target);
}

void partition::mark_done(std::string_view queue_id, std::span<const uint32_t> rcpt_indices,
                          void* cookie) {
  if (queue_id.size() != queue_id_len) {
    SR_WARN("spool: mark_done with malformed queue id '%.*s' ignored", int(queue_id.size()),
            queue_id.data());
    return;
  }
  batch& b = *_staging;
  const size_t start = b._buf.size();
  b._buf.resize(start + header_size + seal_prefix());
  append_done(b._buf, queue_id, rcpt_indices);
  finish_small_record(record_type::done, start, queue_id, cookie);

  // Update the live index now: a message finished in memory may have its segment deleted
  // even before this record is durable (it is delivered either way).
  qid key;
  std::memcpy(key.data(), queue_id.data(), queue_id_len);
  auto it = _live.find(key);
  if (it == _live.end()) return;
  live_entry& le = it->second;
  b._done_targets.push_back(le.seq);
  if (rcpt_indices.empty()) {
    le.remaining = 0;
  } else {
    for (uint32_t i : rcpt_indices)
      if (i < le.n_rcpts && le.test_and_set(i)) --le.remaining;
  }
  if (le.remaining == 0) {
    if (le.external) b._unlink.push_back(key);
    auto seg = _segments.find(le.seq);
    if (seg != _segments.end() && --seg->second.live == 0) _reclaim = true;
    _live.erase(it);
  }
}

void partition::finish_small_record(record_type type, size_t start, std::string_view queue_id,
                                    void* cookie) {
  batch& b = *_staging;
  if (seal_prefix()) {
    b._buf.resize(b._buf.size() + seal_tag_size);
    b._seal.push_back(start);  // sealed (and checksummed) by take_batch()
  }
  const size_t len = b._buf.size() - start - header_size;
  record_header h;
  h.type = type;
  h.payload_len = uint32_t(len);
  if (!seal_prefix()) h.crc = crc32c(b._buf.data() + start + header_size, len);
  encode_header(h, b._buf.data() + start);
  if (!b._refs.empty() && b._refs.back().own && b._refs.back().off + b._refs.back().len == start)
    b._refs.back().len += header_size + len;
  else
    b._refs.push_back({true, start, nullptr, header_size + len});
  b._bytes += header_size + len;
  batch::entry e{batch::kind::done, {}, 0, cookie};
  std::memcpy(e.id.data(), queue_id.data(), queue_id_len);
  e.body_off = start;  // where the record's bytes are in _buf (carry_records)
  e.body_len = header_size + len;
  b._entries.push_back(e);
}

void partition::carry_records(const batch& failed) {
  // DONE and ATTEMPTS records state what memory already knows (the live index let go of a
  // delivered message, or counted its attempts): a failed batch must not lose them, else the
  // disk never learns it and a restart delivers those messages again (tools/drill-faults:
  // 293 of 405 after a disk-full episode). They go, unchanged, into the next batch; their
  // clients (if any) have had their answer, so none is named again.
  // Sealed spool: take_batch() encrypted them in place for the failed segment position, so
  // they are carried from the plaintext copy it kept, and sealed again for where they land.
  batch& b = *_staging;
  const std::vector<std::byte>& from = failed._small_plain.empty() ? failed._buf : failed._small_plain;
  for (const batch::entry& e : failed._entries) {
    if (e.k != batch::kind::done || e.body_len == 0) continue;
    const size_t start = b._buf.size();
    b._buf.insert(b._buf.end(), from.begin() + ptrdiff_t(e.body_off),
                  from.begin() + ptrdiff_t(e.body_off + e.body_len));
    if (seal_prefix()) b._seal.push_back(start);
    if (!b._refs.empty() && b._refs.back().own && b._refs.back().off + b._refs.back().len == start)
      b._refs.back().len += e.body_len;
    else
      b._refs.push_back({true, start, nullptr, e.body_len});
    b._bytes += e.body_len;
    batch::entry c{batch::kind::done, e.id, 0, nullptr};
    c.body_off = start;
    c.body_len = e.body_len;
    b._entries.push_back(c);
  }
  b._done_targets.insert(b._done_targets.end(), failed._done_targets.begin(), failed._done_targets.end());
  b._unlink.insert(b._unlink.end(), failed._unlink.begin(), failed._unlink.end());
}

void partition::record_attempts(std::string_view queue_id,
                                std::span<const std::pair<uint32_t, uint32_t>> counts) {
  if (queue_id.size() != queue_id_len || counts.empty()) return;
  qid key;
  std::memcpy(key.data(), queue_id.data(), queue_id_len);
  auto it = _live.find(key);
  if (it == _live.end()) return;  // finished (or never stored): nothing left to count
  batch& b = *_staging;
  const size_t start = b._buf.size();
  b._buf.resize(start + header_size + seal_prefix());
  append_attempts(b._buf, queue_id, counts);
  finish_small_record(record_type::attempts, start, queue_id, nullptr);
  // The segment holding this record must outlive the message's (else the counts go back).
  b._done_targets.push_back(it->second.seq);
}

void partition::record_hold(std::string_view queue_id, std::span<const uint32_t> indices, bool held) {
  if (queue_id.size() != queue_id_len || indices.empty()) return;
  qid key;
  std::memcpy(key.data(), queue_id.data(), queue_id_len);
  auto it = _live.find(key);
  if (it == _live.end()) return;  // finished meanwhile: nothing left to hold
  std::vector<std::pair<uint32_t, uint32_t>> marks;
  marks.reserve(indices.size());
  for (uint32_t i : indices) marks.emplace_back(i, held ? 1u : 0u);
  batch& b = *_staging;
  const size_t start = b._buf.size();
  b._buf.resize(start + header_size + seal_prefix());
  append_attempts(b._buf, queue_id, marks);
  finish_small_record(record_type::hold, start, queue_id, nullptr);
  // As ATTEMPTS: the segment holding this record must outlive the message's.
  b._done_targets.push_back(it->second.seq);
}

batch* partition::take_batch() {
  if (_flight || _staging->_entries.empty()) return nullptr;
  if (_broken || _fd < 0 || _end >= _limit || !_crypt.counter_left(_staging->_seal.size())) {
    if (sr::status s = roll(); !s) {
      // A full segment may keep growing; a broken one must not be written again.
      SR_ERROR("spool: %s", s.err().c_str());
      if (_broken || _fd < 0) _staging->error = EIO;
    }
  }
  batch& b = *_staging;
  if (!b.error && !b._seal.empty() && !_crypt.counter_left(b._seal.size())) b.error = EOVERFLOW;
  // Should this batch fail, its DONE/ATTEMPTS records are carried into the next one
  // (carry_records); sealing overwrites them here, so keep their plaintext (a few dozen bytes each).
  if (!b._seal.empty())
    for (batch::entry& e : b._entries)
      if (e.k == batch::kind::done && e.body_len) {
        const size_t at = b._small_plain.size();
        b._small_plain.insert(b._small_plain.end(), b._buf.begin() + ptrdiff_t(e.body_off),
                              b._buf.begin() + ptrdiff_t(e.body_off + e.body_len));
        e.body_off = at;
      }
  // Sealed records are encrypted here, once per record, now that the segment they go to
  // (its salt and counter) is fixed: a roll above may have changed it since stage().
  for (size_t at : b._seal) {
    if (b.error) break;
    record_header h = decode_header(b._buf.data() + at);
    if (!_crypt.seal(b._buf.data() + at, h)) {
      SR_ERROR("spool %s: cannot seal a record (wolfCrypt failed): batch refused", _dir.c_str());
      b.error = EIO;
    }
  }
  b.fd = b.error ? -1 : _fd;
  b.offset = _end;
  b._seq = _active_seq;
  b._iov.reserve(b._refs.size());
  for (const batch::ref& r : b._refs) {
    void* base = r.own ? static_cast<void*>(b._buf.data() + r.off) : const_cast<void*>(r.ptr);
    b._iov.push_back(iovec{base, r.len});
    b.size += r.len;
  }
  // Group the iovecs into pwritev/io_uring-sized pieces, each at its own offset.
  uint64_t off = b.offset;
  size_t first = 0;
  uint64_t bytes = 0;
  for (size_t i = 0; i <= b._iov.size(); ++i) {
    bool end = i == b._iov.size();
    if (!end && i - first < IOV_MAX && (i == first || bytes + b._iov[i].iov_len <= max_piece_bytes)) {
      bytes += b._iov[i].iov_len;
      continue;
    }
    if (i > first) {
      b.pieces.push_back({b._iov.data() + first, int(i - first), off, bytes});
      off += bytes;
    }
    first = i;
    bytes = end ? 0 : b._iov[i].iov_len;
  }
  if (!b.error) {
    _end += b.size;
    for (uint64_t t : b._done_targets) add_ref(b._seq, t);
  }
  _flight = &b;
  _staging = &b == &_batches[0] ? &_batches[1] : &_batches[0];
  return &b;
}

void partition::complete(batch* b, int64_t write_result, int fsync_result,
                         outcome_list& outcomes) {
  outcomes.clear();
  _locations.clear();
  if (b == nullptr || b != _flight) {
    SR_ERROR("spool %s: complete() for a batch that is not in flight ignored", _dir.c_str());
    return;
  }
  const bool ok = b->error == 0 && write_result == int64_t(b->size) && fsync_result == 0;
  if (!ok && b->error == 0) {
    SR_WARN("spool %s: batch of %zu records (%llu bytes at %llu) failed: write %lld, fsync %d",
            segment_path(b->_seq).c_str(), b->_entries.size(), (unsigned long long)b->size,
            (unsigned long long)b->offset, (long long)write_result, fsync_result);
    // Cut the batch off so later records never sit behind a torn or unsynced one.
    if (::ftruncate(b->fd, off_t(b->offset)) == 0) {
      _end = b->offset;
      // Best effort: make the cut durable too, so records of clients that were told
      // "452" do not come back after a crash (a duplicate, never a loss).
      (void)::fdatasync(b->fd);
    } else {
      SR_ERROR("spool %s: cannot truncate after a failed batch: %s", segment_path(b->_seq).c_str(),
               std::strerror(errno));
      _broken = true;
    }
    // After an fsync error the page cache state of this file is unknown: never trust
    // it again. (-ECANCELED is a linked fsync skipped after a failed write.)
    if (fsync_result < 0 && fsync_result != -ECANCELED) _broken = true;
  }
  for (const batch::entry& e : b->_entries) {
    if (e.k == batch::kind::message) {
      if (ok && e.n_rcpts > 0) {
        auto [it, fresh] = _live.try_emplace(e.id);
        if (fresh) {
          live_entry& le = it->second;
          le.seq = b->_seq;
          le.n_rcpts = le.remaining = e.n_rcpts;
          if (e.n_rcpts > 64) le.big.assign((e.n_rcpts + 63) / 64, 0);
          le.external = e.external;
          _segments[b->_seq].live++;
        }
      }
      outcomes.emplace_back(e.cookie, ok);
      const std::string_view id(e.id.data(), e.id.size());
      if (ok && e.external)
        _locations.push_back({e.cookie, body_path(id), e.body_off, e.body_len});
      else if (ok)
        _locations.push_back({e.cookie, segment_path(b->_seq), b->offset + e.body_off, e.body_len});
      else if (e.external)
        ::unlink(body_path(id).c_str());  // its client hears 452: the bytes are no one's
    } else if (e.cookie) {
      outcomes.emplace_back(e.cookie, ok);
    }
  }
  if (!ok) carry_records(*b);
  // Body files of messages whose last DONE is now durable. (A failed DONE keeps the file
  // until the carried record is written.)
  if (ok)
    for (const auto& id : b->_unlink) {
      std::string path = body_path(std::string_view(id.data(), id.size()));
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        SR_WARN("spool: cannot delete body file %s: %s", path.c_str(), std::strerror(errno));
    }
  b->reset();
  _flight = nullptr;
  if (_reclaim) reclaim();
}

std::pair<int64_t, int> partition::write_and_sync(batch* b) {
  if (b->error) return {-b->error, -b->error};
  int64_t total = 0;
  std::vector<iovec> rest;
  for (const batch::piece& p : b->pieces) {
    rest.assign(p.iov, p.iov + p.iovcnt);
    size_t idx = 0;
    uint64_t off = p.offset;
    while (idx < rest.size()) {
      ssize_t n = ::pwritev(b->fd, rest.data() + idx, int(rest.size() - idx), off_t(off));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return {-errno, 0};
      if (n == 0) return {-EIO, 0};
      total += n;
      off += uint64_t(n);
      size_t left = size_t(n);
      while (left && idx < rest.size()) {  // a short write: resume mid-iovec
        size_t take = std::min(left, rest[idx].iov_len);
        rest[idx].iov_base = static_cast<char*>(rest[idx].iov_base) + take;
        rest[idx].iov_len -= take;
        left -= take;
        if (rest[idx].iov_len == 0) ++idx;
      }
      while (idx < rest.size() && rest[idx].iov_len == 0) ++idx;
    }
  }
  int f = ::fdatasync(b->fd) == 0 ? 0 : -errno;
  return {total, f};
}

bool partition::live_entry::test_and_set(uint32_t i) {
  uint64_t& word = n_rcpts <= 64 ? small : big[i / 64];
  const uint64_t bit = uint64_t(1) << (i % 64);
  if (word & bit) return false;
  word |= bit;
  return true;
}

bool partition::flush(outcome_list& outcomes) {
  batch* b = take_batch();
  if (!b) return false;
  auto [w, f] = write_and_sync(b);
  complete(b, w, f, outcomes);
  return true;
}

sr::status partition::roll() {
  uint64_t seq = _active_seq;
  if (_fd >= 0) ++seq;  // the first roll at open() uses the prepared number
  std::string path;
  int fd = -1;
  for (int tries = 0; tries < 16 && fd < 0; ++tries, ++seq) {
    path = segment_path(seq);
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) return sys_error("cannot create spool segment", path, errno);
  }
  if (fd < 0) return sr::error{"cannot create spool segment in " + _dir + ": names in use"};
  --seq;
  if (::fsync(_dir_fd) != 0) {
    int e = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return sys_error("cannot sync spool directory", _dir, e);
  }
  uint64_t end = 0;
  if (_crypt.sealing()) {
    // A sealed segment opens with its KEY record (key id, fresh salt). Not synced here: the
    // first batch's fdatasync covers it, and without a durable batch nothing needs it.
    std::byte key[key_record_size];
    const auto previous = _crypt.save();  // the active segment keeps its salt on failure
    if (!_crypt.begin_segment(key)) {
      _crypt.restore(previous);
      ::close(fd);
      ::unlink(path.c_str());
      return sr::error{"cannot start sealed spool segment " + path + ": the RNG failed"};
    }
    errno = 0;
    if (::pwrite(fd, key, sizeof key, 0) != ssize_t(sizeof key)) {
      int e = errno ? errno : EIO;
      _crypt.restore(previous);
      ::close(fd);
      ::unlink(path.c_str());
      return sys_error("cannot write spool segment", path, e);
    }
    end = sizeof key;
  }
  if (_fd >= 0) {
    ::close(_fd);
    _reclaim = true;  // the old segment may be deletable now that it is not active
  }
  _fd = fd;
  _active_seq = seq;
  _end = end;
  _broken = false;
  _segments[seq];
  if (_reclaim) reclaim();
  return {};
}

void partition::reclaim() {
  _reclaim = false;
  bool removed = false;
  // DONE records point at older segments, so one pass in sequence order suffices: a
  // segment goes when none of its messages is pending and every message its DONE records
  // finish lives in a segment that is already gone (else that message would come back).
  for (auto it = _segments.begin(); it != _segments.end();) {
    const uint64_t seq = it->first;
    const segment_state& s = it->second;
    bool can = seq != _active_seq && s.live == 0;
    for (uint64_t r : s.refs)
      if (r != seq && _segments.contains(r)) can = false;
    if (!can) {
      ++it;
      continue;
    }
    std::string path = segment_path(seq);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      SR_WARN("spool: cannot delete finished segment %s: %s", path.c_str(), std::strerror(errno));
      ++it;
      continue;
    }
    SR_DEBUG("spool: deleted finished segment %s", path.c_str());
    removed = true;
    it = _segments.erase(it);
  }
  if (removed && _dir_fd >= 0) ::fsync(_dir_fd);
}

std::string read_message(const recovered_message& m, std::shared_ptr<const keyring> keys) {
  int fd = ::open(m.segment.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    SR_WARN("spool: cannot open %s: %s", m.segment.c_str(), std::strerror(errno));
    return {};
  }
  std::byte first[key_record_size];
  segment_seal seal;
  if (read_full(fd, first, sizeof first, 0)) seal = classify_segment(first, keys.get());
  if (seal.framed) {  // a sealed body file: opened whole, then the range cut out
    record_crypt crypt(std::move(keys));
    std::string why = "its key is not configured", out;
    if (seal.key) {
      auto head = read_framed_head(fd, seal, crypt);
      auto text = head ? read_framed_message(fd, seal, crypt, *head) : sr::result<std::string>(sr::error{head.err()});
      if (!text) why = text.err();
      else if (m.offset > text->size() || m.length > text->size() - m.offset) why = "range beyond the message";
      else out = text->substr(m.offset, m.length), why.clear();
    }
    ::close(fd);
    if (!why.empty()) SR_WARN("spool: cannot read sealed body file %s: %s", m.segment.c_str(), why.c_str());
    return out;
  }
  if (!m.meta.external_body && seal.sealed) {
    record_crypt crypt(std::move(keys));
    auto r = read_record_at(fd, m.offset, crypt, UINT32_MAX);
    ::close(fd);
    message_meta meta;
    size_t env_len = 0;
    if (!r || !decode_envelope(r->payload, meta, env_len, r->h.version) ||
        r->payload.size() - env_len < m.length) {
      SR_WARN("spool: cannot read the sealed record at %llu of %s: %s", (unsigned long long)m.offset,
              m.segment.c_str(), r ? "malformed" : r.err().c_str());
      return {};
    }
    return std::string(reinterpret_cast<const char*>(r->payload.data() + env_len), m.length);
  }
  std::string s(m.length, '\0');
  bool ok = read_full(fd, s.data(), s.size(), m.offset);
  ::close(fd);
  if (!ok) {
    SR_WARN("spool: cannot read %llu bytes at %llu of %s", (unsigned long long)m.length,
            (unsigned long long)m.offset, m.segment.c_str());
    return {};
  }
  return s;
}

}  // namespace sr::spool
