// S/MIME enveloped-data through wolfSSL's PKCS#7 (CMS EnvelopedData, RFC 5652): the content
// is AES-256-CBC under a fresh key, the key is RSA-encrypted to the recipient certificate
// (KeyTransRecipientInfo, issuer and serial number). wolfSSL 5.5's KTRI always writes
// rsaEncryption (PKCS#1 v1.5): it has no switch for RSAES-OAEP, which RFC 8551 allows as
// the alternative; tests/unit/tls/smime_test.cc checks what `openssl cms` reads.
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/pkcs7.h>
#include <wolfssl/wolfcrypt/random.h>

#include "sealrelay/tls/smime.hh"

#include "sealrelay/util/text.hh"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <vector>

namespace sr::tls {

namespace {

// The largest message we hand to wolfSSL (its sizes are 32-bit; the relay's own message
// size limit is far below this).
constexpr size_t max_message = size_t(1) << 30;
constexpr size_t max_cert_file = size_t(1) << 20;

std::string wolf_error(const char* what, int code) {
  return std::string(what) + ": " + wc_GetErrorString(code) + " (" + std::to_string(code) + ")";
}

// `m` with every bare LF turned into CRLF (RFC 8551 §3.1.1 canonical form).
std::string canonical_crlf(std::string_view m) {
  std::string out;
  out.reserve(m.size() + m.size() / 64);
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r')) out += '\r';
    out += m[i];
  }
  return out;
}

// The outer header of the envelope: the kept fields of the canonical message's header, in
// their order and with their folding, and "Subject: ..." in place of the subject.
std::string outer_fields(std::string_view m) {
  static constexpr std::array<std::string_view, 5> kept = {"From", "To", "Cc", "Date", "Message-ID"};
  size_t end = m.find("\r\n\r\n");
  std::string_view header = m.substr(0, end == std::string_view::npos ? m.size() : end + 2);
  if (m.substr(0, 2) == "\r\n") header = {};
  std::string out;
  bool subject = false;
  size_t pos = 0;
  while (pos < header.size()) {
    // One field: its first line and every continuation line (starting with SP or HT).
    size_t stop = pos;
    do {
      size_t eol = header.find("\r\n", stop);
      stop = eol == std::string_view::npos ? header.size() : eol + 2;
    } while (stop < header.size() && (header[stop] == ' ' || header[stop] == '\t'));
    std::string_view field = header.substr(pos, stop - pos);
    pos = stop;
    size_t colon = field.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = field.substr(0, colon);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    if (iequals(name, "Subject")) {
      if (!subject) out += "Subject: ...\r\n";
      subject = true;
      continue;
    }
    for (std::string_view k : kept) {
      if (!iequals(name, k)) continue;
      out += field;
      if (field.size() < 2 || field.substr(field.size() - 2) != "\r\n") out += "\r\n";
      break;
    }
  }
  return out;
}

struct pkcs7_free {
  void operator()(PKCS7* p) const { wc_PKCS7_Free(p); }
};

// A seeded wolfCrypt generator, freed with its owner.
class rng {
 public:
  rng() { _ok = wc_InitRng(&_rng) == 0; }
  ~rng() {
    if (_ok) wc_FreeRng(&_rng);
  }
  rng(const rng&) = delete;
  rng& operator=(const rng&) = delete;
  bool ok() const { return _ok; }
  WC_RNG* get() { return &_rng; }

 private:
  WC_RNG _rng{};
  bool _ok = false;
};

}  // namespace

sr::result<std::string> smime_envelope(std::string_view message, std::string_view recipient_cert_pem) {
  if (message.size() > max_message) return error{"message too large for S/MIME"};
  if (recipient_cert_pem.size() > max_cert_file) return error{"recipient certificate too large"};

  std::vector<uint8_t> der(recipient_cert_pem.size() + 1);
  int der_len = wc_CertPemToDer(reinterpret_cast<const unsigned char*>(recipient_cert_pem.data()),
                                int(recipient_cert_pem.size()), der.data(), int(der.size()), CERT_TYPE);
  if (der_len <= 0) return error{"recipient certificate: not a PEM certificate"};
  der.resize(size_t(der_len));

  std::unique_ptr<PKCS7, pkcs7_free> p7(wc_PKCS7_New(nullptr, INVALID_DEVID));
  if (!p7) return error{"S/MIME: out of memory"};
  // InitWithCert parses the certificate and, for EnvelopedData, adds it as the one KTRI
  // recipient (issuer and serial number) when the envelope is encoded.
  if (int r = wc_PKCS7_InitWithCert(p7.get(), der.data(), word32(der.size())); r != 0)
    return error{wolf_error("recipient certificate", r)};
  if (p7->publicKeyOID != RSAk)
    return error{p7->publicKeyOID == ECDSAk
                     ? "recipient certificate has an EC key; S/MIME here needs an RSA key (key transport)"
                     : "recipient certificate key is not RSA; S/MIME here needs an RSA key (key transport)"};

  rng gen;
  if (!gen.ok()) return error{"S/MIME: cannot seed the random generator"};
  std::string inner = canonical_crlf(message);
  p7->rng = gen.get();
  p7->content = reinterpret_cast<byte*>(inner.data());
  p7->contentSz = word32(inner.size());
  p7->contentOID = DATA;
  p7->encryptOID = AES256CBCb;

  // The content grows by at most one AES block of padding; the rest (recipient info with
  // the certificate's issuer and an RSA block of at most 8192 bits, OIDs, IV, lengths) is
  // bounded by the certificate's size plus a margin.
  std::vector<uint8_t> out(inner.size() + 16 + der.size() + 4096);
  int n = wc_PKCS7_EncodeEnvelopedData(p7.get(), out.data(), word32(out.size()));
  if (n <= 0) return error{wolf_error("S/MIME envelope", n)};

  std::string msg = outer_fields(inner);
  msg +=
      "MIME-Version: 1.0\r\n"
      "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"\r\n"
      "Content-Transfer-Encoding: base64\r\n"
      "Content-Disposition: attachment; filename=\"smime.p7m\"\r\n"
      "\r\n";
  append_base64_lines(msg, std::string_view(reinterpret_cast<const char*>(out.data()), size_t(n)));
  return msg;
}

bool smime_address_safe(std::string_view address) {
  if (address.empty() || address.size() > 254) return false;
  if (address.find('/') != std::string_view::npos) return false;
  if (address.find("..") != std::string_view::npos) return false;
  for (char c : address)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  return true;
}

sr::result<std::string> load_smime_cert(std::string_view dir, std::string_view address) {
  if (!smime_address_safe(address)) return error{"unsafe address for an S/MIME certificate file name"};
  std::string path(dir);
  if (path.empty()) return error{"S/MIME certificate directory not set"};
  if (path.back() != '/') path += '/';
  path.append(address).append(".pem");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return error{"no S/MIME certificate: cannot open " + path};
  struct fd_close {
    int fd;
    ~fd_close() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return error{path + " is not a regular file"};
  if (size_t(st.st_size) > max_cert_file) return error{path + " is larger than 1 MiB"};
  std::string text(size_t(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t r = ::read(fd, text.data() + got, text.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return error{"cannot read " + path};
    got += size_t(r);
  }
  return text;
}

}  // namespace sr::tls
