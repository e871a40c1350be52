// tls::stream end to end (issue 11, "Done when"): a client and a server tls::stream on one
// real shard (io_uring, provided-buffer ring, 16 KiB pool chunks) joined by a socketpair,
// after a real TLS 1.3 handshake with the test PKI's P-256 certificate. Each iteration
// sends one message body as the outbound link does (send() of iovec pieces: encrypted
// straight from the buffer into records, one send per flush) and runs the shard loop until
// the server side has decrypted all of it into pool chunks (on_plain). So an iteration is
// record encrypt + socket write + multishot recv + record decrypt, all on this thread (its
// CPU time includes the kernel's). The "plain" rows run the same path without TLS, so the
// difference is what TLS costs per message. record_bench (src/tls) measures the session
// calls alone, without the socket and the loop.
#include <benchmark/benchmark.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "sealrelay/core/shard.hh"
#include "sealrelay/net/buffer_ring.hh"
#include "sealrelay/net/chunk.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/library.hh"
#include "sealrelay/tls/session.hh"
#include "sealrelay/tls/stream.hh"

namespace {

std::string certs(const char* name) { return std::string(SR_TEST_CERTS) + "/" + name; }

struct pair_run;

// One end of the pair; every event goes to the run that owns it.
class end final : public sr::tls::stream {
 public:
  end(pair_run& run, sr::core::shard& sh, sr::net::buffer_ring& br, sr::net::chunk_pool& pool, int fd)
      : stream(sh, br, pool, fd), _run(run) {}
  bool begin(sr::tls::session s) { return start_tls(std::move(s)); }

 protected:
  void on_plain(sr::net::chunk* c, size_t len) override;
  void on_tls_ready() override;
  void on_tls_failed() override;
  void on_end(int) override;
  void on_closed() override;

 private:
  pair_run& _run;
};

// A shard, a socketpair and the two ends; drives the benchmark's iterations from inside
// the shard loop (KeepRunning() is called where the message has fully arrived).
struct pair_run {
  benchmark::State& state;
  const bool tls;
  std::string message;
  sr::core::shard shard{sr::core::shard::options{}};
  sr::net::chunk_pool pool{16 * 1024, 512};
  std::unique_ptr<sr::net::buffer_ring> ring;
  std::unique_ptr<end> client, server;
  size_t got = 0;
  int ready = 0, closed = 0;
  bool failed = false;

  pair_run(benchmark::State& s, bool with_tls, size_t size) : state(s), tls(with_tls), message(size, 'x') {
    for (size_t i = 76; i < message.size(); i += 78) message[i - 1] = '\r', message[i] = '\n';
  }

  void fail(const char* why) {
    if (!failed) state.SkipWithError(why);
    failed = true;
    finish();
  }

  void send_one() {
    iovec piece{message.data(), message.size()};
    client->send(std::span<const iovec>(&piece, 1));
    client->flush();
  }

  void on_ready() {
    if (++ready < 2) return;
    if (state.KeepRunning()) send_one();
    else finish();
  }

  void on_plain(size_t len) {
    got += len;
    if (got < message.size()) return;
    got -= message.size();
    if (state.KeepRunning()) send_one();
    else finish();
  }

  void finish() {
    if (closed < 0) return;
    closed = -2;  // counts up to 0 as the two ends close
    client->close(true);
    server->close(true);
  }

  void on_closed() {
    if (++closed == 0) shard.stop();
  }

  void run(const sr::tls::context* server_ctx, const sr::tls::context* client_ctx) {
    int fds[2];
    if (!shard.init() || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      state.SkipWithError("no io_uring shard or socketpair");
      return;
    }
    ring = std::make_unique<sr::net::buffer_ring>(pool, 256, 1);
    if (ring->register_with(shard.ring()) < 0) {
      state.SkipWithError("cannot register the buffer ring");
      return;
    }
    server = std::make_unique<end>(*this, shard, *ring, pool, fds[0]);
    client = std::make_unique<end>(*this, shard, *ring, pool, fds[1]);
    server->start_recv();
    client->start_recv();
    if (!tls) {
      ready = 1;
      on_ready();
    } else {
      auto ss = sr::tls::session::accept(*server_ctx);
      auto cs = sr::tls::session::connect(*client_ctx, "");
      if (!ss || !cs) return fail("tls session");
      server->begin(std::move(ss.value()));
      if (!client->begin(std::move(cs.value()))) return fail("client handshake");
    }
    shard.run();
  }
};

void end::on_plain(sr::net::chunk* c, size_t len) {
  _pool.release(c);
  if (this == _run.server.get()) _run.on_plain(len);
}
void end::on_tls_ready() { _run.on_ready(); }
void end::on_tls_failed() { _run.fail("handshake failed"); }
void end::on_end(int) {
  if (_run.closed >= 0) _run.fail("stream ended early");
}
void end::on_closed() { _run.on_closed(); }

const sr::tls::context* server_ctx() {
  static auto ctx = [] {
    return sr::tls::context::server(certs("server.crt"), certs("server.key"), sr::tls::tls_version::v1_2);
  }();
  return ctx ? &ctx.value() : nullptr;
}

const sr::tls::context* client_ctx() {
  static auto ctx = sr::tls::context::client(certs("ca.crt"), sr::tls::tls_version::v1_2);
  return ctx ? &ctx.value() : nullptr;
}

void BM_StreamMessage(benchmark::State& state, bool tls) {
  size_t size = size_t(state.range(0));
  if (tls && (!server_ctx() || !client_ctx())) {
    state.SkipWithError("no TLS context (tests/certs)");
    return;
  }
  pair_run run(state, tls, size);
  run.run(server_ctx(), client_ctx());
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(size));
}

BENCHMARK_CAPTURE(BM_StreamMessage, tls, true)->Arg(10 * 1024)->Arg(256 * 1024);
BENCHMARK_CAPTURE(BM_StreamMessage, plain, false)->Arg(10 * 1024)->Arg(256 * 1024);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("wolfssl", sr::tls::describe_library());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
