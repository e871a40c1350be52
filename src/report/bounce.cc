// Bounce classes (report/bounce.hh): our reason, then RFC 3463/5248 enhanced status codes,
// then reply texts. The texts are those the large providers really send (Gmail, Microsoft
// 365/Outlook, Yahoo, iCloud, Mimecast, Postfix and Exim defaults); tests/unit/report keeps
// a table of them. The text tables are ordered: a more specific phrase is tried before a
// broader one ("domain does not exist" is dns before "does not exist" is bad-mailbox).
#include "sealrelay/report/bounce.hh"

#include <array>
#include <charconv>

namespace sr::report {
namespace {

constexpr std::array<std::string_view, bounce_class_count> tokens = {
    "bad-mailbox", "mailbox-full", "policy", "dns", "tls", "other",
};
static_assert(tokens.back() == "other", "one token per class, in enum order");

struct phrase {
  std::string_view text;  // lower case
  bounce_class cls;
};

// Tried in this order; the first phrase found in the reply decides.
constexpr phrase phrases[] = {
    // Our sender refused (Postfix reject_unknown_sender_domain, SPF): policy, whatever follows.
    {"sender address rejected", bounce_class::policy},
    // Over quota (Gmail "is over quota", "out of storage space"; Microsoft QuotaExceeded).
    {"mailbox full", bounce_class::mailbox_full},
    {"mailbox is full", bounce_class::mailbox_full},
    {"over quota", bounce_class::mailbox_full},
    {"overquota", bounce_class::mailbox_full},
    {"quota exceeded", bounce_class::mailbox_full},
    {"quotaexceeded", bounce_class::mailbox_full},
    {"exceeded storage", bounce_class::mailbox_full},
    {"out of storage", bounce_class::mailbox_full},
    {"mailbox size limit", bounce_class::mailbox_full},
    {"insufficient space", bounce_class::mailbox_full},
    // The domain, not the mailbox.
    {"domain does not exist", bounce_class::dns},
    {"domain not found", bounce_class::dns},
    {"host not found", bounce_class::dns},
    {"host unknown", bounce_class::dns},
    {"unknown host", bounce_class::dns},
    {"null mx", bounce_class::dns},
    {"no mx", bounce_class::dns},
    {"name service error", bounce_class::dns},
    {"nxdomain", bounce_class::dns},
    {"unable to route", bounce_class::dns},
    // TLS demanded by the remote.
    {"starttls", bounce_class::tls},
    {"tls required", bounce_class::tls},
    {"requires tls", bounce_class::tls},
    {"tls is required", bounce_class::tls},
    {"requiretls", bounce_class::tls},
    {"encryption required", bounce_class::tls},
    {"encryption needed", bounce_class::tls},
    // The mailbox does not exist or is closed.
    {"user unknown", bounce_class::bad_mailbox},
    {"unknown user", bounce_class::bad_mailbox},
    {"no such user", bounce_class::bad_mailbox},
    {"no such mailbox", bounce_class::bad_mailbox},
    {"no such recipient", bounce_class::bad_mailbox},
    {"no such account", bounce_class::bad_mailbox},
    {"no such address", bounce_class::bad_mailbox},
    {"unknown recipient", bounce_class::bad_mailbox},
    {"recipient unknown", bounce_class::bad_mailbox},
    {"recipient not found", bounce_class::bad_mailbox},
    {"recipientnotfound", bounce_class::bad_mailbox},
    {"invalid recipient", bounce_class::bad_mailbox},
    {"invalid mailbox", bounce_class::bad_mailbox},
    {"not a valid mailbox", bounce_class::bad_mailbox},
    {"mailbox not found", bounce_class::bad_mailbox},
    {"mailbox unavailable", bounce_class::bad_mailbox},
    {"mailbox does not exist", bounce_class::bad_mailbox},
    {"mailbox is disabled", bounce_class::bad_mailbox},
    {"mailbox disabled", bounce_class::bad_mailbox},
    {"user not found", bounce_class::bad_mailbox},
    {"address not found", bounce_class::bad_mailbox},
    {"does not exist", bounce_class::bad_mailbox},
    {"doesn't exist", bounce_class::bad_mailbox},
    {"doesn't have a", bounce_class::bad_mailbox},   // Yahoo: "This user doesn't have a yahoo.com account"
    {"account is disabled", bounce_class::bad_mailbox},
    {"account has been disabled", bounce_class::bad_mailbox},
    {"account disabled", bounce_class::bad_mailbox},
    {"is disabled", bounce_class::bad_mailbox},   // Gmail: "The email account ... is disabled"
    // Microsoft 365 directory-based edge blocking: the recipient is not in the tenant.
    {"recipient address rejected: access denied", bounce_class::bad_mailbox},
    // Policy, spam, reputation, authentication.
    {"spam", bounce_class::policy},
    {"unsolicited", bounce_class::policy},
    {"blocked", bounce_class::policy},
    {"blocklist", bounce_class::policy},
    {"block list", bounce_class::policy},
    {"blacklist", bounce_class::policy},
    {"denylist", bounce_class::policy},
    {"banned", bounce_class::policy},
    {"reputation", bounce_class::policy},
    {"policy", bounce_class::policy},
    {"dmarc", bounce_class::policy},
    {"unauthenticated", bounce_class::policy},
    {"not authorized", bounce_class::policy},
    {"relay access denied", bounce_class::policy},
    {"relaying denied", bounce_class::policy},
    {"access denied", bounce_class::policy},
    {"phish", bounce_class::policy},
    {"junk", bounce_class::policy},
};

char lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

// Parse "c.s.d" (class 2/4/5, subject and detail up to 3 digits each); false when it is not one.
bool parse_status(std::string_view s, unsigned& subject, unsigned& detail) {
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
  const char* p = s.data() + 2;
  const char* end = s.data() + s.size();
  auto r1 = std::from_chars(p, end, subject);
  if (r1.ec != std::errc() || r1.ptr - p > 3 || r1.ptr == end || *r1.ptr != '.') return false;
  p = r1.ptr + 1;
  auto r2 = std::from_chars(p, end, detail);
  return r2.ec == std::errc() && r2.ptr - p <= 3 && r2.ptr == end;
}

}  // namespace

std::string_view to_string(bounce_class c) {
  auto i = size_t(c);
  return i < tokens.size() ? tokens[i] : tokens.back();
}

std::optional<bounce_class> bounce_class_from_token(std::string_view token) {
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] == token) return bounce_class(i);
  return std::nullopt;
}

std::string_view status_of_reply(std::string_view reply) {
  // "550 5.1.1 ...", "550-5.1.1 ...": three digits, a separator, then the code up to a space.
  if (reply.size() < 9 || (reply[3] != ' ' && reply[3] != '-')) return {};
  for (int i = 0; i < 3; ++i)
    if (reply[i] < '0' || reply[i] > '9') return {};
  std::string_view rest = reply.substr(4);
  size_t end = rest.find_first_of(" \t\r\n");
  std::string_view code = rest.substr(0, end);
  unsigned s, d;
  return parse_status(code, s, d) ? code : std::string_view();
}

std::optional<bounce_class> class_of_status(std::string_view status) {
  unsigned s = 0, d = 0;
  if (!parse_status(status, s, d) || d == 0) return std::nullopt;  // X.Y.0: generic, the text decides
  switch (s) {
    case 1:  // addressing
      if (d == 1 || d == 3 || d == 6 || d == 10) return bounce_class::bad_mailbox;  // 5.1.10: Microsoft's "recipient not found"
      if (d == 2) return bounce_class::dns;  // bad destination system address
      return std::nullopt;
    case 2:  // mailbox
      if (d == 1) return bounce_class::bad_mailbox;  // mailbox disabled
      if (d == 2) return bounce_class::mailbox_full;
      return std::nullopt;
    case 4:  // network and routing
      if (d == 3 || d == 4) return bounce_class::dns;
      return std::nullopt;  // 5.4.1: Microsoft's edge blocking says "recipient ... access denied"
    case 7:  // security and policy
      if (d == 4 || d == 5 || d == 10 || d == 11 || d == 29 || d == 30) return bounce_class::tls;
      if (d == 13 || d == 17 || d == 18) return bounce_class::bad_mailbox;  // account disabled, owner changed
      return bounce_class::policy;
    default: return std::nullopt;  // 3 system, 5 protocol, 6 content: the text decides
  }
}

std::optional<bounce_class> class_of_text(std::string_view reply) {
  // A lower-cased copy of the first 1 KiB (enough for every provider's wording; no allocation).
  char buf[1024];
  size_t n = reply.size() < sizeof buf ? reply.size() : sizeof buf;
  for (size_t i = 0; i < n; ++i) buf[i] = lower(reply[i]);
  std::string_view text(buf, n);
  for (const auto& p : phrases)
    if (text.find(p.text) != std::string_view::npos) return p.cls;
  return std::nullopt;
}

bounce_class classify_bounce(const bounce_facts& f) {
  using r = report::reason;
  switch (f.reason) {
    case r::null_mx:
    case r::nxdomain:
    case r::dns_temp_fail:
    case r::mx_address_lookup_failed:
    case r::tlsa_lookup_failed: return bounce_class::dns;
    default:
      if (is_tls_failure(f.reason)) return bounce_class::tls;
      break;
  }
  // An expiry's own status (4.4.7) says only "too old": the last reply says why.
  std::string_view status = f.reason == r::expired ? status_of_reply(f.reply) : f.status;
  if (status.empty()) status = status_of_reply(f.reply);
  if (auto c = class_of_status(status)) return *c;
  if (auto c = class_of_text(f.reply)) return *c;
  unsigned s = 0, d = 0;
  if (parse_status(status, s, d) && s == 7) return bounce_class::policy;  // 5.7.0: security/policy
  return bounce_class::other;
}

}  // namespace sr::report
