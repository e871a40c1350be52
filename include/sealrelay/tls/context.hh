// wolfSSL contexts (one per shard and role): RAII over WOLFSSL_CTX*.
// The server context speaks TLS 1.2/1.3 with ECDHE AEAD suites and stateless session
// tickets (no server session cache: resumption costs no memory per session). The client
// context never lets wolfSSL enforce certificate checks: sessions record a verdict and
// the policy engine decides. No wolfSSL header leaks out of src/tls (DESIGN.md §2).
#pragma once
#include <cstdint>
#include <string>

#include "sealrelay/util/result.hh"

struct WOLFSSL_CTX;

namespace sr::tls {

// Protocol versions, in the same order as config::tls_version.
enum class tls_version : uint8_t { v1_0, v1_1, v1_2, v1_3 };

// Return the wire name of a version ("TLSv1.2").
const char* to_string(tls_version v);

enum class role : uint8_t {
  server,  // accepts: inbound listeners, sinks
  client,  // connects: outbound delivery, MTA-STS fetches
};

class context {
 public:
  // Build a server context from PEM files; versions [min_version, max_version].
  static sr::result<context> server(const std::string& cert_file, const std::string& key_file,
                                    tls_version min_version,
                                    tls_version max_version = tls_version::v1_3);
  // Build a client context trusting ca_file (PEM bundle; "" = trust nothing, every
  // peer then reads "untrusted"); versions [min_version, max_version].
  static sr::result<context> client(const std::string& ca_file, tls_version min_version,
                                    tls_version max_version = tls_version::v1_3);

  context(context&& o) noexcept : _ctx(o._ctx), _role(o._role) { o._ctx = nullptr; }
  context& operator=(context&& o) noexcept;
  context(const context&) = delete;
  context& operator=(const context&) = delete;
  ~context();

  WOLFSSL_CTX* native() const { return _ctx; }
  enum role role() const { return _role; }

 private:
  context(WOLFSSL_CTX* ctx, enum role r) : _ctx(ctx), _role(r) {}

  WOLFSSL_CTX* _ctx;
  enum role _role;
};

}  // namespace sr::tls
