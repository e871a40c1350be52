// TLS session over in-memory buffers: wolfSSL's I/O callbacks read the caller's lent span
// (or the small carry-over buffer) and append ciphertext to the pending-output buffer.
// Certificate checks run in a verify callback that records the worst fault and always
// lets the handshake go on; the name check runs once the handshake is done.
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include "sealrelay/tls/session.hh"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>

#include "sealrelay/tls/session_cache.hh"
#include "peer_check.hh"

// The client takes the peer chain in the verify callback's call for the leaf, which only
// comes when verification succeeds if the library always calls back.
#ifndef WOLFSSL_ALWAYS_VERIFY_CB
#error "sealrelay needs a wolfSSL built with WOLFSSL_ALWAYS_VERIFY_CB (--enable-distro has it)"
#endif

namespace sr::tls {

namespace {

cert_verdict worst(cert_verdict a, cert_verdict b) { return a > b ? a : b; }

// Map a chain error (wolfSSL or OpenSSL-compat numbering) to a verdict.
cert_verdict verdict_of(int err) {
  switch (err) {
    case ASN_AFTER_DATE_E:
    case ASN_BEFORE_DATE_E:
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:  // what wolfSSL 5.5 reports for dates
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
      return cert_verdict::expired;
    case ASN_NO_SIGNER_E:
    case ASN_SELF_SIGNED_E:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      return cert_verdict::untrusted;
    default:
      return cert_verdict::invalid;
  }
}

bool want_io(int e) { return e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE; }

constexpr int max_chain = 16;  // certificates kept from a peer's chain (DANE looks at these)

// Decode a certificate the peer sent; null when it does not parse.
WOLFSSL_X509* decode(const std::vector<uint8_t>& der) {
  const unsigned char* p = der.data();
  return wolfSSL_d2i_X509(nullptr, &p, static_cast<int>(der.size()));
}

}  // namespace

// wolfSSL callbacks; a struct so they may touch session's private members.
struct io_hooks {
  // Hand wolfSSL up to sz bytes of input: carry-over first, then the lent span.
  static int recv(WOLFSSL*, char* buf, int sz, void* ctx) {
    auto* s = static_cast<session*>(ctx);
    if (sz <= 0) return 0;
    size_t want = static_cast<size_t>(sz);
    if (s->_in_off < s->_in.size()) {
      size_t n = std::min(want, s->_in.size() - s->_in_off);
      std::memcpy(buf, s->_in.data() + s->_in_off, n);
      s->_in_off += n;
      if (s->_in_off == s->_in.size()) {
        std::vector<std::byte>().swap(s->_in);
        s->_in_off = 0;
      }
      return static_cast<int>(n);
    }
    if (!s->_lent.empty()) {
      size_t n = std::min(want, s->_lent.size());
      std::memcpy(buf, s->_lent.data(), n);
      s->_lent = s->_lent.subspan(n);
      return static_cast<int>(n);
    }
    return s->_eof ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
  }

  // Append ciphertext to pending output; never blocks, so always accepts everything.
  static int send(WOLFSSL*, char* buf, int sz, void* ctx) {
    auto* s = static_cast<session*>(ctx);
    if (sz <= 0) return 0;
    s->_out.append(buf, static_cast<size_t>(sz));
    return sz;
  }

  // Record chain faults and continue: the policy engine, not wolfSSL, decides. The call
  // for the leaf (depth 0; this build calls back for every certificate,
  // WOLFSSL_ALWAYS_VERIFY_CB) also copies the whole chain as sent, for DANE and the name
  // check: the library keeps no chain per session (built without SESSION_CERTS).
  static int verify(int preverify, WOLFSSL_X509_STORE_CTX* store) {
    auto* ssl = static_cast<WOLFSSL*>(
        wolfSSL_X509_STORE_CTX_get_ex_data(store, wolfSSL_get_ex_data_X509_STORE_CTX_idx()));
    auto* s = ssl ? static_cast<session*>(wolfSSL_GetIOReadCtx(ssl)) : nullptr;
    if (!s) return 1;
    if (!preverify)
      s->_verdict = worst(s->_verdict, verdict_of(wolfSSL_X509_STORE_CTX_get_error(store)));
    s->_chain_seen = true;
    if (store->error_depth == 0 && store->certs && store->totalCerts > 0) {
      s->_peer_chain.clear();
      int n = std::min(store->totalCerts, max_chain);
      for (int i = 0; i < n; ++i) {
        const WOLFSSL_BUFFER_INFO& c = store->certs[i];
        if (c.buffer && c.length > 0) s->_peer_chain.emplace_back(c.buffer, c.buffer + c.length);
      }
    }
    return 1;
  }

  // A (TLS 1.3 post-handshake or TLS 1.2) ticket arrived; store it once the call returns,
  // when wolfSSL has finished filling the session in.
  static int ticket(WOLFSSL*, const unsigned char*, int, void* ctx) {
    static_cast<session*>(ctx)->_ticket_seen = true;
    return 0;
  }
};

const char* to_string(cert_verdict v) {
  switch (v) {
    case cert_verdict::none: return "none";
    case cert_verdict::verified: return "verified";
    case cert_verdict::name_mismatch: return "cert-name-mismatch";
    case cert_verdict::expired: return "cert-expired";
    case cert_verdict::invalid: return "cert-invalid";
    case cert_verdict::untrusted: return "cert-untrusted";
    case cert_verdict::tlsa_mismatch: return "tlsa-mismatch";
  }
  return "?";
}

session::session(WOLFSSL* ssl, bool client) : _ssl(ssl), _client(client) {}

sr::result<session> session::accept(const context& ctx) {
  if (!ctx.native() || ctx.role() != role::server) return sr::error{"tls: not a server context"};
  WOLFSSL* ssl = wolfSSL_new(ctx.native());
  if (!ssl) return sr::error{"tls: cannot create session"};
  session s(ssl, false);
  s.bind();
  return s;
}

sr::result<session> session::connect(const context& ctx, std::string_view host,
                                     session_cache* cache, std::span<const tlsa_record> tlsa) {
  if (!ctx.native() || ctx.role() != role::client) return sr::error{"tls: not a client context"};
  WOLFSSL* ssl = wolfSSL_new(ctx.native());
  if (!ssl) return sr::error{"tls: cannot create session"};
  session s(ssl, true);
  s._host.assign(host);
  s._cache = cache;
  for (const auto& r : tlsa)
    if (r.usable()) s._tlsa.push_back(r);
  s._dane_checked = !s._tlsa.empty();
  // DANE sessions live under their own key per record set: a resumption restores no
  // verdict made by the CA file or against other records.
  if (s._dane_checked) s._dane_tag = dane_cache_tag(s._tlsa);
  wolfSSL_set_verify(ssl, WOLFSSL_VERIFY_PEER, io_hooks::verify);
  if (!s._host.empty() && !is_ip_literal(s._host) &&
      wolfSSL_UseSNI(ssl, WOLFSSL_SNI_HOST_NAME, s._host.data(),
                     static_cast<unsigned short>(s._host.size())) != WOLFSSL_SUCCESS)
    return sr::error{"tls: cannot set SNI " + s._host};
  if (cache && !s._host.empty()) {
    if (const auto* e = cache->find(s._host + s._dane_tag);
        e && wolfSSL_set_session(ssl, e->session) == WOLFSSL_SUCCESS) {
      s._cached_verdict = e->verdict;
      s._cached_subject = e->subject;
    }
  }
  s.bind();
  return s;
}

void session::bind() {
  wolfSSL_SSLSetIORecv(_ssl, io_hooks::recv);
  wolfSSL_SSLSetIOSend(_ssl, io_hooks::send);
  wolfSSL_SetIOReadCtx(_ssl, this);
  wolfSSL_SetIOWriteCtx(_ssl, this);
  if (_client) wolfSSL_set_SessionTicket_cb(_ssl, io_hooks::ticket, this);
}

session::session(session&& o) noexcept
    : _ssl(o._ssl),
      _cache(o._cache),
      _host(std::move(o._host)),
      _dane_tag(std::move(o._dane_tag)),
      _tlsa(std::move(o._tlsa)),
      _dane(o._dane),
      _subject(std::move(o._subject)),
      _cached_subject(std::move(o._cached_subject)),
      _peer_chain(std::move(o._peer_chain)),
      _lent(o._lent),
      _in(std::move(o._in)),
      _in_off(o._in_off),
      _out(std::move(o._out)),
      _out_off(o._out_off),
      _reason(o._reason),
      _error(o._error),
      _verdict(o._verdict),
      _cached_verdict(o._cached_verdict),
      _client(o._client),
      _done(o._done),
      _eof(o._eof),
      _peer_closed(o._peer_closed),
      _ticket_seen(o._ticket_seen),
      _chain_seen(o._chain_seen),
      _dane_checked(o._dane_checked) {
  o._ssl = nullptr;
  o._lent = {};
  if (_ssl) bind();
}

session& session::operator=(session&& o) noexcept {
  if (this != &o) {
    this->~session();
    new (this) session(std::move(o));
  }
  return *this;
}

session::~session() {
  if (_ssl) wolfSSL_free(_ssl);
}

void session::feed(std::span<const std::byte> ciphertext) {
  keep_unconsumed();  // a previous span never outlives its call, but be safe
  _lent = ciphertext;
}

void session::keep_unconsumed() {
  if (_lent.empty()) return;
  if (_in_off > 0) {
    _in.erase(_in.begin(), _in.begin() + static_cast<ptrdiff_t>(_in_off));
    _in_off = 0;
  }
  _in.insert(_in.end(), _lent.begin(), _lent.end());
  _lent = {};
}

int session::fail(int err) {
  _error = err ? err : -1;
  _reason = "handshake-failed";
  if (err == VERSION_ERROR) {
    _reason = "old-protocol";
  } else if (err == FATAL_ERROR) {
    WOLFSSL_ALERT_HISTORY h{};
    if (wolfSSL_get_alert_history(_ssl, &h) == WOLFSSL_SUCCESS &&
        h.last_rx.code == protocol_version)
      _reason = "old-protocol";
  } else if (_done) {
    _reason = "tls-error";  // after the handshake: bad record, MAC failure, ...
  }
  _lent = {};
  std::vector<std::byte>().swap(_in);
  _in_off = 0;
  return failed;
}

int session::handshake() {
  if (!_ssl) return failed;
  if (_error) return fail(_error);
  int ret = 1;
  if (!_done) {
    int r = _client ? wolfSSL_connect(_ssl) : wolfSSL_accept(_ssl);
    if (r == WOLFSSL_SUCCESS) {
      _done = true;
      on_handshake_done();
    } else {
      int e = wolfSSL_get_error(_ssl, r);
      if (!want_io(e)) return fail(e);
      ret = want_input;
    }
  }
  if (_ticket_seen) remember_session();
  keep_unconsumed();
  return ret;
}

void session::on_handshake_done() {
  // This wolfSSL build (OPENSSL_EXTRA, keying-material export) keeps the handshake arrays
  // for the session's life; we never export keys, so drop them: ~5 KiB per idle session.
  wolfSSL_FreeArrays(_ssl);
  if (!_client) return;
  if (resumed()) {
    _verdict = _cached_verdict;
    _subject = std::move(_cached_subject);
  } else {
    WOLFSSL_X509* cert = _peer_chain.empty() ? nullptr : decode(_peer_chain.front());
    if (!cert) {
      _verdict = cert_verdict::invalid;
    } else {
      if (_dane_checked) {
        check_dane();
      } else {
        if (_verdict == cert_verdict::none) _verdict = cert_verdict::verified;
        if (!_host.empty() && !names_host(cert, _host))
          _verdict = worst(_verdict, cert_verdict::name_mismatch);
      }
      char buf[512];
      if (wolfSSL_X509_NAME_oneline(wolfSSL_X509_get_subject_name(cert), buf, sizeof buf))
        _subject = buf;
      wolfSSL_X509_free(cert);
    }
  }
  std::string().swap(_cached_subject);
  std::vector<tlsa_record>().swap(_tlsa);
  // TLS 1.2 hands out its ticket or session id inside the handshake.
  if (wolfSSL_version(_ssl) != TLS1_3_VERSION) _ticket_seen = true;
}

void session::check_dane() {
  // The verify callback's CA verdict is ignored: DANE decides (RFC 7672 §3.1).
  std::array<std::span<const uint8_t>, max_chain> certs;
  size_t n = 0;
  for (const auto& der : _peer_chain) certs[n++] = der;
  _dane = match_tlsa(std::span(certs).first(n), _tlsa, _host);
  _verdict = _dane.verdict;
}

void session::remember_session() {
  _ticket_seen = false;
  if (!_cache || !_done || _host.empty()) return;
  WOLFSSL_SESSION* cur = wolfSSL_get_session(_ssl);
  if (!cur || !wolfSSL_SESSION_is_resumable(cur)) return;
  WOLFSSL_SESSION* copy = wolfSSL_SESSION_dup(cur);
  if (copy) _cache->store(_host + _dane_tag, copy, _verdict, _subject);
}

int session::read(std::span<std::byte> out) {
  if (!_ssl) return failed;
  if (_error) return fail(_error);
  if (_peer_closed) return closed;
  size_t got = 0;
  int status = want_input;
  while (got < out.size()) {
    int want = static_cast<int>(std::min<size_t>(out.size() - got, INT_MAX));
    int r = wolfSSL_read(_ssl, out.data() + got, want);
    if (r > 0) {
      got += static_cast<size_t>(r);
      continue;
    }
    int e = wolfSSL_get_error(_ssl, r);
    if (want_io(e)) break;
    if (e == WOLFSSL_ERROR_ZERO_RETURN) {
      _peer_closed = true;
      status = closed;
    } else {
      status = fail(e);
    }
    break;
  }
  if (!_done && wolfSSL_is_init_finished(_ssl)) {
    _done = true;
    on_handshake_done();
  }
  if (_ticket_seen) remember_session();
  keep_unconsumed();
  return got > 0 ? static_cast<int>(std::min<size_t>(got, INT_MAX)) : status;
}

int session::write(std::span<const std::byte> plain) {
  if (!_ssl) return failed;
  if (_error) return fail(_error);
  size_t done = 0;
  while (done < plain.size()) {
    int chunk = static_cast<int>(std::min<size_t>(plain.size() - done, 1u << 30));
    int r = wolfSSL_write(_ssl, plain.data() + done, chunk);
    if (r > 0) {
      done += static_cast<size_t>(r);
      continue;
    }
    int e = wolfSSL_get_error(_ssl, r);
    if (want_io(e)) break;  // handshake not finished: needs input first
    return fail(e);
  }
  keep_unconsumed();
  return static_cast<int>(std::min<size_t>(done, INT_MAX));
}

void session::shutdown() {
  if (!_ssl || _error || !_done) return;
  wolfSSL_shutdown(_ssl);  // queues close_notify; we do not wait for the peer's
  keep_unconsumed();
}

void session::consume_output(size_t n) {
  _out_off += std::min(n, _out.size() - _out_off);
  if (_out_off == _out.size()) {
    std::string().swap(_out);
    _out_off = 0;
  } else if (_out_off >= 64 * 1024 && _out_off * 2 >= _out.size()) {
    _out.erase(0, _out_off);
    _out_off = 0;
  }
}

void session::take_output(std::string& into) {
  if (_out_off < _out.size()) {
    if (into.empty() && _out_off == 0) into.swap(_out);
    else into.append(_out, _out_off);
  }
  std::string().swap(_out);  // `into`'s old buffer, if swapped: an idle session holds none
  _out_off = 0;
}

std::string_view session::version() const {
  if (!_ssl || !_done) return {};
  const char* v = wolfSSL_get_version(_ssl);
  return v ? std::string_view(v) : std::string_view();
}

std::string_view session::cipher() const {
  if (!_ssl || !_done) return {};
  int suite = wolfSSL_get_current_cipher_suite(_ssl);
  const char* n = wolfSSL_get_cipher_name_iana_from_suite(static_cast<unsigned char>(suite >> 8),
                                                          static_cast<unsigned char>(suite));
  return n ? std::string_view(n) : std::string_view();
}

int session::cipher_bits() const {
  if (!_ssl || !_done) return 0;
  const WOLFSSL_CIPHER* c = wolfSSL_get_current_cipher(_ssl);
  return c ? wolfSSL_CIPHER_get_bits(c, nullptr) : 0;
}

bool session::resumed() const { return _ssl && wolfSSL_session_reused(_ssl) == 1; }

}  // namespace sr::tls
