// The test PKI's certificates (tests/certs) as the openssl command line sees them: DER of a
// certificate or of its public key, and TLSA association data ("U S M hex"). Expected
// values for DANE tests and benchmarks come from here, never from the code under test.
// Header-only (no gtest, no TLS library), so unit tests and benchmarks use it as well.
#pragma once
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sr::test {

// Quote `s` as one /bin/sh word.
inline std::string shell_quote(std::string_view s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q += "'\\''";
    else q += c;
  }
  return q + "'";
}

// The shell pipeline printing the DER of the first certificate in `cert_file` (selector 0)
// or of its SubjectPublicKeyInfo (selector 1).
inline std::string cert_der_pipeline(const std::string& cert_file, int selector) {
  return selector == 0 ? "openssl x509 -in " + shell_quote(cert_file) + " -outform DER"
                       : "openssl x509 -in " + shell_quote(cert_file) +
                             " -noout -pubkey | openssl pkey -pubin -outform DER";
}

// The shell pipeline printing the TLSA association data of `cert_file` as lowercase hex:
// its DER or SPKI (selector), in full (mtype 0) or as SHA-256 (1) or SHA-512 (2).
inline std::string tlsa_hex_pipeline(const std::string& cert_file, int selector, int mtype) {
  return cert_der_pipeline(cert_file, selector) +
         (mtype == 0   ? " | od -An -v -tx1 | tr -d ' \\n'"
          : mtype == 1 ? " | sha256sum | cut -d' ' -f1"
                       : " | sha512sum | cut -d' ' -f1");
}

// Return "U S M hex" from what tlsa_hex_pipeline printed, or "" when it failed.
inline std::string tlsa_text_of(int usage, int selector, int mtype, int exit_code, std::string hex) {
  while (!hex.empty() && (hex.back() == '\n' || hex.back() == ' ')) hex.pop_back();
  if (exit_code != 0 || hex.empty() || hex.find_first_not_of("0123456789abcdef") != std::string::npos) return "";
  return std::to_string(usage) + " " + std::to_string(selector) + " " + std::to_string(mtype) + " " + hex;
}

// Run `cmd` under bash with pipefail; its standard output (at most 1 MiB), or nullopt when
// it could not be run or exited non-zero. (Local openssl on small files: no time limit.)
inline std::optional<std::string> run_pipeline(const std::string& cmd) {
  FILE* p = popen(("/bin/bash -c " + shell_quote("set -o pipefail; " + cmd)).c_str(), "r");
  if (!p) return std::nullopt;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0 && out.size() < (1u << 20)) out.append(buf, n);
  if (pclose(p) != 0) return std::nullopt;
  return out;
}

// Return the DER of `cert_file`'s first certificate, or of its SPKI; empty when openssl fails.
inline std::vector<uint8_t> cert_der(const std::string& cert_file, bool spki = false) {
  auto s = run_pipeline(cert_der_pipeline(cert_file, spki ? 1 : 0));
  if (!s) return {};
  return {s->begin(), s->end()};
}

// Return the TLSA record text "U S M hex" for `cert_file`, or "" when openssl fails.
inline std::string tlsa_text(const std::string& cert_file, int usage, int selector, int mtype) {
  auto s = run_pipeline(tlsa_hex_pipeline(cert_file, selector, mtype));
  return tlsa_text_of(usage, selector, mtype, s ? 0 : 1, s ? *s : std::string());
}

}  // namespace sr::test
