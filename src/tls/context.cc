// wolfSSL context construction: versions, credentials, cipher policy, resumption.
// Server: stateless tickets only (session cache off), so an idle session holds no cache
// slot; ticket keys are process-wide (ticket_keys.cc), so a resumption landing on another
// shard than the one that issued the ticket still resumes.
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "sealrelay/tls/context.hh"

#include <mutex>

#include "sealrelay/tls/library.hh"
#include "sealrelay/tls/session.hh"
#include "ticket_keys.hh"

namespace sr::tls {
namespace {

// AEAD with forward secrecy first; CBC-SHA2 ECDHE kept for older clients. No RC4, 3DES,
// NULL, EXPORT, static RSA or SHA-1 MACs. The AEAD that leads is the one this wolfSSL runs
// fastest on this CPU (server order wins in wolfSSL): AES-GCM when it takes the AES-NI path
// (tools/build-wolfssl's build), ChaCha20-Poly1305 when it does not (Debian's build, or a
// CPU without AES-NI: software ChaCha20 moves several times the bytes of software AES-GCM).
// Figures in README, "wolfSSL build" (bench/crypto_bench).
constexpr const char* server_ciphers_aesni =
    "TLS13-AES256-GCM-SHA384:TLS13-AES128-GCM-SHA256:TLS13-CHACHA20-POLY1305-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:"
    "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256";
constexpr const char* server_ciphers_soft =
    "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES256-GCM-SHA384:TLS13-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:"
    "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256";

void init_once() {
  static std::once_flag once;
  std::call_once(once, [] { wolfSSL_Init(); });
}

int wire_version(tls_version v) {
  switch (v) {
    case tls_version::v1_0: return TLS1_VERSION;
    case tls_version::v1_1: return TLS1_1_VERSION;
    case tls_version::v1_2: return TLS1_2_VERSION;
    case tls_version::v1_3: return TLS1_3_VERSION;
  }
  return TLS1_2_VERSION;
}

// Create a context with the version range applied; nullptr with `err` set on failure.
// Takes the method's factory, not a method: a method made before the range check was
// never handed to wolfSSL_CTX_new (which owns and frees it, even when it fails) and
// leaked on a refused range (LeakSanitizer, issue 12).
WOLFSSL_CTX* make(WOLFSSL_METHOD* (*method_fn)(), tls_version min_v, tls_version max_v,
                  std::string& err) {
  init_once();
  if (min_v > max_v) {
    err = "tls: min_version above max_version";
    return nullptr;
  }
  WOLFSSL_METHOD* method = method_fn();
  WOLFSSL_CTX* ctx = method ? wolfSSL_CTX_new(method) : nullptr;
  if (!ctx) {
    err = "tls: cannot create wolfSSL context";
    return nullptr;
  }
  if (wolfSSL_CTX_set_min_proto_version(ctx, wire_version(min_v)) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_set_max_proto_version(ctx, wire_version(max_v)) != WOLFSSL_SUCCESS) {
    err = std::string("tls: this wolfSSL cannot do ") + to_string(min_v) + ".." +
          to_string(max_v);
    wolfSSL_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

// Run one in-memory handshake against the new server context: the only check that
// catches a key that does not match the certificate (wolfSSL 5.5's
// check_private_key does not compare ECC keys).
bool self_test(const context& server, tls_version min_v, tls_version max_v) {
  auto cctx = context::client("", min_v, max_v);
  if (!cctx) return false;
  auto srv = session::accept(server);
  auto cli = session::connect(*cctx, "");
  if (!srv || !cli) return false;
  int hc = cli->handshake(), hs = 0;
  for (int i = 0; i < 8 && hc >= 0 && hs >= 0 && !(hc == 1 && hs == 1); ++i) {
    auto out = cli->pending_output();
    size_t n = out.size();
    srv->feed(out);
    hs = srv->handshake();
    cli->consume_output(n);
    out = srv->pending_output();
    n = out.size();
    cli->feed(out);
    hc = cli->handshake();
    srv->consume_output(n);
  }
  return hc == 1 && hs == 1;
}

}  // namespace

const char* to_string(tls_version v) {
  switch (v) {
    case tls_version::v1_0: return "TLSv1";
    case tls_version::v1_1: return "TLSv1.1";
    case tls_version::v1_2: return "TLSv1.2";
    case tls_version::v1_3: return "TLSv1.3";
  }
  return "?";
}

sr::result<context> context::server(const std::string& cert_file, const std::string& key_file,
                                     tls_version min_version, tls_version max_version) {
  std::string err;
  WOLFSSL_CTX* ctx = make(wolfSSLv23_server_method, min_version, max_version, err);
  if (!ctx) return sr::error{err};
  context c(ctx, role::server);  // frees ctx on every early return below
  if (wolfSSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != WOLFSSL_SUCCESS)
    return sr::error{"tls: cannot load certificate chain " + cert_file};
  if (wolfSSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), WOLFSSL_FILETYPE_PEM) !=
      WOLFSSL_SUCCESS)
    return sr::error{"tls: cannot load private key " + key_file};
  if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS)
    return sr::error{"tls: private key " + key_file + " does not match " + cert_file};
  const char* ciphers = library().aesni_used ? server_ciphers_aesni : server_ciphers_soft;
  if (wolfSSL_CTX_set_cipher_list(ctx, ciphers) != WOLFSSL_SUCCESS)
    return sr::error{"tls: cipher list rejected"};
  wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, nullptr);
  // Resumption through tickets only: the server keeps no per-session cache entry.
  wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
  if (!use_shared_ticket_keys(ctx)) return sr::error{"tls: cannot set the session ticket keys"};
  if (!self_test(c, min_version, max_version))
    return sr::error{"tls: private key " + key_file + " does not match " + cert_file +
                     " (test handshake failed)"};
  return c;
}

sr::result<context> context::client(const std::string& ca_file, tls_version min_version,
                                     tls_version max_version) {
  std::string err;
  WOLFSSL_CTX* ctx = make(wolfSSLv23_client_method, min_version, max_version, err);
  if (!ctx) return sr::error{err};
  context c(ctx, role::client);
  if (!ca_file.empty() &&
      wolfSSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != WOLFSSL_SUCCESS)
    return sr::error{"tls: cannot load CA file " + ca_file};
  // Sessions set their own verify callback that records and never aborts.
  wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, nullptr);
  // Resumption goes through our session_cache, not wolfSSL's global one.
  wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
  wolfSSL_CTX_UseSessionTicket(ctx);
  return c;
}

context& context::operator=(context&& o) noexcept {
  if (this != &o) {
    if (_ctx) wolfSSL_CTX_free(_ctx);
    _ctx = o._ctx;
    _role = o._role;
    o._ctx = nullptr;
  }
  return *this;
}

context::~context() {
  if (_ctx) wolfSSL_CTX_free(_ctx);
}

}  // namespace sr::tls
