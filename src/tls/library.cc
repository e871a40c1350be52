// tls::library(): what wolfSSL this process runs on. AES-NI "in use" is read from a real
// key schedule (wolfSSL sets Aes::use_aesni only when the build has it and cpuid says the
// CPU does), not assumed from the build flags; the path comes from the dynamic loader, so
// a binary that picked up Debian's slow libwolfssl instead of build-deps/ shows it.
#include "sealrelay/tls/library.hh"

#include <dlfcn.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/aes.h>

namespace sr::tls {

namespace {

library_info probe() {
  library_info info;
  wolfSSL_Init();
  info.version = wolfSSL_lib_version();
  Dl_info dl{};
  if (dladdr(reinterpret_cast<void*>(&wolfSSL_lib_version), &dl) != 0 && dl.dli_fname)
    info.path = dl.dli_fname;
#ifdef WOLFSSL_AESNI
  info.aesni_built = true;
  Aes aes;
  if (wc_AesInit(&aes, nullptr, INVALID_DEVID) == 0) {
    const byte key[32] = {};
    if (wc_AesGcmSetKey(&aes, key, sizeof key) == 0) info.aesni_used = aes.use_aesni != 0;
    wc_AesFree(&aes);
  }
#endif
#ifdef USE_INTEL_SPEEDUP
  info.intel_asm_built = true;
#endif
  __builtin_cpu_init();
  info.avx = __builtin_cpu_supports("avx");
  info.avx2 = __builtin_cpu_supports("avx2");
#ifdef WOLFSSL_SP_X86_64_ASM
  info.sp_asm_built = true;
#endif
  return info;
}

}  // namespace

const library_info& library() {
  static const library_info info = probe();
  return info;
}

std::string describe_library() {
  const library_info& l = library();
  std::string s = "wolfSSL " + l.version;
  if (!l.path.empty()) s += " (" + l.path + ")";
  s += ": AES-NI ";
  s += !l.aesni_built ? "not built" : l.aesni_used ? "in use" : "built, not in use (CPU lacks it)";
  s += ", Intel asm ";
  s += !l.intel_asm_built ? "not built" : l.avx2 ? "(AVX2) in use"
       : l.avx ? "(AVX) in use" : "built, not in use (CPU lacks AVX)";
  s += l.sp_asm_built ? ", SP x86-64 asm" : ", no SP asm";
  return s;
}

}  // namespace sr::tls
