// The wolfSSL this binary runs on, for `sealrelay --version` and the benchmarks: its
// version, where it was loaded from, and whether its fast paths are built and taken on
// this CPU (Debian's own libwolfssl has no assembly; tools/build-wolfssl's has).
#pragma once
#include <string>

namespace sr::tls {

struct library_info {
  std::string version;      // wolfSSL_lib_version() of the loaded library, "5.5.4"
  std::string path;         // the shared object it was loaded from ("" if unknown)
  bool aesni_built = false; // compiled with AES-NI (WOLFSSL_AESNI)
  bool aesni_used = false;  // an AES-GCM key schedule took the AES-NI path on this CPU
  bool intel_asm_built = false;  // USE_INTEL_SPEEDUP: AVX/AVX2 ChaCha20, Poly1305, SHA-2
  bool avx = false;         // this CPU has AVX (the Intel asm paths need it)
  bool avx2 = false;        // this CPU has AVX2 (the fastest of those paths)
  bool sp_asm_built = false;  // WOLFSSL_SP_X86_64_ASM: RSA/ECC/DH in x86-64 assembly
};

// Probe once (initialises wolfSSL; cheap, and safe to call from any thread).
const library_info& library();

// One line: "wolfSSL 5.5.4 (/path/libwolfssl.so.35): AES-NI in use, Intel asm (AVX2) in
// use, SP x86-64 asm".
std::string describe_library();

}  // namespace sr::tls
