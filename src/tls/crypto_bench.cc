// Google Benchmark of the wolfCrypt primitives under the relay's TLS (issue 11): AES-256-GCM
// and ChaCha20-Poly1305 sealing one 10 KiB record's worth of body, ECDSA P-256 and RSA-2048
// signing one SHA-256 digest (a handshake's server signature). Before/after figures for the
// project's wolfSSL build (build-deps/wolfssl) against Debian's (-Dsystem_wolfssl=true).
// It lives in src/tls only because wolfSSL headers may appear nowhere else; bench/meson.build
// builds it. The context line "wolfssl" names the library measured and its fast paths.
#include <benchmark/benchmark.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>

#include <cstdint>
#include <vector>

#include "sealrelay/tls/library.hh"

namespace {

constexpr size_t kRecord = 10 * 1024;

void BM_aes256gcm_encrypt_10k(benchmark::State& state) {
  std::vector<byte> in(kRecord, 0x5a), out(kRecord);
  byte key[32] = {1}, iv[12] = {2}, aad[13] = {3}, tag[16];
  Aes aes;
  if (wc_AesInit(&aes, nullptr, INVALID_DEVID) != 0 || wc_AesGcmSetKey(&aes, key, sizeof key) != 0) {
    state.SkipWithError("AES-GCM key setup failed");
    return;
  }
  for (auto _ : state) {
    if (wc_AesGcmEncrypt(&aes, out.data(), in.data(), kRecord, iv, sizeof iv, tag, sizeof tag, aad,
                         sizeof aad) != 0) {
      state.SkipWithError("wc_AesGcmEncrypt failed");
      break;
    }
    benchmark::DoNotOptimize(out.data());
    ++iv[11];
  }
  wc_AesFree(&aes);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(kRecord));
}
BENCHMARK(BM_aes256gcm_encrypt_10k);

void BM_aes256gcm_decrypt_10k(benchmark::State& state) {
  std::vector<byte> in(kRecord, 0x5a), ct(kRecord), out(kRecord);
  byte key[32] = {1}, iv[12] = {2}, aad[13] = {3}, tag[16];
  Aes aes;
  if (wc_AesInit(&aes, nullptr, INVALID_DEVID) != 0 || wc_AesGcmSetKey(&aes, key, sizeof key) != 0 ||
      wc_AesGcmEncrypt(&aes, ct.data(), in.data(), kRecord, iv, sizeof iv, tag, sizeof tag, aad,
                       sizeof aad) != 0) {
    state.SkipWithError("AES-GCM setup failed");
    return;
  }
  for (auto _ : state) {
    if (wc_AesGcmDecrypt(&aes, out.data(), ct.data(), kRecord, iv, sizeof iv, tag, sizeof tag, aad,
                         sizeof aad) != 0) {
      state.SkipWithError("wc_AesGcmDecrypt failed");
      break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  wc_AesFree(&aes);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(kRecord));
}
BENCHMARK(BM_aes256gcm_decrypt_10k);

void BM_chacha20poly1305_encrypt_10k(benchmark::State& state) {
  std::vector<byte> in(kRecord, 0x5a), out(kRecord);
  byte key[32] = {1}, iv[12] = {2}, aad[13] = {3}, tag[16];
  for (auto _ : state) {
    if (wc_ChaCha20Poly1305_Encrypt(key, iv, aad, sizeof aad, in.data(), kRecord, out.data(), tag) !=
        0) {
      state.SkipWithError("wc_ChaCha20Poly1305_Encrypt failed");
      break;
    }
    benchmark::DoNotOptimize(out.data());
    ++iv[11];
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(kRecord));
}
BENCHMARK(BM_chacha20poly1305_encrypt_10k);

void BM_chacha20poly1305_decrypt_10k(benchmark::State& state) {
  std::vector<byte> in(kRecord, 0x5a), ct(kRecord), out(kRecord);
  byte key[32] = {1}, iv[12] = {2}, aad[13] = {3}, tag[16];
  if (wc_ChaCha20Poly1305_Encrypt(key, iv, aad, sizeof aad, in.data(), kRecord, ct.data(), tag) != 0) {
    state.SkipWithError("ChaCha20-Poly1305 setup failed");
    return;
  }
  for (auto _ : state) {
    if (wc_ChaCha20Poly1305_Decrypt(key, iv, aad, sizeof aad, ct.data(), kRecord, tag, out.data()) !=
        0) {
      state.SkipWithError("wc_ChaCha20Poly1305_Decrypt failed");
      break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(kRecord));
}
BENCHMARK(BM_chacha20poly1305_decrypt_10k);

void BM_ecdsa_p256_sign(benchmark::State& state) {
  WC_RNG rng;
  ecc_key key;
  byte digest[32] = {7};
  byte sig[ECC_MAX_SIG_SIZE];
  if (wc_InitRng(&rng) != 0) {
    state.SkipWithError("wc_InitRng failed");
    return;
  }
  if (wc_ecc_init(&key) != 0 || wc_ecc_make_key_ex(&rng, 32, &key, ECC_SECP256R1) != 0) {
    state.SkipWithError("P-256 key generation failed");
    wc_FreeRng(&rng);
    return;
  }
  for (auto _ : state) {
    word32 len = sizeof sig;
    if (wc_ecc_sign_hash(digest, sizeof digest, sig, &len, &rng, &key) != 0) {
      state.SkipWithError("wc_ecc_sign_hash failed");
      break;
    }
    benchmark::DoNotOptimize(sig);
  }
  wc_ecc_free(&key);
  wc_FreeRng(&rng);
}
BENCHMARK(BM_ecdsa_p256_sign)->Unit(benchmark::kMicrosecond);

void BM_rsa2048_sign(benchmark::State& state) {
  WC_RNG rng;
  RsaKey key;
  // A SHA-256 DigestInfo is 51 bytes; PKCS#1 v1.5 pads it to the 256-byte modulus.
  byte digest_info[51] = {0x30, 0x31};
  byte sig[256];
  if (wc_InitRng(&rng) != 0) {
    state.SkipWithError("wc_InitRng failed");
    return;
  }
  if (wc_InitRsaKey(&key, nullptr) != 0 || wc_MakeRsaKey(&key, 2048, WC_RSA_EXPONENT, &rng) != 0 ||
      wc_RsaSetRNG(&key, &rng) != 0) {
    state.SkipWithError("RSA-2048 key generation failed");
    wc_FreeRng(&rng);
    return;
  }
  for (auto _ : state) {
    if (wc_RsaSSL_Sign(digest_info, sizeof digest_info, sig, sizeof sig, &key, &rng) < 0) {
      state.SkipWithError("wc_RsaSSL_Sign failed");
      break;
    }
    benchmark::DoNotOptimize(sig);
  }
  wc_FreeRsaKey(&key);
  wc_FreeRng(&rng);
}
BENCHMARK(BM_rsa2048_sign)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("wolfssl", sr::tls::describe_library());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
