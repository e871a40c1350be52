// S/MIME envelopes (RFC 8551) for the fallback sidecar (DESIGN §7): a message encrypted to
// one recipient's RSA certificate as application/pkcs7-mime; smime-type=enveloped-data
// (CMS EnvelopedData, AES-256-CBC, RSA key transport) that `openssl cms -decrypt` opens,
// and the lookup of that certificate as `<smime_dir>/<address>.pem`. Plain bytes in and out;
// no wolfSSL type appears here.
#pragma once
#include <string>
#include <string_view>

#include "sealrelay/util/result.hh"

namespace sr::tls {

// Return `message` (RFC 5322, CRLF; bare LF is canonicalised to CRLF) as an S/MIME message
// for the holder of `recipient_cert_pem`. The encrypted inner entity is the whole canonical
// original message, every header field and the body; outside stay copies of From, To, Cc,
// Date and Message-ID, and Subject as "..." when the original has one (as for PGP, so the
// subject never travels readable), then the MIME fields of the smime.p7m body (base64, 76
// characters a line). Errors: not a PEM certificate, a key that is not RSA, wolfSSL failures.
sr::result<std::string> smime_envelope(std::string_view message, std::string_view recipient_cert_pem);

// True when `address` may name a file in smime_dir: not empty, at most 254 bytes, no '/',
// no "..", no control characters (below 0x20, 0x7f).
bool smime_address_safe(std::string_view address);

// Return the contents of `<dir>/<address>.pem` (a regular file of at most 1 MiB); an error
// for an unsafe address (smime_address_safe) or a file that cannot be read.
sr::result<std::string> load_smime_cert(std::string_view dir, std::string_view address);

}  // namespace sr::tls
