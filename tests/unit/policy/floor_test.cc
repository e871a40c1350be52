// Cipher strength by name (not by the library's number) and version parsing.
#include <gtest/gtest.h>

#include "policy/floor.hh"

using namespace sr;
using namespace sr::policy;

TEST(policy_floor, triple_des_is_112) {
  EXPECT_EQ(classify_cipher("TLS_RSA_WITH_3DES_EDE_CBC_SHA"), 112u);
  EXPECT_EQ(classify_cipher("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"), 112u);
  EXPECT_EQ(classify_cipher("DES-CBC3-SHA"), 112u);
  EXPECT_EQ(classify_cipher("ECDHE-RSA-DES-CBC3-SHA"), 112u);
  EXPECT_LT(classify_cipher("DES-CBC3-SHA"), 128u);
}

TEST(policy_floor, broken_ciphers_rate_zero) {
  for (const char* n : {"TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA", "ECDHE-RSA-RC4-SHA",
                        "TLS_RSA_WITH_NULL_SHA256", "NULL-SHA256", "TLS_ECDHE_PSK_WITH_NULL_SHA256",
                        "TLS_RSA_EXPORT_WITH_RC4_40_MD5", "EXP-RC4-MD5",
                        "TLS_RSA_EXPORT1024_WITH_DES_CBC_SHA", "TLS_RSA_WITH_DES_CBC_SHA",
                        "DES-CBC-SHA", "TLS_DH_anon_WITH_AES_128_CBC_SHA", "ADH-AES256-SHA",
                        "AECDH-AES128-SHA", "TLS_ECDH_anon_WITH_AES_256_CBC_SHA",
                        "TLS_SHA256_SHA256", "TLS13-SHA384-SHA384"})
    EXPECT_EQ(classify_cipher(n), 0u) << n;
}

TEST(policy_floor, modern_ciphers_by_name) {
  EXPECT_EQ(classify_cipher("TLS_AES_128_GCM_SHA256"), 128u);
  EXPECT_EQ(classify_cipher("TLS_AES_128_CCM_8_SHA256"), 128u);
  EXPECT_EQ(classify_cipher("TLS_AES_256_GCM_SHA384"), 256u);
  EXPECT_EQ(classify_cipher("TLS_CHACHA20_POLY1305_SHA256"), 256u);
  EXPECT_EQ(classify_cipher("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), 128u);
  EXPECT_EQ(classify_cipher("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"), 256u);
  EXPECT_EQ(classify_cipher("ECDHE-RSA-AES128-GCM-SHA256"), 128u);
  EXPECT_EQ(classify_cipher("ECDHE-RSA-AES256-GCM-SHA384"), 256u);
  EXPECT_EQ(classify_cipher("ECDHE-RSA-CHACHA20-POLY1305"), 256u);
  EXPECT_EQ(classify_cipher("TLS13-AES128-GCM-SHA256"), 128u);
  EXPECT_EQ(classify_cipher("tls_ecdhe_rsa_with_chacha20_poly1305_sha256"), 256u);
  EXPECT_EQ(classify_cipher("TLS_RSA_WITH_CAMELLIA_256_CBC_SHA"), 256u);
  EXPECT_EQ(classify_cipher("CAMELLIA128-SHA"), 128u);
  EXPECT_EQ(classify_cipher("TLS_RSA_WITH_SEED_CBC_SHA"), 128u);
  EXPECT_EQ(classify_cipher("TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384"), 256u);
}

// floor.hh: anything unknown rates below every floor, whatever the library reports.
TEST(policy_floor, unknown_names_fail_closed) {
  EXPECT_EQ(classify_cipher(""), 0u);
  EXPECT_EQ(classify_cipher("TLS_SOMETHING_NEW_WITH_KUZNYECHIK_CTR"), 0u);
  EXPECT_EQ(classify_cipher("TLS_ECDHE_RSA_WITH_AES_192_GCM_SHA384"), 0u);  // no such size
  EXPECT_EQ(classify_cipher(std::string(200, 'A')), 0u);   // longer than any suite name
  EXPECT_EQ(classify_cipher(std::string(30, '_')), 0u);   // no token at all
  EXPECT_EQ(classify_cipher("ECDHE-RSA-GOST89-SHA"), 0u);
}

TEST(policy_floor, versions) {
  EXPECT_EQ(parse_tls_version("TLSv1"), config::tls_version::v1_0);
  EXPECT_EQ(parse_tls_version("TLSv1.0"), config::tls_version::v1_0);
  EXPECT_EQ(parse_tls_version("TLSv1.1"), config::tls_version::v1_1);
  EXPECT_EQ(parse_tls_version("TLSv1.2"), config::tls_version::v1_2);
  EXPECT_EQ(parse_tls_version("TLSv1.3"), config::tls_version::v1_3);
  EXPECT_EQ(parse_tls_version("tlsv1.3"), config::tls_version::v1_3);
  EXPECT_EQ(parse_tls_version("1.2"), config::tls_version::v1_2);
  EXPECT_FALSE(parse_tls_version("SSLv3"));
  EXPECT_FALSE(parse_tls_version("SSLv2"));
  EXPECT_FALSE(parse_tls_version(""));
  EXPECT_FALSE(parse_tls_version("TLSv1.4"));

  EXPECT_FALSE(version_meets("TLSv1.1", config::tls_version::v1_2));
  EXPECT_FALSE(version_meets("TLSv1", config::tls_version::v1_2));
  EXPECT_TRUE(version_meets("TLSv1.2", config::tls_version::v1_2));
  EXPECT_TRUE(version_meets("TLSv1.3", config::tls_version::v1_2));
  EXPECT_FALSE(version_meets("TLSv1.2", config::tls_version::v1_3));
  EXPECT_TRUE(version_meets("TLSv1.1", config::tls_version::v1_1));
  EXPECT_FALSE(version_meets("SSLv3", config::tls_version::v1_0));
  EXPECT_FALSE(version_meets("unknown", config::tls_version::v1_0));
}
