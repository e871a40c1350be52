// Received: header format (ESMTP/ESMTPS/ESMTPSA, TLS clause, "for" only with one recipient).
#include "sealrelay/smtp/received.hh"

#include <gtest/gtest.h>

namespace {

using namespace sr::smtp;

TEST(received, plain_esmtp_single_recipient) {
  received_info i;
  i.helo = "client.example";
  i.client_ip = "192.0.2.7";
  i.hostname = "relay.example.org";
  i.queue_id = "4QxYz";
  i.single_rcpt = "bob@example.net";
  i.when = 1795863755;  // 2026-11-28 11:02:35 UTC
  std::string out;
  append_received(out, i);
  EXPECT_EQ(out,
            "Received: from client.example (192.0.2.7)\r\n"
            "\tby relay.example.org (sealrelay) with ESMTP id 4QxYz\r\n"
            "\tfor <bob@example.net>; Sat, 28 Nov 2026 11:02:35 +0000\r\n");
}

TEST(received, tls_authenticated_many_recipients) {
  received_info i;
  i.helo = "c";
  i.client_ip = "::1";
  i.hostname = "r";
  i.queue_id = "Q";
  i.tls = true;
  i.authenticated = true;
  i.tls_version = "TLSv1.3";
  i.cipher = "TLS_AES_256_GCM_SHA384";
  i.cipher_bits = 256;
  i.cipher_alg_bits = 256;
  i.when = 0;
  std::string out;
  append_received(out, i);
  EXPECT_EQ(out,
            "Received: from c (::1)\r\n"
            "\tby r (sealrelay) with ESMTPSA id Q\r\n"
            "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits));\r\n"
            "\tThu, 1 Jan 1970 00:00:00 +0000\r\n");
}

TEST(received, hostile_helo_cannot_break_header) {
  received_info i;
  i.helo = "x\r\nBcc: victim@example.org (";
  i.client_ip = "192.0.2.1";
  i.hostname = "r";
  i.queue_id = "Q";
  std::string out;
  append_received(out, i);
  EXPECT_EQ(out.find("\r\nBcc"), std::string::npos);
  EXPECT_EQ(out.substr(0, 50), "Received: from x??Bcc:?victim@example.org?? (192.0");
}

}  // namespace

// Submission: the authenticated user on its own line (Postfix's
// smtpd_sasl_authenticated_header), sanitised like every client-controlled field.
TEST(received, authenticated_sender_line) {
  received_info i;
  i.helo = "laptop";
  i.client_ip = "192.0.2.9";
  i.hostname = "relay.example.org";
  i.queue_id = "Q1";
  i.tls = true;
  i.authenticated = true;
  i.tls_version = "TLSv1.3";
  i.cipher = "TLS_AES_128_GCM_SHA256";
  i.cipher_bits = 128;
  i.cipher_alg_bits = 128;
  i.auth_sender = "alice@example.org";
  i.single_rcpt = "bob@example.net";
  i.when = 1795863755;
  std::string out;
  append_received(out, i);
  EXPECT_EQ(out,
            "Received: from laptop (192.0.2.9)\r\n"
            "\tby relay.example.org (sealrelay) with ESMTPSA id Q1\r\n"
            "\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits))\r\n"
            "\t(Authenticated sender: alice@example.org)\r\n"
            "\tfor <bob@example.net>; Sat, 28 Nov 2026 11:02:35 +0000\r\n");
  i.auth_sender = "eve)\r\nX-Evil: 1";
  out.clear();
  append_received(out, i);
  EXPECT_EQ(out.find("X-Evil: 1\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("(Authenticated sender: eve???X-Evil:?1)"), std::string::npos) << out;
}
