// inbound_tls_counts: the per-shard counts behind sealrelay_inbound_tls_handshakes_total,
// one slot per version in the order of admin::inbound_tls_labels (TLSv1.0, TLSv1.1,
// TLSv1.2, TLSv1.3, other), whatever name the TLS library gives TLS 1.0.
#include <gtest/gtest.h>

#include "sealrelay/server/server.hh"

TEST(inbound_tls_counts, each_version_has_its_slot_and_anything_else_is_other) {
  sr::server::inbound_tls_counts c;
  for (const char* v : {"TLSv1", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3", "TLSv1.3", "SSLv3", ""})
    c.established(v);
  EXPECT_EQ(c.by_version[0], 2u) << "wolfSSL's \"TLSv1\" and \"TLSv1.0\"";
  EXPECT_EQ(c.by_version[1], 1u);
  EXPECT_EQ(c.by_version[2], 1u);
  EXPECT_EQ(c.by_version[3], 2u);
  EXPECT_EQ(c.by_version[4], 2u) << "other";
  EXPECT_EQ(c.failed, 0u);
}
