// The sidecar wire codec (protocol.hh). Fields are written and read in declaration order;
// the reader checks every length against what is left of the frame, so a hostile or
// corrupt peer can make decoding fail but never read past the frame or allocate more than
// the frame's size.
#include "sealrelay/fallback/protocol.hh"

namespace sr::fallback::wire {

namespace {

enum class type : uint8_t {
  hello = 1, hello_ok = 2, handoff = 3, result = 4, ping = 5, pong = 6,
  submit = 7, submitted = 8, retract = 9, retracted = 10,
};

void put_u8(std::string& o, uint8_t v) { o += char(v); }
void put_u32(std::string& o, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) o += char((v >> s) & 0xff);
}
void put_u64(std::string& o, uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) o += char((v >> s) & 0xff);
}
void put_str(std::string& o, std::string_view s) {
  put_u32(o, uint32_t(s.size()));
  o.append(s);
}

void put_output(std::string& o, const output& m) {
  put_u8(o, m.kind);
  put_str(o, m.from);
  put_u32(o, uint32_t(m.rcpts.size()));
  for (const auto& r : m.rcpts) put_str(o, r);
  put_str(o, m.msg_id);
  put_str(o, m.path);
}

struct writer {
  std::string& o;
  void operator()(const hello& f) {
    put_u8(o, uint8_t(type::hello));
    put_u32(o, f.engine_pid);
    put_str(o, f.node);
  }
  void operator()(const hello_ok& f) {
    put_u8(o, uint8_t(type::hello_ok));
    put_str(o, f.sidecar_version);
  }
  void operator()(const handoff& f) {
    put_u8(o, uint8_t(type::handoff));
    put_u64(o, f.request_id);
    put_str(o, f.queue_id);
    put_str(o, f.from);
    put_str(o, f.domain);
    put_u32(o, uint32_t(f.rcpts.size()));
    for (const auto& r : f.rcpts) put_str(o, r);
    put_str(o, f.segment);
    put_u64(o, f.offset);
    put_u64(o, f.length);
    put_u8(o, f.reason);
    put_u32(o, uint32_t(f.chain.size()));
    for (method m : f.chain) put_u8(o, uint8_t(m));
  }
  void operator()(const result& f) {
    put_u8(o, uint8_t(type::result));
    put_u64(o, f.request_id);
    put_u32(o, uint32_t(f.outcomes.size()));
    for (outcome x : f.outcomes) put_u8(o, uint8_t(x));
    put_str(o, f.detail);
    put_u32(o, uint32_t(f.outputs.size()));
    for (const auto& m : f.outputs) put_output(o, m);
  }
  void operator()(const submit& f) {
    put_u8(o, uint8_t(type::submit));
    put_u64(o, f.submit_id);
    put_output(o, f.mail);
  }
  void operator()(const submitted& f) {
    put_u8(o, uint8_t(type::submitted));
    put_u64(o, f.submit_id);
    put_u8(o, f.ok ? 1 : 0);
    put_str(o, f.detail);
  }
  void operator()(const retract& f) {
    put_u8(o, uint8_t(type::retract));
    put_u64(o, f.request_id);
    put_str(o, f.msg_id);
  }
  void operator()(const retracted& f) {
    put_u8(o, uint8_t(type::retracted));
    put_u64(o, f.request_id);
    put_u8(o, f.ok ? 1 : 0);
    put_u32(o, f.count);
    put_str(o, f.detail);
  }
  void operator()(const ping& f) {
    put_u8(o, uint8_t(type::ping));
    put_u64(o, f.nonce);
  }
  void operator()(const pong& f) {
    put_u8(o, uint8_t(type::pong));
    put_u64(o, f.nonce);
  }
};

// Reads fields from one frame's body; any short read marks it bad (and yields zeros).
struct reader {
  std::string_view in;
  bool bad = false;

  bool need(size_t n) {
    if (bad || in.size() < n) bad = true;
    return !bad;
  }
  uint8_t u8() {
    if (!need(1)) return 0;
    uint8_t v = uint8_t(in[0]);
    in.remove_prefix(1);
    return v;
  }
  uint32_t u32() {
    if (!need(4)) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | uint8_t(in[size_t(i)]);
    in.remove_prefix(4);
    return v;
  }
  uint64_t u64() {
    if (!need(8)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | uint8_t(in[size_t(i)]);
    in.remove_prefix(8);
    return v;
  }
  std::string str() {
    uint32_t n = u32();
    if (!need(n)) return {};
    std::string s(in.substr(0, n));
    in.remove_prefix(n);
    return s;
  }
  // A list count, checked against the bytes left (each item takes at least `min_item`).
  uint32_t count(size_t min_item) {
    uint32_t n = u32();
    if (!bad && uint64_t(n) * min_item > in.size()) bad = true;
    return bad ? 0 : n;
  }
};

// An output: the kind byte must name a known message kind (0..max_kind), the path and
// at least one recipient must be there.
constexpr uint8_t max_kind = 15;
output get_output(reader& r) {
  output m;
  m.kind = r.u8();
  if (m.kind > max_kind) r.bad = true;
  m.from = r.str();
  uint32_t n = r.count(4);
  for (uint32_t i = 0; i < n && !r.bad; ++i) m.rcpts.push_back(r.str());
  m.msg_id = r.str();
  m.path = r.str();
  if (!r.bad && (m.rcpts.empty() || m.path.empty())) r.bad = true;
  return m;
}

bool get_bool(reader& r) {
  uint8_t b = r.u8();
  if (b > 1) r.bad = true;
  return b == 1;
}

bool valid_method(uint8_t m) { return m >= uint8_t(method::pgp) && m <= uint8_t(method::defer); }
bool valid_outcome(uint8_t o) { return o >= uint8_t(outcome::pgp) && o <= uint8_t(outcome::failed); }

}  // namespace

void encode(const frame& f, std::string& out) {
  std::string body;
  put_u8(body, version);
  std::visit(writer{body}, f);
  put_u32(out, uint32_t(body.size()));
  out += body;
}

std::optional<frame> decoder::next() {
  if (failed()) return std::nullopt;
  std::string_view avail = std::string_view(_buf).substr(_off);
  if (avail.size() < 4) return std::nullopt;
  uint32_t len = 0;
  for (int i = 0; i < 4; ++i) len = (len << 8) | uint8_t(avail[size_t(i)]);
  if (len < 2 || len > max_frame) {
    _error = "frame length " + std::to_string(len) + " out of range";
    return std::nullopt;
  }
  if (avail.size() < 4 + size_t(len)) return std::nullopt;
  reader r{avail.substr(4, len)};
  _off += 4 + len;
  if (_off == _buf.size()) {  // keep the buffer from growing without bound
    _buf.clear();
    _off = 0;
  } else if (_off > 65536) {
    _buf.erase(0, _off);
    _off = 0;
  }
  uint8_t v = r.u8();
  if (v != version) {
    _error = "protocol version " + std::to_string(v) + " (this side speaks " + std::to_string(version) + ")";
    return std::nullopt;
  }
  std::optional<frame> out;
  switch (type(r.u8())) {
    case type::hello: {
      hello f;
      f.engine_pid = r.u32();
      f.node = r.str();
      out = std::move(f);
      break;
    }
    case type::hello_ok: {
      hello_ok f;
      f.sidecar_version = r.str();
      out = std::move(f);
      break;
    }
    case type::handoff: {
      handoff f;
      f.request_id = r.u64();
      f.queue_id = r.str();
      f.from = r.str();
      f.domain = r.str();
      uint32_t n = r.count(4);
      for (uint32_t i = 0; i < n && !r.bad; ++i) f.rcpts.push_back(r.str());
      f.segment = r.str();
      f.offset = r.u64();
      f.length = r.u64();
      f.reason = r.u8();
      uint32_t m = r.count(1);
      for (uint32_t i = 0; i < m && !r.bad; ++i) {
        uint8_t x = r.u8();
        if (!valid_method(x)) r.bad = true;
        f.chain.push_back(method(x));
      }
      if (!r.bad && (f.rcpts.empty() || f.chain.empty())) r.bad = true;
      out = std::move(f);
      break;
    }
    case type::result: {
      result f;
      f.request_id = r.u64();
      uint32_t n = r.count(1);
      for (uint32_t i = 0; i < n && !r.bad; ++i) {
        uint8_t x = r.u8();
        if (!valid_outcome(x)) r.bad = true;
        f.outcomes.push_back(outcome(x));
      }
      f.detail = r.str();
      uint32_t k = r.count(4 * 4 + 1);
      for (uint32_t i = 0; i < k && !r.bad; ++i) f.outputs.push_back(get_output(r));
      out = std::move(f);
      break;
    }
    case type::submit: {
      submit f;
      f.submit_id = r.u64();
      f.mail = get_output(r);
      out = std::move(f);
      break;
    }
    case type::submitted: {
      submitted f;
      f.submit_id = r.u64();
      f.ok = get_bool(r);
      f.detail = r.str();
      out = std::move(f);
      break;
    }
    case type::retract: {
      retract f;
      f.request_id = r.u64();
      f.msg_id = r.str();
      out = std::move(f);
      break;
    }
    case type::retracted: {
      retracted f;
      f.request_id = r.u64();
      f.ok = get_bool(r);
      f.count = r.u32();
      f.detail = r.str();
      out = std::move(f);
      break;
    }
    case type::ping: out = ping{r.u64()}; break;
    case type::pong: out = pong{r.u64()}; break;
    default: _error = "unknown frame type"; return std::nullopt;
  }
  if (r.bad || !r.in.empty()) {
    _error = r.bad ? "malformed frame" : "trailing bytes in frame";
    return std::nullopt;
  }
  return out;
}

}  // namespace sr::fallback::wire
