// The TLS pump: ciphertext chunk -> session::feed() (lent for one call) -> handshake()
// until done -> read() into fresh pool chunks until it wants input. Output: plaintext
// from send() is encrypted at prepare_wire(), behind any plaintext queued before TLS
// started (the "220" to STARTTLS), so one socket write carries both. Ciphertext reaches
// the socket buffer by a swap, not a copy (session::take_output).
#include "sealrelay/tls/stream.hh"

namespace sr::tls {

namespace {
std::span<const std::byte> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
}  // namespace

stream::stream(core::shard& sh, net::buffer_ring& br, net::chunk_pool& pool, int fd)
    : net::stream(sh, br, pool, fd) {}

stream::~stream() = default;

bool stream::start_tls(session s) {
  _tls = std::make_unique<session>(std::move(s));
  _failed = false;
  if (_tls->is_client() && _tls->handshake() < 0) _failed = true;  // queues the ClientHello
  flush();
  return !_failed;
}

void stream::send(std::string_view bytes) {
  if (_tls) _plain.append(bytes);
  else queue(bytes);
}

void stream::send(std::span<const iovec> pieces) {
  if (!_tls || !_tls->handshake_done()) {
    for (const iovec& v : pieces) send(std::string_view(static_cast<const char*>(v.iov_base), v.iov_len));
    return;
  }
  // Every record full but the last: small pieces (earlier commands, the dots of
  // dot-stuffing, the final ".\r\n") join the bytes queued in _plain, so a 10 KiB message
  // is one record, not body + terminator (a record costs a wolfSSL_write, a buffer and a
  // tag here and a decryption at the peer). Whole records inside a large piece go into
  // wolfSSL straight from the piece.
  for (const iovec& v : pieces) {
    const char* p = static_cast<const char*>(v.iov_base);
    size_t n = v.iov_len;
    if (_plain.size() + n < record_bytes) {
      _plain.append(p, n);
      continue;
    }
    if (!_plain.empty()) {
      size_t fill = record_bytes - _plain.size();
      _plain.append(p, fill);
      _tls->write(bytes_of(_plain));
      _plain.clear();
      p += fill;
      n -= fill;
    }
    size_t whole = n - n % record_bytes;
    if (whole) _tls->write(std::span<const std::byte>(reinterpret_cast<const std::byte*>(p), whole));
    _plain.append(p + whole, n - whole);
  }
}

size_t stream::unsent() const {
  return unsent_bytes() + _plain.size() + (_tls ? _tls->pending_output().size() : 0);
}

void stream::on_data(net::chunk* c, size_t len) {
  if (_tls) on_ciphertext(c, len);
  else on_plain(c, len);
  _br.refill();
  flush();
}

void stream::on_ciphertext(net::chunk* c, size_t len) {
  // feed() lends `c` to the next TLS call only; the session copies what that call leaves
  // unconsumed, so `c` goes back to the pool at the end whatever happens.
  struct give_back {
    net::chunk_pool& pool;
    net::chunk* c;
    ~give_back() { pool.release(c); }
  } release_on_exit{_pool, c};
  if (_failed || _ended) return;
  _tls->feed(std::span<const std::byte>(c->data, len));
  if (!_tls->handshake_done()) {
    int rc = _tls->handshake();
    if (rc < 0) {
      _failed = true;
      on_tls_failed();
      return;
    }
    if (rc == 0) return;
    on_tls_ready();
  }
  while (!closing() && !_ended) {
    net::chunk* pc = _pool.get();
    int n = _tls->read(std::span<std::byte>(pc->data, _pool.chunk_size()));
    if (n <= 0) {
      _pool.release(pc);
      if (n < 0) end(n);  // close_notify or a bad record: the TLS stream is over
      break;
    }
    on_plain(pc, size_t(n));
  }
}

void stream::on_eof(int err) { end(err); }

void stream::end(int err) {
  if (_ended) return;
  _ended = true;
  on_end(err);
}

void stream::prepare_wire(std::string& out, std::string& wire) {
  wire.swap(out);  // plaintext queued before TLS started (e.g. "220 Ready" to STARTTLS)
  if (!_tls) return;
  if (_tls->handshake_done() && !_plain.empty()) {
    _tls->write(bytes_of(_plain));
    _plain.clear();
  }
  _tls->take_output(wire);  // a swap, not a copy, when nothing was queued before TLS
}

}  // namespace sr::tls
