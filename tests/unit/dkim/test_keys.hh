// Shared by the DKIM unit tests: keys made once per test binary by `openssl genpkey` (RSA
// 2048, RSA 1024, Ed25519, and the RSA key as PKCS#1) with the TXT records dkimpy is
// handed, and verify(), which runs dkimpy (tests/tools/dkim_verify.py, path in
// SR_DKIM_VERIFY from meson) on a message: an independent verifier, never our own code.
#pragma once
#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "support/cert_files.hh"
#include "support/file_io.hh"
#include "support/temp_dir.hh"

namespace sr::test::dkim {

struct keys {
  sr::test::temp_dir dir{"sealrelay-dkim"};
  bool ok = false;
  std::string why;  // when !ok: what failed (the tests skip with it)
  std::string rsa_pem, rsa1024_pem, ed_pem, rsa_pkcs1_pem;
  std::string rsa_txt, ed_txt;

  keys() {
    const std::string d = dir.path().string();
    auto sh = [&](const std::string& cmd) { return run_pipeline("cd " + shell_quote(d) + " && " + cmd); };
    if (!sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem 2>/dev/null") ||
        !sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa1024.pem 2>/dev/null") ||
        !sh("openssl genpkey -algorithm ed25519 -out ed.pem 2>/dev/null") ||
        !sh("openssl pkey -in rsa.pem -traditional -out rsa_pkcs1.pem 2>/dev/null")) {
      why = "openssl genpkey failed or is missing";
      return;
    }
    auto rsa_p = sh("openssl pkey -in rsa.pem -pubout -outform DER 2>/dev/null | base64 -w0");
    // RFC 8463 §4: p= is the raw 32-byte Ed25519 key, the tail of its SPKI.
    auto ed_p = sh("openssl pkey -in ed.pem -pubout -outform DER 2>/dev/null | tail -c 32 | base64 -w0");
    if (!rsa_p || !ed_p) {
      why = "openssl pkey -pubout failed";
      return;
    }
    rsa_txt = "v=DKIM1; k=rsa; p=" + *rsa_p;
    ed_txt = "v=DKIM1; k=ed25519; p=" + *ed_p;
    rsa_pem = d + "/rsa.pem";
    rsa1024_pem = d + "/rsa1024.pem";
    ed_pem = d + "/ed.pem";
    rsa_pkcs1_pem = d + "/rsa_pkcs1.pem";
    ok = true;
  }
};

// Made at first use, shared by every test of the binary.
inline keys& suite_keys() {
  static keys k;
  return k;
}

// Run dkimpy on `message` with `txt` as the selector's TXT record: its exit code (0 valid,
// 1 invalid, 77 dkimpy missing); its stderr in `diag`.
inline int verify(const std::string& message, const std::string& txt, std::string* diag = nullptr) {
  sr::test::temp_dir d("sealrelay-dkimv");
  const auto m = d.path() / "msg.eml", t = d.path() / "key.txt", e = d.path() / "err";
  write_file(m, message);
  write_file(t, txt);
  const std::string cmd = "/usr/bin/python3 " + shell_quote(SR_DKIM_VERIFY) + " " + shell_quote(t.string()) +
                          " < " + shell_quote(m.string()) + " > /dev/null 2> " + shell_quote(e.string());
  const int st = std::system(cmd.c_str());
  if (diag) *diag = read_file(e);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

}  // namespace sr::test::dkim
