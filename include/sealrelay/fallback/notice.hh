// The two mails the escrow sends (DESIGN.md §7), built as complete RFC 5322 messages (CRLF)
// ready for the intake: the notice to the recipient (`Subject: Secure message from
// <sender>`, the link `<portal_url>/m/<id>/<secret>`, the expiry) and the one-time code.
// Neither carries anything of the escrowed message: the builders are never given it. Pure:
// no I/O except getrandom for a fresh Message-ID and MIME boundary when none is given.
#pragma once
#include <string>
#include <string_view>

#include "sealrelay/fallback/escrow.hh"
#include "sealrelay/fallback/escrow_store.hh"
#include "sealrelay/util/result.hh"

namespace sr::fallback {

// A built mail and its Message-ID (without <>), for the spool and the audit line.
struct built_mail {
  std::string message;
  std::string msg_id;
};

struct notice_params {
  std::string_view notice_from;  // the relay's notice sender (From:), e.g. escrow@relay
  std::string_view recipient;    // To:
  std::string_view sender;       // the escrowed message's sender, shown in the Subject
  std::string_view portal_url;   // "https://portal.example" (trailing slashes are dropped)
  std::string_view hostname;     // the relay's host name: Message-ID's right-hand side
  escrow::link link;             // from escrow::deposit
  seconds_t now{};               // Date:
  seconds_t expires{};           // when the link stops showing the message
  std::string_view msg_id_local = {};  // Message-ID left side; empty draws a random one
};

// Build the escrow notice. Refuses (error) CR, LF and other control characters in any
// field, an empty or over-long sender, a portal URL that is not http(s) or holds
// characters a URL may not, and a link id/secret outside URL-safe base64. A non-ASCII
// (SMTPUTF8) sender is RFC 2047-encoded in the Subject and the text parts go out 8bit.
result<built_mail> escrow_notice(const notice_params& p);

struct code_mail_params {
  std::string_view notice_from;
  std::string_view recipient;
  std::string_view hostname;
  std::string_view code;  // the six digits from escrow::issue_code
  seconds_t now{};
  std::string_view msg_id_local = {};
};

// Build the one-time code mail (Subject "Your code for a secure message", valid
// code_validity); refuses a code that is not exactly six digits and unsafe header fields.
result<built_mail> code_mail(const code_mail_params& p);

// Return the notice link `<portal_url>/m/<id>/<secret>`, or why the parts are unsafe.
result<std::string> portal_link(std::string_view portal_url, const escrow::link& link);

// Encode `text` for an unstructured header: ASCII as is, otherwise RFC 2047 B-encoded
// UTF-8 words of at most 75 characters, folded; an error for control characters.
result<std::string> header_text(std::string_view text);

}  // namespace sr::fallback
