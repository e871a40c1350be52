// SHA-256 stream and DKIM signing keys over wolfCrypt (sign.hh). PEM → DER with
// wc_KeyPemToDer; RSA keys decoded from PKCS#1 or PKCS#8, Ed25519 keys from PKCS#8
// (RFC 8410, what `openssl genpkey -algorithm ed25519` writes). Key material in
// temporary buffers is wiped; wolfCrypt wipes its own key objects when freed.
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "sealrelay/tls/sign.hh"
#include "thread_rng.hh"

#include <fstream>
#include <new>
#include <sstream>

#ifndef HAVE_ED25519
#error "sealrelay needs wolfSSL with Ed25519 (Debian's libwolfssl-dev has it)"
#endif

namespace sr::tls {

namespace {

static_assert(sizeof(wc_Sha256) <= 160 && alignof(wc_Sha256) <= 16,
              "sha256_stream::_state too small for this wolfSSL's wc_Sha256");

void wipe(void* p, std::size_t n) {
  volatile uint8_t* v = static_cast<volatile uint8_t*>(p);
  while (n--) *v++ = 0;
}

}  // namespace

sha256_stream::sha256_stream() {
  new (_state.data()) wc_Sha256;
  wc_InitSha256(reinterpret_cast<wc_Sha256*>(_state.data()));
}

sha256_stream::~sha256_stream() { wc_Sha256Free(reinterpret_cast<wc_Sha256*>(_state.data())); }

void sha256_stream::update(std::span<const uint8_t> data) {
  auto* s = reinterpret_cast<wc_Sha256*>(_state.data());
  // wc_Sha256Update takes a word32 length: feed huge spans in slices.
  while (!data.empty()) {
    const std::size_t n = std::min<std::size_t>(data.size(), 1u << 30);
    wc_Sha256Update(s, data.data(), static_cast<word32>(n));
    data = data.subspan(n);
  }
}

sha256_digest sha256_stream::finish() {
  sha256_digest d{};
  wc_Sha256Final(reinterpret_cast<wc_Sha256*>(_state.data()), d.data());  // also resets
  return d;
}

std::string_view to_string(key_kind k) {
  switch (k) {
    case key_kind::rsa: return "rsa";
    case key_kind::ed25519: return "ed25519";
  }
  return "?";
}

struct signing_key::impl {
  key_kind kind = key_kind::rsa;
  bool inited = false;
  RsaKey rsa{};
  ed25519_key ed{};
  ~impl() {
    if (!inited) return;
    if (kind == key_kind::rsa)
      wc_FreeRsaKey(&rsa);
    else
      wc_ed25519_free(&ed);
  }
};

signing_key::signing_key(std::unique_ptr<impl> p) : _impl(std::move(p)) {}
signing_key::signing_key(signing_key&&) noexcept = default;
signing_key& signing_key::operator=(signing_key&&) noexcept = default;
signing_key::~signing_key() = default;

key_kind signing_key::kind() const { return _impl->kind; }

unsigned signing_key::bits() const {
  if (_impl->kind == key_kind::ed25519) return 256;
  return static_cast<unsigned>(wc_RsaEncryptSize(&_impl->rsa)) * 8;
}

std::size_t signing_key::signature_size() const {
  if (_impl->kind == key_kind::ed25519) return ED25519_SIG_SIZE;
  return static_cast<std::size_t>(wc_RsaEncryptSize(&_impl->rsa));
}

result<signing_key> signing_key::load_pem_file(const std::string& path, std::string* warning) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return error{path + ": cannot read the private key file"};
  std::stringstream ss;
  ss << in.rdbuf();
  std::string pem = ss.str();
  auto k = load_pem(pem, warning);
  wipe(pem.data(), pem.size());
  if (!k) return error{path + ": " + k.err()};
  return k;
}

result<signing_key> signing_key::load_pem(std::string_view pem, std::string* warning) {
  if (pem.size() > (1u << 20)) return error{"private key: PEM larger than 1 MiB"};
  std::vector<uint8_t> der(pem.size());
  const int der_len = wc_KeyPemToDer(reinterpret_cast<const unsigned char*>(pem.data()),
                                     static_cast<int>(pem.size()), der.data(),
                                     static_cast<int>(der.size()), nullptr);
  if (der_len <= 0)
    return error{"private key: not a PEM private key (encrypted keys are not supported)"};
  der.resize(static_cast<std::size_t>(der_len));
  struct wiper {
    std::vector<uint8_t>& v;
    ~wiper() { wipe(v.data(), v.size()); }
  } wipe_der{der};

  auto p = std::make_unique<impl>();

  // Ed25519: only PKCS#8 (RFC 8410) exists; try it first, it fails fast on RSA.
  if (wc_ed25519_init(&p->ed) == 0) {
    word32 idx = 0;
    if (wc_Ed25519PrivateKeyDecode(der.data(), &idx, &p->ed, static_cast<word32>(der.size())) == 0) {
      p->kind = key_kind::ed25519;
      p->inited = true;
      if (!p->ed.pubKeySet) {
        // A private-only PKCS#8 key: derive the public half, which signing needs.
        uint8_t pub[ED25519_PUB_KEY_SIZE];
        uint8_t priv[ED25519_KEY_SIZE];
        word32 priv_len = sizeof priv;
        if (wc_ed25519_make_public(&p->ed, pub, sizeof pub) != 0 ||
            wc_ed25519_export_private_only(&p->ed, priv, &priv_len) != 0 ||
            wc_ed25519_import_private_key(priv, priv_len, pub, sizeof pub, &p->ed) != 0) {
          wipe(priv, sizeof priv);
          return error{"private key: Ed25519 public key could not be derived"};
        }
        wipe(priv, sizeof priv);
      }
      return signing_key(std::move(p));
    }
    wc_ed25519_free(&p->ed);
  }

  if (wc_InitRsaKey(&p->rsa, nullptr) != 0) return error{"private key: RSA init failed"};
  p->kind = key_kind::rsa;
  p->inited = true;
  word32 off = 0;
  if (int o = wc_GetPkcs8TraditionalOffset(der.data(), &off, static_cast<word32>(der.size())); o < 0)
    off = 0;  // not PKCS#8: PKCS#1 from the start
  if (wc_RsaPrivateKeyDecode(der.data(), &off, &p->rsa, static_cast<word32>(der.size())) != 0)
    return error{"private key: neither an RSA nor an Ed25519 private key"};
  signing_key key(std::move(p));
  const unsigned bits = key.bits();
  if (bits < 1024)
    return error{"private key: RSA key of " + std::to_string(bits) + " bits; at least 1024 needed"};
  if (bits < 2048 && warning)
    *warning = "RSA key of " + std::to_string(bits) + " bits; 2048 or more is recommended (RFC 8301)";
  return key;
}

result<std::vector<uint8_t>> signing_key::sign_digest(const sha256_digest& digest) {
  std::vector<uint8_t> sig(signature_size());
  if (_impl->kind == key_kind::ed25519) {
    word32 len = static_cast<word32>(sig.size());
    if (int rc = wc_ed25519_sign_msg(digest.data(), static_cast<word32>(digest.size()), sig.data(),
                                     &len, &_impl->ed);
        rc != 0)
      return error{"ed25519 sign failed (" + std::to_string(rc) + ")"};
    sig.resize(len);
    return sig;
  }
  WC_RNG* rng = this_thread_rng();
  if (!rng) return error{"rsa sign: wolfCrypt RNG could not be seeded"};
  // DigestInfo (SHA-256 OID + digest), then the PKCS#1 v1.5 type-1 padding of RsaSSL_Sign.
  uint8_t info[64];  // SHA-256 DigestInfo: 19 bytes of prefix + 32
  const int oid = wc_HashGetOID(WC_HASH_TYPE_SHA256);
  if (oid < 0) return error{"rsa sign: no SHA-256 OID"};
  const word32 info_len = wc_EncodeSignature(info, digest.data(), static_cast<word32>(digest.size()), oid);
  if (info_len == 0) return error{"rsa sign: DigestInfo encoding failed"};
  const int n = wc_RsaSSL_Sign(info, info_len, sig.data(), static_cast<word32>(sig.size()),
                               &_impl->rsa, rng);
  if (n <= 0) return error{"rsa sign failed (" + std::to_string(n) + ")"};
  sig.resize(static_cast<std::size_t>(n));
  return sig;
}

}  // namespace sr::tls
