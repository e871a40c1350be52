// A TCP stream on a shard: multishot recv into the shard's provided-buffer ring,
// one send in flight at a time, and an orderly close that waits for every
// in-flight operation before on_closed() lets the owner free the object.
// Paced mode (set_recv_paced) reads one chunk per single-shot recv instead, so a
// consumer that pauses often (a large message waiting on its disk write) holds at most
// one or two chunks in user space and the rest waits in the kernel's socket queue,
// where TCP flow control slows the peer. One recv operation is armed at a time, in
// either mode, so bytes arrive in order across pauses and mode switches.
// Subclasses (inbound connection, blast client) see only chunks and callbacks.
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include "sealrelay/core/shard.hh"
#include "sealrelay/net/buffer_ring.hh"

namespace sr::net {

class stream {
 public:
  stream(core::shard& sh, buffer_ring& br, chunk_pool& pool, int fd);
  virtual ~stream();
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  // Arm the multishot recv.
  void start_recv();
  // Re-arm recv if it stopped for lack of buffers (not while paused).
  void resume_recv_if_starved();
  // Stop reading (cancels the multishot recv): back-pressure while the peer does not
  // read our output. Chunks already received may still arrive through on_data().
  void pause_recv();
  // Read again after pause_recv().
  void resume_recv();
  bool recv_paused() const { return _recv_paused; }
  // Paced: one single-shot recv of one chunk at a time, re-armed only while not paused
  // (a paused stream receives at most the chunk of the recv in flight). Off: multishot.
  // A multishot recv armed when pacing starts is cancelled; what it already read still
  // arrives through on_data() in order before the first paced recv.
  void set_recv_paced(bool paced);
  bool recv_paced() const { return _recv_paced; }
  // Bytes queued or in flight that the peer has not taken yet.
  size_t unsent_bytes() const { return _out.size() + (_wire.size() - _wire_off); }
  // Queue bytes to send; they go out at the next flush().
  void queue(std::string_view bytes) { _out.append(bytes); }
  // Send what is queued unless a send is already in flight.
  void flush();
  bool send_idle() const { return !_send_inflight && _out.empty(); }
  // Free send-buffer capacity above `keep` bytes when nothing is queued or in flight, so
  // an idle connection does not keep room for its largest send (e.g. the TLS handshake
  // flight, 2-4 KiB). Owners call it where their connections go idle.
  void trim_send_buffers(size_t keep);
  // Close after queued output is sent (graceful) or at once (abort: a send stuck on a
  // peer that does not read is failed by shutting the socket down).
  void close(bool abort = false);
  bool closing() const { return _closing; }
  int fd() const { return _fd; }
  // Keep the object alive across an asynchronous operation the subclass owns.
  void hold() { ++_inflight; }
  void unhold();

 protected:
  // Received bytes in `c` [0, len); the callee owns the reference to `c`.
  virtual void on_data(chunk* c, size_t len) = 0;
  // Peer closed (0) or recv failed (-errno); the subclass usually calls close().
  virtual void on_eof(int err) = 0;
  // Everything queued so far has been written.
  virtual void on_drained() {}
  // The fd is closed and nothing is in flight: the owner may delete the object.
  virtual void on_closed() = 0;
  // Fill `wire` (empty) with the next bytes to send: by default the queued bytes
  // as they are; TLS streams append their encrypted records after them.
  virtual void prepare_wire(std::string& out, std::string& wire) { wire.swap(out); }

  core::shard& _shard;
  buffer_ring& _br;
  chunk_pool& _pool;

 private:
  template <void (stream::*Fn)(int, unsigned)>
  struct op final : core::completion {
    stream* self;
    void on_complete(int res, unsigned flags) override { (self->*Fn)(res, flags); }
  };
  void on_recv(int res, unsigned flags);
  void on_send(int res, unsigned flags);
  void on_close(int res, unsigned flags);
  void on_cancel(int res, unsigned flags);
  void cancel_recv();
  void maybe_finish();

  int _fd;
  op<&stream::on_recv> _recv_op;
  op<&stream::on_send> _send_op;
  op<&stream::on_close> _close_op;
  op<&stream::on_cancel> _cancel_op;
  std::string _out;    // queued (plaintext for TLS streams)
  std::string _wire;   // bytes of the send in flight
  size_t _wire_off = 0;
  unsigned _inflight = 0;
  bool _recv_armed = false;
  bool _recv_starved = false;
  bool _recv_paused = false;
  bool _recv_paced = false;
  bool _recv_multishot = false;  // the armed recv is a multishot one
  bool _cancel_inflight = false;
  bool _aborting = false;
  bool _shut_down = false;
  bool _send_inflight = false;
  bool _closing = false;
  bool _close_submitted = false;
  bool _closed_notified = false;
  bool _eof = false;
};

}  // namespace sr::net
