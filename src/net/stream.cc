// Close protocol: shutdown(2) ends the multishot recv (its final CQE has no F_MORE),
// the send in flight completes or fails, then IORING_OP_CLOSE; on_closed() runs
// once nothing references the object.
#include "sealrelay/net/stream.hh"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace sr::net {

stream::stream(core::shard& sh, buffer_ring& br, chunk_pool& pool, int fd)
    : _shard(sh), _br(br), _pool(pool), _fd(fd) {
  _recv_op.self = this;
  _send_op.self = this;
  _close_op.self = this;
  _cancel_op.self = this;
}

stream::~stream() = default;

void stream::start_recv() {
  if (_recv_armed || _closing) return;
  io_uring_sqe* s = _shard.sqe(&_recv_op);
  if (_recv_paced) {
    // One provided buffer at most: the length caps the read at a chunk.
    io_uring_prep_recv(s, _fd, nullptr, unsigned(_pool.chunk_size()), 0);
  } else {
    io_uring_prep_recv_multishot(s, _fd, nullptr, 0, 0);
  }
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = _br.group_id();
  _recv_armed = true;
  _recv_multishot = !_recv_paced;
  _recv_starved = false;
  ++_inflight;
}

void stream::resume_recv_if_starved() {
  if (_recv_starved && !_recv_paused && !_closing && !_eof) start_recv();
}

void stream::pause_recv() {
  if (_recv_paused) return;
  _recv_paused = true;
  // A paced recv in flight is left to complete (one chunk at most; on_recv does not
  // re-arm while paused); a multishot one would keep reading, so it is cancelled.
  if (_recv_multishot) cancel_recv();
}

void stream::cancel_recv() {
  if (!_recv_armed || _cancel_inflight || _closing) return;
  io_uring_sqe* s = _shard.sqe(&_cancel_op);
  io_uring_prep_cancel64(s, reinterpret_cast<uint64_t>(static_cast<core::completion*>(&_recv_op)), 0);
  _cancel_inflight = true;
  ++_inflight;
}

void stream::set_recv_paced(bool paced) {
  if (_recv_paced == paced) return;
  _recv_paced = paced;
  // Switching to paced ends the multishot recv; its last CQE (without F_MORE) re-arms
  // in the new mode. Switching back lets the paced recv in flight complete first.
  if (paced && _recv_multishot) cancel_recv();
}

void stream::resume_recv() {
  if (!_recv_paused) return;
  _recv_paused = false;
  // Still armed when the cancel has not landed yet: on_recv re-arms after its last CQE.
  if (!_recv_armed && !_closing && !_eof) start_recv();
}

void stream::on_cancel(int, unsigned) {
  _cancel_inflight = false;
  --_inflight;
  maybe_finish();
}

void stream::on_recv(int res, unsigned flags) {
  bool more = flags & IORING_CQE_F_MORE;
  if (!more) {
    // The recv op is free again: only now may the next one (either mode) be armed, so
    // its bytes come after these.
    _recv_armed = false;
    _recv_multishot = false;
    --_inflight;
  }
  if (res > 0) {
    chunk* c = _br.take(uint16_t(flags >> IORING_CQE_BUFFER_SHIFT));
    if (_closing) {
      _pool.release(c);
    } else {
      on_data(c, size_t(res));
    }
    if (!more && !_closing && !_eof && !_recv_paused) start_recv();
  } else if (res == -ECANCELED && !_eof) {
    // pause_recv() or set_recv_paced() ended the multishot; resume_recv() may already
    // have been called.
    if (!more && !_recv_paused && !_closing) start_recv();
  } else if (res == -ENOBUFS) {
    // The ring ran dry; the server re-arms starved streams after refilling.
    _recv_starved = true;
  } else if (res == 0 || res < 0) {
    if (!_eof && !_closing) {
      _eof = true;
      on_eof(res);
    }
  }
  maybe_finish();
}

void stream::flush() {
  if (_send_inflight || _close_submitted) return;
  if (_aborting) {
    _wire.clear();
    _wire_off = 0;
    return;
  }
  if (_wire_off >= _wire.size()) {
    _wire.clear();
    _wire_off = 0;
    prepare_wire(_out, _wire);  // TLS streams add handshake/record bytes here
    _out.clear();
    if (_wire.empty()) return;
  }
  io_uring_sqe* s = _shard.sqe(&_send_op);
  io_uring_prep_send(s, _fd, _wire.data() + _wire_off, _wire.size() - _wire_off, MSG_NOSIGNAL);
  _send_inflight = true;
  ++_inflight;
}

void stream::on_send(int res, unsigned) {
  _send_inflight = false;
  --_inflight;
  if (res < 0) {
    _wire.clear();
    _wire_off = 0;
    _out.clear();
    if (!_closing) close(true);
  } else {
    _wire_off += size_t(res);
    if (_wire_off >= _wire.size() && _out.empty()) {
      _wire.clear();
      _wire_off = 0;
      if (!_closing) on_drained();
    }
    flush();
  }
  maybe_finish();
}

void stream::trim_send_buffers(size_t keep) {
  if (_send_inflight || !_out.empty() || _wire_off < _wire.size()) return;
  if (_wire.capacity() > keep) {
    std::string().swap(_wire);
    _wire_off = 0;
  }
  if (_out.capacity() > keep) std::string().swap(_out);
}

void stream::close(bool abort) {
  if (abort) {
    _out.clear();
    _aborting = true;
  }
  if (!_closing) {
    _closing = true;
    flush();
  }
  maybe_finish();
}

void stream::unhold() {
  --_inflight;
  maybe_finish();
}

void stream::maybe_finish() {
  if (!_closing) return;
  bool output_pending = _send_inflight || !_out.empty() || _wire_off < _wire.size();
  if (output_pending && !_eof && !_aborting) return;  // graceful: let the last replies go out
  if (_recv_armed || (_aborting && _send_inflight)) {
    // Ends the multishot recv (its last CQE arrives without F_MORE) and fails a send
    // that waits on a peer that does not read.
    if (!_shut_down) {
      _shut_down = true;
      ::shutdown(_fd, SHUT_RDWR);
    }
    return;
  }
  if (_send_inflight) return;
  if (_inflight > 0) return;
  if (!_close_submitted) {
    _close_submitted = true;
    io_uring_sqe* s = _shard.sqe(&_close_op);
    io_uring_prep_close(s, _fd);
    ++_inflight;
    return;
  }
}

void stream::on_close(int, unsigned) {
  --_inflight;
  _fd = -1;
  if (!_closed_notified) {
    _closed_notified = true;
    on_closed();  // may delete this
  }
}

}  // namespace sr::net
