// The sidecar's hand-off handler (handler.hh): read the spool record the engine names,
// walk each recipient's chain, write the mails made into the outbox. Everything here runs
// on one worker thread; nothing it writes is sent in plaintext (the outputs are PGP/MIME,
// S/MIME or a notice without the message), and nothing counts until the engine has spooled
// the outputs, so a crash anywhere here only means the hand-off comes again.
#include "sealrelay/fallback/handler.hh"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "sealrelay/fallback/escrow.hh"
#include "sealrelay/fallback/notice.hh"
#include "sealrelay/fallback/pg_store.hh"
#include "sealrelay/fallback/sqlite_store.hh"
#include "sealrelay/report/message_kind.hh"
#include "sealrelay/spool/record.hh"
#include "sealrelay/tls/smime.hh"
#include "sealrelay/util/log.hh"
#include "sealrelay/util/text.hh"

namespace sr::fallback {
namespace {

std::atomic<uint64_t> next_output{0};  // outbox file names, unique in the process

// The message of a hand-off as read from the spool.
struct spooled {
  spool::message_meta meta;
  std::string message;  // the raw RFC 5322 bytes after the envelope
};

std::string errno_text(int e) { return std::strerror(e); }

// Read exactly `len` bytes at `off`; false on a short file or an error.
bool pread_full(int fd, char* dst, size_t len, uint64_t off) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, dst + done, len - done, off_t(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += size_t(n);
  }
  return true;
}

// Check and decode the record `buf` (header + payload); the error says what was wrong.
result<spooled> decode_record(std::span<const std::byte> buf, const wire::handoff& h) {
  spool::record_header hd = spool::decode_header(buf.data());
  if (!spool::header_plausible(hd) || hd.type != spool::record_type::message)
    return error{"no message record at that offset"};
  std::span<const std::byte> payload = buf.subspan(spool::header_size);
  if (!spool::payload_crc_ok(hd, payload)) return error{"record length or checksum mismatch"};
  spooled s;
  size_t env_len = 0;
  if (!spool::decode_envelope(payload, s.meta, env_len, hd.version)) return error{"malformed envelope"};
  if (s.meta.queue_id != h.queue_id)
    return error{"record holds queue id " + s.meta.queue_id + ", not " + h.queue_id};
  s.message.assign(reinterpret_cast<const char*>(payload.data() + env_len), payload.size() - env_len);
  return s;
}

// Find the record whose message bytes are exactly [off, off + len): its header sits before
// them, at most `window` bytes back, and its payload ends where the message ends. Returns
// the record's offset, or -1.
int64_t find_record_before(int fd, uint64_t off, uint64_t len, uint64_t window) {
  uint64_t start = off > window ? off - window : 0;
  std::vector<std::byte> buf(off - start);
  if (buf.size() < spool::header_size || !pread_full(fd, reinterpret_cast<char*>(buf.data()), buf.size(), start))
    return -1;
  for (size_t p = buf.size() - spool::header_size + 1; p-- > 0;) {
    spool::record_header hd = spool::decode_header(buf.data() + p);
    if (hd.magic != spool::record_magic || !spool::header_plausible(hd) || hd.type != spool::record_type::message)
      continue;
    if (start + p + spool::header_size + hd.payload_len == off + len) return int64_t(start + p);
  }
  return -1;
}

// Read and check the record a hand-off names. (segment, offset, length) is the whole record
// (header + payload) or, as the spool's message_location gives it, only its message bytes;
// then the record is found just before them. Either way the header, the CRC32C of the whole
// payload, the envelope and the queue id are checked.
result<spooled> read_record(const wire::handoff& h, uint64_t max_record,
                            const std::shared_ptr<const spool::keyring>& keys) {
  if (h.segment.empty() || h.segment[0] != '/') return error{"segment path is not absolute"};
  if (h.length == 0 || h.length > max_record)
    return error{"record length " + std::to_string(h.length) + " out of range"};
  int fd = ::open(h.segment.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error{"cannot open " + h.segment + ": " + errno_text(errno)};
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } close_fd{fd};
  // A sealed segment (spool encryption at rest): the hand-off names the record itself, which
  // is read whole, authenticated and opened before anything of it is used.
  std::byte first[spool::key_record_size];
  spool::segment_seal seal;
  if (pread_full(fd, reinterpret_cast<char*>(first), sizeof first, 0))
    seal = spool::classify_segment(first, keys.get());
  if (seal.framed) {
    // A sealed body file: the message is the head's prefix then the body frames, from 0.
    if (!seal.key)
      return error{h.segment + ": sealed with key id " + spool::to_hex(seal.id) + ", which is not configured"};
    spool::record_crypt crypt(keys);
    auto head = spool::read_framed_head(fd, seal, crypt);
    if (!head) return error{h.segment + ": " + head.err()};
    if (head->meta.queue_id != h.queue_id)
      return error{"record holds queue id " + head->meta.queue_id + ", not " + h.queue_id};
    if (h.offset != 0 || h.length != head->length()) return error{"the range is not the record's message bytes"};
    auto text = spool::read_framed_message(fd, seal, crypt, *head);
    if (!text) return error{h.segment + ": " + text.err()};
    spooled s;
    s.meta = std::move(head->meta);
    s.message = std::move(*text);
    return s;
  }
  if (seal.sealed) {
    spool::record_crypt crypt(keys);
    auto r = spool::read_record_at(fd, h.offset, crypt, max_record);
    if (!r) return error{h.segment + ": " + r.err()};
    if (r->h.type != spool::record_type::message || (r->h.flags & spool::record_flag_external_body))
      return error{"no message record at that offset"};
    spooled s;
    size_t env_len = 0;
    if (!spool::decode_envelope(r->payload, s.meta, env_len, r->h.version)) return error{"malformed envelope"};
    if (s.meta.queue_id != h.queue_id)
      return error{"record holds queue id " + s.meta.queue_id + ", not " + h.queue_id};
    if (r->payload.size() - env_len != h.length) return error{"the range is not the record's message bytes"};
    s.message.assign(reinterpret_cast<const char*>(r->payload.data() + env_len), h.length);
    return s;
  }
  uint64_t rec_off = h.offset, rec_len = h.length;
  std::byte head[spool::header_size];
  bool whole = h.length > spool::header_size &&
               pread_full(fd, reinterpret_cast<char*>(head), sizeof head, h.offset);
  if (whole) {
    spool::record_header hd = spool::decode_header(head);
    whole = spool::header_plausible(hd) && hd.payload_len + spool::header_size == h.length;
  }
  if (!whole) {
    int64_t found = -1;
    for (uint64_t window = 64 * 1024; found < 0; window *= 4) {
      found = find_record_before(fd, h.offset, h.length, window);
      if (window >= h.offset || window >= (16u << 20)) break;
    }
    if (found < 0) return error{"no message record at that offset"};
    rec_off = uint64_t(found);
    rec_len = h.offset + h.length - rec_off;
    if (rec_len > max_record) return error{"record too long"};
  }
  std::vector<std::byte> buf(rec_len);
  if (!pread_full(fd, reinterpret_cast<char*>(buf.data()), buf.size(), rec_off)) {
    int e = errno;
    return error{"cannot read the record from " + h.segment + ": " + (e ? errno_text(e) : "short file")};
  }
  auto rec = decode_record(buf, h);
  if (rec && !whole && rec->message.size() != h.length)
    return error{"the range is not the record's message bytes"};
  return rec;
}

// Keep only characters safe in a file name (the queue id is ours, but be sure).
std::string file_safe(std::string_view s) {
  std::string o;
  for (char c : s)
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-' ||
        c == '_' || (c == '.' && !o.empty()))
      o += c;
  return o.empty() ? std::string("mail") : o;
}

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

result<std::unique_ptr<escrow_store>> open_escrow_store(std::string_view spec,
                                                        std::string_view state_dir) {
  if (spec.empty() || spec == "sqlite") return open_sqlite_store(std::string(state_dir) + "/escrow.db");
  if (spec.starts_with("postgresql://") || spec.starts_with("postgres://"))
    return open_pg_store(std::string(spec));
  return error{"unknown escrow store \"" + std::string(spec) + "\" (sqlite or postgresql://...)"};
}

result<std::string> write_outbox(std::string_view outbox_dir, std::string_view tag, std::string_view bytes) {
  std::string name = file_safe(tag) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++next_output) + ".eml";
  std::string dir(outbox_dir);
  std::string tmp = dir + "/.tmp-" + name, final_path = dir + "/" + name;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return error{"outbox: cannot create " + tmp + ": " + errno_text(errno)};
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : ENOSPC;
      ::close(fd);
      ::unlink(tmp.c_str());
      return error{"outbox: cannot write " + tmp + ": " + errno_text(e)};
    }
    done += size_t(n);
  }
  if (::close(fd) < 0 || ::rename(tmp.c_str(), final_path.c_str()) < 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return error{"outbox: cannot finish " + final_path + ": " + errno_text(e)};
  }
  return final_path;
}

std::string header_message_id(std::string_view m) {
  size_t pos = 0;
  while (pos < m.size()) {
    size_t eol = m.find('\n', pos);
    std::string_view line = m.substr(pos, eol == std::string_view::npos ? m.size() - pos : eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // end of the header section
    size_t next = eol == std::string_view::npos ? m.size() : eol + 1;
    if (line.size() >= 11 && iequals(line.substr(0, 11), "Message-ID:")) {
      std::string v(line.substr(11));
      // Unfold continuation lines.
      while (next < m.size() && (m[next] == ' ' || m[next] == '\t')) {
        size_t e2 = m.find('\n', next);
        std::string_view cont = m.substr(next, e2 == std::string_view::npos ? m.size() - next : e2 - next);
        if (!cont.empty() && cont.back() == '\r') cont.remove_suffix(1);
        v += cont;
        next = e2 == std::string_view::npos ? m.size() : e2 + 1;
      }
      size_t lt = v.find('<'), gt = v.find('>', lt == std::string::npos ? 0 : lt);
      if (lt != std::string::npos && gt != std::string::npos) return v.substr(lt + 1, gt - lt - 1);
      size_t b = v.find_first_not_of(" \t"), e = v.find_last_not_of(" \t");
      return b == std::string::npos ? std::string() : v.substr(b, e - b + 1);
    }
    pos = next;
  }
  return {};
}

// What became of one recipient: its outcome, the output (when one was made) and a note.
struct handler::rcpt_outcome {
  wire::outcome outcome = wire::outcome::failed;
  std::optional<wire::output> output;
  std::string note;
};

handler::handler(handler_options opts, audit_log* audit, clock_fn now)
    : _opts(std::move(opts)), _audit(audit), _now(std::move(now)) {
  if (!_now) _now = [] { return std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()); };
}

handler::~handler() = default;

escrow_store* handler::store(std::string* why) {
  if (_store) return _store.get();
  auto s = open_escrow_store(_opts.store_spec, _opts.state_dir);
  if (!s) {
    if (why) *why = "escrow store: " + s.err();
    return nullptr;
  }
  _store = std::move(s.value());
  return _store.get();
}

pgp_keyring* handler::keyring(std::string* why) {
  if (_ring) return &*_ring;
  auto r = pgp_keyring::open(_opts.pgp_home, _opts.trust);
  if (!r) {
    *why = "pgp: " + r.err();
    return nullptr;
  }
  _ring.emplace(std::move(r.value()));
  return &*_ring;
}

void handler::audit(audit_event e) {
  if (_audit) _audit->write(e);
}

handler::rcpt_outcome handler::one_rcpt(const wire::handoff& h, std::string_view rcpt,
                                        std::string_view message, std::string_view msg_id) {
  rcpt_outcome o;
  std::string passed;  // why earlier methods did not apply, for the note
  auto fail = [&](std::string why) {
    o.outcome = wire::outcome::failed;
    o.note = std::move(why);
    return o;
  };
  auto made = [&](wire::outcome oc, report::message_kind kind, std::string_view tag,
                  std::string_view bytes, std::string out_msg_id) -> rcpt_outcome {
    auto path = write_outbox(_opts.outbox_dir, h.queue_id + "." + std::string(tag), bytes);
    if (!path) return fail(path.err());
    o.outcome = oc;
    o.output = wire::output{uint8_t(kind), h.from, {std::string(rcpt)}, std::move(out_msg_id),
                            std::move(path.value())};
    o.note = std::string(tag) + (passed.empty() ? "" : " (" + passed + ")");
    return o;
  };
  for (wire::method m : h.chain) {
    switch (m) {
      case wire::method::pgp: {
        if (_opts.pgp_home.empty() || !is_dir(_opts.pgp_home)) {
          passed += "no pgp_home; ";
          break;
        }
        std::string why;
        pgp_keyring* ring = keyring(&why);
        if (!ring) return fail(why);
        auto found = ring->find(rcpt);
        if (!found) return fail("pgp: " + found.err());
        if (!found->key) {
          passed += found->refused.empty() ? "no pgp key; " : "pgp key refused: " + found->refused + "; ";
          break;
        }
        auto out = ring->pgp_mime(message, *found->key);
        if (!out) return fail("pgp: " + out.err());
        return made(wire::outcome::pgp, report::message_kind::pgp, "pgp", *out, header_message_id(*out));
      }
      case wire::method::smime: {
        if (_opts.smime_dir.empty() || !tls::smime_address_safe(rcpt)) {
          passed += "no smime cert; ";
          break;
        }
        std::string file = _opts.smime_dir + "/" + std::string(rcpt) + ".pem";
        struct stat st;
        if (::stat(file.c_str(), &st) < 0) {
          if (errno == ENOENT || errno == ENOTDIR) {
            passed += "no smime cert; ";
            break;
          }
          return fail("smime: " + file + ": " + errno_text(errno));
        }
        auto cert = tls::load_smime_cert(_opts.smime_dir, rcpt);
        if (!cert) return fail("smime: " + cert.err());
        auto out = tls::smime_envelope(message, *cert);
        if (!out) return fail("smime: " + file + ": " + out.err());
        return made(wire::outcome::smime, report::message_kind::smime, "smime", *out, header_message_id(*out));
      }
      case wire::method::escrow: {
        std::string why;
        escrow_store* st = store(&why);
        if (!st) return fail(why);
        seconds_t now = _now();
        auto link = escrow::deposit(
            *st, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(message.data()), message.size()),
            msg_id, h.from, rcpt, now, _opts.escrow_expiry);
        if (!link) {
          // A dropped PostgreSQL connection is reset by the store itself; a SQLite file that
          // went away is opened again next time.
          _store.reset();
          return fail("escrow: " + link.err());
        }
        std::string notice_from = "noreply-escrow@" + _opts.hostname;
        notice_params p;
        p.notice_from = notice_from;
        p.recipient = rcpt;
        p.sender = h.from.empty() ? std::string_view("MAILER-DAEMON") : std::string_view(h.from);
        p.portal_url = _opts.portal_url;
        p.hostname = _opts.hostname;
        p.link = *link;
        p.now = now;
        p.expires = now + _opts.escrow_expiry;
        auto notice = escrow_notice(p);
        if (!notice) return fail("escrow notice: " + notice.err());
        auto r = made(wire::outcome::escrowed, report::message_kind::escrow_notice, "notice",
                      notice->message, notice->msg_id);
        if (r.outcome == wire::outcome::escrowed)
          audit({"notice", h.queue_id, std::string(msg_id), h.from, std::string(rcpt), "",
                 "notice " + notice->msg_id});
        return r;
      }
      case wire::method::defer:
        o.outcome = wire::outcome::defer;
        o.note = "defer" + (passed.empty() ? "" : " (" + passed + ")");
        return o;
    }
  }
  o.outcome = wire::outcome::defer;
  o.note = "no method applied (" + passed + ")";
  return o;
}

wire::result handler::handle(const wire::handoff& h) {
  wire::result res;
  res.request_id = h.request_id;
  res.outcomes.assign(h.rcpts.size(), wire::outcome::failed);
  auto rec = read_record(h, _opts.max_record, _opts.spool_keys);
  if (!rec) {
    res.detail = "record " + h.queue_id + " unusable: " + rec.err();
    SR_WARN("fallback: %s", res.detail.c_str());
    return res;
  }
  std::string msg_id = rec->meta.msg_id.empty() ? header_message_id(rec->message) : rec->meta.msg_id;
  for (size_t i = 0; i < h.rcpts.size(); ++i) {
    const std::string& rcpt = h.rcpts[i];
    rcpt_outcome o;
    bool known = false;
    for (const auto& r : rec->meta.rcpts) known = known || r == rcpt;
    if (!known) {
      o.note = "not a recipient of the message";
    } else {
      o = one_rcpt(h, rcpt, rec->message, msg_id);
    }
    res.outcomes[i] = o.outcome;
    if (o.output) res.outputs.push_back(std::move(*o.output));
    if (!res.detail.empty()) res.detail += "; ";
    res.detail += rcpt + ": " + o.note;
    if (o.outcome == wire::outcome::failed)
      SR_WARN("fallback: %s to %s failed: %s", h.queue_id.c_str(), rcpt.c_str(), o.note.c_str());
  }
  SR_INFO("fallback: %s: %s", h.queue_id.c_str(), res.detail.c_str());
  return res;
}

wire::retracted handler::retract(const wire::retract& r) {
  wire::retracted out;
  out.request_id = r.request_id;
  std::string why;
  escrow_store* st = store(&why);
  if (!st) {
    out.detail = why;
    return out;
  }
  auto ev = escrow::retract(*st, r.msg_id);
  if (!ev) {
    _store.reset();
    out.detail = "escrow: " + ev.err();
    return out;
  }
  for (const auto& e : *ev) audit({"retraction", "", e.msg_id, e.sender, e.recipient, "", ""});
  out.ok = true;
  out.count = uint32_t(ev->size());
  return out;
}

result<size_t> handler::sweep() {
  std::string why;
  escrow_store* st = store(&why);
  if (!st) return error{why};
  auto ev = st->expire(_now());
  if (!ev) {
    _store.reset();
    return error{"escrow: " + ev.err()};
  }
  for (const auto& e : *ev) audit({"expiry", "", e.msg_id, e.sender, e.recipient, "", ""});
  return ev->size();
}

}  // namespace sr::fallback
