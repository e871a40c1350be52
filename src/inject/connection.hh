// One HTTP API connection: a tls::stream (HTTPS, or plain on loopback) carrying HTTP/1.1
// requests one at a time (keep-alive; pipelined bytes wait their turn). The head is checked
// as soon as it is parsed (route, method, token, Content-Type; "100 Continue" when asked),
// so a refused request never has its body read; the body is then parsed, built and handed
// to the spool, and the answer waits until the message is durable.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "sealrelay/api/request.hh"
#include "sealrelay/http/message.hh"
#include "sealrelay/tls/stream.hh"

namespace sr::inject {

class shard_server;

class connection final : public tls::stream {
 public:
  connection(shard_server& srv, int fd, std::string peer_ip, unsigned ip_slot);
  ~connection() override;

  // Start the TLS handshake (HTTPS) and reading.
  void start();
  // Answer `code` with a JSON error and close (caps, drain at accept).
  void refuse(uint16_t code, std::string_view error);
  // Check deadlines against `now_ms` (the shard's tick).
  void check_deadline(uint64_t now_ms);
  // Stop serving: close now when between requests, else after this request's answer.
  void begin_drain();
  void force_close() { stream::close(true); }
  const std::string& peer_ip() const { return _peer_ip; }
  unsigned ip_slot() const { return _ip_slot; }

  connection* prev = nullptr;  // shard_server's intrusive list
  connection* next = nullptr;

 private:
  // What the connection is doing; each state says what input means.
  enum class state : uint8_t {
    reading,    // parsing a request (or waiting for one between requests)
    storing,    // the request's message is being made durable: input waits in _in
    lingering,  // the last answer is out and the write side shut: input is dropped until EOF
  };

  // tls::stream
  void on_plain(net::chunk* c, size_t len) override;
  void on_tls_ready() override;
  void on_tls_failed() override;
  void on_end(int err) override;
  void on_closed() override;
  void on_drained() override;

  void pump();
  // Check the parsed head; false when it was refused (answered, connection closing).
  bool check_head();
  void handle_request();
  void on_stored(bool ok);
  // Queue a response; `close` ends the connection after it (Connection: close).
  void respond(uint16_t code, std::string_view body, bool close, bool www_authenticate = false,
               bool allow_post = false);
  void respond_error(const api::api_error& e, bool close, bool www_authenticate = false,
                     bool allow_post = false);
  void next_request();

  shard_server& _srv;
  std::string _peer_ip;
  unsigned _ip_slot;
  state _state = state::reading;
  std::unique_ptr<http::request_parser> _req;
  std::string _in;       // received plaintext not yet fed to the parser
  std::size_t _in_off = 0;
  bool _head_checked = false;
  bool _close_after = false;   // the answer queued is the last one
  std::size_t _token_index = 0;
  std::string _queue_id;       // the message being stored
  std::size_t _rcpt_count = 0;
  bool _keep_alive = true;     // the stored request's client keeps the connection
  bool _peer_done = false;     // the client closed its side while its message was stored
  std::optional<api::api_error> _refusal;  // caps or drain at accept: the first answer


  uint64_t _last_activity_ms = 0;    // last input or answer
  uint64_t _request_started_ms = 0;  // first byte of the request being read (0 = none)
  uint64_t _phase_started_ms = 0;    // TLS handshake start, or lingering start
  uint64_t _closing_since_ms = 0;    // first deadline check that found us closing
};

}  // namespace sr::inject
