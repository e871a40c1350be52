// SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms, as a pure codec for
// the inbound session: parse the AUTH command, the client's base64 responses, and the
// replies each step answers. No I/O, no password checks (auth::hasher does those).
// Responses are strict base64 (util/text.hh); "*" cancels the exchange (501 5.0.0).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sr::smtp {

enum class sasl_mech : uint8_t { plain, login };

// The replies of an AUTH exchange (RFC 4954 §6, RFC 3207, RFC 5248 codes).
namespace sasl_reply {
inline constexpr std::string_view ok = "235 2.7.0 Authentication successful";
inline constexpr std::string_view failed = "535 5.7.8 Authentication credentials invalid";
inline constexpr std::string_view encryption_required = "538 5.7.11 Encryption required for requested authentication mechanism";
inline constexpr std::string_view temp_failure = "454 4.7.0 Temporary authentication failure";
inline constexpr std::string_view unknown_mech = "504 5.5.4 Unrecognized authentication type";
inline constexpr std::string_view bad_base64 = "501 5.5.2 Cannot decode response";
inline constexpr std::string_view cancelled = "501 5.0.0 Authentication cancelled";
inline constexpr std::string_view syntax = "501 5.5.4 Syntax: AUTH mechanism [initial-response]";
inline constexpr std::string_view already = "503 5.5.1 Already authenticated";
inline constexpr std::string_view in_transaction = "503 5.5.1 AUTH not allowed during a mail transaction";
inline constexpr std::string_view too_many = "421 4.7.0 Too many authentication failures, closing connection";
inline constexpr std::string_view empty_challenge = "334 ";
inline constexpr std::string_view login_username = "334 VXNlcm5hbWU6";  // "Username:"
inline constexpr std::string_view login_password = "334 UGFzc3dvcmQ6";  // "Password:"
}  // namespace sasl_reply

// The EHLO keyword line for what is offered ("AUTH PLAIN LOGIN").
inline constexpr std::string_view sasl_ehlo_keyword = "AUTH PLAIN LOGIN";

struct auth_command {
  sasl_mech mech = sasl_mech::plain;
  std::optional<std::string> initial;  // decoded initial response ("=" is the empty one)
};

enum class auth_error : uint8_t { none, syntax, unknown_mech, bad_base64, cancelled };
// Return the reply of an error ("501 ...", "504 ...").
std::string_view reply_of(auth_error e);

// Parse the argument of AUTH ("PLAIN", "PLAIN dGVzdAB0ZXN0AHRlc3Q=", "LOGIN", "login =").
// The mechanism is case-insensitive.
struct auth_parse {
  auth_command cmd;
  auth_error error = auth_error::none;
};
auth_parse parse_auth(std::string_view arg);

// Decode one client response line of an exchange: "*" cancels, else strict base64.
struct response_parse {
  std::string data;
  auth_error error = auth_error::none;
};
response_parse parse_response(std::string_view line);

// The credentials of a PLAIN message "authzid\0authcid\0passwd" (RFC 4616 §2): nullopt when
// it does not have exactly three fields, an empty authcid or password, or an authzid other
// than "" or the authcid (no proxy authorization).
struct credentials {
  std::string user;
  std::string password;
};
std::optional<credentials> parse_plain(std::string_view message);

}  // namespace sr::smtp
