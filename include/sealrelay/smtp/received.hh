// The Received: trace header (RFC 5321 4.4, protocol names per RFC 3848) that the engine
// prepends to an accepted message. The session does not add it; the spool/engine calls this.
// Client-supplied text (the HELO name) is sanitised so it cannot break the header.
#pragma once
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace sr::smtp {

struct received_info {
  std::string_view helo;         // as the client gave it
  std::string_view client_ip;    // "192.0.2.1" / "2001:db8::1"
  std::string_view hostname;     // ours
  std::string_view queue_id;
  bool esmtp = true;             // EHLO (ESMTP) vs HELO (SMTP)
  bool tls = false;              // -> ESMTPS
  bool authenticated = false;    // -> ESMTPA
  bool http = false;             // the HTTP injection API: "with HTTP" / "with HTTPS" (tls)
  // "(Authenticated sender: USER)" after the cipher line, when set (Postfix's
  // smtpd_sasl_authenticated_header; the engine decides whether to show the user).
  std::string_view auth_sender;
  std::string_view tls_version;  // "TLSv1.3"; the "(using ...)" line only when tls
  std::string_view cipher;       // "TLS_AES_256_GCM_SHA384"
  unsigned cipher_bits = 0;      // symmetric strength used
  unsigned cipher_alg_bits = 0;  // the algorithm's key size
  std::string_view single_rcpt;  // "for <rcpt>" only when exactly one recipient: pass it, else ""
  std::time_t when = 0;          // header date
};

// Append the folded header, each line CRLF-terminated:
// "Received: from HELO (IP)\r\n\tby HOST (sealrelay) with ESMTPS id QID\r\n
//  \t(using TLSv1.3 with cipher X (256/256 bits))\r\n\t(Authenticated sender: U)\r\n
//  \tfor <rcpt>; DATE\r\n".
void append_received(std::string& out, const received_info& info);
// Append an RFC 5322 date-time in UTC ("Sat, 28 Nov 2026 11:02:35 +0000").
void append_rfc5322_date(std::string& out, std::time_t when);

}  // namespace sr::smtp
